"""`pora up` / `pora down` as an operator runs them: real processes, pid files, clear errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from streams import localstack
from streams.topics import TOPICS


def pora(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_up_status_down(tmp_path: Path) -> None:
    broker_port, gateway_port = localstack.free_port(), localstack.free_port()
    env = {
        **os.environ,
        "PORA_STATE_DIR": str(tmp_path / "state"),
        "PORA_BROKER_PORT": str(broker_port),
        "PORA_KAFKA_BOOTSTRAP": f"127.0.0.1:{broker_port}",
        "PORA_GATEWAY_PORT": str(gateway_port),
        "PORA_TOPIC_PARTITIONS": "4",
    }
    env.pop("PORA_GATEWAY_KEYS_FILE", None)
    try:
        up = pora(["up"], env)
        assert up.returncode == 0, up.stderr
        assert "broker    started" in up.stdout and "gateway   started" in up.stdout
        assert "worker    started" in up.stdout
        assert f"{len(TOPICS)} ready ({len(TOPICS)} created, 4 partitions each)" in up.stdout
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway_port}/readyz", timeout=10) as resp:
            assert json.loads(resp.read())["status"] == "ready"
        keys = json.loads((tmp_path / "state" / "demo-keys.json").read_text())
        assert {"hotel-harmoni-batam", "tpi-batam-centre", "replay"} <= set(keys)
        assert oct((tmp_path / "state" / "demo-keys.json").stat().st_mode & 0o777) == "0o600"
        assert keys["replay"]["key"] not in (tmp_path / "state" / "keys.toml").read_text()  # hashes only

        again = pora(["up"], env)
        assert again.returncode == 0 and "already running" in again.stdout

        status = pora(["status"], env)
        assert "broker    running" in status.stdout and "gateway   running" in status.stdout
        assert "worker    running" in status.stdout
    finally:
        down = pora(["down"], env)
    assert down.returncode == 0
    assert "gateway   stopped" in down.stdout and "broker    stopped" in down.stdout
    assert "worker    stopped" in down.stdout
    assert localstack.port_free("127.0.0.1", broker_port) and localstack.port_free("127.0.0.1", gateway_port)
    assert "not running" in pora(["down"], env).stdout


def test_up_names_the_port_that_is_taken(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    env = {**os.environ, "PORA_STATE_DIR": str(tmp_path / "state"), "PORA_BROKER_PORT": str(port)}
    try:
        result = pora(["up"], env)
    finally:
        holder.close()
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "PORA_BROKER_PORT" in result.stderr


def test_production_mode_refuses_default_secrets(tmp_path: Path) -> None:
    env = {**os.environ, "PORA_MODE": "production", "PORA_STATE_DIR": str(tmp_path)}
    env.pop("PORA_PERSON_KEY_SECRET", None)
    result = pora(["gateway"], env, timeout=30)
    assert result.returncode == 1
    assert "PORA_PERSON_KEY_SECRET" in result.stderr and "PORA_GATEWAY_KEYS_FILE" in result.stderr
    env["PORA_PERSON_KEY_SECRET"] = "pora-local-person-key-secret-not-for-production"
    env["PORA_GATEWAY_KEYS_FILE"] = str(tmp_path / "keys.toml")
    result = pora(["gateway"], env, timeout=30)
    assert result.returncode == 1 and "local default is not allowed" in result.stderr
