"""The analytics schema for a ClickHouse *cluster* (shards x replicas, Keeper), made from the
single-node migrations in ``migrations/`` so that there is one schema and not two to keep in step.

Every ``CREATE TABLE IF NOT EXISTS {db}.<t> (...) ENGINE = <X>MergeTree(<args>) ...`` becomes

- ``{db}.<t>_local``, on every host: ``Replicated<X>MergeTree('/clickhouse/tables/{shard}/{database}/<t>',
  '{replica}', <args>)``, the same columns, partitioning and sorting key;
- ``{db}.<t>``, a ``Distributed`` table over the ``_local`` tables, sharded by :func:`sharding_key`;

all ``ON CLUSTER '{cluster}'``. The sink, the reports and the feed keep reading and writing ``<t>``,
now the Distributed table. ``{cluster}``, ``{shard}`` and ``{replica}`` are macros that the Altinity
operator defines on each host; ClickHouse expands ``{database}`` itself when it creates the table.

Duplicates (a redelivered batch, a replayed topic) collapse only within one shard, so the sharding
key is a function of the row alone: the same row always lands on the same shard.

``python -m connectors.sink.cluster`` prints the DDL; ``--apply`` runs it against PORA_CLICKHOUSE_URL
(the sink's init container in deploy/k8s) and records each migration in ``schema_migrations``, a
table replicated to *every* host, so that ``pora sink`` and ``pora report`` (which call
:func:`connectors.sink.migrate.migrate`) find it applied and never create single-node tables.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from connectors.sink.migrate import Migration, migrations
from streams.settings import Settings

CLUSTER_MACRO = "{cluster}"
LOCAL_SUFFIX = "_local"
# the path of a shard's replication log in Keeper; {shard}, {replica}: operator macros
REPLICA_PATH = "/clickhouse/tables/{shard}/{database}/%s"
# schema_migrations is one replication group across every host (no {shard} in its path): whichever
# host the sink's connection lands on sees the same applied versions
MIGRATIONS_TABLE = "schema_migrations"
MIGRATIONS_PATH = "/clickhouse/tables/all/{database}/" + MIGRATIONS_TABLE
# Preferred sharding columns, best first. alert_id keeps an alert's versions and its triage actions
# on one shard (argMax per alert, and joining alerts to their actions, stay local); person_key does the same
# for a traveller across the event tables (the person-keyed reports join locally); the hash is keyed
# (HMAC), so it spreads evenly. office, the first sorting column, would not: a few checkpoints carry
# most of the traffic.
SHARD_COLUMNS = ("alert_id", "person_key", "sponsor_id", "establishment_id")
# ALTERs that change a table's columns: the Distributed table must follow its local table
_COLUMN_ALTER = re.compile(r"^\s*(ADD|DROP|MODIFY|COMMENT)\s+COLUMN\b", re.I)
_CREATE = re.compile(r"^CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(\w+)\.(\w+)\s*\(", re.I)
_ENGINE = re.compile(r"^\s*ENGINE\s*=\s*(\w*)MergeTree\s*\(", re.I)
_ALTER = re.compile(r"^ALTER\s+TABLE\s+(\w+)\.(\w+)\s+(.*)$", re.I | re.S)


class ClusterDDLError(ValueError):
    """A migration statement that has no known cluster form: extend this module for it rather
    than let the single-node statement create a table on one host only."""


@dataclass(frozen=True)
class Table:
    """One single-node ``CREATE TABLE`` statement, taken apart."""

    database: str
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, type)
    columns_sql: str  # the column list as written, parentheses included
    engine: str  # the MergeTree family member without "MergeTree": "", "Replacing", "Summing", ...
    engine_args: str  # inside the engine's parentheses, e.g. the version column; may be empty
    tail: str  # PARTITION BY ... ORDER BY ... SETTINGS ...

    def column_type(self, name: str) -> str | None:
        return dict(self.columns).get(name)


def _closing(text: str, start: int) -> int:
    """Index of the parenthesis closing the one at ``start``, skipping quoted text."""
    depth, quote, i = 0, "", start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ClusterDDLError(f"unbalanced parentheses in: {text[:80]}...")


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses and quotes (a column list, engine arguments)."""
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    escaped = False
    for ch in text:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def parse_create(statement: str) -> Table:
    """Take a single-node ``CREATE TABLE IF NOT EXISTS db.t (...) ENGINE = *MergeTree(...) ...`` apart."""
    stmt = statement.strip().rstrip(";")
    head = _CREATE.match(stmt)
    if head is None:
        raise ClusterDDLError(f"not a CREATE TABLE IF NOT EXISTS db.table (...): {stmt[:80]}...")
    open_at = head.end() - 1
    close_at = _closing(stmt, open_at)
    columns_sql = stmt[open_at : close_at + 1]
    columns = []
    for definition in _split_top_level(columns_sql[1:-1]):
        name, _, rest = definition.partition(" ")
        columns.append((name.strip("`"), rest.strip()))
    after = stmt[close_at + 1 :]
    engine = _ENGINE.match(after)
    if engine is None:
        raise ClusterDDLError(f"{head.group(2)}: only MergeTree-family tables can be replicated")
    args_open = engine.end() - 1
    args_close = _closing(after, args_open)
    return Table(
        database=head.group(1),
        name=head.group(2),
        columns=tuple(columns),
        columns_sql=columns_sql,
        engine=engine.group(1),
        engine_args=after[args_open + 1 : args_close].strip(),
        tail=" ".join(after[args_close + 1 :].split()),
    )


def sharding_key(table: Table) -> str:
    """The Distributed table's sharding expression: a hash of the first of :data:`SHARD_COLUMNS`
    that the table has and is never NULL; a nullable person key falls back to the event id (one
    row, one shard; Distributed refuses a Nullable key); else the event id."""
    for column in SHARD_COLUMNS:
        typ = table.column_type(column)
        if typ is not None and not typ.startswith("Nullable("):
            return f"cityHash64({column})"
    if table.column_type("person_key") is not None and table.column_type("event_id") is not None:
        return "cityHash64(ifNull(person_key, event_id))"
    if table.column_type("event_id") is not None:
        return "cityHash64(event_id)"
    raise ClusterDDLError(f"{table.name}: no column to shard by ({', '.join(SHARD_COLUMNS)} or event_id)")


def _on_cluster(cluster: str) -> str:
    return f"ON CLUSTER '{cluster}'"


def create_statements(table: Table, cluster: str = CLUSTER_MACRO) -> list[str]:
    """The replicated local table and the Distributed table for one single-node ``CREATE``."""
    if table.engine.lower().startswith("replicated"):
        raise ClusterDDLError(f"{table.name}: already replicated; migrations are written for one node")
    local = table.name + LOCAL_SUFFIX
    args = ", ".join([f"'{REPLICA_PATH % table.name}'", "'{replica}'", *_split_top_level(table.engine_args)])
    replicated = (
        f"CREATE TABLE IF NOT EXISTS {table.database}.{local} {_on_cluster(cluster)} {table.columns_sql} "
        f"ENGINE = Replicated{table.engine}MergeTree({args})" + (f" {table.tail}" if table.tail else "")
    )
    distributed = (
        f"CREATE TABLE IF NOT EXISTS {table.database}.{table.name} {_on_cluster(cluster)} "
        f"AS {table.database}.{local} "
        f"ENGINE = Distributed('{cluster}', {table.database}, {local}, {sharding_key(table)})"
    )
    return [replicated, distributed]


def alter_statements(statement: str, cluster: str = CLUSTER_MACRO) -> list[str]:
    """A column ALTER, applied to the local table and then to the Distributed table over it."""
    m = _ALTER.match(statement.strip().rstrip(";"))
    if m is None or not all(_COLUMN_ALTER.match(part) for part in _split_top_level(m.group(3))):
        raise ClusterDDLError(f"no cluster form for: {' '.join(statement.split())[:100]}")
    database, name, changes = m.group(1), m.group(2), " ".join(m.group(3).split())
    return [
        f"ALTER TABLE {database}.{name}{LOCAL_SUFFIX} {_on_cluster(cluster)} {changes}",
        f"ALTER TABLE {database}.{name} {_on_cluster(cluster)} {changes}",
    ]


def cluster_statements(statements: Iterable[str], cluster: str = CLUSTER_MACRO) -> list[str]:
    """The cluster form of single-node migration statements (``{db}`` already replaced)."""
    out: list[str] = []
    for statement in statements:
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        if verb == "CREATE":
            out += create_statements(parse_create(statement), cluster)
        elif verb == "ALTER":
            out += alter_statements(statement, cluster)
        else:
            raise ClusterDDLError(f"no cluster form for: {' '.join(statement.split())[:100]}")
    return out


def preamble(database: str, cluster: str = CLUSTER_MACRO) -> list[str]:
    """The database and the replicated migrations table (the columns migrate.py reads and writes)."""
    return [
        f"CREATE DATABASE IF NOT EXISTS {database} {_on_cluster(cluster)}",
        f"CREATE TABLE IF NOT EXISTS {database}.{MIGRATIONS_TABLE} {_on_cluster(cluster)} "
        "(version UInt32, name String, applied_at DateTime('UTC')) "
        f"ENGINE = ReplicatedMergeTree('{MIGRATIONS_PATH}', '{{replica}}') ORDER BY version",
    ]


def migration_ddl(migration: Migration, database: str, cluster: str = CLUSTER_MACRO) -> list[str]:
    return cluster_statements(migration.statements(database), cluster)


def render(found: Sequence[Migration], database: str, cluster: str = CLUSTER_MACRO) -> str:
    """Every statement, ``;``-terminated, with a comment line per migration (for review or a client)."""
    lines = ["-- generated by `python -m connectors.sink.cluster` from connectors/sink/migrations/"]
    lines += [s + ";" for s in preamble(database, cluster)]
    for m in found:
        lines.append(f"-- {m.version:04d}_{m.name}")
        lines += [s + ";" for s in migration_ddl(m, database, cluster)]
    return "\n".join(lines) + "\n"


def apply(settings: Settings | None = None) -> list[Migration]:
    """Run the cluster DDL against PORA_CLICKHOUSE_URL: the preamble, then each migration not yet
    recorded in ``schema_migrations``, then check that every host has the expected engines."""
    from connectors.sink.store import now_utc, open_store

    settings = settings or Settings()
    if not settings.clickhouse_url.startswith("clickhouse://"):
        raise ClusterDDLError("--apply needs PORA_CLICKHOUSE_URL=clickhouse://host:port (a server cluster)")
    store = open_store(settings)
    try:
        db = store.database
        cluster = str(store.query("SELECT getMacro('cluster')").rows[0][0])
        for statement in preamble(db):
            store.execute(statement)
        done = {int(r[0]) for r in store.query(f"SELECT version FROM {db}.{MIGRATIONS_TABLE}").rows}
        ran = []
        for m in migrations():
            if m.version in done:
                continue
            for statement in migration_ddl(m, db):
                store.execute(statement)
            store.insert(MIGRATIONS_TABLE, ("version", "name", "applied_at"), [(m.version, m.name, now_utc())])
            ran.append(m)
        wrong = misplaced_tables(
            store.query(
                f"SELECT hostName(), name, engine FROM clusterAllReplicas('{cluster}', system.tables) "
                f"WHERE database = '{db}'"
            ).rows
        )
        if wrong:
            raise ClusterDDLError("tables that are not replicated/distributed as expected: " + "; ".join(wrong))
        return ran
    finally:
        store.close()


def misplaced_tables(rows: Iterable[Sequence[object]]) -> list[str]:
    """From (host, table, engine) rows: tables a single-node migration made by mistake (a
    non-replicated table on some host, or a Distributed name that is a plain table)."""
    wrong = []
    for host, name, engine in rows:
        table, kind = str(name), str(engine)
        if table.endswith(LOCAL_SUFFIX) or table == MIGRATIONS_TABLE:
            ok = kind.startswith("Replicated")
        else:
            ok = kind == "Distributed"
        if not ok:
            wrong.append(f"{host}: {table} is {kind}")
    return sorted(wrong)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.sink.cluster", description="ClickHouse cluster DDL from the sink's migrations."
    )
    parser.add_argument("--database", default="pora", help="database name for the printed DDL (default: pora)")
    parser.add_argument("--cluster", default=CLUSTER_MACRO, help="cluster name or macro (default: {cluster})")
    parser.add_argument(
        "--apply", action="store_true", help="run it against PORA_CLICKHOUSE_URL / PORA_CLICKHOUSE_DATABASE"
    )
    args = parser.parse_args(argv)
    if not args.apply:
        sys.stdout.write(render(migrations(), args.database, args.cluster))
        return 0
    from connectors.sink.store import StoreError

    try:
        ran = apply()
    except (ClusterDDLError, StoreError, ValueError, OSError) as exc:
        print(f"cluster migrate: {exc}", file=sys.stderr)
        return 1
    print("cluster migrate: " + (", ".join(f"applied {m.version:04d}_{m.name}" for m in ran) or "up to date"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
