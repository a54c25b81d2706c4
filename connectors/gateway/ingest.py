"""Ingestion, independent of HTTP: validate, authorise, pseudonymise, deduplicate, publish, receipt.

Used by the HTTP gateway and by file replay, so every way in applies the same rules. Rejected
input always goes to the dead-letter topic with its reasons before the caller hears "no", and a
receipt is only issued after the broker acknowledged the event.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from connectors.gateway.items import Item, Rejection
from connectors.gateway.keys import Source
from connectors.gateway.prepare import Prepared, PreparePool, Preparer, Ready
from connectors.gateway.publisher import OutRecord, Publisher
from monitoring import metrics
from schemas.codec import Codec
from schemas.validation import FieldError
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
__all__ = ["INGESTED_KINDS", "TOPIC_OF_KIND", "Ingestor", "Item", "Outcome", "Receipt", "Rejection"]

# The dead-letter copy of refused input keeps at most this much (and never more than a request may
# carry): a refused 100 MB body or a 1 MB name is cut, with an error on "<raw>" that says so, the
# full size and, when the gateway read it all, its SHA-256. Well below Kafka's default 1 MB
# message size, so a dead letter is never refused by the broker for its size.
RAW_KEEP_BYTES = 256 * 1024

# The one record header the gateway writes: event id, received_at, content digest and client id,
# separated by US (0x1f). The dedup index is rebuilt from it after a restart.
RECEIPT_HEADER = "pora-receipt"
_SEP = "\x1f"


def receipt_header(event_id: str, received_ms: int, digest: str, client_id: str) -> bytes:
    return f"{event_id}{_SEP}{received_ms}{_SEP}{digest}{_SEP}{client_id}".encode()


def parse_receipt_header(raw: bytes) -> tuple[str, int, str, str]:
    """The parts of a receipt header; ValueError when it is not one. Split from the right: the
    client id holds no control character (validated), a source's id in the event id might."""
    event_id, received, digest, client_id = raw.decode().rsplit(_SEP, 3)
    return event_id, int(received), digest, client_id


class Receipt(NamedTuple):
    """Proof of report: the event is durably on its topic."""

    receipt_id: str
    event_id: str
    client_event_id: str
    kind: str
    received_at_ms: int

    def as_dict(self, received_at: str | None = None) -> dict[str, str]:
        return {
            "receipt_id": self.receipt_id,
            "event_id": self.event_id,
            "client_event_id": self.client_event_id,
            "kind": self.kind,
            "received_at": received_at or iso(self.received_at_ms),
        }


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


def truncation_note(raw: bytes, keep: int, *, total: str | None = None) -> FieldError:
    """The error that tells a dead letter's reader its raw copy is cut; ``total``: the size when
    the gateway did not read it all (then no digest)."""
    whole = total or f"{len(raw)} bytes (SHA-256 {hashlib.sha256(raw).hexdigest()})"
    return FieldError("<raw>", f"truncated: the first {keep} bytes of {whole} are kept")


def too_large(value: bytes, limit: int, topic: str) -> FieldError:
    """Why an event cannot go to its topic: its record is over ``PORA_KAFKA_MAX_MESSAGE_BYTES``."""
    return FieldError(
        "<event>",
        f"{len(value):,} bytes once encoded, over the {limit:,} bytes a record of {topic} may have; "
        "it can only be taken once the operator raises PORA_KAFKA_MAX_MESSAGE_BYTES (and the topic's "
        "max.message.bytes)",
    )


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def receipt_id_for(event_id: str) -> str:
    # Derived from the event id, so the same event always has the same receipt, even after a restart.
    return "RCP-" + hashlib.blake2b(event_id.encode(), digest_size=12).hexdigest().upper()


class DedupIndex:
    """event_id -> content digest and receipt, for the most recent ``capacity`` events.

    Entries are kept as one string each, not as objects: strings are invisible to the garbage
    collector, so a full index (millions of entries) does not make every collection slower, and
    an entry costs a third of the memory.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, str] = OrderedDict()
        self.in_flight: dict[str, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def get(self, event_id: str) -> tuple[str, Receipt] | None:
        entry = self._seen.get(event_id)
        if entry is None:
            return None
        kind, digest, received, client_id = entry.split(_SEP, 3)
        return digest, Receipt(receipt_id_for(event_id), event_id, client_id, kind, int(received))

    def remember(self, kind: str, event_id: str, digest: str, received_ms: int, client_id: str) -> None:
        self._seen[event_id] = f"{kind}{_SEP}{digest}{_SEP}{received_ms}{_SEP}{client_id}"
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)


class Ingestor:
    """Publishes prepared events exactly once and answers with receipts; dead-letters the rest."""

    def __init__(self, settings: Settings, publisher: Publisher, codec: Codec, pool: PreparePool | None = None) -> None:
        self.settings = settings
        self.publisher = publisher
        self.codec = codec
        self.dedup = DedupIndex(settings.gateway_dedup_capacity)
        secret, skew_ms = settings.person_secret, settings.gateway_clock_skew_seconds * 1000
        self.preparer = Preparer(secret, skew_ms)
        self.pool = pool or PreparePool(self.preparer, secret, skew_ms, workers=0, min_bytes=0)
        self._dead_letter_topic = settings.topic(topics.DEAD_LETTERS)
        self._topics = {k: settings.topic(t) for k, t in TOPIC_OF_KIND.items()}
        self._open: Counter[int] = Counter()  # reported_at of requests not yet answered

    @contextmanager
    def request_clock(self) -> Iterator[int]:
        """The reported_at of a request; held until it is answered, so that no clock tick claims
        its time has passed while its events are still being written."""
        now_ms = int(time.time() * 1000)
        self._open[now_ms] += 1
        try:
            yield now_ms
        finally:
            self._open[now_ms] -= 1
            if not self._open[now_ms]:
                del self._open[now_ms]

    def safe_time(self) -> int:
        """The latest time such that every event reported before it is on its topic (or refused)."""
        now_ms = int(time.time() * 1000)
        return min(self._open, default=now_ms + 1) - 1

    async def tick(self, source_id: str, at_ms: int | None = None) -> int:
        """Write a clock tick into every partition of every ingestion topic; returns its time."""
        at_ms = self.safe_time() if at_ms is None else at_ms
        records = []
        for topic in self._topics.values():
            for p in range(await self.publisher.partitions(topic)):
                tick = {
                    "event_id": f"tick:{source_id}:{topic}:{p}:{at_ms}",
                    "occurred_at": at_ms,
                    "reported_at": at_ms,
                    "source": source_id,
                }
                records.append(OutRecord(topic, None, self.codec.encode("clock_tick", tick), partition=p))
        failures = [e for e in await self.publisher.publish(records) if e is not None]
        if failures:
            raise PublishError(f"clock tick not acknowledged on {len(failures)} partition(s): {failures[0]}")
        return at_ms

    async def ingest(
        self, source: Source, kind: str, items: Sequence[Item], *, content_type: str, step: str = "gateway.validate"
    ) -> Outcome:
        """Prepare in this process and publish (replay and small requests)."""
        with self.request_clock() as now_ms:
            prepared = self.preparer.prepare(source, kind, items, now_ms)
            return await self.complete(source, kind, prepared, now_ms, content_type=content_type, step=step)

    async def complete(
        self,
        source: Source,
        kind: str,
        prepared: Prepared,
        now_ms: int,
        *,
        content_type: str,
        step: str = "gateway.validate",
    ) -> Outcome:
        outcome = Outcome(receipts=[None] * prepared.total, rejections=list(prepared.rejections))
        conflicts = await self._publish(source, kind, prepared.ready, outcome, now_ms)
        outcome.rejections += conflicts
        outcome.rejections.sort(key=lambda r: r.index)
        dead = prepared.rejections + conflicts
        if dead:
            await self.dead_letter(source.id, kind, dead, content_type=content_type, step=step, now_ms=now_ms)
        for rej in outcome.rejections:
            metrics.EVENTS_REJECTED.labels(source.kind, kind, rej.reason).inc()
        return outcome

    async def _publish(
        self, source: Source, kind: str, ready: list[Ready], outcome: Outcome, now_ms: int
    ) -> list[Rejection]:
        """Publish new events, answer repeats from the index; returns conflicting repeats and the
        events too large for the topic."""
        conflicts: list[Rejection] = []
        mine: list[Ready] = []
        waits: list[tuple[Ready, asyncio.Future[None]]] = []
        records: list[OutRecord] = []
        topic = self._topics[kind]
        in_flight = self.dedup.in_flight
        # One future for the whole publish: requests repeating one of its events wait on it.
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        limit = self.settings.kafka_max_message_bytes
        for r in ready:
            if len(r.value) > limit:  # the broker would refuse it however often it came: say so, keep it
                conflicts.append(Rejection(r.at, r.label, "too_large", [too_large(r.value, limit, topic)], r.value))
                continue
            known = self.dedup.get(r.event_id)
            if known is not None:
                conflicts += self._answer_known(r, known, outcome, source, kind)
                continue
            pending = in_flight.get(r.event_id)
            if pending is not None:  # the same event is being written by this or another request
                waits.append((r, pending))
                continue
            in_flight[r.event_id] = done
            mine.append(r)
            header = receipt_header(r.event_id, now_ms, r.digest, r.client_id)
            records.append(OutRecord(topic, r.key, r.value, ((RECEIPT_HEADER, header),)))
        try:
            results = await self.publisher.publish(records) if records else []
        finally:
            for r in mine:
                del in_flight[r.event_id]
            done.set_result(None)
        accepted = 0
        for r, err in zip(mine, results, strict=True):
            if err is None:
                self.dedup.remember(kind, r.event_id, r.digest, now_ms, r.client_id)
                outcome.receipts[r.at] = Receipt(receipt_id_for(r.event_id), r.event_id, r.client_id, kind, now_ms)
                accepted += 1
            else:
                outcome.unavailable.append(r.at)
                metrics.PUBLISH_FAILURES.labels(topic).inc()
        for r, pending in waits:
            await pending
            known = self.dedup.get(r.event_id)
            if known is None:
                outcome.unavailable.append(r.at)  # the other request's write failed
            else:
                conflicts += self._answer_known(r, known, outcome, source, kind)
        if accepted:
            metrics.EVENTS_ACCEPTED.labels(source.kind, kind).inc(accepted)
        metrics.DEDUP_ENTRIES.set(len(self.dedup))
        return conflicts

    def _answer_known(
        self, r: Ready, known: tuple[str, Receipt], outcome: Outcome, source: Source, kind: str
    ) -> list[Rejection]:
        first_digest, receipt = known
        if first_digest == r.digest:
            outcome.receipts[r.at] = receipt
            outcome.duplicates += 1
            metrics.EVENTS_DUPLICATE.labels(source.kind, kind).inc()
            return []
        problem = (
            f"{receipt.client_event_id or r.event_id!r} was already receipted ({receipt.receipt_id}) for "
            "different content; send a CORRECTION or use a new event_id"
        )
        # the conflicting input is kept in its validated, Avro-encoded form
        return [Rejection(r.at, r.label, "conflict", [FieldError("event_id", problem)], r.value)]

    async def dead_letter(
        self,
        source_id: str,
        kind: str | None,
        rejected: Sequence[Rejection],
        *,
        content_type: str,
        step: str,
        now_ms: int | None = None,
    ) -> None:
        """Write rejected input, raw, with its reasons; raises PublishError if the broker says no."""
        now_ms = now_ms or int(time.time() * 1000)
        keep = min(RAW_KEEP_BYTES, self.settings.gateway_max_body_bytes)
        records = []
        for rej in rejected:
            raw, errors = rej.raw, rej.errors
            letter_id = hashlib.sha256(source_id.encode() + raw + str(now_ms).encode() + rej.label.encode())
            if len(raw) > keep:
                errors = [*errors, truncation_note(raw, keep)]
                raw = raw[:keep]
            letter = {
                "event_id": "dl-" + letter_id.hexdigest()[:24],
                "occurred_at": int(time.time() * 1000),
                "reported_at": now_ms,
                "source": source_id,
                "step": step,
                "kind": kind,
                "reason": rej.reason,
                "errors": [e.as_dict() for e in errors],
                "content_type": content_type,
                "raw": raw,
            }
            records.append(
                OutRecord(self._dead_letter_topic, source_id.encode() or None, self.codec.encode("dead_letter", letter))
            )
            metrics.DEAD_LETTERS.labels(step, rej.reason).inc()
        failures = [e for e in await self.publisher.publish(records) if e is not None]
        if failures:
            raise PublishError(f"dead-letter topic did not acknowledge {len(failures)} record(s): {failures[0]}")
