"""Every SQL panel of the supervision dashboard (monitoring/grafana/dashboards/domain.json) on
embedded ClickHouse (chdb: a current engine, as the Grafana plugin's server is), over a simulated
quarter: the simulator's events through the gateway's preparation (person keys, event ids), the
detectors without Kafka (streams.detect.offline) and the sink's row builders (connectors.sink.tables),
plus triage actions on the alerts. Each query is sent as Grafana would send it: the plugin's macros
expanded the way its backend does (pkg/macros/macros.go of grafana-clickhouse-datasource) and the
dashboard's variables interpolated. The panels must run, give their columns and rows, follow the
time range and the office filter, agree with the named reports (connectors/sink/reports.py) on the
same data, and not count a redelivered row twice."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from connectors.replay import topic_records
from connectors.simulator import simulate
from connectors.sink.migrate import migrate
from connectors.sink.reports import normalise, run_report
from connectors.sink.store import ChdbStore, Result, Store
from connectors.sink.tables import TABLES
from schemas.codec import codec
from streams.detect.config import default_rules
from streams.detect.offline import detect_offline

DASHBOARD = Path(__file__).resolve().parents[2] / "monitoring" / "grafana" / "dashboards" / "domain.json"
START, DAYS, TRAVELLERS, SEED = date(2026, 3, 2), 90, 200, 3  # long enough for sponsor.overdue alerts
PARTITIONS = 3
WIB = timedelta(hours=7)
Row = tuple[Any, ...]

# the columns of every SQL panel, by title (a new panel must be listed here)
COLUMNS: dict[str, tuple[str, ...]] = {
    "Check-ins reported": ("checkins", "on_time", "late", "late_pct", "establishments"),
    "Check-ins per day: on time and late": ("time", "on_time", "late"),
    "Reporting by office": (
        "office",
        "establishments_reporting",
        "checkins",
        "late",
        "late_pct",
        "late_alerts",
        "missing_alerts",
        "silent_alerts",
    ),
    "Establishments with missing reports or gone silent": (
        "establishment",
        "name",
        "office",
        "missing_reports",
        "silences",
        "silent_days",
        "last_alert",
    ),
    "Overstays": ("overstays", "found_at_exit", "escalations", "days_over", "charge_due_idr"),
    "Overstays by office and days over": ("office", "days_over", "overstays", "found_at_exit", "charge_due_idr"),
    "Overstays by nationality": ("nationality", "overstays", "most_days_over", "charge_due_idr"),
    "New overstay cases per day": ("time", "in_country", "found_at_exit"),
    "Screenings": ("screenings", "open", "upheld", "cleared"),
    "Screenings per day by checkpoint": ("time", "checkpoint", "screenings"),
    "Screenings by office and checkpoint": (
        "office",
        "checkpoint",
        "screenings",
        "open",
        "delayed_for_interview",
        "referred",
        "confirmed",
        "cleared",
        "false_positive",
    ),
    "Indicators": ("indicator", "fired", "resolved", "upheld", "precision"),
    "Screenings by destination and route": ("destination", "route", "screenings", "upheld"),
    "Sponsors": ("sponsors", "reporting", "overdue", "roster_mismatch"),
    "Sponsor compliance": (
        "sponsor",
        "name",
        "office",
        "foreigners",
        "reports_received",
        "last_report",
        "overdue_alerts",
        "roster_mismatches",
    ),
    "Raised, acknowledged, resolved": ("raised", "acknowledged", "resolved", "withdrawn"),
    "Funnel by office and rule": (
        "office",
        "rule",
        "raised",
        "acknowledged",
        "resolved",
        "withdrawn",
        "ack_median_hours",
        "ack_p90_hours",
    ),
    "Alerts raised per day by rule": ("time", "rule", "alerts"),
    "Triage actions": ("action", "role", "actions", "alerts", "officers"),
}


# ------------------------------------------------------------------------------------ Grafana's side


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's time range as whole WIB days, first and last included."""

    first: date
    last: date

    @property
    def from_s(self) -> int:
        return int((datetime.combine(self.first, datetime.min.time(), UTC) - WIB).timestamp())

    @property
    def to_s(self) -> int:
        return int((datetime.combine(self.last + timedelta(days=1), datetime.min.time(), UTC) - WIB).timestamp()) - 1


FULL = TimeRange(START, START + timedelta(days=DAYS))


@cache
def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def sql_panels() -> dict[str, tuple[str, str]]:
    """title -> (panel type, rawSql) of every ClickHouse panel."""
    out = {}
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            if target["datasource"]["type"] == "grafana-clickhouse-datasource":
                out[panel["title"]] = (panel["type"], target["rawSql"])
    return out


def _macros(sql: str, when: TimeRange) -> str:
    """The plugin's macros as its backend expands them (seconds precision; one-day interval)."""
    f, t = f"toDateTime({when.from_s})", f"toDateTime({when.to_s})"
    day_f, day_t = f"toDate('{when.first.isoformat()}')", f"toDate('{when.last.isoformat()}')"
    sql = re.sub(r"\$__timeFilter\(([^()]+)\)", lambda m: f"{m[1]} >= {f} AND {m[1]} <= {t}", sql)
    sql = re.sub(r"\$__dateFilter\(([^()]+)\)", lambda m: f"{m[1]} >= {day_f} AND {m[1]} <= {day_t}", sql)
    sql = re.sub(
        r"\$__timeInterval\(([^()]+)\)", lambda m: f"toStartOfInterval(toDateTime({m[1]}), INTERVAL 86400 second)", sql
    )
    return sql.replace("$__fromTime", f).replace("$__toTime", t).replace("$__interval_s", "86400")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def interpolate(sql: str, values: dict[str, list[str]], when: TimeRange = FULL) -> str:
    """What ClickHouse receives for ``sql`` with these variable values (Grafana's ``${name}``,
    ``${name:singlequote}`` and ``$name``)."""

    def variable(m: re.Match[str]) -> str:
        name, fmt = (m[1], m[2]) if m[1] else (m[3], None)
        chosen = values[name]  # an unknown variable fails the test
        if fmt == "singlequote":
            return ",".join(_quote(v) for v in chosen)
        assert fmt is None and len(chosen) == 1, (name, fmt, chosen)
        return chosen[0]

    out = re.sub(r"\$\{(\w+)(?::(\w+))?\}|\$(?!__)(\w+)", variable, _macros(sql, when))
    assert "$" not in out, f"left uninterpolated: {out}"
    return out


def variable_values(store: Store, office: str | None = None) -> dict[str, list[str]]:
    """The dashboard's constants (the database: the test's), ``office``: All or the one given."""
    values = {v["name"]: [v["query"]] for v in dashboard()["templating"]["list"] if v["type"] == "constant"}
    values["database"] = [store.database]
    office_variable = next(v for v in dashboard()["templating"]["list"] if v["name"] == "office")
    values["office"] = [office] if office is not None else [office_variable["allValue"]]
    return values


def run_panel(store: Store, title: str, *, office: str | None = None, when: TimeRange = FULL) -> Result:
    _, sql = sql_panels()[title]
    result = store.query(interpolate(sql, variable_values(store, office), when))
    return Result(result.columns, [tuple(normalise(v) for v in row) for row in result.rows])


# ------------------------------------------------------------------------------------ the data


def _triage(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Officers' actions on the alerts, spread deterministically: every second alert acknowledged
    (2 or 30 hours after it was emitted), every third resolved with a disposition its rule allows,
    some reopened, some assigned."""
    first: dict[str, dict[str, Any]] = {}
    for a in alerts:
        first.setdefault(a["alert_id"], a)
    actions = []
    for i, (alert_id, a) in enumerate(sorted(first.items())):
        tppo = a["rule_id"] == "tppo.screening"
        planned: list[tuple[str, float, str | None]] = []
        if i % 5 == 0:
            planned.append(("ASSIGN", 1, None))
        if i % 2 == 0:
            planned.append(("ACKNOWLEDGE", 2 if i % 4 == 0 else 30, None))
        if i % 3 == 0:
            outcomes = ("DELAYED_FOR_INTERVIEW", "CLEARED", "REFERRED", "FALSE_POSITIVE") if tppo else ("CONFIRMED",)
            planned.append(("RESOLVE", 40, outcomes[(i // 3) % len(outcomes)]))
        if i % 9 == 0:
            planned.append(("REOPEN", 50, None))
        for n, (action, hours, disposition) in enumerate(planned):
            at = a["reported_at"] + int(hours * 3_600_000)
            actions.append(
                {
                    "event_id": f"act-{alert_id}-{n}",
                    "occurred_at": at,
                    "reported_at": at,
                    "alert_id": alert_id,
                    "rule_id": a["rule_id"],
                    "office": a["office"],
                    "action": action,
                    "actor": f"officer-{i % 3}",
                    "actor_role": "supervisor",
                    "assignee": "officer-9" if action == "ASSIGN" else None,
                    "disposition": disposition,
                    "comment": None,
                }
            )
    return actions


@cache
def simulated_rows() -> dict[str, tuple[Row, ...]]:
    """table -> rows, as the sink would write them for the simulated quarter."""
    sim = simulate(days=DAYS, travellers=TRAVELLERS, seed=SEED, start=START)
    c = codec()
    records: list[tuple[str, int, str, dict[str, Any]]] = []  # what the detectors read, per partition
    rows: dict[str, list[Row]] = defaultdict(list)

    def sink(raw: bytes) -> None:
        kind, record = c.decode(raw, ms_times=True)
        table = TABLES[kind]
        rows[table.name].append(table.row(record))

    end_ms = int(sim.end.timestamp() * 1000)
    for topic, p, raw in topic_records(sim.events, end_ms, PARTITIONS, b"dashboard-test-person-key-secret"):
        kind, record = c.decode(raw)
        records.append((topic, p, kind, record))
        if kind != "clock_tick":
            sink(raw)
    alerts = detect_offline(records, default_rules(), PARTITIONS)
    for alert in alerts:
        alert["reported_at"] = alert["occurred_at"] + 2000  # emitted as a live worker would, not at 0
        sink(c.encode("alert", alert))
    for action in _triage(alerts):
        sink(c.encode("alert_action", action))
    return {name: tuple(table_rows) for name, table_rows in rows.items()}


def load(store: Store, times: int = 1) -> None:
    """Migrate and insert the rows ``times`` times; with several, merges are stopped first, so the
    duplicates stay in the tables for the queries to collapse (FINAL, argMax) and not a merge."""
    migrate(store)
    columns = {t.name: t.columns for t in TABLES.values()}
    if times > 1:
        for table in columns:
            store.execute(f"SYSTEM STOP MERGES {store.database}.{table}")
    for _ in range(times):
        for table, table_rows in simulated_rows().items():
            store.insert(table, columns[table], list(table_rows))


@pytest.fixture(scope="module")
def loaded(chdb_path: Path) -> Iterator[ChdbStore]:
    """The simulated quarter in a database of its own on the session's chdb directory."""
    store = ChdbStore(chdb_path, f"d_{uuid.uuid4().hex[:10]}")
    load(store)
    yield store
    store.close()


def test_the_data_has_every_kind_of_alert_the_panels_show() -> None:
    rows = simulated_rows()
    rules = Counter(r[TABLES["alert"].columns.index("rule_id")] for r in rows["alerts"])
    wanted: tuple[str, ...] = ("overstay", "overstay.at_exit", "tppo.screening", "report.missing", "report.late")
    wanted += ("establishment.silent", "sponsor.overdue", "sponsor.roster_mismatch")
    assert all(rules[r] for r in wanted), rules
    actions = Counter(r[TABLES["alert_action"].columns.index("action")] for r in rows["alert_actions"])
    assert set(actions) == {"ASSIGN", "ACKNOWLEDGE", "RESOLVE", "REOPEN"}
    assert rows["hotel_guest_events"] and rows["sponsor_reports"] and rows["permit_updates"]


# ------------------------------------------------------------------------------------ every panel


def test_every_sql_panel_is_listed_here() -> None:
    assert set(sql_panels()) == set(COLUMNS)


@pytest.mark.parametrize("title", sorted(COLUMNS))
def test_panel_runs_with_its_columns_and_rows(loaded: ChdbStore, title: str) -> None:
    result = run_panel(loaded, title)
    assert result.columns == COLUMNS[title]
    assert result.rows, f"{title!r} is empty on a simulated quarter"
    if sql_panels()[title][0] == "timeseries":
        times = [row[0] for row in result.rows]
        assert times == sorted(times)
        assert all(t.endswith("00:00:00") for t in times), "WIB days"  # local midnight (Asia/Jakarta)


def test_office_variable_lists_every_office(loaded: ChdbStore) -> None:
    query = next(v for v in dashboard()["templating"]["list"] if v["name"] == "office")["query"]
    offices = [row[0] for row in loaded.query(interpolate(query, variable_values(loaded))).rows]
    index = TABLES["alert"].columns.index("office")
    assert offices == sorted(set(offices)) and len(offices) > 2
    assert {r[index] for r in simulated_rows()["alerts"]} <= set(offices)


def test_one_office_is_all_a_panel_shows(loaded: ChdbStore) -> None:
    index = TABLES["alert"].columns.index("office")
    office, _ = Counter(r[index] for r in simulated_rows()["alerts"]).most_common(1)[0]
    by_office = 0
    for title in COLUMNS:
        everywhere, here = run_panel(loaded, title), run_panel(loaded, title, office=office)
        if "office" in here.columns:  # the filter keeps exactly that office's rows
            column = here.columns.index("office")
            assert here.rows == [row for row in everywhere.rows if row[column] == office], title
            by_office += bool(here.rows) and len({row[column] for row in everywhere.rows}) > 1
    assert by_office >= 5
    (raised_here,) = run_panel(loaded, "Raised, acknowledged, resolved", office=office).rows
    (raised_all,) = run_panel(loaded, "Raised, acknowledged, resolved").rows
    assert 0 < raised_here[0] < raised_all[0]


def test_the_time_range_filters(loaded: ChdbStore) -> None:
    """A month of the quarter: fewer alerts than the quarter, and the check-ins of exactly those
    WIB days (counted here from the rows, without SQL)."""
    month = TimeRange(START + timedelta(days=30), START + timedelta(days=59))
    (month_funnel,) = run_panel(loaded, "Raised, acknowledged, resolved", when=month).rows
    (full_funnel,) = run_panel(loaded, "Raised, acknowledged, resolved").rows
    assert 0 < month_funnel[0] < full_funnel[0]
    columns = TABLES["hotel_guest_event"].columns
    hotel = [dict(zip(columns, r, strict=True)) for r in simulated_rows()["hotel_guest_events"]]
    cancelled = {r["corrects_event_id"] for r in hotel if r["action"] == "CANCEL"}
    checkins = [
        r
        for r in hotel
        if r["action"] == "CHECK_IN"
        and r["event_id"] not in cancelled
        and month.from_s <= r["occurred_at"] <= month.to_s
    ]
    deadline_s = default_rules().reporting.hotel_deadline_hours * 3600
    late = sum(1 for r in checkins if r["reported_at"] - r["occurred_at"] > deadline_s)
    (stat,) = run_panel(loaded, "Check-ins reported", when=month).rows
    assert stat[:3] == (len(checkins), len(checkins) - late, late)
    days = run_panel(loaded, "Check-ins per day: on time and late", when=month).rows
    assert len(days) <= 30 and sum(d[1] + d[2] for d in days) == len(checkins)


# ------------------------------------------------------------------------------------ the reports agree


def _sums(rows: list[Row], key: slice, values: slice) -> dict[Row, tuple[Any, ...]]:
    out: dict[Row, list[Any]] = {}
    for row in rows:
        acc = out.setdefault(row[key], [0] * len(row[values]))
        for i, v in enumerate(row[values]):
            acc[i] += v
    return {k: tuple(v) for k, v in out.items()}


def test_panels_agree_with_the_reports(loaded: ChdbStore) -> None:
    """The dashboard's figures are the named reports' on the same WIB days (offices: all)."""
    when = TimeRange(START + timedelta(days=7), START + timedelta(days=80))

    def report(name: str) -> list[Row]:
        return run_report(loaded, name, date_from=when.first, date_to=when.last).rows

    overstays = report("overstays")  # nationality, office, permit_type, days_over, ...
    by_office = run_panel(loaded, "Overstays by office and days over", when=when).rows
    assert _sums(by_office, slice(0, 2), slice(2, 5)) == _sums(overstays, slice(1, 4, 2), slice(4, 7))
    (total,) = run_panel(loaded, "Overstays", when=when).rows
    assert (total[0], total[1], total[4]) == tuple(map(sum, zip(*(r[4:7] for r in overstays), strict=True)))
    assert total[2] == sum(r[4] for r in overstays if r[3] == "60+") > 0  # escalations

    screening = report("tppo-screening")  # office, checkpoint, destination, route, ...
    by_checkpoint = run_panel(loaded, "Screenings by office and checkpoint", when=when).rows
    report_order = (4, 5, 7, 8, 9, 6, 10)  # candidates, open, delayed, referred, confirmed, cleared, false_positive
    assert {r[:2]: r[2:] for r in by_checkpoint} == {
        k: tuple(v[i - 4] for i in report_order) for k, v in _sums(screening, slice(0, 2), slice(4, 11)).items()
    }

    indicators = report("tppo-indicators")
    assert sorted(run_panel(loaded, "Indicators", when=when).rows) == sorted(indicators)

    funnel = report("alert-funnel")
    assert run_panel(loaded, "Funnel by office and rule", when=when).rows == funnel

    sponsors = {r[0]: (r[3], r[7], r[6]) for r in report("sponsor-compliance")}
    panel = {r[0]: (r[3], r[6], r[7]) for r in run_panel(loaded, "Sponsor compliance", when=when).rows}
    assert panel and {s: sponsors[s] for s in panel} == panel  # foreigners, overdue and roster alerts

    hotels = report("hotel-compliance")  # ..., checkins, on_time, late, missing, silent
    (checkins,) = run_panel(loaded, "Check-ins reported", when=when).rows
    assert checkins[:3] == tuple(map(sum, zip(*(r[4:7] for r in hotels), strict=True)))
    by_office_hotels = run_panel(loaded, "Reporting by office", when=when).rows
    assert sum(r[6] for r in by_office_hotels) == sum(r[7] for r in hotels)  # report.missing alerts
    assert sum(r[7] for r in by_office_hotels) == sum(r[8] for r in hotels)  # establishment.silent alerts


# ------------------------------------------------------------------------------------ duplicates


def test_a_redelivered_batch_changes_no_panel(loaded: ChdbStore, chdb_store: ChdbStore) -> None:
    """Every row written twice (a redelivery, a replayed topic): every panel as with each row once."""
    load(chdb_store, times=2)
    for table, table_rows in simulated_rows().items():
        count = chdb_store.query(f"SELECT count() FROM {chdb_store.database}.{table}").rows[0][0]
        assert count == 2 * len(table_rows), table  # both copies are there
    for title in COLUMNS:
        assert run_panel(chdb_store, title).rows == run_panel(loaded, title).rows, title
