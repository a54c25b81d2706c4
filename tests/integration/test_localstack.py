"""The local stack against the real Tansu binary: start, topics, port clashes, stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from streams import localstack
from streams.localstack import (
    PortInUseError,
    StackError,
    create_topics,
    free_port,
    is_running,
    port_free,
    read_pid,
    remove_pid,
    running_broker,
    start_broker,
    stop_process,
    tansu_binary,
    write_pid,
)
from streams.topics import HOTEL_GUEST_EVENTS, TOPICS

TEST_PARTITIONS = 3  # what the ``topics`` fixture (conftest.make_topics) creates


def _partition_counts(bootstrap: str, names: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
    finally:
        admin.close()


@pytest.fixture
def listening_socket() -> Iterator[int]:
    """A port held by a plain listening socket of this test process."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_tansu_binary_is_executable() -> None:
    binary = tansu_binary()
    assert binary.name == "tansu"
    assert os.access(binary, os.X_OK)


def test_record_round_trip(kafka_bootstrap: str, topics: dict[str, str], consume: Callable[..., list[Any]]) -> None:
    topic = topics[HOTEL_GUEST_EVENTS]
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(25)}
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
    try:
        for key, value in sent.items():
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()

    records = consume(topic, expected=len(sent), timeout=30)

    assert len(records) == len(sent)
    assert {r.key: r.value for r in records} == sent
    assert {r.partition for r in records} <= set(range(TEST_PARTITIONS))


def test_topics_fixture_creates_every_platform_topic(kafka_bootstrap: str, topics: dict[str, str]) -> None:
    assert set(topics) == {spec.name for spec in TOPICS}
    counts = _partition_counts(kafka_bootstrap, list(topics.values()))
    assert counts == {name: TEST_PARTITIONS for name in topics.values()}


def test_create_topics_partitions_and_idempotence(kafka_bootstrap: str, topic_prefix: str) -> None:
    names = [f"{topic_prefix}a", f"{topic_prefix}b"]

    assert create_topics(kafka_bootstrap, names, partitions=5, replication=1) == names
    assert _partition_counts(kafka_bootstrap, names) == {names[0]: 5, names[1]: 5}

    # Again, and with one new topic among existing ones: only the new one is created.
    assert create_topics(kafka_bootstrap, names, partitions=5, replication=1) == []
    more = [*names, f"{topic_prefix}c"]
    assert create_topics(kafka_bootstrap, more, partitions=2, replication=1) == [f"{topic_prefix}c"]
    assert _partition_counts(kafka_bootstrap, more) == {names[0]: 5, names[1]: 5, more[2]: 2}


def test_start_broker_refuses_a_taken_port(listening_socket: int, tmp_path: Path) -> None:
    port = listening_socket
    assert not port_free("127.0.0.1", port)
    with pytest.raises(StackError, match=rf"port {port} on 127\.0\.0\.1 is already in use.*PORA_BROKER_PORT"):
        start_broker("127.0.0.1", port, tmp_path / "tansu.log")
    assert not (tmp_path / "tansu.log").exists()  # refused before anything was started


def test_start_broker_refuses_the_port_of_a_running_broker(kafka_bootstrap: str, tmp_path: Path) -> None:
    port = int(kafka_bootstrap.rpartition(":")[2])
    with pytest.raises(PortInUseError, match=f"port {port} "):
        start_broker("127.0.0.1", port, tmp_path / "tansu.log")


def test_bind_failure_after_the_check_is_reported(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The port is taken between our check and Tansu's bind. Tansu then exits with status 0, while
    # the broker that does hold the port answers the readiness probe: this must still be an error.
    port = int(kafka_bootstrap.rpartition(":")[2])
    log_path = tmp_path / "tansu.log"
    log_path.write_text("ready in 1ms\n")  # an earlier run's log in the same file must not count
    monkeypatch.setattr(localstack, "port_free", lambda host, port: True)
    with pytest.raises(PortInUseError, match=f"port {port} "):
        start_broker("127.0.0.1", port, log_path)
    assert "AddrInUse" in log_path.read_text()


def test_a_broker_that_dies_is_reported_with_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'storage engine exploded' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(localstack, "tansu_binary", lambda: fake)
    with pytest.raises(StackError, match=r"(?s)exited with status 3.*storage engine exploded"):
        start_broker("127.0.0.1", free_port(), tmp_path / "logs" / "tansu.log")


def test_stop_process_ends_the_broker(tmp_path: Path) -> None:
    port = free_port()
    proc = start_broker("127.0.0.1", port, tmp_path / "tansu.log")
    assert is_running(proc.pid)
    assert not port_free("127.0.0.1", port)

    assert stop_process(proc.pid) is True

    assert not is_running(proc.pid)
    assert proc.poll() is not None
    assert port_free("127.0.0.1", port)
    assert stop_process(proc.pid) is False  # already gone: nothing to do


def test_stop_process_kills_what_ignores_sigterm() -> None:
    code = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready'); "
    code += "sys.stdout.flush(); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert stop_process(proc.pid, timeout=0.5) is True
        assert not is_running(proc.pid)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_running_broker_on_a_given_port_stops_on_exit() -> None:
    port = free_port()
    with running_broker(port=port) as bootstrap:
        assert bootstrap == f"127.0.0.1:{port}"
        assert create_topics(bootstrap, ["probe"], partitions=1, replication=1) == ["probe"]
    assert port_free("127.0.0.1", port)


def test_pid_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert read_pid(state, "broker") is None
    path = write_pid(state, "broker", os.getpid())
    assert path == state / "broker.pid"
    assert read_pid(state, "broker") == os.getpid()
    assert is_running(os.getpid())

    path.write_text("not a pid\n")
    assert read_pid(state, "broker") is None
    remove_pid(state, "broker")
    remove_pid(state, "broker")  # missing is fine
    assert not path.exists()
