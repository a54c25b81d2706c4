"""Run the detectors over a file of events on their own topics: for the demo and the checks
(replay, worker processes, wait until the alerts have settled)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from streams import topics
from streams.localstack import stop_process
from streams.reading import read_topic
from streams.settings import Settings


def pora_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a `pora` subprocess these settings (what differs from the
    defaults, as PORA_* variables, over this process's environment)."""
    env = dict(os.environ)
    for name, value in settings.model_dump(exclude_defaults=True).items():
        if value is None:
            continue
        text = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        env[f"PORA_{name.upper()}"] = str(text.value if hasattr(text, "value") else text)
    return env


def start_service(settings: Settings, *args: str, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """``pora <args>`` as a process of its own session (so it can be stopped or killed alone)."""
    command = [sys.executable, "-m", "streams.cli", *args]
    env = pora_env(settings)
    if log_path is None:
        out: Any = subprocess.DEVNULL
        return subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def start_worker(settings: Settings, *, metrics_port: int = 0, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """One `pora worker` on the settings' topics; ``metrics_port`` 0: no /metrics (several
    workers share the machine)."""
    return start_service(settings.model_copy(update={"worker_metrics_port": metrics_port}), "worker", log_path=log_path)


@contextmanager
def detector_workers(settings: Settings, count: int = 1, *, settle_s: float | None = None) -> Iterator[None]:
    """``count`` worker processes on the settings' topics; stopped (by pid) on exit."""
    procs = [start_worker(settings) for _ in range(count)]
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
