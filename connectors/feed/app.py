"""The feed's web app (aiohttp): pages, JSON API, live stream (SSE), triage actions.

Every request is scoped to its user: a supervisor sees the alerts of its offices only, an agency
member those of its offices and rules without person keys, through the pages, the API and the
stream alike (one filter, :meth:`User.sees`). Actions are written to ``alerts.actions`` (and from
there by the sink to ClickHouse) and answered only once the broker acknowledged them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from connectors.feed import pages
from connectors.feed.board import DISPOSITIONS, RULE_IDS, SEVERITIES, TPPO_DISPOSITIONS, Alert, AlertBoard, Filters
from connectors.feed.sessions import Sessions
from connectors.feed.users import User, UserStore
from connectors.gateway.publisher import KafkaPublisher, OutRecord, Publisher
from monitoring import metrics
from monitoring.aiohttp import metrics_endpoint
from schemas.codec import DecodeError, codec
from streams import topics
from streams.settings import Mode, Settings

log = logging.getLogger("pora.feed")
COOKIE = "pora_session"
ACTIONS = ("ACKNOWLEDGE", "ASSIGN", "RESOLVE", "REOPEN", "COMMENT")
STATIC = Path(__file__).parent / "static"
_PERSON_KEY = re.compile(r"^pk_[0-9a-f]{8,64}$")
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

USERS = web.AppKey("users", UserStore)
BOARD = web.AppKey("board", AlertBoard)
SESSIONS = web.AppKey("sessions", Sessions)
SETTINGS = web.AppKey("settings", Settings)
PUBLISHER = web.AppKey("publisher", Publisher)
HISTORY = web.AppKey("history", object)
FAILURES = web.AppKey("failures", dict)  # user name -> monotonic times of recent failed log-ins
WATCHERS = web.AppKey("watchers", dict)
CAUGHT_UP = web.AppKey("caught_up", asyncio.Event)  # the board holds what was on the topics at start
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # user name -> live streams open
USER = web.RequestKey("user", object)  # the User, or None before log-in
NONCE = web.RequestKey("nonce", str)  # the session's nonce (CSRF tokens derive from it)
BEARER = web.RequestKey("bearer", bool)  # authenticated by an API token

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Problem(Exception):
    def __init__(self, status: int, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.field = status, detail, field


def _problem(status: int, detail: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": web.HTTPException.__name__, "status": status}
    body["title"] = {400: "Bad request", 401: "Not logged in", 403: "Forbidden", 404: "Not found"}.get(
        status, "Unprocessable" if status == 422 else "Unavailable"
    )
    body["detail"] = detail
    if field:
        body["errors"] = [{"field": field, "problem": detail}]
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/problem+json")


@web.middleware
async def security(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except Problem as p:
        response = _problem(p.status, p.detail, p.field)
    except web.HTTPException as exc:  # redirects, 404, 405: the same headers on every answer
        for k, v in HEADERS.items():
            exc.headers.setdefault(k, v)
        raise
    for k, v in HEADERS.items():
        response.headers.setdefault(k, v)
    return response


# what anyone may reach without logging in: these routes exactly (not path prefixes, so that
# no spelling of another path can pass for one of them)
PUBLIC = frozenset({"/login", "/healthz", "/readyz", "/metrics", "/static/feed.js", "/openapi.json"})


def _open_to_anyone(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    if resource is None:  # no such route (or method): the 404 or 405 tells nothing, to anyone
        return True
    return resource.canonical in PUBLIC


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[USER], request[NONCE], request[BEARER] = None, "", False
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        user = request.app[USERS].by_token(auth[7:].strip())
        if user is None:
            raise Problem(401, "the bearer token is not valid")
        request[USER], request[BEARER] = user, True
    else:
        found = request.app[SESSIONS].verify(request.cookies.get(COOKIE, ""))
        if found is not None:
            user = request.app[USERS].users.get(found[0])
            if user is not None:
                request[USER], request[NONCE] = user, found[1]
    if request[USER] is None and not _open_to_anyone(request):
        if request.path.startswith(("/api/", "/stream")):
            raise Problem(401, "log in (session cookie) or send 'Authorization: Bearer <token>'")
        raise web.HTTPSeeOther("/login")
    return await handler(request)


def _user(request: web.Request) -> User:
    user = request[USER]
    assert isinstance(user, User)
    return user


def _csrf(request: web.Request) -> str:
    return request.app[SESSIONS].csrf(request[NONCE]) if request[NONCE] else ""


def _check_csrf(request: web.Request, token: str | None) -> None:
    if request[BEARER]:
        return  # token clients are not browsers: no ambient credentials to forge
    if not request.app[SESSIONS].check_csrf(request[NONCE], token):
        raise Problem(403, "missing or wrong CSRF token: reload the page", "csrf")


def _day_ms(text: str, name: str, end: bool = False) -> int:
    try:
        d = date.fromisoformat(text)
    except ValueError:
        raise Problem(422, f"{text!r} is not a date (YYYY-MM-DD)", name) from None
    start = datetime(d.year, d.month, d.day, tzinfo=UTC) - timedelta(hours=7) + timedelta(days=1 if end else 0)
    return int(start.timestamp() * 1000) - (1 if end else 0)


def _filters(request: web.Request) -> Filters:
    q = request.query
    severity = q.get("severity") or None
    if severity and severity not in SEVERITIES:
        raise Problem(422, f"{severity!r} is not one of {', '.join(SEVERITIES)}", "severity")
    return Filters(
        office=q.get("office") or None,
        rule=q.get("rule") or None,
        severity=severity,
        status=q.get("status") or None,
        since=_day_ms(q["since"], "since") if q.get("since") else None,
        until=_day_ms(q["until"], "until", end=True) if q.get("until") else None,
    )


def _visible_alert(request: web.Request) -> Alert:
    alert = request.app[BOARD].alerts.get(request.match_info["alert_id"])
    if alert is None or not _user(request).sees(alert.office, alert.rule_id):
        raise Problem(404, "no such alert")  # another office's alert does not exist for this user
    return alert


# ---------------------------------------------------------------------- pages


async def login_form(request: web.Request) -> web.Response:
    return web.Response(text=pages.login_page(), content_type="text/html")


LOCKOUT_FAILURES, LOCKOUT_SECONDS = 10, 900


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    failures = request.app[FAILURES]
    now = time.monotonic()
    recent = [t for t in failures.get(name, []) if now - t < LOCKOUT_SECONDS]
    if len(recent) >= LOCKOUT_FAILURES:  # guessing: this name waits, whoever asks
        log.warning("log-in for %r refused: %d failures in %d s", name, len(recent), LOCKOUT_SECONDS)
        metrics.FEED_LOGINS.labels("locked").inc()
        text = pages.login_page(f"Too many failed log-ins for this user: try again in {LOCKOUT_SECONDS // 60} minutes.")
        return web.Response(status=429, text=text, content_type="text/html", headers={"Retry-After": "900"})
    user = await asyncio.get_running_loop().run_in_executor(None, request.app[USERS].login, name, password)
    if user is None:
        failures[name] = [*recent, now]
        log.warning("failed log-in for %r from %s", name, request.remote)
        metrics.FEED_LOGINS.labels("wrong").inc()
        return web.Response(status=401, text=pages.login_page("Wrong user or password."), content_type="text/html")
    failures.pop(name, None)
    metrics.FEED_LOGINS.labels("ok").inc()
    response = web.HTTPSeeOther("/")
    settings = request.app[SETTINGS]
    response.set_cookie(
        COOKIE,
        request.app[SESSIONS].issue(user.name),
        httponly=True,
        samesite="Strict",
        secure=settings.mode is Mode.PRODUCTION,
        max_age=int(settings.feed_session_hours * 3600),
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    form = await request.post()
    _check_csrf(request, str(form.get("csrf", "")))
    request.app[SESSIONS].revoke(request.cookies.get(COOKIE, ""))  # a copy of the cookie is worth nothing now
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE)
    raise response


async def index(request: web.Request) -> web.Response:
    user, board = _user(request), request.app[BOARD]
    filters = _filters(request)
    found = board.visible(user, filters)
    scope = board.visible(user)
    shown = found[:500]
    page = pages.list_page(
        user,
        _csrf(request),
        [a.view(user) for a in shown],
        board.counts(user, filters),
        board.per_day(found),
        filters,
        sorted({a.office for a in scope} | (set() if user.role == "admin" else set(user.offices))),
        sorted({a.rule_id for a in scope} | (set(user.rules) if user.role == "agency" else set(RULE_IDS))),
        len(shown),
    )
    return web.Response(text=page, content_type="text/html")


async def detail(request: web.Request) -> web.Response:
    user, alert = _user(request), _visible_alert(request)
    view = alert.view(user, detail=True)
    people = '<p class="muted">Not shown for your role.</p>'
    key = alert.record["subject"].get("person_key")
    if user.sees_people and key:
        people = await _people(request, str(key))
    return web.Response(text=pages.detail_page(user, _csrf(request), view, people), content_type="text/html")


async def _people(request: web.Request, person_key: str) -> str:
    history = request.app[HISTORY]
    if not _PERSON_KEY.match(person_key) or not callable(history):
        return '<p class="muted">No history.</p>'
    try:
        crossings, stays = await asyncio.get_running_loop().run_in_executor(None, history, person_key)
    except Exception as exc:  # analytics are a help here, not a condition (the reason is for the log only)
        log.warning("person history unavailable: %s", exc)
        return '<p class="muted">Analytics unavailable just now: the crossings and stays are not shown.</p>'
    return pages.people_table(crossings, stays)


async def action_form(request: web.Request) -> web.Response:
    form = await request.post()
    _check_csrf(request, str(form.get("csrf", "")))
    fields = {k: str(v) for k, v in form.items() if k != "csrf" and str(v)}
    record = await _act(request, fields)
    raise web.HTTPSeeOther(f"/alerts/{quote(record['alert_id'], safe='')}")


async def static(request: web.Request) -> web.Response:
    return web.Response(
        body=(STATIC / "feed.js").read_bytes(),
        content_type="application/javascript",
        headers={"Cache-Control": "no-cache"},
    )


async def feed_metrics(request: web.Request) -> web.Response:
    held: dict[str, int] = dict.fromkeys(("OPEN", "ACKNOWLEDGED", "ASSIGNED", "RESOLVED"), 0)
    for alert in request.app[BOARD].alerts.values():
        held[alert.triage] = held.get(alert.triage, 0) + 1
    for state, n in held.items():
        metrics.FEED_ALERTS_HELD.labels(state).set(n)
    return await metrics_endpoint(request)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "alerts": len(request.app[BOARD].alerts)})


async def readyz(request: web.Request) -> web.Response:
    """Ready once the board holds every alert and action written before the feed started."""
    if not request.app[CAUGHT_UP].is_set():
        return _problem(503, "still reading the alerts and actions")
    return web.json_response({"status": "ready", "alerts": len(request.app[BOARD].alerts)})


# ---------------------------------------------------------------------- API


async def api_alerts(request: web.Request) -> web.Response:
    user = _user(request)
    limit = request.query.get("limit", "200")
    if not limit.isdigit() or not 1 <= int(limit) <= 5000:
        raise Problem(422, "limit must be a whole number from 1 to 5000", "limit")
    found = request.app[BOARD].visible(user, _filters(request))
    return _json({"total": len(found), "alerts": [a.view(user) for a in found[: int(limit)]]})


async def api_alert(request: web.Request) -> web.Response:
    return _json(_visible_alert(request).view(_user(request), detail=True))


async def api_counts(request: web.Request) -> web.Response:
    user, board = _user(request), request.app[BOARD]
    filters = _filters(request)
    return _json({"by_rule": board.counts(user, filters), "per_day": board.per_day(board.visible(user, filters))})


async def api_action(request: web.Request) -> web.Response:
    _check_csrf(request, request.headers.get("X-CSRF-Token"))
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        await _dead_letter(request, raw, "<body>", f"not JSON: {exc}")
        raise Problem(400, f"the body is not JSON: {exc}", "<body>") from None
    if not isinstance(body, dict):
        await _dead_letter(request, raw, "<body>", "not a JSON object")
        raise Problem(422, "the body must be a JSON object", "<body>")
    key = request.headers.get("Idempotency-Key")
    try:
        if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
            raise Problem(422, "Idempotency-Key must be 1 to 128 letters, digits or -_.:", "Idempotency-Key")
        existing = _recorded(request, key)
        record = existing or await _act(request, {k: str(v) for k, v in body.items() if v is not None}, key)
    except Problem as p:
        if p.status == 422:
            await _dead_letter(request, raw, p.field or "<body>", p.detail)
        raise
    answer = {"event_id": record["event_id"], "alert_id": record["alert_id"], "action": record["action"]}
    return _json(answer, 200 if existing else 201)


def _action_id(request: web.Request, key: str | None) -> str:
    """A client's Idempotency-Key names one action of that user: a retry (after a timeout, or a
    feed that stopped before answering) writes nothing new."""
    if key is None:
        return f"act-{uuid.uuid4().hex}"
    return "act-" + hashlib.sha256(f"{_user(request).name}\n{key}".encode()).hexdigest()[:32]


def _recorded(request: web.Request, key: str | None) -> dict[str, Any] | None:
    """The action already written under this Idempotency-Key, once the feed has read the topic."""
    if key is None:
        return None
    if not request.app[CAUGHT_UP].is_set():
        raise Problem(503, "the feed is still reading the alerts and actions: try again shortly")
    found: dict[str, Any] | None = request.app[BOARD].actions.get(_action_id(request, key))
    return found


async def stream(request: web.Request) -> web.StreamResponse:
    user, board = _user(request), request.app[BOARD]
    filters = _filters(request)
    response = web.StreamResponse(  # its headers go out now: the security middleware would be too late
        headers={
            **HEADERS,
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    queue = board.subscribe()
    watchers = request.app[WATCHERS]
    watchers[user.name] = watchers.get(user.name, 0) + 1
    metrics.FEED_CONNECTED.labels(user.role).inc()
    metrics.FEED_USERS_CONNECTED.set(len(watchers))
    try:
        await response.write(b": connected\n\n")
        while True:
            try:
                alert = await asyncio.wait_for(queue.get(), timeout=15)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if alert is None:  # this client fell behind: it reloads
                await response.write(b"event: reload\ndata: {}\n\n")
                break
            if user.sees(alert.office, alert.rule_id) and filters.match(alert):
                await response.write(b"event: alert\ndata: " + orjson.dumps(alert.view(user)) + b"\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        board.unsubscribe(queue)
        watchers[user.name] -= 1
        if not watchers[user.name]:
            del watchers[user.name]
        metrics.FEED_CONNECTED.labels(user.role).dec()
        metrics.FEED_USERS_CONNECTED.set(len(watchers))
    return response


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


# ---------------------------------------------------------------------- actions


_REFUSALS = {403: "forbidden", 404: "unknown_alert", 422: "invalid", 503: "not_recorded"}


async def _act(request: web.Request, fields: dict[str, str], key: str | None = None) -> dict[str, Any]:
    try:
        record = await _record_action(request, fields, key)
    except Problem as p:
        metrics.FEED_ACTIONS_REJECTED.labels(_REFUSALS.get(p.status, str(p.status))).inc()
        raise
    metrics.FEED_ACTIONS.labels(record["action"], record["actor_role"]).inc()
    return record


async def _record_action(request: web.Request, fields: dict[str, str], key: str | None) -> dict[str, Any]:
    if not request.app[CAUGHT_UP].is_set():  # an alert not read yet would look unknown (404)
        raise Problem(503, "the feed is still reading the alerts and actions: try again shortly")
    user, alert = _user(request), _visible_alert(request)
    action = fields.get("action", "").upper()
    if action not in ACTIONS:
        raise Problem(422, f"{action or 'nothing'!r} is not one of {', '.join(ACTIONS)}", "action")
    if not user.may(action):
        raise Problem(403, f"a {user.role} may not {action.lower()} alerts", "action")
    disposition = fields.get("disposition", "").upper() or None
    allowed = (
        DISPOSITIONS
        if alert.rule_id == "tppo.screening"
        else tuple(d for d in DISPOSITIONS if d not in TPPO_DISPOSITIONS)
    )
    if action == "RESOLVE" and disposition not in allowed:
        raise Problem(422, f"resolving needs a disposition: one of {', '.join(allowed)}", "disposition")
    if action != "RESOLVE" and disposition is not None:
        raise Problem(422, "a disposition goes with RESOLVE only", "disposition")
    assignee = fields.get("assignee") or None
    if action == "ASSIGN" and not assignee:
        raise Problem(422, "assigning needs an assignee", "assignee")
    comment = fields.get("comment") or None
    if comment is not None and len(comment) > 2000:
        raise Problem(422, "the comment is longer than 2,000 characters", "comment")
    now = int(time.time() * 1000)
    record = {
        "event_id": _action_id(request, key),
        "occurred_at": now,
        "reported_at": now,
        "alert_id": alert.alert_id,
        "rule_id": alert.rule_id,
        "office": alert.office,
        "action": action,
        "actor": user.name,
        "actor_role": user.role,
        "assignee": assignee if action == "ASSIGN" else None,
        "disposition": disposition,
        "comment": comment,
    }
    settings = request.app[SETTINGS]
    out = OutRecord(
        settings.topic(topics.ALERT_ACTIONS), alert.alert_id.encode(), codec().encode("alert_action", record)
    )
    (error,) = await request.app[PUBLISHER].publish([out])
    if error is not None:
        raise Problem(503, f"the action was not recorded (the broker did not acknowledge it): {error}")
    request.app[BOARD].apply_action(codec().decode(out.value, ms_times=True)[1])
    log.info("%s %s %s %s", user.name, action, alert.alert_id, disposition or "")
    return record


async def _dead_letter(request: web.Request, raw: bytes, field: str, problem: str) -> None:
    now = int(time.time() * 1000)
    user = request[USER]
    assert user is None or isinstance(user, User)
    record = {
        "event_id": f"dl-feed-{uuid.uuid4().hex}",
        "occurred_at": now,
        "reported_at": now,
        "source": f"feed:{user.name if user else 'anonymous'}",
        "step": "feed.action",
        "kind": "alert_action",
        "reason": "invalid",
        "errors": [{"field": field, "problem": problem}],
        "content_type": request.content_type or "application/octet-stream",
        "raw": raw,
    }
    settings = request.app[SETTINGS]
    out = OutRecord(settings.topic(topics.DEAD_LETTERS), b"feed", codec().encode("dead_letter", record))
    with contextlib.suppress(Exception):
        await request.app[PUBLISHER].publish([out])
        metrics.DEAD_LETTERS.labels("feed.action", "invalid").inc()


# ---------------------------------------------------------------------- reading the topics


async def follow(
    settings: Settings, board: AlertBoard, ready: asyncio.Event | None = None, caught_up: asyncio.Event | None = None
) -> None:
    """Read alerts and actions from the beginning, then follow them; the board keeps the state.
    ``caught_up`` is set once every partition has been read to the high watermark seen on start."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = codec()
    names = [settings.topic(topics.ALERTS), settings.topic(topics.ALERT_ACTIONS)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        client_id="pora-feed",
    )
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(n, p) for n in names for p in sorted(consumer.partitions_for_topic(n) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        if ready is not None:
            ready.set()
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            if caught_up is not None and not caught_up.is_set() and await _read_to_end(consumer, tps):
                caught_up.set()
            for tp, records in batches.items():
                for r in records:
                    try:
                        kind, record = c.decode(r.value, ms_times=True)
                    except DecodeError as exc:
                        log.warning("%s[%d:%d] undecodable: %s", tp.topic, tp.partition, r.offset, exc)
                        continue
                    if kind == "alert":
                        board.apply_alert(record)
                    elif kind == "alert_action":
                        board.apply_action(record)
    finally:
        await consumer.stop()


async def _read_to_end(consumer: Any, tps: list[Any]) -> bool:
    """Every partition's position at its high watermark (from fetch responses: exact on Tansu).
    Records just fetched are applied right after this check, before the next one."""
    for tp in tps:
        end = consumer.highwater(tp)
        if end is None or await consumer.position(tp) < end:
            return False
    return True


def person_history(settings: Settings) -> Callable[[str], tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """The person's latest crossings and hotel events from ClickHouse (a store per call: the
    server driver is not thread-safe, and chdb is shared with the sink by path)."""

    def history(person_key: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        from connectors.sink.reports import sql_string
        from connectors.sink.store import open_store

        key = sql_string(person_key)  # a literal, escaped: never the text itself in the statement
        store = open_store(settings)
        try:
            db = store.database
            crossings = store.query(
                f"SELECT toString(occurred_at), direction, checkpoint_id, ifNull(destination_country, '') "
                f"FROM {db}.border_crossings FINAL WHERE person_key = {key} ORDER BY occurred_at DESC LIMIT 10"
            ).rows
            stays = store.query(
                f"SELECT toString(check_in_date), action, establishment_name, region "
                f"FROM {db}.hotel_guest_events FINAL WHERE person_key = {key} "
                "ORDER BY occurred_at DESC LIMIT 10"
            ).rows
        finally:
            store.close()
        return crossings, stays

    return history


def build_feed(
    settings: Settings,
    users: UserStore,
    board: AlertBoard | None = None,
    publisher: Publisher | None = None,
    *,
    follow_topics: bool = True,
    history: Callable[[str], Any] | None = None,
) -> web.Application:
    app = web.Application(middlewares=[security, authenticate], client_max_size=64 * 1024)
    app[USERS] = users
    app[BOARD] = board or AlertBoard(
        horizon_days=settings.feed_board_days, critical_days=settings.feed_board_critical_days
    )
    app[SESSIONS] = Sessions(settings.feed_key, settings.feed_session_hours)
    app[SETTINGS] = settings
    app[PUBLISHER] = publisher or KafkaPublisher(settings.kafka_bootstrap, client_id="pora-feed")
    app[HISTORY] = history if history is not None else person_history(settings)
    app[FAILURES] = {}
    app[WATCHERS] = {}
    app[CAUGHT_UP] = asyncio.Event()
    app.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/metrics", feed_metrics),
            web.get("/login", login_form),
            web.post("/login", login),
            web.post("/logout", logout),
            web.get("/", index),
            web.get("/alerts/{alert_id}", detail),
            web.post("/alerts/{alert_id}/actions", action_form),
            web.get("/stream", stream),
            web.get("/static/feed.js", static),
            web.get("/api/alerts", api_alerts),
            web.get("/api/alerts/{alert_id}", api_alert),
            web.post("/api/alerts/{alert_id}/actions", api_action),
            web.get("/api/counts", api_counts),
            web.get("/openapi.json", openapi),
        ]
    )

    async def keep_following() -> None:
        while True:  # a broker outage ends the reader: start again (the board ignores what it has seen)
            try:
                await follow(settings, app[BOARD], caught_up=app[CAUGHT_UP])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading the alerts failed; again in 2 s")
                await asyncio.sleep(2)

    async def lifecycle(app: web.Application) -> Any:
        await app[PUBLISHER].start()
        task = asyncio.create_task(keep_following()) if follow_topics else None
        if not follow_topics:  # the caller fills the board itself
            app[CAUGHT_UP].set()
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await app[PUBLISHER].stop()

    async def close_streams(app: web.Application) -> None:
        app[BOARD].close_streams()  # else open event streams hold the shutdown for its whole timeout

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(close_streams)
    return app


async def openapi(request: web.Request) -> web.Response:
    from connectors.feed.openapi import spec

    return _json(spec())


def run_feed(settings: Settings) -> None:
    users = UserStore.load(settings.users_file)
    if not users.users:
        raise SystemExit(f"no feed users in {settings.users_file}: add some with `pora users add`")
    web.run_app(build_feed(settings, users), host=settings.feed_host, port=settings.feed_port, print=None)
