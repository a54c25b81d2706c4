"""The feed in real headless Chromium, on the whole pipeline: an event posted to the gateway, the
detector worker, the feed's live list, the detail, a resolution written to alerts.actions and by
the sink into ClickHouse 18.16, and a supervisor of another office who never sees it.
Screenshots go to test-results/screenshots/ (look at them)."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningGateway, gateway_settings, write_keys
from playwright.sync_api import Browser, Page, expect, sync_playwright
from test_feed import PASSWORD, free_port

from connectors.feed.serve import FeedThread
from connectors.feed.users import User, UserStore, hash_password
from connectors.pipeline import detector_workers
from connectors.samples import CHECKPOINTS, SampleFactory
from connectors.sink.migrate import migrate
from connectors.sink.sink import Sink
from connectors.sink.store import ServerStore

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path("test-results/screenshots")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"feed-{name}.png"), full_page=True)


def log_in(browser: Browser, url: str, name: str) -> Page:
    page = browser.new_context().new_page()
    page.goto(url + "/")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("header")).to_contain_text(name)
    return page


class SinkThread:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.stop = threading.Event()
        self.thread = threading.Thread(target=sink.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> SinkThread:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(60)
        self.sink.close()


@pytest.fixture
def ticking_gateway(
    kafka_bootstrap: str, topics: dict[str, str], topic_prefix: str, tmp_path: Path
) -> Iterator[RunningGateway]:
    """A gateway with its clock ticks on, as in production: they release events in the detectors."""
    settings = gateway_settings(kafka_bootstrap, topic_prefix, tmp_path, gateway_tick_seconds=0.25)
    gw = RunningGateway(settings, write_keys(settings.keys_file)).start()
    yield gw
    gw.stop()


def test_an_alert_appears_live_is_triaged_and_lands_in_clickhouse(
    browser: Browser, ticking_gateway: RunningGateway, server_store: ServerStore, clickhouse_server: Any
) -> None:
    gateway = ticking_gateway
    settings = gateway.settings.model_copy(update={"feed_port": free_port(), "sink_batch_seconds": 0.2})
    users = UserStore()
    pw = hash_password(PASSWORD)
    users.add(User("sup-batam", "supervisor", frozenset({"KANIM-BATAM"}), frozenset(), pw))
    users.add(User("sup-medan", "supervisor", frozenset({"KANIM-MEDAN"}), frozenset(), pw))
    migrate(server_store)
    with (
        detector_workers(settings, 1),
        FeedThread(settings, users, history=lambda key: ([], [])) as feed,
        # the sink's own connection: a clickhouse-driver client is not shared between threads
        SinkThread(Sink(settings, ServerStore(clickhouse_server.host, clickhouse_server.port, server_store.database))),
    ):
        page = log_in(browser, feed.url, "sup-batam")
        expect(page.locator("#live")).to_have_text("live: connected")
        with urllib.request.urlopen(f"{feed.url}/metrics", timeout=5) as scraped:  # an operator sees the tab
            body = scraped.read().decode()
        assert 'pora_feed_streams_open{role="supervisor"} 1.0' in body and "pora_feed_users_connected 1.0" in body
        shot(page, "1-logged-in")

        batam = next(c for c in CHECKPOINTS if c["checkpoint_id"] == "TPI-BATAM-CENTRE")
        departure = SampleFactory(seed=11).citizen_departure(checkpoint=batam, risky=True)
        status, receipt, _ = gateway.post("/v1/events/border-crossings", departure, source="checkpoint")
        assert status in (200, 201, 202), receipt
        posted = time.monotonic()
        row = page.locator("#alerts tbody tr", has_text="tppo.screening")
        expect(row).to_have_count(1, timeout=30_000)
        print(f"alert in the browser {time.monotonic() - posted:.2f} s after the gateway's receipt")
        expect(page.locator("#counts")).to_contain_text("tppo.screening: 1")  # counts follow live
        shot(page, "2-live-alert")

        page.select_option("select[name=rule]", "tppo.screening")
        page.click("form.filters button[type=submit]")
        expect(page.locator("#alerts tbody tr")).to_have_count(1)
        expect(page.locator("#counts")).to_contain_text("tppo.screening: 1")
        shot(page, "3-filtered")

        page.locator("#alerts tbody tr a").first.click()
        expect(page.locator("#reasons")).to_contain_text("one-way ticket")
        expect(page.locator("#reasons")).to_contain_text("screening threshold")
        shot(page, "4-detail")
        alert_id = page.url.rsplit("/", 1)[1]

        page.select_option("select[name=action]", "RESOLVE")
        page.select_option("select[name=disposition]", "DELAYED_FOR_INTERVIEW")
        page.fill("input[name=comment]", "interviewed at the counter")
        page.click("#triage button[type=submit]")
        expect(page.locator("#triage-state")).to_have_text("RESOLVED")
        expect(page.locator("#actions")).to_contain_text("DELAYED_FOR_INTERVIEW")
        shot(page, "5-resolved")

        db = server_store.database
        deadline = time.monotonic() + 60
        found: list[tuple[Any, ...]] = []
        while not found and time.monotonic() < deadline:
            found = server_store.query(
                f"SELECT action, actor, disposition FROM {db}.alert_actions FINAL WHERE alert_id = '{alert_id}'"
            ).rows
            time.sleep(0.2)
        assert found == [("RESOLVE", "sup-batam", "DELAYED_FOR_INTERVIEW")]

        other = log_in(browser, feed.url, "sup-medan")
        expect(other.locator("#alerts tbody tr")).to_have_count(0)
        shot(other, "6-other-office")
        response = other.goto(f"{feed.url}/alerts/{alert_id}")
        assert response is not None and response.status == 404
        page.context.close()
        other.context.close()
