"""The supervisor feed against the real broker: scoping by office and role through the pages, the
API and the live stream; triage actions written to alerts.actions; log-in, CSRF and headers."""

from __future__ import annotations

import http.cookiejar
import json
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from connectors.feed.serve import FeedThread
from connectors.feed.users import User, UserStore, hash_password, token_hash
from monitoring.catalog import pora_samples
from schemas.codec import codec
from streams.detect.alerts import Evidence, Finding, alert_record
from streams.settings import Settings

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
TOKEN = "tok-admin-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alert(rule: str, office: str, person: str, window: str, reasons: list[str] | None = None) -> dict[str, Any]:
    finding = Finding(
        rule,
        window,
        "HIGH",
        office,
        {"person_key": person},
        reasons or [f"{rule} for {person}"],
        [Evidence("days_over", "12"), Evidence("charge_idr", "12000000")],
    )
    now = int(time.time() * 1000)
    return alert_record(finding, status="RAISED", step=0, version="test", at=now, emitted_at=now)


class Client:
    """A browser-like client: cookies kept, redirects followed, errors returned, not raised."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def request(
        self, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        req = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self.opener.open(req, timeout=30) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers)

    def login(self, name: str, password: str = PASSWORD) -> int:
        status, _, _ = self.request("/login", f"name={name}&password={password}".encode())
        return status

    def csrf(self) -> str:
        _, page, _ = self.request("/")
        found = re.search(rb'name="csrf" value="([0-9a-f]+)"', page)
        assert found, page[:500]
        return found.group(1).decode()

    def json(self, path: str) -> tuple[int, Any]:
        status, body, _ = self.request(path)
        return status, json.loads(body)

    def act(self, alert_id: str, body: dict[str, Any], csrf: str | None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if csrf is not None:
            headers["X-CSRF-Token"] = csrf
        status, raw, _ = self.request(f"/api/alerts/{alert_id}/actions", json.dumps(body).encode(), headers)
        return status, json.loads(raw)


@pytest.fixture
def feed(kafka_bootstrap: str, topics: dict[str, str], topic_prefix: str, tmp_path: Path) -> Iterator[FeedThread]:
    users = UserStore()
    pw = hash_password(PASSWORD)
    users.add(User("sup-batam", "supervisor", frozenset({"KANIM-BATAM"}), frozenset(), pw))
    users.add(User("sup-medan", "supervisor", frozenset({"KANIM-MEDAN"}), frozenset(), pw))
    users.add(User("polda", "agency", frozenset({"KANIM-BATAM"}), frozenset({"tppo.screening"}), pw))
    users.add(User("admin", "admin", frozenset(), frozenset(), pw, token_hash(TOKEN)))
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix,
        state_dir=tmp_path,
        feed_port=free_port(),
    )
    with FeedThread(settings, users, history=lambda key: ([("2026-11-01 10:00:00", "ARRIVAL", "TPI-X", "")], [])) as f:
        yield f


def publish(bootstrap: str, topic: str, records: list[dict[str, Any]], kind: str = "alert") -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for r in records:
        producer.send(topic, key=r.get("alert_id", "x").encode(), value=codec().encode(kind, r))
    producer.flush()
    producer.close()


def wait_for(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_supervisor_sees_its_office_only_in_pages_api_and_stream(
    feed: FeedThread, kafka_bootstrap: str, topics: dict[str, str]
) -> None:
    batam = alert("overstay", "KANIM-BATAM", "pk_aaaaaaaaaaaa", "2026-11-01")
    medan = alert("overstay", "KANIM-MEDAN", "pk_bbbbbbbbbbbb", "2026-11-01")
    publish(kafka_bootstrap, topics["alerts"], [batam, medan])
    assert feed.board is not None
    board = feed.board
    wait_for(lambda: len(board.alerts) == 2, "both alerts on the board")

    c = Client(feed.url)
    assert c.login("sup-batam") == 200
    status, page, _ = c.request("/")
    assert status == 200 and batam["alert_id"].encode() in page and medan["alert_id"].encode() not in page
    _, listed = c.json("/api/alerts")
    assert [a["alert_id"] for a in listed["alerts"]] == [batam["alert_id"]]
    assert c.request(f"/api/alerts/{medan['alert_id']}")[0] == 404
    assert c.request(f"/alerts/{medan['alert_id']}")[0] == 404
    status, detail, _ = c.request(f"/alerts/{batam['alert_id']}")
    assert status == 200 and b"charge_idr" in detail and b"TPI-X" in detail  # evidence and person history

    # the live stream: a new Batam alert arrives, the Medan one raised just before it never does
    req = urllib.request.Request(feed.url + "/stream")
    with c.opener.open(req, timeout=30) as stream:
        assert stream.readline().startswith(b": connected")
        later_medan = alert("report.late", "KANIM-MEDAN", "pk_cccccccccccc", "e-2")
        later_batam = alert("report.late", "KANIM-BATAM", "pk_dddddddddddd", "e-3")
        sent = time.monotonic()
        publish(kafka_bootstrap, topics["alerts"], [later_medan])
        publish(kafka_bootstrap, topics["alerts"], [later_batam])
        events = []
        while True:
            line = stream.readline()
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
                if events[-1]["alert_id"] == later_batam["alert_id"]:
                    break
        print(f"live: alert on the stream {time.monotonic() - sent:.2f} s after it was written")
    assert [e["alert_id"] for e in events] == [later_batam["alert_id"]]

    m = Client(feed.url)
    assert m.login("sup-medan") == 200
    _, theirs = m.json("/api/alerts")
    assert {a["alert_id"] for a in theirs["alerts"]} == {medan["alert_id"], later_medan["alert_id"]}


def _metrics(feed: FeedThread) -> dict[str, float]:
    status, body, _ = Client(feed.url).request("/metrics")
    assert status == 200
    return pora_samples(body.decode())


def test_triage_is_checked_and_written_to_the_actions_topic(
    feed: FeedThread, kafka_bootstrap: str, topics: dict[str, str], consume: Any
) -> None:
    a = alert("overstay", "KANIM-BATAM", "pk_aaaaaaaaaaab", "2026-11-02")
    publish(kafka_bootstrap, topics["alerts"], [a])
    assert feed.board is not None
    board = feed.board
    wait_for(lambda: a["alert_id"] in board.alerts, "the alert on the board")
    c = Client(feed.url)
    c.login("sup-batam")
    aid = a["alert_id"]
    before = _metrics(feed)

    status, problem = c.act(aid, {"action": "ACKNOWLEDGE"}, None)
    assert status == 403 and problem["errors"][0]["field"] == "csrf"
    token = c.csrf()
    status, problem = c.act(aid, {"action": "RESOLVE"}, token)
    assert status == 422 and problem["errors"][0]["field"] == "disposition"
    status, problem = c.act(aid, {"action": "RESOLVE", "disposition": "CLEARED"}, token)  # a TPPO outcome
    assert status == 422 and "CONFIRMED" in problem["detail"]
    assert c.act(aid, {"action": "ACKNOWLEDGE"}, token)[0] == 201
    status, done = c.act(aid, {"action": "RESOLVE", "disposition": "CONFIRMED", "comment": "met at the hotel"}, token)
    assert status == 201 and done["action"] == "RESOLVE"
    _, view = c.json(f"/api/alerts/{aid}")
    assert view["triage"] == "RESOLVED"
    assert [(x["action"], x["actor"]) for x in view["actions"]] == [
        ("ACKNOWLEDGE", "sup-batam"),
        ("RESOLVE", "sup-batam"),
    ]

    written = [codec().decode(r.value)[1] for r in consume(topics["alerts.actions"], 2)]
    assert [(w["action"], w["actor"], w["disposition"], w["office"]) for w in written] == [
        ("ACKNOWLEDGE", "sup-batam", None, "KANIM-BATAM"),
        ("RESOLVE", "sup-batam", "CONFIRMED", "KANIM-BATAM"),
    ]
    letters = [codec().decode(r.value)[1] for r in consume(topics["dead-letters"], 2)]
    assert {(d["step"], d["errors"][0]["field"]) for d in letters} == {("feed.action", "disposition")}
    after = _metrics(feed)  # anonymous, as Prometheus scrapes it
    for series, grew in {
        'pora_feed_actions_total{action="ACKNOWLEDGE",role="supervisor"}': 1,
        'pora_feed_actions_total{action="RESOLVE",role="supervisor"}': 1,
        'pora_feed_actions_rejected_total{reason="invalid"}': 2,
    }.items():
        assert after.get(series, 0) - before.get(series, 0) == grew, series
    assert after['pora_feed_alerts_held{state="RESOLVED"}'] >= 1

    # an API client with a token needs no CSRF token; a user of another office cannot act on it
    status, raw, _ = Client(feed.url).request(
        f"/api/alerts/{aid}/actions",
        json.dumps({"action": "COMMENT", "comment": "seen"}).encode(),
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert status == 201, raw
    other = Client(feed.url)
    other.login("sup-medan")
    assert other.act(aid, {"action": "ACKNOWLEDGE"}, other.csrf())[0] == 404


def test_an_agency_member_sees_its_rules_without_person_keys_and_cannot_resolve(
    feed: FeedThread, kafka_bootstrap: str, topics: dict[str, str]
) -> None:
    tppo = alert("tppo.screening", "KANIM-BATAM", "pk_eeeeeeeeeeee", "dep-1", ["one-way ticket (+2)"])
    overstay = alert("overstay", "KANIM-BATAM", "pk_ffffffffffff", "2026-11-03")
    publish(kafka_bootstrap, topics["alerts"], [tppo, overstay])
    assert feed.board is not None
    board = feed.board
    wait_for(lambda: len(board.alerts) == 2, "both alerts")
    c = Client(feed.url)
    c.login("polda")
    _, listed = c.json("/api/alerts")
    assert [a["alert_id"] for a in listed["alerts"]] == [tppo["alert_id"]]
    assert "person_key" not in listed["alerts"][0]["subject"]
    status, page, _ = c.request(f"/alerts/{tppo['alert_id']}")
    assert status == 200 and b"pk_eeeeeeeeeeee" not in page and b"Not shown for your role" in page
    token = c.csrf()
    assert c.act(tppo["alert_id"], {"action": "RESOLVE", "disposition": "REFERRED"}, token)[0] == 403
    assert c.act(tppo["alert_id"], {"action": "ACKNOWLEDGE"}, token)[0] == 201


def test_log_in_headers_and_anonymous_access(feed: FeedThread) -> None:
    c = Client(feed.url)
    status, page, _ = c.request("/login", b"name=sup-batam&password=wrong")
    assert status == 401 and b"Wrong user or password" in page
    assert c.request("/api/alerts")[0] == 401
    status, page, _ = c.request("/")
    assert b"Log in" in page  # redirected to the log-in page
    assert c.login("sup-batam") == 200
    status, _, headers = c.request("/")
    assert status == 200
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    cookie = next(iter(c.jar))
    assert cookie.name == "pora_session" and cookie.has_nonstandard_attr("HttpOnly")
    status, body, _ = c.request("/openapi.json")
    assert status == 200 and "/api/alerts/{alert_id}/actions" in json.loads(body)["paths"]

    # guessing a password: after ten failures the name is locked for a while, even with the right one
    guesser = Client(feed.url)
    codes = [guesser.request("/login", f"name=sup-medan&password=guess{i}".encode())[0] for i in range(10)]
    assert codes == [401] * 10
    status, page, headers = guesser.request("/login", f"name=sup-medan&password={PASSWORD}".encode())
    assert status == 429 and headers["Retry-After"] == "900" and b"Too many failed log-ins" in page


def test_an_api_action_sent_again_with_its_idempotency_key_is_written_once(
    feed: FeedThread, kafka_bootstrap: str, topics: dict[str, str], consume: Any
) -> None:
    a = alert("overstay", "KANIM-BATAM", "pk_aaaaaaaaaaac", "2026-11-04")
    publish(kafka_bootstrap, topics["alerts"], [a])
    assert feed.board is not None
    board = feed.board
    wait_for(lambda: a["alert_id"] in board.alerts, "the alert on the board")
    assert Client(feed.url).request("/readyz")[0] == 200

    def send(key: str) -> tuple[int, dict[str, Any]]:
        status, raw, _ = Client(feed.url).request(
            f"/api/alerts/{a['alert_id']}/actions",
            json.dumps({"action": "ACKNOWLEDGE"}).encode(),
            {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", "Idempotency-Key": key},
        )
        return status, json.loads(raw)

    first_status, first = send("retry-1")
    again_status, again = send("retry-1")  # the answer was lost: the client sends it again
    assert (first_status, again_status) == (201, 200) and again == first
    assert send("retry-2")[0] == 201  # another key is another action
    status, problem = send("not a key!")
    assert status == 422 and problem["errors"][0]["field"] == "Idempotency-Key"
    written = [codec().decode(r.value)[1] for r in consume(topics["alerts.actions"], 2)]
    assert [w["event_id"] for w in written].count(first["event_id"]) == 1
