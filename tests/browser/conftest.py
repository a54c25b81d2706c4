"""Browser fixtures: real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

Every test below this directory is marked ``browser`` automatically and runs after all other
tests of the session (see ``pytest_collection_modifyitems``).

- ``browser``: one Chromium for the whole session (launching one takes ~0.3 s, a new context per
  test is cheaper and just as isolated).
- ``page``: a fresh context (cookies, storage, cache) and page per test; the page's console
  messages and uncaught errors go to the ``pora.browser`` log, which pytest shows when a test
  fails, and a failed test leaves a ``<test name>-failure.png`` screenshot.
- ``screenshots``: ``screenshots("step")`` saves the page as
  ``test-results/screenshots/<test name>-<step>.png``.
- ``serve_app``: ``serve_app(app)`` serves an aiohttp ``web.Application`` on a free port of
  127.0.0.1 from a thread of its own and returns its base URL; stopped when the test ends.

Playwright's sync API runs its own asyncio loop in this (the main) thread for as long as the
browser lives, so ``asyncio.run`` cannot be called in a browser test or in a fixture it uses:
run asyncio code in a thread of its own, as ``serve_app`` does. For the same reason the browser
tests go last: from the first of them to the end of the session, the main thread has Playwright's
loop.

We never run ``playwright install`` (it downloads browsers): .ci/run installs Debian's chromium.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, Playwright, sync_playwright

from connectors.appthread import AppThread

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # root (CI, containers) cannot run Chromium's sandbox
    "--disable-gpu",
    "--disable-background-networking",
    # the network is closed: nothing of Google's to reach (Playwright adds most of these too)
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # Chromium still looks up accounts.google.com and update.googleapis.com with all the above:
    # no name resolves but localhost (IP literals go through the rules too, hence 127.0.0.1 and
    # ::1), so a page that reaches outside fails at once, the same on every machine
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]",
]
SCREENSHOTS_DIR = Path("test-results") / "screenshots"  # under the rootdir
DEFAULT_TIMEOUT_MS = 15_000  # Playwright actions and navigation (expect() has its own 5 s)

_HERE = Path(__file__).resolve().parent
_CALL_REPORT = pytest.StashKey[pytest.TestReport]()
log = logging.getLogger("pora.browser")

Screenshot = Callable[..., Path]
ServeApp = Callable[[web.Application], str]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if item.path.resolve().is_relative_to(_HERE)]
    for item in ours:
        item.add_marker(pytest.mark.browser)
    # browser tests last (a stable sort keeps each group's order): see the module docstring
    items.sort(key=lambda item: item.path.resolve().is_relative_to(_HERE))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    pw = sync_playwright().start()
    yield pw
    pw.stop()


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's chromium, which .ci/run installs "
            "(on this machine: apt-get install chromium); never `playwright install`",
            pytrace=False,
        )
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    page.on("console", _log_console)
    page.on("pageerror", lambda error: log.error("uncaught in page: %s", error))
    yield page
    report = request.node.stash.get(_CALL_REPORT, None)
    if report is not None and report.failed:
        try:
            page.screenshot(path=_screenshot_path(request, "failure"), full_page=True)
        except Error as exc:
            log.warning("no failure screenshot: %s", exc)
    context.close()


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Screenshot:
    """``screenshots("step")`` (or ``screenshots("step", other_page)``): a full-page PNG of the
    test's page at test-results/screenshots/<test name>-<step>.png; returns its path."""

    def take(step: str, page: Page | None = None) -> Path:
        target: Page = page if page is not None else request.getfixturevalue("page")
        path = _screenshot_path(request, step)
        target.screenshot(path=path, full_page=True)
        return path

    return take


@pytest.fixture
def serve_app() -> Iterator[ServeApp]:
    servers: list[AppThread] = []

    def serve(app: web.Application) -> str:
        server = AppThread(lambda: app, name="serve_app")
        servers.append(server)
        url = server.start()
        log.info("serving %s", url)
        return url

    yield serve
    for server in reversed(servers):
        server.stop()


def _log_console(message: ConsoleMessage) -> None:
    level = logging.ERROR if message.type == "error" else logging.INFO
    log.log(level, "console.%s: %s", message.type, message.text)


def _screenshot_path(request: pytest.FixtureRequest, step: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{request.node.name}-{step}").strip("_")
    directory = request.config.rootpath / SCREENSHOTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{safe}.png"
