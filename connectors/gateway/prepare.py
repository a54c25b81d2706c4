"""The CPU-bound half of ingestion, with no I/O and no shared state: parse, validate, authorise,
pseudonymise, digest and Avro-encode each item of a request.

Because it is pure it can run in worker processes (``PreparePool``) while the gateway's main
process keeps what must stay single (the idempotence index, the producer, HTTP). One process
alone spends ~90 us of CPU per event; the pool spreads that over the cores.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from connectors.gateway.items import Item, Rejection
from connectors.gateway.keys import Source
from connectors.gateway.register_csv import RegisterError, parse_register
from schemas.codec import codec
from schemas.person import normalised_person_key
from schemas.validation import INGESTED_KINDS, FieldError, Validator


class Ready(NamedTuple):
    """An item ready to publish."""

    at: int  # its index in the request
    label: str
    event_id: str
    client_id: str
    digest: str
    key: bytes
    value: bytes


@dataclass
class Prepared:
    total: int
    ready: list[Ready] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


@dataclass(frozen=True)
class BodyProblem:
    """The request as a whole is refused (unparseable, too large, empty, not allowed); its body
    goes to the dead letters whole, as one record."""

    status: int
    problem: str  # problem type
    detail: str
    reason: str  # dead-letter reason
    errors: list[FieldError] = field(default_factory=list)
    step: str = "gateway.parse"  # where it was refused, as the dead letter names it


_NOT_CONTENT = frozenset({"reported_at", "source", "event_id"})


def content_digest(record: dict[str, Any]) -> str:
    # Validated records list their fields in schema order, so no key sorting is needed.
    stable = [v for k, v in record.items() if k not in _NOT_CONTENT]
    return hashlib.blake2b(orjson.dumps(stable), digest_size=16).hexdigest()


def identities(kind: str, rec: dict[str, Any]) -> list[dict[str, Any]]:
    if kind == "hotel_guest_event":
        return [rec["guest"]]
    if kind == "border_crossing":
        return [rec["traveller"]]
    if kind == "permit_update":
        return [rec["holder"]]
    if kind == "agency_report":
        return [rec["subject"]] if rec.get("subject") else []
    if kind == "sponsor_report":
        return [e["foreigner"] for e in rec["roster"]] + [c["foreigner"] for c in rec["changes"]]
    return []


def partition_key(kind: str, rec: dict[str, Any]) -> bytes:
    """Person-centric events are keyed by person so one traveller's events share a partition."""
    if kind == "sponsor_report":
        return str(rec["sponsor"]["sponsor_id"]).encode()
    if kind == "agency_report":
        subject = rec.get("subject")
        return str(subject["person_key"] if subject else rec["agency"]["agency_id"]).encode()
    return str(identities(kind, rec)[0]["person_key"]).encode()


def event_id_for(source: Source, client_id: str, digest: str) -> str:
    # Client ids are namespaced by source so that two hotels' "1" never collide; trusted
    # system sources (replay, simulator) keep the global ids they carry.
    if source.trusted_clock:
        return client_id or f"{source.id}/h-{digest}"
    return f"{source.id}/{client_id}" if client_id else f"{source.id}/h-{digest}"


class Preparer:
    def __init__(self, secret: bytes, skew_ms: int) -> None:
        self._secret = secret
        self._skew_ms = skew_ms
        self._validators = {k: Validator(k) for k in INGESTED_KINDS}
        self._codec = codec()

    def prepare(self, source: Source, kind: str, items: Sequence[Item], now_ms: int) -> Prepared:
        validator = self._validators[kind]
        out = Prepared(total=len(items))
        trusted = source.trusted_clock
        for i, item in enumerate(items):
            checked = validator(item.value, now_ms=now_ms, max_skew_ms=self._skew_ms, trusted_clock=trusted)
            record = checked.record
            if item.problems or checked.problems or record is None:
                errors = [*item.problems, *checked.problems]
                out.rejections.append(Rejection(i, item.label, "invalid", errors, item.raw_bytes()))
                continue
            foreign = source.foreign_binding(kind, record)
            if foreign is not None:
                out.rejections.append(Rejection(i, item.label, "forbidden", [FieldError(*foreign)], item.raw_bytes()))
                continue
            record["source"] = source.id
            for ident in identities(kind, record):
                ident["person_key"] = normalised_person_key(
                    self._secret, ident["nationality"], ident["document_number"]
                )
            client_id = record["event_id"]
            digest = content_digest(record)
            event_id = record["event_id"] = event_id_for(source, client_id, digest)
            corrects = record.get("corrects_event_id")
            if corrects and not trusted:
                record["corrects_event_id"] = f"{source.id}/{corrects}"
            out.ready.append(
                Ready(
                    i,
                    item.label,
                    event_id,
                    client_id,
                    digest,
                    partition_key(kind, record),
                    self._codec.encode(kind, record),
                )
            )
        return out

    def prepare_json(
        self, source: Source, kind: str, body: bytes, now_ms: int, max_batch: int
    ) -> Prepared | BodyProblem:
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return BodyProblem(
                400,
                "malformed-body",
                f"the body is not valid JSON: {exc}",
                "malformed_json",
                [FieldError("<body>", str(exc))],
            )
        if isinstance(value, dict) and isinstance(value.get("events"), list) and len(value) == 1:
            value = value["events"]
        if not isinstance(value, list):
            return self.prepare(source, kind, [Item(value=value, raw=body)], now_ms)
        if not value:
            return BodyProblem(
                422, "invalid-events", "the batch is empty", "empty", [FieldError("<body>", "holds no events")]
            )
        if len(value) > max_batch:
            too_many = f"holds {len(value)} events; at most {max_batch} (PORA_GATEWAY_MAX_BATCH) per request"
            return BodyProblem(413, "too-large", f"the batch {too_many}", "too_large", [FieldError("<body>", too_many)])
        return self.prepare(source, kind, [Item(value=v, label=f"[{i}]") for i, v in enumerate(value)], now_ms)

    def prepare_register(self, source: Source, body: bytes, now_ms: int, max_batch: int) -> Prepared | BodyProblem:
        try:
            items = parse_register(body, source)
        except RegisterError as exc:
            return BodyProblem(
                400, "malformed-body", f"the register cannot be read: {exc}", "malformed_csv", exc.problems
            )
        if len(items) > max_batch:
            too_many = f"holds {len(items)} rows; at most {max_batch} (PORA_GATEWAY_MAX_BATCH) per upload"
            return BodyProblem(
                413, "too-large", f"the register {too_many}", "too_large", [FieldError("<file>", too_many)]
            )
        return self.prepare(source, "hotel_guest_event", items, now_ms)


# ------------------------------------------------------------- worker processes

_WORKER: Preparer | None = None


def _init_worker(secret: bytes, skew_ms: int) -> None:
    global _WORKER
    _WORKER = Preparer(secret, skew_ms)


def _json_in_worker(source: Source, kind: str, body: bytes, now_ms: int, max_batch: int) -> Prepared | BodyProblem:
    assert _WORKER is not None
    return _WORKER.prepare_json(source, kind, body, now_ms, max_batch)


def _register_in_worker(source: Source, body: bytes, now_ms: int, max_batch: int) -> Prepared | BodyProblem:
    assert _WORKER is not None
    return _WORKER.prepare_register(source, body, now_ms, max_batch)


class PreparePool:
    """Runs large requests' preparation in worker processes; small ones stay in-process, where a
    round trip to a worker would cost more than it saves."""

    def __init__(self, preparer: Preparer, secret: bytes, skew_ms: int, workers: int, min_bytes: int) -> None:
        self.local = preparer
        self.workers = workers
        self._min_bytes = min_bytes
        self._pool = (
            ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(secret, skew_ms)) if workers > 0 else None
        )

    async def json(self, source: Source, kind: str, body: bytes, now_ms: int, max_batch: int) -> Prepared | BodyProblem:
        if self._pool is None or len(body) < self._min_bytes:
            return self.local.prepare_json(source, kind, body, now_ms, max_batch)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _json_in_worker, source, kind, body, now_ms, max_batch)

    async def register(self, source: Source, body: bytes, now_ms: int, max_batch: int) -> Prepared | BodyProblem:
        if self._pool is None or len(body) < self._min_bytes:
            return self.local.prepare_register(source, body, now_ms, max_batch)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _register_in_worker, source, body, now_ms, max_batch)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def default_workers() -> int:
    """One worker per core beyond the first, which the event loop and the producer keep busy."""
    return max(0, (os.cpu_count() or 1) - 1)
