"""The detector worker: a faust app whose agent runs the person rules, one timeline per partition.

The person-keyed topics (hotel guest events, border crossings, permit updates, agency reports)
have the same partition count, so faust assigns partition *p* of all four to the same worker;
that worker's `PersonDetector` for *p* sees all of a person's events. Alerts go to `alerts`,
keyed by alert id; undecodable records go to the dead-letter topic and the worker goes on.

State is rebuilt, not restored: the agent commits no offsets, so a worker that starts or takes
over a partition reads it from the beginning and its detector reaches the same state. Alert
records already on the `alerts` topic (read when the worker starts) are not sent again; the ids
are deterministic, so a crash or a rebalance neither loses nor adds an alert. (With months of
history a snapshot of the detector state would shorten this; the topics' retention bounds it.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import faust
import orjson

from schemas.codec import DecodeError, codec
from streams import topics
from streams.detect.config import RulesConfig, default_rules
from streams.detect.entity import EntityDetector
from streams.detect.person import INPUTS, PersonDetector
from streams.settings import Mode, Settings

log = logging.getLogger("pora.worker")


def faust_app(settings: Settings, app_id: str) -> faust.App:
    """An empty faust app with the worker's settings (the benchmark's bare-faust baseline uses it too)."""
    local = settings.mode is Mode.LOCAL
    return faust.App(
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
    )


def build_app(
    settings: Settings,
    rules: RulesConfig | None = None,
    *,
    app_id: str = "pora-detectors",
    already_emitted: set[str] | None = None,
    upstream_partitions: int | None = None,
) -> faust.App:
    """The worker's topology, in one place, for `pora worker` and the tests. ``already_emitted``:
    alert record ids on the alerts topic, which a restarted worker must not send again."""
    rules = rules or default_rules()
    app = faust_app(settings, app_id)
    c = codec()
    prefix = settings.topic_prefix
    inputs = app.topic(*[settings.topic(t) for t in INPUTS], key_type=bytes, value_type=bytes)
    alerts = app.topic(settings.topic(topics.ALERTS), key_type=bytes, value_type=bytes)
    dead_letters = app.topic(settings.topic(topics.DEAD_LETTERS), key_type=bytes, value_type=bytes)
    facts = app.topic(settings.topic(topics.ENTITY_FACTS), key_type=bytes, value_type=bytes)
    entity_inputs = app.topic(
        settings.topic(topics.ENTITY_FACTS), settings.topic(topics.SPONSOR_REPORTS), key_type=bytes, value_type=bytes
    )
    partitions = upstream_partitions or settings.topic_partitions
    facts_topic = settings.topic(topics.ENTITY_FACTS)
    detectors: dict[int, PersonDetector] = {}
    entity_detectors: dict[int, EntityDetector] = {}
    emitted = set(already_emitted or ())  # alert record ids on the alerts topic

    @app.agent(inputs, name="person-rules")
    async def person_rules(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        # no acks, so no committed offsets: every (re)assignment replays the partition
        manual: Any = stream  # faust's StreamT stub lacks noack()
        async for event in manual.noack().events():
            message = event.message
            detector = detectors.get(message.partition)
            if detector is None:
                detector = detectors[message.partition] = PersonDetector(rules, partition=message.partition)
            raw = event.value
            try:
                kind, record = c.decode(raw)
            except DecodeError as exc:
                await dead_letters.send(key=b"worker", value=_dead_letter(c, raw, message.topic, str(exc)))
                continue
            for alert in detector.offer(message.topic[len(prefix) :], kind, record):
                if alert["event_id"] in emitted:
                    continue  # sent before this worker (re)started
                emitted.add(alert["event_id"])
                await alerts.send(key=alert["alert_id"].encode(), value=c.encode("alert", alert))
            for key, fact in detector.facts:
                body = orjson.dumps(fact)
                if key is None:  # a watermark: to every partition of the second stage
                    for q in range(partitions):
                        await facts.send(value=body, partition=q)
                else:
                    await facts.send(key=key, value=body)
            detector.facts.clear()
            yield None

    @app.agent(entity_inputs, name="entity-rules")
    async def entity_rules(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        manual: Any = stream
        async for event in manual.noack().events():
            message = event.message
            detector = entity_detectors.get(message.partition)
            if detector is None:
                detector = entity_detectors[message.partition] = EntityDetector(rules, partitions)
            if message.topic == facts_topic:
                out = detector.offer_fact(orjson.loads(event.value))
            else:
                try:
                    kind, record = c.decode(event.value)
                except DecodeError as exc:
                    await dead_letters.send(key=b"worker", value=_dead_letter(c, event.value, message.topic, str(exc)))
                    continue
                out = detector.offer_report(kind, record)
            for alert in out:
                if alert["event_id"] in emitted:
                    continue
                emitted.add(alert["event_id"])
                await alerts.send(key=alert["alert_id"].encode(), value=c.encode("alert", alert))
            yield None

    return app


def _dead_letter(c: Any, raw: bytes, topic: str, reason: str) -> bytes:
    now = int(time.time() * 1000)
    return bytes(
        c.encode(
            "dead_letter",
            {
                "event_id": f"dl-worker-{topic}-{now}-{hash(raw) & 0xFFFFFFFF:08x}",
                "occurred_at": now,
                "reported_at": now,
                "source": "worker",
                "step": "worker.decode",
                "kind": None,
                "reason": "undecodable",
                "errors": [{"field": "<record>", "problem": reason}],
                "content_type": "avro/binary",
                "raw": raw,
            },
        )
    )


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
    from streams.reading import read_topic

    return {
        str(r.record["event_id"])
        for r in read_topic(settings.kafka_bootstrap, settings.topic(topics.ALERTS))
        if r.record is not None
    }


def run_worker(settings: Settings, rules: RulesConfig | None = None) -> None:
    from faust import Worker

    emitted = _emitted_ids(settings)
    log.info("%d alert records already on %s", len(emitted), settings.topic(topics.ALERTS))
    app = build_app(settings, rules, already_emitted=emitted, upstream_partitions=_partitions(settings))
    Worker(app, loglevel="info", quiet=True).execute_from_commandline()
