"""One interface, two ClickHouse engines: the server (clickhouse-driver, native protocol) and
embedded chdb (ClickHouse in this process; the local default). The same SQL runs on both."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import orjson

from streams.settings import Settings

Row = tuple[Any, ...]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class StoreError(RuntimeError):
    """ClickHouse refused or could not be reached; the message names the statement."""


@dataclass(frozen=True)
class Result:
    columns: tuple[str, ...]
    rows: list[Row]


class Store(Protocol):
    database: str
    target: str  # what it writes to, for messages and metrics

    def execute(self, sql: str) -> None: ...
    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None: ...
    def query(self, sql: str) -> Result: ...
    def close(self) -> None: ...


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a plain ClickHouse identifier")
    return name


def _short(sql: str) -> str:
    one = " ".join(sql.split())
    return one if len(one) <= 120 else one[:117] + "..."


class ServerStore:
    """The ClickHouse server through clickhouse-driver (native protocol, compressed blocks)."""

    def __init__(self, host: str, port: int, database: str, user: str = "default", password: str = "") -> None:
        from clickhouse_driver import Client

        self.database = _check_name(database)
        self.target = f"clickhouse://{host}:{port}/{database}"
        self._client = Client(
            host=host,
            port=port,
            user=user,
            password=password,
            connect_timeout=5,
            send_receive_timeout=60,
            settings={"use_numpy": False},
        )

    def execute(self, sql: str) -> None:
        try:
            self._client.execute(sql)
        except Exception as exc:
            self._client.disconnect()  # a broken connection is re-opened by the next call
            raise StoreError(f"{self.target}: {_short(sql)}: {exc}") from exc

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        sql = f"INSERT INTO {self.database}.{_check_name(table)} ({', '.join(columns)}) VALUES"
        try:
            self._client.execute(sql, list(rows), types_check=False)
        except Exception as exc:
            self._client.disconnect()
            raise StoreError(f"{self.target}: insert of {len(rows)} rows into {table}: {exc}") from exc

    def query(self, sql: str) -> Result:
        try:
            rows, types = self._client.execute(sql, with_column_types=True)
        except Exception as exc:
            self._client.disconnect()
            raise StoreError(f"{self.target}: {_short(sql)}: {exc}") from exc
        return Result(tuple(name for name, _ in types), [tuple(r) for r in rows])

    def close(self) -> None:
        self._client.disconnect()


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} to chdb")


class ChdbStore:
    """Embedded ClickHouse (chdb) with its data in a directory; rows go in as JSONCompactEachRow."""

    def __init__(self, path: Path, database: str) -> None:
        from chdb import session

        self.database = _check_name(database)
        path.mkdir(parents=True, exist_ok=True)
        self.target = f"chdb://{path}/{database}"
        self._session: Any = session.Session(str(path))  # type: ignore[no-untyped-call]

    def execute(self, sql: str) -> None:
        try:
            self._session.query(sql)
        except Exception as exc:
            raise StoreError(f"{self.target}: {_short(sql)}: {exc}") from exc

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        if not rows:
            return
        body = b"\n".join(orjson.dumps(r, default=_json_value) for r in rows).decode()
        sql = f"INSERT INTO {self.database}.{_check_name(table)} ({', '.join(columns)}) FORMAT JSONCompactEachRow\n"
        try:
            self._session.query(sql + body)
        except Exception as exc:
            raise StoreError(f"{self.target}: insert of {len(rows)} rows into {table}: {exc}") from exc

    def query(self, sql: str) -> Result:
        try:
            out = self._session.query(sql, "JSONCompact")
        except Exception as exc:
            raise StoreError(f"{self.target}: {_short(sql)}: {exc}") from exc
        raw = out.bytes()
        if not raw:
            return Result((), [])
        doc = orjson.loads(raw)
        types = [m["type"] for m in doc["meta"]]
        rows = [tuple(_from_json(v, t) for v, t in zip(row, types, strict=True)) for row in doc["data"]]
        return Result(tuple(m["name"] for m in doc["meta"]), rows)

    def close(self) -> None:
        self._session.close()


_INT = re.compile(r"^(Nullable\()?U?Int(8|16|32|64|128|256)\)?$")


def _from_json(value: Any, typ: str) -> Any:
    """chdb's JSON quotes 64-bit integers; give them back as ints, as the server driver does."""
    if isinstance(value, str) and _INT.match(typ):
        return int(value)
    return value


def open_store(settings: Settings) -> Store:
    url = settings.clickhouse_url
    if not url:
        return ChdbStore(settings.state_dir / "chdb", settings.clickhouse_database)
    parsed = urlparse(url)
    if parsed.scheme == "chdb":
        return ChdbStore(Path(parsed.path or str(settings.state_dir / "chdb")), settings.clickhouse_database)
    if parsed.scheme == "clickhouse":
        password = settings.clickhouse_password.get_secret_value() if settings.clickhouse_password else ""
        return ServerStore(
            parsed.hostname or "127.0.0.1",
            parsed.port or 9000,
            settings.clickhouse_database,
            settings.clickhouse_user,
            password,
        )
    raise ValueError(f"PORA_CLICKHOUSE_URL {url!r}: use clickhouse://host:port or chdb:///path")


def now_utc() -> datetime:
    return datetime.now(UTC)
