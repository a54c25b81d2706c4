"""A ClickHouse server of our own, for the integration tests, the benchmark and the local stack.

Everything lives in one directory: ``config.xml`` and ``users.xml`` (the system's users.xml when
there is one, else a passwordless ``default`` user reachable from 127.0.0.1 only), the data, the
logs and the server's stdout. The server runs in the foreground as our child, in its own session,
and is only ever addressed by the pid we started. It listens on 127.0.0.1 on its native (TCP) port
only; ``kill()`` then ``start()`` brings it back on the same port over the same data, for outages.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from xml.sax.saxutils import escape

from streams.localstack import free_port, port_free, stop_process

LOCALHOST = "127.0.0.1"
SYSTEM_USERS = Path("/etc/clickhouse-server/users.xml")
_POLL_SECONDS = 0.1
_INSTALL_HINT = (
    "install the Debian package: `apt-get install clickhouse-server clickhouse-client` "
    "(.ci/run installs clickhouse-server)"
)

_MINIMAL_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>10000000000</max_memory_usage></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
  </interval></default></quotas>
</yandex>
"""


_USERS_OVERRIDE = """<?xml version="1.0"?>
<yandex><profiles><default><poll_interval>1</poll_interval></default></profiles></yandex>
"""


class ClickHouseServerError(RuntimeError):
    """The server cannot be found, started or reached; the message says why (with its log's tail)."""


def server_command() -> list[str]:
    """The argv prefix that runs a ClickHouse server: ``clickhouse-server`` (PATH or /usr/sbin),
    else the single ``clickhouse`` binary's ``server`` mode."""
    found = shutil.which("clickhouse-server")
    if found:
        return [found]
    if os.access("/usr/sbin/clickhouse-server", os.X_OK):
        return ["/usr/sbin/clickhouse-server"]
    found = shutil.which("clickhouse")
    if found:
        return [found, "server"]
    raise ClickHouseServerError(f"no clickhouse-server on PATH or in /usr/sbin: {_INSTALL_HINT}")


class ClickHouseServer:
    """``ClickHouseServer(directory).start()``; ``tcp_port=None`` picks a free port at the first start."""

    def __init__(self, directory: Path, tcp_port: int | None = None, *, start_timeout: float = 60.0) -> None:
        self.directory = directory.resolve()
        self.host = LOCALHOST
        self._port = tcp_port
        self._fixed_port = tcp_port is not None
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._log_start: dict[Path, int] = {}

    # ------------------------------------------------------------------ facts

    @property
    def port(self) -> int:
        if self._port is None:
            raise ClickHouseServerError("the server has no port before its first start()")
        return self._port

    @property
    def url(self) -> str:
        """For ``PORA_CLICKHOUSE_URL``."""
        return f"clickhouse://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def config_path(self) -> Path:
        return self.directory / "config.xml"

    @property
    def log_paths(self) -> tuple[Path, Path, Path]:
        """The server's error log, full log and stdout/stderr."""
        return self.directory / "error.log", self.directory / "server.log", self.directory / "stdout.log"

    def log_tail(self, lines: int = 20) -> str:
        """The last lines each log got since the latest start."""
        parts = []
        for path in self.log_paths:
            try:
                with path.open("rb") as f:
                    f.seek(self._log_start.get(path, 0))
                    text = f.read().decode(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            if text:
                parts.append(f"--- {path}:\n" + "\n".join(text))
        return "\n".join(parts) or "(nothing logged)"

    # ------------------------------------------------------------------ files

    def write_config(self) -> Path:
        d = self.directory
        for sub in ("data", "tmp", "user_files", "format_schemas"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        users = d / "users.xml"
        if SYSTEM_USERS.is_file():
            shutil.copyfile(SYSTEM_USERS, users)
        else:
            users.write_text(_MINIMAL_USERS)
        # merged into users.xml by the server: idle connections notice a shutdown within a second
        # (the default poll_interval, 10 s, holds a stop that long per open client connection)
        (d / "users.d").mkdir(exist_ok=True)
        (d / "users.d" / "pora.xml").write_text(_USERS_OVERRIDE)
        error_log, server_log, _ = self.log_paths

        def p(path: Path) -> str:
            return escape(str(path))

        self.config_path.write_text(
            f"""<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>{p(server_log)}</log>
    <errorlog>{p(error_log)}</errorlog>
    <size>10M</size>
    <count>2</count>
    <console>0</console>
  </logger>
  <listen_host>{self.host}</listen_host>
  <tcp_port>{self.port}</tcp_port>
  <path>{p(d / "data")}/</path>
  <tmp_path>{p(d / "tmp")}/</tmp_path>
  <user_files_path>{p(d / "user_files")}/</user_files_path>
  <format_schema_path>{p(d / "format_schemas")}/</format_schema_path>
  <users_config>{p(users)}</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <shutdown_wait_unfinished>2</shutdown_wait_unfinished>
</yandex>
"""
        )
        return self.config_path

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ClickHouseServer:
        """Start the server and wait until ``SELECT 1`` answers. At the first start without a fixed
        port, a port taken by another process between our check and the server's bind is replaced
        by a fresh one; later starts keep the port (clients know it)."""
        if self.running:
            return self
        for attempt in range(3):
            if self._port is None:
                self._port = free_port(self.host)
            try:
                self._launch()
            except _PortTaken:
                if self._fixed_port or attempt == 2:
                    raise ClickHouseServerError(
                        f"port {self.port} on {self.host} is in use; last lines of the log:\n{self.log_tail()}"
                    ) from None
                self._port = None
                continue
            self._fixed_port = True
            return self
        raise AssertionError("unreachable")

    def _launch(self) -> None:
        if not port_free(self.host, self.port):
            raise _PortTaken
        command = server_command()
        self.write_config()
        self._log_start = {path: path.stat().st_size if path.exists() else 0 for path in self.log_paths}
        stdout = self.log_paths[2]
        with stdout.open("ab") as out:
            self._proc = subprocess.Popen(
                [*command, f"--config-file={self.config_path}"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
            )
        self._paused = False
        deadline = time.monotonic() + self.start_timeout
        try:
            while True:
                code = self._proc.poll()
                if code is not None:
                    if "Address already in use" in self.log_tail(50):
                        raise _PortTaken
                    raise ClickHouseServerError(
                        f"clickhouse-server (pid {self._proc.pid}) exited with status {code}; "
                        f"last lines of its logs:\n{self.log_tail()}"
                    )
                if self.answers():
                    return
                if time.monotonic() >= deadline:
                    raise ClickHouseServerError(
                        f"clickhouse-server (pid {self._proc.pid}) did not answer on {self.host}:{self.port} "
                        f"within {self.start_timeout:g}s; last lines of its logs:\n{self.log_tail()}"
                    )
                time.sleep(_POLL_SECONDS)
        except BaseException:
            self.kill()
            raise

    def answers(self, timeout: float = 2.0) -> bool:
        """One probe: a TCP connect, then ``SELECT 1`` over the native protocol."""
        from clickhouse_driver import Client

        try:
            with socket.create_connection((self.host, self.port), timeout=timeout):
                pass
        except OSError:
            return False  # not listening (yet): skip the driver, which logs every failed connect
        client = Client(
            host=self.host,
            port=self.port,
            connect_timeout=timeout,
            send_receive_timeout=timeout,
            sync_request_timeout=timeout,
        )
        try:
            return bool(client.execute("SELECT 1") == [(1,)])
        except Exception:
            return False
        finally:
            client.disconnect()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self._proc is None:
            return
        self.resume()
        stop_process(self._proc.pid, timeout=timeout)
        self._proc.poll()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL, no shutdown: an outage as a crash would give it (``start()`` brings it back)."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._proc.pid, signal.SIGKILL)
        self._proc.wait(30)
        self._proc = None
        self._paused = False

    def pause(self) -> None:
        """SIGSTOP: connections hang (up to the client's timeouts) instead of being refused."""
        if self.running and not self._paused:
            assert self._proc is not None
            os.kill(self._proc.pid, signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        if self._paused and self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGCONT)
        self._paused = False

    def __enter__(self) -> ClickHouseServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _PortTaken(Exception):
    pass
