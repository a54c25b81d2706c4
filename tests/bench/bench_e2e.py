"""End-to-end benchmark: HTTP gateway -> Kafka -> detector worker -> feed live stream, and -> sink -> ClickHouse.

Run with ``python -m tests.bench.bench_e2e`` (``make bench-e2e``). One run, one fresh local stack of
its own on free ports (:class:`tests.bench.common.LocalStack`): a Tansu broker, a ClickHouse 18.16
server, ``pora gateway``, one ``pora worker``, ``pora sink`` (into that server) and ``pora feed``, each
a subprocess configured by ``PORA_*`` variables only, with its /metrics on a port of its own.

1. **Workload.** ``--workload mix`` (the default): ``--events`` of live traffic, the gateway bench's
   mix for ``--travellers`` people (:class:`tests.bench.common.LiveMix`), each occurred 1-60 minutes
   before, ``reported_at`` stamped by the gateway. ``--workload simulation``: a simulation
   (:mod:`connectors.simulator`, ``--days`` x ``--travellers``, ending two days before today) keeping
   its own ``reported_at`` (a trusted ``system`` key, as ``pora replay`` sends). Beware that the
   gateway's clock ticks carry the wall clock, so every simulated event then arrives behind its
   partition's watermark: released at once, with every deadline of the simulated past firing as it is
   scheduled, the worker writes about ten times the simulation's true alerts (an alert storm that
   slows the worker and fills the feed); history belongs to ``pora replay``, which ticks in event
   time. Either way the requests hold ``--batch`` events of one kind, in the order the batches
   filled; the same events are encoded ahead (``bench_gateway.encode_ahead``) and decoded into table
   rows (``common.table_rows``) for the baselines.
2. **Baselines**, in this process, before the services start: a raw ``AIOKafkaProducer`` sending the
   very records the gateway writes to the same broker (``bench_gateway.raw_run``) and a raw
   clickhouse-driver insert of the very rows, in batches of ``PORA_SINK_BATCH_ROWS``, into the same
   server (``bench_sink.raw_insert``).
3. **Bulk phase: (a) and (c).** The requests are posted with ``--concurrency`` in flight
   (``bench_gateway.post_all``) while a thread samples, every ``--sample-seconds``: the gateway's
   ``pora_gateway_events_accepted_total``, the worker's ``pora_worker_events_total`` over the ingestion
   topics and its lag, the sink's ``pora_sink_rows_total`` over the event tables and its lag, and
   ``count() ... FINAL`` of the event tables in ClickHouse. (a) is the accepted events over the time
   from the first POST to the first sample in which ClickHouse holds every one of them. Beside it,
   each stage in the same run: the gateway (accepted / time to its last answer), the worker (records
   it consumed, clock ticks included, until it had read everything on the ingestion topics when the
   gateway finished: the Fetch high watermark), the sink (event rows until all were written), each
   with its peak rate over 2 s, its peak lag and the cores it used.
4. **Paced phase: (b).** An admin logs in to the feed and holds its live stream (``/stream``, SSE).
   Events are posted open-loop (``common.PacedSender``) at ``--rate`` events/s for ``--seconds``: the
   gateway bench's mix with a share ``--risky-share`` of the citizens' departures risky
   (``tppo.screening`` on release, ``bench_detectors.latency_workload``), plus ``--located-per-s``
   overstayers a second: an arrival 40 days ago whose stay ended 10 days ago, and ``--lead-seconds``
   later that traveller's hotel check-in (``overstay.located``). Each trigger is matched to its alert
   on the stream by rule and person key; its latency is the moment the alert came on the stream less
   the gateway's receipt time (``received_at``), and less the moment the answer with the receipt
   came back; split at the worker's emission time (the alert's ``emitted_at``). The detectors
   release an event only once every input of its partition is ``time.lateness_seconds`` past it, and
   the gateway ticks every ``PORA_GATEWAY_TICK_SECONDS``: both are a floor under the latency.

Figures are printed and written to ``bench-results/e2e.md`` and ``bench-results/e2e.json``; nothing is
asserted on time. The exit status is non-zero only when events are lost: a request refused, ClickHouse
not holding every accepted event, or triggers whose alert never came.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from connectors.gateway.ingest import TOPIC_OF_KIND
from connectors.samples import SampleFactory
from connectors.simulator import simulate
from connectors.sink.store import ServerStore
from connectors.sink.tables import TABLES
from schemas.person import person_key
from streams.detect.config import default_rules
from streams.settings import Settings
from tests.bench.bench_detectors import latency_workload
from tests.bench.bench_gateway import (
    MIX,
    Workload,
    code_version,
    count_records,
    drop_topics,
    encode_ahead,
    percentile,
    platform_topics,
    post_all,
    raw_run,
    say,
)
from tests.bench.bench_sink import batches, raw_insert
from tests.bench.common import (
    SLUG_OF_KIND,
    WIB,
    FeedStream,
    LiveMix,
    LocalStack,
    PacedSender,
    Periodic,
    Request,
    StackOptions,
    Usage,
    batch_requests,
    fmt,
    machine,
    machine_cpu,
    md_table,
    stop_on_sigterm,
    table_rows,
    text_table,
    write_results,
)
from tests.bench.common import usage as common_usage

INGEST_TOPICS = tuple(dict.fromkeys(TOPIC_OF_KIND.values()))  # without the prefix, as the metrics label them
EVENT_TABLES = tuple(TABLES[kind].name for kind in TOPIC_OF_KIND)
SINK_BATCH_ROWS = Settings.model_fields["sink_batch_rows"].default


# ---------------------------------------------------------------- workload


def build_workload(args: Namespace) -> tuple[Workload, dict[str, Any]]:
    """The bulk phase's requests, and what they are (for the report)."""
    pairs: list[tuple[str, dict[str, Any]]]
    if args.workload == "simulation":
        start = datetime.now(WIB).date() - timedelta(days=args.days + 2)  # over before today: nothing in the future
        sim = simulate(args.days, args.travellers, args.seed, start)
        pairs = [(str(line["kind"]), line["event"]) for line in sim.events]
        about: dict[str, Any] = {
            "workload": f"simulation of {args.days} days x {args.travellers:,} travellers (its own reported_at)",
            "truth_alerts": len(sim.truth),
        }
    else:
        mix = LiveMix(args.seed, args.travellers, args.mix_risky_share, MIX)
        pairs = list(itertools.islice(mix.events(), args.events))
        about = {
            "workload": f"live mix of {args.events:,} events for {args.travellers:,} travellers (reported_at "
            f"stamped by the gateway, {args.mix_risky_share:g} of departures risky)",
            "risky_departures": mix.risky,
        }
    requests = batch_requests(pairs, args.batch)
    records = asyncio.run(encode_ahead(requests))
    workload = Workload(
        requests=requests,
        records=records,
        events=sum(r.events for r in requests),
        by_sample=dict(Counter(kind for kind, _ in pairs)),
        json_bytes=sum(len(r.body) for r in requests),
        avro_bytes=sum(len(r.value) for r in records),
    )
    return workload, about


# ---------------------------------------------------------------- bulk phase: (a) and (c)


@dataclass
class Probe:
    gateway_accepted: float | None
    worker_records: float | None  # pora_worker_events_total over the ingestion topics (positions: ticks included)
    worker_lag: float | None
    sink_rows: float | None  # pora_sink_rows_total over the event tables
    sink_lag: float | None
    clickhouse_rows: int | None  # count() FINAL over the event tables
    alerts: float | None  # alert records the worker wrote (pora_alerts_total)
    usage: dict[str, Usage | None]  # the stack's processes, and "bench": this process (sampling, SSE, sending)
    machine_busy_s: float  # every process on the machine, others' too
    machine_total_s: float


def make_probe(stack: LocalStack, store: ServerStore) -> Callable[[], Probe]:
    def probe() -> Probe:
        m = stack.scrape_all()
        gw, worker, sink = m["gateway"], m["worker"], m["sink"]
        usage = stack.usage() | {"bench": common_usage(os.getpid(), tree=False)}
        busy, total = machine_cpu()
        try:
            rows: int | None = sum(
                int(store.query(f"SELECT count() FROM {store.database}.{t} FINAL").rows[0][0]) for t in EVENT_TABLES
            )
        except Exception:  # the sampler goes on; a missing count is shown as such
            rows = None
        return Probe(
            gateway_accepted=gw.total("pora_gateway_events_accepted_total") if gw else None,
            worker_records=(
                sum(worker.total("pora_worker_events_total", topic=t) for t in INGEST_TOPICS) if worker else None
            ),
            worker_lag=worker.total("pora_consumer_lag_records", group=stack.worker_group) if worker else None,
            sink_rows=sum(sink.total("pora_sink_rows_total", table=t) for t in EVENT_TABLES) if sink else None,
            sink_lag=sink.total("pora_consumer_lag_records", group=stack.sink_group) if sink else None,
            clickhouse_rows=rows,
            alerts=worker.total("pora_alerts_total") if worker else None,
            usage=usage,
            machine_busy_s=busy,
            machine_total_s=total,
        )

    return probe


@dataclass
class Stage:
    stage: str
    counted: str
    items: int
    seconds: float | None  # from the first POST (baselines: their own run)
    per_s: float | None
    peak_per_s: float | None = None  # over >= 2 s between samples
    peak_lag: float | None = None
    cores: float | None = None  # CPU seconds per wall second while it ran
    vs_baseline: float | None = None
    baseline: str = ""


@dataclass
class BulkResult:
    events: int
    requests: int
    accepted: int
    failures: list[str]
    gateway_seconds: float
    records_on_ingest_topics: int  # Fetch high watermark when the gateway finished (events and ticks)
    worker_records_before: float
    end_to_end_seconds: float | None
    clickhouse_rows: int | None
    stages: list[Stage]
    samples: list[dict[str, Any]]
    lost: bool
    alerts: int  # alert records the worker wrote during the phase
    busy_seconds: float  # first POST -> the last stage done
    cores: dict[str, float]  # per process (and "bench": this one) over busy_seconds
    machine_cores: float  # every process on the machine over busy_seconds


def first_at(samples: Sequence[tuple[float, Probe]], t0: float, done: Callable[[Probe], bool]) -> float | None:
    for at, p in samples:
        if at >= t0 and done(p):
            return at - t0
    return None


def peak_rate(samples: Sequence[tuple[float, Probe]], value: Callable[[Probe], float | None], window: float) -> float:
    points = [(at, v) for at, p in samples if (v := value(p)) is not None]
    best, j = 0.0, 0
    for i, (t1, v1) in enumerate(points):
        while j < i and t1 - points[j][0] >= window:
            j += 1
        if j > 0 and t1 - points[j - 1][0] >= window:
            t0, v0 = points[j - 1]
            best = max(best, (v1 - v0) / (t1 - t0))
    return best


def cores(before: Probe, samples: Sequence[tuple[float, Probe]], t0: float, until: float | None, name: str) -> float:
    if until is None:
        return float("nan")
    end = next((p for at, p in samples if at - t0 >= until), samples[-1][1] if samples else None)
    u0, u1 = before.usage.get(name), end.usage.get(name) if end else None
    return (u1.cpu_s - u0.cpu_s) / until if u0 and u1 and until > 0 else float("nan")


def bulk_phase(stack: LocalStack, workload: Workload, args: Namespace) -> BulkResult:
    settings = stack.settings
    store = ServerStore(stack.server.host, stack.server.port, stack.database)
    probe = make_probe(stack, store)
    before = probe()
    if before.worker_records is None or before.sink_rows is None:
        raise RuntimeError("the worker's or the sink's /metrics does not answer")
    try:
        with Periodic(probe, args.sample_seconds) as sampler:
            t0 = time.time()
            stats, gateway_s = asyncio.run(
                post_all(stack.gateway_url, stack.api_key, workload.requests, args.concurrency)
            )
            ends = count_records(stack.bootstrap, [settings.topic(t) for t in INGEST_TOPICS])
            end_records = sum(ends.values())
            accepted = stats.accepted
            say(
                f"posted {workload.events:,} events in {len(workload.requests):,} requests: {accepted:,} accepted in "
                f"{gateway_s:.1f}s ({accepted / gateway_s:,.0f}/s); {end_records:,} records on the ingestion "
                "topics (events and clock ticks); waiting for the worker, the sink and ClickHouse ..."
            )
            for failure in stats.failures[:5]:
                say(f"    failure: {failure}")

            def done(p: Probe) -> bool:
                return (
                    (p.clickhouse_rows or 0) >= accepted
                    and (p.worker_records or 0) >= end_records
                    and (p.sink_rows or 0) - (before.sink_rows or 0) >= accepted
                )

            deadline = time.monotonic() + args.timeout
            dead: list[str] = []
            while time.monotonic() < deadline:
                latest = sampler.latest()
                if latest is not None and latest[0] > t0 and done(latest[1]):
                    break
                dead = stack.check_alive()
                if dead:
                    break
                time.sleep(0.2)
            time.sleep(2 * args.sample_seconds)  # a few samples past the end, for the rates
    finally:
        store.close()
    samples = [(at, p) for at, p in sampler.samples if at >= t0]
    ch_done = first_at(samples, t0, lambda p: (p.clickhouse_rows or 0) >= accepted)
    worker_done = first_at(samples, t0, lambda p: (p.worker_records or 0) >= end_records)
    sink_done = first_at(samples, t0, lambda p: (p.sink_rows or 0) - (before.sink_rows or 0) >= accepted)
    window = max(2.0, 2 * args.sample_seconds)
    worker_items = int(end_records - (before.worker_records or 0))
    stages = [
        Stage(
            "end to end",
            "accepted events, first POST -> all in ClickHouse (count() FINAL)",
            accepted,
            ch_done,
            accepted / ch_done if ch_done else None,
        ),
        Stage(
            "gateway",
            "accepted events, first POST -> last answer (receipts: broker acknowledged)",
            accepted,
            gateway_s,
            accepted / gateway_s,
            peak_rate(samples, lambda p: p.gateway_accepted, window),
            None,
            cores(before, samples, t0, gateway_s, "gateway"),
        ),
        Stage(
            "detector worker",
            "records read from the ingestion topics (clock ticks included), first POST -> all read",
            worker_items,
            worker_done,
            worker_items / worker_done if worker_done else None,
            peak_rate(samples, lambda p: p.worker_records, window),
            max((p.worker_lag or 0.0 for _, p in samples), default=None),
            cores(before, samples, t0, worker_done, "worker"),
        ),
        Stage(
            "sink",
            "event rows written to ClickHouse (pora_sink_rows_total), first POST -> all written",
            accepted,
            sink_done,
            accepted / sink_done if sink_done else None,
            peak_rate(samples, lambda p: p.sink_rows, window),
            max((p.sink_lag or 0.0 for _, p in samples), default=None),
            cores(before, samples, t0, sink_done, "sink"),
        ),
    ]
    failures = list(stats.failures[:20]) + dead
    last = samples[-1][1] if samples else before
    busy = max((d for d in (gateway_s, ch_done, worker_done, sink_done) if d is not None), default=gateway_s)
    end = next((p for at, p in samples if at - t0 >= busy), last)
    spent = {n: cores(before, samples, t0, busy, n) for n in before.usage}
    total = end.machine_total_s - before.machine_total_s
    return BulkResult(
        events=workload.events,
        requests=len(workload.requests),
        accepted=accepted,
        failures=failures,
        gateway_seconds=gateway_s,
        records_on_ingest_topics=end_records,
        worker_records_before=before.worker_records or 0.0,
        end_to_end_seconds=ch_done,
        clickhouse_rows=last.clickhouse_rows,
        stages=stages,
        samples=[sample_dict(at - t0, p) for at, p in samples],
        lost=bool(failures) or accepted != workload.events or ch_done is None,
        alerts=int((last.alerts or 0) - (before.alerts or 0)),
        busy_seconds=busy,
        cores={n: v for n, v in spent.items() if v == v},
        machine_cores=(end.machine_busy_s - before.machine_busy_s) / total * (os.cpu_count() or 1) if total else 0.0,
    )


def sample_dict(t: float, p: Probe) -> dict[str, Any]:
    out = {k: v for k, v in asdict(p).items() if k != "usage"}
    out["t"] = round(t, 3)
    out["cpu_s"] = {n: u.cpu_s for n, u in p.usage.items() if u}
    out["rss_mb"] = {n: u.rss_mb for n, u in p.usage.items() if u}
    return out


# ---------------------------------------------------------------- paced phase: (b)


@dataclass(frozen=True)
class Trigger:
    rule: str
    event_id: str
    person_key: str


@dataclass
class Plan:
    schedule: list[tuple[float, Request]]
    triggers: dict[str, Trigger]  # by event id
    events: int
    overstayer_arrivals: int


def latency_plan(args: Namespace, secret: bytes) -> Plan:
    """The paced workload: ``bench_detectors.latency_workload``'s slots (its mix, risky departures
    included), with overstayers added (an arrival, then the check-in ``--lead-seconds`` later)."""
    slot_s = args.slot_ms / 1000
    # seeds of their own: the people here are not the bulk phase's (whose alerts would be updated now)
    slots = latency_workload(args.rate, args.seconds, slot_s, args.risky_share, args.seed + 1000)
    today = datetime.now(WIB).date()
    factory = SampleFactory(seed=args.seed + 1002, today=today)
    rng = random.Random(args.seed + 1003)
    lead = max(1, round(args.lead_seconds / slot_s))
    triggers: dict[str, Trigger] = {}
    people: set[str] = set()

    def unique_key(identity: dict[str, Any]) -> str | None:
        key = person_key(secret, identity["nationality"], identity["document_number"])
        if key in people:
            return None
        people.add(key)
        return key

    arrivals = 0
    owed = 0.0
    for i in range(len(slots) - lead):  # overstayers: the arrival in slot i, the check-in in slot i + lead
        owed += args.located_per_s * slot_s
        while owed >= 1:
            owed -= 1
            guest = factory.identity(rng.choice(["CHN", "MYS", "RUS", "AUS", "KOR", "IND"]))
            key = unique_key(guest)
            if key is None:
                continue
            arrival = factory.arrival(traveller=guest, days_ago=40)
            arrival["arrival"]["permit_type"] = "VISA_EXEMPT"
            arrival["arrival"]["authorised_until"] = (today - timedelta(days=10)).isoformat()
            check_in = factory.hotel_check_in(guest=guest)
            occurred = datetime.now(WIB) - timedelta(seconds=rng.randint(60, 3600))
            check_in["occurred_at"] = occurred.isoformat(timespec="seconds")
            slots[i].append({"kind": "border_crossing", "event": arrival, "risky": False})
            slots[i + lead].append({"kind": "hotel_guest_event", "event": check_in, "risky": False})
            triggers[check_in["event_id"]] = Trigger("overstay.located", check_in["event_id"], key)
            arrivals += 1
    for slot in slots:
        for item in slot:
            if item["risky"]:
                key = unique_key(item["event"]["traveller"])
                if key is not None:
                    eid = item["event"]["event_id"]
                    triggers[eid] = Trigger("tppo.screening", eid, key)
    schedule: list[tuple[float, Request]] = []
    for i, slot in enumerate(slots):
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for item in slot:
            by_kind.setdefault(item["kind"], []).append(item["event"])
        for kind, events in by_kind.items():
            body = orjson.dumps(events)
            schedule.append((i * slot_s, Request(kind, f"/v1/events/{SLUG_OF_KIND[kind]}", body, len(events))))
    return Plan(schedule, triggers, sum(r.events for _, r in schedule), arrivals)


@dataclass
class Spread:
    n: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, values_s: Sequence[float]) -> Spread:
        ms = [v * 1000 for v in values_s]
        return cls(len(ms), percentile(ms, 50), percentile(ms, 99), max(ms, default=float("nan")))


@dataclass
class LatencyResult:
    target_rate: float
    seconds: float
    events_sent: int
    events_accepted: int
    requests: int
    failed_requests: int
    achieved_rate: float
    sender_max_behind_ms: float
    request_p50_ms: float
    request_p99_ms: float
    triggers: dict[str, int]  # per rule
    receipted: int
    matched: int
    missing: dict[str, int]  # receipted triggers whose alert never came, per rule
    receipt_to_stream: dict[str, Spread]  # per rule, and "all"
    answer_to_stream: dict[str, Spread]
    receipt_to_emitted: dict[str, Spread]  # the gateway's receipt -> the worker's emission (emitted_at)
    emitted_to_stream: dict[str, Spread]  # the worker's emission -> the SSE client
    first_tenth_p50_ms: float  # receipt -> stream, by send time: does it grow?
    last_tenth_p50_ms: float
    alerts_on_stream: dict[str, int]
    stream_connections: int
    stream_reloads: int
    stream_errors: list[str]
    lateness_s: float
    tick_s: float
    cores: dict[str, float]
    machine_cores: float
    failures: list[str] = field(default_factory=list)


def iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


async def paced(stack: LocalStack, plan: Plan, args: Namespace) -> tuple[PacedSender, FeedStream, dict[str, Any]]:
    receipts: dict[str, tuple[int, float]] = {}  # trigger event id -> (received_at ms, answer seen at)
    wanted = {(t.rule, t.person_key): t.event_id for t in plan.triggers.values()}
    # trigger event id -> every alert of its rule and person on the stream: (on the stream at, emitted_at ms);
    # the trigger's own is the first emitted after its receipt (an older alert of that person may be updated)
    sightings: dict[str, list[tuple[float, int]]] = {}
    seen: dict[str, tuple[float, int]] = {}

    def match(eid: str) -> None:
        if eid in seen or eid not in receipts:
            return
        received = receipts[eid][0]
        own = [s for s in sightings.get(eid, ()) if s[1] >= received]
        if own:
            seen[eid] = own[0]

    rules: Counter[str] = Counter()

    def on_answer(request: Request, status: int, body: dict[str, Any] | None, at: float) -> None:
        for receipt in (body or {}).get("receipts") or []:
            if receipt and receipt.get("event_id") in plan.triggers:
                receipts[receipt["event_id"]] = (iso_ms(receipt["received_at"]), at)
                match(receipt["event_id"])

    def on_alert(view: dict[str, Any], at: float) -> None:
        rules[str(view.get("rule_id"))] += 1
        eid = wanted.get((str(view.get("rule_id")), str(view.get("subject", {}).get("person_key"))))
        if eid is not None and eid not in seen:
            sightings.setdefault(eid, []).append((at, int(view["emitted_at"])))
            match(eid)

    stream = FeedStream(stack.feed_url, stack.admin, stack.admin_password, on_alert)
    reading = asyncio.create_task(stream.run())
    try:
        try:
            await asyncio.wait_for(stream.connected.wait(), 60)
        except TimeoutError:
            raise RuntimeError(f"the feed's live stream did not connect: {stream.errors[-3:]}") from None
        sender = PacedSender(stack.gateway_url, stack.api_key, on_answer=on_answer)
        await sender.run(plan.schedule)
        say(
            f"sent {sender.sent_events:,} events in {sender.sent_requests:,} requests in {sender.finished:.1f}s; "
            f"{len(receipts):,} of {len(plan.triggers):,} triggers receipted, {len(seen):,} alerts matched so far"
        )
        lateness = default_rules().time.lateness_seconds
        progress, progress_at = len(seen), time.monotonic()
        deadline = time.monotonic() + args.settle_max
        while time.monotonic() < deadline and not set(receipts) <= set(seen):
            await asyncio.sleep(0.2)
            if len(seen) != progress:
                progress, progress_at = len(seen), time.monotonic()
            elif time.monotonic() - progress_at > lateness + 20:
                break
        await asyncio.sleep(1.0)
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
    return sender, stream, {"receipts": receipts, "seen": seen, "rules": dict(rules)}


def paced_phase(stack: LocalStack, args: Namespace) -> LatencyResult:
    secret = stack.settings.person_secret
    plan = latency_plan(args, secret)
    say(
        f"paced: {plan.events:,} events at {args.rate:,.0f}/s for {args.seconds:g}s in {len(plan.schedule):,} "
        f"requests; triggers: {dict(Counter(t.rule for t in plan.triggers.values()))} "
        f"({plan.overstayer_arrivals} overstayer arrivals)"
    )
    before = stack.usage() | {"bench": common_usage(os.getpid(), tree=False)}
    busy0, total0 = machine_cpu()
    t0 = time.time()
    sender, stream, got = asyncio.run(paced(stack, plan, args))
    elapsed = time.time() - t0
    after = stack.usage() | {"bench": common_usage(os.getpid(), tree=False)}
    busy1, total1 = machine_cpu()
    receipts: dict[str, tuple[int, float]] = got["receipts"]
    seen: dict[str, tuple[float, int]] = got["seen"]
    matched = sorted((eid for eid in receipts if eid in seen), key=lambda eid: receipts[eid][0])
    groups: dict[str, list[str]] = {"all": matched}
    for eid in matched:
        groups.setdefault(plan.triggers[eid].rule, []).append(eid)

    def spread(value: Callable[[str], float]) -> dict[str, Spread]:
        return {name: Spread.of([value(e) for e in eids]) for name, eids in groups.items()}

    receipt_to_stream = [seen[e][0] - receipts[e][0] / 1000 for e in matched]
    tenth = max(1, len(matched) // 10)
    answers = sender.answers
    ok = [a for a in answers if a.status == 200]
    missing = Counter(plan.triggers[e].rule for e in receipts if e not in seen)
    cores = {}
    for name, u0 in before.items():
        u1 = after.get(name)
        if u0 and u1:
            cores[name] = (u1.cpu_s - u0.cpu_s) / elapsed
    failures = [f"{a.kind}: {a.error}" for a in answers if a.error][:20] + stack.check_alive()
    return LatencyResult(
        target_rate=args.rate,
        seconds=args.seconds,
        events_sent=sender.sent_events,
        events_accepted=sum(a.accepted for a in answers),
        requests=len(answers),
        failed_requests=len(answers) - len(ok),
        achieved_rate=sender.sent_events / (max((a.sent for a in answers), default=0.0) + args.slot_ms / 1000),
        sender_max_behind_ms=max((a.sent - a.due for a in answers), default=0.0) * 1000,
        request_p50_ms=percentile([a.latency * 1000 for a in ok], 50),
        request_p99_ms=percentile([a.latency * 1000 for a in ok], 99),
        triggers=dict(Counter(t.rule for t in plan.triggers.values())),
        receipted=len(receipts),
        matched=len(matched),
        missing=dict(missing),
        receipt_to_stream=spread(lambda e: seen[e][0] - receipts[e][0] / 1000),
        answer_to_stream=spread(lambda e: seen[e][0] - receipts[e][1]),
        receipt_to_emitted=spread(lambda e: (seen[e][1] - receipts[e][0]) / 1000),
        emitted_to_stream=spread(lambda e: seen[e][0] - seen[e][1] / 1000),
        first_tenth_p50_ms=percentile([v * 1000 for v in receipt_to_stream[:tenth]], 50),
        last_tenth_p50_ms=percentile([v * 1000 for v in receipt_to_stream[-tenth:]], 50),
        alerts_on_stream=got["rules"],
        stream_connections=stream.connections,
        stream_reloads=stream.reloads,
        stream_errors=stream.errors[:10],
        lateness_s=default_rules().time.lateness_seconds,
        tick_s=Settings.model_fields["gateway_tick_seconds"].default,
        cores=cores,
        machine_cores=(busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1) if total1 > total0 else 0.0,
        failures=failures,
    )


# ---------------------------------------------------------------- report


def stage_rows(stages: Sequence[Stage]) -> list[list[str]]:
    return [
        [
            s.stage,
            f"{s.items:,}",
            fmt(s.seconds, "{:.2f}"),
            fmt(s.per_s),
            fmt(s.peak_per_s),
            fmt(s.peak_lag),
            fmt(s.cores, "{:.2f}"),
            f"{fmt(s.vs_baseline, '{:.2f}')} x {s.baseline}" if s.baseline else "",
            s.counted,
        ]
        for s in stages
    ]


STAGE_HEADER = ("stage", "items", "seconds", "items/s", "peak/s (2 s)", "peak lag", "cores", "vs baseline", "counted")
LATENCY_HEADER = ("latency", "rule", "n", "p50 ms", "p99 ms", "max ms")


def latency_rows(lt: LatencyResult) -> list[list[str]]:
    rows = []
    for label, spreads in (
        ("gateway receipt (received_at) -> SSE", lt.receipt_to_stream),
        ("answer with the receipt -> SSE", lt.answer_to_stream),
        ("receipt -> worker emitted the alert", lt.receipt_to_emitted),
        ("worker emitted -> SSE", lt.emitted_to_stream),
    ):
        for rule, s in spreads.items():
            rows.append([label, rule, f"{s.n:,}", fmt(s.p50_ms), fmt(s.p99_ms), fmt(s.max_ms)])
    return rows


def markdown(report: dict[str, Any], stages: Sequence[Stage], lt: LatencyResult | None) -> str:
    c, w, bulk = report["config"], report["workload"], report["bulk"]
    lines = [
        "# End-to-end benchmark (`python -m tests.bench.bench_e2e`)",
        "",
        f"{report['at']}, commit {report['code']['commit']}{' (dirty tree)' if report['code']['dirty'] else ''}; "
        f"{report['machine']['cpus']} CPUs, load {report['machine']['load_1min']:.2f} at the start "
        "(shared, noisy machine: compare within one run only).",
        "",
        f"One fresh local stack (Tansu, ClickHouse {report['clickhouse_version']}, gateway, one worker, sink, feed). "
        f"Bulk workload: {w['workload']}: {w['events']:,} events "
        f"({', '.join(f'{k} {n:,}' for k, n in w['by_kind'].items())}), {w['requests']:,} requests of up to "
        f"{c['batch']:,}, {c['concurrency']} in flight; JSON {w['json_bytes_per_event']:.0f} B, Avro "
        f"{w['avro_bytes_per_event']:.0f} B per event.",
        "",
        "## Throughput: (a) end to end and (c) each stage in the same run",
        "",
        md_table(STAGE_HEADER, stage_rows(stages), left=(0, -2, -1)),
        "",
        "Seconds are from the first POST (baselines: their own run, before the services started); the sampling "
        f"period is {c['sample_seconds']:g} s, so stage ends are known to about that. 'cores': CPU seconds per "
        "second of the stage's process (the gateway with its prepare workers) while it ran.",
        "",
        f"During the bulk phase (first POST -> the last stage done, {bulk['busy_seconds']:.1f} s): the worker wrote "
        f"{bulk['alerts']:,} alert records"
        + (f" (the simulation's truth: {w['truth_alerts']:,})" if "truth_alerts" in w else "")
        + "; cores used: "
        + ", ".join(f"{k} {v:.2f}" for k, v in bulk["cores"].items())
        + f"; the whole machine {bulk['machine_cores']:.2f} of {report['machine']['cpus']} (every process on it, "
        "other people's too).",
    ]
    if lt is not None:
        lines += [
            "",
            "## (b) Latency: accepted event -> alert on the feed's live stream (admin, SSE)",
            "",
            f"Paced open-loop at {lt.target_rate:,.0f} events/s for {lt.seconds:g} s: {lt.events_sent:,} events sent "
            f"(achieved {lt.achieved_rate:,.0f}/s, sender at most {lt.sender_max_behind_ms:,.0f} ms behind), "
            f"{lt.events_accepted:,} accepted, {lt.failed_requests} failed requests; request latency p50 "
            f"{lt.request_p50_ms:,.0f} ms, p99 {lt.request_p99_ms:,.0f} ms. Triggers {lt.triggers}, receipted "
            f"{lt.receipted:,}, matched on the stream {lt.matched:,}"
            + (f", missing {lt.missing}" if lt.missing else "")
            + ".",
            "",
            md_table(LATENCY_HEADER, latency_rows(lt), left=(0, 1)),
            "",
            f"Median of the first tenth (by receipt time) {lt.first_tenth_p50_ms:,.0f} ms, of the last tenth "
            f"{lt.last_tenth_p50_ms:,.0f} ms. Floor: `time.lateness_seconds` = {lt.lateness_s:g} s plus up to one "
            f"gateway tick ({lt.tick_s:g} s). Cores during the phase: "
            + ", ".join(f"{k} {v:.2f}" for k, v in lt.cores.items())
            + f"; the whole machine {lt.machine_cores:.2f} (other people's processes too).",
        ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


class Namespace(argparse.Namespace):
    workload: str
    events: int
    mix_risky_share: float
    days: int
    travellers: int
    seed: int
    batch: int
    concurrency: int
    sample_seconds: float
    timeout: float
    rate: float
    seconds: float
    slot_ms: int
    risky_share: float
    located_per_s: float
    lead_seconds: float
    settle_max: float
    skip_baselines: bool
    skip_latency: bool
    keep: Path | None
    out: Path


def parse_args(argv: Sequence[str] | None = None) -> Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_e2e", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workload",
        choices=("mix", "simulation"),
        default="mix",
        help="bulk: 'mix', live traffic stamped now; 'simulation', a simulated past replayed (default mix)",
    )
    parser.add_argument("--events", type=int, default=100_000, help="bulk, mix: events (default 100000)")
    parser.add_argument("--mix-risky-share", type=float, default=0.05, help="bulk, mix: risky departures (0.05)")
    parser.add_argument("--days", type=int, default=60, help="bulk, simulation: days (default 60)")
    parser.add_argument("--travellers", type=int, default=20_000, help="bulk: travellers (default 20000)")
    parser.add_argument("--seed", type=int, default=1, help="simulation and sample seed (default 1)")
    parser.add_argument("--batch", type=int, default=1000, help="bulk: events per request (default 1000)")
    parser.add_argument("--concurrency", type=int, default=4, help="bulk: requests in flight (default 4)")
    parser.add_argument("--sample-seconds", type=float, default=0.5, help="bulk: sampling period (0.5 s)")
    parser.add_argument("--timeout", type=float, default=900.0, help="bulk: longest wait for ClickHouse (900 s)")
    parser.add_argument("--rate", type=float, default=300.0, help="paced: events/s (default 300)")
    parser.add_argument("--seconds", type=float, default=60.0, help="paced: seconds of load (default 60)")
    parser.add_argument("--slot-ms", type=int, default=100, help="paced: ms between sends (default 100)")
    parser.add_argument("--risky-share", type=float, default=0.5, help="paced: risky share of departures (0.5)")
    parser.add_argument("--located-per-s", type=float, default=8.0, help="paced: overstayers a second (default 8)")
    parser.add_argument("--lead-seconds", type=float, default=2.0, help="paced: arrival -> check-in (default 2 s)")
    parser.add_argument("--settle-max", type=float, default=120.0, help="paced: longest wait for alerts (120 s)")
    parser.add_argument("--skip-baselines", action="store_true", help="no raw producer / raw insert baselines")
    parser.add_argument("--skip-latency", action="store_true", help="no paced phase")
    parser.add_argument("--keep", type=Path, default=None, help="keep the logs and data in this directory")
    parser.add_argument("--out", type=Path, default=Path("bench-results/e2e.json"), help="JSON results (and .md)")
    args = parser.parse_args(argv, namespace=Namespace())
    for name in ("days", "travellers", "batch", "concurrency", "slot_ms"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.rate <= 0 or args.seconds <= 0 or args.sample_seconds <= 0 or not 0 < args.risky_share <= 1:
        parser.error("--rate, --seconds and --sample-seconds must be positive, --risky-share in (0, 1]")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    info = machine()
    say(
        f"e2e bench: simulation {args.days} days x {args.travellers:,} travellers, bulk batches of {args.batch}, "
        f"{args.concurrency} in flight; paced {args.rate:,.0f} events/s for {args.seconds:g}s; "
        f"{info['cpus']} CPUs, load {info['load_1min']:.2f}"
    )
    t0 = time.perf_counter()
    workload, about = build_workload(args)
    rows = table_rows(workload.records)
    say(
        f"workload: {workload.events:,} events ({', '.join(f'{k} {n:,}' for k, n in workload.by_sample.items())}) "
        f"in {len(workload.requests):,} requests; JSON {workload.json_bytes / workload.events:.0f} B/event, Avro "
        f"{workload.avro_bytes / workload.events:.0f} B/event; prepared in {time.perf_counter() - t0:.1f}s"
    )
    stages: list[Stage] = []
    bulk: BulkResult | None = None
    latency: LatencyResult | None = None
    with contextlib.ExitStack() as stack_exit:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            work = args.keep.resolve()
        else:
            work = Path(stack_exit.enter_context(tempfile.TemporaryDirectory(prefix="pora-bench-e2e-")))
        stack = stack_exit.enter_context(LocalStack(work, StackOptions(lag_interval_s=1.0), say=say))
        probe_store = ServerStore(stack.server.host, stack.server.port, "default")
        ch_version = str(probe_store.query("SELECT version()").rows[0][0])
        probe_store.close()

        raw_stage: Stage | None = None
        insert_stage: Stage | None = None
        if not args.skip_baselines:
            raw_prefix = f"{stack.prefix.rstrip('.')}-raw."
            raw = raw_run(stack.bootstrap, workload, raw_prefix)
            drop_topics(stack.bootstrap, platform_topics(raw_prefix))
            raw_stage = Stage(
                "raw aiokafka producer",
                "the gateway's records, pipelined send(), same broker (baseline)",
                raw.events,
                raw.seconds,
                raw.events_per_s,
            )
            say(f"baseline raw producer: {raw.events_per_s:,.0f} records/s ({'ok' if raw.counts_ok else 'MISMATCH'})")
            ins = raw_insert(stack.server, batches(rows, SINK_BATCH_ROWS), len(rows), 1)
            insert_stage = Stage(
                "raw clickhouse-driver insert",
                f"the same rows, batches of {SINK_BATCH_ROWS:,}, same server (baseline)",
                ins.rows,
                ins.seconds,
                ins.rows_per_s,
            )
            say(f"baseline raw insert: {ins.rows_per_s:,.0f} rows/s ({'ok' if ins.counts_ok else 'MISMATCH'})")

        stack.start_services()
        say("bulk: posting the simulation ...")
        bulk = bulk_phase(stack, workload, args)
        stages = list(bulk.stages)
        gateway, _, sink = stages[1], stages[2], stages[3]
        if raw_stage is not None and gateway.per_s:
            gateway.vs_baseline, gateway.baseline = gateway.per_s / (raw_stage.per_s or 1), "raw producer"
        if insert_stage is not None and sink.per_s:
            sink.vs_baseline, sink.baseline = sink.per_s / (insert_stage.per_s or 1), "raw insert"
        stages[2:2] = [s for s in (raw_stage,) if s is not None]
        stages += [s for s in (insert_stage,) if s is not None]
        say()
        say(text_table(STAGE_HEADER[:-1], [r[:-1] for r in stage_rows(stages)]))
        say(
            f"bulk phase ({bulk.busy_seconds:.1f}s): {bulk.alerts:,} alert records written"
            + (f" (the simulation's truth: {about['truth_alerts']:,})" if "truth_alerts" in about else "")
            + "; cores "
            + ", ".join(f"{k} {v:.2f}" for k, v in bulk.cores.items())
            + f"; whole machine {bulk.machine_cores:.2f} (others' processes too)"
        )
        say()
        if not args.skip_latency:
            latency = paced_phase(stack, args)
            say()
            say(text_table(LATENCY_HEADER, latency_rows(latency)))
            say(
                f"matched {latency.matched:,} of {latency.receipted:,} receipted triggers"
                + (f"; MISSING {latency.missing}" if latency.missing else "")
                + f"; median first tenth {latency.first_tenth_p50_ms:,.0f} ms, last tenth "
                f"{latency.last_tenth_p50_ms:,.0f} ms; alerts on the stream {latency.alerts_on_stream}"
            )
            for failure in latency.failures[:5]:
                say(f"    failure: {failure}")

    lost = bulk is None or bulk.lost or (latency is not None and (bool(latency.missing) or latency.failed_requests > 0))
    report: dict[str, Any] = {
        "bench": "e2e",
        "at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": info,
        "code": code_version(),
        "clickhouse_version": ch_version,
        "workload": {
            **about,
            "events": workload.events,
            "requests": len(workload.requests),
            "by_kind": workload.by_sample,
            "json_bytes_per_event": workload.json_bytes / workload.events,
            "avro_bytes_per_event": workload.avro_bytes / workload.events,
        },
        "stages": [asdict(s) for s in stages],
        "bulk": {k: v for k, v in asdict(bulk).items() if k != "stages"} if bulk else None,
        "latency": asdict(latency) if latency else None,
        "ok": not lost,
    }
    md = write_results(args.out, report, markdown(report, stages, latency))
    say(f"results written to {args.out} and {md}")
    if lost:
        say("FAILED: events were refused or lost, or triggers got no alert")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
