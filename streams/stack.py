"""`pora up` / `pora down`: the embedded local stack (Tansu broker, topics, gateway) as processes
recorded by pid under the state directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from connectors.gateway.keys import key_entry, new_key
from connectors.samples import AGENCY, CHECKPOINTS, ESTABLISHMENTS, SPONSOR
from streams import localstack
from streams.settings import Mode, Settings
from streams.topics import TOPICS

BROKER, GATEWAY, WORKER, FEED = "broker", "gateway", "worker", "feed"


@dataclass(frozen=True)
class DemoKey:
    source_id: str
    kind: str
    binds: str
    key: str


def demo_keys_path(settings: Settings) -> Path:
    return settings.state_dir / "demo-keys.json"


def ensure_local_keys(settings: Settings) -> dict[str, DemoKey]:
    """In local mode, create a key file with one key per demo source (kept in plain text beside it,
    readable only by the owner, for the demo); production keys are made with `pora keys add`."""
    plain = demo_keys_path(settings)
    if settings.keys_file.exists() and plain.exists():
        return {k: DemoKey(**v) for k, v in json.loads(plain.read_text()).items()}
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    est = ESTABLISHMENTS[0]
    wanted = [
        (
            "hotel-harmoni-batam",
            "hotel",
            est["establishment_id"],
            {"name": est["name"], "region": est["region"], "office": est["office"], "utc_offset": "+07:00"},
        ),
        ("tpi-batam-centre", "checkpoint", CHECKPOINTS[0]["checkpoint_id"], {}),
        ("tpi-soekarno-hatta", "checkpoint", CHECKPOINTS[1]["checkpoint_id"], {}),
        ("sponsor-sinar-baja", "sponsor", SPONSOR["sponsor_id"], {}),
        ("polres-mojokerto", "agency", AGENCY["agency_id"], {}),
        ("kanim-batam", "office", "KANIM-BATAM", {}),
        ("replay", "system", "", {}),
    ]
    keys: dict[str, DemoKey] = {}
    lines = ["# Pora API keys (local stack). Only SHA-256 hashes of the keys are kept here.\n\n"]
    for source_id, kind, binds, profile in wanted:
        key = new_key()
        keys[source_id] = DemoKey(source_id, kind, binds, key)
        lines.append(key_entry(source_id, kind, binds, key, **profile))
    settings.keys_file.write_text("".join(lines))
    plain.write_text(json.dumps({k: vars(v) for k, v in keys.items()}, indent=2))
    os.chmod(plain, 0o600)
    return keys


def _gateway_url(settings: Settings) -> str:
    return f"http://{settings.gateway_host}:{settings.gateway_port}"


def _ready(url: str, path: str = "/readyz") -> bool:
    try:
        with urllib.request.urlopen(url + path, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PORA_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "PORA_STATE_DIR": str(settings.state_dir.resolve()),
            "PORA_GATEWAY_HOST": settings.gateway_host,
            "PORA_GATEWAY_PORT": str(settings.gateway_port),
            "PORA_GATEWAY_KEYS_FILE": str(settings.keys_file.resolve()),
            "PORA_TOPIC_PREFIX": settings.topic_prefix,
            "PORA_FEED_HOST": settings.feed_host,
            "PORA_FEED_PORT": str(settings.feed_port),
        }
    )
    return env


def up(settings: Settings, *, say: Callable[[str], object] = print) -> None:
    if settings.mode is Mode.PRODUCTION:
        raise localstack.StackError("`pora up` runs the embedded local stack; in production deploy with deploy/")
    state = settings.state_dir
    state.mkdir(parents=True, exist_ok=True)
    bootstrap = f"{settings.broker_host}:{settings.broker_port}"
    if settings.kafka_bootstrap != bootstrap:
        settings = settings.model_copy(update={"kafka_bootstrap": bootstrap})

    pid = localstack.read_pid(state, BROKER)
    if pid is not None and localstack.is_running(pid):
        say(f"broker    already running (pid {pid}) on {bootstrap}")
    else:
        proc = localstack.start_broker(settings.broker_host, settings.broker_port, state / "broker.log")
        localstack.write_pid(state, BROKER, proc.pid)
        say(f"broker    started (pid {proc.pid}) on {bootstrap}, log {state / 'broker.log'}")

    names = [settings.topic(t.name) for t in TOPICS]
    created = localstack.create_topics(
        bootstrap,
        names,
        settings.topic_partitions,
        settings.topic_replication,
        max_message_bytes=settings.kafka_max_message_bytes,
    )
    say(f"topics    {len(names)} ready ({len(created)} created, {settings.topic_partitions} partitions each)")

    ensure_local_keys(settings)
    _start_gateway(settings, say)
    _start_worker(settings, say)
    start_feed(settings, say)


def _spawn(settings: Settings, name: str, args: list[str]) -> subprocess.Popen[bytes]:
    log_path = settings.state_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_env(settings),
            start_new_session=True,
        )
    localstack.write_pid(settings.state_dir, name, proc.pid)
    return proc


def _exited(settings: Settings, name: str) -> localstack.StackError:
    tail = (settings.state_dir / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
    localstack.remove_pid(settings.state_dir, name)
    return localstack.StackError(f"the {name} exited at start:\n" + "\n".join(tail))


def _start_gateway(settings: Settings, say: Callable[[str], object]) -> None:
    state = settings.state_dir
    url = _gateway_url(settings)
    pid = localstack.read_pid(state, GATEWAY)
    if pid is not None and localstack.is_running(pid):
        say(f"gateway   already running (pid {pid}) at {url}")
        return
    if not localstack.port_free(settings.gateway_host, settings.gateway_port):
        raise localstack.PortInUseError(
            f"port {settings.gateway_port} on {settings.gateway_host} is already in use: "
            "stop what holds it or set PORA_GATEWAY_PORT"
        )
    proc = _spawn(settings, GATEWAY, ["gateway"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _exited(settings, GATEWAY)
        if _ready(url):
            say(f"gateway   started (pid {proc.pid}) at {url}, log {state / 'gateway.log'}")
            return
        time.sleep(0.2)
    raise localstack.StackError(f"the gateway did not become ready within 60 s; see {state / 'gateway.log'}")


def _start_worker(settings: Settings, say: Callable[[str], object]) -> None:
    pid = localstack.read_pid(settings.state_dir, WORKER)
    if pid is not None and localstack.is_running(pid):
        say(f"worker    already running (pid {pid})")
        return
    log_path = settings.state_dir / "worker.log"
    seen = log_path.stat().st_size if log_path.exists() else 0  # only this start's lines count
    proc = _spawn(settings, WORKER, ["worker"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _exited(settings, WORKER)
        if "Worker ready" in log_path.read_bytes()[seen:].decode(errors="replace"):
            say(f"worker    started (pid {proc.pid}), log {log_path}")
            return
        time.sleep(0.2)
    raise localstack.StackError(f"the detector worker did not become ready within 60 s; see {log_path}")


def start_feed(settings: Settings, say: Callable[[str], object], *, restart: bool = False) -> str:
    """The supervisor feed on ``settings``' topics; ``restart``: replace a running one (the demo
    points it at the simulation's topics). Returns its address."""
    from connectors.feed.users import ensure_demo_users

    state = settings.state_dir
    url = f"http://{settings.feed_host}:{settings.feed_port}/"
    pid = localstack.read_pid(state, FEED)
    if pid is not None and localstack.is_running(pid):
        if not restart:
            say(f"feed      already running (pid {pid}) at {url}")
            return url
        localstack.stop_process(pid)
        localstack.remove_pid(state, FEED)
    if not localstack.port_free(settings.feed_host, settings.feed_port):
        raise localstack.PortInUseError(
            f"port {settings.feed_port} on {settings.feed_host} is already in use: "
            "stop what holds it or set PORA_FEED_PORT"
        )
    ensure_demo_users(settings.users_file, state / "demo-users.json")
    proc = _spawn(settings, FEED, ["feed"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _exited(settings, FEED)
        if _ready(url, "healthz"):
            say(f"feed      started (pid {proc.pid}) at {url}, log {state / 'feed.log'}")
            return url
        time.sleep(0.2)
    raise localstack.StackError(f"the feed did not become ready within 60 s; see {state / 'feed.log'}")


def down(settings: Settings, *, say: Callable[[str], object] = print) -> None:
    for name in (FEED, WORKER, GATEWAY, BROKER):
        pid = localstack.read_pid(settings.state_dir, name)
        if pid is None:
            say(f"{name:<9} not running")
            continue
        stopped = localstack.stop_process(pid)
        localstack.remove_pid(settings.state_dir, name)
        say(f"{name:<9} {'stopped' if stopped else 'was not running'} (pid {pid})")
