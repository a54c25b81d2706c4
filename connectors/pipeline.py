"""Run the detectors over a file of events on their own topics: for the demo and the checks
(replay, worker processes, wait until the alerts have settled)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from streams import topics
from streams.localstack import stop_process
from streams.reading import read_topic
from streams.settings import Settings


@contextmanager
def detector_workers(settings: Settings, count: int = 1, *, settle_s: float | None = None) -> Iterator[None]:
    """``count`` worker processes on the settings' topics; stopped (by pid) on exit."""
    env = {
        **os.environ,
        "PORA_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "PORA_TOPIC_PREFIX": settings.topic_prefix,
        "PORA_TOPIC_PARTITIONS": str(settings.topic_partitions),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(count)
    ]
    try:
        # let the consumer group settle before input arrives (a join waits half the session timeout)
        time.sleep(settle_s if settle_s is not None else (8 if count > 1 else 3))
        yield
    finally:
        for p in procs:
            stop_process(p.pid)


def alerts_when_settled(
    settings: Settings, *, expected: int | None = None, quiet_s: float = 3, timeout: float = 120
) -> list[dict[str, Any]]:
    """The alert records on the topic once ``expected`` are there (or nothing new came for ``quiet_s``)."""
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = [r.record for r in read_topic(settings.kafka_bootstrap, settings.topic(topics.ALERTS)) if r.record]
        if expected is not None and len(records) >= expected:
            time.sleep(2)  # anything extra would show up now
            return [r.record for r in read_topic(settings.kafka_bootstrap, settings.topic(topics.ALERTS)) if r.record]
        if len(records) != last:
            last, last_change = len(records), time.monotonic()
        elif expected is None and records and time.monotonic() - last_change >= quiet_s:
            return records
        time.sleep(0.5)
    return records
