"""Sink benchmark: rows/s from Kafka into ClickHouse, against a raw clickhouse-driver insert.

Run with ``python -m tests.bench.bench_sink`` (``make bench-sink``). One process, one Tansu broker
(``running_broker()``), one ClickHouse 18.16 server of our own (:mod:`connectors.sink.localserver`,
data in a temporary directory) and chdb in that directory:

1. **Workload.** A simulation (:mod:`connectors.simulator`, ``--days`` x ``--travellers``) goes
   through the gateway's :class:`~connectors.gateway.ingest.Ingestor` (validated, pseudonymised,
   Avro-encoded, as ``bench_gateway`` encodes ahead), then is copied with suffixed event ids until
   it holds ``--rows`` records: the simulator's mix of kinds. The records are sent onto fresh topics
   (``--partitions`` each) with a pipelined aiokafka producer and counted (Fetch high watermark)
   before any timing. They are also decoded once into table rows, in topic order, for the paths
   that start from rows.
2. **Paths**, each into a fresh migrated database, all of them once per ``--runs``:

   - *raw*: ``clickhouse_driver.Client.execute("INSERT INTO db.t (...) VALUES", rows)``, the rows cut
     into batches of ``--batch`` rows, each batch one insert per table: the baseline;
   - *write stage, server*: the same batches through ``ServerStore.insert`` (what the sink calls);
   - *write stage, chdb*: the same batches through ``ChdbStore.insert`` (JSONCompactEachRow);
   - *read + decode*: the :class:`~connectors.sink.sink.Sink` with a store that drops the rows
     (Kafka → rows, no ClickHouse), for where the end-to-end time goes;
   - *end to end*: the Sink, Kafka → the server, ``sink_batch_rows = --batch``, on a new consumer
     group; timed from its partition assignment (the group join, half Tansu's session timeout, is
     not counted) to the return of its last flush (rows inserted, offsets committed).

   Every database is counted afterwards (``FINAL`` for the sink's): each must hold ``--rows`` rows.
3. **Targets** (informational): end to end >= 100,000 rows/s into the server, and >= 0.5 of the raw
   insert measured in the same run. The exit status is non-zero only when a count is off.

Results go to ``bench-results/sink.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from connectors.gateway.publisher import OutRecord
from connectors.simulator import simulate
from connectors.sink.localserver import ClickHouseServer
from connectors.sink.migrate import migrate
from connectors.sink.sink import TABLES_BY_NAME, Sink, _Revoked
from connectors.sink.store import ChdbStore, Result, Row, ServerStore, Store
from connectors.sink.tables import SINK_TOPICS
from schemas.codec import codec
from streams.localstack import create_topics, running_broker
from streams.settings import Settings
from tests.bench.bench_gateway import code_version, count_records, encode_ahead, say
from tests.bench.common import Request, table_rows

TARGET_ROWS_PER_S = 100_000
TARGET_RATIO = 0.5
SIM_START = date(2025, 1, 1)
PATHS: tuple[tuple[str, str], ...] = (  # key, label
    ("raw", "raw clickhouse-driver INSERT (server)"),
    ("write_server", "write stage: ServerStore.insert"),
    ("write_chdb", "write stage: ChdbStore.insert (chdb)"),
    ("read_decode", "sink read + decode, no ClickHouse"),
    ("end_to_end", "sink end to end: Kafka -> server"),
)


# ---------------------------------------------------------------- workload


@dataclass
class Workload:
    records: list[OutRecord]  # topics without a prefix
    rows: list[tuple[str, Row]]  # (table, row), in topic order
    by_table: dict[str, int]
    base_events: int
    avro_bytes: int


def build_workload(rows: int, days: int, travellers: int, seed: int) -> Workload:
    sim = simulate(days, travellers, seed, SIM_START)
    requests: list[Request] = []
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for line in sim.events:
        by_kind.setdefault(line["kind"], []).append(line["event"])
    for kind, events in by_kind.items():
        for i in range(0, len(events), 1000):
            chunk = events[i : i + 1000]
            requests.append(Request(kind, "", orjson.dumps(chunk), len(chunk)))
    base = asyncio.run(encode_ahead(requests))
    c = codec()
    decoded = [c.decode(r.value) for r in base]
    records: list[OutRecord] = []
    copy = 0
    while len(records) < rows:
        for r, (kind, record) in zip(base, decoded, strict=True):
            if len(records) == rows:
                break
            if copy:
                r = r._replace(value=c.encode(kind, {**record, "event_id": f"{record['event_id']}~{copy}"}))
            records.append(r)
        copy += 1
    out_rows = table_rows(records)
    by_table = dict.fromkeys(TABLES_BY_NAME, 0)
    for table, _ in out_rows:
        by_table[table] += 1
    return Workload(records, out_rows, by_table, len(base), sum(len(r.value) for r in records))


def batches(rows: Sequence[tuple[str, Row]], size: int) -> list[dict[str, list[Row]]]:
    """The rows cut as the sink cuts them: ``size`` rows a batch, one insert per table in it."""
    out = []
    for i in range(0, len(rows), size):
        per_table: dict[str, list[Row]] = {}
        for table, row in rows[i : i + size]:
            per_table.setdefault(table, []).append(row)
        out.append(per_table)
    return out


async def send(bootstrap: str, records: Sequence[OutRecord], prefix: str) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        max_batch_size=512 * 1024,
        max_request_size=8 * 1024 * 1024,
        client_id="pora-bench-sink-load",
    )
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(prefix + r.topic, r.value, key=r.key, headers=list(r.headers)) for r in records]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


# ---------------------------------------------------------------- the paths


@dataclass
class PathRun:
    path: str
    run: int
    rows: int  # rows the path wrote (or, for read + decode, produced)
    seconds: float
    rows_per_s: float
    cpu_s_per_100k: float  # this process's CPU (the server's is apart)
    counted: int | None  # rows in the database afterwards (FINAL for the sink's)
    counts_ok: bool
    batches: int


class NullStore:
    """Takes every insert and keeps nothing: the sink without ClickHouse."""

    database = "null"
    target = "null://"

    def execute(self, sql: str) -> None:
        return None

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        return None

    def query(self, sql: str) -> Result:
        return Result((), [])

    def close(self) -> None:
        return None


def fresh_database(tag: str) -> str:
    return f"bench_{tag}_{uuid.uuid4().hex[:8]}"


def count_rows(store: Store, final: bool = False) -> int:
    suffix = " FINAL" if final else ""
    return sum(int(store.query(f"SELECT count() FROM {store.database}.{t}{suffix}").rows[0][0]) for t in TABLES_BY_NAME)


def timed(path: str, run: int, rows: int, seconds: float, cpu: float, counted: int | None, n_batches: int) -> PathRun:
    return PathRun(
        path=path,
        run=run,
        rows=rows,
        seconds=seconds,
        rows_per_s=rows / seconds,
        cpu_s_per_100k=cpu / rows * 100_000,
        counted=counted,
        counts_ok=counted is None or counted == rows,
        batches=n_batches,
    )


def raw_insert(server: ClickHouseServer, cut: list[dict[str, list[Row]]], expected: int, run: int) -> PathRun:
    from clickhouse_driver import Client

    store = ServerStore(server.host, server.port, fresh_database("raw"))
    migrate(store)
    client = Client(host=server.host, port=server.port)
    statements = {
        t: f"INSERT INTO {store.database}.{t} ({', '.join(TABLES_BY_NAME[t].columns)}) VALUES" for t in TABLES_BY_NAME
    }
    try:
        client.execute("SELECT 1")  # connected before the clock starts, as the store is
        cpu0, started = time.process_time(), time.perf_counter()
        for batch in cut:
            for table, rows in batch.items():
                client.execute(statements[table], rows)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
        return timed("raw", run, expected, seconds, cpu, count_rows(store), len(cut))
    finally:
        client.disconnect()
        store.close()


def write_stage(path: str, store: Store, cut: list[dict[str, list[Row]]], expected: int, run: int) -> PathRun:
    migrate(store)
    try:
        cpu0, started = time.process_time(), time.perf_counter()
        for batch in cut:
            for table, rows in batch.items():
                store.insert(table, TABLES_BY_NAME[table].columns, rows)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
        return timed(path, run, expected, seconds, cpu, count_rows(store), len(cut))
    finally:
        store.close()


class _Timed(_Revoked):
    """The sink's own rebalance listener, noting when the partitions were assigned."""

    def __init__(self, sink: Sink) -> None:
        super().__init__(sink)
        self.assigned_at: float | None = None
        self.cpu_at: float = 0.0

    def on_partitions_assigned(self, assigned: Any) -> None:
        super().on_partitions_assigned(assigned)
        if assigned and self.assigned_at is None:
            self.assigned_at, self.cpu_at = time.perf_counter(), time.process_time()


def sink_run(path: str, settings: Settings, store: Store, expected: int, run: int, timeout: float) -> PathRun:
    migrate(store)
    sink = Sink(settings, store, group=f"{settings.topic_prefix}{path}-{run}-{uuid.uuid4().hex[:6]}")
    listener = _Timed(sink)
    sink.consumer.subscribe([settings.topic(t) for t in SINK_TOPICS], listener=listener)
    try:
        deadline = time.monotonic() + timeout
        while sink.stats.records < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"{path}: the sink read {sink.stats.records:,} of {expected:,} records in {timeout}s")
            sink.poll()
        sink.flush()
        ended, cpu_end = time.perf_counter(), time.process_time()
    finally:
        sink.close()
    assert listener.assigned_at is not None
    counted = None if isinstance(store, NullStore) else count_rows(store, final=True)
    store.close()
    result = timed(
        path, run, sink.stats.rows, ended - listener.assigned_at, cpu_end - listener.cpu_at, counted, sink.stats.batches
    )
    result.counts_ok = result.counts_ok and sink.stats.rows == expected
    return result


# ---------------------------------------------------------------- report


def table(results: Sequence[PathRun], median: dict[str, float], raw: float) -> str:
    runs = sorted({r.run for r in results})
    head = f"{'path':<40} " + " ".join(f"{'run ' + str(n):>10}" for n in runs) + f" {'median':>10} {'vs raw':>7}"
    head += f" {'CPU s/100k':>10}"
    lines = [head + "   (rows/s)", "-" * len(head)]
    for key, label in PATHS:
        mine = {r.run: r for r in results if r.path == key}
        if not mine:
            continue
        cells = " ".join(f"{mine[n].rows_per_s:>10,.0f}" if n in mine else f"{'':>10}" for n in runs)
        cpu = statistics.median(r.cpu_s_per_100k for r in mine.values())
        lines.append(f"{label:<40} {cells} {median[key]:>10,.0f} {median[key] / raw:>7.2f} {cpu:>10.2f}")
    return "\n".join(lines)


class Namespace(argparse.Namespace):
    rows: int
    batch: int
    runs: int
    partitions: int
    days: int
    travellers: int
    seed: int
    timeout: float
    out: Path


def parse_args(argv: Sequence[str] | None = None) -> Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_sink", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows per path and run (default 200000)")
    parser.add_argument("--batch", type=int, default=50_000, help="rows per batch, as sink_batch_rows (50000)")
    parser.add_argument("--runs", type=int, default=3, help="rounds over every path (default 3)")
    parser.add_argument("--partitions", type=int, default=6, help="partitions per topic (default 6)")
    parser.add_argument("--days", type=int, default=90, help="simulated days of the base workload (default 90)")
    parser.add_argument("--travellers", type=int, default=4_000, help="simulated travellers (default 4000)")
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    parser.add_argument("--timeout", type=float, default=600.0, help="longest a sink run may take (600 s)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/sink.json"), help="JSON results file")
    args = parser.parse_args(argv, namespace=Namespace())
    for name in ("rows", "batch", "runs", "partitions", "days", "travellers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_at_start = os.getloadavg()[0]
    say(
        f"sink bench: {args.rows:,} rows per path, batches of {args.batch:,}, {args.runs} run(s), "
        f"{args.partitions} partitions; {os.cpu_count()} CPUs, load {load_at_start:.2f}"
    )
    t0 = time.perf_counter()
    workload = build_workload(args.rows, args.days, args.travellers, args.seed)
    mix = ", ".join(f"{t} {n:,}" for t, n in workload.by_table.items() if n)
    say(
        f"workload: {len(workload.records):,} records ({mix}); simulation of {workload.base_events:,} events, copied; "
        f"Avro {workload.avro_bytes / len(workload.records):.0f} B/record; prepared in {time.perf_counter() - t0:.1f}s"
    )
    cut = batches(workload.rows, args.batch)
    expected = len(workload.rows)
    results: list[PathRun] = []
    run_id = uuid.uuid4().hex[:6]
    prefix = f"bs-{run_id}."
    with (
        tempfile.TemporaryDirectory(prefix="pora-bench-sink-") as tmp,
        running_broker() as bootstrap,
        ClickHouseServer(Path(tmp) / "clickhouse") as server,
    ):
        probe = ServerStore(server.host, server.port, "default")
        server_version = str(probe.query("SELECT version()").rows[0][0])
        probe.close()
        say(
            f"broker: {bootstrap}; ClickHouse {server_version} server: {server.url} (pid {server.pid}); "
            f"chdb: {tmp}/chdb"
        )
        topic_names = [prefix + t for t in SINK_TOPICS]
        create_topics(bootstrap, topic_names, args.partitions, 1)
        sent_s = asyncio.run(send(bootstrap, workload.records, prefix))
        on_topics = sum(count_records(bootstrap, topic_names).values())
        say(f"loaded {on_topics:,} records onto {prefix}* in {sent_s:.1f}s")
        if on_topics != expected:
            raise SystemExit(f"{on_topics:,} records on the topics, {expected:,} sent")
        settings = Settings(
            kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=args.partitions, sink_batch_rows=args.batch
        )

        def server_store(tag: str) -> ServerStore:
            return ServerStore(server.host, server.port, fresh_database(tag))

        for run in range(1, args.runs + 1):
            for key, label in PATHS:
                if key == "raw":
                    r = raw_insert(server, cut, expected, run)
                elif key == "write_server":
                    r = write_stage(key, server_store("write"), cut, expected, run)
                elif key == "write_chdb":
                    r = write_stage(key, ChdbStore(Path(tmp) / "chdb", fresh_database("chdb")), cut, expected, run)
                elif key == "read_decode":
                    r = sink_run(key, settings, NullStore(), expected, run, args.timeout)
                else:
                    r = sink_run(key, settings, server_store("sink"), expected, run, args.timeout)
                results.append(r)
                say(
                    f"run {run} {label:<40} {r.rows_per_s:>9,.0f} rows/s in {r.seconds:.2f}s, {r.batches} batches; "
                    + ("" if r.counted is None else f"counted {r.counted:,} ")
                    + ("ok" if r.counts_ok else "MISMATCH")
                )

    median = {key: statistics.median(r.rows_per_s for r in results if r.path == key) for key, _ in PATHS}
    raw = median["raw"]
    ratios = {key: median[key] / raw for key, _ in PATHS}
    targets = {
        "end_to_end_rows_per_s": {
            "target": TARGET_ROWS_PER_S,
            "median": median["end_to_end"],
            "met": median["end_to_end"] >= TARGET_ROWS_PER_S,
        },
        "end_to_end_vs_raw": {
            "target": TARGET_RATIO,
            "median": ratios["end_to_end"],
            "met": ratios["end_to_end"] >= TARGET_RATIO,
        },
    }
    ok = all(r.counts_ok for r in results)
    say()
    say(table(results, median, raw))
    say()
    say(
        f"target end to end >= {TARGET_ROWS_PER_S:,} rows/s: median {median['end_to_end']:,.0f}  "
        f"{'met' if targets['end_to_end_rows_per_s']['met'] else 'MISSED'}"
    )
    say(
        f"target end to end >= {TARGET_RATIO} x raw insert: median {ratios['end_to_end']:.2f}  "
        f"{'met' if targets['end_to_end_vs_raw']['met'] else 'MISSED'}"
    )
    say("(targets are informational; the machine is shared and noisy)")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "bench": "sink",
        "at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": sys.platform,
            "load_1min_at_start": load_at_start,
            "clickhouse_server": server_version,
        },
        "code": code_version(),
        "workload": {
            "rows": expected,
            "by_table": workload.by_table,
            "simulated_events": workload.base_events,
            "avro_bytes_per_record": workload.avro_bytes / expected,
        },
        "runs": [asdict(r) for r in results],
        "median_rows_per_s": median,
        "ratio_to_raw": ratios,
        "targets": targets,
        "ok": ok,
    }
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    say(f"results written to {args.out}")
    if not ok:
        say("FAILED: a database does not hold the rows written to it")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
