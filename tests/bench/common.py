"""Helpers shared by the benchmarks: requests, rows, child processes, a whole local stack on free
ports, Prometheus scrapes, /proc readings, an open-loop paced sender and a feed live-stream client.

This module imports no other benchmark module (they import it), so it stays a leaf:

- moved here from ``bench_gateway``: :class:`Request`, the per-kind batching of ``generate``
  (:func:`iter_requests`), :func:`proc_sample`;
- moved here from ``bench_detectors``: :class:`Child`, :func:`child`, :func:`child_env`;
- moved here from ``bench_sink``: :func:`table_rows` (records decoded as the sink decodes them);
- new, for ``bench_e2e`` and ``bench_load``: :class:`LocalStack`, :func:`scrape`, :func:`usage`,
  :class:`PacedSender`, :class:`FeedStream`, :class:`Periodic` and the table writers;
- for ``bench_load``'s default workload: :func:`simulation_files` (a simulated history of years,
  made once in a child process and cached) and :class:`History` (its requests in file order, with
  the event-time clock ticks that a system key's replay needs).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

import aiohttp
import orjson
from pydantic import SecretStr

from connectors.gateway.app import SLUGS
from connectors.gateway.ingest import Ingestor
from connectors.gateway.keys import key_entry, new_key
from connectors.gateway.publisher import KafkaPublisher, OutRecord
from connectors.replay import read_lines
from connectors.samples import SampleFactory
from connectors.sink.localserver import ClickHouseServer
from connectors.sink.tables import TABLES, Row
from schemas.codec import codec
from streams.localstack import PortInUseError, create_topics, free_port, start_broker, stop_process
from streams.settings import LOCAL_PERSON_KEY_SECRET, Settings
from streams.topics import TOPICS

REPO = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
SLUG_OF_KIND = {kind: slug for slug, kind in SLUGS.items()}
# faust's log line once the fetcher runs after the partition assignment: "[2026-11-25 17:09:16,536] ... Worker ready"
WIB = timezone(timedelta(hours=7))
READY_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\].*\bWorker ready\b")


# ---------------------------------------------------------------- requests and rows


@dataclass(frozen=True)
class Request:
    kind: str
    path: str  # /v1/events/<slug>
    body: bytes  # the JSON array, serialised once
    events: int


def iter_requests(events: Iterable[tuple[str, dict[str, Any]]], batch: int) -> Iterator[Request]:
    """``(kind, event)`` pairs grouped per kind into requests of ``batch`` events, each yielded when
    its batch filled (so the kinds interleave as they would in traffic); the partial batches at the
    end of ``events``, kind by kind. Lazy: an endless ``events`` gives endless requests."""
    pending: dict[str, list[dict[str, Any]]] = {}

    def request(kind: str) -> Request | None:
        values = pending.pop(kind, [])
        if not values:
            return None
        return Request(kind, f"/v1/events/{SLUG_OF_KIND[kind]}", orjson.dumps(values), len(values))

    for kind, value in events:
        pending.setdefault(kind, []).append(value)
        if len(pending[kind]) >= batch:
            full = request(kind)
            if full is not None:
                yield full
    for kind in list(pending):
        rest = request(kind)
        if rest is not None:
            yield rest


def batch_requests(events: Iterable[tuple[str, dict[str, Any]]], batch: int) -> list[Request]:
    return list(iter_requests(events, batch))


def table_rows(records: Iterable[OutRecord]) -> list[tuple[str, Row]]:
    """``(table, row)`` for each record, decoded as the sink decodes them, in the records' order."""
    c = codec()
    out: list[tuple[str, Row]] = []
    for r in records:
        kind, record = c.decode(r.value, ms_times=True)
        table = TABLES[kind]
        out.append((table.name, table.row(record)))
    return out


class LiveMix:
    """Endless live traffic: the gateway bench's mix of samples (``mix``: (sample, kind, weight)) for a
    bounded population of ``travellers`` foreigners and a fifth as many citizens, ``risky_share`` of the
    citizens' departures risky, each event occurred 1-60 minutes before it was made (no ``reported_at``:
    the gateway stamps it)."""

    def __init__(self, seed: int, travellers: int, risky_share: float, mix: Sequence[tuple[str, str, float]]) -> None:
        self.mix = tuple(mix)
        self.factory = SampleFactory(seed=seed, today=datetime.now(WIB).date())
        self.rng = random.Random(seed + 1)
        self.foreigners = [self.factory.identity() for _ in range(travellers)]
        self.citizens = [self.factory.identity("IDN") for _ in range(max(1, travellers // 5))]
        self.risky_share = risky_share
        self.produced = 0
        self.by_sample: Counter[str] = Counter()
        self.risky = 0

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        names = [name for name, _, _ in self.mix]
        weights = [w for _, _, w in self.mix]
        f, rng = self.factory, self.rng
        while True:
            for name in rng.choices(names, weights, k=1000):
                if name == "hotel_check_in":
                    kind, event = "hotel_guest_event", f.hotel_check_in(guest=rng.choice(self.foreigners))
                elif name == "arrival":
                    kind, event = "border_crossing", f.arrival(traveller=rng.choice(self.foreigners))
                else:
                    risky = rng.random() < self.risky_share
                    kind, event = "border_crossing", f.citizen_departure(risky=risky)
                    event["traveller"] = rng.choice(self.citizens)
                    self.risky += risky
                occurred = datetime.now(WIB) - timedelta(seconds=rng.randint(60, 3600))
                event["occurred_at"] = occurred.isoformat(timespec="seconds")
                self.produced += 1
                self.by_sample[name] += 1
                yield kind, event

    def schedule(self, rate: float, seconds: float, batch: int) -> Iterator[tuple[float, Request]]:
        """(due, request): a request is due when its batch filled, at ``rate`` events a second."""
        start = self.produced
        for request in iter_requests(self.events(), batch):
            due = (self.produced - start) / rate
            if due > seconds:
                return
            yield due, request


# ---------------------------------------------------------------- simulated history

# The simulator's travellers each make one trip, arriving on a day drawn uniformly over the span, so
# a steady number of arrivals a day gives a steady population: ~150 a day is ~800 events a simulated
# day (hotel stays, crossings, permit updates; the sponsors' monthly reports besides), 5.3 events per
# traveller (measured: simulate(146, 22_000) has 117,347 events).
SIM_START = date(2021, 1, 1)
SIM_TRAVELLERS_PER_DAY = 150
SIM_EVENTS_PER_TRAVELLER = 5.3


def history_size(events: int) -> tuple[int, int]:
    """(days, travellers) of a simulation with at least ``events`` events (5 % to spare) at
    :data:`SIM_TRAVELLERS_PER_DAY` arrivals a day."""
    travellers = math.ceil(events * 1.05 / SIM_EVENTS_PER_TRAVELLER)
    days = max(60, math.ceil(travellers / SIM_TRAVELLERS_PER_DAY))
    return days, days * SIM_TRAVELLERS_PER_DAY


@dataclass(frozen=True)
class HistoryFiles:
    """A simulation's events and truth (JSON lines, as ``write_simulation`` writes them) and what
    is known of them (``meta``: days, travellers, seed, start, events, by_kind, first_ms, last_ms,
    end_ms, truth, withdrawn, seconds, peak_rss_mb)."""

    folder: Path
    meta: dict[str, Any]
    cached: bool  # made by an earlier run

    @property
    def events(self) -> Path:
        return self.folder / "events.jsonl"

    @property
    def truth(self) -> Path:
        return self.folder / "truth.jsonl"


def _simulation_key(days: int, travellers: int, seed: int, start: date) -> str:
    """What the files depend on: the arguments, the simulator's code and the rules' numbers it reads
    (not their version, which changes with numbers the simulator does not read)."""
    from connectors import simulator

    digest = hashlib.sha256(Path(simulator.__file__).read_bytes())
    numbers = dataclasses.asdict(simulator.load_rules())
    del numbers["version"]
    digest.update(json.dumps(numbers, sort_keys=True, default=sorted).encode())  # sets sorted: no hash order
    return f"{start.isoformat()}-{days}d-{travellers}t-seed{seed}-{digest.hexdigest()[:10]}"


def simulation_files(
    cache: Path, days: int, travellers: int, seed: int, start: date = SIM_START, say: Callable[[str], object] = print
) -> HistoryFiles:
    """The simulation's files in ``cache``, made first (in a child process: a million events take
    minutes and gigabytes, which the benchmark's own process should not hold) unless an earlier run
    made them with the same arguments, simulator and rules."""
    folder = cache / f"history-{_simulation_key(days, travellers, seed, start)}"
    meta_path = folder / "meta.json"  # written last: the files are complete
    if meta_path.exists():
        return HistoryFiles(folder, orjson.loads(meta_path.read_bytes()), cached=True)
    cache.mkdir(parents=True, exist_ok=True)
    work = cache / f".{folder.name}.{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    say(
        f"simulating {days:,} days of {travellers:,} travellers (seed {seed}, from {start}) into {folder} "
        "(once: later runs with the same arguments use the files)"
    )
    code = "import sys; from tests.bench.common import write_history; write_history(*sys.argv[1:])"
    argv = [sys.executable, "-c", code, str(work), str(days), str(travellers), str(seed), start.isoformat()]
    try:
        subprocess.run(argv, cwd=REPO, check=True)
        if folder.exists():  # another run made them meanwhile
            shutil.rmtree(work)
        else:
            work.rename(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return HistoryFiles(folder, orjson.loads(meta_path.read_bytes()), cached=False)


def write_history(folder: str, days: str, travellers: str, seed: str, start: str) -> None:
    """The child process of :func:`simulation_files`: the files and ``meta.json``."""
    import resource

    from connectors.simulator import write_simulation
    from schemas.validation import parse_timestamp_ms

    started = time.monotonic()
    out = Path(folder)
    sim = write_simulation(
        int(days), int(travellers), int(seed), date.fromisoformat(start), out / "events.jsonl", out / "truth.jsonl"
    )
    times = [parse_timestamp_ms(e["event"]["reported_at"]) for e in sim.events]
    meta = {
        "days": int(days),
        "travellers": int(travellers),
        "seed": int(seed),
        "start": start,
        "events": len(sim.events),
        "by_kind": dict(Counter(e["kind"] for e in sim.events)),
        "first_ms": min(times),
        "last_ms": max(times),
        "end_ms": int(sim.end.timestamp() * 1000),
        "truth": len(sim.truth),
        "withdrawn": len(sim.withdrawn),
        "seconds": round(time.monotonic() - started, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    (out / "meta.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))


HISTORY_MAX_AGE = 4  # x batch: how many events back a kind's group may start before it goes
HISTORY_RETRY_AFTER_S = 2.0  # a request answered 503 goes again this much later
HISTORY_RETRIES = 10  # posts of one request at most
HISTORY_RETRY_WAIT_S = 60.0  # after the sending, the longest wait for the retries


@dataclass(frozen=True)
class HistoryRequest(Request):
    seq: int = 0
    first_ms: int = 0  # reported_at of its first event (the earliest: they are in file order)
    lines: tuple[int, ...] = ()  # the events' line numbers in the file


class History:
    """A simulated history, read from its file as it is sent, across the stages of a run. The
    events are grouped per kind in file (``reported_at``) order, each kind's group going as a
    request when it holds ``batch`` events or when its first event is ``HISTORY_MAX_AGE`` x
    ``batch`` events behind in the file (a rare kind, permit updates and sponsor reports, waits no
    longer): requests of one kind, mostly of ``batch`` events, reordered by a few hundred events at
    most (hours of event time). (Cutting at every change of kind would keep the file's order but
    give requests of 2 events on average: hotel and border events alternate.)

    Event time is the file's: the gateway keeps a system key's ``reported_at`` and its wall-clock
    ticks are off, so :meth:`send` writes the ticks itself (as ``pora replay`` does): every
    ``tick_s`` seconds, a clock tick into every partition of every ingestion topic at the time of
    the earliest event not yet answered, whether still grouped or in a request on its way (every
    earlier event is on its topic or was refused). Without them a worker would release nothing:
    its watermark is the least of its input topics' times, and agency reports never come."""

    def __init__(self, files: HistoryFiles) -> None:
        self.files = files
        self._lines = (ln for ln in read_lines(files.events) if ln.event is not None)
        self._next: Any = None  # a line read but not due before the stage's end: the next stage's first
        self._groups: dict[str, list[Any]] = {}  # kind -> lines read, not yet in a request
        self._seq = 0
        self._pending: dict[int, HistoryRequest] = {}  # handed to the sender, not answered
        self.read = 0  # events read from the file (grouped or handed out)
        self.produced = 0  # events handed to the sender
        self.by_kind: Counter[str] = Counter()
        self.exhausted = False  # every event of the file was handed out
        self.last_line = 0  # the file's last line handed out
        self.first_ms: int | None = None  # reported_at of the first event handed out
        self.last_ms: int | None = None  # ... and of the last
        self.stage_first_ms: int | None = None  # of the first handed out by the latest schedule
        self.lost: set[int] = set()  # lines of events handed out but not taken by the gateway
        self.unsent: set[int] = set()  # lines read but never handed out (grouped when the run ended)
        self.partial = 0  # requests answered 200 with fewer events taken than sent (all counted lost)
        self.retried_requests = 0  # posts beyond the first (answered 503 or not at all)
        self.retried_taken = 0  # requests taken on a retry
        self._attempts: Counter[int] = Counter()  # seq -> failed posts
        self._unavailable: dict[int, list[int]] = {}  # seq -> indexes its last 503 said were not taken
        self._resending: set[asyncio.Task[None]] = set()
        self._retrying = False
        self._session: aiohttp.ClientSession | None = None
        self._url = ""
        self.ticked_ms: int | None = None  # the last clock tick's time
        self.ticks = 0
        self.tick_failures: list[str] = []
        self.closed_ms: int | None = None  # the closing tick's time

    @property
    def complete(self) -> bool:
        """Every event of the file was sent and taken: the file's truth holds."""
        return self.exhausted and not self._groups and not self.lost and not self.unsent

    def schedule(self, rate: float, seconds: float, batch: int) -> Iterator[tuple[float, Request]]:
        """(due, request) at ``rate`` events a second until ``seconds`` or the end of the file (then
        every group goes); a request is due when its last event was read."""
        start = self.read
        self.stage_first_ms = None
        max_age = HISTORY_MAX_AGE * batch
        groups = self._groups
        while True:
            ln = self._next if self._next is not None else next(self._lines, None)
            self._next = None
            if ln is None:
                self.exhausted = True
                due = (self.read - start) / rate
                for kind in list(groups):
                    yield due, self._request(kind)
                return
            due = (self.read + 1 - start) / rate
            if due > seconds:
                self._next = ln
                return
            self.read += 1
            group = groups.setdefault(ln.kind, [])
            group.append(ln)
            if len(group) >= batch:
                yield due, self._request(ln.kind)
            for kind, lines in list(groups.items()):
                if ln.number - lines[0].number >= max_age:
                    yield due, self._request(kind)

    def _request(self, kind: str) -> HistoryRequest:
        lines = self._groups.pop(kind)
        self._seq += 1
        body = orjson.dumps([ln.event for ln in lines])
        first, last = lines[0].at, lines[-1].at
        r = HistoryRequest(
            kind,
            f"/v1/events/{SLUG_OF_KIND[kind]}",
            body,
            len(lines),
            self._seq,
            first,
            tuple(ln.number for ln in lines),
        )
        self._pending[r.seq] = r
        self.produced += len(lines)
        self.by_kind[kind] += len(lines)
        self.last_line = max(self.last_line, lines[-1].number)
        self.first_ms = first if self.first_ms is None else min(self.first_ms, first)
        self.stage_first_ms = first if self.stage_first_ms is None else min(self.stage_first_ms, first)
        self.last_ms = last if self.last_ms is None else max(self.last_ms, last)
        return r

    def on_answer(self, request: Request, status: int, body: dict[str, Any] | None, _at: float) -> None:
        """The sender's answers (``PacedSender.on_answer``)."""
        if isinstance(request, HistoryRequest):
            self._answer(request, status, body)

    def _answer(self, request: HistoryRequest, status: int, body: dict[str, Any] | None) -> None:
        taken = int(body.get("accepted", 0)) + int(body.get("duplicates", 0)) if body is not None else 0
        if status == 200 and taken >= request.events:
            self.retried_taken += self._attempts.pop(request.seq, 0) > 0
            self._done(request, taken=True)
            return
        if body is not None and isinstance(body.get("unavailable"), list):
            self._unavailable[request.seq] = [int(i) for i in body["unavailable"]]
        self._attempts[request.seq] += 1
        # 503 (the broker did not acknowledge in time) or no answer: send it again, as a client
        # would; it stays pending meanwhile, so no clock tick passes its events
        if (status == 0 or status >= 500) and self._attempts[request.seq] < HISTORY_RETRIES and self._retrying:
            task = asyncio.get_running_loop().create_task(self._resend(request))
            self._resending.add(task)
            task.add_done_callback(self._resending.discard)
            return
        if status == 200:
            self.partial += 1  # some refused: not expected of the simulator's events
        self._done(request, taken=False)

    async def _resend(self, request: HistoryRequest) -> None:
        status, body = 0, None
        try:
            await asyncio.sleep(HISTORY_RETRY_AFTER_S)
            if self._session is None:
                raise RuntimeError("no session")
            self.retried_requests += 1
            try:
                async with self._session.post(self._url + request.path, data=request.body) as resp:
                    status, raw = resp.status, await resp.read()
                parsed = orjson.loads(raw) if raw else None
                body = parsed if isinstance(parsed, dict) else None
            except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
                status = 0
        except asyncio.CancelledError:
            self._done(request, taken=False)  # given up at the end of the stage
            raise
        self._answer(request, status, body)

    def _done(self, request: HistoryRequest, *, taken: bool) -> None:
        self._pending.pop(request.seq, None)
        self._attempts.pop(request.seq, None)
        unavailable = self._unavailable.pop(request.seq, None)
        if not taken:
            if unavailable is not None:  # the rest were receipted
                self.lost.update(request.lines[i] for i in unavailable if 0 <= i < len(request.lines))
            else:
                self.lost.update(request.lines)

    def frontier(self) -> int | None:
        """The latest time a clock tick may claim: that of the earliest event read and not yet
        answered (grouped, or in a request not answered), else of the next line to read, else of
        the last handed out."""
        times: list[int] = [lines[0].at for lines in self._groups.values()]
        times += [r.first_ms for r in self._pending.values()]
        if times:
            return min(times)
        return int(self._next.at) if self._next is not None else self.last_ms

    async def send(
        self,
        sender: PacedSender,
        schedule: Iterable[tuple[float, Request]],
        settings: Settings,
        *,
        until: float,
        tick_s: float,
    ) -> None:
        """``sender.run(schedule)`` with the clock ticks beside it, requests answered 503 (or not at
        all) sent again until taken (the sender's figures count only the first try), and a tick at
        the end. Requests still not taken ``HISTORY_RETRY_WAIT_S`` after the sending, or handed out
        but never sent (time was up), count as lost."""
        publisher = KafkaPublisher(settings.kafka_bootstrap, client_id="pora-bench-ticks")
        await publisher.start()
        ingestor = Ingestor(settings, publisher, codec())
        loop = asyncio.get_running_loop()
        timeout = aiohttp.ClientTimeout(total=sender.timeout_s, sock_connect=10)
        try:
            async with aiohttp.ClientSession(timeout=timeout, headers=sender.headers) as session:
                self._session, self._url, self._retrying = session, sender.url, True
                sending = asyncio.create_task(sender.run(schedule, until=until))
                while not sending.done():
                    await asyncio.wait({sending}, timeout=tick_s if tick_s > 0 else None)
                    await self._tick(ingestor, self.frontier())
                await sending
                deadline = loop.time() + HISTORY_RETRY_WAIT_S
                while self._resending and loop.time() < deadline:
                    await asyncio.wait(set(self._resending), timeout=max(tick_s, 0.5))
                    await self._tick(ingestor, self.frontier())
                self._retrying = False
                for task in list(self._resending):
                    task.cancel()
                await asyncio.gather(*self._resending, return_exceptions=True)
                self._session = None
            for request in list(self._pending.values()):
                self._done(request, taken=False)
            await self._tick(ingestor, self.frontier())
        finally:
            await publisher.stop()

    async def _tick(self, ingestor: Ingestor, at: int | None) -> None:
        if at is None or (self.ticked_ms is not None and at <= self.ticked_ms):
            return
        try:
            await ingestor.tick(BENCH_SOURCE, at)
        except Exception as exc:  # the broker may be busy: the next tick claims as much
            self.tick_failures.append(repr(exc))
            return
        self.ticked_ms = at
        self.ticks += 1

    async def close(self, settings: Settings, lateness_ms: int) -> int:
        """The closing tick, after the last stage: at the simulation's end when every event was
        sent and taken (the truth file's horizon), else just past the last event sent, so that
        every partition releases all it holds. Returns its time."""
        for lines in self._groups.values():  # read, never sent
            self.unsent.update(ln.number for ln in lines)
        self._groups.clear()
        if self.complete:
            at = int(self.files.meta["end_ms"])
        else:
            at = (self.last_ms or int(self.files.meta["first_ms"])) + 2 * lateness_ms + 1000
        publisher = KafkaPublisher(settings.kafka_bootstrap, client_id="pora-bench-ticks")
        await publisher.start()
        try:
            await Ingestor(settings, publisher, codec()).tick(BENCH_SOURCE, at)
        finally:
            await publisher.stop()
        self.closed_ms = at
        return at

    def truth(self, lateness_ms: int) -> tuple[list[dict[str, Any]], str]:
        """The alerts the rules give for what was sent, up to the closing tick (its time less the
        lateness: the worker's last watermark), and where they came from: the file's truth when all
        was sent, else :func:`connectors.simulator.ground_truth` over the events taken."""
        from connectors.simulator import ground_truth

        if self.complete:
            lines = self.files.truth.read_bytes().splitlines()
            return [orjson.loads(line) for line in lines if line.strip()], "the simulation's truth file"
        if self.closed_ms is None:
            raise RuntimeError("the closing tick was not sent")
        events = [
            {"kind": ln.kind, "event": ln.event}
            for ln in itertools.takewhile(lambda ln: ln.number <= self.last_line, read_lines(self.files.events))
            if ln.event is not None and ln.number not in self.lost and ln.number not in self.unsent
        ]
        end = datetime.fromtimestamp((self.closed_ms - lateness_ms) / 1000, tz=UTC)
        truth, _ = ground_truth(events, end)
        return truth, f"ground_truth() over the {len(events):,} events sent, to {end.isoformat(timespec='seconds')}"


# ---------------------------------------------------------------- /proc


@dataclass(frozen=True)
class ProcSample:
    cpu_s: float  # utime + stime
    rss_mb: float
    hwm_mb: float  # peak RSS so far


def proc_sample(pid: int) -> ProcSample:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rpartition(")")[2].split()  # fields after the command name; fields[0] is the state
    utime, stime, rss_pages = int(fields[11]), int(fields[12]), int(fields[21])
    hwm_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm_kb = int(line.split()[1])
    return ProcSample((utime + stime) / CLK_TCK, rss_pages * PAGE_BYTES / 2**20, hwm_kb / 1024)


def vm_rss_mb(pid: int) -> float:
    """``VmRSS`` of ``/proc/<pid>/status``, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0  # a zombie has no VmRSS line


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the gateway's prepare workers, for one), from /proc's children lists."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
    return out


@dataclass(frozen=True)
class Usage:
    rss_mb: float  # VmRSS, summed over the process tree
    cpu_s: float  # utime + stime, summed over the process tree
    hwm_mb: float  # the main process's peak RSS (VmHWM)
    processes: int


def usage(pid: int, *, tree: bool = True) -> Usage | None:
    """RSS and CPU time of ``pid`` (``tree``: with its descendants); None once it is gone."""
    rss = cpu = hwm = 0.0
    n = 0
    for p in process_tree(pid) if tree else [pid]:
        try:
            sample = proc_sample(p)
            rss += vm_rss_mb(p)
        except (OSError, IndexError, ValueError):
            if p == pid:
                return None
            continue  # a child that just ended
        cpu += sample.cpu_s
        if p == pid:
            hwm = sample.hwm_mb
        n += 1
    return Usage(rss, cpu, hwm, n)


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, every process counted (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


# ---------------------------------------------------------------- child processes


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    spawned_at: float  # time.time()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"

    def ready_at(self) -> float | None:
        """When faust logged "Worker ready" (epoch seconds), or None before that."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            m = READY_LINE.match(line)
            if m:  # the log's local time, as time.localtime() wrote it
                return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        return None

    def wait_ready(self, timeout: float = 120.0) -> float:
        deadline = time.monotonic() + timeout
        while True:
            at = self.ready_at()
            if at is not None:
                return at
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self.proc.returncode} before ready:\n{self.tail()}"
                )
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{self.name} was not ready within {timeout:g}s:\n{self.tail()}")
            time.sleep(0.05)


@contextlib.contextmanager
def child(name: str, argv: Sequence[str], env: dict[str, str], work_dir: Path) -> Iterator[Child]:
    """A subprocess with its output in ``work_dir/<name>.log``; stopped by its pid on exit."""
    log_path = work_dir / f"{name}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
    c = Child(name, proc, log_path, time.time())
    try:
        yield c
    finally:
        stop_process(proc.pid, timeout=5)  # faust may wait for unacked messages at shutdown: not timed
        proc.poll()


def child_env(bootstrap: str, prefix: str, partitions: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORA_")}
    env.update(
        {
            "PORA_MODE": "local",
            "PORA_KAFKA_BOOTSTRAP": bootstrap,
            "PORA_TOPIC_PREFIX": prefix,
            "PORA_TOPIC_PARTITIONS": str(partitions),
        }
    )
    return env


# ---------------------------------------------------------------- Prometheus scrapes


@dataclass(frozen=True)
class Metrics:
    """One scrape of a /metrics endpoint: (sample name, labels, value)."""

    samples: tuple[tuple[str, dict[str, str], float], ...]

    def _match(self, name: str, labels: dict[str, str]) -> Iterator[tuple[dict[str, str], float]]:
        for n, have, value in self.samples:
            if n == name and all(have.get(k) == v for k, v in labels.items()):
                yield have, value

    def total(self, name: str, **labels: str) -> float:
        return sum(v for _, v in self._match(name, labels))

    def by_label(self, name: str, label: str, **labels: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for have, value in self._match(name, labels):
            key = have.get(label, "")
            out[key] = out.get(key, 0.0) + value
        return out

    def buckets(self, name: str, **labels: str) -> dict[float, float]:
        """A histogram's cumulative bucket counts by upper bound (``le``), summed over other labels."""
        out: dict[float, float] = {}
        for have, value in self._match(f"{name}_bucket", labels):
            le = float(have["le"])
            out[le] = out.get(le, 0.0) + value
        return out


def scrape(url: str, timeout: float = 5.0) -> Metrics | None:
    """The samples at ``url`` (a /metrics endpoint), or None when it does not answer."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError, ValueError):
        return None
    families = text_string_to_metric_families(text)
    return Metrics(tuple((s.name, dict(s.labels), float(s.value)) for family in families for s in family.samples))


def lag_by_group(*scrapes: Metrics | None) -> dict[str, float]:
    """``pora_consumer_lag_records`` summed per consumer group over the given scrapes."""
    out: dict[str, float] = {}
    for m in scrapes:
        if m is None:
            continue
        for group, lag in m.by_label("pora_consumer_lag_records", "group").items():
            out[group] = out.get(group, 0.0) + lag
    return out


def histogram_quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """The ``q`` quantile (0..1) of the observations made between two scrapes of a histogram,
    interpolated linearly inside the bucket, as Prometheus' ``histogram_quantile`` does."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not bounds or counts[-1] <= 0:
        return float("nan")
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if math.isinf(bound):
                return math.inf  # beyond the largest finite bucket: only that it is more is known
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, cumulative
    return lower


# ---------------------------------------------------------------- the local stack


SERVICES = ("gateway", "worker", "sink", "feed")
BENCH_SOURCE = "bench-system"


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


@contextlib.contextmanager
def broker_process(log_path: Path) -> Iterator[tuple[str, int]]:
    """A Tansu broker of our own on a free port: yields (bootstrap, pid); stopped by its pid on exit.
    (``streams.localstack.running_broker`` does not tell its pid, which the load test samples.)"""
    host = "127.0.0.1"
    for attempt in range(3):
        port = free_port(host)
        try:
            proc = start_broker(host, port, log_path)
            break
        except PortInUseError:  # taken between our check and the broker's bind
            if attempt == 2:
                raise
    try:
        yield f"{host}:{port}", proc.pid
    finally:
        stop_process(proc.pid)
        proc.poll()


@dataclass
class StackOptions:
    partitions: int = 6
    lag_interval_s: float = 1.0  # PORA_LAG_INTERVAL_SECONDS: how often worker and sink export lag and counts
    sink_batch_rows: int | None = None  # PORA_SINK_BATCH_ROWS (None: the default)
    sink_batch_seconds: float | None = None  # PORA_SINK_BATCH_SECONDS
    gateway_tick_seconds: float | None = None  # PORA_GATEWAY_TICK_SECONDS (None: the default, ticks on)
    extra_env: dict[str, str] = field(default_factory=dict)


class LocalStack:
    """A fresh local stack of our own, every port free: a Tansu broker, a ClickHouse 18.16 server
    (:class:`~connectors.sink.localserver.ClickHouseServer`, data in ``work``), the platform topics
    under a fresh prefix, an API key file with one ``system`` key, the feed's demo users; then
    (:meth:`start_services`) ``pora gateway``, ``pora worker``, ``pora sink`` and ``pora feed`` as
    subprocesses, each configured only through ``PORA_*`` variables, with its /metrics on a port of
    its own. Every process is stopped by the pid we started, also when something fails."""

    def __init__(self, work: Path, options: StackOptions | None = None, say: Callable[[str], object] = print) -> None:
        self.work = work
        self.options = options or StackOptions()
        self.say = say
        run = uuid.uuid4().hex[:6]
        self.prefix = f"bench-{run}."
        self.database = f"bench_{run}"
        self.api_key = new_key()
        self.keys_file = work / "keys.toml"
        self.users_file = work / "users.toml"
        self.admin = "admin"
        self.admin_password = ""
        self.bootstrap = ""
        self.broker_pid = 0
        self.clickhouse: ClickHouseServer | None = None
        self.children: dict[str, Child] = {}
        self.ports: dict[str, int] = {}  # picked just before the services start
        self._exit = contextlib.ExitStack()

    # ------------------------------------------------------------ addresses

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def feed_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['feed']}"

    @property
    def metrics_urls(self) -> dict[str, str]:
        return {
            "gateway": f"{self.gateway_url}/metrics",
            "worker": f"http://127.0.0.1:{self.ports['worker_metrics']}/metrics",
            "sink": f"http://127.0.0.1:{self.ports['sink_metrics']}/metrics",
            "feed": f"{self.feed_url}/metrics",
        }

    @property
    def server(self) -> ClickHouseServer:
        if self.clickhouse is None:
            raise RuntimeError("the stack is not started")
        return self.clickhouse

    @property
    def settings(self) -> Settings:
        """The services' settings, for this process's own use (topic names, person keys, groups)."""
        return Settings(
            kafka_bootstrap=self.bootstrap,
            topic_prefix=self.prefix,
            topic_partitions=self.options.partitions,
            person_key_secret=SecretStr(LOCAL_PERSON_KEY_SECRET),
            clickhouse_url=self.server.url,
            clickhouse_database=self.database,
        )

    @property
    def worker_group(self) -> str:
        return f"{self.prefix}pora-detectors"  # the faust app id (streams.app.build_app)

    @property
    def sink_group(self) -> str:
        return f"{self.prefix}{Settings.model_fields['sink_group'].default}"

    def pids(self) -> dict[str, int]:
        """Every process of the stack, services first, then the broker and ClickHouse."""
        out = {name: c.pid for name, c in self.children.items()}
        out["broker"] = self.broker_pid
        if self.clickhouse is not None and self.clickhouse.pid is not None:
            out["clickhouse"] = self.clickhouse.pid
        return out

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalStack:
        try:
            self._start_infrastructure()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit.close()  # services first (last in), then ClickHouse, then the broker

    def _start_infrastructure(self) -> None:
        from connectors.feed.users import ensure_demo_users

        self.bootstrap, self.broker_pid = self._exit.enter_context(broker_process(self.work / "broker.log"))
        self.clickhouse = self._exit.enter_context(ClickHouseServer(self.work / "clickhouse"))
        s = self.settings
        create_topics(self.bootstrap, [s.topic(t.name) for t in TOPICS], self.options.partitions, 1)
        self.keys_file.write_text(key_entry(BENCH_SOURCE, "system", "", self.api_key))
        # where `pora feed` (local mode) looks for them, or it makes new passwords
        (self.work / "state").mkdir(exist_ok=True)
        passwords = ensure_demo_users(self.users_file, self.work / "state" / "demo-users.json")
        self.admin_password = passwords[self.admin]
        self.say(
            f"broker {self.bootstrap} (pid {self.broker_pid}); ClickHouse {self.server.url} (pid {self.server.pid}); "
            f"topics {self.prefix}* ({self.options.partitions} partitions); logs in {self.work}"
        )

    def env(self) -> dict[str, str]:
        """Every service's environment: the same ``PORA_*`` variables for all, nothing inherited."""
        o = self.options
        env = child_env(self.bootstrap, self.prefix, o.partitions)
        broker_host, _, broker_port = self.bootstrap.rpartition(":")
        env.update(
            {
                "PORA_STATE_DIR": str(self.work / "state"),
                "PORA_PERSON_KEY_SECRET": LOCAL_PERSON_KEY_SECRET,
                "PORA_BROKER_HOST": broker_host,
                "PORA_BROKER_PORT": broker_port,
                "PORA_GATEWAY_HOST": "127.0.0.1",
                "PORA_GATEWAY_PORT": str(self.ports["gateway"]),
                "PORA_GATEWAY_KEYS_FILE": str(self.keys_file),
                "PORA_FEED_HOST": "127.0.0.1",
                "PORA_FEED_PORT": str(self.ports["feed"]),
                "PORA_FEED_USERS_FILE": str(self.users_file),
                "PORA_CLICKHOUSE_URL": self.server.url,
                "PORA_CLICKHOUSE_DATABASE": self.database,
                "PORA_METRICS_HOST": "127.0.0.1",
                "PORA_WORKER_METRICS_PORT": str(self.ports["worker_metrics"]),
                "PORA_SINK_METRICS_PORT": str(self.ports["sink_metrics"]),
                "PORA_LAG_INTERVAL_SECONDS": f"{o.lag_interval_s:g}",
                # faust keeps a data directory per app (in the working directory by default)
                "APP_DATADIR": str(self.work / "faust-{conf.id}"),
            }
        )
        if o.sink_batch_rows is not None:
            env["PORA_SINK_BATCH_ROWS"] = str(o.sink_batch_rows)
        if o.sink_batch_seconds is not None:
            env["PORA_SINK_BATCH_SECONDS"] = f"{o.sink_batch_seconds:g}"
        if o.gateway_tick_seconds is not None:
            env["PORA_GATEWAY_TICK_SECONDS"] = f"{o.gateway_tick_seconds:g}"
        env.update(o.extra_env)
        return env

    def start_services(self, timeout: float = 120.0) -> dict[str, float]:
        """Start the four services together and wait until each is ready; returns the seconds each took."""
        self.ports = {name: free_port() for name in ("gateway", "feed", "worker_metrics", "sink_metrics")}
        env = self.env()
        started = time.monotonic()
        for name in SERVICES:
            argv = [sys.executable, "-m", "streams.cli", name]
            self.children[name] = self._exit.enter_context(child(name, argv, env, self.work))
        urls = self.metrics_urls
        checks: dict[str, Callable[[], bool]] = {
            "gateway": lambda: http_ok(self.gateway_url + "/readyz"),
            "worker": lambda: self.children["worker"].ready_at() is not None,
            # assigned and fetched: the sink exports the lag of the partitions it holds
            "sink": lambda: bool(lag_by_group(scrape(urls["sink"])).get(self.sink_group) is not None),
            "feed": lambda: http_ok(self.feed_url + "/healthz"),
        }
        ready: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while len(ready) < len(SERVICES):
            for name, check in checks.items():
                if name in ready:
                    continue
                c = self.children[name]
                if c.proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with status {c.proc.returncode} at start:\n{c.tail()}")
                if check():
                    ready[name] = time.monotonic() - started
            if time.monotonic() >= deadline:
                late = [n for n in SERVICES if n not in ready]
                tails = "\n".join(f"--- {n}:\n{self.children[n].tail(10)}" for n in late)
                raise RuntimeError(f"not ready within {timeout:g}s: {', '.join(late)}\n{tails}")
            time.sleep(0.1)
        self.say(
            "services ready: "
            + ", ".join(f"{n} (pid {self.children[n].pid}) {ready[n]:.1f}s" for n in SERVICES)
            + f"; gateway {self.gateway_url}, feed {self.feed_url}"
        )
        return ready

    def check_alive(self) -> list[str]:
        """The services that have exited, with the end of their logs."""
        return [
            f"{name} exited with status {c.proc.returncode}:\n{c.tail(15)}"
            for name, c in self.children.items()
            if c.proc.poll() is not None
        ]

    def scrape_all(self) -> dict[str, Metrics | None]:
        return {name: scrape(url) for name, url in self.metrics_urls.items()}

    def usage(self) -> dict[str, Usage | None]:
        return {name: usage(pid) for name, pid in self.pids().items()}


def stop_on_sigterm() -> None:
    """SIGTERM (``timeout``, a CI runner, ``kill``) ends the benchmark as Ctrl-C does, through every
    ``finally``, so that the processes it started are stopped too (they run in sessions of their own)."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# ---------------------------------------------------------------- sampling in a thread

T = TypeVar("T")


class Periodic(Generic[T]):
    """Calls ``probe`` every ``period`` seconds in a thread; keeps ``(time.time(), result)``.
    ``on_sample`` (optional) sees each one as it comes (e.g. to print a report every 30 s)."""

    def __init__(
        self, probe: Callable[[], T], period: float, on_sample: Callable[[float, T], None] | None = None
    ) -> None:
        self.probe = probe
        self.period = period
        self.on_sample = on_sample
        self.samples: list[tuple[float, T]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def __enter__(self) -> Periodic[T]:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def latest(self) -> tuple[float, T] | None:
        return self.samples[-1] if self.samples else None

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                value = self.probe()
                at = time.time()
                self.samples.append((at, value))
                if self.on_sample is not None:
                    self.on_sample(at, value)
            except Exception as exc:  # a failed probe is reported, the sampling goes on
                self.errors.append(repr(exc))
            next_at += self.period
            self._stop.wait(max(0.0, next_at - time.monotonic()))


# ---------------------------------------------------------------- the open-loop sender


@dataclass
class Answer:
    """One request: when it was due, sent and answered (seconds after the sender's start)."""

    kind: str
    events: int
    due: float
    sent: float
    done: float  # nan when no answer came
    status: int  # 0: no answer (connection error or timeout)
    accepted: int
    error: str = ""

    @property
    def latency(self) -> float:
        return self.done - self.sent


class PacedSender:
    """Posts a schedule of requests open-loop: each goes at its due time whatever became of the
    earlier ones. Only ``max_in_flight`` unanswered requests hold it back; it then falls behind,
    which ``Answer.sent - Answer.due`` shows. ``on_answer(request, status, body, wall time)`` sees
    every answer (its JSON body, or None). ``in_order(request)``, when given, names a sequence:
    a request of one waits (holding its place among the ``max_in_flight``) until the previous
    request of the same sequence is answered, so that they reach the gateway, and their topic, in
    order; None (and no ``in_order``, the default): no wait."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        max_in_flight: int = 256,
        timeout_s: float = 120.0,
        on_answer: Callable[[Request, int, dict[str, Any] | None, float], None] | None = None,
        in_order: Callable[[Request], str | None] | None = None,
    ) -> None:
        self.url = url
        self.in_order = in_order
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.on_answer = on_answer
        self.answers: list[Answer] = []
        self.sent_requests = 0
        self.sent_events = 0
        self.stopped_behind = False  # time was up before the schedule was: the rest was not sent
        self.in_flight = 0
        self.peak_in_flight = 0
        self.started = 0.0  # time.perf_counter() at the start
        self.started_wall = 0.0  # time.time() at the start
        self.finished = 0.0  # seconds after the start when the last answer came
        self.cpu_s = 0.0  # this process's CPU time while sending (the generation of events included)

    def now(self) -> float:
        return time.perf_counter() - self.started

    async def run(self, schedule: Iterable[tuple[float, Request]], *, until: float | None = None) -> None:
        """``schedule``: (due, request) in due order, due in seconds after the start. ``until``: send
        nothing after this many seconds, due or not (a sender that fell behind stops on time)."""
        connector = aiohttp.TCPConnector(limit=self.max_in_flight, force_close=False)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=10)
        room = asyncio.Semaphore(self.max_in_flight)
        pending: set[asyncio.Task[None]] = set()
        last_of: dict[str, asyncio.Task[None]] = {}  # in_order's sequence -> its latest request
        cpu0 = time.process_time()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self.started, self.started_wall = time.perf_counter(), time.time()
            for due, request in schedule:
                delay = due - self.now()
                if delay > 0:
                    await asyncio.sleep(delay)
                await room.acquire()
                if until is not None and self.now() > until:
                    room.release()
                    self.stopped_behind = True
                    break
                key = self.in_order(request) if self.in_order is not None else None
                after = last_of.get(key) if key is not None else None
                task = asyncio.create_task(self._post(session, due, request, after))
                if key is not None:
                    last_of[key] = task
                pending.add(task)

                def done(t: asyncio.Task[None]) -> None:
                    pending.discard(t)
                    room.release()

                task.add_done_callback(done)
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        self.finished = self.now()
        self.cpu_s = time.process_time() - cpu0

    async def _post(
        self, session: aiohttp.ClientSession, due: float, request: Request, after: asyncio.Task[None] | None = None
    ) -> None:
        if after is not None and not after.done():
            await asyncio.wait({after})  # the previous request of its sequence first
        sent = self.now()
        self.sent_requests += 1
        self.sent_events += request.events
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        status, body, error = 0, None, ""
        try:
            async with session.post(self.url + request.path, data=request.body, headers=self.headers) as resp:
                status, raw = resp.status, await resp.read()
            parsed = orjson.loads(raw) if raw else None
            body = parsed if isinstance(parsed, dict) else None
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            error = repr(exc)
        finally:
            self.in_flight -= 1
        done = self.now() if status else float("nan")
        accepted = int(body.get("accepted", 0)) if body is not None else 0
        if status and status != 200 and not error:
            detail = body.get("detail", "") if body is not None else ""
            error = f"HTTP {status}: {str(detail)[:200]}"
        self.answers.append(Answer(request.kind, request.events, due, sent, done, status, accepted, error))
        if self.on_answer is not None:
            self.on_answer(request, status, body, time.time())


# ---------------------------------------------------------------- the feed's live stream


class FeedStream:
    """A user of the feed on its live stream (``/stream``, server-sent events): logs in with the
    form, as a browser does (the session cookie), then reads; ``on_alert(view, wall time)`` sees
    every alert as it arrives. A ``reload`` (the client fell behind) or a broken connection logs in
    and connects again. Runs until cancelled."""

    def __init__(
        self, url: str, name: str, password: str, on_alert: Callable[[dict[str, Any], float], None] | None = None
    ) -> None:
        self.url = url
        self.name = name
        self.password = password
        self.on_alert = on_alert
        self.connected = asyncio.Event()
        self.alerts = 0
        self.connections = 0
        self.reloads = 0
        self.errors: list[str] = []

    async def run(self) -> None:
        jar = aiohttp.CookieJar(unsafe=True)  # the feed is at an IP address
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as session:
            while True:
                try:
                    await self._session(session)
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    self.errors.append(repr(exc))
                    await asyncio.sleep(1.0)

    async def _session(self, session: aiohttp.ClientSession) -> None:
        form = {"name": self.name, "password": self.password}
        async with session.post(self.url + "/login", data=form, allow_redirects=False) as resp:
            if resp.status != 303:
                raise ValueError(f"log-in as {self.name} answered {resp.status}")
        async with session.get(self.url + "/stream") as resp:
            if resp.status != 200:
                raise ValueError(f"/stream answered {resp.status}")
            self.connections += 1
            event = ""
            while True:
                raw = await resp.content.readline()
                if not raw:
                    return  # the feed closed the stream
                line = raw.rstrip(b"\r\n")
                if line.startswith(b": connected"):
                    self.connected.set()
                elif line.startswith(b"event: "):
                    event = line[7:].decode()
                elif line.startswith(b"data: ") and event == "alert":
                    seen = time.time()
                    self.alerts += 1
                    if self.on_alert is not None:
                        self.on_alert(orjson.loads(line[6:]), seen)
                elif line.startswith(b"data: ") and event == "reload":
                    self.reloads += 1
                    return
                elif not line:
                    event = ""


# ---------------------------------------------------------------- reports


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns: the first left, the others right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[int] = (0,)) -> str:
    """A Markdown table; the columns in ``left`` (indexes, negative from the end) left-aligned, the others right."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lefts = {i % len(header) for i in left}
    align = ["---" if i in lefts else "---:" for i in range(len(header))]
    return "\n".join([line(header), "| " + " | ".join(align) + " |", *(line(r) for r in rows)])


def fmt(value: float | None, spec: str = "{:,.0f}") -> str:
    """``-`` for nothing, ``inf`` beyond a histogram's largest finite bucket."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return "inf" if math.isinf(value) else spec.format(value)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "load_1min": os.getloadavg()[0],
    }


def write_results(out: Path, report: dict[str, Any], markdown: str) -> Path:
    """``report`` as JSON at ``out`` and ``markdown`` beside it (``.md``); returns the Markdown's path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    md = out.with_suffix(".md")
    md.write_text(markdown)
    return md
