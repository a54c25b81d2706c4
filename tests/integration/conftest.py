"""Integration fixtures: one real Tansu broker per test session, fresh topic names per test.

Every test below this directory is marked ``integration`` automatically. Topics are never
deleted (the broker's memory storage goes with it at the end of the session); tests stay
independent through a unique topic prefix each.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.localstack import create_topics, running_broker
from streams.topics import TOPICS

TEST_PARTITIONS = 3
_HERE = Path(__file__).resolve().parent

ConsumerRecord = Any  # kafka.consumer.fetcher.ConsumerRecord (a namedtuple; kafka-python is untyped)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.resolve().is_relative_to(_HERE):
            item.add_marker(pytest.mark.integration)


def make_topics(bootstrap: str, prefix: str, partitions: int = TEST_PARTITIONS) -> list[str]:
    """Create every platform topic (streams.topics.TOPICS) under ``prefix``; returns the full names."""
    names = [f"{prefix}{spec.name}" for spec in TOPICS]
    create_topics(bootstrap, names, partitions=partitions, replication=1)
    return names


def consume_all(
    bootstrap: str, topic: str, expected: int, timeout: float = 30.0, extra_wait: float = 1.0
) -> list[ConsumerRecord]:
    """Read ``topic`` from the beginning until ``expected`` records arrived or ``timeout`` passed,
    then keep polling for ``extra_wait`` seconds so that unexpected extra records show up too.

    No consumer group (partitions assigned directly), so nothing is committed and no group join
    delays the read. The caller asserts on the count.
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
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        records: list[ConsumerRecord] = []

        def poll_until(deadline: float, stop_at: int | None) -> None:
            while time.monotonic() < deadline and (stop_at is None or len(records) < stop_at):
                for batch in consumer.poll(timeout_ms=200).values():
                    records.extend(batch)

        poll_until(time.monotonic() + timeout, expected)
        poll_until(time.monotonic() + extra_wait, None)
        return records
    finally:
        consumer.close()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a Tansu broker started for this test session (stopped at its end)."""
    with running_broker() as bootstrap:
        yield bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A prefix unique to the test, e.g. ``t-1a2b3c4d.``, so tests never share a topic."""
    return f"t-{uuid.uuid4().hex[:8]}."


@pytest.fixture
def topics(kafka_bootstrap: str, topic_prefix: str) -> dict[str, str]:
    """All platform topics created under the test's prefix: base name -> full topic name."""
    make_topics(kafka_bootstrap, topic_prefix)
    return {spec.name: f"{topic_prefix}{spec.name}" for spec in TOPICS}


@pytest.fixture
def consume(kafka_bootstrap: str) -> Callable[..., list[ConsumerRecord]]:
    """``consume(topic, expected, timeout=30.0, extra_wait=1.0)`` against the session broker."""

    def _consume(topic: str, expected: int, timeout: float = 30.0, extra_wait: float = 1.0) -> list[ConsumerRecord]:
        return consume_all(kafka_bootstrap, topic, expected, timeout=timeout, extra_wait=extra_wait)

    return _consume
