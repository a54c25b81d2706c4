"""`pora replay FILE`: push a JSON-lines file of events through the gateway's validation into Kafka.

Each line is ``{"kind": "<event kind>", "event": {...}}`` (the gateway's JSON form, with
``reported_at``), in ``reported_at`` order; a line ``{"kind": "clock_tick", "at": "<ISO time>"}``
advances event time without an event (the end of a simulated period). The file is sent as the
trusted ``system`` source, so event ids and ``reported_at`` are kept. After every window of lines
is acknowledged, a clock tick at the window's last ``reported_at`` goes to every partition: the
detectors may then release everything up to it. Windows are cut by count and, optionally, by
event time, and may be paced against the wall clock: the alerts must not depend on either.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from connectors.gateway.ingest import INGESTED_KINDS, TOPIC_OF_KIND, Ingestor, Item
from connectors.gateway.keys import Source
from connectors.gateway.partitioning import partition_for
from connectors.gateway.prepare import Preparer
from connectors.gateway.publisher import KafkaPublisher
from connectors.gateway.rebuild import rebuild_dedup
from schemas.codec import codec
from schemas.validation import event_time_problem, parse_timestamp_ms
from streams.settings import Settings

REPLAY_SOURCE = Source("replay", "system", "")


class ReplayError(ValueError):
    """A line of the file cannot be read; names the line."""


@dataclass
class ReplayStats:
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    ticks: int = 0
    seconds: float = 0.0
    rejected_lines: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Line:
    number: int
    kind: str
    event: dict[str, Any] | None
    at: int  # reported_at, or the tick's time


def read_lines(path: Path) -> Iterator[_Line]:
    """The file's lines in order; ReplayError names the line and the field of the first bad one."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise ReplayError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    with fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                line = _parse_line(number, raw)
            except ValueError as exc:
                raise ReplayError(f"{path}:{number}: {exc}") from None
            yield line


def _parse_line(number: int, raw: bytes) -> _Line:
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not a JSON object: {exc}") from None
    if not isinstance(line, dict):
        raise ValueError(f'expected an object {{"kind": ..., "event": {{...}}}}, got {_describe(line)}')
    if "kind" not in line:
        raise ValueError("field 'kind' is missing")
    kind = line["kind"]
    if kind == "clock_tick":
        if "at" not in line:
            raise ValueError("field 'at' is missing (the clock tick's time)")
        return _Line(number, kind, None, _timestamp("at", line["at"]))
    if not isinstance(kind, str) or kind not in INGESTED_KINDS:
        shown = repr(kind) if isinstance(kind, str) else _describe(kind)
        raise ValueError(f"field 'kind': {shown} is not one of {', '.join(INGESTED_KINDS)} or clock_tick")
    if "event" not in line:
        raise ValueError("field 'event' is missing")
    event = line["event"]
    if not isinstance(event, dict):
        raise ValueError(f"field 'event' must be an object, not {_describe(event)}")
    if "reported_at" not in event:
        raise ValueError("field 'event.reported_at' is missing (replay keeps when each event was reported)")
    return _Line(number, kind, event, _timestamp("event.reported_at", event["reported_at"]))


def _timestamp(field_name: str, value: Any) -> int:
    """An event time: a clock tick in the year 9999 would make every detector compute deadlines
    beyond what dates hold (the event's own times are checked by the gateway's validation)."""
    try:
        ms = parse_timestamp_ms(value)
    except ValueError as exc:
        raise ValueError(f"field {field_name!r}: {exc}") from None
    problem = event_time_problem(ms)
    if problem:
        raise ValueError(f"field {field_name!r}: {value!r} {problem}")
    return ms


def _describe(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def topic_records(
    events: Iterable[dict[str, Any]], end_ms: int, partitions: int, secret: bytes, *, window: int = 1000
) -> Iterator[tuple[str, int, bytes]]:
    """(topic without prefix, partition, Avro value) of what `pora replay` writes for ``events``
    (``{"kind", "event"}`` lines), without a broker: each event as the gateway prepares it, a clock
    tick into every partition of every topic after each ``window`` events and one at ``end_ms``.
    For the offline reference (:func:`streams.detect.offline.detect_offline`) and the tests."""
    preparer = Preparer(secret, 10**12)
    c = codec()

    def ticks(at_ms: int) -> Iterator[tuple[str, int, bytes]]:
        for topic in TOPIC_OF_KIND.values():
            for p in range(partitions):
                tick = {
                    "event_id": f"tick:{REPLAY_SOURCE.id}:{topic}:{p}:{at_ms}",
                    "occurred_at": at_ms,
                    "reported_at": at_ms,
                    "source": REPLAY_SOURCE.id,
                }
                yield topic, p, c.encode("clock_tick", tick)

    last_at = None
    for i, line in enumerate(events, start=1):
        prepared = preparer.prepare(REPLAY_SOURCE, line["kind"], [Item(line["event"])], 0)
        if prepared.rejections:
            raise ReplayError(f"event {i} is refused: {prepared.rejections[0]}")
        (ready,) = prepared.ready
        yield TOPIC_OF_KIND[line["kind"]], partition_for(ready.key, partitions), ready.value
        last_at = _timestamp("reported_at", line["event"]["reported_at"])
        if i % window == 0:
            yield from ticks(last_at)
    yield from ticks(end_ms)


async def replay(
    settings: Settings,
    path: Path,
    *,
    window: int = 1000,
    window_ms: int | None = None,
    speed: float | None = None,
    until_ms: int | None = None,
) -> ReplayStats:
    """Send the file; ``speed`` = event-time seconds per wall second (None: as fast as possible)."""
    stats = ReplayStats()
    publisher = KafkaPublisher(settings.kafka_bootstrap)
    await publisher.start()
    ingestor = Ingestor(settings, publisher, codec())
    # events replayed before are answered from the index, not written twice
    await rebuild_dedup(settings, ingestor.dedup)
    started = time.monotonic()
    first_at: int | None = None
    try:
        pending: list[_Line] = []
        last_at = None

        async def flush() -> None:
            nonlocal pending
            if not pending:
                return
            by_kind: dict[str, list[_Line]] = defaultdict(list)
            for ln in pending:
                if ln.event is not None:
                    by_kind[ln.kind].append(ln)
            outcomes = await asyncio.gather(
                *(
                    ingestor.ingest(
                        REPLAY_SOURCE,
                        kind,
                        [Item(ln.event, label=f"line {ln.number}") for ln in lines],
                        content_type="application/json",
                        step="replay.validate",
                    )
                    for kind, lines in by_kind.items()
                )
            )
            for outcome in outcomes:
                if outcome.unavailable:
                    raise RuntimeError(
                        f"the broker did not acknowledge {len(outcome.unavailable)} event(s); replay again"
                    )
                stats.accepted += sum(1 for r in outcome.receipts if r is not None)
                stats.duplicates += outcome.duplicates
                stats.rejected += len(outcome.rejections)
                stats.rejected_lines += [
                    f"{r.label}: {e.field}: {e.problem}" for r in outcome.rejections for e in r.errors
                ]
            await ingestor.tick(REPLAY_SOURCE.id, max(ln.at for ln in pending))
            stats.ticks += 1
            pending = []

        for ln in read_lines(path):
            stats.lines += 1
            if first_at is None:
                first_at = ln.at
            if speed is not None:
                due = started + (ln.at - first_at) / 1000 / speed
                delay = due - time.monotonic()
                if delay > 0:
                    await flush()
                    await asyncio.sleep(delay)
            if pending and (
                len(pending) >= window
                or (window_ms is not None and last_at is not None and ln.at - pending[0].at >= window_ms)
            ):
                await flush()
            pending.append(ln)
            last_at = ln.at
        await flush()
        if until_ms is not None:
            await ingestor.tick(REPLAY_SOURCE.id, until_ms)
            stats.ticks += 1
    finally:
        await publisher.stop()
    stats.seconds = time.monotonic() - started
    return stats
