"""Faults survived by the whole pipeline: gateway, detector worker, sink and ClickHouse as real
processes on the session's broker and ClickHouse server, fed over HTTP by a client that retries
what was not receipted (as a hotel system or APOA would).

Every run posts the same simulated month (a national "system" key, whose reported_at is trusted,
with the gateway's wall-clock ticks off, so event time is the file's and the alerts do not depend
on when the test runs), then one clock tick past its end. A fault-free run is the baseline; each
fault run must end with the same alert records, the same alerts as the detectors compute offline
from what is on the topics, every record in ClickHouse exactly once, and no record written twice
to a topic. Each run adds a row to ``test-results/faults.md``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest import make_topics
from test_detectors import comparable, reference
from test_sink import counts, on_topics

from connectors.gateway.ingest import Ingestor
from connectors.gateway.keys import key_entry, new_key
from connectors.gateway.publisher import KafkaPublisher
from connectors.pipeline import alerts_when_settled, start_service
from connectors.replay import read_lines
from connectors.sink.localserver import ClickHouseServer
from connectors.sink.store import ServerStore
from connectors.sink.tables import TABLES
from schemas.codec import codec
from streams import topics
from streams.localstack import free_port, stop_process
from streams.reading import read_topic
from streams.settings import Settings

PARTITIONS = 3
DAYS, TRAVELLERS, SEED = 45, 160, 11
RESULTS = Path("test-results") / "faults.md"
INPUT_TOPICS = (
    topics.HOTEL_GUEST_EVENTS,
    topics.BORDER_CROSSINGS,
    topics.SPONSOR_REPORTS,
    topics.PERMIT_UPDATES,
    topics.AGENCY_REPORTS,
)
BATCH = 50  # events per request: small, so that a fault lands between requests and inside them


@dataclass
class Run:
    fault: str
    events: int
    alerts_expected: int
    alerts_seen: int
    rows_lost: int
    rows_doubled: int
    retried_requests: int
    seconds: float


@dataclass
class Baseline:
    alerts: set[tuple[Any, ...]] = field(default_factory=set)
    rows: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, dict[str, Any]]]:
    """(kind, event) in the file's order; its closing clock tick is sent by the test itself."""
    from connectors.simulator import write_simulation

    folder = tmp_path_factory.mktemp("faults")
    events = folder / "events.jsonl"
    write_simulation(DAYS, TRAVELLERS, SEED, date(2026, 5, 4), events, folder / "truth.jsonl")
    return [(ln.kind, ln.event) for ln in read_lines(events) if ln.event is not None]


@pytest.fixture(scope="module")
def results() -> Iterator[list[Run]]:
    runs: list[Run] = []
    yield runs
    if runs:
        RESULTS.parent.mkdir(exist_ok=True)
        head = "| fault | events | alerts expected | alerts seen | rows lost | rows doubled | requests retried | s |\n"
        rule = "|---|---|---|---|---|---|---|---|\n"
        rows = "".join(
            f"| {r.fault} | {r.events} | {r.alerts_expected} | {r.alerts_seen} | {r.rows_lost} | "
            f"{r.rows_doubled} | {r.retried_requests} | {r.seconds:.0f} |\n"
            for r in runs
        )
        RESULTS.write_text(head + rule + rows)
        print("\n" + head + rule + rows)


class Pipeline:
    """Gateway, worker and sink as `pora` processes on the test's topics and database."""

    def __init__(self, bootstrap: str, server: ClickHouseServer, prefix: str, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.server = server
        database = f"f_{prefix.strip('.').replace('-', '_')}_{os.getpid()}"
        self.settings = Settings(
            kafka_bootstrap=bootstrap,
            topic_prefix=prefix,
            topic_partitions=PARTITIONS,
            state_dir=tmp_path / "state",
            gateway_keys_file=tmp_path / "keys.toml",
            gateway_port=free_port(),
            gateway_tick_seconds=0,  # event time is the file's: the test sends the closing tick
            gateway_workers=0,
            gateway_send_timeout_seconds=5,
            clickhouse_url=f"clickhouse://{server.host}:{server.port}",
            clickhouse_database=database,
            sink_batch_seconds=0.3,
            sink_retry_max_seconds=2,
            sink_metrics_port=0,
            worker_metrics_port=0,
        )
        self.key = new_key()
        (tmp_path / "keys.toml").write_text(key_entry("apoa-national", "system", "", self.key))
        self.url = f"http://127.0.0.1:{self.settings.gateway_port}"
        self.store = ServerStore(server.host, server.port, database)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.retried = 0
        make_topics(bootstrap, prefix, partitions=PARTITIONS)

    # ---------------------------------------------------------------- processes

    def start(self, name: str) -> None:
        self.procs[name] = start_service(self.settings, name, log_path=self.tmp_path / f"{name}.log")
        if name == "gateway":
            self._wait(lambda: self._get("/readyz") == 200, "the gateway to be ready")
        if name == "feed":
            self._wait(lambda: self._get("/readyz", self.settings.feed_port) == 200, "the feed to be ready")

    def kill(self, name: str) -> None:
        """No goodbye: nothing flushed, nothing committed, no group left."""
        proc = self.procs.pop(name)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self, name: str) -> None:
        stop_process(self.procs.pop(name).pid)

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        self.store.close()

    def log(self, name: str) -> str:
        path = self.tmp_path / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    # ---------------------------------------------------------------- the client

    def _get(self, path: str, port: int | None = None) -> int:
        url = f"http://127.0.0.1:{port}" if port else self.url
        try:
            with urllib.request.urlopen(url + path, timeout=5) as r:
                return int(r.status)
        except (OSError, urllib.error.HTTPError):
            return 0

    def _wait(self, check: Callable[[], bool], what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            ended = [name for name, proc in self.procs.items() if proc.poll() is not None]
            if ended or time.monotonic() > deadline:
                logs = {n: self.log(n)[-800:] for n in self.procs}
                why = f"{', '.join(ended)} ended" if ended else "timed out"
                raise AssertionError(f"{why} waiting for {what}; logs: {logs}")
            time.sleep(0.3)

    def post(self, kind: str, events: list[dict[str, Any]]) -> None:
        """One batch, sent again until receipted (the gateway answers a repeat from its index)."""
        slug = kind.replace("_", "-") + "s"
        body = json.dumps(events).encode()
        request = urllib.request.Request(
            f"{self.url}/v1/events/{slug}",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"},
        )
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(request, timeout=30) as r:
                    answer = json.loads(r.read())
                assert answer["accepted"] + answer["duplicates"] == len(events), answer
                return
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    raise AssertionError(f"{kind} batch refused: {exc.code} {exc.read()[:500]!r}") from None
            except OSError:
                pass  # the gateway is away: as a client would, wait and send the same batch again
            self.retried += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"a {kind} batch was never receipted; gateway log: {self.log('gateway')}")
            time.sleep(0.5)

    def send(
        self,
        workload: list[tuple[str, dict[str, Any]]],
        *,
        at_fraction: float = 2.0,
        fault: Callable[[], None] | None = None,
    ) -> None:
        """Post the workload in file order, one request at a time, starting ``fault`` in a thread
        of its own once ``at_fraction`` of it is receipted; then the closing clock tick."""
        done = 0
        injector: threading.Thread | None = None
        for start in range(0, len(workload), BATCH):
            chunk = workload[start : start + BATCH]
            for kind in dict.fromkeys(k for k, _ in chunk):  # kinds in order of first appearance
                self.post(kind, [e for k, e in chunk if k == kind])
            done += len(chunk)
            if fault is not None and injector is None and done >= at_fraction * len(workload):
                # beside the client, not between its requests: the next ones are in flight
                injector = threading.Thread(target=fault, name="fault")
                injector.start()
        assert fault is None or injector is not None
        if injector is not None:
            injector.join()
        end_ms = max(int(_ms(e["reported_at"])) for _, e in workload) + 86_400_000
        asyncio.run(self._tick(end_ms))

    async def _tick(self, at_ms: int) -> None:
        publisher = KafkaPublisher(self.settings.kafka_bootstrap)
        await publisher.start()
        try:
            await Ingestor(self.settings, publisher, codec()).tick("apoa-national", at_ms)
        finally:
            await publisher.stop()

    # ---------------------------------------------------------------- the outcome

    def outcome(self, fault: str, workload: list[tuple[str, dict[str, Any]]], started: float) -> tuple[Run, set[Any]]:
        expected = reference(self.settings)
        alerts = alerts_when_settled(self.settings, expected=len(expected), timeout=180)
        on = on_topics(self.settings)
        self._wait(lambda: counts(self.store) == on.by_table, "ClickHouse to hold every record", timeout=180)
        seen = comparable(alerts)
        lost = doubled = 0
        for table, ids in on.event_ids.items():
            rows = Counter(
                str(eid)
                for (eid,) in self.store.query(f"SELECT event_id FROM {self.store.database}.{table} FINAL").rows
            )
            lost += len(ids - set(rows))
            doubled += sum(n - 1 for n in rows.values())
        # a record written twice to a topic counts as doubled even though the tables collapse it
        for name in (*INPUT_TOPICS, topics.ALERTS):
            written = Counter(
                str(r.record["event_id"])
                for r in read_topic(self.settings.kafka_bootstrap, self.settings.topic(name))
                if r.record is not None
            )
            doubled += sum(n - 1 for n in written.values())
        # and every event of the workload is on its topic (the gateway namespaces ids by source)
        landed = sum(len(on.event_ids.get(TABLES[kind].name, ())) for kind in {k for k, _ in workload})
        lost += max(0, len(workload) - landed)
        run = Run(
            fault,
            len(workload),
            len(expected),
            len(seen & expected),
            lost,
            doubled,
            self.retried,
            time.monotonic() - started,
        )
        assert seen == expected, f"{len(expected - seen)} alerts missing, {len(seen - expected)} extra"
        assert (lost, doubled) == (0, 0), run
        return run, seen


def _ms(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def _kill_and_restart(p: Pipeline, name: str, pause_s: float = 0.0) -> Callable[[], None]:
    def fault() -> None:
        p.kill(name)
        time.sleep(pause_s)
        p.start(name)

    return fault


def _clickhouse_away(p: Pipeline, seconds: float) -> Callable[[], None]:
    """ClickHouse stops for ``seconds`` while the rest of the workload keeps coming."""

    def fault() -> None:
        p.server.kill()
        threading.Timer(seconds, p.server.start).start()

    return fault


FAULTS: dict[str, Callable[[Pipeline], Callable[[], None]]] = {
    "worker-kill9": lambda p: _kill_and_restart(p, "worker"),
    "clickhouse-30s": lambda p: _clickhouse_away(p, 30),
    "gateway-kill9": lambda p: _kill_and_restart(p, "gateway", 1.0),
    "sink-kill9": lambda p: _kill_and_restart(p, "sink"),
}


def run_pipeline(
    fault: str,
    bootstrap: str,
    server: ClickHouseServer,
    tmp_path: Path,
    workload: list[tuple[str, dict[str, Any]]],
    results: list[Run],
) -> Baseline:
    """The workload through a fresh pipeline, with ``fault`` (or none) 40 % of the way in."""
    started = time.monotonic()
    p = Pipeline(bootstrap, server, f"flt-{fault}.", tmp_path)
    try:
        for name in ("gateway", "worker", "sink"):
            p.start(name)
        time.sleep(3)  # the worker's group settles before input arrives
        make_fault = FAULTS.get(fault)
        p.send(workload, at_fraction=0.4, fault=make_fault(p) if make_fault else None)
        p._wait(lambda: server.running, "ClickHouse to be back", timeout=60)
        run, seen = p.outcome(fault, workload, started)
        results.append(run)
        return Baseline(seen, counts(p.store))
    finally:
        p.close()
        if not server.running:
            server.start()  # the session's server, for the tests after this one


@pytest.fixture(scope="module")
def baseline(
    kafka_bootstrap: str,
    clickhouse_server: ClickHouseServer,
    tmp_path_factory: pytest.TempPathFactory,
    workload: list[tuple[str, dict[str, Any]]],
    results: list[Run],
) -> Baseline:
    """The fault-free run of the same workload."""
    return run_pipeline("none", kafka_bootstrap, clickhouse_server, tmp_path_factory.mktemp("none"), workload, results)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_pipeline_survives(
    fault: str,
    baseline: Baseline,
    kafka_bootstrap: str,
    clickhouse_server: ClickHouseServer,
    tmp_path: Path,
    workload: list[tuple[str, dict[str, Any]]],
    results: list[Run],
) -> None:
    faulted = run_pipeline(fault, kafka_bootstrap, clickhouse_server, tmp_path, workload, results)
    assert faulted.alerts == baseline.alerts, "the alerts differ from the fault-free run's"
    assert faulted.rows == baseline.rows, f"rows {faulted.rows} differ from the fault-free run's {baseline.rows}"


def test_the_feed_stopped_with_actions_in_flight_loses_and_doubles_no_action(
    baseline: Baseline,
    kafka_bootstrap: str,
    clickhouse_server: ClickHouseServer,
    tmp_path: Path,
    workload: list[tuple[str, dict[str, Any]]],
    results: list[Run],
) -> None:
    """Officers' API clients triage every alert (with Idempotency-Keys, retrying what was not
    answered) while the feed is killed and started again: each action is on alerts.actions and in
    ClickHouse exactly once, and the alerts are the fault-free run's."""
    from connectors.feed.users import User, UserStore, hash_password, token_hash

    started = time.monotonic()
    p = Pipeline(kafka_bootstrap, clickhouse_server, "flt-feed.", tmp_path)
    token = new_key()
    users = UserStore.load(tmp_path / "users.toml")
    users.add(User("ops", "admin", frozenset(), frozenset(), hash_password(new_key()), token_hash(token)))
    users.save(tmp_path / "users.toml")
    p.settings = p.settings.model_copy(update={"feed_users_file": tmp_path / "users.toml", "feed_port": free_port()})
    feed_url = f"http://127.0.0.1:{p.settings.feed_port}"  # the started feed was ready (Pipeline.start)

    try:
        for name in ("gateway", "worker", "sink", "feed"):
            p.start(name)
        time.sleep(3)
        p.send(workload)
        expected = reference(p.settings)
        alert_ids = sorted({a[0] for a in expected})
        plan = [(aid, action) for aid in alert_ids for action in ("ACKNOWLEDGE", "COMMENT")]
        retried = Counter[str]()

        def act(aid: str, action: str) -> int:
            body = json.dumps({"action": action, "comment": "checked" if action == "COMMENT" else None}).encode()
            request = urllib.request.Request(
                f"{feed_url}/api/alerts/{aid}/actions",
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {token}",
                    "Idempotency-Key": f"{aid}-{action}",
                },
            )
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(request, timeout=10) as r:
                        return int(r.status)
                except urllib.error.HTTPError as exc:
                    if exc.code not in (404, 503):  # 404: a restarted feed has not read that alert yet
                        raise AssertionError(f"{action} {aid}: {exc.code} {exc.read()[:300]!r}") from None
                except OSError:
                    pass  # the feed is away: the same action again, same key
                retried[action] += 1
                if time.monotonic() > deadline:
                    raise AssertionError(f"{action} {aid} never answered; feed log: {p.log('feed')}")
                time.sleep(0.3)

        answers: list[int] = []
        workers = [
            threading.Thread(target=lambda part=part: answers.extend(act(a, x) for a, x in part))
            for part in (plan[0::3], plan[1::3], plan[2::3])
        ]
        for w in workers:
            w.start()
        p._wait(lambda: len(answers) >= len(plan) // 4, "a quarter of the actions")
        p.kill("feed")  # mid-flight: the three clients have requests open
        p.start("feed")
        for w in workers:
            w.join()
        assert len(answers) == len(plan) and set(answers) <= {200, 201}, Counter(answers)

        written = Counter(
            (str(r.record["alert_id"]), str(r.record["action"]))
            for r in read_topic(p.settings.kafka_bootstrap, p.settings.topic(topics.ALERT_ACTIONS))
            if r.record is not None
        )
        doubled = sum(n - 1 for n in written.values())
        lost = len(set(plan) - set(written))
        p._wait(lambda: counts(p.store)["alert_actions"] == len(written), "the actions in ClickHouse")
        in_table = Counter(
            str(eid) for (eid,) in p.store.query(f"SELECT event_id FROM {p.store.database}.alert_actions FINAL").rows
        )
        doubled += sum(n - 1 for n in in_table.values())
        run, seen = p.outcome("feed-kill9 (actions)", workload, started)
        run.retried_requests += sum(retried.values())
        run.rows_lost += lost
        run.rows_doubled += doubled
        results.append(run)
        assert (lost, doubled) == (0, 0), run
        assert seen == baseline.alerts
        rows = counts(p.store)
        assert rows == {**baseline.rows, "alert_actions": len(plan)}
    finally:
        p.close()
