"""The ingestion gateway's HTTP surface (aiohttp)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from connectors.gateway.ingest import (
    INGESTED_KINDS,
    RAW_KEEP_BYTES,
    Ingestor,
    Outcome,
    PublishError,
    iso,
    truncation_note,
)
from connectors.gateway.items import Rejection
from connectors.gateway.keys import KeyRing, Source
from connectors.gateway.openapi import openapi_document
from connectors.gateway.prepare import BodyProblem, Prepared, PreparePool, Preparer, default_workers
from connectors.gateway.problems import PROBLEM_TYPES, problem
from connectors.gateway.publisher import KafkaPublisher, Publisher
from connectors.gateway.rebuild import rebuild_dedup
from monitoring import metrics
from monitoring.aiohttp import metrics_endpoint
from schemas.codec import codec
from schemas.validation import FieldError
from streams.settings import Settings

log = logging.getLogger("pora.gateway")

# URL slug -> event kind
SLUGS: dict[str, str] = {k.replace("_", "-") + "s": k for k in INGESTED_KINDS}
KEYS = web.AppKey("keys", KeyRing)
INGESTOR = web.AppKey("ingestor", Ingestor)
SETTINGS = web.AppKey("settings", Settings)
READY = web.AppKey("ready", dict)


def _api_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("X-API-Key")


def _authenticate(request: web.Request) -> Source | web.Response:
    """The key's source, or the 401. Unauthenticated bodies are not read nor dead-lettered: anyone
    could fill the topic with them; they are counted in the access metrics instead."""
    key = _api_key(request)
    source = request.app[KEYS].authenticate(key)
    if source is None:
        return problem(
            401,
            "unauthenticated",
            "missing or unknown API key",
            headers={"WWW-Authenticate": 'Bearer realm="pora-gateway"'},
            errors=[{"field": "Authorization", "problem": "is missing" if not key else "is not a known API key"}],
        )
    return source


@dataclass(frozen=True)
class _Refused(BodyProblem):
    """A body refused before it was read whole: its first bytes, and its size as far as known."""

    head: bytes = b""
    size: str = ""


async def _read_body(request: web.Request) -> bytes | BodyProblem:
    """The body, or (larger than the limit) a 413 holding the body's first bytes only. Never holds
    more than the limit in memory, however large the body or its Content-Length."""
    limit = request.app[SETTINGS].gateway_max_body_bytes
    keep = min(RAW_KEEP_BYTES, limit)
    declared = request.content_length
    body = bytearray()
    if declared is not None and declared > limit:  # refused unread, but for the dead letter's copy
        while len(body) < keep and (chunk := await request.content.read(keep - len(body))):
            body += chunk
        return _too_large(bytes(body), limit, f"{declared} bytes (Content-Length)")
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > limit:  # no or a false Content-Length (chunked): read no further
            return _too_large(bytes(body[:keep]), limit, f"more than {limit} bytes")
    return bytes(body)


def _too_large(head: bytes, limit: int, size: str) -> BodyProblem:
    detail = f"the body is larger than {limit} bytes (PORA_GATEWAY_MAX_BODY_BYTES): {size}"
    errors = [FieldError("<body>", f"is {size}; at most {limit} are accepted")]
    return _Refused(413, "too-large", detail, "too_large", errors, "gateway.receive", head, size)


def _not_allowed(what: str, field: str) -> BodyProblem:
    return BodyProblem(403, "forbidden", what, "forbidden", [FieldError(field, what)], "gateway.authorize")


def _wrong_media_type(request: web.Request, wanted: str) -> BodyProblem:
    what = f"is {request.content_type!r}; send {wanted}"
    return BodyProblem(
        415,
        "unsupported-media-type",
        f"Content-Type {what}",
        "unsupported_media_type",
        [FieldError("Content-Type", what)],
        "gateway.receive",
    )


def _result(outcome: Outcome, total: int) -> web.Response:
    stamps: dict[int, str] = {}  # one ISO rendering per distinct received_at, not one per receipt
    receipts = [
        r.as_dict(stamps.get(r.received_at_ms) or stamps.setdefault(r.received_at_ms, iso(r.received_at_ms)))
        for r in outcome.receipts
        if r is not None
    ]
    accepted = len(receipts)
    if outcome.unavailable:
        return problem(
            503,
            "unavailable",
            f"{len(outcome.unavailable)} of {total} events were not acknowledged by the broker; "
            f"{accepted} were accepted (receipts below). Send the batch again: accepted events are idempotent.",
            headers={"Retry-After": "5"},
            accepted=accepted,
            receipts=receipts,
            unavailable=sorted(outcome.unavailable),
        )
    if outcome.rejections:
        errors = [e for rej in outcome.rejections for e in rej.as_dicts()]
        if outcome.forbidden:
            status, kind = 403, "forbidden"
        elif total == 1 and outcome.rejections[0].reason == "conflict":
            status, kind = 409, "conflict"
        elif total == 1 and outcome.rejections[0].reason == "too_large":
            status, kind = 413, "too-large"
        else:
            status, kind = 422, "invalid-events"
        detail = f"{len(outcome.rejections)} of {total} events were rejected and kept in the dead-letter topic"
        if accepted:
            detail += (
                f"; {accepted} were accepted (receipts below). Fix the rejected ones and send again: "
                "accepted events are idempotent"
            )
        return problem(
            status,
            kind,
            detail + ".",
            rejected=len(outcome.rejections),
            accepted=accepted,
            errors=errors,
            receipts=receipts,
        )
    return web.json_response(
        {"accepted": accepted, "duplicates": outcome.duplicates, "receipts": receipts},
        dumps=lambda o: orjson.dumps(o).decode(),
    )


async def _answer(
    request: web.Request,
    source: Source,
    kind: str,
    raw: bytes,
    prepared: Prepared | BodyProblem,
    now_ms: int,
    route: str,
    started: float,
) -> web.Response:
    ingestor = request.app[INGESTOR]
    if isinstance(prepared, BodyProblem):
        # the whole body is one dead letter (cut to RAW_KEEP_BYTES by the ingestor, or here when
        # it was refused before it was read whole)
        errors = prepared.errors
        if isinstance(prepared, _Refused):
            raw = prepared.head
            errors = [*errors, truncation_note(raw, len(raw), total=prepared.size)]
        await ingestor.dead_letter(
            source.id,
            kind,
            [Rejection(0, "", prepared.reason, errors, raw)],
            content_type=request.content_type,
            step=prepared.step,
        )
        metrics.EVENTS_REJECTED.labels(source.kind, kind, prepared.reason).inc()
        extra: dict[str, Any] = {"errors": [e.as_dict() for e in prepared.errors]} if prepared.errors else {}
        return problem(prepared.status, prepared.problem, prepared.detail, rejected=1, accepted=0, **extra)
    metrics.BATCH_SIZE.observe(prepared.total)
    outcome = await ingestor.complete(source, kind, prepared, now_ms, content_type=request.content_type)
    metrics.REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)
    return _result(outcome, prepared.total)


async def post_events(request: web.Request) -> web.Response:
    started = time.perf_counter()
    kind = SLUGS.get(request.match_info["kind"])
    if kind is None:
        what = f"{request.match_info['kind']!r} is not one of {', '.join(SLUGS)}"
        return problem(404, "not-found", f"no event kind {what}", errors=[{"field": "kind", "problem": what}])
    source = _authenticate(request)
    if isinstance(source, web.Response):
        return source
    raw = await _read_body(request)
    ingestor = request.app[INGESTOR]
    with ingestor.request_clock() as now_ms:
        prepared: Prepared | BodyProblem
        if isinstance(raw, BodyProblem):
            prepared, raw = raw, b""
        elif not source.may_send(kind):
            prepared = _not_allowed(f"a {source.kind} key may not send {kind} events", "kind")
        elif request.content_type != "application/json":
            prepared = _wrong_media_type(request, "application/json")
        else:
            limit = request.app[SETTINGS].gateway_max_batch
            prepared = await ingestor.pool.json(source, kind, raw, now_ms, limit)
        return await _answer(request, source, kind, raw, prepared, now_ms, "events", started)


async def post_register(request: web.Request) -> web.Response:
    started = time.perf_counter()
    source = _authenticate(request)
    if isinstance(source, web.Response):
        return source
    kind = "hotel_guest_event"
    raw = await _read_body(request)
    ingestor = request.app[INGESTOR]
    with ingestor.request_clock() as now_ms:
        prepared: Prepared | BodyProblem
        if isinstance(raw, BodyProblem):
            prepared, raw = raw, b""
        elif not source.may_send(kind) or not source.binds:
            what = "only a hotel key bound to one establishment may upload its guest register"
            prepared = _not_allowed(what, "Authorization")
        elif request.content_type not in ("text/csv", "application/csv", "text/plain"):
            prepared = _wrong_media_type(request, "text/csv")
        else:
            limit = request.app[SETTINGS].gateway_max_batch
            prepared = await ingestor.pool.register(source, raw, now_ms, limit)
        return await _answer(request, source, kind, raw, prepared, now_ms, "register", started)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[READY]
    ingestor = request.app[INGESTOR]
    ok = bool(state.get("dedup_rebuilt")) and ingestor.publisher.healthy()
    body = {
        "status": "ready" if ok else "starting",
        "dedup_entries": len(ingestor.dedup),
        "producer": ingestor.publisher.healthy(),
        "dedup_rebuilt": bool(state.get("dedup_rebuilt")),
    }
    return web.json_response(body, status=200 if ok else 503)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(SLUGS), dumps=lambda o: orjson.dumps(o).decode())


async def problem_doc(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in PROBLEM_TYPES:
        return problem(404, "not-found", f"no problem type {name!r}")
    return web.Response(text=f"{name}: {PROBLEM_TYPES[name]}\n")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_as_problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].gateway_max_body_bytes
        what = f"is larger than {limit} bytes"
        return problem(413, "too-large", f"the body {what}", errors=[{"field": "<body>", "problem": what}])
    except web.HTTPNotFound:
        what = f"no endpoint {request.method} {request.path}"
        return problem(404, "not-found", what, errors=[{"field": "<path>", "problem": "is not an endpoint"}])
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return problem(
            405,
            "method-not-allowed",
            f"{request.method} is not allowed here; use {allowed}",
            headers={"Allow": allowed},
            errors=[{"field": "<method>", "problem": f"{request.method} is not one of {allowed}"}],
        )
    except PublishError as exc:
        log.error("dead-letter write failed: %s", exc)
        return problem(
            503,
            "unavailable",
            "the broker did not acknowledge the dead-letter record; retry",
            headers={"Retry-After": "5"},
        )
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return problem(500, "internal", "unexpected error; it has been logged")


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    resp = await handler(request)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


async def _tick_forever(app: web.Application) -> None:
    """The event-time clock: ticks into every ingestion partition, so rules with deadlines fire
    even when nothing is reported."""
    settings, ingestor = app[SETTINGS], app[INGESTOR]
    source_id = f"gateway@{settings.gateway_host}:{settings.gateway_port}"
    while True:
        await asyncio.sleep(settings.gateway_tick_seconds)
        try:
            await ingestor.tick(source_id)
        except Exception as exc:  # the broker may be away for a while; the next tick retries
            log.warning("clock tick failed: %s", exc)


def build_app(settings: Settings, keys: KeyRing, publisher: Publisher | None = None) -> web.Application:
    """The gateway; the publisher and key ring are injectable so tests and replay can reuse it."""
    app = web.Application(
        client_max_size=settings.gateway_max_body_bytes, middlewares=[security_headers, errors_as_problems]
    )
    pub = publisher or KafkaPublisher(
        settings.kafka_bootstrap,
        send_timeout_s=settings.gateway_send_timeout_seconds,
        max_message_bytes=settings.kafka_max_message_bytes,
    )
    app[SETTINGS] = settings
    app[KEYS] = keys
    workers = settings.gateway_workers if settings.gateway_workers >= 0 else default_workers()
    secret, skew_ms = settings.person_secret, settings.gateway_clock_skew_seconds * 1000
    preparer = Preparer(secret, skew_ms)
    pool = PreparePool(preparer, secret, skew_ms, workers=workers, min_bytes=settings.gateway_worker_min_bytes)
    app[INGESTOR] = Ingestor(settings, pub, codec(), pool)
    app[READY] = {}

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await pub.start()
        if settings.gateway_rebuild_dedup:
            n = await rebuild_dedup(settings, app[INGESTOR].dedup)
            log.info("dedup index rebuilt from the topics: %d event ids", n)
        app[READY]["dedup_rebuilt"] = True
        ticker = asyncio.create_task(_tick_forever(app)) if settings.gateway_tick_seconds > 0 else None
        yield
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        await pub.stop()
        pool.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/events/{kind}", post_events)
    app.router.add_post("/v1/registers/hotel-guests", post_register)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/problems/{name}", problem_doc)
    return app


def run(settings: Settings, keys: KeyRing, *, print_fn: Callable[[str], Any] = print) -> None:
    app = build_app(settings, keys)
    web.run_app(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        print=print_fn,
        access_log=None,
        handle_signals=True,
    )
