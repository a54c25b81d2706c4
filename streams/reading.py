"""Read a topic to its end and decode it: for the demo, `pora tail`, and checks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from schemas.codec import DecodeError, codec


@dataclass(frozen=True)
class Read:
    partition: int
    offset: int
    key: bytes | None
    headers: dict[str, bytes]
    kind: str
    record: dict[str, Any] | None
    error: str | None = None


def read_topic(bootstrap: str, topic: str, *, timeout: float = 15.0, ticks: bool = False) -> list[Read]:
    """Every record now on ``topic``, decoded, in partition and offset order (clock ticks only
    when asked for).

    "The end" is each partition's high watermark as reported in fetch responses: Tansu's
    ListOffsets answer can lie below it, so ``end_offsets()`` is not used.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        allow_auto_create_topics=False,
    )
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"topic {topic!r} does not exist on {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Read] = []
        pending = set(tps)
        deadline = time.monotonic() + timeout
        c = codec()
        while pending and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200).items():
                for r in records:
                    try:
                        kind, rec = c.decode(r.value)
                        if kind == "clock_tick" and not ticks:
                            continue
                        out.append(Read(tp.partition, r.offset, r.key, dict(r.headers), kind, rec))
                    except DecodeError as exc:
                        out.append(Read(tp.partition, r.offset, r.key, dict(r.headers), "", None, str(exc)))
            for tp in list(pending):
                hw = consumer.highwater(tp)
                if hw is not None and consumer.position(tp) >= hw:
                    pending.discard(tp)
        if pending:
            raise TimeoutError(f"could not read {topic} to its end within {timeout} s")
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()
