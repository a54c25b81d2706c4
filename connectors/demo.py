"""`pora demo`: push sample reports through the gateway as each source would, then show what
arrived on the topics and what was turned away to the dead-letter topic."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

from connectors.samples import CHECKPOINTS, ESTABLISHMENTS, SampleFactory
from streams.reading import read_topic
from streams.settings import Settings
from streams.stack import DemoKey, ensure_local_keys
from streams.topics import PUBLIC


def post(url: str, key: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Authorization": f"Bearer {key}", "Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def run_demo(settings: Settings, say: Callable[[str], object] = print) -> dict[str, int]:
    keys: dict[str, DemoKey] = ensure_local_keys(settings)
    base = f"http://{settings.gateway_host}:{settings.gateway_port}"
    f = SampleFactory(seed=2026)
    hotel = ESTABLISHMENTS[0]
    guests = [f.identity() for _ in range(4)]

    def send(source: str, path: str, body: Any, label: str, content_type: str = "application/json") -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, answer = post(base + path, keys[source].key, raw, content_type)
        if status == 200:
            say(
                f"  {status} {label}: {answer['accepted']} accepted, {answer['duplicates']} repeats"
                f" (first receipt {answer['receipts'][0]['receipt_id']})"
            )
        else:
            errors = "; ".join(
                f"{e.get('item', '')} {e['field']}: {e['problem']}".strip() for e in answer.get("errors", [])
            )
            say(f"  {status} {label}: {answer.get('detail', '')}" + (f"\n        {errors}" if errors else ""))

    say(f"\nPosting sample reports to {base}")
    check_ins = [f.hotel_check_in(hotel, g, days_ago=1) for g in guests]
    send("hotel-harmoni-batam", "/v1/events/hotel-guest-events", check_ins, "hotel check-ins (JSON batch)")
    send("hotel-harmoni-batam", "/v1/events/hotel-guest-events", check_ins[0], "the same check-in again")
    register = (
        "occurred_at;nationality;document_number;given_names;surname;check_in_date;room\n"
        f"{f.today} 09:30;AUS;PA1234567;Olivia;Brown;{f.today};214\n"
        f"{f.today} 09:45;XYZ;PB7654321;Liam;Wilson;{f.today};215\n"
    ).encode()
    send("hotel-harmoni-batam", "/v1/registers/hotel-guests", register, "guest register (CSV, one bad row)", "text/csv")
    foreign = f.hotel_check_in(ESTABLISHMENTS[2])
    send("hotel-harmoni-batam", "/v1/events/hotel-guest-events", foreign, "a check-in for another hotel")
    send(
        "tpi-batam-centre",
        "/v1/events/border-crossings",
        [f.arrival(CHECKPOINTS[0], g, days_ago=2) for g in guests],
        "arrivals at Batam Centre",
    )
    send(
        "tpi-soekarno-hatta",
        "/v1/events/border-crossings",
        [f.citizen_departure(CHECKPOINTS[1]), f.citizen_departure(CHECKPOINTS[1], risky=True)],
        "citizen departures at Soekarno-Hatta",
    )
    send("sponsor-sinar-baja", "/v1/events/sponsor-reports", f.sponsor_report(), "sponsor roster")
    send("kanim-batam", "/v1/events/permit-updates", f.permit_extension(guests[0]), "VoA extension")
    send("polres-mojokerto", "/v1/events/agency-reports", f.agency_report(), "police field report")
    bad = dict(f.arrival(CHECKPOINTS[0]), occurred_at="yesterday")
    bad.pop("arrival")
    send("tpi-batam-centre", "/v1/events/border-crossings", bad, "a malformed arrival")

    say("\nWhat arrived (read back from the topics and decoded):")
    counts: dict[str, int] = {}
    for spec in PUBLIC:
        topic = settings.topic(spec.name)
        records = read_topic(settings.kafka_bootstrap, topic)
        counts[spec.name] = len(records)
        if not records:
            continue
        by_partition = Counter(r.partition for r in records)
        say(f"  {topic:<22} {len(records):>3} records  partitions {dict(sorted(by_partition.items()))}")
        for r in records[-3:]:
            say(f"      {_summary(r.kind, r.record)}")
    return counts


def _summary(kind: str, rec: dict[str, Any] | None) -> str:
    if rec is None:
        return "(undecodable)"
    if kind == "dead_letter":
        first = rec["errors"][0] if rec["errors"] else {"field": "", "problem": ""}
        return f"[{rec['reason']}] from {rec['source']}: {first['field']} {first['problem']}"
    if kind == "hotel_guest_event":
        g = rec["guest"]
        return f"{rec['action']} {g['nationality']} {g['person_key'][:11]}… at {rec['establishment']['name']}"
    if kind == "border_crossing":
        t = rec["traveller"]
        extra = f" to {rec['departure']['destination_country']}" if rec.get("departure") else ""
        return f"{rec['direction']} {t['nationality']} {t['person_key'][:11]}… at {rec['checkpoint']['name']}{extra}"
    if kind == "sponsor_report":
        return f"{rec['sponsor']['name']}: {len(rec['roster'])} foreigners reported"
    if kind == "permit_update":
        return f"{rec['action']} {rec['permit_type']} until {rec['valid_until']}"
    if kind == "agency_report":
        return f"{rec['agency']['name']}: {rec['observation']}"
    return kind


def run_detector_demo(
    settings: Settings, say: Callable[[str], object] = print, *, days: int = 75, travellers: int = 500, seed: int = 2026
) -> Settings:
    """Simulate a couple of months, replay them on topics of their own through a detector worker, and
    print the alerts by rule with the simulator's ground truth beside them. Returns the settings of
    the simulation's topics."""
    import asyncio
    import time
    from datetime import date, timedelta

    from connectors.evaluate import final_alerts, score, table
    from connectors.pipeline import alerts_when_settled, detector_workers
    from connectors.replay import replay
    from connectors.simulator import write_simulation
    from streams import localstack
    from streams.topics import TOPICS

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    events, truth = settings.state_dir / "simulation.jsonl", settings.state_dir / "truth.jsonl"
    start = date.today() - timedelta(days=days + 1)
    sim = write_simulation(days, travellers, seed, start, events, truth)
    say(f"\nSimulated {days} days from {start}: {travellers} travellers, {len(sim.events)} events ({events})")
    # its own topics: the live stack's clock is at today, the simulation's history is not
    sim_settings = settings.model_copy(update={"topic_prefix": f"sim-{int(time.time())}."})
    names = [sim_settings.topic(t.name) for t in TOPICS]
    localstack.create_topics(
        settings.kafka_bootstrap,
        names,
        settings.topic_partitions,
        settings.topic_replication,
        max_message_bytes=settings.kafka_max_message_bytes,
    )
    with detector_workers(sim_settings, 1):
        stats = asyncio.run(replay(sim_settings, events))
        say(
            f"Replayed through the gateway's validation in {stats.seconds:.1f} s: {stats.accepted} accepted, "
            f"{stats.rejected} rejected; detector worker running on {sim_settings.topic_prefix}*"
        )
        alerts = alerts_when_settled(sim_settings, quiet_s=4)
    active = [a for a in final_alerts(alerts).values() if a["status"] != "WITHDRAWN"]
    withdrawn = len(final_alerts(alerts)) - len(active)
    say(f"\nAlerts by rule ({len(active)} standing, {withdrawn} withdrawn after later reports):")
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for a in active:
        by_rule.setdefault(a["rule_id"], []).append(a)
    for rule, items in sorted(by_rule.items()):
        example = sorted(items, key=lambda a: a["alert_id"])[0]
        say(
            f"  {rule:<26} {len(items):>4}   e.g. [{example['severity']}] {example['office']}: "
            + "; ".join(example["reasons"][:3])
        )
    say("\nAgainst the simulator's ground truth:")
    say(table(score(alerts, sim.truth, settings.person_secret)))
    return sim_settings


def run_sink_demo(settings: Settings, say: Callable[[str], object] = print) -> dict[str, int]:
    """Write the simulation's topics (events and alerts) to ClickHouse (embedded chdb unless
    PORA_CLICKHOUSE_URL says otherwise) and show what landed. Returns rows per table."""
    import time

    from connectors.sink.migrate import migrate
    from connectors.sink.reports import format_table, run_report
    from connectors.sink.sink import TABLES_BY_NAME, Sink
    from connectors.sink.store import Result, open_store

    store = open_store(settings)
    try:
        migrate(store)
        sink = Sink(settings, store)
        idle_since, deadline = time.monotonic(), time.monotonic() + 120
        while time.monotonic() < deadline and (not sink.consumer.assignment() or time.monotonic() - idle_since < 3.0):
            if sink.poll() or not sink.consumer.assignment():
                idle_since = time.monotonic()
        sink.close()
        db = store.database
        say(
            f"\nClickHouse ({store.target}): {sink.stats.rows} rows in {sink.stats.batches} batches "
            f"from {sink.stats.records} records (clock ticks skipped); rows per table, duplicates collapsed:"
        )
        counts: dict[str, int] = {}
        for name in TABLES_BY_NAME:
            counts[name] = int(store.query(f"SELECT count() FROM {db}.{name} FINAL").rows[0][0])
            say(f"  {name:<22} {counts[name]:>7}")
        for name, rows in (("overstays", 8), ("hotel-compliance", 8), ("alert-funnel", 14)):
            result = run_report(store, name, date_from=None, date_to=None, office=None)
            shown = Result(result.columns, result.rows[:rows])
            more = f" (first {rows} of {len(result.rows)})" if len(result.rows) > rows else ""
            say(f"\n`pora report {name}`{more}:")
            say(format_table(shown))
        return counts
    finally:
        store.close()
