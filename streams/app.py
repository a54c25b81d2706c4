"""The detector worker: a faust app with the person, entity and roster stages (RULES.md).

The person-keyed topics (hotel guest events, border crossings, permit updates, agency reports and
the internal roster facts) have the same partition count, so faust assigns partition *p* of all
of them to the same worker; that worker's `PersonDetector` for *p* sees all of a person's events.
The entity stage reads the person stage's facts with `sponsor.reports` and routes every roster
entry back to its person's partition. Alerts go to `alerts`, keyed by alert id; undecodable records
go to the dead-letter topic and the worker goes on.

State is rebuilt, not restored: the agents commit no offsets, so after every assignment (start,
scale-out, a worker leaving) the consumer reads each partition it holds from the beginning, and the
worker starts those detectors afresh so they reach the same state. Alert records already on the
`alerts` topic (read again at every assignment, since another worker may have written them) are not
sent again; the ids are deterministic, so a crash or a rebalance neither loses nor adds an alert.
(With months of history a snapshot of the detector state would shorten this; the topics' retention
bounds it.)

Speed (see PERFORMANCE.md and `make bench-detectors`): faust's per-message loop is replaced by
:mod:`streams.fastpath`, writes go through an :class:`Outbox` flushed when the input buffer runs
dry, and the agents do not yield per event.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import faust
import orjson
from mode.supervisors import CrashingSupervisor

from connectors.gateway.publisher import KafkaPublisher
from monitoring import metrics
from schemas.codec import DecodeError, codec
from streams import fastpath, topics
from streams.detect.config import RulesConfig, default_rules
from streams.detect.entity import EntityDetector
from streams.detect.person import INPUTS, PersonDetector
from streams.detect.roster import route_roster
from streams.detect.timeline import NEVER, Timeline
from streams.outbox import Outbox
from streams.settings import Mode, Settings

log = logging.getLogger("pora.worker")


class _App(faust.App):
    """faust.App without its Monitor sensor: it keeps per-event statistics for faust's web views
    (disabled here) and cost ~5 % of the worker's time; Pora's metrics come from monitoring/."""

    def on_init_dependencies(self) -> Any:
        deps = super().on_init_dependencies()
        self.sensors.remove(self.monitor)
        return deps


def faust_app(settings: Settings, app_id: str, *, fast: bool = True) -> faust.App:
    """An empty faust app with the worker's settings (the benchmark's bare-faust baseline uses it
    too). ``fast``: install :mod:`streams.fastpath` (process-wide) and size the buffers for it."""
    local = settings.mode is Mode.LOCAL
    tuned: dict[str, Any] = {}
    if fast and fastpath.install():
        tuned = dict(stream_buffer_maxsize=65_536, broker_max_poll_records=5_000)
    app = (_App if fast else faust.App)(
        f"{settings.topic_prefix}{app_id}",
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        # Tansu (local): joins wait half the session timeout; keep it short there.
        broker_session_timeout=6 if local else 30,
        broker_heartbeat_interval=2 if local else 3,
        consumer_auto_offset_reset="earliest",
        # nothing is acked (state is rebuilt by replay), so do not wait for acks when stopping
        stream_wait_empty=False,
        stream_ack_exceptions=False,
        **tuned,
    )
    return app


def _buffer_empty(stream: Any) -> Any:
    """A probe for "nothing more is buffered for this agent": then its writes are flushed."""
    queue = stream.channel.queue
    return queue.empty


def build_app(
    settings: Settings,
    rules: RulesConfig | None = None,
    *,
    app_id: str = "pora-detectors",
    already_emitted: set[str] | None = None,
    upstream_partitions: int | None = None,
    outbox: Outbox | None = None,
    read_emitted: Callable[[], set[str]] | None = None,
) -> faust.App:
    """The worker's topology, in one place, for `pora worker` and the tests. ``already_emitted``:
    alert record ids on the alerts topic, which a restarted worker must not send again;
    ``read_emitted`` reads them again at every partition assignment (`pora worker` passes a reader
    of the alerts and dead-letter topics). ``outbox``: where the writes go (default: a Kafka
    producer started with the first write)."""
    rules = rules or default_rules()
    app = faust_app(settings, app_id)
    c = codec()
    prefix = settings.topic_prefix
    partitions = upstream_partitions or settings.topic_partitions
    person_topics = [settings.topic(t) for t in (*INPUTS, topics.PERSON_FACTS)]
    person_inputs = app.topic(*person_topics, key_type=bytes, value_type=bytes)
    entity_inputs = app.topic(
        settings.topic(topics.ENTITY_FACTS), settings.topic(topics.SPONSOR_REPORTS), key_type=bytes, value_type=bytes
    )
    alerts_topic = settings.topic(topics.ALERTS)
    dead_letters_topic = settings.topic(topics.DEAD_LETTERS)
    entity_facts_topic = settings.topic(topics.ENTITY_FACTS)
    person_facts_topic = settings.topic(topics.PERSON_FACTS)
    detectors: dict[int, PersonDetector] = {}
    entity_detectors: dict[int, EntityDetector] = {}
    emitted = set(already_emitted or ())  # alert record ids on the alerts topic
    publisher: KafkaPublisher | None = None
    if outbox is None:
        publisher = KafkaPublisher(settings.kafka_bootstrap, client_id=f"{settings.topic_prefix}{app_id}")
        out = Outbox(publisher)
    else:
        out = outbox
    started = False
    seen: dict[Any, int] = {}  # last offset processed, per topic partition (the lag's position)
    caught_up = asyncio.Event()  # what other workers wrote is known (cleared while it is read)
    caught_up.set()

    async def ready() -> None:
        nonlocal started
        if not started and publisher is not None:
            await publisher.start()
        started = True

    async def _drain(app: Any, *_: Any, **__: Any) -> None:
        if started:
            try:
                await out.drain()
            finally:
                if publisher is not None:
                    await publisher.stop()

    app.on_before_shutdown.connect(_drain)  # type: ignore[arg-type]  # faust's stub wants a `signal` kwarg

    async def _assigned(app: Any, assigned: set[Any], **_: Any) -> None:
        # No offsets are committed, so the consumer now reads every partition it holds from the
        # beginning (kept ones too): start every detector afresh, and learn what other workers
        # wrote while they held these partitions, so it is not written twice.
        detectors.clear()
        entity_detectors.clear()
        seen.clear()
        gauges.assigned(assigned, person_topics)
        if read_emitted is not None:
            # the agents hold until it is read: the fetcher runs on during this await, and an
            # alert sent before the read ends could be one another worker wrote already
            caught_up.clear()
            try:
                emitted.update(await asyncio.get_running_loop().run_in_executor(None, read_emitted))
            finally:
                caught_up.set()
            log.info("partitions assigned: %d; %d records already written", len(assigned), len(emitted))

    app.on_partitions_assigned.connect(_assigned)  # type: ignore[arg-type]

    gauges = _WorkerGauges(settings, app, seen, detectors, entity_detectors)

    @app.timer(settings.lag_interval_seconds)  # type: ignore[untyped-decorator]
    async def export_metrics() -> None:
        gauges.export()

    def send_alerts(found: list[dict[str, Any]], message: Any) -> None:
        for alert in found:
            if alert["event_id"] in emitted:
                continue  # sent before this worker (re)started
            emitted.add(alert["event_id"])
            out.add(alerts_topic, alert["alert_id"].encode(), c.encode("alert", alert))
            gauges.alert(alert, message.timestamp)

    def send_facts(topic: str, facts: list[tuple[bytes | None, dict[str, Any]]]) -> None:
        for key, fact in facts:
            body = orjson.dumps(fact)
            if key is None:  # a watermark: to every partition of the next stage
                for q in range(partitions):
                    out.add(topic, None, body, q)
            else:
                out.add(topic, key, body)

    def dead_letter(message: Any, raw: bytes, reason: str) -> None:
        record = _dead_letter(c, raw, message.topic, message.partition, message.offset, reason)
        if record["event_id"] in emitted:
            return  # written before this worker (re)started and replayed the partition
        emitted.add(record["event_id"])
        out.add(dead_letters_topic, b"worker", c.encode("dead_letter", record))
        metrics.DEAD_LETTERS.labels("worker.decode", "undecodable").inc()

    def read_fact(message: Any, raw: bytes) -> dict[str, Any] | None:
        """An internal (JSON) fact, or None after its dead letter."""
        try:
            fact: dict[str, Any] = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            dead_letter(message, raw, f"internal fact is not JSON: {exc}")
            return None
        return fact

    def read_event(message: Any, raw: bytes) -> tuple[str, dict[str, Any]] | None:
        """(kind, record) of an Avro event, or None after its dead letter. Times stay epoch ms:
        the detectors compute with them, and a datetime per field costs a third of the decode."""
        try:
            return c.decode(raw, ms_times=True)
        except DecodeError as exc:
            dead_letter(message, raw, str(exc))
            return None

    @app.agent(person_inputs, name="person-rules", supervisor_strategy=CrashingSupervisor)
    async def person_rules(stream: faust.StreamT[bytes]) -> None:
        # no acks, so no committed offsets: every (re)assignment replays the partition
        await ready()
        manual: Any = stream  # faust's StreamT stub lacks noack()
        drained = _buffer_empty(manual)
        async for event in manual.noack().events():
            if not caught_up.is_set():
                await caught_up.wait()
            message = event.message
            p = message.partition
            seen[message.tp] = message.offset
            detector = detectors.get(p)
            if detector is None:
                detector = detectors[p] = PersonDetector(rules, partition=p, sponsor_partitions=partitions)
            if message.topic == person_facts_topic:
                if (fact := read_fact(message, event.value)) is not None:
                    send_alerts(detector.offer_roster(fact), message)
            elif (decoded := read_event(message, event.value)) is not None:
                send_alerts(detector.offer(message.topic[len(prefix) :], *decoded), message)
            if detector.facts:
                send_facts(entity_facts_topic, detector.facts)
                detector.facts.clear()
            if out.full or drained():
                await out.flush()

    @app.agent(entity_inputs, name="entity-rules", supervisor_strategy=CrashingSupervisor)
    async def entity_rules(stream: faust.StreamT[bytes]) -> None:
        await ready()
        manual: Any = stream
        drained = _buffer_empty(manual)
        async for event in manual.noack().events():
            if not caught_up.is_set():
                await caught_up.wait()
            message = event.message
            q = message.partition
            seen[message.tp] = message.offset
            detector = entity_detectors.get(q)
            if detector is None:
                detector = entity_detectors[q] = EntityDetector(rules, partitions)
            if message.topic == entity_facts_topic:
                if (fact := read_fact(message, event.value)) is not None:
                    send_alerts(detector.offer_fact(fact), message)
            elif (decoded := read_event(message, event.value)) is not None:
                send_alerts(detector.offer_report(*decoded), message)
                # roster entries to the people they name (whereabouts), ticks to every partition
                send_facts(person_facts_topic, route_roster(q, *decoded))
            if out.full or drained():
                await out.flush()

    return app


class _WorkerGauges:
    """The worker's metrics. Per-event work stays out of Prometheus' locks: the agents only note
    each partition's last offset, and :meth:`export` (a timer) turns those into event counts,
    lag, watermark delay and late events."""

    def __init__(
        self,
        settings: Settings,
        app: Any,
        seen: dict[Any, int],
        detectors: dict[int, PersonDetector],
        entity_detectors: dict[int, EntityDetector],
    ) -> None:
        self.app = app
        self.prefix = settings.topic_prefix
        self.group = app.conf.id
        self.seen = seen
        self.detectors = detectors
        self.entity_detectors = entity_detectors
        self.counted: dict[Any, int] = {}  # offset up to which seen events were counted
        self.late: dict[tuple[str, int], int] = {}  # late events counted, per detector
        self.held: set[Any] = set()

    def assigned(self, assigned: set[Any], person_topics: list[str]) -> None:
        self.counted.clear()
        self.late.clear()
        for tp in self.held - assigned:
            metrics.CONSUMER_LAG.remove(self.group, self._name(tp.topic), str(tp.partition), "fetch")
        self.held = set(assigned)
        person = {tp.partition for tp in assigned if tp.topic in person_topics}
        entity = {tp.partition for tp in assigned if tp.topic not in person_topics}
        metrics.WORKER_PARTITIONS.labels("person").set(len(person))
        metrics.WORKER_PARTITIONS.labels("entity").set(len(entity))
        metrics.WATERMARK_DELAY.clear()

    def alert(self, alert: dict[str, Any], caused_at: float | None) -> None:
        rule = alert["rule_id"]
        metrics.ALERTS.labels(rule, alert["status"]).inc()
        if caused_at:  # the Kafka timestamp (s) of the record that caused it: the gateway's write
            metrics.EVENT_TO_ALERT_SECONDS.labels(rule).observe(max(0.0, time.time() - caused_at))

    def _name(self, topic: str) -> str:
        return topic[len(self.prefix) :] if topic.startswith(self.prefix) else topic

    def export(self) -> None:
        for tp, offset in list(self.seen.items()):
            stage = "entity" if self._name(tp.topic) in _ENTITY_INPUTS else "person"
            done = self.counted.get(tp, -1)
            if offset > done:
                metrics.WORKER_EVENTS.labels(stage, self._name(tp.topic)).inc(offset - done)
                self.counted[tp] = offset
        consumer = getattr(self.app, "_consumer", None)
        for tp in list(self.held):
            try:
                end = consumer.highwater(tp) if consumer is not None else None
            except Exception:  # the consumer is between assignments: next time
                end = None
            if end is None:
                continue
            position = self.seen.get(tp, -1) + 1
            lag = max(0, end - position)
            metrics.CONSUMER_LAG.labels(self.group, self._name(tp.topic), str(tp.partition), "fetch").set(lag)
        now = time.time()
        stages: tuple[tuple[str, dict[int, Any]], ...] = (
            ("person", self.detectors),
            ("entity", self.entity_detectors),
        )
        for stage, detectors in stages:
            held: Counter[str] = Counter()
            for detector in list(detectors.values()):
                held.update(detector.held())
            for kind, n in held.items():
                metrics.WORKER_STATE.labels(stage, kind).set(n)
            for p, detector in list(detectors.items()):
                timeline: Timeline = detector.timeline
                if timeline.watermark != NEVER:
                    delay = max(0.0, now - timeline.watermark / 1000)
                    metrics.WATERMARK_DELAY.labels(stage, str(p)).set(delay)
                new_late = timeline.late - self.late.get((stage, p), 0)
                if new_late > 0:
                    metrics.LATE_EVENTS.labels(stage).inc(new_late)
                    self.late[(stage, p)] = timeline.late


_ENTITY_INPUTS = (topics.ENTITY_FACTS, topics.SPONSOR_REPORTS)


def _dead_letter(c: Any, raw: bytes, topic: str, partition: int, offset: int, reason: str) -> dict[str, Any]:
    """The dead letter for an unreadable record; its id names the record's place, so a replay of the
    partition finds it already written."""
    now = int(time.time() * 1000)
    return {
        "event_id": f"dl-worker:{topic}:{partition}:{offset}",
        "occurred_at": now,
        "reported_at": now,
        "source": "worker",
        "step": "worker.decode",
        "kind": None,
        "reason": "undecodable",
        "errors": [{"field": "<record>", "problem": f"{topic}[{partition}] offset {offset}: {reason}"}],
        "content_type": "avro/binary",
        "raw": raw,
    }


def _partitions(settings: Settings) -> int:
    """The person topics' real partition count: the second stage waits for a watermark from each."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, allow_auto_create_topics=False)
    try:
        found = consumer.partitions_for_topic(settings.topic(topics.BORDER_CROSSINGS))
    finally:
        consumer.close()
    if not found:
        raise LookupError(f"topic {settings.topic(topics.BORDER_CROSSINGS)} does not exist: run `pora topics`")
    return len(found)


def _emitted_ids(settings: Settings) -> set[str]:
    """Ids of the alert records and of the worker's own dead letters already written."""
    from streams.reading import read_topic

    ids = {
        str(r.record["event_id"])
        for r in read_topic(settings.kafka_bootstrap, settings.topic(topics.ALERTS))
        if r.record is not None
    }
    ids |= {
        str(r.record["event_id"])
        for r in read_topic(settings.kafka_bootstrap, settings.topic(topics.DEAD_LETTERS))
        if r.record is not None and r.record.get("source") == "worker"
    }
    return ids


def run_worker(settings: Settings, rules: RulesConfig | None = None) -> None:
    from faust import Worker

    app = build_app(
        settings, rules, upstream_partitions=_partitions(settings), read_emitted=lambda: _emitted_ids(settings)
    )
    # The detectors keep every person's state in memory: move what exists now out of the collector's
    # way and collect young objects less often (each collection walks them all).
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    Worker(app, loglevel="info", quiet=True).execute_from_commandline()
