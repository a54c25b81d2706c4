"""The ingestion gateway's HTTP surface (aiohttp)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from connectors.gateway.ingest import INGESTED_KINDS, Ingestor, Outcome, PublishError, iso
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
    source = request.app[KEYS].authenticate(_api_key(request))
    if source is None:
        return problem(
            401,
            "unauthenticated",
            "missing or unknown API key",
            headers={"WWW-Authenticate": 'Bearer realm="pora-gateway"'},
        )
    return source


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
        if prepared.reason:
            await ingestor.dead_letter(
                source.id,
                kind,
                [Rejection(0, "", prepared.reason, prepared.errors, raw)],
                content_type=request.content_type,
                step="gateway.parse",
            )
            metrics.EVENTS_REJECTED.labels(source.kind, kind, prepared.reason).inc()
        extra: dict[str, Any] = {"errors": [e.as_dict() for e in prepared.errors]} if prepared.errors else {}
        return problem(prepared.status, prepared.problem, prepared.detail, **extra)
    metrics.BATCH_SIZE.observe(prepared.total)
    outcome = await ingestor.complete(source, kind, prepared, now_ms, content_type=request.content_type)
    metrics.REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)
    return _result(outcome, prepared.total)


async def post_events(request: web.Request) -> web.Response:
    started = time.perf_counter()
    kind = SLUGS.get(request.match_info["kind"])
    if kind is None:
        return problem(404, "not-found", f"no event kind {request.match_info['kind']!r}; kinds: {', '.join(SLUGS)}")
    source = _authenticate(request)
    if isinstance(source, web.Response):
        return source
    if not source.may_send(kind):
        return problem(403, "forbidden", f"a {source.kind} key may not send {kind} events")
    if request.content_type != "application/json":
        return problem(415, "unsupported-media-type", f"send application/json, not {request.content_type!r}")
    raw = await request.read()
    limit = request.app[SETTINGS].gateway_max_batch
    with request.app[INGESTOR].request_clock() as now_ms:
        prepared = await request.app[INGESTOR].pool.json(source, kind, raw, now_ms, limit)
        return await _answer(request, source, kind, raw, prepared, now_ms, "events", started)


async def post_register(request: web.Request) -> web.Response:
    started = time.perf_counter()
    source = _authenticate(request)
    if isinstance(source, web.Response):
        return source
    kind = "hotel_guest_event"
    if not source.may_send(kind) or not source.binds:
        return problem(403, "forbidden", "only a hotel key bound to one establishment may upload its guest register")
    if request.content_type not in ("text/csv", "application/csv", "text/plain"):
        return problem(415, "unsupported-media-type", f"send text/csv, not {request.content_type!r}")
    raw = await request.read()
    limit = request.app[SETTINGS].gateway_max_batch
    with request.app[INGESTOR].request_clock() as now_ms:
        prepared = await request.app[INGESTOR].pool.register(source, raw, now_ms, limit)
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
        return problem(413, "too-large", f"the body is larger than {limit} bytes")
    except web.HTTPNotFound:
        return problem(404, "not-found", f"no endpoint {request.method} {request.path}")
    except web.HTTPMethodNotAllowed as exc:
        return problem(405, "not-found", f"{request.method} is not allowed here; use {', '.join(exc.allowed_methods)}")
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
    pub = publisher or KafkaPublisher(settings.kafka_bootstrap, send_timeout_s=settings.gateway_send_timeout_seconds)
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
