"""Ingestion, independent of HTTP: validate, authorise, pseudonymise, deduplicate, publish, receipt.

Used by the HTTP gateway and by file replay, so every way in applies the same rules. Rejected
input always goes to the dead-letter topic with its reasons before the caller hears "no", and a
receipt is only issued after the broker acknowledged the event.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from connectors.gateway.keys import Source
from connectors.gateway.publisher import OutRecord, Publisher
from monitoring import metrics
from schemas.codec import Codec
from schemas.person import person_key
from schemas.validation import FieldError, Validator
from streams import topics
from streams.settings import Settings

TOPIC_OF_KIND = {
    "hotel_guest_event": topics.HOTEL_GUEST_EVENTS,
    "border_crossing": topics.BORDER_CROSSINGS,
    "sponsor_report": topics.SPONSOR_REPORTS,
    "permit_update": topics.PERMIT_UPDATES,
    "agency_report": topics.AGENCY_REPORTS,
}
INGESTED_KINDS = tuple(TOPIC_OF_KIND)

# Record headers the gateway writes; the dedup index is rebuilt from them after a restart.
H_EVENT_ID, H_KIND, H_RECEIPT, H_RECEIVED, H_DIGEST = "event_id", "kind", "receipt_id", "received_at", "digest"
H_CLIENT_ID = "client_event_id"


@dataclass(frozen=True)
class Receipt:
    """Proof of report: the event is durably on its topic."""

    receipt_id: str
    event_id: str
    client_event_id: str
    kind: str
    received_at_ms: int

    def as_dict(self) -> dict[str, str]:
        return {
            "receipt_id": self.receipt_id,
            "event_id": self.event_id,
            "client_event_id": self.client_event_id,
            "kind": self.kind,
            "received_at": iso(self.received_at_ms),
        }


@dataclass(frozen=True)
class Item:
    """One event as received: the parsed value and its raw bytes for the dead-letter topic."""

    value: Any
    raw: bytes
    label: str = ""  # how to point at it: "[3]" in a JSON batch, "row 7" in a CSV register
    problems: tuple[FieldError, ...] = ()  # found before validation (e.g. a CSV cell)


@dataclass
class Rejection:
    index: int
    label: str
    reason: str  # invalid | forbidden | conflict
    errors: list[FieldError]

    def as_dicts(self) -> list[dict[str, Any]]:
        base: dict[str, Any] = {"index": self.index}
        if self.label:
            base["item"] = self.label
        return [{**base, "reason": self.reason, **e.as_dict()} for e in self.errors]


@dataclass
class Outcome:
    receipts: list[Receipt | None]
    rejections: list[Rejection] = field(default_factory=list)
    duplicates: int = 0
    unavailable: list[int] = field(default_factory=list)  # indexes the broker did not acknowledge

    @property
    def forbidden(self) -> bool:
        return any(r.reason == "forbidden" for r in self.rejections)


class PublishError(RuntimeError):
    """The broker did not acknowledge; nothing was receipted for the items concerned."""


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def receipt_id_for(event_id: str) -> str:
    # Derived from the event id, so the same event always has the same receipt, even after a restart.
    return "RCP-" + hashlib.blake2b(event_id.encode(), digest_size=12).hexdigest().upper()


_NOT_CONTENT = frozenset({"reported_at", "source", "event_id"})


def content_digest(record: dict[str, Any]) -> str:
    # Validated records list their fields in schema order, so no key sorting is needed.
    stable = [v for k, v in record.items() if k not in _NOT_CONTENT]
    return hashlib.blake2b(orjson.dumps(stable), digest_size=16).hexdigest()


class DedupIndex:
    """event_id -> (content digest, receipt) for the most recent ``capacity`` events."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, tuple[str, Receipt]] = OrderedDict()
        self.in_flight: dict[str, asyncio.Future[Receipt | None]] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def get(self, event_id: str) -> tuple[str, Receipt] | None:
        return self._seen.get(event_id)

    def remember(self, digest: str, receipt: Receipt) -> None:
        self._seen[receipt.event_id] = (digest, receipt)
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)


def _identities(kind: str, rec: dict[str, Any]) -> list[dict[str, Any]]:
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
    return str(_identities(kind, rec)[0]["person_key"]).encode()


class Ingestor:
    def __init__(self, settings: Settings, publisher: Publisher, codec: Codec) -> None:
        self.settings = settings
        self.publisher = publisher
        self.codec = codec
        self.dedup = DedupIndex(settings.gateway_dedup_capacity)
        self.validators = {k: Validator(k) for k in INGESTED_KINDS}
        self._secret = settings.person_secret
        self._skew_ms = settings.gateway_clock_skew_seconds * 1000
        self._dead_letter_topic = settings.topic(topics.DEAD_LETTERS)
        self._topics = {k: settings.topic(t) for k, t in TOPIC_OF_KIND.items()}

    def event_id_for(self, source: Source, client_id: str, digest: str) -> str:
        # Client ids are namespaced by source so that two hotels' "1" never collide; trusted
        # system sources (replay, simulator) keep the global ids they carry.
        if source.trusted_clock:
            return client_id or f"{source.id}/h-{digest}"
        return f"{source.id}/{client_id}" if client_id else f"{source.id}/h-{digest}"

    async def ingest(
        self, source: Source, kind: str, items: Sequence[Item], *, content_type: str, step: str = "gateway.validate"
    ) -> Outcome:
        now_ms = int(time.time() * 1000)
        validator = self.validators[kind]
        outcome = Outcome(receipts=[None] * len(items))
        to_send: list[tuple[int, dict[str, Any], str, str]] = []  # index, record, digest, client id
        dead: list[tuple[Item, Rejection]] = []

        for i, item in enumerate(items):
            checked = validator(
                item.value, now_ms=now_ms, max_skew_ms=self._skew_ms, trusted_clock=source.trusted_clock
            )
            errors = list(item.problems) + checked.problems
            record = checked.record
            if errors or record is None:
                rej = Rejection(i, item.label, "invalid", errors)
                outcome.rejections.append(rej)
                dead.append((item, rej))
                continue
            foreign = source.foreign_binding(kind, record)
            if foreign is not None:
                rej = Rejection(i, item.label, "forbidden", [FieldError(*foreign)])
                outcome.rejections.append(rej)
                dead.append((item, rej))
                continue
            record["source"] = source.id
            for ident in _identities(kind, record):
                ident["person_key"] = person_key(self._secret, ident["nationality"], ident["document_number"])
            client_id = record["event_id"]
            digest = content_digest(record)
            record["event_id"] = self.event_id_for(source, client_id, digest)
            corrects = record.get("corrects_event_id")
            if corrects and not source.trusted_clock:
                record["corrects_event_id"] = f"{source.id}/{corrects}"
            to_send.append((i, record, digest, client_id))

        for rej in await self._publish(source, kind, to_send, outcome, now_ms):
            rej.label = items[rej.index].label
            outcome.rejections.append(rej)
            dead.append((items[rej.index], rej))
        outcome.rejections.sort(key=lambda r: r.index)
        if dead:
            await self.dead_letter(source.id, kind, dead, content_type=content_type, step=step, now_ms=now_ms)
        for rej in outcome.rejections:
            metrics.EVENTS_REJECTED.labels(source.kind, kind, rej.reason).inc()
        return outcome

    async def _publish(
        self,
        source: Source,
        kind: str,
        to_send: list[tuple[int, dict[str, Any], str, str]],
        outcome: Outcome,
        now_ms: int,
    ) -> list[Rejection]:
        """Publish new events, answer repeats from the index; returns conflicting repeats."""
        loop = asyncio.get_running_loop()
        conflicts: list[Rejection] = []
        mine: list[tuple[int, Receipt, str, asyncio.Future[Receipt | None]]] = []
        waits: list[tuple[int, str, str, asyncio.Future[Receipt | None]]] = []
        records: list[OutRecord] = []
        topic = self._topics[kind]
        for i, record, digest, client_id in to_send:
            event_id = record["event_id"]
            known = self.dedup.get(event_id)
            if known is not None:
                conflicts += self._answer_known(i, event_id, digest, known, outcome, source, kind)
                continue
            pending = self.dedup.in_flight.get(event_id)
            if pending is not None:  # the same event is being written by this or another request
                waits.append((i, event_id, digest, pending))
                continue
            receipt = Receipt(receipt_id_for(event_id), event_id, client_id, kind, now_ms)
            fut: asyncio.Future[Receipt | None] = loop.create_future()
            self.dedup.in_flight[event_id] = fut
            mine.append((i, receipt, digest, fut))
            records.append(
                OutRecord(
                    topic=topic,
                    key=partition_key(kind, record),
                    value=self.codec.encode(kind, record),
                    headers=(
                        (H_EVENT_ID, event_id.encode()),
                        (H_KIND, kind.encode()),
                        (H_RECEIPT, receipt.receipt_id.encode()),
                        (H_RECEIVED, str(now_ms).encode()),
                        (H_DIGEST, digest.encode()),
                        (H_CLIENT_ID, client_id.encode()),
                    ),
                )
            )
        results = await self.publisher.publish(records) if records else []
        accepted = 0
        for (i, receipt, digest, fut), err in zip(mine, results, strict=True):
            del self.dedup.in_flight[receipt.event_id]
            if err is None:
                self.dedup.remember(digest, receipt)
                outcome.receipts[i] = receipt
                accepted += 1
                fut.set_result(receipt)
            else:
                outcome.unavailable.append(i)
                metrics.PUBLISH_FAILURES.labels(topic).inc()
                fut.set_result(None)
        for i, event_id, digest, pending in waits:
            if await pending is None:
                outcome.unavailable.append(i)
                continue
            known = self.dedup.get(event_id)
            if known is not None:
                conflicts += self._answer_known(i, event_id, digest, known, outcome, source, kind)
        if accepted:
            metrics.EVENTS_ACCEPTED.labels(source.kind, kind).inc(accepted)
        metrics.DEDUP_ENTRIES.set(len(self.dedup))
        return conflicts

    def _answer_known(
        self,
        i: int,
        event_id: str,
        digest: str,
        known: tuple[str, Receipt],
        outcome: Outcome,
        source: Source,
        kind: str,
    ) -> list[Rejection]:
        first_digest, receipt = known
        if first_digest == digest:
            outcome.receipts[i] = receipt
            outcome.duplicates += 1
            metrics.EVENTS_DUPLICATE.labels(source.kind, kind).inc()
            return []
        return [
            Rejection(
                i,
                "",
                "conflict",
                [
                    FieldError(
                        "event_id",
                        f"{receipt.client_event_id or event_id!r} was already receipted "
                        f"({receipt.receipt_id}) for different content; send a CORRECTION or use a new event_id",
                    )
                ],
            )
        ]

    async def dead_letter(
        self,
        source_id: str,
        kind: str | None,
        rejected: Sequence[tuple[Item, Rejection]],
        *,
        content_type: str,
        step: str,
        now_ms: int | None = None,
    ) -> None:
        """Write rejected input, raw, with its reasons; raises PublishError if the broker says no."""
        now_ms = now_ms or int(time.time() * 1000)
        records = []
        for item, rej in rejected:
            letter = {
                "event_id": "dl-"
                + hashlib.sha256(
                    source_id.encode() + item.raw + str(now_ms).encode() + item.label.encode()
                ).hexdigest()[:24],
                "occurred_at": int(time.time() * 1000),
                "reported_at": now_ms,
                "source": source_id,
                "step": step,
                "kind": kind,
                "reason": rej.reason,
                "errors": [e.as_dict() for e in rej.errors],
                "content_type": content_type,
                "raw": item.raw[: self.settings.gateway_max_body_bytes],
            }
            records.append(
                OutRecord(
                    topic=self._dead_letter_topic,
                    key=source_id.encode() or None,
                    value=self.codec.encode("dead_letter", letter),
                    headers=((H_KIND, b"dead_letter"),),
                )
            )
            metrics.DEAD_LETTERS.labels(step, rej.reason).inc()
        failures = [e for e in await self.publisher.publish(records) if e is not None]
        if failures:
            raise PublishError(f"dead-letter topic did not acknowledge {len(failures)} record(s): {failures[0]}")
