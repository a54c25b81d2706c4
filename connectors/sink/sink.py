"""The sink's loop: read every public topic, write rows to ClickHouse in batches, then commit.

A batch closes when it holds ``sink_batch_rows`` rows or its oldest row is ``sink_batch_seconds``
old. Kafka offsets are committed only after ClickHouse acknowledged every table's insert for the
batch, so a crash between the two redelivers the batch: its rows are written again and collapse
by id (ReplacingMergeTree, read with FINAL). When ClickHouse refuses or is unreachable, the
consumer is paused (it stays in its group) and the insert is retried with exponential backoff up to
``sink_retry_max_seconds``, then consumption resumes where it stopped: nothing lost, nothing doubled.
Records that do not decode go to the dead-letter topic (written before the commit) with the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from connectors.sink.store import Store, StoreError
from connectors.sink.tables import SINK_TOPICS, TABLES, Row
from monitoring import metrics
from schemas.codec import DecodeError, codec
from streams import topics
from streams.settings import Mode, Settings

log = logging.getLogger("pora.sink")


@dataclass
class SinkStats:
    records: int = 0  # read from Kafka (clock ticks included)
    rows: int = 0  # written to ClickHouse
    batches: int = 0
    retries: int = 0
    dead_letters: int = 0
    by_table: dict[str, int] = field(default_factory=dict)


class _Revoked(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def on_partitions_revoked(self, revoked: Any) -> None:
        # Write what was read while we still own the partitions, so their offsets can be committed.
        # One try only: retrying would poll inside the rebalance. If ClickHouse is away, forget the
        # batch uncommitted; the partitions' next owner reads it again.
        self._sink.flush(retry=False)

    def on_partitions_assigned(self, assigned: Any) -> None:
        pass


class Sink:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        topic_names: Iterable[str] = SINK_TOPICS,
        group: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.store = store
        self.stats = SinkStats()
        self._codec = codec()
        self._sleep = sleep
        self._dead_topic = settings.topic(topics.DEAD_LETTERS)
        self._rows: dict[str, list[Row]] = {}
        self._buffered = 0
        self._offsets: dict[TopicPartition, int] = {}
        self._oldest: float | None = None
        self._lag_at = 0.0  # when the lag was last exported
        self._lock = threading.RLock()
        self.group = group or f"{settings.topic_prefix}{settings.sink_group}"
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=10_000,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            client_id="pora-sink",
            # Tansu (local) makes a join wait half the session timeout; keep it short there
            session_timeout_ms=6_000 if settings.mode is Mode.LOCAL else 30_000,
            heartbeat_interval_ms=2_000 if settings.mode is Mode.LOCAL else 3_000,
            # also the rebalance timeout: how long a join waits for a member that vanished (Tansu)
            max_poll_interval_ms=60_000 if settings.mode is Mode.LOCAL else 300_000,
        )
        self.consumer.subscribe([settings.topic(t) for t in topic_names], listener=_Revoked(self))
        self._producer: KafkaProducer | None = None

    # ------------------------------------------------------------------ reading

    def poll(self, timeout_ms: int = 200) -> int:
        """Read what is there (up to one poll), flush when the batch is due; returns records read."""
        # no more than the batch has room for: an insert holds at most sink_batch_rows rows
        room = max(1, min(10_000, self.settings.sink_batch_rows - self._buffered))
        got = self.consumer.poll(timeout_ms=timeout_ms, max_records=room)
        n = 0
        with self._lock:
            for tp, messages in got.items():
                for m in messages:
                    self._take(m.topic, m.partition, m.offset, m.value)
                    n += 1
                if messages:
                    self._offsets[tp] = messages[-1].offset + 1
                    if self._oldest is None:
                        self._oldest = time.monotonic()
            self.stats.records += n
        if self._due():
            self.flush()
        if time.monotonic() - self._lag_at >= self.settings.lag_interval_seconds:
            self.export_lag()
        return n

    def export_lag(self) -> None:
        """Each held partition's lag: the high watermark from fetch responses (exact on Tansu, whose
        ListOffsets is low) less what is written to ClickHouse and committed."""
        self._lag_at = time.monotonic()
        prefix = self.settings.topic_prefix
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            if end is None:
                continue  # nothing fetched yet
            with self._lock:
                position = self._offsets.get(tp)
            if position is None:
                position = self.consumer.position(tp)
            topic = tp.topic[len(prefix) :] if tp.topic.startswith(prefix) else tp.topic
            metrics.CONSUMER_LAG.labels(self.group, topic, str(tp.partition), "fetch").set(max(0, end - position))

    def _take(self, topic: str, partition: int, offset: int, value: bytes | None) -> None:
        try:
            if value is None:
                raise DecodeError("the record has no value")
            kind, record = self._codec.decode(value, ms_times=True)
        except DecodeError as exc:
            self._dead_letter(topic, partition, offset, value or b"", str(exc))
            return
        if kind == "clock_tick":
            return
        table = TABLES.get(kind)
        if table is None:
            self._dead_letter(topic, partition, offset, value, f"no table for records of kind {kind!r}")
            return
        self._rows.setdefault(table.name, []).append(table.row(record))
        self._buffered += 1

    def _due(self) -> bool:
        if self._buffered >= self.settings.sink_batch_rows:
            return True
        return self._oldest is not None and time.monotonic() - self._oldest >= self.settings.sink_batch_seconds

    # ------------------------------------------------------------------ writing

    def flush(self, *, retry: bool = True) -> None:
        """Write the batch to ClickHouse (retrying until it is acknowledged), then commit its offsets.
        ``retry=False``: on a refusal, drop the batch without committing (it will be read again)."""
        with self._lock:
            if not self._offsets:
                return
            pending = dict(self._rows)
            metrics.SINK_BATCH_ROWS.observe(self._buffered)
            started = time.monotonic()
            delay = 0.1
            while pending:
                table = next(iter(pending))
                columns = TABLES_BY_NAME[table].columns
                try:
                    self.store.insert(table, columns, pending[table])
                except StoreError as exc:
                    if not retry:
                        log.warning("batch of %d rows left uncommitted on rebalance: %s", self._buffered, exc)
                        self._reset()
                        return
                    self.stats.retries += 1
                    metrics.SINK_RETRIES.inc()
                    log.warning("ClickHouse did not take the batch (retrying in %.1f s): %s", delay, exc)
                    self._hold(delay)
                    delay = min(delay * 2, self.settings.sink_retry_max_seconds)
                    continue
                written = len(pending.pop(table))
                self.stats.rows += written
                self.stats.by_table[table] = self.stats.by_table.get(table, 0) + written
                metrics.SINK_ROWS.labels(table).inc(written)
            metrics.SINK_INSERT_SECONDS.observe(time.monotonic() - started)
            if self._producer is not None:
                self._producer.flush()  # dead letters are written before the offsets move past them
            offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in self._offsets.items()}
            try:
                self.consumer.commit(offsets)
            except Exception as exc:  # a rebalance took the partitions: they are re-read, rows collapse
                log.warning(
                    "commit of %d partition offsets failed (the rows will be read again): %s", len(offsets), exc
                )
            self._reset()
            self.stats.batches += 1
            metrics.SINK_BATCHES.inc()
            metrics.SINK_LAST_WRITE.set_to_current_time()

    def _reset(self) -> None:
        self._rows.clear()
        self._offsets.clear()
        self._buffered = 0
        self._oldest = None

    def _hold(self, seconds: float) -> None:
        """Wait while staying in the consumer group, reading nothing."""
        assigned = self.consumer.assignment()
        metrics.SINK_PAUSED.set(1)
        try:
            if assigned:
                self.consumer.pause(*assigned)
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                got = self.consumer.poll(timeout_ms=int(min(left, 1.0) * 1000) or 1)
                if got:  # paused partitions return nothing; anything else is a bug worth seeing
                    raise RuntimeError(f"records arrived while paused: {list(got)}")
        finally:
            if assigned:
                self.consumer.resume(*assigned)
            metrics.SINK_PAUSED.set(0)

    def _dead_letter(self, topic: str, partition: int, offset: int, raw: bytes, reason: str) -> None:
        self.stats.dead_letters += 1
        if topic == self._dead_topic:
            log.error("undecodable record on the dead-letter topic [%d:%d] (left there): %s", partition, offset, reason)
            return
        if self._producer is None:
            self._producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all", linger_ms=5)
        now = int(time.time() * 1000)
        record = {
            "event_id": f"dl-sink:{topic}:{partition}:{offset}",
            "occurred_at": now,
            "reported_at": now,
            "source": "sink",
            "step": "sink.decode",
            "kind": None,
            "reason": "undecodable",
            "errors": [{"field": "<record>", "problem": reason}],
            "content_type": "avro/binary",
            "raw": raw,
        }
        metrics.DEAD_LETTERS.labels("sink.decode", "undecodable").inc()
        self._producer.send(self._dead_topic, key=b"sink", value=self._codec.encode("dead_letter", record))

    # ------------------------------------------------------------------ running

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll()
        self.flush()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.consumer.close(autocommit=False)
            if self._producer is not None:
                self._producer.close()


TABLES_BY_NAME = {t.name: t for t in TABLES.values()}
