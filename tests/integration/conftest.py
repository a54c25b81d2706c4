"""Integration fixtures: one real Tansu broker per test session, fresh topic names per test.

Every test below this directory is marked ``integration`` automatically. Topics are never
deleted (the broker's memory storage goes with it at the end of the session); tests stay
independent through a unique topic prefix each. ClickHouse likewise: one server (started the
first time a test asks for it) and one chdb directory per session, a fresh database per test.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.localstack import create_topics, free_port, running_broker
from streams.topics import TOPICS

if TYPE_CHECKING:
    from connectors.sink.localserver import ClickHouseServer
    from connectors.sink.store import ChdbStore, ServerStore

TEST_PARTITIONS = 3
_HERE = Path(__file__).resolve().parent

ConsumerRecord = Any  # kafka.consumer.fetcher.ConsumerRecord (a namedtuple; kafka-python is untyped)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.resolve().is_relative_to(_HERE):
            item.add_marker(pytest.mark.integration)


def make_topics(bootstrap: str, prefix: str, partitions: int = TEST_PARTITIONS) -> list[str]:
    """Create every platform topic (streams.topics.TOPICS) under ``prefix``; returns the full names."""
    names = [f"{prefix}{spec.name}" for spec in TOPICS]
    create_topics(bootstrap, names, partitions=partitions, replication=1)
    return names


def consume_all(
    bootstrap: str, topic: str, expected: int, timeout: float = 30.0, extra_wait: float = 1.0
) -> list[ConsumerRecord]:
    """Read ``topic`` from the beginning until ``expected`` records arrived or ``timeout`` passed,
    then keep polling for ``extra_wait`` seconds so that unexpected extra records show up too.

    No consumer group (partitions assigned directly), so nothing is committed and no group join
    delays the read. The caller asserts on the count.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        allow_auto_create_topics=False,
    )
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"topic {topic!r} does not exist on {bootstrap}")
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        records: list[ConsumerRecord] = []

        def poll_until(deadline: float, stop_at: int | None) -> None:
            while time.monotonic() < deadline and (stop_at is None or len(records) < stop_at):
                for batch in consumer.poll(timeout_ms=200).values():
                    records.extend(batch)

        poll_until(time.monotonic() + timeout, expected)
        poll_until(time.monotonic() + extra_wait, None)
        return records
    finally:
        consumer.close()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a Tansu broker started for this test session (stopped at its end)."""
    with running_broker() as bootstrap:
        yield bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A prefix unique to the test, e.g. ``t-1a2b3c4d.``, so tests never share a topic."""
    return f"t-{uuid.uuid4().hex[:8]}."


@pytest.fixture
def topics(kafka_bootstrap: str, topic_prefix: str) -> dict[str, str]:
    """All platform topics created under the test's prefix: base name -> full topic name."""
    make_topics(kafka_bootstrap, topic_prefix)
    return {spec.name: f"{topic_prefix}{spec.name}" for spec in TOPICS}


@pytest.fixture
def consume(kafka_bootstrap: str) -> Callable[..., list[ConsumerRecord]]:
    """``consume(topic, expected, timeout=30.0, extra_wait=1.0)`` against the session broker."""

    def _consume(topic: str, expected: int, timeout: float = 30.0, extra_wait: float = 1.0) -> list[ConsumerRecord]:
        return consume_all(kafka_bootstrap, topic, expected, timeout=timeout, extra_wait=extra_wait)

    return _consume


# ---------------------------------------------------------------- the gateway, in-process


class RunningGateway:
    """A gateway serving on a free port in a background thread, on the test's topics."""

    def __init__(self, settings: Any, keys: dict[str, str]) -> None:
        self.settings = settings
        self.keys = keys  # source id -> plain API key
        self.url = f"http://127.0.0.1:{settings.gateway_port}"
        self._server: Any = None

    def start(self) -> RunningGateway:
        from connectors.appthread import AppThread
        from connectors.gateway.app import build_app
        from connectors.gateway.keys import KeyRing

        self._server = AppThread(
            lambda: build_app(self.settings, KeyRing.load(self.settings.keys_file)),
            "127.0.0.1",
            self.settings.gateway_port,
            name="gateway",
            shutdown_timeout=30,
        )
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def post(
        self,
        path: str,
        body: Any,
        *,
        source: str | None = "hotel",
        content_type: str = "application/json",
        key: str | None = None,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": content_type}
        api_key = key if key is not None else (self.keys[source] if source else None)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        req = urllib.request.Request(self.url + path, data=raw, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read()), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}"), dict(err.headers)

    def get(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers)


HOTEL = {
    "establishment_id": "EST-BTM-0001",
    "name": "Hotel Harmoni One",
    "region": "Kota Batam",
    "office": "KANIM-BATAM",
}
SOURCES = [  # id, kind, binds, profile
    (
        "hotel",
        "hotel",
        HOTEL["establishment_id"],
        {"name": HOTEL["name"], "region": HOTEL["region"], "office": HOTEL["office"]},
    ),
    ("other-hotel", "hotel", "EST-DPS-0001", {}),
    ("checkpoint", "checkpoint", "TPI-BATAM-CENTRE", {}),
    ("sponsor", "sponsor", "SPN-MJK-0001", {}),
    ("agency", "agency", "AGY-POLRES-MJK", {}),
    ("office", "office", "KANIM-BATAM", {}),
    ("system", "system", "", {}),
]


def gateway_settings(bootstrap: str, prefix: str, state_dir: Path, **overrides: Any) -> Any:
    """Settings for a test gateway; every request goes through a worker process unless overridden."""
    from streams.settings import Settings

    overrides.setdefault("gateway_workers", 1)
    overrides.setdefault("gateway_tick_seconds", 0)  # tests that count records add ticks themselves
    overrides.setdefault("gateway_worker_min_bytes", 0)
    return Settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        state_dir=state_dir,
        gateway_keys_file=state_dir / "keys.toml",
        gateway_port=free_port(),
        **overrides,
    )


def write_keys(path: Path) -> dict[str, str]:
    from connectors.gateway.keys import key_entry, new_key

    plain = {}
    text = []
    for source_id, kind, binds, profile in SOURCES:
        plain[source_id] = new_key()
        text.append(key_entry(source_id, kind, binds, plain[source_id], **profile))
    path.write_text("".join(text))
    return plain


@pytest.fixture
def gateway(
    kafka_bootstrap: str, topics: dict[str, str], topic_prefix: str, tmp_path: Path
) -> Iterator[RunningGateway]:
    """A gateway on this test's topics with one key per kind of source (see SOURCES)."""
    settings = gateway_settings(kafka_bootstrap, topic_prefix, tmp_path)
    gw = RunningGateway(settings, write_keys(settings.keys_file)).start()
    yield gw
    gw.stop()


# ---------------------------------------------------------------- ClickHouse: the server and chdb


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    """A ClickHouse server (the Debian package's binary) on a free port for this session; its data
    in a temporary directory. A missing binary fails the test: `.ci/run` installs clickhouse-server.
    Tests that stop or kill it start it again (same port, same data) before they end."""
    from connectors.sink.localserver import ClickHouseServer, ClickHouseServerError, server_command

    try:
        server_command()
    except ClickHouseServerError as exc:
        pytest.fail(f"{exc}. The sink's integration tests need a real ClickHouse server.", pytrace=False)
    server = ClickHouseServer(tmp_path_factory.mktemp("clickhouse")).start()
    yield server
    server.stop()


@pytest.fixture
def clickhouse_database() -> str:
    """A database name unique to the test (created by the migration, never shared)."""
    return f"t_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def server_store(clickhouse_server: ClickHouseServer, clickhouse_database: str) -> Iterator[ServerStore]:
    """A store on the session's server, on the test's own database (not yet migrated)."""
    from connectors.sink.store import ServerStore

    store = ServerStore(clickhouse_server.host, clickhouse_server.port, clickhouse_database)
    yield store
    store.close()


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's chdb directory. chdb runs one embedded server per process and refuses a
    second path while a session is open (several sessions on one path are fine), so every test
    uses this one, each on its own database."""
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def chdb_store(chdb_path: Path, clickhouse_database: str) -> Iterator[ChdbStore]:
    """Embedded chdb on the session's directory and the test's own database (not yet migrated)."""
    from connectors.sink.store import ChdbStore

    store = ChdbStore(chdb_path, clickhouse_database)
    yield store
    store.close()
