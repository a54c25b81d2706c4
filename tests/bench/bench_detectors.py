"""Detector benchmark: events/s of one worker against bare faust and raw aiokafka, and alert latency.

Run with ``python -m tests.bench.bench_detectors``. One process, one Tansu broker (``running_broker()``):

1. **Throughput.** A simulation (:mod:`connectors.simulator`, by default 365 days of 32,000 travellers,
   ~170,000 events) is replayed at full speed (:func:`connectors.replay.replay`, windows of 1,000 lines,
   a clock tick into every partition after each) onto a fresh topic prefix *before* any consumer runs.
   Then, one after the other, on the very same records of the five topics ingestion writes (the
   worker's inputs; its internal facts topic is its own traffic, counted apart):

   - the detector worker, ``python -m streams.cli worker``, a subprocess;
   - a bare faust agent in a subprocess, same app settings as ``streams.app.build_app`` and the same
     iteration (``stream.noack().events()``), that only counts the records;
   - a raw ``AIOKafkaConsumer.getmany`` loop in a subprocess, with and then without ``schemas.codec``
     decode.

   **What is timed.** Each consumer is timed from the moment it can consume to the moment it had
   consumed everything, both read from the consumer's own clock, so start-up (imports, the consumer
   group join, which waits half the session timeout on Tansu) is reported apart and not counted:
   faust processes from their "Worker ready" log line (logged as the fetcher starts, after the
   partition assignment) to, for the worker, the ``reported_at`` of its *last alert record* (the
   engine stamps it with the wall clock when it emits) and, for the bare agent, its last record; the
   raw consumer from its ``seek_to_beginning`` to its last record. The worker's last alert is a tight
   end: every partition ends with the replay's final clock tick, which releases that partition's last
   window (and its watermark, the second stage's), so at most the tail of that window (<1 % of the
   records) is read after it. As a cross-check the worker's CPU time is sampled every 100 ms and the
   moment it fell idle is reported too. Once it is idle, its alert records are compared with the
   ones both stages give without Kafka (:func:`streams.detect.offline.detect_offline` over the decoded
   input topics, as the integration test's ``reference`` does), computed by a fresh process so that
   it runs the code now on disk, as the worker did; a digest of ``streams/``, ``schemas/`` and
   ``connectors/`` taken at both starts tells when the code changed in between (the counts are then
   not comparable, and say so).
   events/s counts the simulated events; records/s also counts the clock ticks all consumers read.

2. **Latency.** A fresh worker on a fresh prefix; events are ingested through
   :class:`connectors.gateway.ingest.Ingestor` (a :class:`KafkaPublisher`, a trusted ``system`` source,
   ``reported_at`` = now) at ``--rate`` events/s for ``--seconds``: the gateway bench's mix, with a
   share of the citizens' departures risky (``SampleFactory.citizen_departure(risky=True)``, score 9
   against a threshold of 5, so ``tppo.screening`` fires as soon as the departure is released). Clock
   ticks go out every ``--tick-ms``. An aiokafka consumer on the alerts topic runs in the same loop;
   each risky departure is matched to its alert by the alert's ``window`` evidence (the departure's
   event id). Latency = alert record seen - departure write acknowledged. The detectors release an
   event only once every input topic of its partition is ``time.lateness_seconds`` past it, so that
   setting is a floor under the latency; it is printed beside the figures.

3. Targets (informational): ≥ 8,000 events/s per worker, p99 latency < 1 s. When one is missed, the
   throughput phase is repeated on a fresh prefix with ``py-spy record`` attached to the worker for
   ``--profile-seconds``, and the top self-time functions of the folded stacks are printed (the
   figures above come from the run without the profiler).

Results go to ``bench-results/detectors.json`` (the folded stacks beside it). The exit status is
non-zero only when a count is off: alerts different from the reference, records not all consumed,
or risky departures without their alert. ``--skip-throughput`` / ``--skip-latency`` run one phase
(e.g. ``--skip-throughput --rate 300`` for the latency of a worker that keeps up).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from connectors.gateway.ingest import TOPIC_OF_KIND, Ingestor, Item
from connectors.gateway.keys import Source
from connectors.gateway.publisher import KafkaPublisher
from connectors.replay import replay
from connectors.samples import SampleFactory
from connectors.simulator import write_simulation
from schemas.codec import codec
from streams import topics
from streams.detect.config import default_rules
from streams.detect.offline import detect_offline
from streams.detect.person import INPUTS, ms
from streams.localstack import create_topics, running_broker, stop_process
from streams.reading import read_topic
from streams.settings import Settings
from streams.topics import TOPICS
from tests.bench.bench_gateway import code_version, count_records, percentile
from tests.bench.common import REPO, Child, child, child_env, proc_sample

TARGET_EVENTS_PER_S = 8_000
TARGET_P99_S = 1.0
SIM_START = date(2025, 1, 1)
WIB = timezone(timedelta(hours=7))
# the latency workload: (sample, weight), as the gateway bench mixes them
LATENCY_MIX: tuple[tuple[str, float], ...] = (("hotel_check_in", 0.6), ("arrival", 0.3), ("citizen_departure", 0.1))
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::\d+)?\)$")


def say(text: str = "") -> None:
    print(text, flush=True)


# ---------------------------------------------------------------- child processes


WORKER_ARGV = (sys.executable, "-m", "streams.cli", "worker")
# what ingestion (and the replay) writes, all of which the worker reads: the person stage the
# person-keyed topics, the second stage the sponsor reports (and its internal facts topic)
WORKER_INPUTS: tuple[str, ...] = (*INPUTS, topics.SPONSOR_REPORTS)


def role_argv(role: str, bootstrap: str, prefix: str, partitions: int, expect: int, result: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tests.bench.bench_detectors",
        "--role",
        role,
        "--bootstrap",
        bootstrap,
        "--prefix",
        prefix,
        "--partitions",
        str(partitions),
        "--expect",
        str(expect),
        "--result",
        str(result),
    ]


class CpuWatch:
    """Samples a process's CPU seconds every ``period`` in a thread: how busy it was, and when."""

    def __init__(self, pid: int, period: float = 0.1) -> None:
        self.pid = pid
        self.period = period
        self.samples: list[tuple[float, float]] = []  # (time.time(), CPU seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"cpu-{pid}", daemon=True)

    def __enter__(self) -> CpuWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), proc_sample(self.pid).cpu_s))
            except (OSError, IndexError, ValueError):
                return  # the process is gone
            self._stop.wait(self.period)

    def cpu_at(self, t: float) -> float | None:
        s = self.samples
        if not s:
            return None
        i = bisect.bisect_left(s, (t, -1.0))
        if i == 0:
            return s[0][1]
        if i >= len(s):
            return s[-1][1]
        (t0, c0), (t1, c1) = s[i - 1], s[i]
        return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1

    def share(self, t0: float, t1: float) -> float | None:
        """CPU seconds per wall second between ``t0`` and ``t1`` (1.0 = one core busy)."""
        c0, c1 = self.cpu_at(t0), self.cpu_at(t1)
        return None if c0 is None or c1 is None or t1 <= t0 else (c1 - c0) / (t1 - t0)

    def busy_until(self, threshold: float = 0.3) -> float | None:
        """End of the last sampling interval in which the process used more than ``threshold`` cores."""
        last = None
        for (t0, c0), (t1, c1) in zip(self.samples, self.samples[1:], strict=False):
            if t1 > t0 and (c1 - c0) / (t1 - t0) > threshold:
                last = t1
        return last


# ---------------------------------------------------------------- workload and reference


def platform_topics(prefix: str) -> list[str]:
    return [f"{prefix}{spec.name}" for spec in TOPICS]


def input_topics(prefix: str) -> list[str]:
    return [f"{prefix}{t}" for t in WORKER_INPUTS]


@dataclass
class Loaded:
    prefix: str
    events: int  # accepted by the replay
    records: int  # on the worker's input topics: events and clock ticks
    by_topic: dict[str, int]
    replay_s: float
    ticks: int


def load(bootstrap: str, prefix: str, partitions: int, path: Path, events: int, window: int) -> Loaded:
    create_topics(bootstrap, platform_topics(prefix), partitions, 1)
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=partitions)
    stats = asyncio.run(replay(settings, path, window=window))
    if stats.rejected or stats.accepted != events:
        raise SystemExit(
            f"replay onto {prefix} accepted {stats.accepted} of {events} events "
            f"({stats.rejected} rejected: {stats.rejected_lines[:3]})"
        )
    counts = count_records(bootstrap, input_topics(prefix))
    return Loaded(prefix, stats.accepted, sum(counts.values()), counts, stats.seconds, stats.ticks)


def reference_alerts(bootstrap: str, prefix: str, partitions: int) -> list[dict[str, Any]]:
    """The alert records both stages give, without Kafka, for what is on the input topics."""
    records: list[tuple[str, int, str, dict[str, Any]]] = []
    for name in WORKER_INPUTS:
        for r in read_topic(bootstrap, f"{prefix}{name}", ticks=True, timeout=600):
            if r.record is None:
                raise SystemExit(f"undecodable record on {prefix}{name} [{r.partition}:{r.offset}]: {r.error}")
            records.append((name, r.partition, r.kind, r.record))
    return detect_offline(records, default_rules(), partitions)


def source_fingerprint() -> str:
    """A digest of the code and rules the detectors run (streams/, schemas/, connectors/)."""
    h = hashlib.sha256()
    for d in ("streams", "schemas", "connectors"):
        for path in sorted((REPO / d).rglob("*")):
            if path.suffix in (".py", ".toml", ".avsc") and path.is_file():
                h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- throughput runs


@dataclass
class ConsumerRun:
    name: str
    records: int  # input records it consumed (events and clock ticks)
    expected_records: int
    events: int
    seconds: float  # ready -> last record (worker: last alert)
    events_per_s: float
    records_per_s: float
    startup_s: float | None  # spawned -> ready
    first_after_ready_s: float | None  # ready -> first record (worker: first alert)
    cpu_share: float | None  # cores used while timed
    events_per_cpu_s: float | None
    counts_ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


def collect_alerts(
    bootstrap: str, topic: str, proc: subprocess.Popen[bytes], watch: CpuWatch, *, idle_s: float, timeout: float
) -> list[dict[str, Any]]:
    """Decoded alert records on ``topic`` once the worker has been idle (CPU below 0.05 cores) and no new
    alert came for ``idle_s``, or the worker died, or ``timeout`` passed."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        allow_auto_create_topics=False,
        client_id="pora-bench-alerts",
    )
    raw: list[bytes] = []
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise LookupError(f"topic {topic!r} does not exist on {bootstrap}")
        consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        deadline = time.monotonic() + timeout
        last_change = time.monotonic()
        while time.monotonic() < deadline and proc.poll() is None:
            for batch in consumer.poll(timeout_ms=500).values():
                raw += [r.value for r in batch]
                last_change = time.monotonic()
            now = time.time()
            cpu = watch.share(now - idle_s, now)
            if time.monotonic() - last_change >= idle_s and cpu is not None and cpu < 0.05:
                break
    finally:
        consumer.close()
    c = codec()
    return [c.decode(v)[1] for v in raw]


def fact_types(bootstrap: str, topic: str, timeout: float = 300.0) -> Counter[str]:
    """The records on the worker's internal facts topic (JSON) by their ``t`` field."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        allow_auto_create_topics=False,
        client_id="pora-bench-facts",
    )
    types: Counter[str] = Counter()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        pending, deadline = set(tps), time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200, max_records=50_000).values():
                for r in batch:
                    try:
                        types[str(orjson.loads(r.value).get("t", "?"))] += 1
                    except (orjson.JSONDecodeError, AttributeError):
                        types["<not JSON>"] += 1
            for tp in list(pending):
                hw = consumer.highwater(tp)
                if hw is not None and consumer.position(tp) >= hw:
                    pending.discard(tp)
    finally:
        consumer.close()
    return types


@dataclass
class WorkerAlerts:
    alerts: list[tuple[str, str]]  # (alert record id, rule id)
    fingerprints: tuple[str, str]  # of the sources when the worker was spawned and when it was ready


def worker_throughput(bootstrap: str, loaded: Loaded, partitions: int, work: Path) -> tuple[ConsumerRun, WorkerAlerts]:
    """The worker's run; its alerts are checked against the reference afterwards (:func:`check_alerts`)."""
    env = child_env(bootstrap, loaded.prefix, partitions)
    at_spawn = source_fingerprint()
    with child("worker-throughput", WORKER_ARGV, env, work) as w, CpuWatch(w.pid) as watch:
        ready = w.wait_ready()
        at_ready = source_fingerprint()
        alerts = collect_alerts(
            bootstrap,
            f"{loaded.prefix}{topics.ALERTS}",
            w.proc,
            watch,
            idle_s=5.0,
            timeout=max(900.0, loaded.records / 100),
        )
        exited = w.proc.poll()
        tail = w.tail()
    facts = fact_types(bootstrap, f"{loaded.prefix}{topics.ENTITY_FACTS}")
    emitted = sorted(ms(a["reported_at"]) / 1000 for a in alerts)
    end = emitted[-1] if emitted else float("nan")
    seconds = end - ready
    busy = watch.busy_until()
    cpu = watch.share(ready, end) if emitted else None
    run = ConsumerRun(
        name="detector worker",
        records=loaded.records,
        expected_records=loaded.records,
        events=loaded.events,
        seconds=seconds,
        events_per_s=loaded.events / seconds,
        records_per_s=loaded.records / seconds,
        startup_s=ready - w.spawned_at,
        first_after_ready_s=(emitted[0] - ready) if emitted else None,
        cpu_share=cpu,
        events_per_cpu_s=(loaded.events / (cpu * seconds)) if cpu else None,
        counts_ok=exited is None,
        detail={
            "alerts_got": len(alerts),
            "alerts_by_rule": dict(Counter(str(a["rule_id"]) for a in alerts)),
            # the person stage's records for the second stage (internal topic), by type ("tick": a watermark)
            "facts_records": sum(facts.values()),
            "facts_by_type": dict(facts),
            "cpu_idle_after_ready_s": (busy - ready) if busy else None,
            "worker_exited_with": exited,
            "log_tail": None if exited is None else tail,
        },
    )
    got = [(str(a["event_id"]), str(a["rule_id"])) for a in alerts]
    return run, WorkerAlerts(got, (at_spawn, at_ready))


def check_alerts(run: ConsumerRun, got: WorkerAlerts, reference: dict[str, Any]) -> None:
    """Compare the worker's alert records with the reference's; sets ``run.counts_ok`` and the detail."""
    expected = [(str(i), str(r)) for i, r in reference["alerts"]]
    fingerprints = {*got.fingerprints, *reference["fingerprints"]}
    missing = Counter(expected) - Counter(got.alerts)
    extra = Counter(got.alerts) - Counter(expected)
    run.detail.update(
        {
            "alerts_expected": len(expected),
            "alerts_missing": sum(missing.values()),
            "alerts_extra": sum(extra.values()),
            "missing_by_rule": dict(Counter(r for _, r in missing.elements())),
            "extra_by_rule": dict(Counter(r for _, r in extra.elements())),
            "missing_sample": [i for i, _ in list(missing)[:5]],
            # one alert record id for two different records: the worker sends the first it computes
            "reference_duplicate_ids": sorted(i for i, n in Counter(i for i, _ in expected).items() if n > 1),
            "worker_duplicate_ids": sorted(i for i, n in Counter(i for i, _ in got.alerts).items() if n > 1),
            "extra_sample": [i for i, _ in list(extra)[:5]],
            # the sources (streams/, schemas/, connectors/) when the worker and the reference loaded them:
            # another fingerprint means the code changed in between, and the counts cannot be compared
            "source_fingerprints": sorted(fingerprints),
            "code_changed_during_run": len(fingerprints) > 1,
        }
    )
    run.counts_ok = run.counts_ok and not missing and not extra and len(fingerprints) == 1


def reference_child(bootstrap: str, loaded: Loaded, partitions: int, work: Path) -> dict[str, Any]:
    """The reference, computed by a fresh process (so from the code now on disk, as the worker's was)."""
    result = work / "reference.json"
    argv = role_argv("reference", bootstrap, loaded.prefix, partitions, loaded.records, result)
    with child("reference", argv, child_env(bootstrap, loaded.prefix, partitions), work) as c:
        code = c.proc.wait(timeout=1800)
        if code != 0 or not result.exists():
            raise RuntimeError(f"the reference child exited with {code}:\n{c.tail()}")
    data: dict[str, Any] = orjson.loads(result.read_bytes())
    return data


def wait_result(path: Path, c: Child, expect: int, timeout: float) -> dict[str, Any] | None:
    """The result file a role child writes once it counted ``expect`` records (1 s more for extras)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            data: dict[str, Any] = orjson.loads(path.read_bytes())
            if data["count"] >= expect or data.get("done"):
                time.sleep(1.0)
                final: dict[str, Any] = orjson.loads(path.read_bytes())
                return final
        if c.proc.poll() is not None:
            return orjson.loads(path.read_bytes()) if path.exists() else None
        time.sleep(0.1)
    return orjson.loads(path.read_bytes()) if path.exists() else None


def counting_run(
    name: str, role: str, bootstrap: str, loaded: Loaded, partitions: int, work: Path, *, faust_log: bool
) -> ConsumerRun:
    result = work / f"{role}.json"
    argv = role_argv(role, bootstrap, loaded.prefix, partitions, loaded.records, result)
    with child(role, argv, child_env(bootstrap, loaded.prefix, partitions), work) as c, CpuWatch(c.pid) as watch:
        ready_logged = c.wait_ready() if faust_log else None
        data = wait_result(result, c, loaded.records, timeout=max(600.0, loaded.records / 200))
        tail = c.tail()
    if data is None or not data.get("first"):
        raise RuntimeError(f"{name}: no result from the child:\n{tail}")
    ready = ready_logged if ready_logged is not None else float(data["ready"])
    seconds = float(data["last"]) - ready
    cpu = watch.share(ready, float(data["last"]))
    ok = int(data["count"]) == loaded.records
    return ConsumerRun(
        name=name,
        records=int(data["count"]),
        expected_records=loaded.records,
        events=loaded.events,
        seconds=seconds,
        events_per_s=loaded.events / seconds,
        records_per_s=int(data["count"]) / seconds,
        startup_s=ready - c.spawned_at,
        first_after_ready_s=float(data["first"]) - ready,
        cpu_share=cpu,
        events_per_cpu_s=(loaded.events / (cpu * seconds)) if cpu else None,
        counts_ok=ok,
        detail={"log_tail": None if ok else tail},
    )


# ---------------------------------------------------------------- the child roles


def _write_result(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(data))
    tmp.replace(path)


def role_bare_faust(a: Namespace) -> int:
    """A faust app with the worker's settings whose agent only counts records (runs until stopped)."""
    import faust

    from streams.app import faust_app

    settings = Settings(kafka_bootstrap=a.bootstrap, topic_prefix=a.prefix, topic_partitions=a.partitions)
    # "bare-faust": with the worker's fast path (streams.fastpath); "bare-faust-stock": faust as released
    app = faust_app(settings, a.role, fast=a.role == "bare-faust")
    inputs = app.topic(*input_topics(a.prefix), key_type=bytes, value_type=bytes)
    result = Path(a.result)
    seen = {"count": 0, "first": 0.0}

    @app.agent(inputs, name="bare-count")
    async def bare_count(stream: Any) -> AsyncIterator[None]:
        async for _event in stream.noack().events():  # as the worker iterates
            n = seen["count"] = seen["count"] + 1
            if n == 1:
                seen["first"] = time.time()
            if n >= a.expect:
                _write_result(result, {"count": n, "first": seen["first"], "last": time.time()})
            yield None

    faust.Worker(app, loglevel="info", quiet=True).execute_from_commandline()
    return 0


async def _raw_consume(a: Namespace) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = codec() if a.role == "raw-decode" else None
    consumer = AIOKafkaConsumer(
        bootstrap_servers=a.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="pora-bench-raw",
    )
    await consumer.start()
    try:
        await consumer.topics()  # metadata for every topic
        tps = [
            TopicPartition(name, p)
            for name in input_topics(a.prefix)
            for p in sorted(consumer.partitions_for_topic(name) or ())
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ready, first, n = time.time(), 0.0, 0
        deadline = time.monotonic() + a.timeout
        while n < a.expect and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                if c is not None:
                    for r in records:
                        c.decode(r.value)
                n += len(records)
            if n and not first:
                first = time.time()
        last = time.time()
        for records in (await consumer.getmany(timeout_ms=1000)).values():  # anything beyond the count
            n += len(records)
        _write_result(Path(a.result), {"count": n, "ready": ready, "first": first, "last": last, "done": True})
    finally:
        await consumer.stop()


def role_raw(a: Namespace) -> int:
    asyncio.run(_raw_consume(a))
    return 0


def role_reference(a: Namespace) -> int:
    at_start = source_fingerprint()  # this process imported the detectors just before
    alerts = reference_alerts(a.bootstrap, a.prefix, a.partitions)
    at_end = source_fingerprint()
    _write_result(
        Path(a.result),
        {"fingerprints": sorted({at_start, at_end}), "alerts": [[al["event_id"], al["rule_id"]] for al in alerts]},
    )
    return 0


# ---------------------------------------------------------------- latency


@dataclass
class LatencyResult:
    prefix: str
    target_rate: float
    achieved_rate: float
    seconds: float
    events_sent: int
    events_acked: int
    ticks: int
    tick_ms: int
    lateness_s: float
    risky_acked: int
    matched: int
    unmatched_alerts: int
    other_alerts: dict[str, int]
    failures: list[str]
    ack_to_seen_p50_ms: float
    ack_to_seen_p99_ms: float
    ack_to_seen_max_ms: float
    reported_to_emitted_p50_ms: float
    reported_to_emitted_p99_ms: float
    reported_to_emitted_max_ms: float
    first_tenth_p50_ms: float  # by write time: does the latency grow (the worker falls behind)?
    last_tenth_p50_ms: float
    settle_s: float  # after the last write, until the last alert came
    worker_cpu_share: float | None
    counts_ok: bool


def latency_workload(
    rate: float, seconds: float, slot_s: float, risky_share: float, seed: int
) -> list[list[dict[str, Any]]]:
    """Slots of ``rate * slot_s`` events, each ``{"kind", "event", "risky"}``; occurred 1-60 min ago."""
    today = datetime.now(WIB).date()
    factory = SampleFactory(seed=seed, today=today)
    rng = random.Random(seed + 1)
    names = [n for n, _ in LATENCY_MIX]
    weights = [w for _, w in LATENCY_MIX]
    per_slot = max(1, round(rate * slot_s))
    now_ms = int(time.time() * 1000)
    slots: list[list[dict[str, Any]]] = []
    for _ in range(max(1, round(seconds / slot_s))):
        slot = []
        for name in rng.choices(names, weights, k=per_slot):
            risky = False
            if name == "hotel_check_in":
                kind, event = "hotel_guest_event", factory.hotel_check_in()
            elif name == "arrival":
                kind, event = "border_crossing", factory.arrival()
            else:
                risky = rng.random() < risky_share
                kind, event = "border_crossing", factory.citizen_departure(risky=risky)
            occurred = now_ms - rng.randint(60, 3600) * 1000
            event["occurred_at"] = datetime.fromtimestamp(occurred / 1000, WIB).isoformat(timespec="seconds")
            slot.append({"kind": kind, "event": event, "risky": risky})
        slots.append(slot)
    return slots


async def post_and_watch(
    bootstrap: str, prefix: str, partitions: int, slots: list[list[dict[str, Any]]], a: Namespace, lateness_s: float
) -> tuple[dict[str, Any], dict[str, tuple[float, int]], dict[str, tuple[float, int]]]:
    """Ingest the slots on schedule while ticking and reading the alerts; returns (stats, acked, seen):
    acked = risky departure id -> (ack time, its reported_at ms); seen = alert window -> (seen time, emitted ms)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=partitions)
    publisher = KafkaPublisher(bootstrap)
    await publisher.start()
    ingestor = Ingestor(settings, publisher, codec())
    source = Source("bench-latency", "system", "")
    for t in dict.fromkeys(TOPIC_OF_KIND.values()):
        await publisher.partitions(settings.topic(t))  # metadata before the clock starts
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="pora-bench-latency",
    )
    await consumer.start()
    alerts_topic = settings.topic(topics.ALERTS)
    await consumer.topics()
    consumer.assign(
        [TopicPartition(alerts_topic, p) for p in sorted(consumer.partitions_for_topic(alerts_topic) or ())]
    )
    await consumer.seek_to_beginning()

    c = codec()
    acked: dict[str, tuple[float, int]] = {}
    seen: dict[str, tuple[float, int]] = {}
    other: Counter[str] = Counter()
    failures: list[str] = []
    counts = {"sent": 0, "acked": 0, "ticks": 0}
    stop_reading, stop_ticking = asyncio.Event(), asyncio.Event()

    async def reader() -> None:
        while not stop_reading.is_set():
            batches = await consumer.getmany(timeout_ms=50)
            now = time.time()
            for records in batches.values():
                for r in records:
                    rec = c.decode(r.value)[1]
                    if rec["rule_id"] != "tppo.screening":
                        other[str(rec["rule_id"])] += 1
                        continue
                    window = next(str(e["value"]) for e in rec["evidence"] if e["name"] == "window")
                    seen.setdefault(window, (now, ms(rec["reported_at"])))

    async def ticker() -> None:
        period = a.tick_ms / 1000
        next_at = time.monotonic()
        while not stop_ticking.is_set():
            try:
                await ingestor.tick(source.id)
                counts["ticks"] += 1
            except Exception as exc:
                failures.append(f"tick: {exc!r}")
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def post(slot: list[dict[str, Any]]) -> None:
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for item in slot:
            by_kind.setdefault(item["kind"], []).append(item)
        kinds = list(by_kind)
        outcomes = await asyncio.gather(
            *(
                ingestor.ingest(
                    source,
                    kind,
                    [Item(it["event"], label=f"[{i}]") for i, it in enumerate(by_kind[kind])],
                    content_type="application/json",
                    step="bench.latency",
                )
                for kind in kinds
            )
        )
        at = time.time()
        counts["sent"] += len(slot)
        for kind, outcome in zip(kinds, outcomes, strict=True):
            for it, receipt in zip(by_kind[kind], outcome.receipts, strict=True):
                if receipt is None:
                    failures.append(f"{it['event']['event_id']}: not acknowledged or rejected")
                    continue
                counts["acked"] += 1
                if it["risky"]:
                    acked[receipt.event_id] = (at, receipt.received_at_ms)
            for rej in outcome.rejections[:3]:
                failures.append(f"{kind} {rej.label}: {rej.as_dicts()[:2]}")

    read_task = asyncio.create_task(reader())
    tick_task = asyncio.create_task(ticker())
    slot_s = a.slot_ms / 1000
    in_flight = asyncio.Semaphore(32)
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()
    try:
        for i, slot in enumerate(slots):
            delay = started + i * slot_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await in_flight.acquire()
            task = asyncio.create_task(post(slot))
            task.add_done_callback(lambda _t: in_flight.release())
            tasks.append(task)
        for res in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(res, BaseException):
                failures.append(f"post: {res!r}")
        post_seconds = time.monotonic() - started
        posted_at = time.time()
        # a worker that fell behind catches up now: wait while alerts keep coming
        settle_deadline = time.monotonic() + a.settle_max
        progress_at, progress = time.monotonic(), len(seen)
        while time.monotonic() < settle_deadline and not set(acked) <= set(seen):
            await asyncio.sleep(0.2)
            if len(seen) != progress:
                progress_at, progress = time.monotonic(), len(seen)
            elif time.monotonic() - progress_at > lateness_s + 15:
                break
        await asyncio.sleep(1.0)  # late or unexpected alerts show up now
    finally:
        stop_ticking.set()
        stop_reading.set()
        for background in (tick_task, read_task):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(background, 5)
        await consumer.stop()
        await publisher.stop()
    stats = {**counts, "seconds": post_seconds, "posted_at": posted_at, "other": dict(other), "failures": failures}
    return stats, acked, seen


def latency_phase(bootstrap: str, prefix: str, partitions: int, a: Namespace, work: Path) -> LatencyResult:
    lateness_s = default_rules().time.lateness_seconds
    create_topics(bootstrap, platform_topics(prefix), partitions, 1)
    slots = latency_workload(a.rate, a.seconds, a.slot_ms / 1000, a.risky_share, a.seed)
    with child("worker-latency", WORKER_ARGV, child_env(bootstrap, prefix, partitions), work) as w:
        w.wait_ready()
        with CpuWatch(w.pid) as watch:
            t0 = time.time()
            stats, acked, seen = asyncio.run(post_and_watch(bootstrap, prefix, partitions, slots, a, lateness_s))
            t1 = time.time()
        alive = w.proc.poll() is None
    matched = sorted((k for k in acked if k in seen), key=lambda k: acked[k][0])
    e2e = [(seen[k][0] - acked[k][0]) * 1000 for k in matched]
    tenth = max(1, len(e2e) // 10)
    engine = [float(seen[k][1] - acked[k][1]) for k in matched]
    unmatched = len(set(seen) - set(acked))
    failures = list(stats["failures"]) + ([] if alive else [f"the worker exited:\n{w.tail()}"])
    return LatencyResult(
        prefix=prefix,
        target_rate=a.rate,
        achieved_rate=stats["sent"] / stats["seconds"],
        seconds=stats["seconds"],
        events_sent=stats["sent"],
        events_acked=stats["acked"],
        ticks=stats["ticks"],
        tick_ms=a.tick_ms,
        lateness_s=lateness_s,
        risky_acked=len(acked),
        matched=len(matched),
        unmatched_alerts=unmatched,
        other_alerts=stats["other"],
        failures=failures[:20],
        ack_to_seen_p50_ms=percentile(e2e, 50),
        ack_to_seen_p99_ms=percentile(e2e, 99),
        ack_to_seen_max_ms=max(e2e, default=float("nan")),
        reported_to_emitted_p50_ms=percentile(engine, 50),
        reported_to_emitted_p99_ms=percentile(engine, 99),
        reported_to_emitted_max_ms=max(engine, default=float("nan")),
        first_tenth_p50_ms=percentile(e2e[:tenth], 50),
        last_tenth_p50_ms=percentile(e2e[-tenth:], 50),
        settle_s=max((seen[k][0] for k in matched), default=stats["posted_at"]) - stats["posted_at"],
        worker_cpu_share=watch.share(t0, t1),
        counts_ok=len(matched) == len(acked) > 0 and unmatched == 0 and not failures,
    )


# ---------------------------------------------------------------- profile


@dataclass
class Profile:
    seconds: int
    rate: int
    folded_path: str
    folded: Folded


# frames whose inclusive share tells where the time goes (substring of the shortened frame)
MARKED = (
    "_drain_messages",
    "wait_first",
    "PersonDetector.offer",
    "decode (schemas/codec.py)",
    "send (faust/topics.py)",
    "_py_schemaless_reader",
    "schemaless_reader",
    "encode (schemas/codec.py)",
)


def short_frame(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    for marker in ("site-packages/", f"{REPO}/"):  # py-spy mostly shortens them already
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({path})"


def package_of(frame: str) -> str:
    """The package of a shortened frame: ``f (faust/streams.py)`` -> faust, ``f (selectors.py)`` -> selectors
    (py-spy names files relative to the sys.path entry they were imported from)."""
    path = frame.rpartition(" (")[2].rstrip(")")
    head, sep, _ = path.partition("/")
    return head if sep else path.removesuffix(".py")


@dataclass
class Folded:
    """py-spy's samples of the worker. Its main thread runs the event loop with the agents; faust reads
    Kafka in a second thread (AIOKafkaConsumerThread), mostly waiting in epoll. The function tables are
    of the main thread only."""

    samples_by_thread: dict[str, int]
    epoll_by_thread: dict[str, int]  # samples in EpollSelector.select: the loop waiting on its sockets
    top_self: list[tuple[str, int]]
    top_project_inclusive: list[tuple[str, int]]
    marked_inclusive: dict[str, int]
    self_by_package: list[tuple[str, int]]

    @property
    def main(self) -> int:
        return self.samples_by_thread.get("main", 0)


def fold(path: Path, top: int = 15) -> Folded:
    """Self and inclusive samples per function (line numbers dropped) of py-spy's raw folded stacks."""
    threads: Counter[str] = Counter()
    epoll: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = [short_frame(f) for f in stack.split(";")]
        thread = "consumer thread" if frames[0].startswith("Thread._bootstrap") else "main"
        threads[thread] += count
        if frames[-1].startswith("EpollSelector.select"):
            epoll[thread] += count
        if thread != "main":
            continue
        self_time[frames[-1]] += count
        for f in set(frames):
            inclusive[f] += count
    main = threads["main"]
    project = [  # the project's frames below the entry point (`pora worker`, run_worker: every sample)
        (f, n)
        for f, n in inclusive.most_common()
        if n < 0.99 * main and any(f"({p}/" in f for p in ("streams", "schemas", "connectors"))
    ]
    marked = {m: sum(n for f, n in inclusive.items() if m in f) for m in MARKED}
    packages: Counter[str] = Counter()
    for frame, samples in self_time.items():
        packages[package_of(frame)] += samples
    return Folded(
        dict(threads),
        dict(epoll),
        self_time.most_common(top),
        project[:10],
        {k: v for k, v in marked.items() if v},
        packages.most_common(10),
    )


def profile_pass(
    bootstrap: str, prefix: str, partitions: int, sim_path: Path, events: int, a: Namespace, work: Path
) -> Profile | str:
    spy = Path(sys.executable).parent / "py-spy"
    spy_path = str(spy) if spy.exists() else shutil.which("py-spy")
    if spy_path is None:
        return "py-spy not found next to the interpreter or on PATH"
    loaded = load(bootstrap, prefix, partitions, sim_path, events, a.window)
    out = work / "worker-profile.folded"
    with child("worker-profile", WORKER_ARGV, child_env(bootstrap, loaded.prefix, partitions), work) as w:
        w.wait_ready()
        argv = [spy_path, "record", "-d", str(a.profile_seconds), "-r", str(a.profile_rate), "-f", "raw"]
        argv += ["-o", str(out), "--pid", str(w.pid)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            spy_out, _ = proc.communicate(timeout=a.profile_seconds + 60)
        finally:
            if proc.poll() is None:
                stop_process(proc.pid)
                proc.poll()
    if not out.exists():
        return f"py-spy wrote no profile: {spy_out.decode(errors='replace')[-500:]}"
    keep = a.out.with_name(a.out.stem + "-worker.folded")
    keep.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out, keep)
    return Profile(a.profile_seconds, a.profile_rate, str(keep), fold(out))


# ---------------------------------------------------------------- report


def throughput_table(runs: Sequence[ConsumerRun]) -> str:
    header = [
        "consumer",
        "events/s",
        "records/s",
        "seconds",
        "start-up s",
        "1st after ready s",
        "cores",
        "ev/CPU-s",
        "count",
    ]

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else fmt.format(v)

    body = [
        [
            r.name,
            f"{r.events_per_s:,.0f}",
            f"{r.records_per_s:,.0f}",
            f"{r.seconds:.2f}",
            num(r.startup_s, "{:.1f}"),
            num(r.first_after_ready_s, "{:.2f}"),
            num(r.cpu_share, "{:.2f}"),
            num(r.events_per_cpu_s, "{:,.0f}"),
            "ok" if r.counts_ok else "MISMATCH",
        ]
        for r in runs
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(b) for b in body)])


def parse_args(argv: Sequence[str] | None = None) -> Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_detectors", description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=365, help="simulated days (default 365)")
    parser.add_argument("--travellers", type=int, default=32_000, help="simulated travellers (default 32000)")
    parser.add_argument("--seed", type=int, default=1, help="simulation and sample seed (default 1)")
    parser.add_argument("--partitions", type=int, default=6, help="partitions per topic (default 6)")
    parser.add_argument("--window", type=int, default=1000, help="replay lines per write and tick (default 1000)")
    parser.add_argument("--rate", type=float, default=2000.0, help="latency phase: events/s (default 2000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="latency phase: seconds of load (default 30)")
    parser.add_argument("--slot-ms", type=int, default=20, help="latency phase: ms between writes (default 20)")
    parser.add_argument("--tick-ms", type=int, default=100, help="latency phase: ms between clock ticks (default 100)")
    parser.add_argument("--risky-share", type=float, default=0.2, help="latency: risky share of departures (0.2)")
    parser.add_argument("--settle-max", type=float, default=300.0, help="latency: max wait for late alerts (300 s)")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto", help="py-spy pass (auto)")
    parser.add_argument("--profile-seconds", type=int, default=10, help="py-spy duration (default 10)")
    parser.add_argument("--profile-rate", type=int, default=200, help="py-spy samples/s (default 200)")
    parser.add_argument("--skip-latency", action="store_true", help="no latency phase")
    parser.add_argument("--skip-throughput", action="store_true", help="no throughput phase (and no profile)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/detectors.json"), help="JSON results file")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the events and child logs here")
    # the child roles (this module runs itself as the bare faust agent and the raw consumers)
    parser.add_argument(
        "--role",
        choices=("bench", "bare-faust", "bare-faust-stock", "raw-decode", "raw-plain", "reference"),
        default="bench",
    )
    parser.add_argument("--bootstrap", default="", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="", help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--result", default="", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=900.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv, namespace=Namespace())
    for name in ("days", "travellers", "partitions", "window", "slot_ms", "tick_ms", "profile_seconds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.rate <= 0 or args.seconds <= 0 or not 0 < args.risky_share <= 1:
        parser.error("--rate and --seconds must be positive, --risky-share in (0, 1]")
    return args


class Namespace(argparse.Namespace):
    days: int
    travellers: int
    seed: int
    partitions: int
    window: int
    rate: float
    seconds: float
    slot_ms: int
    tick_ms: int
    risky_share: float
    settle_max: float
    profile: str
    profile_seconds: int
    profile_rate: int
    skip_latency: bool
    skip_throughput: bool
    out: Path
    work_dir: Path | None
    role: str
    bootstrap: str
    prefix: str
    expect: int
    result: str
    timeout: float


@dataclass
class Throughput:
    events: int
    by_kind: dict[str, int]
    loaded: Loaded
    alerts_expected: int
    runs: list[ConsumerRun]
    ratios: dict[str, float]
    sim_path: Path


def throughput_phase(bootstrap: str, run_id: str, a: Namespace, work: Path) -> Throughput:
    t0 = time.perf_counter()
    sim_path = work / "simulation.jsonl"
    sim = write_simulation(a.days, a.travellers, a.seed, SIM_START, sim_path, work / "truth.jsonl")
    events = len(sim.events)
    kinds = Counter(str(e["kind"]) for e in sim.events)
    del sim
    gc.collect()
    say(
        f"simulated {events:,} events ({', '.join(f'{k} {n:,}' for k, n in kinds.items())}) in "
        f"{time.perf_counter() - t0:.1f}s"
    )
    loaded = load(bootstrap, f"bd-{run_id}-tp.", a.partitions, sim_path, events, a.window)
    say(
        f"replayed onto {loaded.prefix} in {loaded.replay_s:.1f}s "
        f"({loaded.events / loaded.replay_s:,.0f} events/s): {loaded.records:,} records on the "
        f"{len(WORKER_INPUTS)} input topics ({loaded.ticks} tick rounds)"
    )
    say("timing the detector worker ...")
    worker, got = worker_throughput(bootstrap, loaded, a.partitions, work)
    t0 = time.perf_counter()
    reference = reference_child(bootstrap, loaded, a.partitions, work)
    check_alerts(worker, got, reference)
    say(
        f"reference (both stages offline, in a fresh process): {len(reference['alerts']):,} alert records "
        f"({time.perf_counter() - t0:.1f}s)"
    )
    say("timing the bare faust agents ...")
    bare = counting_run(
        "bare faust agent, fast path", "bare-faust", bootstrap, loaded, a.partitions, work, faust_log=True
    )
    stock = counting_run(
        "bare faust agent, stock", "bare-faust-stock", bootstrap, loaded, a.partitions, work, faust_log=True
    )
    say("timing raw aiokafka ...")
    raw_dec = counting_run(
        "raw aiokafka + decode", "raw-decode", bootstrap, loaded, a.partitions, work, faust_log=False
    )
    raw_plain = counting_run(
        "raw aiokafka, no decode", "raw-plain", bootstrap, loaded, a.partitions, work, faust_log=False
    )
    runs = [worker, bare, stock, raw_dec, raw_plain]
    ratios = {
        "worker_vs_bare_faust": worker.events_per_s / bare.events_per_s,
        "worker_vs_stock_faust": worker.events_per_s / stock.events_per_s,
        "fast_path_vs_stock_faust": bare.events_per_s / stock.events_per_s,
        "worker_vs_raw_decode": worker.events_per_s / raw_dec.events_per_s,
        "bare_faust_vs_raw_decode": bare.events_per_s / raw_dec.events_per_s,
        "raw_decode_vs_raw_plain": raw_dec.events_per_s / raw_plain.events_per_s,
    }
    say()
    say(throughput_table(runs))
    say(
        "ratios: worker/bare faust {worker_vs_bare_faust:.2f}, worker/stock faust {worker_vs_stock_faust:.2f}, "
        "fast path/stock faust {fast_path_vs_stock_faust:.2f}, worker/raw+decode {worker_vs_raw_decode:.3f}, "
        "bare faust/raw+decode {bare_faust_vs_raw_decode:.2f}, "
        "raw decode/no decode {raw_decode_vs_raw_plain:.2f}".format(**ratios)
    )
    d = worker.detail
    idle = d.get("cpu_idle_after_ready_s")
    say(
        f"worker: {d['alerts_got']:,}/{d['alerts_expected']:,} alert records; last alert {worker.seconds:.2f}s after "
        "ready" + (f", CPU fell idle {idle:.2f}s after ready" if idle is not None else "")
    )
    if d["alerts_missing"] or d["alerts_extra"]:
        say(
            f"worker: MISMATCH: {d['alerts_missing']} missing {d['missing_by_rule']} e.g. {d['missing_sample'][:3]}, "
            f"{d['alerts_extra']} extra {d['extra_by_rule']} e.g. {d['extra_sample'][:3]}"
        )
    if d["reference_duplicate_ids"]:
        say(
            f"worker: the reference gives {len(d['reference_duplicate_ids'])} alert record ids twice (with different "
            f"content), e.g. {d['reference_duplicate_ids'][:2]}; the worker sends an id once"
        )
    if d["code_changed_during_run"]:
        say("worker: the sources changed between the worker's start and the reference's: counts not comparable")
    say(
        f"worker: wrote and read back {d['facts_records']:,} records on its internal facts topic "
        f"({d['facts_records'] / loaded.events:.1f} per event; by type "
        + ", ".join(f"{k} {n:,}" for k, n in d["facts_by_type"].items())
        + ")"
    )
    return Throughput(events, dict(kinds), loaded, len(reference["alerts"]), runs, ratios, sim_path)


def print_latency(lt: LatencyResult) -> None:
    say(
        f"sent {lt.events_sent:,} events at {lt.achieved_rate:,.0f}/s ({lt.events_acked:,} acknowledged), "
        f"{lt.ticks} tick rounds; worker CPU {lt.worker_cpu_share or 0:.2f} cores"
    )
    say(
        f"risky departures {lt.risky_acked}, tppo alerts matched {lt.matched}"
        + (f", {lt.unmatched_alerts} unmatched" if lt.unmatched_alerts else "")
        + (f", other alerts {lt.other_alerts}" if lt.other_alerts else "")
    )
    say(
        f"ack → alert seen:      p50 {lt.ack_to_seen_p50_ms:,.0f} ms  p99 {lt.ack_to_seen_p99_ms:,.0f} ms  "
        f"max {lt.ack_to_seen_max_ms:,.0f} ms"
    )
    say(
        f"reported_at → emitted: p50 {lt.reported_to_emitted_p50_ms:,.0f} ms  "
        f"p99 {lt.reported_to_emitted_p99_ms:,.0f} ms  max {lt.reported_to_emitted_max_ms:,.0f} ms"
    )
    growing = lt.last_tenth_p50_ms > lt.first_tenth_p50_ms + 2000
    say(
        f"median of the first tenth {lt.first_tenth_p50_ms:,.0f} ms, of the last tenth "
        f"{lt.last_tenth_p50_ms:,.0f} ms; last alert {lt.settle_s:.1f}s after the last write"
        + ("  (growing: the worker fell behind the load)" if growing else "")
    )
    say(f"(floor: rules.toml time.lateness_seconds = {lt.lateness_s:g} s, plus up to one tick interval)")
    for failure in lt.failures[:5]:
        say(f"    failure: {failure}")


def print_profile(profile: Profile) -> None:
    f = profile.folded
    possible = profile.seconds * profile.rate
    say(f"py-spy: {profile.seconds}s at {profile.rate}/s; folded stacks in {profile.folded_path}")
    for thread, n in f.samples_by_thread.items():
        say(
            f"  {thread}: {n:,} samples ({n / possible:.0%} of the time not idle), "
            f"{f.epoll_by_thread.get(thread, 0) / n:.0%} of them waiting in epoll"
        )
    main = max(f.main, 1)
    say("top self time, main thread (the event loop that runs the agents):")
    for frame, n in f.top_self:
        say(f"  {n / main:6.1%}  {frame}")
    say("self time by package, main thread:")
    say("  " + ", ".join(f"{pkg} {n / main:.1%}" for pkg, n in f.self_by_package))
    say("inclusive, main thread, project code:")
    for frame, n in f.top_project_inclusive:
        say(f"  {n / main:6.1%}  {frame}")
    if f.marked_inclusive:
        say("inclusive, main thread, marked frames:")
        for frame, n in f.marked_inclusive.items():
            say(f"  {n / main:6.1%}  {frame}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role in ("bare-faust", "bare-faust-stock"):
        return role_bare_faust(args)
    if args.role in ("raw-decode", "raw-plain"):
        return role_raw(args)
    if args.role == "reference":
        return role_reference(args)

    load_at_start = os.getloadavg()[0]
    say(
        f"detector bench: simulation {args.days} days x {args.travellers:,} travellers (seed {args.seed}), "
        f"{args.partitions} partitions; {os.cpu_count()} CPUs, load {load_at_start:.2f}"
    )
    run_id = uuid.uuid4().hex[:6]
    tp: Throughput | None = None
    latency: LatencyResult | None = None
    profile: Profile | str | None = None
    with contextlib.ExitStack() as stack:
        if args.work_dir is not None:
            args.work_dir.mkdir(parents=True, exist_ok=True)
            work = args.work_dir.resolve()
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pora-bench-det-")))
        bootstrap = stack.enter_context(running_broker())
        say(f"broker: {bootstrap}; logs in {work}")

        if not args.skip_throughput:
            tp = throughput_phase(bootstrap, run_id, args, work)
        if not args.skip_latency:
            say()
            say(f"latency: {args.rate:,.0f} events/s for {args.seconds:g}s, ticks every {args.tick_ms} ms ...")
            latency = latency_phase(bootstrap, f"bd-{run_id}-lat.", args.partitions, args, work)
            print_latency(latency)

        worker_rate = tp.runs[0].events_per_s if tp else None
        throughput_pass = worker_rate is not None and worker_rate >= TARGET_EVENTS_PER_S
        latency_pass = latency is not None and latency.ack_to_seen_p99_ms < TARGET_P99_S * 1000
        say()
        if worker_rate is not None:
            say(
                f"target worker events/s >= {TARGET_EVENTS_PER_S:,}: {worker_rate:,.0f}  "
                f"{'PASS' if throughput_pass else 'MISS'}"
            )
        if latency is not None:
            say(
                f"target alert latency p99 < {TARGET_P99_S * 1000:,.0f} ms: {latency.ack_to_seen_p99_ms:,.0f} ms  "
                f"{'PASS' if latency_pass else 'MISS'} (lateness {latency.lateness_s:g} s is a floor)"
            )
        say("(targets are informational; the machine is shared and noisy)")

        missed = (tp is not None and not throughput_pass) or (latency is not None and not latency_pass)
        if tp is not None and (args.profile == "always" or (args.profile == "auto" and missed)):
            say()
            say(f"profiling the worker: replay again onto a fresh prefix, py-spy for {args.profile_seconds}s ...")
            profile = profile_pass(bootstrap, f"bd-{run_id}-prof.", args.partitions, tp.sim_path, tp.events, args, work)
            if isinstance(profile, str):
                say(f"no profile: {profile}")
            else:
                print_profile(profile)

    ok = (tp is None or all(r.counts_ok for r in tp.runs)) and (latency is None or latency.counts_ok)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "bench": "detectors",
        "at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "config": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in ("role", "bootstrap", "prefix", "expect", "result", "timeout", "work_dir")
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": sys.platform,
            "load_1min_at_start": load_at_start,
        },
        "code": code_version(),
        "workload": (
            {"events": tp.events, "by_kind": tp.by_kind, "alerts_expected": tp.alerts_expected, **asdict(tp.loaded)}
            if tp
            else None
        ),
        "throughput": [asdict(r) for r in tp.runs] if tp else None,
        "ratios": tp.ratios if tp else None,
        "latency": asdict(latency) if latency is not None else None,
        "targets": {
            "worker_events_per_s": {"target": TARGET_EVENTS_PER_S, "got": worker_rate, "pass": throughput_pass},
            "latency_p99_ms": {
                "target": TARGET_P99_S * 1000,
                "got": latency.ack_to_seen_p99_ms if latency else None,
                "pass": latency_pass,
                "lateness_floor_ms": latency.lateness_s * 1000 if latency else None,
            },
        },
        "profile": asdict(profile) if isinstance(profile, Profile) else profile,
        "ok": ok,
    }
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    say(f"results written to {args.out}")
    if not ok:
        say("FAILED: a count is off (alerts vs the reference, records consumed, or risky departures without alert)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
