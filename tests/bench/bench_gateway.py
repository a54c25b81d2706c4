"""Gateway ingestion benchmark: HTTP gateway vs a raw aiokafka producer, same broker, same events.

Run with ``python -m tests.bench.bench_gateway`` (``make bench``). One process, one Tansu broker:

1. one workload is generated (a realistic mix from :class:`connectors.samples.SampleFactory`) and
   every request body is serialised to bytes before any timing;
2. the raw baseline gets the very records the gateway would write (validated, pseudonymised and
   Avro-encoded ahead, by the project's own :class:`~connectors.gateway.ingest.Ingestor` with a
   capturing publisher: same value bytes, keys and headers) and sends them with a pipelined
   ``AIOKafkaProducer.send()`` configured like the gateway's publisher;
3. the gateway runs as a subprocess (``python -m streams.cli gateway``) and the batches are posted
   with ``--concurrency`` requests in flight; a batch counts when its response (the receipts, given
   only after the broker's acknowledgement) arrives;
4. raw and gateway alternate ``--runs`` times on fresh topic prefixes, and the record counts are
   checked after every run through the Fetch high watermark (Tansu's ListOffsets is low).

Targets are informational: the exit status is non-zero only when a request failed or a count is off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from connectors.gateway.ingest import TOPIC_OF_KIND, Ingestor, Item
from connectors.gateway.keys import Source, key_entry, new_key
from connectors.gateway.publisher import OutRecord
from connectors.samples import SampleFactory
from schemas.codec import codec
from streams import topics
from streams.localstack import create_topics, free_port, running_broker, stop_process
from streams.settings import Settings
from streams.topics import TOPICS
from tests.bench.common import Request, batch_requests, proc_sample

PARTITIONS = 6
TARGET_EVENTS_PER_S = 20_000
TARGET_RATIO = 0.3
# share of each sample in the workload: (name, event kind, weight)
MIX: tuple[tuple[str, str, float], ...] = (
    ("hotel_check_in", "hotel_guest_event", 0.6),
    ("arrival", "border_crossing", 0.3),
    ("citizen_departure", "border_crossing", 0.1),
)


# ---------------------------------------------------------------- workload


@dataclass
class Workload:
    requests: list[Request]
    records: list[OutRecord]  # what the gateway writes for these events; topics without a prefix
    events: int
    by_sample: dict[str, int]
    json_bytes: int
    avro_bytes: int


class _Capture:
    """A Publisher that keeps the records instead of sending them (acknowledges everything)."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def healthy(self) -> bool:
        return True

    async def partitions(self, topic: str) -> int:
        return PARTITIONS

    async def publish(self, records: Sequence[OutRecord]) -> list[BaseException | None]:
        self.records.extend(records)
        return [None] * len(records)


def generate(events: int, batch: int, seed: int = 7) -> tuple[list[Request], dict[str, int]]:
    """``events`` sample events in a random mix, grouped per kind into batches of ``batch``.

    Requests are ordered by when their batch filled, so the kinds interleave as they would in traffic.
    """
    factory = SampleFactory(seed=seed)
    makers: dict[str, Callable[[], dict[str, Any]]] = {
        "hotel_check_in": factory.hotel_check_in,
        "arrival": factory.arrival,
        "citizen_departure": factory.citizen_departure,
    }
    rng = random.Random(seed + 1)
    names = [name for name, _, _ in MIX]
    weights = [w for _, _, w in MIX]
    kind_of = {name: kind for name, kind, _ in MIX}
    counts = dict.fromkeys(names, 0)

    def events_in_order() -> Iterator[tuple[str, dict[str, Any]]]:
        for name in rng.choices(names, weights, k=events):
            counts[name] += 1
            yield kind_of[name], makers[name]()

    return batch_requests(events_in_order(), batch), counts


async def encode_ahead(requests: Sequence[Request]) -> list[OutRecord]:
    """The records the gateway would publish for ``requests`` (system source, default local secret)."""
    capture = _Capture()
    settings = Settings(topic_prefix="", person_key_secret=None, gateway_rebuild_dedup=False)
    ingestor = Ingestor(settings, capture, codec())
    source = Source(id="bench-system", kind="system", binds="")
    for req in requests:
        values = orjson.loads(req.body)
        items = [Item(value=v, raw=orjson.dumps(v), label=f"[{i}]") for i, v in enumerate(values)]
        outcome = await ingestor.ingest(source, req.kind, items, content_type="application/json")
        if outcome.rejections or outcome.duplicates:
            first = outcome.rejections[0].as_dicts() if outcome.rejections else []
            raise SystemExit(
                f"the generated workload does not pass validation ({len(outcome.rejections)} rejected, "
                f"{outcome.duplicates} duplicates in a {req.kind} batch): {first[:3]}"
            )
    return capture.records


def build_workload(events: int, batch: int) -> Workload:
    requests, counts = generate(events, batch)
    records = asyncio.run(encode_ahead(requests))
    return Workload(
        requests=requests,
        records=records,
        events=sum(r.events for r in requests),
        by_sample=counts,
        json_bytes=sum(len(r.body) for r in requests),
        avro_bytes=sum(len(r.value) for r in records),
    )


# ---------------------------------------------------------------- broker helpers


def platform_topics(prefix: str) -> list[str]:
    return [f"{prefix}{spec.name}" for spec in TOPICS]


def counted_topics(prefix: str) -> list[str]:
    """The topics ingestion writes to: one per ingested kind, and the dead letters."""
    return [f"{prefix}{t}" for t in (*dict.fromkeys(TOPIC_OF_KIND.values()), topics.DEAD_LETTERS)]


def count_records(bootstrap: str, names: Sequence[str], timeout: float = 60.0) -> dict[str, int]:
    """Records per topic, from the high watermark of a Fetch response (``consumer.highwater``).

    Tansu's ListOffsets(LATEST) is the base offset of the last batch + 1, so ``end_offsets()`` is
    only used to seek into the last batch; the fetch from there reports the true high watermark.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        allow_auto_create_topics=False,
        client_id="pora-bench-count",
    )
    try:
        tps: list[TopicPartition] = []
        for name in names:
            parts = consumer.partitions_for_topic(name)
            if not parts:
                raise LookupError(f"topic {name!r} does not exist on {bootstrap}")
            tps += [TopicPartition(name, p) for p in sorted(parts)]
        consumer.assign(tps)
        low_ends: dict[TopicPartition, int] = consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(low_ends[tp] - 1, 0))
        deadline = time.monotonic() + timeout
        while any(consumer.highwater(tp) is None for tp in tps):
            if time.monotonic() >= deadline:
                missing = [f"{tp.topic}[{tp.partition}]" for tp in tps if consumer.highwater(tp) is None]
                raise TimeoutError(f"no high watermark within {timeout:g}s for {missing}")
            consumer.poll(timeout_ms=200, max_records=10_000)
        counts = dict.fromkeys(names, 0)
        for tp in tps:
            counts[tp.topic] += int(consumer.highwater(tp))
        return counts
    finally:
        consumer.close()


def drop_topics(bootstrap: str, names: Sequence[str]) -> None:
    """Best effort: free the broker's memory between runs (data is not needed once counted)."""
    with contextlib.suppress(Exception):
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="pora-bench-admin")
        try:
            admin.delete_topics(list(names), timeout_ms=30_000)
        finally:
            admin.close()


# ---------------------------------------------------------------- the gateway, as a subprocess


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def running_gateway(
    bootstrap: str, prefix: str, keys_file: Path, work_dir: Path, max_batch: int, timeout: float = 60.0
) -> Iterator[GatewayProcess]:
    """``pora gateway`` in a subprocess on a free port; stopped by its pid on exit."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORA_")}
    env.update(
        {
            "PORA_MODE": "local",
            "PORA_KAFKA_BOOTSTRAP": bootstrap,
            "PORA_TOPIC_PREFIX": prefix,
            "PORA_STATE_DIR": str(work_dir),
            "PORA_GATEWAY_HOST": "127.0.0.1",
            "PORA_GATEWAY_PORT": str(port),
            "PORA_GATEWAY_KEYS_FILE": str(keys_file),
            "PORA_GATEWAY_REBUILD_DEDUP": "false",
            "PORA_GATEWAY_TICK_SECONDS": "0",  # ticks would be counted as records; they cost ~30 records/s
            "PORA_GATEWAY_MAX_BATCH": str(max(max_batch, 5000)),
        }
    )
    log_path = work_dir / f"gateway-{prefix.rstrip('.')}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "gateway"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    gw = GatewayProcess(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + timeout
        while not _ready(gw.url):
            if proc.poll() is not None:
                raise RuntimeError(f"the gateway exited with status {proc.returncode} at start:\n{gw.tail()}")
            if time.monotonic() >= deadline:
                raise RuntimeError(f"the gateway was not ready within {timeout:g}s:\n{gw.tail()}")
            time.sleep(0.1)
        yield gw
    finally:
        stop_process(proc.pid)
        proc.poll()


# ---------------------------------------------------------------- runs


@dataclass
class GatewayResult:
    prefix: str
    events: int
    requests: int
    seconds: float
    events_per_s: float
    accepted: int
    duplicates: int
    failures: list[str]
    records_on_topics: dict[str, int]
    counts_ok: bool
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    gateway_cpu_s: float
    gateway_cpu_s_per_10k: float
    gateway_cpu_share: float  # CPU seconds per wall second (1.0 = one core busy)
    gateway_rss_mb_start: float
    gateway_rss_mb_end: float
    gateway_rss_mb_peak: float
    client_cpu_s_per_10k: float


@dataclass
class RawResult:
    prefix: str
    events: int
    seconds: float
    events_per_s: float
    failures: list[str]
    records_on_topics: dict[str, int]
    counts_ok: bool
    producer_cpu_s_per_10k: float


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


@dataclass
class _PostStats:
    latencies: list[float] = field(default_factory=list)
    accepted: int = 0
    duplicates: int = 0
    failures: list[str] = field(default_factory=list)


async def post_all(url: str, api_key: str, requests: Sequence[Request], concurrency: int) -> tuple[_PostStats, float]:
    """Post every request with ``concurrency`` in flight; returns the stats and the seconds taken."""
    stats = _PostStats(latencies=[0.0] * len(requests))
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        order = iter(range(len(requests)))

        async def worker() -> None:
            for i in order:  # one shared iterator: each worker takes the next request
                req = requests[i]
                t0 = time.perf_counter()
                try:
                    async with session.post(url + req.path, data=req.body, headers=headers) as resp:
                        status, body = resp.status, await resp.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    stats.failures.append(f"request {i} ({req.kind}): {exc!r}")
                    continue
                stats.latencies[i] = time.perf_counter() - t0
                if status != 200:
                    stats.failures.append(f"request {i} ({req.kind}): HTTP {status} {body[:300]!r}")
                    continue
                answer = orjson.loads(body)
                stats.accepted += int(answer.get("accepted", 0))
                stats.duplicates += int(answer.get("duplicates", 0))
                if answer.get("accepted") != req.events:
                    got = answer.get("accepted")
                    stats.failures.append(f"request {i} ({req.kind}): accepted {got} of {req.events}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return stats, elapsed


def gateway_run(
    bootstrap: str, workload: Workload, prefix: str, api_key: str, keys_file: Path, work_dir: Path, args: Namespace
) -> GatewayResult:
    create_topics(bootstrap, platform_topics(prefix), PARTITIONS, 1)
    with running_gateway(bootstrap, prefix, keys_file, work_dir, args.batch) as gw:
        before = proc_sample(gw.proc.pid)
        client_cpu0 = time.process_time()
        stats, seconds = asyncio.run(post_all(gw.url, api_key, workload.requests, args.concurrency))
        client_cpu = time.process_time() - client_cpu0
        after = proc_sample(gw.proc.pid)
        if gw.proc.poll() is not None:
            stats.failures.append(f"the gateway exited with status {gw.proc.returncode}:\n{gw.tail()}")
    counts = count_records(bootstrap, counted_topics(prefix))
    dead = counts[f"{prefix}{topics.DEAD_LETTERS}"]
    counts_ok = sum(counts.values()) - dead == workload.events and dead == 0
    ok_latencies = [s * 1000 for s in stats.latencies if s > 0]
    cpu = after.cpu_s - before.cpu_s
    return GatewayResult(
        prefix=prefix,
        events=workload.events,
        requests=len(workload.requests),
        seconds=seconds,
        events_per_s=workload.events / seconds,
        accepted=stats.accepted,
        duplicates=stats.duplicates,
        failures=stats.failures,
        records_on_topics=counts,
        counts_ok=counts_ok,
        latency_p50_ms=percentile(ok_latencies, 50),
        latency_p99_ms=percentile(ok_latencies, 99),
        latency_max_ms=max(ok_latencies, default=float("nan")),
        gateway_cpu_s=cpu,
        gateway_cpu_s_per_10k=cpu / workload.events * 10_000,
        gateway_cpu_share=cpu / seconds,
        gateway_rss_mb_start=before.rss_mb,
        gateway_rss_mb_end=after.rss_mb,
        gateway_rss_mb_peak=after.hwm_mb,
        client_cpu_s_per_10k=client_cpu / workload.events * 10_000,
    )


async def _send_raw(bootstrap: str, records: Sequence[OutRecord], prefix: str) -> tuple[list[str], float, float]:
    producer = AIOKafkaProducer(  # the gateway publisher's settings
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        max_batch_size=512 * 1024,
        max_request_size=8 * 1024 * 1024,
        request_timeout_ms=30_000,
        client_id="pora-bench-raw",
    )
    await producer.start()
    try:
        names = {r.topic: prefix + r.topic for r in records}
        for name in set(names.values()):
            await producer.partitions_for(name)  # metadata before the clock starts
        cpu0 = time.process_time()
        started = time.perf_counter()
        futures = [await producer.send(names[r.topic], r.value, key=r.key, headers=list(r.headers)) for r in records]
        results = await asyncio.gather(*futures, return_exceptions=True)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu0
    finally:
        await producer.stop()
    failures = [f"record {i}: {res!r}" for i, res in enumerate(results) if isinstance(res, BaseException)]
    return failures, elapsed, cpu


def raw_run(bootstrap: str, workload: Workload, prefix: str) -> RawResult:
    create_topics(bootstrap, platform_topics(prefix), PARTITIONS, 1)
    failures, seconds, cpu = asyncio.run(_send_raw(bootstrap, workload.records, prefix))
    counts = count_records(bootstrap, counted_topics(prefix))
    return RawResult(
        prefix=prefix,
        events=workload.events,
        seconds=seconds,
        events_per_s=workload.events / seconds,
        failures=failures[:20],
        records_on_topics=counts,
        counts_ok=sum(counts.values()) == workload.events,
        producer_cpu_s_per_10k=cpu / workload.events * 10_000,
    )


# ---------------------------------------------------------------- report


@dataclass
class RunFigures:
    run: int
    gateway_events_per_s: float
    raw_events_per_s: float
    ratio: float
    gateway_cpu_s_per_10k: float
    raw_cpu_s_per_10k: float
    latency_p50_ms: float
    latency_p99_ms: float
    gateway_rss_mb_start: float
    gateway_rss_mb_end: float


COLUMNS: tuple[tuple[str, str, str], ...] = (  # header, field, format
    ("gateway ev/s", "gateway_events_per_s", "{:,.0f}"),
    ("raw ev/s", "raw_events_per_s", "{:,.0f}"),
    ("ratio", "ratio", "{:.3f}"),
    ("gw CPU s/10k", "gateway_cpu_s_per_10k", "{:.3f}"),
    ("raw CPU s/10k", "raw_cpu_s_per_10k", "{:.3f}"),
    ("p50 ms", "latency_p50_ms", "{:.1f}"),
    ("p99 ms", "latency_p99_ms", "{:.1f}"),
    ("RSS MB start", "gateway_rss_mb_start", "{:.0f}"),
    ("RSS MB end", "gateway_rss_mb_end", "{:.0f}"),
)


def table(rows: Sequence[RunFigures], median: dict[str, float]) -> str:
    header = ["run", *(h for h, _, _ in COLUMNS)]
    body = [[str(r.run), *(fmt.format(getattr(r, f)) for _, f, fmt in COLUMNS)] for r in rows]
    body.append(["median", *(fmt.format(median[f]) for _, f, fmt in COLUMNS)])
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(b) for b in body)])


def parse_args(argv: Sequence[str] | None = None) -> Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_gateway", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per run (default 200000)")
    parser.add_argument("--batch", type=int, default=1000, help="events per request (default 1000)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    parser.add_argument("--runs", type=int, default=3, help="raw/gateway pairs (default 3)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/gateway.json"), help="JSON results file")
    args = parser.parse_args(argv, namespace=Namespace())
    for name in ("events", "batch", "concurrency", "runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


class Namespace(argparse.Namespace):
    events: int
    batch: int
    concurrency: int
    runs: int
    out: Path


def code_version() -> dict[str, Any]:
    """The commit measured, and whether the working tree differed from it (figures move with the code)."""

    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], capture_output=True, text=True, timeout=10, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def say(text: str = "") -> None:
    print(text, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_at_start = os.getloadavg()[0]
    say(
        f"gateway bench: {args.events:,} events/run, batches of {args.batch}, {args.concurrency} in flight, "
        f"{args.runs} run(s); {os.cpu_count()} CPUs, load {load_at_start:.2f}"
    )

    t0 = time.perf_counter()
    workload = build_workload(args.events, args.batch)
    mix = ", ".join(f"{n} {c:,}" for n, c in workload.by_sample.items())
    say(
        f"workload: {workload.events:,} events in {len(workload.requests)} requests ({mix}); "
        f"JSON {workload.json_bytes / workload.events:.0f} B/event, Avro {workload.avro_bytes / workload.events:.0f} "
        f"B/event; prepared in {time.perf_counter() - t0:.1f}s"
    )

    run_id = uuid.uuid4().hex[:8]
    gateway_results: list[GatewayResult] = []
    raw_results: list[RawResult] = []
    rows: list[RunFigures] = []
    with tempfile.TemporaryDirectory(prefix="pora-bench-") as tmp, running_broker() as bootstrap:
        work_dir = Path(tmp)
        keys_file = work_dir / "keys.toml"
        api_key = new_key()
        keys_file.write_text(key_entry("bench-system", "system", "", api_key))
        say(f"broker: {bootstrap}")
        for run in range(1, args.runs + 1):
            raw_prefix, gw_prefix = f"bench-{run_id}-{run}-raw.", f"bench-{run_id}-{run}-gw."
            raw = raw_run(bootstrap, workload, raw_prefix)
            raw_results.append(raw)
            say(
                f"run {run} raw:     {raw.events_per_s:>9,.0f} events/s in {raw.seconds:.2f}s; records "
                f"{sum(raw.records_on_topics.values()):,}/{workload.events:,} {'ok' if raw.counts_ok else 'MISMATCH'}"
                + (f"; {len(raw.failures)} failed" if raw.failures else "")
            )
            drop_topics(bootstrap, platform_topics(raw_prefix))
            gw = gateway_run(bootstrap, workload, gw_prefix, api_key, keys_file, work_dir, args)
            gateway_results.append(gw)
            say(
                f"run {run} gateway: {gw.events_per_s:>9,.0f} events/s in {gw.seconds:.2f}s; records "
                f"{sum(gw.records_on_topics.values()):,}/{workload.events:,} {'ok' if gw.counts_ok else 'MISMATCH'}; "
                f"accepted {gw.accepted:,}, duplicates {gw.duplicates}; gateway CPU {gw.gateway_cpu_share:.2f} cores, "
                f"client CPU {gw.client_cpu_s_per_10k:.3f} s/10k"
            )
            for failure in gw.failures[:5]:
                say(f"    failure: {failure}")
            drop_topics(bootstrap, platform_topics(gw_prefix))
            rows.append(
                RunFigures(
                    run=run,
                    gateway_events_per_s=gw.events_per_s,
                    raw_events_per_s=raw.events_per_s,
                    ratio=gw.events_per_s / raw.events_per_s,
                    gateway_cpu_s_per_10k=gw.gateway_cpu_s_per_10k,
                    raw_cpu_s_per_10k=raw.producer_cpu_s_per_10k,
                    latency_p50_ms=gw.latency_p50_ms,
                    latency_p99_ms=gw.latency_p99_ms,
                    gateway_rss_mb_start=gw.gateway_rss_mb_start,
                    gateway_rss_mb_end=gw.gateway_rss_mb_end,
                )
            )

    median = {f: statistics.median(getattr(r, f) for r in rows) for _, f, _ in COLUMNS}
    median["ratio"] = statistics.median(r.ratio for r in rows)
    targets = {
        "gateway_events_per_s": {
            "target": TARGET_EVENTS_PER_S,
            "median": median["gateway_events_per_s"],
            "pass": median["gateway_events_per_s"] >= TARGET_EVENTS_PER_S,
        },
        "ratio": {"target": TARGET_RATIO, "median": median["ratio"], "pass": median["ratio"] >= TARGET_RATIO},
    }
    ok = all(g.counts_ok and not g.failures and g.duplicates == 0 for g in gateway_results) and all(
        r.counts_ok and not r.failures for r in raw_results
    )

    say()
    say(table(rows, median))
    say()
    shown = (("gateway_events_per_s", "gateway events/s", "{:,.0f}"), ("ratio", "gateway/raw", "{:.2f}"))
    for name, label, fmt in shown:
        t = targets[name]
        say(
            f"target {label} >= {fmt.format(t['target'])}: median {fmt.format(t['median'])}  "
            f"{'PASS' if t['pass'] else 'MISS'}"
        )
    say("(targets are informational; the machine is shared and noisy)")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "bench": "gateway",
        "at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "config": {
            "events": args.events,
            "batch": args.batch,
            "concurrency": args.concurrency,
            "runs": args.runs,
            "partitions": PARTITIONS,
            "mix": {n: w for n, _, w in MIX},
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": sys.platform,
            "load_1min_at_start": load_at_start,
        },
        "code": code_version(),
        "workload": {
            "events": workload.events,
            "requests": len(workload.requests),
            "by_sample": workload.by_sample,
            "json_bytes_per_event": workload.json_bytes / workload.events,
            "avro_bytes_per_event": workload.avro_bytes / workload.events,
        },
        "runs": [
            {"figures": asdict(r), "gateway": asdict(g), "raw": asdict(w)}
            for r, g, w in zip(rows, gateway_results, raw_results, strict=True)
        ],
        "median": median,
        "targets": targets,
        "ok": ok,
    }
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    say(f"results written to {args.out}")
    if not ok:
        say("FAILED: a request failed or the record counts do not match the events sent")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
