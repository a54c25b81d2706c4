"""Versioned schema migrations: ``migrations/NNNN_name.sql``, applied in order, each once, recorded
in ``schema_migrations``. The SQL names the database as ``{db}``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from connectors.sink.store import Store, now_utc

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self, database: str) -> list[str]:
        text = "\n".join(line for line in self.sql.splitlines() if not line.lstrip().startswith("--"))
        return [s.strip() for s in text.replace("{db}", database).split(";") if s.strip()]


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.iterdir()):
        m = _FILE.match(path.name)
        if m is None:
            if path.suffix == ".sql":
                raise ValueError(f"{path.name}: migration files are named NNNN_name.sql")
            continue
        found.append(Migration(int(m.group(1)), m.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a version in {directory}")
    return found


def applied(store: Store) -> set[int]:
    db = store.database
    store.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    store.execute(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime('UTC')) ENGINE = MergeTree() ORDER BY version"
    )
    return {int(r[0]) for r in store.query(f"SELECT version FROM {db}.schema_migrations").rows}


def migrate(store: Store, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply what is missing; returns the migrations applied now. Statements are idempotent
    (IF NOT EXISTS), so a migration interrupted half-way is simply run again."""
    done = applied(store)
    ran = []
    for m in migrations(directory):
        if m.version in done:
            continue
        for statement in m.statements(store.database):
            store.execute(statement)
        store.insert("schema_migrations", ("version", "name", "applied_at"), [(m.version, m.name, now_utc())])
        ran.append(m)
    return ran
