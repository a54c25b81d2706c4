"""After a restart the gateway re-reads its own receipts from the topics' record headers, so a
client retrying an event accepted before the restart still gets the first receipt and no copy."""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.gateway.ingest import RECEIPT_HEADER, TOPIC_OF_KIND, DedupIndex, parse_receipt_header
from streams.settings import Settings

log = logging.getLogger("pora.gateway")


async def rebuild_dedup(settings: Settings, dedup: DedupIndex, *, timeout_s: float = 300.0) -> int:
    """Load the receipts of every event on the ingestion topics; returns how many were read."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="pora-gateway-rebuild",
    )
    await consumer.start()
    try:
        existing = await consumer.topics()
        kind_of = {settings.topic(t): k for k, t in TOPIC_OF_KIND.items()}
        tps = [
            TopicPartition(topic, p)
            for topic in (settings.topic(t) for t in TOPIC_OF_KIND.values())
            if topic in existing
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not tps:
            return 0
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        count = 0
        pending = set(tps)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batches.values():
                for rec in records:
                    for name, value in rec.headers:
                        if name != RECEIPT_HEADER:
                            continue
                        try:
                            event_id, received_ms, digest, client_id = parse_receipt_header(value)
                        except (ValueError, AttributeError) as exc:  # not written by a gateway: skip
                            log.warning(
                                "%s[%d]@%d: unreadable receipt header: %s", rec.topic, rec.partition, rec.offset, exc
                            )
                            continue
                        dedup.remember(kind_of[rec.topic], event_id, digest, received_ms, client_id)
                        count += 1
            # The high watermark from fetch responses is exact, even where ListOffsets is not (Tansu).
            for tp in list(pending):
                hw = consumer.highwater(tp)
                if hw is not None and await consumer.position(tp) >= hw:
                    pending.discard(tp)
            await asyncio.sleep(0)
        if pending:
            raise TimeoutError(f"dedup rebuild did not reach the end of {len(pending)} partition(s) in {timeout_s} s")
        return count
    finally:
        await consumer.stop()
