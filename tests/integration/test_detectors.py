"""The detector worker on the real broker: the same input gives the same alerts, ids included,
at full speed or paced in small windows, with one worker or two sharing the partitions."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from conftest import make_topics

from connectors.pipeline import alerts_when_settled, detector_workers, start_worker
from connectors.replay import replay
from connectors.samples import CHECKPOINTS, ESTABLISHMENTS, SampleFactory
from streams import topics
from streams.detect.config import default_rules
from streams.detect.offline import detect_offline
from streams.detect.person import INPUTS, ms
from streams.localstack import stop_process
from streams.reading import read_topic
from streams.settings import Settings

END = "2026-10-20T00:00:00+07:00"


def _later(ts: str, minutes: float) -> str:
    return (datetime.fromisoformat(ts) + timedelta(minutes=minutes)).isoformat()


def workload() -> list[dict[str, Any]]:
    """A month of a small town: arrivals (some overstaying, some extended late), hotel reports
    (some late, one cancelled), departures, citizens departing (some screened)."""
    f = SampleFactory(seed=77, today=date(2026, 10, 15))
    lines: list[dict[str, Any]] = []

    def add(kind: str, event: dict[str, Any], delay_min: float = 3) -> None:
        lines.append({"kind": kind, "event": {**event, "reported_at": _later(event["occurred_at"], delay_min)}})

    for i in range(40):
        who = f.identity()
        arr = f.arrival(CHECKPOINTS[i % 2], who, days_ago=45 - i % 10)
        add("border_crossing", arr)
        est = next(e for e in ESTABLISHMENTS if e["establishment_id"] == arr["arrival"]["declared_establishment_id"])
        if i % 5 != 0:  # one in five declared hotels never reports
            ci = f.hotel_check_in(est, who, days_ago=44 - i % 10)
            add("hotel_guest_event", ci, delay_min=60 * 30 if i % 7 == 0 else 20)  # some reported late
            if i % 9 == 0:
                cancel = {
                    **ci,
                    "event_id": ci["event_id"] + "-x",
                    "action": "CANCEL",
                    "corrects_event_id": ci["event_id"],
                    "occurred_at": _later(ci["occurred_at"], 120),
                }
                add("hotel_guest_event", cancel)
        if i % 4 == 0:
            ext = f.permit_extension(who)
            ext["occurred_at"] = _later(arr["occurred_at"], 60 * 24 * 20)
            ext["valid_until"] = (
                date.fromisoformat(arr["arrival"]["authorised_until"]) + timedelta(days=30)
            ).isoformat()
            add("permit_update", ext, delay_min=60 * 24 * 15 if i % 8 == 0 else 5)  # some reported after expiry
        if i % 3 == 0:
            dep = f.arrival(CHECKPOINTS[0], who, days_ago=10 - i % 6)
            dep.update(direction="DEPARTURE", arrival=None, event_id=dep["event_id"] + "-d")
            add("border_crossing", dep)
    for i in range(12):
        add("border_crossing", f.citizen_departure(CHECKPOINTS[i % 2], risky=i % 3 == 0))
    lines.sort(key=lambda ln: (datetime.fromisoformat(ln["event"]["reported_at"]), ln["event"]["event_id"]))
    return lines


def comparable(alerts: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {
        (
            a["alert_id"],
            a["event_id"],
            a["rule_id"],
            a["status"],
            a["severity"],
            a["office"],
            ms(a["occurred_at"]),
            tuple(a["reasons"]),
            tuple((e["name"], e["value"], e["event_id"], e["weight"]) for e in a["evidence"]),
        )
        for a in alerts
    }


def reference(settings: Settings) -> set[tuple[Any, ...]]:
    """The pure stages over what is on the input topics, partition by partition."""
    records = [
        (name, r.partition, r.kind, r.record)
        for name in (*INPUTS, topics.SPONSOR_REPORTS)
        for r in read_topic(settings.kafka_bootstrap, settings.topic(name), ticks=True)
        if r.record is not None
    ]
    return comparable(detect_offline(records, default_rules(), settings.topic_partitions))


def run_once(
    bootstrap: str, prefix: str, path: Path, *, worker_count: int, window: int, window_ms: int | None = None
) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    make_topics(bootstrap, prefix)
    settings = Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=3)
    with detector_workers(settings, worker_count):
        until = int(datetime.fromisoformat(END).timestamp() * 1000)
        stats = asyncio.run(replay(settings, path, window=window, window_ms=window_ms, until_ms=until))
        assert stats.rejected == 0, stats.rejected_lines
        expected = reference(settings)
        got = comparable(alerts_when_settled(settings, expected=len(expected)))
    return expected, got


def test_same_alerts_full_speed_paced_and_with_two_workers(kafka_bootstrap: str, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in workload()))

    ref_a, full_speed = run_once(kafka_bootstrap, "det-a.", path, worker_count=1, window=1000)
    rules = {a[2] for a in ref_a}
    assert {
        "overstay",
        "overstay.at_exit",
        "report.late",
        "report.missing",
        "tppo.screening",
        "permit.expiring",
    } <= rules, rules
    assert full_speed == ref_a

    ref_b, paced = run_once(kafka_bootstrap, "det-b.", path, worker_count=1, window=7, window_ms=3_600_000)
    assert ref_b == ref_a and paced == full_speed  # windows and ticks differ; the alerts do not

    ref_c, shared = run_once(kafka_bootstrap, "det-c.", path, worker_count=2, window=1000)
    assert ref_c == ref_a and shared == full_speed


def test_simulation_through_the_pipeline_has_precision_and_recall_one(kafka_bootstrap: str, tmp_path: Path) -> None:
    from connectors.evaluate import score
    from connectors.simulator import write_simulation

    events, truth = tmp_path / "events.jsonl", tmp_path / "truth.jsonl"
    sim = write_simulation(75, 400, 11, date(2026, 3, 2), events, truth)
    make_topics(kafka_bootstrap, "det-sim.")
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix="det-sim.", topic_partitions=3)
    with detector_workers(settings, 1):
        stats = asyncio.run(replay(settings, events))
        assert stats.rejected == 0 and stats.accepted == len(sim.events)
        alerts = alerts_when_settled(settings, quiet_s=4)
    scores = score(alerts, sim.truth, settings.person_secret)
    assert set(scores) == {t["rule_id"] for t in sim.truth}
    for s in scores.values():
        assert (s.rule_id, s.precision, s.recall) == (s.rule_id, 1.0, 1.0), s
    assert sum(s.truths for s in scores.values()) == len(sim.truth) > 50


def test_a_worker_killed_mid_stream_and_restarted_loses_and_repeats_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from connectors.simulator import write_simulation

    events, truth = tmp_path / "events.jsonl", tmp_path / "truth.jsonl"
    write_simulation(60, 300, 5, date(2026, 4, 6), events, truth)
    lines = events.read_bytes().splitlines(keepends=True)
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_bytes(b"".join(lines[: len(lines) // 2]))
    second.write_bytes(b"".join(lines[len(lines) // 2 :]))
    make_topics(kafka_bootstrap, "det-k.")
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix="det-k.", topic_partitions=3)

    worker = start_worker(settings, log_path=tmp_path / "worker-1.log")
    time.sleep(3)
    asyncio.run(replay(settings, first))
    before = alerts_when_settled(settings, quiet_s=3)
    assert before, "the first half raised no alert"
    os.kill(worker.pid, 9)  # no goodbye: nothing flushed, nothing committed
    worker.wait(10)

    worker = start_worker(settings, log_path=tmp_path / "worker-2.log")
    try:
        time.sleep(3)
        asyncio.run(replay(settings, second))
        expected = reference(settings)
        after = alerts_when_settled(settings, expected=len(expected))
    finally:
        stop_process(worker.pid)
    ids = [a["event_id"] for a in after]
    missing = sorted((m[2], m[1]) for m in expected - comparable(after))
    assert not missing, f"{len(missing)} of {len(expected)} missing ({len(ids)} records): {missing[:5]}"
    assert comparable(after) == expected
    assert len(ids) == len(set(ids)), "an alert record was sent twice"


def _scrape(port: int) -> dict[str, float]:
    """A worker's /metrics as {"name{labels}": value} (only what the test reads)."""
    import urllib.request

    from monitoring.catalog import pora_samples

    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:  # not serving yet (or gone: the caller's wait says so)
        return {}
    return pora_samples(body)


def _sum(port: int, name: str) -> float:
    return sum(v for k, v in _scrape(port).items() if k.split("{")[0] == name)


def _held(port: int) -> float:
    return _scrape(port).get('pora_worker_partitions_assigned{stage="person"}', 0.0)


def _wait_for(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_two_workers_share_the_partitions_and_one_takes_over_when_the_other_stops(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Scale-out: both workers hold partitions; one is stopped while events stream in, the other
    takes its partitions over, and the alerts topic ends exactly as one worker would have left it."""
    from connectors.simulator import write_simulation
    from streams.localstack import free_port

    events, truth = tmp_path / "events.jsonl", tmp_path / "truth.jsonl"
    write_simulation(60, 300, 7, date(2026, 4, 6), events, truth)
    lines = events.read_bytes().splitlines(keepends=True)
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_bytes(b"".join(lines[: len(lines) // 2]))
    second.write_bytes(b"".join(lines[len(lines) // 2 :]))
    make_topics(kafka_bootstrap, "det-s.", partitions=4)
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix="det-s.", topic_partitions=4)

    ports = [free_port(), free_port()]
    workers = [
        start_worker(settings, metrics_port=p, log_path=tmp_path / f"worker-{i}.log") for i, p in enumerate(ports)
    ]
    try:
        _wait_for(lambda: all(_held(p) > 0 for p in ports), "both workers to hold partitions")
        assert sum(_held(p) for p in ports) == 4, "the four person partitions are not split between the two"
        asyncio.run(replay(settings, first))
        before = alerts_when_settled(settings, quiet_s=3)
        assert before, "the first half raised no alert"

        # the second half streams in over ~10 s; the first worker leaves a few seconds in
        streaming = threading.Thread(target=lambda: asyncio.run(replay(settings, second, speed=260_000)))
        streaming.start()
        time.sleep(3)
        assert streaming.is_alive(), "the second half was sent before the worker stopped: not mid-stream"
        stop_process(workers[0].pid)
        streaming.join()
        _wait_for(lambda: _held(ports[1]) == 4, "the remaining worker to take every partition over")

        expected = reference(settings)
        after = alerts_when_settled(settings, expected=len(expected))
        # what an operator sees of the survivor: caught up, its alerts counted, its latency measured
        _wait_for(lambda: _sum(ports[1], "pora_consumer_lag_records") == 0, "the survivor's lag to reach 0")
        seen = _scrape(ports[1])
        assert _sum(ports[1], "pora_worker_events_total") >= len(lines) // 2
        assert 0 < _sum(ports[1], "pora_alerts_total") <= len(after)
        assert _sum(ports[1], "pora_event_to_alert_seconds_count") > 0
        assert any(k.startswith("pora_worker_watermark_delay_seconds") for k in seen)
        assert seen.get('pora_worker_state_items{kind="people",stage="person"}', 0) > 0, seen
        assert seen.get('pora_worker_state_items{kind="record_ids",stage="person"}', 0) > 0, seen
    finally:
        for w in workers:
            stop_process(w.pid)
    ids = [a["event_id"] for a in after]
    missing = sorted((m[2], m[1]) for m in expected - comparable(after))
    assert not missing, f"{len(missing)} of {len(expected)} missing ({len(ids)} records): {missing[:5]}"
    assert comparable(after) == expected
    assert len(ids) == len(set(ids)), "an alert record was sent twice"
