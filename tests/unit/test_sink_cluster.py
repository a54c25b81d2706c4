"""connectors/sink/cluster.py: the single-node migrations turned into replicated local tables and
Distributed tables over them; string checks, then ClickHouse's own parser (chdb) on the result."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import pytest

from connectors.sink import cluster
from connectors.sink.cluster import ClusterDDLError, Table
from connectors.sink.migrate import Migration, migrations
from connectors.sink.store import Result, Row
from streams.settings import Settings

DB = "pora"
# the sharding key each table must get, and why it matters: duplicates collapse only within a shard,
# and these keys keep an alert with its actions, and a traveller's events, on one shard
EXPECTED_KEYS = {
    "hotel_guest_events": "cityHash64(person_key)",
    "border_crossings": "cityHash64(person_key)",
    "permit_updates": "cityHash64(person_key)",
    "sponsor_reports": "cityHash64(sponsor_id)",
    "agency_reports": "cityHash64(ifNull(person_key, event_id))",
    "alerts": "cityHash64(alert_id)",
    "alert_actions": "cityHash64(alert_id)",
    "dead_letters": "cityHash64(event_id)",
}
_CREATE_NAME = re.compile(r"CREATE TABLE IF NOT EXISTS \{db\}\.(\w+) \(", re.S)


def single_node_statements() -> list[str]:
    return [s for m in migrations() for s in m.statements(DB)]


def single_node_tables() -> list[Table]:
    return [cluster.parse_create(s) for s in single_node_statements() if s.upper().startswith("CREATE")]


def cluster_ddl() -> list[str]:
    return cluster.cluster_statements(single_node_statements())


def test_every_create_yields_a_replicated_local_table_then_a_distributed_table() -> None:
    names = [n for m in migrations() for n in _CREATE_NAME.findall(m.sql)]
    assert names, "the migrations create no table?"
    ddl = cluster_ddl()
    assert len(ddl) == 2 * len(names)
    for i, name in enumerate(names):
        local, distributed = ddl[2 * i], ddl[2 * i + 1]
        assert local.startswith(f"CREATE TABLE IF NOT EXISTS {DB}.{name}_local ON CLUSTER '{{cluster}}' ("), local
        assert f"ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{{database}}/{name}', " in local
        assert distributed == (
            f"CREATE TABLE IF NOT EXISTS {DB}.{name} ON CLUSTER '{{cluster}}' AS {DB}.{name}_local "
            f"ENGINE = Distributed('{{cluster}}', {DB}, {name}_local, {EXPECTED_KEYS[name]})"
        )


def test_local_tables_keep_columns_partitioning_and_sorting() -> None:
    for table in single_node_tables():
        local = cluster.parse_create(cluster.create_statements(table)[0].replace(" ON CLUSTER '{cluster}'", ""))
        assert local.name == table.name + "_local"
        assert local.columns == table.columns
        assert local.tail == table.tail
        assert "PARTITION BY toYYYYMM(occurred_at)" in local.tail and "ORDER BY (" in local.tail
        assert local.engine == "ReplicatedReplacing"
        assert local.engine_args == f"'/clickhouse/tables/{{shard}}/{{database}}/{table.name}', '{{replica}}'"


def test_the_version_column_and_other_engine_arguments_are_carried_over() -> None:
    statement = (
        "CREATE TABLE IF NOT EXISTS pora.people (person_key String, seen DateTime('UTC'), v UInt64) "
        "ENGINE = ReplacingMergeTree(v) ORDER BY person_key SETTINGS index_granularity = 8192"
    )
    local, distributed = cluster.cluster_statements([statement])
    assert local == (
        "CREATE TABLE IF NOT EXISTS pora.people_local ON CLUSTER '{cluster}' "
        "(person_key String, seen DateTime('UTC'), v UInt64) "
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/people', '{replica}', v) "
        "ORDER BY person_key SETTINGS index_granularity = 8192"
    )
    assert distributed.endswith("ENGINE = Distributed('{cluster}', pora, people_local, cityHash64(person_key))")
    sums = "CREATE TABLE IF NOT EXISTS pora.n (event_id String, a UInt64, b UInt64) ENGINE = SummingMergeTree((a, b))"
    summing = cluster.cluster_statements([sums + " ORDER BY event_id"])[0]
    assert "ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/n', '{replica}', (a, b))" in summing


def test_sharding_keys_are_the_expected_non_nullable_columns() -> None:
    tables = {t.name: t for t in single_node_tables()}
    assert set(tables) == set(EXPECTED_KEYS), "a table was added: give it a sharding key in EXPECTED_KEYS"
    for name, table in tables.items():
        key = cluster.sharding_key(table)
        assert key == EXPECTED_KEYS[name], name
        column = re.fullmatch(r"cityHash64\((\w+)\)", key)
        if column:  # a bare column: it must exist and never be NULL
            typ = table.column_type(column.group(1))
            assert typ is not None and not typ.startswith("Nullable("), (name, typ)


def test_no_placeholder_or_single_node_engine_is_left() -> None:
    for statement in cluster.preamble(DB) + cluster_ddl():
        assert "{db}" not in statement
        assert " ON CLUSTER '{cluster}' " in statement + " "
        if statement.startswith("CREATE DATABASE"):
            continue
        engine = re.search(r"ENGINE = (\w+)\(", statement)
        assert engine is not None, statement
        assert engine.group(1).startswith("Replicated") or engine.group(1) == "Distributed", statement


def test_schema_migrations_is_one_replication_group_across_every_host() -> None:
    _, table = cluster.preamble(DB)
    # no {shard} in the path: every host of every shard holds the same applied versions
    assert "ReplicatedMergeTree('/clickhouse/tables/all/{database}/schema_migrations', '{replica}')" in table
    # the columns migrate.py creates and reads, so its CREATE IF NOT EXISTS finds the table as is
    assert "(version UInt32, name String, applied_at DateTime('UTC'))" in table


def test_column_alters_go_to_both_tables_and_anything_else_is_refused() -> None:
    assert cluster.cluster_statements(["ALTER TABLE pora.alerts ADD COLUMN x String, DROP COLUMN y"]) == [
        "ALTER TABLE pora.alerts_local ON CLUSTER '{cluster}' ADD COLUMN x String, DROP COLUMN y",
        "ALTER TABLE pora.alerts ON CLUSTER '{cluster}' ADD COLUMN x String, DROP COLUMN y",
    ]
    refused = [
        "ALTER TABLE pora.alerts MODIFY TTL occurred_at + INTERVAL 1 YEAR",
        "ALTER TABLE pora.alerts RENAME COLUMN a TO b",  # readers of the old name: by hand
        "CREATE MATERIALIZED VIEW pora.v AS SELECT 1",
        "CREATE TABLE IF NOT EXISTS pora.m (a String) ENGINE = Memory",
        "CREATE TABLE IF NOT EXISTS pora.r (a String) ENGINE = ReplicatedMergeTree('/p', '{replica}') ORDER BY a",
        "CREATE TABLE pora.no_guard (a String) ENGINE = MergeTree ORDER BY a",
        "INSERT INTO pora.alerts VALUES",
        "CREATE TABLE IF NOT EXISTS pora.nothing_to_shard (a String) ENGINE = MergeTree() ORDER BY a",
    ]
    for statement in refused:
        with pytest.raises(ClusterDDLError):
            cluster.cluster_statements([statement])


def test_quoted_commas_and_parentheses_do_not_split_columns() -> None:
    table = cluster.parse_create(
        "CREATE TABLE IF NOT EXISTS pora.t (event_id String DEFAULT 'a\\',b)', "
        "m Map(String, Array(Tuple(String, UInt8))), person_key Nullable(String)) "
        "ENGINE = MergeTree() ORDER BY event_id"
    )
    assert [c for c, _ in table.columns] == ["event_id", "m", "person_key"]
    assert table.column_type("m") == "Map(String, Array(Tuple(String, UInt8)))"
    assert cluster.sharding_key(table) == "cityHash64(ifNull(person_key, event_id))"


def test_clickhouse_parses_every_statement() -> None:
    """ClickHouse's own parser (chdb, in process): formatQuery parses without executing, so the
    macros and ON CLUSTER need no cluster."""
    import chdb

    statements = cluster.preamble(DB) + cluster_ddl()
    literals = ", ".join("'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'" for s in statements)
    # one query for all (each costs ~50 ms); a statement that does not parse fails the whole query
    query = f"SELECT formatQuery(s) AS f FROM (SELECT arrayJoin([{literals}]) AS s)"
    out = str(chdb.query(query, "JSONEachRow"))  # type: ignore[no-untyped-call]
    formatted = [json.loads(line)["f"] for line in out.splitlines() if line.strip()]
    assert len(formatted) == len(statements)
    for statement, text in zip(statements, formatted, strict=True):
        assert text.startswith("CREATE"), (statement, text)
        assert "{cluster}" in text, text  # ON CLUSTER kept its macro


def test_sharding_keys_are_plain_integers_for_clickhouse() -> None:
    """Distributed refuses a Nullable or non-integer sharding key: type each key on the real columns."""
    from chdb import session

    s: Any = session.Session()  # type: ignore[no-untyped-call]
    try:
        s.query(f"CREATE DATABASE IF NOT EXISTS {DB}")
        for table in single_node_tables():
            s.query(f"CREATE TABLE {DB}.{table.name} {table.columns_sql} ENGINE = Memory")
            s.query(f"INSERT INTO {DB}.{table.name} (event_id) VALUES ('e1')")  # a row to type the key on
            typ = str(s.query(f"SELECT toTypeName({cluster.sharding_key(table)}) FROM {DB}.{table.name}", "TSVRaw"))
            assert typ.strip() == "UInt64", (table.name, typ)
    finally:
        s.close()


def test_main_prints_every_statement(capsys: pytest.CaptureFixture[str]) -> None:
    assert cluster.main(["--database", "analytics"]) == 0
    out = capsys.readouterr().out
    expected = cluster.preamble("analytics") + [
        s for m in migrations() for s in cluster.cluster_statements(m.statements("analytics"))
    ]
    assert [line for line in out.splitlines() if not line.startswith("--")] == [
        line for s in expected for line in (s + ";").splitlines()
    ]
    assert "-- 0001_initial" in out


def test_misplaced_tables_names_what_a_single_node_migration_left() -> None:
    rows = [
        ("h1", "alerts", "Distributed"),
        ("h1", "alerts_local", "ReplicatedReplacingMergeTree"),
        ("h1", "schema_migrations", "ReplicatedMergeTree"),
        ("h2", "alerts", "ReplacingMergeTree"),  # `pora db migrate` ran against this host first
        ("h2", "schema_migrations", "MergeTree"),
    ]
    assert cluster.misplaced_tables(rows) == [
        "h2: alerts is ReplacingMergeTree",
        "h2: schema_migrations is MergeTree",
    ]


class FakeStore:
    """Records statements; answers the few queries apply() makes, as a healthy cluster would."""

    database = DB
    target = "fake"

    def __init__(self, applied: Sequence[int] = ()) -> None:
        self.statements: list[str] = []
        self.inserted: list[tuple[str, list[Row]]] = []
        self.applied = list(applied)
        self.closed = False

    def execute(self, sql: str) -> None:
        self.statements.append(sql)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        self.inserted.append((table, list(rows)))

    def query(self, sql: str) -> Result:
        if "getMacro" in sql:
            return Result(("c",), [("pora",)])
        if "FROM pora.schema_migrations" in sql:
            return Result(("version",), [(v,) for v in self.applied])
        assert "clusterAllReplicas('pora', system.tables)" in sql
        rows: list[Row] = [("h", "schema_migrations", "ReplicatedMergeTree")]
        for t in single_node_tables():
            rows += [("h", t.name, "Distributed"), ("h", t.name + "_local", "ReplicatedReplacingMergeTree")]
        return Result(("host", "name", "engine"), rows)

    def close(self) -> None:
        self.closed = True


def production() -> Settings:
    return Settings.model_validate(
        {
            "mode": "production",
            "clickhouse_url": "clickhouse://clickhouse-pora:9000",
            "clickhouse_password": "x" * 12,
            "person_key_secret": "p" * 32,
            "feed_secret": "f" * 32,
            "gateway_keys_file": "/etc/pora/keys/keys.toml",
            "feed_users_file": "/etc/pora/users/users.toml",
        }
    )


def test_apply_runs_what_is_missing_records_it_and_checks_the_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = FakeStore()
    monkeypatch.setattr("connectors.sink.store.open_store", lambda settings: fresh)
    ran = cluster.apply(production())
    assert [m.version for m in ran] == [m.version for m in migrations()]
    assert fresh.statements == cluster.preamble(DB) + cluster_ddl()
    assert [(t, [r[:2] for r in rows]) for t, rows in fresh.inserted] == [
        ("schema_migrations", [(m.version, m.name)]) for m in migrations()
    ]
    assert fresh.closed

    done = FakeStore(applied=[m.version for m in migrations()])
    monkeypatch.setattr("connectors.sink.store.open_store", lambda settings: done)
    assert cluster.apply(production()) == []
    assert done.statements == cluster.preamble(DB) and not done.inserted


def test_apply_refuses_embedded_clickhouse() -> None:
    with pytest.raises(ClusterDDLError, match="clickhouse://"):
        cluster.apply(Settings.model_validate({"clickhouse_url": "chdb:///tmp/x"}))


def test_migration_ddl_uses_the_given_database() -> None:
    m = Migration(9, "x", "CREATE TABLE IF NOT EXISTS {db}.t (event_id String) ENGINE = MergeTree() ORDER BY event_id")
    assert cluster.migration_ddl(m, "other")[1] == (
        "CREATE TABLE IF NOT EXISTS other.t ON CLUSTER '{cluster}' AS other.t_local "
        "ENGINE = Distributed('{cluster}', other, t_local, cityHash64(event_id))"
    )
