"""The ClickHouse sink on the real broker, against the real server (18.16) and embedded chdb.

A simulation (plus sponsor and agency reports, alerts and triage actions) is replayed onto fresh
topics, then the sink writes it: every table holds one row per record of its topic (read with
FINAL, as pora reads), no names, document numbers or dates of birth; a redelivered or re-read
batch collapses; an outage of the server loses and doubles nothing and commits nothing unwritten;
an undecodable record goes to the dead letters; migrations run once.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from conftest import make_topics
from kafka import KafkaAdminClient, KafkaProducer

from connectors.replay import replay
from connectors.samples import SampleFactory
from connectors.simulator import write_simulation
from connectors.sink.localserver import ClickHouseServer
from connectors.sink.migrate import migrate
from connectors.sink.sink import TABLES_BY_NAME, Sink
from connectors.sink.store import Row, Store
from connectors.sink.tables import SINK_TOPICS, TABLES
from schemas.codec import codec
from streams import topics
from streams.cli import main as pora
from streams.reading import Read, read_topic
from streams.settings import Settings

SIM_START = date(2026, 3, 2)
DEADLINE_S = 60.0  # a failure guard only: every wait below ends as soon as its condition holds


@pytest.fixture(params=["server", "chdb"])
def store(request: pytest.FixtureRequest) -> Store:
    """The test's own (migrated) database, on the session's server or in chdb."""
    s: Store = request.getfixturevalue("server_store" if request.param == "server" else "chdb_store")
    migrate(s)
    return s


def sink_settings(bootstrap: str, prefix: str, **overrides: Any) -> Settings:
    return Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=3, **overrides)


# ---------------------------------------------------------------- what goes onto the topics


def _iso(day: date, hour: int) -> str:
    return f"{day.isoformat()}T{hour:02d}:00:00+07:00"


def _ms(day: date, hour: int) -> int:
    return int(datetime.fromisoformat(_iso(day, hour)).timestamp() * 1000)


def reports(n: int = 3, seed: int = 5) -> list[dict[str, Any]]:
    """Replay lines the simulation at this size has none of: sponsor and agency reports."""
    f = SampleFactory(seed=seed, today=SIM_START + timedelta(days=10))
    lines = []
    for _ in range(n):
        for kind, event in (("sponsor_report", f.sponsor_report(roster=2)), ("agency_report", f.agency_report())):
            event["reported_at"] = event["occurred_at"]
            lines.append({"kind": kind, "event": event})
    return lines


def alert_records(person_keys: Sequence[str], n: int = 12) -> list[tuple[str, dict[str, Any]]]:
    """Alerts (raised, some amended) and triage actions, as the detectors and the feed write them."""
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        day = SIM_START + timedelta(days=i % 15)
        alert_id = f"alr-{i // 2:04d}"
        out.append(
            (
                "alert",
                {
                    "event_id": f"{alert_id}-{i % 2}",
                    "occurred_at": _ms(day, 12),
                    "reported_at": _ms(day, 12) + 500,
                    "alert_id": alert_id,
                    "rule_id": "overstay",
                    "rule_version": "test-1",
                    "status": "AMENDED" if i % 2 else "RAISED",
                    "severity": "HIGH",
                    "office": "KANIM-BATAM",
                    "subject": {"person_key": person_keys[i % len(person_keys)]},
                    "window_start": _ms(day, 0),
                    "window_end": _ms(day + timedelta(days=1), 0),
                    "evidence": [{"name": "days_over", "value": str(i + 1), "event_id": f"ev-{i}", "weight": None}],
                    "reasons": [f"stayed {i + 1} day(s) past the permit"],
                },
            )
        )
        if i % 3 == 0:
            out.append(
                (
                    "alert_action",
                    {
                        "event_id": f"act-{i:04d}",
                        "occurred_at": _ms(day, 14),
                        "reported_at": _ms(day, 14),
                        "alert_id": alert_id,
                        "rule_id": "overstay",
                        "office": "KANIM-BATAM",
                        "action": "ACKNOWLEDGE",
                        "actor": "officer-7",
                        "actor_role": "supervisor",
                    },
                )
            )
    return out


TOPIC_OF = {spec.schema: spec.name for spec in topics.PUBLIC}


def produce(settings: Settings, records: Iterable[tuple[str, dict[str, Any]]]) -> None:
    c = codec()
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    try:
        for kind, record in records:
            producer.send(settings.topic(TOPIC_OF[kind]), key=record["event_id"].encode(), value=c.encode(kind, record))
        producer.flush(30)
    finally:
        producer.close()


@dataclass
class Loaded:
    raw_events: list[dict[str, Any]]  # the replayed events as sources sent them (names and all)
    lines: list[bytes]  # the replay file, for tests that send it in parts


def simulation(tmp_path: Path, days: int = 20, travellers: int = 100, seed: int = 3) -> Loaded:
    events, truth = tmp_path / "events.jsonl", tmp_path / "truth.jsonl"
    write_simulation(days, travellers, seed, SIM_START, events, truth)
    lines = events.read_bytes().splitlines(keepends=True)
    tick = lines.pop()  # the closing clock tick stays last
    lines += [orjson.dumps(line) + b"\n" for line in reports()] + [tick]
    raw = [orjson.loads(line)["event"] for line in lines if b'"event"' in line]
    return Loaded(raw, lines)


def replay_lines(settings: Settings, lines: Sequence[bytes], path: Path) -> None:
    path.write_bytes(b"".join(lines))
    stats = asyncio.run(replay(settings, path))
    assert stats.rejected == 0, stats.rejected_lines[:5]


def load(settings: Settings, tmp_path: Path) -> Loaded:
    """The simulation and the reports through the replay (the gateway's path), then alerts."""
    loaded = simulation(tmp_path)
    replay_lines(settings, loaded.lines, tmp_path / "replay.jsonl")
    produce(settings, alert_records(person_keys(settings)))
    return loaded


def person_keys(settings: Settings) -> list[str]:
    found = read_topic(settings.kafka_bootstrap, settings.topic(topics.BORDER_CROSSINGS))
    return sorted({r.record["traveller"]["person_key"] for r in found if r.record is not None})[:6]


# ---------------------------------------------------------------- what is on the topics, what landed


@dataclass
class OnTopics:
    records: int  # clock ticks included: what the sink reads
    by_table: dict[str, int]  # decoded records per table (ticks excluded)
    event_ids: dict[str, set[str]] = field(default_factory=dict)
    undecodable: list[Read] = field(default_factory=list)


def on_topics(settings: Settings) -> OnTopics:
    got = OnTopics(0, dict.fromkeys(TABLES_BY_NAME, 0))
    for name in SINK_TOPICS:
        for r in read_topic(settings.kafka_bootstrap, settings.topic(name), ticks=True, timeout=30):
            got.records += 1
            if r.record is None:
                got.undecodable.append(r)
            elif r.kind != "clock_tick":
                table = TABLES[r.kind].name
                got.by_table[table] += 1
                got.event_ids.setdefault(table, set()).add(r.record["event_id"])
    return got


def counts(store: Store, final: bool = True) -> dict[str, int]:
    suffix = " FINAL" if final else ""
    return {t: int(store.query(f"SELECT count() FROM {store.database}.{t}{suffix}").rows[0][0]) for t in TABLES_BY_NAME}


def wait_for(
    condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S, step: Callable[[], Any] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        if step is not None:
            step()
        else:
            time.sleep(0.05)


def drain(settings: Settings, store: Store, records: int, *, group: str | None = None) -> Sink:
    """A sink that reads until it has seen ``records`` records, writes them and leaves."""
    sink = Sink(settings, store, group=group)
    try:
        wait_for(lambda: sink.stats.records >= records, f"the sink to read {records} records", step=sink.poll)
        sink.flush()
    finally:
        sink.close()
    return sink


def identity_pattern(raw_events: Iterable[dict[str, Any]]) -> re.Pattern[str]:
    """Names, document numbers and dates of birth of the people in the sources' events."""
    needles: set[str] = set()

    def people(value: Any) -> None:
        if isinstance(value, dict):
            if "document_number" in value:
                given, surname = value["given_names"], value["surname"]
                needles.update((value["document_number"], f"{given} {surname}", f"{surname} {given}"))
                needles.add(value["date_of_birth"])
            for v in value.values():
                people(v)
        elif isinstance(value, list):
            for v in value:
                people(v)

    for event in raw_events:
        people(event)
    assert len(needles) > 100, len(needles)
    return re.compile("|".join(re.escape(n) for n in sorted(needles, key=len, reverse=True)))


def assert_nothing_personal(store: Store, pattern: re.Pattern[str]) -> None:
    """No value of any column (array items included) holds a name, document number or birth date."""
    scanned = 0
    for table in TABLES_BY_NAME:
        result = store.query(f"SELECT * FROM {store.database}.{table}")
        for row in result.rows:
            for column, value in zip(result.columns, row, strict=True):
                for item in value if isinstance(value, list | tuple) else (value,):
                    scanned += 1
                    hit = pattern.search(str(item))
                    assert hit is None, f"{table}.{column} holds {hit.group()!r}: {item!r}"
    assert scanned > 5_000, scanned


# ---------------------------------------------------------------- the tests


def test_every_record_lands_once_without_identity_and_redelivery_collapses(
    kafka_bootstrap: str, topic_prefix: str, store: Store, tmp_path: Path
) -> None:
    make_topics(kafka_bootstrap, topic_prefix)
    settings = sink_settings(kafka_bootstrap, topic_prefix, sink_batch_rows=300)
    loaded = load(settings, tmp_path)
    expected = on_topics(settings)
    assert not expected.undecodable
    assert all(expected.by_table[t] > 0 for t in TABLES_BY_NAME if t != "dead_letters"), expected.by_table
    assert all(len(expected.event_ids.get(t, ())) == n for t, n in expected.by_table.items())  # ids are unique

    first = drain(settings, store, expected.records)
    assert first.stats.rows == sum(expected.by_table.values())
    assert first.stats.batches > 1 and first.stats.retries == 0 and first.stats.dead_letters == 0
    assert counts(store) == expected.by_table
    pattern = identity_pattern(loaded.raw_events)
    on_topic = read_topic(kafka_bootstrap, settings.topic(topics.HOTEL_GUEST_EVENTS))[0].record
    assert pattern.search(str(on_topic)), on_topic  # the topics carry them (officers read them there)
    assert_nothing_personal(store, pattern)
    person = store.query(f"SELECT person_key FROM {store.database}.hotel_guest_events LIMIT 1").rows[0][0]
    assert re.fullmatch(r"[0-9a-zA-Z_-]{16,}", person), person  # pseudonymous keys did arrive

    # everything again, as a new consumer group reads it: plain counts double, FINAL counts do not
    for table in TABLES_BY_NAME:  # keep the duplicates apart so that the plain count shows them
        store.execute(f"SYSTEM STOP MERGES {store.database}.{table}")
    again = drain(settings, store, expected.records, group=f"{topic_prefix}another-sink")
    assert again.stats.rows == first.stats.rows
    assert counts(store) == expected.by_table
    assert counts(store, final=False) == {t: 2 * n for t, n in expected.by_table.items()}


def test_a_crash_between_insert_and_commit_redelivers_without_doubling(
    kafka_bootstrap: str, topic_prefix: str, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_topics(kafka_bootstrap, topic_prefix)
    settings = sink_settings(kafka_bootstrap, topic_prefix, sink_batch_rows=200)
    load(settings, tmp_path)
    expected = on_topics(settings)

    crashed = Sink(settings, store)
    commits: list[int] = []

    def commit_fails(offsets: Any = None) -> None:
        commits.append(len(offsets or ()))
        raise ConnectionError("the sink died before its commit reached the broker")

    monkeypatch.setattr(crashed.consumer, "commit", commit_fails)
    try:
        wait_for(lambda: crashed.stats.records >= expected.records, "the first sink to read", step=crashed.poll)
        crashed.flush()
    finally:
        crashed.close()
    assert commits and crashed.stats.rows == sum(expected.by_table.values())
    assert counts(store) == expected.by_table

    restarted = drain(settings, store, expected.records)  # same group: nothing was committed
    assert restarted.stats.records == expected.records  # every record came again...
    assert restarted.stats.rows == crashed.stats.rows
    assert counts(store) == expected.by_table  # ...and collapsed
    duplicated = store.query(
        f"SELECT count() FROM (SELECT event_id FROM {store.database}.border_crossings FINAL "
        "GROUP BY event_id HAVING count() > 1)"
    ).rows[0][0]
    assert int(duplicated) == 0


class RecordingStore:
    """The real store, remembering the event ids of every insert ClickHouse acknowledged."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.database = inner.database
        self.target = inner.target
        self.acknowledged: set[str] = set()
        self.failures = 0
        self._lock = threading.Lock()

    def execute(self, sql: str) -> None:
        self.inner.execute(sql)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        try:
            self.inner.insert(table, columns, rows)
        except Exception:
            self.failures += 1
            raise
        with self._lock:
            self.acknowledged.update(r[0] for r in rows)

    def query(self, sql: str) -> Any:
        return self.inner.query(sql)

    def close(self) -> None:
        self.inner.close()

    def snapshot(self) -> set[str]:
        with self._lock:
            return set(self.acknowledged)


def committed(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="pora-test-offsets")
    try:
        got = admin.list_group_offsets({group: None})[group]
    finally:
        admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in got.items() if meta.offset >= 0}


def _samples(name: str) -> list[tuple[dict[str, str], float]]:
    """This process's samples of a metric (the sink runs in the test's process)."""
    from prometheus_client import REGISTRY

    return [(s.labels, s.value) for m in REGISTRY.collect() for s in m.samples if s.name == name]


def _sample(name: str) -> float:
    return sum(value for _, value in _samples(name))


def test_clickhouse_outage_mid_stream_loses_and_doubles_nothing(
    kafka_bootstrap: str,
    topic_prefix: str,
    clickhouse_server: ClickHouseServer,
    server_store: Store,
    tmp_path: Path,
) -> None:
    make_topics(kafka_bootstrap, topic_prefix)
    settings = sink_settings(
        kafka_bootstrap, topic_prefix, sink_batch_rows=50, sink_batch_seconds=0.1, sink_retry_max_seconds=0.5
    )
    migrate(server_store)
    store = RecordingStore(server_store)
    loaded = simulation(tmp_path)
    half = len(loaded.lines) // 2
    replay_lines(settings, loaded.lines[:half], tmp_path / "first.jsonl")
    first = on_topics(settings)

    sink = Sink(settings, store)
    group = settings.topic(settings.sink_group)  # the sink's default group
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            sink.run(stop)
        except BaseException as exc:
            failure.append(exc)

    retries_before = _sample("pora_sink_insert_retries_total")
    thread = threading.Thread(target=run, name="sink", daemon=True)
    thread.start()
    try:
        wait_for(lambda: sink.stats.rows >= 100 or bool(failure), "the sink's first batches")
        clickhouse_server.kill()  # mid-stream: the first half is still being written
        replay_lines(settings, loaded.lines[half:], tmp_path / "second.jsonl")
        produce(settings, alert_records(person_keys(settings)))
        expected = on_topics(settings)
        assert expected.records > first.records
        wait_for(lambda: sink.stats.retries >= 3 or bool(failure), "the sink to retry")
        assert not failure, failure
        assert _sample("pora_sink_insert_retries_total") - retries_before >= 3  # what the alert rule reads

        # while ClickHouse is away, every record below a committed offset is in ClickHouse
        during = committed(kafka_bootstrap, group)
        written = store.snapshot()
        for name in SINK_TOPICS:
            for r in read_topic(kafka_bootstrap, settings.topic(name)):
                assert r.record is not None
                if r.offset < during.get((settings.topic(name), r.partition), 0):
                    assert r.record["event_id"] in written, f"{name}[{r.partition}:{r.offset}] committed, not written"
        assert sum(during.values()) < expected.records, "offsets committed past what ClickHouse took"
        time.sleep(1.0)
        assert committed(kafka_bootstrap, group) == during  # and they stay there

        clickhouse_server.start()  # same port, same data
        wait_for(
            lambda: sum(committed(kafka_bootstrap, group).values()) >= expected.records or bool(failure),
            "the sink to catch up and commit everything",
            step=lambda: time.sleep(0.3),
        )
    finally:
        if not clickhouse_server.running:
            clickhouse_server.start()  # the session's server, for the tests after this one
        stop.set()
        thread.join(DEADLINE_S)
        try:
            sink.export_lag()  # caught up: every partition it holds shows no lag
            lags = {
                labels["partition"]: value
                for labels, value in _samples("pora_consumer_lag_records")
                if labels["group"] == group and labels["topic"] == topics.HOTEL_GUEST_EVENTS
            }
        finally:
            sink.close()
    assert not failure, failure
    assert lags == {str(p): 0.0 for p in range(3)}, lags
    assert _sample("pora_sink_paused") == 0.0
    assert sink.stats.retries >= 3 and store.failures >= 3
    assert counts(server_store) == expected.by_table
    for table, ids in expected.event_ids.items():
        landed = server_store.query(
            f"SELECT event_id, count() FROM {server_store.database}.{table} FINAL GROUP BY event_id"
        )
        per_id = Counter({eid: int(n) for eid, n in landed.rows})
        assert set(per_id) == ids, (
            f"{table}: lost {sorted(ids - set(per_id))[:5]}, extra {sorted(set(per_id) - ids)[:5]}"
        )
        assert max(per_id.values()) == 1, table
    assert sum(committed(kafka_bootstrap, group).values()) == expected.records


def test_an_undecodable_record_goes_to_the_dead_letters_and_the_sink_goes_on(
    kafka_bootstrap: str, topic_prefix: str, chdb_store: Store, tmp_path: Path
) -> None:
    make_topics(kafka_bootstrap, topic_prefix)
    migrate(chdb_store)
    settings = sink_settings(kafka_bootstrap, topic_prefix)
    hotel = settings.topic(topics.HOTEL_GUEST_EVENTS)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        producer.send(hotel, key=b"junk", value=b"not an avro record", partition=0).get(30)
    finally:
        producer.close()
    f = SampleFactory(seed=9, today=SIM_START)
    events = [{"kind": "hotel_guest_event", "event": {**f.hotel_check_in(), "reported_at": _iso(SIM_START, 8)}}]
    replay_lines(settings, [orjson.dumps(e) + b"\n" for e in events], tmp_path / "after.jsonl")
    expected = on_topics(settings)
    assert len(expected.undecodable) == 1 and expected.by_table["hotel_guest_events"] == 1

    # the sink's dead letter lands on the dead-letter topic, which it reads too: one record more
    sink = drain(settings, chdb_store, expected.records + 1)
    assert sink.stats.dead_letters == 1
    dead = read_topic(kafka_bootstrap, settings.topic(topics.DEAD_LETTERS))
    assert len(dead) == 1 and dead[0].record is not None
    letter = dead[0].record
    assert letter["event_id"] == f"dl-sink:{hotel}:0:0"
    assert (letter["step"], letter["reason"], letter["raw"]) == ("sink.decode", "undecodable", b"not an avro record")
    assert "C3 01" in letter["errors"][0]["problem"]
    db = chdb_store.database
    assert counts(chdb_store)["hotel_guest_events"] == 1  # the record after the bad one
    rows = chdb_store.query(f"SELECT step, reason, raw_bytes FROM {db}.dead_letters FINAL").rows
    assert [(s, r, int(n)) for s, r, n in rows] == [("sink.decode", "undecodable", len(b"not an avro record"))]


@pytest.mark.parametrize("engine", ["server", "chdb"])
def test_db_migrate_twice_applies_version_one_once(
    engine: str, request: pytest.FixtureRequest, clickhouse_database: str
) -> None:
    if engine == "server":
        server: ClickHouseServer = request.getfixturevalue("clickhouse_server")
        url = server.url
    else:
        url = f"chdb://{request.getfixturevalue('chdb_path')}"
    env = {"PORA_CLICKHOUSE_URL": url, "PORA_CLICKHOUSE_DATABASE": clickhouse_database}
    runner = CliRunner()
    once = runner.invoke(pora, ["db", "migrate"], env=env)
    assert once.exit_code == 0, once.output
    assert "applied 0001_initial" in once.output
    twice = runner.invoke(pora, ["db", "migrate"], env=env)
    assert twice.exit_code == 0, twice.output
    assert twice.output.strip().endswith("up to date"), twice.output

    store: Store = request.getfixturevalue("server_store" if engine == "server" else "chdb_store")
    rows = store.query(f"SELECT version, name FROM {clickhouse_database}.schema_migrations").rows
    assert [(int(v), n) for v, n in rows] == [(1, "initial")]
    tables = {r[0] for r in store.query(f"SHOW TABLES FROM {clickhouse_database}").rows}
    assert tables == {*TABLES_BY_NAME, "schema_migrations"}
