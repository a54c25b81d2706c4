"""Load test: a sustained, paced event rate through the gateway of a whole local stack, for minutes.

Run with ``python -m tests.bench.bench_load`` (``make bench-load``; not part of ``make test``). Defaults:
2,000 events/s for 10 minutes; ``--rate`` and ``--seconds`` (or ``BENCH_LOAD_RATE`` and
``BENCH_LOAD_SECONDS``) change them, e.g. ``--seconds 60`` for a short run. ``--rate 2000,1500,1000``
runs one stage per rate on the same stack, one after the other (each drained before the next).

The stack (:class:`tests.bench.common.LocalStack`, every port free): a Tansu broker, a ClickHouse
18.16 server, ``pora gateway``, one ``pora worker``, ``pora sink`` and ``pora feed``, with an admin
holding the feed's live stream (SSE) all along. Requests of ``--batch`` events, one kind each, are
sent **open-loop** (:class:`tests.bench.common.PacedSender`): a request goes when it is due, whatever
became of the earlier ones; only ``--max-in-flight`` unanswered requests hold the sender back, and
how far it fell behind its schedule is reported. Two workloads (``--workload``):

- ``history`` (the default): a simulated history of years (:mod:`connectors.simulator`: hotel
  stays, border crossings, permit updates, sponsors' monthly reports of a steady population, about
  800 events a simulated day), sent in file order so that **event time runs days ahead each wall
  second** (about 2.5 at 2,000 events/s). The detector worker keeps state for a horizon measured in
  event time (open check-ins, applied event ids, alert states: ``[retention] days`` of
  ``streams/rules.toml``), so only a workload whose event time passes that horizon within the run
  shows whether its memory stays bounded in steady state; with live traffic nothing ever ages out
  in ten minutes. Unless ``--sim-days``/``--sim-travellers`` say otherwise the simulation is sized
  for the run: ``SIM_TRAVELLERS_PER_DAY`` arrivals a day, days enough for every stage's rate x
  seconds events; it is made once, in a child process (a million events take minutes and
  gigabytes), and cached in ``--cache-dir`` by its arguments and the simulator's code; its making
  is not part of the run. The stages take the file's events one after the other; a stage ends early
  when they run out (the report says so). The events are posted with the stack's ``system`` key, whose
  ``reported_at`` the gateway keeps, with the gateway's wall-clock ticks off: the benchmark writes
  the event-time clock ticks itself (:class:`tests.bench.common.History`, as ``pora replay`` does)
  every ``--tick-seconds``, at the time of the earliest event not yet answered, and a closing one
  after the last stage. Requests hold one kind: each kind's events, in file order, go when they are
  ``--batch`` or when the first is 4 x ``--batch`` events behind in the file (a few simulated hours),
  and a kind's requests go one after the other (each waits for the answer to the one before: the
  worker's watermark is the newest time seen per topic, so a later request landing first would make
  the earlier one's events late by days of event time; so a slow answer makes the sender fall behind,
  which it reports; ``--unordered``: no waiting, purely open loop, and a few late events); requests
  answered 503 are sent again until taken, as a client would (the sender's figures count the first
  try only). Then, unless ``--no-evaluate``, it waits for the worker to settle, reads the
  alerts topic and scores it per rule against the simulator's truth (:func:`connectors.evaluate.score`;
  the truth file when every event was sent, else :func:`connectors.simulator.ground_truth` over the
  events sent): precision and recall per rule.
- ``live``: the gateway bench's mix (hotel check-ins, arrivals, citizens' departures,
  ``--risky-share`` of those risky, so that alerts flow to the feed), each event for one of
  ``--travellers`` foreigners or ``--travellers``/5 citizens, occurred 1-60 minutes before it is sent,
  event time = wall clock (the gateway stamps ``reported_at`` and ticks every second). Its state
  never ages out within a run: the worker's memory grows with every event by design.

Every ``--sample-seconds`` a thread samples: VmRSS (``/proc/<pid>/status``) and CPU time
(``/proc/<pid>/stat`` utime + stime) of each process (the gateway with its prepare workers), the whole
machine's CPU (``/proc/stat``: other people's processes too), ``pora_consumer_lag_records`` of the
worker and the sink summed per consumer group, the gateway's accepted/rejected counters, dedup index
and request-time histogram. Every ``--report-seconds`` a report is printed, and at the end of each
stage a summary: RSS at start, after the warm-up, at the end and the maximum per process; the lag
samples; the client-side request latency p50/p99 (and the gateway's own histogram's); and the
verdicts, printed, never asserted:

- **sustained**: the sender kept its schedule (achieved >= 98 % of the rate, never more than 1 s
  behind), nothing was refused, and no consumer's lag grew over the last half;
- **memory bounded** per process: its RSS at the end within ``--rss-growth-pct`` (10 %) of its RSS
  half-way through the stage, i.e. it has levelled off (growth since ``--warmup-seconds`` and per
  100k events beside it: the broker's in-memory log grows with the events by design, and so does the
  worker's state with the live workload, where nothing ages out);
- **lag growing** per group: the least-squares slope of its lag over the last half of the stage is
  above 1 % of the rate and the lag ended above 2 s worth of events;
- **CPU**: the cores each process used; one near 1.0 is CPU-bound (a Python process runs its event
  loop on one core), and the machine's total against its cores.

The report names the workload and, for ``history``, the simulated span each stage sent (first and
last event time, simulated days per wall second) and the worker's late events (0 when the ticks are
right). Results go to ``bench-results/load.md`` and ``bench-results/load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.settings import Settings
from tests.bench.bench_gateway import MIX, code_version, percentile, say
from tests.bench.common import (
    SIM_TRAVELLERS_PER_DAY,
    Answer,
    FeedStream,
    History,
    HistoryFiles,
    LiveMix,
    LocalStack,
    Metrics,
    PacedSender,
    Periodic,
    Request,
    StackOptions,
    Usage,
    fmt,
    histogram_quantile,
    history_size,
    lag_by_group,
    machine,
    machine_cpu,
    md_table,
    scrape,
    simulation_files,
    stop_on_sigterm,
    text_table,
    usage,
    write_results,
)

SHORT = {"gateway": "gw", "worker": "wk", "sink": "sk", "feed": "fd", "broker": "br", "clickhouse": "ch"}
DAY_MS = 86_400_000


def iso_ms(ms: int | None) -> str | None:
    """An event time as UTC minutes, e.g. ``2021-03-04 05:06``."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


# ---------------------------------------------------------------- workloads


class Workload:
    """What the stages send (``--workload``)."""

    name = ""

    def on_answer(self, request: Request, status: int, body: dict[str, Any] | None, at: float) -> None:
        pass

    def event_ms(self) -> int | None:
        """How far event time has been released (the last clock tick), or None: wall clock."""
        return None

    def in_order(self, request: Request) -> str | None:
        """The sequence whose requests must reach the gateway one after the other, or None."""
        return None

    async def send(self, sender: PacedSender, rate: float, args: Namespace) -> None:
        raise NotImplementedError


class LiveWorkload(Workload):
    name = "live"

    def __init__(self, mix: LiveMix) -> None:
        self.mix = mix

    async def send(self, sender: PacedSender, rate: float, args: Namespace) -> None:
        await sender.run(self.mix.schedule(rate, args.seconds, args.batch), until=args.seconds)


class HistoryWorkload(Workload):
    name = "history"

    def __init__(self, history: History, settings: Settings, tick_seconds: float, *, ordered: bool = True) -> None:
        self.history = history
        self.settings = settings
        self.tick_seconds = tick_seconds
        self.ordered = ordered

    def on_answer(self, request: Request, status: int, body: dict[str, Any] | None, at: float) -> None:
        self.history.on_answer(request, status, body, at)

    def event_ms(self) -> int | None:
        return self.history.ticked_ms

    def in_order(self, request: Request) -> str | None:
        # a kind's requests one after the other: a topic's partitions then hold its events in time
        # order, as the worker's watermark (newest time seen per topic) needs; two in flight at once
        # could land the later first and make the earlier late by days of event time
        return request.kind if self.ordered else None

    stage_events = 0  # read from the file by the latest stage
    stage_ran_out = False  # the file ended before the latest stage's time

    async def send(self, sender: PacedSender, rate: float, args: Namespace) -> None:
        h = self.history
        before = h.read
        schedule = h.schedule(rate, args.seconds, args.batch)
        await h.send(sender, schedule, self.settings, until=args.seconds, tick_s=self.tick_seconds)
        self.stage_events = h.read - before
        self.stage_ran_out = h.exhausted


# ---------------------------------------------------------------- sampling


@dataclass
class Sample:
    t: float  # seconds after the stage's start
    usage: dict[str, Usage | None]
    machine_busy_s: float
    machine_total_s: float
    lag: dict[str, float]  # per consumer group
    accepted: float | None
    rejected: float | None
    dedup_entries: float | None
    request_buckets: dict[float, float]
    worker_events: float | None
    sink_rows: float | None
    feed_alerts_held: float | None
    sent_events: int
    answers: int
    worker_alerts: float | None  # alert records written (pora_alerts_total)
    late_events: float | None  # the worker's events behind the watermark (pora_worker_late_events_total)
    event_ms: int | None  # event time released so far (the last clock tick; history only)
    worker_held: dict[str, float]  # what the person stage holds, by kind (pora_worker_state_items)


def take_sample(stack: LocalStack, t0: float, sender: PacedSender | None, workload: Workload) -> Sample:
    m: dict[str, Metrics | None] = stack.scrape_all()
    gw, worker, sink, feed = m["gateway"], m["worker"], m["sink"], m["feed"]
    busy, total = machine_cpu()
    return Sample(
        t=time.time() - t0,
        usage=stack.usage() | {"client": usage(os.getpid(), tree=False)},
        machine_busy_s=busy,
        machine_total_s=total,
        lag=lag_by_group(worker, sink),
        accepted=gw.total("pora_gateway_events_accepted_total") if gw else None,
        rejected=gw.total("pora_gateway_events_rejected_total") if gw else None,
        dedup_entries=gw.total("pora_gateway_dedup_entries") if gw else None,
        request_buckets=gw.buckets("pora_gateway_request_seconds", route="events") if gw else {},
        worker_events=worker.total("pora_worker_events_total") if worker else None,
        sink_rows=sink.total("pora_sink_rows_total") if sink else None,
        feed_alerts_held=feed.total("pora_feed_alerts_held") if feed else None,
        sent_events=sender.sent_events if sender else 0,
        answers=len(sender.answers) if sender else 0,
        worker_alerts=worker.total("pora_alerts_total") if worker else None,
        late_events=worker.total("pora_worker_late_events_total") if worker else None,
        event_ms=workload.event_ms(),
        worker_held=worker.by_label("pora_worker_state_items", "kind", stage="person") if worker else {},
    )


def cores(a: Sample, b: Sample, name: str) -> float | None:
    u0, u1 = a.usage.get(name), b.usage.get(name)
    if not u0 or not u1 or b.t <= a.t:
        return None
    return (u1.cpu_s - u0.cpu_s) / (b.t - a.t)


def machine_cores(a: Sample, b: Sample, cpus: int) -> float:
    total = b.machine_total_s - a.machine_total_s
    return (b.machine_busy_s - a.machine_busy_s) / total * cpus if total > 0 else float("nan")


@dataclass
class Interval:
    t: float
    sent_per_s: float
    accepted_per_s: float
    accepted: int
    rejected: int
    failed_requests: int
    p50_ms: float
    p99_ms: float
    server_p99_ms: float
    behind_max_ms: float
    in_flight: int
    lag: dict[str, float]
    rss_mb: dict[str, float]
    cores: dict[str, float]
    machine_cores: float
    dedup_entries: float | None
    feed_alerts_held: float | None
    event_time: str | None = None  # released so far (history)
    sim_days_per_s: float | None = None  # simulated days per wall second over the interval
    worker_held: dict[str, float] = field(default_factory=dict)


def interval(
    prev: Sample, cur: Sample, answers: Sequence[Answer], sender: PacedSender, groups: dict[str, str]
) -> Interval:
    span = max(cur.t - prev.t, 1e-9)
    got = answers[prev.answers : cur.answers]
    ok = [a.latency * 1000 for a in got if a.status == 200]
    cpus = os.cpu_count() or 1
    return Interval(
        t=cur.t,
        sent_per_s=(cur.sent_events - prev.sent_events) / span,
        accepted_per_s=((cur.accepted or 0) - (prev.accepted or 0)) / span,
        accepted=int(cur.accepted or 0),
        rejected=int(cur.rejected or 0),
        failed_requests=sum(1 for a in got if a.status != 200),
        p50_ms=percentile(ok, 50),
        p99_ms=percentile(ok, 99),
        server_p99_ms=histogram_quantile(0.99, prev.request_buckets, cur.request_buckets) * 1000,
        behind_max_ms=max((a.sent - a.due for a in got), default=0.0) * 1000,
        in_flight=sender.in_flight,
        lag={label: cur.lag[g] for label, g in groups.items() if g in cur.lag},
        rss_mb={n: u.rss_mb for n, u in cur.usage.items() if u},
        cores={n: c for n in cur.usage if (c := cores(prev, cur, n)) is not None},
        machine_cores=machine_cores(prev, cur, cpus),
        dedup_entries=cur.dedup_entries,
        feed_alerts_held=cur.feed_alerts_held,
        worker_held=cur.worker_held,
        event_time=iso_ms(cur.event_ms),
        sim_days_per_s=(cur.event_ms - prev.event_ms) / DAY_MS / span
        if cur.event_ms is not None and prev.event_ms is not None
        else None,
    )


def print_interval(iv: Interval, groups: dict[str, str]) -> None:
    lag = ", ".join(f"{label} {fmt(iv.lag.get(label))}" for label in groups)
    say(
        f"[{iv.t:6.0f}s] sent {iv.sent_per_s:,.0f}/s, accepted {iv.accepted_per_s:,.0f}/s (total {iv.accepted:,}, "
        f"rejected {iv.rejected:,}, failed requests {iv.failed_requests}); request p50 {fmt(iv.p50_ms)} ms, p99 "
        f"{fmt(iv.p99_ms)} ms (gateway's histogram p99 ~{fmt(iv.server_p99_ms)} ms); sender behind <= "
        f"{iv.behind_max_ms:,.0f} ms, {iv.in_flight} in flight; lag {lag}"
    )
    say(
        "          RSS MB "
        + " ".join(f"{SHORT.get(n, n)} {v:,.0f}" for n, v in iv.rss_mb.items())
        + " | cores "
        + " ".join(f"{SHORT.get(n, n)} {v:.2f}" for n, v in iv.cores.items())
        + f" | machine {iv.machine_cores:.2f}/{os.cpu_count()} (others {iv.machine_cores - sum(iv.cores.values()):.2f})"
        + f" | dedup {fmt(iv.dedup_entries)}, feed alerts {fmt(iv.feed_alerts_held)}"
        + " | worker holds "
        + ", ".join(f"{k} {fmt(iv.worker_held.get(k))}" for k in HELD)
        + (
            f" | event time {iv.event_time} ({fmt(iv.sim_days_per_s, '{:+.2f}')} d/s)"
            if iv.event_time is not None
            else ""
        )
    )


# ---------------------------------------------------------------- a stage


@dataclass
class Memory:
    start_mb: float
    warm_mb: float  # after the warm-up
    end_mb: float  # when the sending ended
    drained_mb: float | None  # once the consumers had caught up
    max_mb: float  # of the samples
    hwm_mb: float  # VmHWM of the main process: its peak, between samples too
    growth_pct: float  # end against warm
    mb_per_100k_events: float
    half_mb: float  # half-way through the stage
    half_growth_pct: float  # end against half-way: the verdict's
    bounded: bool


@dataclass
class LagTrend:
    start: float  # at the start of the last half
    end: float
    max: float
    slope_per_s: float  # least squares over the last half
    growing: bool


@dataclass
class StageResult:
    rate: float
    seconds: float
    sent_events: int
    sent_requests: int
    achieved_rate: float
    accepted: int
    rejected: int  # the gateway's counter, during the stage
    failed_requests: int
    behind_max_ms: float
    behind_p99_ms: float
    late_requests: int  # sent more than 100 ms after due
    peak_in_flight: int
    request_p50_ms: float
    request_p99_ms: float
    server_p50_ms: float
    server_p99_ms: float
    client_cores: float
    drained_after_s: float | None
    memory: dict[str, Memory]
    lag: dict[str, LagTrend]  # per consumer group
    cores: dict[str, float]  # mean over the sending
    machine_cores: float
    others_cores: float  # the machine's busy cores less ours: other people's processes
    not_accepted: int  # sent but not acknowledged (503: the broker did not acknowledge in time; failures)
    stopped_behind: bool  # the time was up before the schedule: the rest was never sent
    cpu_bound: list[str]
    sustained: bool
    stream_alerts: int
    intervals: list[Interval]
    samples: list[dict[str, Any]]
    workload: str = "live"
    late_events: float | None = None  # the worker's, during the stage and its drain
    alert_records: float | None = None  # written by the worker during the stage and its drain
    # history: the event time the stage sent (first and last reported_at), and how fast it ran
    events_from: str | None = None
    events_to: str | None = None
    sim_days: float | None = None
    sim_days_per_s: float | None = None
    ran_out: bool = False  # the simulation's events ran out before the stage's time
    failures: list[str] = field(default_factory=list)


def slope(points: Sequence[tuple[float, float]]) -> float:
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    return sum((t - mx) * (v - my) for t, v in points) / var if var > 0 else 0.0


def sample_dict(s: Sample) -> dict[str, Any]:
    return {
        "t": round(s.t, 2),
        "rss_mb": {n: round(u.rss_mb, 1) for n, u in s.usage.items() if u},
        "cpu_s": {n: round(u.cpu_s, 2) for n, u in s.usage.items() if u},
        "lag": s.lag,
        "accepted": s.accepted,
        "rejected": s.rejected,
        "dedup_entries": s.dedup_entries,
        "worker_held": s.worker_held,
        "worker_events": s.worker_events,
        "sink_rows": s.sink_rows,
        "feed_alerts_held": s.feed_alerts_held,
        "sent_events": s.sent_events,
        "worker_alerts": s.worker_alerts,
        "late_events": s.late_events,
        "event_time": iso_ms(s.event_ms),
    }


def run_stage(stack: LocalStack, workload: Workload, rate: float, args: Namespace, stream: FeedStream) -> StageResult:
    groups = {"worker": stack.worker_group, "sink": stack.sink_group}
    sender = PacedSender(
        stack.gateway_url,
        stack.api_key,
        max_in_flight=args.max_in_flight,
        on_answer=workload.on_answer,
        in_order=workload.in_order,
    )
    t0 = time.time()
    start = take_sample(stack, t0, None, workload)
    reports: list[Interval] = []
    last_report = [start]
    lock = threading.Lock()
    sending = threading.Event()
    sending.set()

    def on_sample(_: float, s: Sample) -> None:
        # reports while sending, at the sample nearest each multiple of --report-seconds
        if sending.is_set() and s.t - last_report[0].t >= args.report_seconds - args.sample_seconds / 2:
            with lock:
                iv = interval(last_report[0], s, sender.answers, sender, groups)
                reports.append(iv)
                last_report[0] = s
            print_interval(iv, groups)

    say(
        f"stage: {rate:,.0f} events/s for {args.seconds:g}s, requests of {args.batch} events, open loop, "
        f"{workload.name} workload"
    )
    with Periodic(lambda: take_sample(stack, t0, sender, workload), args.sample_seconds, on_sample) as sampler:
        asyncio.run(workload.send(sender, rate, args))
        sending.clear()
        sent_end = take_sample(stack, t0, sender, workload)
        with lock:
            if sent_end.t - last_report[0].t > 1.0:
                iv = interval(last_report[0], sent_end, sender.answers, sender, groups)
                reports.append(iv)
                print_interval(iv, groups)
        # drained: every consumer's lag back to what clock ticks alone leave (a few records)
        drained_at: float | None = None
        deadline = time.monotonic() + args.drain_seconds
        wait_from = time.time()
        while time.monotonic() < deadline:
            latest = sampler.latest()
            if latest is not None and latest[0] > wait_from + args.lag_interval:
                lag = latest[1].lag
                if all(lag.get(g, 0.0) <= args.drained_lag for g in groups.values()):
                    drained_at = latest[1].t - sent_end.t
                    break
            if stack.check_alive():
                break
            time.sleep(0.5)
        drained = sampler.latest()
        lags = (
            ", ".join(f"{label} {drained[1].lag.get(g, float('nan')):,.0f}" for label, g in groups.items())
            if drained
            else "?"
        )
        say(
            (f"drained {drained_at:.0f}s after the sending" if drained_at is not None else "NOT drained")
            + f" (lag {lags})"
        )
    samples = [start, *(s for _, s in sampler.samples if s.t <= sent_end.t), sent_end]
    after = drained[1] if drained else None
    return summarise(
        stack, workload, rate, args, sender, (start, sent_end, after), samples, reports, drained_at, stream.alerts
    )


def summarise(
    stack: LocalStack,
    workload: Workload,
    rate: float,
    args: Namespace,
    sender: PacedSender,
    moments: tuple[Sample, Sample, Sample | None],  # the start, the end of the sending, once drained
    samples: Sequence[Sample],
    reports: list[Interval],
    drained_at: float | None,
    stream_alerts: int,
) -> StageResult:
    start, end, drained = moments
    answers = sender.answers
    ok = [a.latency * 1000 for a in answers if a.status == 200]
    behind = [(a.sent - a.due) * 1000 for a in answers]
    duration = max(end.t - start.t, 1e-9)
    accepted = int((end.accepted or 0) - (start.accepted or 0))
    rejected = int((end.rejected or 0) - (start.rejected or 0))
    failed = sum(1 for a in answers if a.status != 200)
    warmup = args.warmup_seconds if args.warmup_seconds is not None else 0.0
    warm = next((s for s in samples if s.t >= warmup), samples[-1])
    mid = next((s for s in samples if s.t >= start.t + duration / 2), samples[-1])
    memory: dict[str, Memory] = {}
    for name in start.usage:
        u_start, u_warm, u_end = start.usage.get(name), warm.usage.get(name), end.usage.get(name)
        if not (u_start and u_warm and u_end):
            continue
        growth = (u_end.rss_mb - u_warm.rss_mb) / u_warm.rss_mb * 100 if u_warm.rss_mb else float("nan")
        events_between = max((end.accepted or 0) - (warm.accepted or 0), 1.0)
        u_drained = drained.usage.get(name) if drained else None
        u_mid = mid.usage.get(name) or u_end
        half_growth = (u_end.rss_mb - u_mid.rss_mb) / u_mid.rss_mb * 100 if u_mid.rss_mb else float("nan")
        memory[name] = Memory(
            start_mb=u_start.rss_mb,
            warm_mb=u_warm.rss_mb,
            end_mb=u_end.rss_mb,
            drained_mb=u_drained.rss_mb if u_drained else None,
            max_mb=max((u.rss_mb for s in samples if (u := s.usage.get(name))), default=u_end.rss_mb),
            hwm_mb=max(u_end.hwm_mb, u_drained.hwm_mb if u_drained else 0.0),
            growth_pct=growth,
            mb_per_100k_events=(u_end.rss_mb - u_warm.rss_mb) / events_between * 100_000,
            half_mb=u_mid.rss_mb,
            half_growth_pct=half_growth,
            bounded=half_growth <= args.rss_growth_pct,
        )
    half = [s for s in samples if s.t >= duration / 2]
    lag: dict[str, LagTrend] = {}
    for label, group in (("worker", stack.worker_group), ("sink", stack.sink_group)):
        points = [(s.t, s.lag[group]) for s in half if group in s.lag]
        if not points:
            continue
        k = slope(points)
        lag[label] = LagTrend(
            start=points[0][1],
            end=points[-1][1],
            max=max(v for _, v in points),
            slope_per_s=k,
            growing=k > 0.01 * rate and points[-1][1] > 2 * rate,
        )
    all_cores = {n: c for n in end.usage if (c := cores(start, end, n)) is not None}
    span = args.seconds  # the schedule's: it stops sending then, due or not
    history: dict[str, Any] = {}
    if isinstance(workload, HistoryWorkload):
        h = workload.history
        if workload.stage_ran_out:
            span = max(workload.stage_events / rate, 1e-9)  # the schedule ended with the file
        days = (h.last_ms - h.stage_first_ms) / DAY_MS if h.last_ms and h.stage_first_ms else None
        history = {
            "events_from": iso_ms(h.stage_first_ms),
            "events_to": iso_ms(h.last_ms),
            "sim_days": days,
            "sim_days_per_s": days / span if days is not None else None,
            "ran_out": workload.stage_ran_out,
        }
    achieved = sender.sent_events / span
    last = drained or end
    not_accepted = sender.sent_events - sum(a.accepted for a in answers)
    machine = machine_cores(start, end, os.cpu_count() or 1)
    sustained = (
        achieved >= 0.98 * rate
        and max(behind, default=0.0) <= 1000
        and not sender.stopped_behind
        and rejected == 0
        and not_accepted == 0
        and failed == 0
        and not any(t.growing for t in lag.values())
    )
    return StageResult(
        rate=rate,
        seconds=args.seconds,
        sent_events=sender.sent_events,
        sent_requests=sender.sent_requests,
        achieved_rate=achieved,
        accepted=accepted,
        rejected=rejected,
        failed_requests=failed,
        behind_max_ms=max(behind, default=0.0),
        behind_p99_ms=percentile(behind, 99),
        late_requests=sum(1 for b in behind if b > 100),
        peak_in_flight=sender.peak_in_flight,
        request_p50_ms=percentile(ok, 50),
        request_p99_ms=percentile(ok, 99),
        server_p50_ms=histogram_quantile(0.5, start.request_buckets, end.request_buckets) * 1000,
        server_p99_ms=histogram_quantile(0.99, start.request_buckets, end.request_buckets) * 1000,
        client_cores=sender.cpu_s / duration,
        memory=memory,
        lag=lag,
        cores=all_cores,
        machine_cores=machine,
        others_cores=machine - sum(all_cores.values()),
        not_accepted=not_accepted,
        stopped_behind=sender.stopped_behind,
        cpu_bound=[n for n, c in sorted(all_cores.items(), key=lambda kv: -kv[1]) if c >= 0.9],
        sustained=sustained,
        intervals=reports,
        samples=[sample_dict(s) for s in samples],
        failures=[f"{a.kind}: {a.error}" for a in answers if a.error][:20] + stack.check_alive(),
        drained_after_s=drained_at,
        stream_alerts=stream_alerts,
        workload=workload.name,
        late_events=last.late_events - start.late_events
        if last.late_events is not None and start.late_events is not None
        else None,
        alert_records=last.worker_alerts - start.worker_alerts
        if last.worker_alerts is not None and start.worker_alerts is not None
        else None,
        **history,
    )


# ---------------------------------------------------------------- report


MEMORY_HEADER = (
    "process",
    "start MB",
    "warm MB",
    "end MB",
    "drained MB",
    "max MB",
    "main VmHWM MB",
    "growth %",
    "MB/100k ev",
    "half-way MB",
    "last half %",
)


def memory_rows(st: StageResult) -> list[list[str]]:
    return [
        [
            name,
            fmt(m.start_mb),
            fmt(m.warm_mb),
            fmt(m.end_mb),
            fmt(m.drained_mb),
            fmt(m.max_mb),
            fmt(m.hwm_mb),
            f"{m.growth_pct:+.1f}",
            f"{m.mb_per_100k_events:+.1f}",
            fmt(m.half_mb),
            f"{m.half_growth_pct:+.1f}",
            "bounded" if m.bounded else "GROWING",
        ]
        for name, m in st.memory.items()
    ]


INTERVAL_HEADER = ("t s", "sent/s", "accepted/s", "rejected", "p50 ms", "p99 ms", "gw p99 ms", "behind ms")
HELD = ("people", "record_ids", "timers")  # of the worker's person stage, in the table


def interval_rows(st: StageResult, groups: Sequence[str]) -> list[list[str]]:
    names = list(st.memory)
    rows = []
    for iv in st.intervals:
        rows.append(
            [
                f"{iv.t:.0f}",
                fmt(iv.sent_per_s),
                fmt(iv.accepted_per_s),
                f"{iv.rejected:,}",
                fmt(iv.p50_ms),
                fmt(iv.p99_ms),
                fmt(iv.server_p99_ms),
                fmt(iv.behind_max_ms),
                *(fmt(iv.lag.get(g)) for g in groups),
                *(fmt(iv.rss_mb.get(n)) for n in names),
                *(fmt(iv.cores.get(n), "{:.2f}") for n in names),
                f"{iv.machine_cores:.2f}",
                *(fmt(iv.worker_held.get(k)) for k in HELD),
                fmt(iv.dedup_entries),
                fmt(iv.feed_alerts_held),
                *([iv.event_time or "-", fmt(iv.sim_days_per_s, "{:.2f}")] if st.workload == "history" else []),
            ]
        )
    return rows


def verdict_lines(st: StageResult) -> list[str]:
    lines = [
        f"rate {st.rate:,.0f}/s for {st.seconds:g}s: sent {st.sent_events:,} events in {st.sent_requests:,} requests "
        f"(achieved {st.achieved_rate:,.0f}/s"
        + (", then time was up: the rest of the schedule was not sent" if st.stopped_behind else "")
        + f"), accepted {st.accepted:,}, not acknowledged {st.not_accepted:,}, rejected {st.rejected:,}, failed "
        f"requests {st.failed_requests}; sender behind max {st.behind_max_ms:,.0f} ms (p99 {st.behind_p99_ms:,.0f} ms, "
        f"{st.late_requests} requests > 100 ms late), peak {st.peak_in_flight} in flight",
        f"request latency (client) p50 {fmt(st.request_p50_ms)} ms, p99 {fmt(st.request_p99_ms)} ms; the gateway's "
        f"histogram p50 ~{fmt(st.server_p50_ms)} ms, p99 ~{fmt(st.server_p99_ms)} ms",
        "lag over the last half: "
        + "; ".join(
            f"{g} {t.start:,.0f} -> {t.end:,.0f} (max {t.max:,.0f}, slope {t.slope_per_s:+,.1f}/s) "
            + ("GROWING" if t.growing else "not growing")
            for g, t in st.lag.items()
        )
        + (f"; drained {st.drained_after_s:.0f}s after the sending" if st.drained_after_s is not None else "")
        + ("; NOT drained" if st.drained_after_s is None else ""),
        "memory: "
        + "; ".join(
            f"{n} {m.warm_mb:,.0f} -> {m.end_mb:,.0f} MB ({m.growth_pct:+.0f} %, {m.mb_per_100k_events:+.1f} MB/100k; "
            f"last half {m.half_growth_pct:+.0f} %) " + ("bounded" if m.bounded else "GROWING")
            for n, m in st.memory.items()
        ),
        "cores (mean over the sending): "
        + ", ".join(f"{n} {c:.2f}" for n, c in sorted(st.cores.items(), key=lambda kv: -kv[1]))
        + f"; machine {st.machine_cores:.2f} of {os.cpu_count()}, of which other people's processes "
        f"{st.others_cores:.2f}"
        + (f"; CPU-bound: {', '.join(st.cpu_bound)}" if st.cpu_bound else "; no process at one full core"),
        f"verdict: {'SUSTAINED' if st.sustained else 'NOT SUSTAINED'} at {st.rate:,.0f} events/s"
        + f"; {st.stream_alerts:,} alerts came on the admin's live stream so far",
    ]
    worker = (
        f"worker: {fmt(st.alert_records)} alert records written, {fmt(st.late_events)} events behind the "
        "watermark (during the stage and its drain)"
    )
    if st.workload == "history":
        lines.insert(
            0,
            f"history workload: event time {st.events_from} -> {st.events_to} UTC sent, "
            f"{fmt(st.sim_days, '{:,.1f}')} simulated days, {fmt(st.sim_days_per_s, '{:.2f}')} simulated days "
            "per wall second"
            + (
                f"; the simulation's events ran out after {st.sent_events:,}: the stage ended early "
                "(its rate counted over its own schedule)"
                if st.ran_out
                else ""
            )
            + f"; {worker}",
        )
    else:
        lines.insert(0, f"live workload (event time = wall clock); {worker}")
    return lines


def markdown(report: dict[str, Any], stages: Sequence[StageResult], groups: Sequence[str]) -> str:
    c = report["config"]
    lines = [
        "# Load test (`python -m tests.bench.bench_load`)",
        "",
        f"{report['at']}, commit {report['code']['commit']}{' (dirty tree)' if report['code']['dirty'] else ''}; "
        f"{report['machine']['cpus']} CPUs, load {report['machine']['load_1min']:.2f} at the start (shared, noisy "
        "machine).",
        "",
        f"One local stack (Tansu, ClickHouse, gateway, one worker, sink, feed with an admin on its live stream). "
        f"Open-loop sender, requests of {c['batch']} events ({workload_text(report['workload'], c)}), samples every "
        f"{c['sample_seconds']:g} s, consumers export their lag every {c['lag_interval']:g} s, warm-up "
        f"{c['warmup_seconds']:g} s. The gateway remembers {c['dedup_capacity']:,} event ids for idempotent "
        "retries (PORA_GATEWAY_DEDUP_CAPACITY; 2,000,000 by default, ~0.3 KB each), so its index stops growing "
        "within the run; the broker (Tansu) keeps its log in memory by design, where Kafka keeps it on disk.",
    ]
    for st in stages:
        lines += ["", f"## {st.rate:,.0f} events/s for {st.seconds:g} s", ""]
        lines += [f"- {line}" for line in verdict_lines(st)]
        lines += ["", "### Memory (VmRSS; the gateway with its prepare workers; VmHWM: the main process only)", ""]
        lines.append(md_table((*MEMORY_HEADER, "verdict"), memory_rows(st)))
        names = list(st.memory)
        header = (
            *INTERVAL_HEADER,
            *(f"lag {g}" for g in groups),
            *(f"RSS {SHORT.get(n, n)}" for n in names),
            *(f"cores {SHORT.get(n, n)}" for n in names),
            "machine cores",
            *(f"worker {k.replace('_', ' ')}" for k in HELD),
            "gw dedup ids",
            "feed alerts",
            *(["event time (released)", "sim d/s"] if st.workload == "history" else []),
        )
        lines += ["", f"### Every {c['report_seconds']:g} s", "", md_table(header, interval_rows(st, groups))]
    evaluation = report["workload"].get("evaluation")
    if evaluation:
        lines += ["", "## Alerts against the simulator's truth", "", *evaluation_lines(evaluation, markdown=True)]
    return "\n".join(lines) + "\n"


def workload_text(w: dict[str, Any], c: dict[str, Any]) -> str:
    if w["name"] == "live":
        return (
            f"live workload: the gateway bench's mix, {c['travellers']:,} foreigners, {c['risky_share']:g} of "
            "departures risky, event time = wall clock"
        )
    sim = w["simulation"]
    return (
        f"history workload: simulated {sim['days']:,} days of {sim['travellers']:,} travellers from {sim['start']} "
        f"(seed {sim['seed']}), {sim['events']:,} events, {iso_ms(sim['first_ms'])} -> {iso_ms(sim['last_ms'])} "
        f"UTC; made in {sim['seconds']:g} s{' by an earlier run' if w['cached'] else ''}, not timed; "
        f"{w['sent']:,} sent"
        + (" (all of them)" if w["ran_out"] else "")
        + f"; a kind's requests {'concurrent (--unordered)' if c['unordered'] else 'one after the other'}"
        + f"; a system key, the gateway's ticks off, {w['ticks']:,} event-time ticks every "
        f"{c['tick_seconds']:g} s by the benchmark, closing tick at {w['closing_tick']} UTC; requests answered 503 "
        f"sent again {w['retried_requests']:,} times ({w['retried_taken']:,} taken then), "
        f"{w['lost']:,} events not taken (unsent when time was up, or never acknowledged)"
    )


def evaluation_lines(e: dict[str, Any], *, markdown: bool) -> list[str]:
    if e.get("error"):
        return [f"not evaluated: {e['error']}"]
    head = (
        f"{e['alerts_read']:,} alert records read from the alerts topic ({fmt(e['alert_records'])} by the worker's "
        f"counter){'' if e['settled'] else ' (the worker had NOT settled)'}; truth: {e['truth_from']}, "
        f"{e['truth_labels']:,} labels; scored in {e['seconds']:.0f} s (not timed in the run). Alerts: standing at "
        "the end (not withdrawn), per rule; precision = alerts matching a label / alerts, recall = labels matched "
        "/ labels; unmatched = alerts matching no label, missed = labels no alert matches. The worker's late events "
        f"by stage: {e.get('late_events_by_stage') or 'none'}."
    )
    header = ("rule", "alerts", "truth", "precision", "recall", "unmatched", "missed", "other office", "records R/A/W")
    rows = [
        [
            r["rule_id"],
            f"{r['alerts']:,}",
            f"{r['truths']:,}" if "truths" in r else "-",
            fmt(r.get("precision"), "{:.4f}"),
            fmt(r.get("recall"), "{:.4f}"),
            f"{r['alerts'] - r['matched_alerts']:,}" if "matched_alerts" in r else "-",
            f"{r['truths'] - r['matched_truths']:,}" if "matched_truths" in r else "-",
            f"{r['wrong_office']:,}" if "wrong_office" in r else "-",
            "/".join(f"{r['records'].get(k, 0):,.0f}" for k in ("RAISED", "AMENDED", "WITHDRAWN")),
        ]
        for r in e["rules"]
    ]
    return [head, "", md_table(header, rows) if markdown else text_table(header, rows)]


# ---------------------------------------------------------------- main


class Namespace(argparse.Namespace):
    rate: str
    rates: list[float]
    seconds: float
    batch: int
    workload: str
    travellers: int
    risky_share: float
    seed: int
    sim_days: int | None
    sim_travellers: int | None
    cache_dir: Path
    tick_seconds: float
    unordered: bool
    evaluate: bool
    settle_seconds: float
    sample_seconds: float
    report_seconds: float
    warmup_seconds: float | None
    rss_growth_pct: float
    max_in_flight: int
    drain_seconds: float
    drained_lag: float
    lag_interval: float
    keep: Path | None
    out: Path


def parse_args(argv: Sequence[str] | None = None) -> Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_load", description=__doc__.split("\n")[0])
    env = os.environ.get
    parser.add_argument(
        "--rate",
        default=env("BENCH_LOAD_RATE", "2000"),
        help="events/s, or several comma-separated for one stage each (default 2000; BENCH_LOAD_RATE)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=float(env("BENCH_LOAD_SECONDS", "600")),
        help="seconds per stage (default 600; BENCH_LOAD_SECONDS)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help="events per request (default 500 for the history workload: a national system's batches, each kind's "
        "sent one after the other to keep event time in order; 100 for the live one)",
    )
    parser.add_argument(
        "--dedup-capacity",
        type=int,
        default=400_000,
        help="PORA_GATEWAY_DEDUP_CAPACITY: event ids the gateway remembers (default 400000, a fifth of the "
        "production default, so that the run reaches it and shows the index stop growing)",
    )
    parser.add_argument(
        "--workload",
        choices=("history", "live"),
        default=env("BENCH_LOAD_WORKLOAD", "history"),
        help="history: a simulated history of years, event time running days ahead each second (default); "
        "live: the gateway bench's mix at wall-clock time (BENCH_LOAD_WORKLOAD)",
    )
    parser.add_argument("--seed", type=int, default=1, help="sample or simulation seed (default 1)")
    live = parser.add_argument_group("live workload")
    live.add_argument("--travellers", type=int, default=50_000, help="foreigners in the population (50000)")
    live.add_argument("--risky-share", type=float, default=0.05, help="risky share of departures (0.05)")
    hist = parser.add_argument_group("history workload")
    hist.add_argument(
        "--sim-days",
        type=int,
        default=None,
        help=f"simulated days (default: enough for every stage's events at {SIM_TRAVELLERS_PER_DAY} arrivals a day)",
    )
    hist.add_argument(
        "--sim-travellers", type=int, default=None, help=f"travellers (default: {SIM_TRAVELLERS_PER_DAY} per day)"
    )
    hist.add_argument(
        "--cache-dir",
        type=Path,
        default=Path("bench-results/cache"),
        help="where simulations are kept for later runs (bench-results/cache)",
    )
    hist.add_argument("--tick-seconds", type=float, default=1.0, help="wall seconds between event-time clock ticks (1)")
    hist.add_argument(
        "--unordered",
        action="store_true",
        help="a kind's requests do not wait for the one before (purely open loop): the worker then "
        "counts late events and its alerts may differ from the truth by a few",
    )
    hist.add_argument(
        "--no-evaluate",
        dest="evaluate",
        action="store_false",
        help="do not score the alerts against the simulator's truth at the end",
    )
    hist.add_argument(
        "--settle-seconds", type=float, default=300.0, help="longest wait for the worker to settle (300 s)"
    )
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="sampling period (default 5 s)")
    parser.add_argument("--report-seconds", type=float, default=30.0, help="report period (default 30 s)")
    parser.add_argument(
        "--warmup-seconds", type=float, default=None, help="RSS baseline after this (default: a fifth, at most 60 s)"
    )
    parser.add_argument(
        "--rss-growth-pct", type=float, default=10.0, help="memory verdict: most RSS growth over the last half (10 %%)"
    )
    parser.add_argument("--max-in-flight", type=int, default=256, help="unanswered requests at most (256)")
    parser.add_argument("--drain-seconds", type=float, default=180.0, help="longest wait for lag to drain (180 s)")
    parser.add_argument("--drained-lag", type=float, default=500.0, help="lag per group counted as drained (500)")
    parser.add_argument("--lag-interval", type=float, default=5.0, help="PORA_LAG_INTERVAL_SECONDS (default 5)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the logs and data in this directory")
    parser.add_argument("--out", type=Path, default=Path("bench-results/load.json"), help="JSON results (and .md)")
    args = parser.parse_args(argv, namespace=Namespace())
    try:
        args.rates = [float(r) for r in str(args.rate).split(",") if r.strip()]
    except ValueError:
        parser.error(f"--rate {args.rate!r}: numbers, comma-separated")
    if args.batch is None:
        args.batch = 500 if args.workload == "history" else 100
    if not args.rates or any(r <= 0 for r in args.rates) or args.seconds <= 0 or args.batch < 1:
        parser.error("--rate and --seconds must be positive, --batch at least 1")
    if (args.sim_days is not None and args.sim_days < 1) or (
        args.sim_travellers is not None and args.sim_travellers < 1
    ):
        parser.error("--sim-days and --sim-travellers must be positive")
    if args.warmup_seconds is None:
        args.warmup_seconds = min(60.0, args.seconds / 5)
    return args


def history_files(args: Namespace) -> HistoryFiles:
    """The simulation for the run: sized for every stage's rate x seconds unless told."""
    needed = math.ceil(sum(rate * args.seconds for rate in args.rates))
    days, travellers = history_size(needed)
    if args.sim_days is not None and args.sim_travellers is None:
        travellers = args.sim_days * SIM_TRAVELLERS_PER_DAY
    if args.sim_travellers is not None and args.sim_days is None:
        days = max(1, math.ceil(args.sim_travellers / SIM_TRAVELLERS_PER_DAY))
    days = args.sim_days or days
    travellers = args.sim_travellers or travellers
    files = simulation_files(args.cache_dir, days, travellers, args.seed, say=say)
    m = files.meta
    say(
        f"simulation: {m['days']:,} days of {m['travellers']:,} travellers from {m['start']} (seed {m['seed']}): "
        f"{m['events']:,} events ({', '.join(f'{k} {v:,}' for k, v in m['by_kind'].items())}), "
        f"{iso_ms(m['first_ms'])} -> {iso_ms(m['last_ms'])} UTC, {m['truth']:,} truth labels; made in "
        f"{m['seconds']:g} s (peak {m['peak_rss_mb']:,} MB){' by an earlier run' if files.cached else ''}; "
        f"{files.folder}"
    )
    if m["events"] < needed:
        say(f"the simulation has fewer events than the stages' {needed:,}: they end when the events run out")
    return files


def settle(stack: LocalStack, timeout: float, lag_interval: float) -> tuple[bool, float | None]:
    """Wait until the worker's lag is 0 and its alert counter stood still over two lag exports;
    returns (settled, the counter)."""
    deadline = time.monotonic() + timeout
    still_since: float | None = None
    last: float | None = None
    while time.monotonic() < deadline:
        m = scrape(stack.metrics_urls["worker"])
        if m is not None:
            lag = lag_by_group(m).get(stack.worker_group)
            alerts = m.total("pora_alerts_total")
            now = time.monotonic()
            if lag == 0 and alerts == last:
                still_since = still_since or now
                if now - still_since >= 2 * lag_interval + 1:
                    return True, alerts
            else:
                still_since = None
            last = alerts
        if stack.check_alive():
            break
        time.sleep(1.0)
    return False, last


def evaluate_history(stack: LocalStack, history: History, args: Namespace) -> dict[str, Any]:
    """The closing tick, then the worker's alerts (the topic) scored per rule against the truth."""
    from connectors.evaluate import final_alerts, score
    from streams import topics
    from streams.detect.config import load_rules
    from streams.reading import read_topic

    lateness_ms = round(load_rules().time.lateness_seconds * 1000)
    settings = stack.settings
    closed = asyncio.run(history.close(settings, lateness_ms))
    out: dict[str, Any] = {"closing_tick": iso_ms(closed)}
    if not args.evaluate:
        return out | {"error": "--no-evaluate"}
    started = time.monotonic()
    say(f"closing tick at {iso_ms(closed)} UTC; waiting for the worker to settle")
    settled, counted = settle(stack, args.settle_seconds, args.lag_interval)
    worker = scrape(stack.metrics_urls["worker"])
    records: dict[str, dict[str, float]] = {}
    if worker is not None:
        out["late_events_by_stage"] = worker.by_label("pora_worker_late_events_total", "stage")
        for name, labels, value in worker.samples:
            if name == "pora_alerts_total":
                records.setdefault(labels.get("rule_id", ""), {})[labels.get("status", "")] = value
    alerts: list[dict[str, Any]] = []
    for _attempt in range(3):  # the topic's end as fetched may trail the counter a moment
        read = read_topic(settings.kafka_bootstrap, settings.topic(topics.ALERTS), timeout=600)
        alerts = [r.record for r in read if r.record is not None]
        if counted is None or len(alerts) >= counted:
            break
        time.sleep(5)
    say(f"{len(alerts):,} alert records read (the worker counted {fmt(counted)}); computing the truth")
    out |= {"settled": settled, "alert_records": counted, "alerts_read": len(alerts)}
    try:
        truth, truth_from = history.truth(lateness_ms)
    except Exception as exc:  # AmbiguousCase: the events lost leave a case RULES.md does not settle
        # then only the alerts standing per rule, without precision or recall
        standing = Counter(a["rule_id"] for a in final_alerts(alerts).values() if a["status"] != "WITHDRAWN")
        return out | {
            "truth_from": f"none: {exc!r}",
            "truth_labels": 0,
            "seconds": time.monotonic() - started,
            "rules": [
                {"rule_id": rule, "alerts": standing.get(rule, 0), "records": records.get(rule, {})}
                for rule in sorted(set(standing) | set(records))
            ],
        }
    scores = score(alerts, truth, settings.person_secret)
    out["mismatches"] = mismatches(alerts, truth, settings.person_secret)
    return out | {
        "truth_from": truth_from,
        "truth_labels": len(truth),
        "seconds": time.monotonic() - started,
        "rules": [
            {
                "rule_id": rule,
                "alerts": sc.alerts,
                "truths": sc.truths,
                "matched_alerts": sc.matched_alerts,
                "matched_truths": sc.matched_truths,
                "precision": sc.precision,
                "recall": sc.recall,
                "wrong_office": sc.wrong_office,
                "records": records.get(rule, {}),
            }
            for rule, sc in scores.items()
        ],
    }


def mismatches(alerts: list[dict[str, Any]], truth: list[dict[str, Any]], secret: bytes) -> dict[str, Any]:
    """A few alerts standing that match no label, and labels that no alert matches (as
    :func:`connectors.evaluate.score` matches them), to look into."""
    from connectors.evaluate import _alert_keys, _truth_key, final_alerts

    truth_keys = {_truth_key(t, secret): t for t in truth}
    active = [a for a in final_alerts(alerts).values() if a["status"] != "WITHDRAWN"]
    matched: set[tuple[str, str, str]] = set()
    extra = []
    for a in active:
        keys = _alert_keys(a)
        matched |= keys
        if not keys & truth_keys.keys():
            extra.append({k: a.get(k) for k in ("alert_id", "rule_id", "status", "subject", "office", "reasons")})
    missed = [t for key, t in truth_keys.items() if key not in matched]
    return {"alerts_unmatched": len(extra), "labels_missed": len(missed), "examples": extra[:10], "missed": missed[:10]}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    info = machine()
    say(
        f"load test: {', '.join(f'{r:,.0f}' for r in args.rates)} events/s, {args.seconds:g}s per stage, requests "
        f"of {args.batch}, {args.workload} workload; {info['cpus']} CPUs, load {info['load_1min']:.2f}"
    )
    files = history_files(args) if args.workload == "history" else None
    mix = LiveMix(args.seed, args.travellers, args.risky_share, MIX) if files is None else None
    options = StackOptions(
        lag_interval_s=args.lag_interval,
        extra_env={"PORA_GATEWAY_DEDUP_CAPACITY": str(args.dedup_capacity)},
    )
    if files is not None:
        options.gateway_tick_seconds = 0  # event time is the file's: the benchmark ticks
    results: list[StageResult] = []
    workload: Workload
    evaluation: dict[str, Any] = {}
    with contextlib.ExitStack() as stack_exit:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            work = args.keep.resolve()
        else:
            work = Path(stack_exit.enter_context(tempfile.TemporaryDirectory(prefix="pora-bench-load-")))
        stack = stack_exit.enter_context(LocalStack(work, options, say=say))
        stack.start_services()
        if files is not None:
            workload = HistoryWorkload(History(files), stack.settings, args.tick_seconds, ordered=not args.unordered)
        else:
            assert mix is not None
            workload = LiveWorkload(mix)
        stream = FeedStream(stack.feed_url, stack.admin, stack.admin_password)
        holder = StreamHolder(stream)
        stack_exit.enter_context(holder)
        for rate in args.rates:
            st = run_stage(stack, workload, rate, args, stream)
            results.append(st)
            say()
            say(text_table(MEMORY_HEADER, [r[:-1] for r in memory_rows(st)]))
            for line in verdict_lines(st):
                say(line)
            for failure in st.failures[:5]:
                say(f"    failure: {failure}")
            say()
            if stack.check_alive():
                break
            if isinstance(workload, HistoryWorkload) and workload.history.exhausted:
                break  # nothing left for another stage
        if isinstance(workload, HistoryWorkload):
            h = workload.history
            say(
                f"history: {h.produced:,} events sent ({iso_ms(h.first_ms)} -> {iso_ms(h.last_ms)} UTC"
                + (", all of the simulation" if h.exhausted else "")
                + f"), {h.ticks:,} clock ticks ({len(h.tick_failures)} failed); requests answered 503 or not at all "
                f"sent again {h.retried_requests:,} times, {h.retried_taken:,} taken then; "
                f"{len(h.lost):,} events not taken (unsent when time was up, or never acknowledged)"
            )
        if isinstance(workload, HistoryWorkload) and not stack.check_alive():
            evaluation = evaluate_history(stack, workload.history, args)
            for line in evaluation_lines(evaluation, markdown=False):
                say(line)
        say(f"live stream: {stream.alerts:,} alerts, {stream.connections} connection(s), {stream.reloads} reload(s)")

    groups = ["worker", "sink"]
    report: dict[str, Any] = {
        "bench": "load",
        "at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": info,
        "code": code_version(),
        "workload": workload_report(workload, evaluation),
        "stages": [asdict(st) for st in results],
        "sustained": {f"{st.rate:g}": st.sustained for st in results},
    }
    md = write_results(args.out, report, markdown(report, results, groups))
    say(f"results written to {args.out} and {md}")
    return 0


def workload_report(workload: Workload, evaluation: dict[str, Any]) -> dict[str, Any]:
    if isinstance(workload, LiveWorkload):
        mix = workload.mix
        return {
            "name": "live",
            "by_sample": dict(mix.by_sample),
            "risky_departures": mix.risky,
            "events": mix.produced,
        }
    assert isinstance(workload, HistoryWorkload)
    h = workload.history
    return {
        "name": "history",
        "simulation": h.files.meta,
        "files": str(h.files.folder),
        "cached": h.files.cached,
        "sent": h.produced,
        "by_kind": dict(h.by_kind),
        "ran_out": h.exhausted,
        "lost": len(h.lost),
        "partial_requests": h.partial,
        "retried_requests": h.retried_requests,
        "retried_taken": h.retried_taken,
        "first_sent": iso_ms(h.first_ms),
        "last_sent": iso_ms(h.last_ms),
        "ticks": h.ticks,
        "tick_failures": h.tick_failures[:20],
        "closing_tick": iso_ms(h.closed_ms),
        "evaluation": evaluation,
    }


class StreamHolder:
    """The admin's live stream, held in a thread of its own (its own event loop) for the whole run."""

    def __init__(self, stream: FeedStream) -> None:
        self.stream = stream
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="feed-stream", daemon=True)
        self._task: asyncio.Task[None] | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(self.stream.run())
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)
        self._loop.close()

    def __enter__(self) -> StreamHolder:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self.stream.connected.is_set():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the feed's live stream did not connect: {self.stream.errors[-3:]}")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        task = self._task
        if task is not None:
            self._loop.call_soon_threadsafe(task.cancel)
        self._thread.join(10)


if __name__ == "__main__":
    sys.exit(main())
