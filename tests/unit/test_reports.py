"""The named reports on a small hand-made data set, in embedded ClickHouse (chdb).

The data set (``load``) and the expected outputs (``EXPECTED``) are shared with
tests/integration/test_reports_server.py, which runs the same reports on a ClickHouse 18.16 server.
Every table gets duplicate rows (a redelivered batch) that must not count twice. chdb allows one
embedded server per process (one data path), so the module shares one store and gives each test its
own database.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from connectors.sink.migrate import migrate
from connectors.sink.reports import REPORTS, ReportError, format_table, render, run_report
from connectors.sink.sink import TABLES_BY_NAME
from connectors.sink.store import ChdbStore, Result, Store

# ------------------------------------------------------------------------------------------ data set


def t(month: int, day: int, hour: float = 3, minute: int = 0) -> datetime:
    """A UTC instant in 2026 (03:00 UTC is 10:00 WIB, the same local day)."""
    return datetime(2026, month, day, tzinfo=UTC) + timedelta(hours=hour, minutes=minute)


def d(month: int, day: int) -> date:
    return date(2026, month, day)


_ARRAYS = {"onward_route", "roster_person_keys", "change_kinds", "change_person_keys", "evidence_names"}
_ARRAYS |= {"evidence_values", "reasons", "error_fields", "error_problems"}


def row(table: str, **fields: Any) -> tuple[Any, ...]:
    """A row in the table's column order; columns not given are empty (None, '' or [])."""
    columns = TABLES_BY_NAME[table].columns
    unknown = set(fields) - set(columns)
    assert not unknown, unknown
    out = []
    for c in columns:
        if c in fields:
            out.append(fields[c])
        elif c in _ARRAYS:
            out.append([])
        else:
            out.append(None)
    return tuple(out)


def hotel(eid: str, action: str, est: str, occurred: datetime, reported: datetime, **kw: Any) -> tuple[Any, ...]:
    name, region, office = ESTABLISHMENTS[est]
    return row(
        "hotel_guest_events",
        event_id=eid,
        occurred_at=occurred,
        reported_at=reported,
        source="hotel",
        action=action,
        establishment_id=est,
        establishment_name=name,
        region=region,
        office=office,
        person_key=kw.pop("person_key", "pk_guest"),
        nationality="SGP",
        check_in_date=occurred.date(),
        **kw,
    )


ESTABLISHMENTS = {
    "EST-1": ("Hotel Harmoni", "Kota Batam", "KANIM-BATAM"),
    "EST-2": ("Losmen Sari", "Kota Batam", "KANIM-BATAM"),
    "EST-3": ("Hotel Jaya", "Kota Tangerang", "KANIM-SH"),
}
CHECKPOINTS = {"TPI-BATAM": "KANIM-BATAM", "TPI-SH": "KANIM-SH"}


def crossing(eid: str, direction: str, cp: str, pk: str, nat: str, occurred: datetime, **kw: Any) -> tuple[Any, ...]:
    return row(
        "border_crossings",
        event_id=eid,
        occurred_at=occurred,
        reported_at=occurred + timedelta(minutes=1),
        source=cp,
        direction=direction,
        checkpoint_id=cp,
        checkpoint_kind="SEAPORT",
        office=CHECKPOINTS[cp],
        person_key=pk,
        nationality=nat,
        **kw,
    )


def permit(
    eid: str, action: str, ptype: str, pk: str, occurred: datetime, until: date, sponsor: str | None, office: str
) -> tuple[Any, ...]:
    return row(
        "permit_updates",
        event_id=eid,
        occurred_at=occurred,
        reported_at=occurred + timedelta(minutes=5),
        source=office,
        action=action,
        permit_type=ptype,
        person_key=pk,
        nationality="AUS",
        valid_until=until,
        sponsor_id=sponsor,
        office=office,
    )


def alert(
    aid: str,
    status: str,
    step: int,
    rule: str,
    office: str,
    occurred: datetime,
    evidence: dict[str, str] | None = None,
    **subject: str,
) -> tuple[Any, ...]:
    ev = evidence or {}
    return row(
        "alerts",
        event_id=f"{aid}:{status.lower()}:{step}",
        occurred_at=occurred,
        reported_at=occurred + timedelta(seconds=2),
        alert_id=aid,
        rule_id=rule,
        rule_version="2026.11-2",
        status=status,
        severity="MEDIUM",
        office=office,
        evidence_names=list(ev),
        evidence_values=list(ev.values()),
        reasons=["test"],
        **subject,
    )


def action(
    eid: str, aid: str, rule: str, office: str, what: str, at: datetime, disposition: str | None = None
) -> tuple[Any, ...]:
    return row(
        "alert_actions",
        event_id=eid,
        occurred_at=at,
        reported_at=at,
        alert_id=aid,
        rule_id=rule,
        office=office,
        action=what,
        actor="officer-1",
        actor_role="OFFICER",
        disposition=disposition,
    )


def overstay_ev(until: str, days_over: int) -> dict[str, str]:
    return {"authorised_until": until, "days_over": str(days_over), "charge_idr": str(days_over * 1_000_000)}


def tppo_ev(departure: str, *indicators: str) -> dict[str, str]:
    return {**{i: "why" for i in indicators}, "score": "5", "window": departure}


def sponsor_report(eid: str, sponsor: str, name: str, office: str, start: date, end: date, reported: datetime) -> Any:
    return row(
        "sponsor_reports",
        event_id=eid,
        occurred_at=reported,
        reported_at=reported,
        source=sponsor,
        sponsor_id=sponsor,
        sponsor_name=name,
        region="Mojokerto",
        office=office,
        period_start=start,
        period_end=end,
        roster_person_keys=["pk_W1"],
    )


B, SH, ML = "KANIM-BATAM", "KANIM-SH", "KANIM-MALANG"
TP = "tppo.screening"


def dataset() -> dict[str, list[tuple[Any, ...]]]:
    """table -> rows. The first row of each table is inserted twice more (redelivery)."""
    hotels = [
        hotel("h1", "CHECK_IN", "EST-1", t(3, 2), t(3, 2, 5)),  # on time
        hotel("h2", "CHECK_IN", "EST-1", t(3, 4), t(3, 6, 4)),  # 49 h: late
        hotel("h3", "CHECK_IN", "EST-1", t(3, 5), t(3, 5, 3, 30)),  # cancelled below: not counted
        hotel("h3c", "CANCEL", "EST-1", t(3, 5, 4), t(3, 5, 4), corrects_event_id="h3"),
        hotel("h4", "CHECK_IN", "EST-1", t(3, 5, 20), t(3, 6, 20)),  # exactly 24 h: on time; WIB day 03-06
        hotel("h5", "CHECK_OUT", "EST-1", t(3, 7), t(3, 7), check_out_date=d(3, 7)),
        hotel("h6", "CHECK_IN", "EST-2", t(3, 10), t(3, 12)),  # 48 h: late
        hotel("h7", "CHECK_IN", "EST-3", t(3, 3), t(3, 3, 1)),
    ]
    crossings = [
        crossing("x-A", "ARRIVAL", "TPI-BATAM", "pk_A", "CHN", t(2, 1), permit_type="VOA", authorised_until=d(3, 2)),
        crossing("x-A2", "DEPARTURE", "TPI-SH", "pk_A", "CHN", t(5, 6)),
        crossing("x-B", "ARRIVAL", "TPI-BATAM", "pk_B", "AUS", t(1, 10), permit_type="VISA_EXEMPT"),
        crossing("x-D", "ARRIVAL", "TPI-BATAM", "pk_D", "AUS", t(2, 1), permit_type="VISA_EXEMPT"),
        crossing("x-E", "ARRIVAL", "TPI-BATAM", "pk_E", "AUS", t(1, 1), permit_type="VISA_EXEMPT"),
        crossing("x-F", "ARRIVAL", "TPI-BATAM", "pk_F", "AUS", t(1, 20), permit_type="VISA_EXEMPT"),
        crossing(
            "d1",
            "DEPARTURE",
            "TPI-BATAM",
            "pk_T1",
            "IDN",
            t(3, 5),
            destination_country="KHM",
            onward_route=["SGP", "MYS", "THA"],
        ),
        crossing(
            "d2",
            "DEPARTURE",
            "TPI-BATAM",
            "pk_T2",
            "IDN",
            t(3, 5, 4),
            destination_country="KHM",
            onward_route=["SGP", "MYS", "THA"],
        ),
        crossing("d3", "DEPARTURE", "TPI-BATAM", "pk_T3", "IDN", t(3, 6), destination_country="MYS"),
        crossing("d4", "DEPARTURE", "TPI-SH", "pk_T4", "IDN", t(3, 6), destination_country="SAU"),
        crossing(
            "d5",
            "DEPARTURE",
            "TPI-BATAM",
            "pk_T5",
            "IDN",
            t(3, 7),
            destination_country="KHM",
            onward_route=["SGP", "MYS", "THA"],
        ),
    ]
    permits = [
        permit("p-W1", "GRANTED", "ITAS", "pk_W1", t(1, 5), d(12, 31), "SPN-1", ML),
        permit("p-B", "GRANTED", "ITAS", "pk_B", t(1, 20), d(3, 9), "SPN-1", B),
        permit("p-W2", "GRANTED", "ITAS", "pk_W2", t(1, 5), d(12, 31), "SPN-1", ML),
        permit("p-W2c", "CANCELLED", "ITAS", "pk_W2", t(3, 15), d(12, 31), "SPN-1", ML),
        permit("p-W3", "GRANTED", "ITAS", "pk_W3", t(1, 5), d(6, 30), "SPN-1", ML),
        permit("p-W3e", "EXTENDED", "ITAS", "pk_W3", t(2, 1), d(12, 31), "SPN-2", ML),
        permit("p-W4", "GRANTED", "ITAS", "pk_W4", t(2, 10), d(6, 30), "SPN-2", ML),
        permit("p-X", "GRANTED", "ITAS", "pk_X", t(2, 10), d(6, 30), None, ML),  # no sponsor
    ]
    reports = [
        sponsor_report("s-1a", "SPN-1", "PT Sinar Baja", ML, d(1, 1), d(1, 31), t(2, 5)),
        sponsor_report("s-1b", "SPN-1", "PT Sinar Baja", ML, d(2, 1), d(2, 28), t(3, 5)),
        sponsor_report("s-3", "SPN-3", "CV Tiga", SH, d(3, 1), d(3, 31), t(4, 2)),
    ]
    alerts = [
        alert("AL-rm1", "RAISED", 0, "report.missing", B, t(3, 3), establishment_id="EST-1", person_key="pk_g1"),
        alert("AL-rm2", "RAISED", 0, "report.missing", B, t(3, 7), establishment_id="EST-1"),
        alert("AL-rm2", "WITHDRAWN", 1, "report.missing", B, t(3, 8), establishment_id="EST-1"),
        alert("AL-rm3", "RAISED", 0, "report.missing", B, t(3, 8), establishment_id="EST-9"),
        alert("AL-rm4", "RAISED", 0, "report.missing", SH, t(2, 20), establishment_id="EST-3"),
        alert("AL-sil1", "RAISED", 0, "establishment.silent", B, t(3, 20), establishment_id="EST-2"),
        # overstays: pk_A's stay ended 03-02; escalated (amended, step 1), then found at exit at SH
        alert("AL-os1", "RAISED", 0, "overstay", B, t(3, 2, 17), overstay_ev("2026-03-02", 1), person_key="pk_A"),
        alert("AL-os1", "AMENDED", 1, "overstay", B, t(4, 30, 17), overstay_ev("2026-03-02", 60), person_key="pk_A"),
        alert("AL-ox1", "RAISED", 0, "overstay.at_exit", SH, t(5, 6), overstay_ev("2026-03-02", 65), person_key="pk_A"),
        alert("AL-os2", "RAISED", 0, "overstay", B, t(3, 14, 17), overstay_ev("2026-03-09", 5), person_key="pk_B"),
        alert("AL-os3", "RAISED", 0, "overstay", B, t(3, 15), overstay_ev("2026-03-14", 1), person_key="pk_C"),
        alert("AL-os3", "WITHDRAWN", 1, "overstay", B, t(3, 16), overstay_ev("2026-03-14", 1), person_key="pk_C"),
        alert("AL-os4", "RAISED", 0, "overstay", B, t(3, 21), overstay_ev("2026-03-09", 12), person_key="pk_D"),
        alert("AL-osF", "RAISED", 0, "overstay", B, t(3, 22), overstay_ev("2026-03-02", 20), person_key="pk_F"),
        alert("AL-ox2", "RAISED", 0, "overstay.at_exit", B, t(3, 25), overstay_ev("2026-02-13", 40), person_key="pk_E"),
        # TPPO screenings (tp5 amended by the group stage: its latest evidence has group_same_agent)
        alert(
            "AL-tp1",
            "RAISED",
            0,
            TP,
            B,
            t(3, 5),
            tppo_ev("d1", "risk_destination", "one_way"),
            checkpoint_id="TPI-BATAM",
        ),
        alert(
            "AL-tp2",
            "RAISED",
            0,
            TP,
            B,
            t(3, 5, 4),
            tppo_ev("d2", "risk_destination", "new_passport"),
            checkpoint_id="TPI-BATAM",
        ),
        alert(
            "AL-tp3",
            "RAISED",
            0,
            TP,
            B,
            t(3, 6),
            tppo_ev("d3", "one_way", "pmi_without_placement", "previous_delay"),
            checkpoint_id="TPI-BATAM",
        ),
        alert(
            "AL-tp4",
            "RAISED",
            0,
            TP,
            SH,
            t(3, 6),
            tppo_ev("d4", "pmi_without_placement", "moratorium_destination"),
            checkpoint_id="TPI-SH",
        ),
        alert(
            "AL-tp5",
            "RAISED",
            0,
            TP,
            B,
            t(3, 7),
            tppo_ev("d5", "risk_destination", "one_way"),
            checkpoint_id="TPI-BATAM",
        ),
        alert(
            "AL-tp5",
            "AMENDED",
            1,
            TP,
            B,
            t(3, 7, 5),
            tppo_ev("d5", "risk_destination", "one_way", "group_same_agent"),
            checkpoint_id="TPI-BATAM",
        ),
        # sponsors
        alert("AL-sm1", "RAISED", 0, "sponsor.roster_mismatch", ML, t(3, 5), sponsor_id="SPN-1"),
        alert("AL-so1", "RAISED", 0, "sponsor.overdue", ML, t(4, 9, 17), {"period": "2026-03"}, sponsor_id="SPN-1"),
        alert("AL-so2", "RAISED", 0, "sponsor.overdue", ML, t(4, 9, 17), {"period": "2026-03"}, sponsor_id="SPN-2"),
    ]
    emitted = {r[3]: r[2] for r in reversed(alerts)}  # alert id -> first record's reported_at

    def after(aid: str, hours: float) -> datetime:
        return emitted[aid] + timedelta(hours=hours)  # type: ignore[no-any-return]

    actions = [
        action("ac1", "AL-tp1", TP, B, "ACKNOWLEDGE", after("AL-tp1", 2)),
        action("ac2", "AL-tp1", TP, B, "RESOLVE", after("AL-tp1", 3), "DELAYED_FOR_INTERVIEW"),
        action("ac3", "AL-tp2", TP, B, "ACKNOWLEDGE", after("AL-tp2", 4)),
        action("ac4", "AL-tp2", TP, B, "RESOLVE", after("AL-tp2", 5), "CLEARED"),
        action("ac5", "AL-tp2", TP, B, "REOPEN", after("AL-tp2", 6)),
        action("ac6", "AL-tp2", TP, B, "RESOLVE", after("AL-tp2", 7), "REFERRED"),
        action("ac7", "AL-tp3", TP, B, "ACKNOWLEDGE", after("AL-tp3", 10)),
        action("ac8", "AL-tp3", TP, B, "RESOLVE", after("AL-tp3", 11), "CLEARED"),
        action("ac9", "AL-tp3", TP, B, "REOPEN", after("AL-tp3", 12)),
        action("ac10", "AL-tp5", TP, B, "RESOLVE", after("AL-tp5", 1), "CLEARED"),
        action("ac11", "AL-tp4", TP, SH, "ACKNOWLEDGE", after("AL-tp4", 1)),
        action("ac12", "AL-tp4", TP, SH, "RESOLVE", after("AL-tp4", 2), "FALSE_POSITIVE"),
        action("ac13", "AL-os1", "overstay", B, "ACKNOWLEDGE", after("AL-os1", 3)),
        action("ac14", "AL-os1", "overstay", B, "ACKNOWLEDGE", after("AL-os1", 30)),  # the first one counts
        action("ac15", "AL-os1", "overstay", B, "COMMENT", after("AL-os1", 31)),
        action("ac16", "AL-rm1", "report.missing", B, "ASSIGN", after("AL-rm1", 1)),
    ]
    return {
        "hotel_guest_events": hotels,
        "border_crossings": crossings,
        "permit_updates": permits,
        "sponsor_reports": reports,
        "alerts": alerts,
        "alert_actions": actions,
    }


def load(store: Store) -> None:
    """Migrate and insert the data set, then every table's first rows again (a redelivered batch)."""
    migrate(store)
    data = dataset()
    for table, rows in data.items():
        store.insert(table, TABLES_BY_NAME[table].columns, rows)
    for table, rows in data.items():
        store.insert(table, TABLES_BY_NAME[table].columns, rows[:3])


# ------------------------------------------------------------------------------------------ expected

HOTEL_COLUMNS: tuple[str, ...] = ("establishment_id", "name", "region", "office", "checkins", "on_time", "late")
HOTEL_COLUMNS += ("report_missing", "establishment_silent", "silent_days")
OVERSTAY_COLUMNS: tuple[str, ...] = (
    "nationality",
    "office",
    "permit_type",
    "days_over",
    "overstays",
    "found_at_exit",
    "charge_due_idr",
)
TPPO_COLUMNS: tuple[str, ...] = ("office", "checkpoint_id", "destination", "route", "candidates", "open", "cleared")
TPPO_COLUMNS += ("delayed_for_interview", "referred", "confirmed", "false_positive")
INDICATOR_COLUMNS: tuple[str, ...] = ("indicator", "fired", "resolved", "upheld", "precision")
SPONSOR_COLUMNS: tuple[str, ...] = ("sponsor_id", "name", "office", "foreigners", "reports_due", "reports_received")
SPONSOR_COLUMNS += ("roster_mismatches", "overdue_alerts")
FUNNEL_COLUMNS: tuple[str, ...] = ("office", "rule_id", "raised", "acknowledged", "resolved", "withdrawn")
FUNNEL_COLUMNS += ("ack_median_hours", "ack_p90_hours")

TODAY = d(5, 20)  # fixes the sponsor period's end when --to is not given

# (report, filters) -> rows; the columns are above
CASES: dict[tuple[str, tuple[tuple[str, Any], ...]], list[tuple[Any, ...]]] = {
    ("hotel-compliance", ()): [
        ("EST-1", "Hotel Harmoni", "Kota Batam", B, 3, 2, 1, 1, 0, 2),
        ("EST-2", "Losmen Sari", "Kota Batam", B, 1, 0, 1, 0, 1, 0),
        ("EST-9", "", "", B, 0, 0, 0, 1, 0, 0),  # never reported a guest: known from its alert only
        ("EST-3", "Hotel Jaya", "Kota Tangerang", SH, 1, 1, 0, 1, 0, 0),
    ],
    # 03-06 WIB: h4 (03-05 20:00 UTC) is in, h2 (03-04) and AL-rm1 (03-03) are out
    ("hotel-compliance", (("date_from", d(3, 6)), ("date_to", d(3, 31)))): [
        ("EST-1", "Hotel Harmoni", "Kota Batam", B, 1, 1, 0, 0, 0, 0),
        ("EST-2", "Losmen Sari", "Kota Batam", B, 1, 0, 1, 0, 1, 0),
        ("EST-9", "", "", B, 0, 0, 0, 1, 0, 0),
    ],
    ("hotel-compliance", (("office", SH),)): [("EST-3", "Hotel Jaya", "Kota Tangerang", SH, 1, 1, 0, 1, 0, 0)],
    ("overstays", ()): [
        ("AUS", B, "ITAS", "1-7", 1, 0, 5_000_000),
        ("AUS", B, "VISA_EXEMPT", "8-30", 2, 0, 32_000_000),
        ("AUS", B, "VISA_EXEMPT", "31-59", 1, 1, 40_000_000),
        ("CHN", SH, "VOA", "60+", 1, 1, 65_000_000),  # one case: the escalated overstay, then found at exit
    ],
    ("overstays", (("office", SH),)): [("CHN", SH, "VOA", "60+", 1, 1, 65_000_000)],
    # the case is dated by its first alert (03-03 WIB, 03-02 17:00 UTC): out
    ("overstays", (("date_from", d(3, 4)),)): [
        ("AUS", B, "ITAS", "1-7", 1, 0, 5_000_000),
        ("AUS", B, "VISA_EXEMPT", "8-30", 2, 0, 32_000_000),
        ("AUS", B, "VISA_EXEMPT", "31-59", 1, 1, 40_000_000),
    ],
    ("tppo-screening", ()): [
        (B, "TPI-BATAM", "KHM", "SGP>MYS>THA", 3, 0, 1, 1, 1, 0, 0),
        (B, "TPI-BATAM", "MYS", "", 1, 1, 0, 0, 0, 0, 0),  # resolved, then reopened: open
        (SH, "TPI-SH", "SAU", "", 1, 0, 0, 0, 0, 0, 1),
    ],
    ("tppo-screening", (("office", SH),)): [(SH, "TPI-SH", "SAU", "", 1, 0, 0, 0, 0, 0, 1)],
    ("tppo-screening", (("date_to", d(3, 5)),)): [(B, "TPI-BATAM", "KHM", "SGP>MYS>THA", 2, 0, 0, 1, 1, 0, 0)],
    ("tppo-indicators", ()): [
        ("group_same_agent", 1, 1, 0, 0),
        ("moratorium_destination", 1, 1, 0, 0),
        ("new_passport", 1, 1, 1, 1),
        ("one_way", 3, 2, 1, 0.5),
        ("pmi_without_placement", 2, 1, 0, 0),
        ("previous_delay", 1, 0, 0, None),
        ("risk_destination", 3, 3, 2, 0.667),
    ],
    ("tppo-indicators", (("office", B),)): [
        ("group_same_agent", 1, 1, 0, 0),
        ("new_passport", 1, 1, 1, 1),
        ("one_way", 3, 2, 1, 0.5),
        ("pmi_without_placement", 1, 0, 0, None),
        ("previous_delay", 1, 0, 0, None),
        ("risk_destination", 3, 3, 2, 0.667),
    ],
    # Jan-Apr: SPN-1 known in Jan, due Feb-Apr, sent Jan (not due) and Feb; SPN-2 (no reports) due Mar-Apr
    ("sponsor-compliance", (("date_from", d(1, 1)), ("date_to", d(4, 30)))): [
        ("SPN-1", "PT Sinar Baja", ML, 2, 3, 1, 1, 1),
        ("SPN-2", "", ML, 2, 2, 0, 0, 1),
        ("SPN-3", "CV Tiga", SH, 0, 0, 0, 0, 0),
    ],
    # to 03-15: months ending by then: Jan, Feb; SPN-3 not known yet; the overdue alerts come in April
    ("sponsor-compliance", (("date_from", d(1, 1)), ("date_to", d(3, 15)))): [
        ("SPN-1", "PT Sinar Baja", ML, 2, 1, 1, 1, 0),
        ("SPN-2", "", ML, 2, 0, 0, 0, 0),
    ],
    # no period: months from the first due one to the last complete month before TODAY (April)
    ("sponsor-compliance", ()): [
        ("SPN-1", "PT Sinar Baja", ML, 2, 3, 1, 1, 1),
        ("SPN-2", "", ML, 2, 2, 0, 0, 1),
        ("SPN-3", "CV Tiga", SH, 0, 0, 0, 0, 0),
    ],
    ("sponsor-compliance", (("office", SH),)): [("SPN-3", "CV Tiga", SH, 0, 0, 0, 0, 0)],
    ("alert-funnel", ()): [
        (B, "establishment.silent", 1, 0, 0, 0, None, None),
        (B, "overstay", 5, 1, 0, 1, 3, 3),
        (B, "overstay.at_exit", 1, 0, 0, 0, None, None),
        (B, "report.missing", 3, 0, 0, 1, None, None),
        (B, "tppo.screening", 4, 3, 3, 0, 4, 8.8),
        (ML, "sponsor.overdue", 2, 0, 0, 0, None, None),
        (ML, "sponsor.roster_mismatch", 1, 0, 0, 0, None, None),
        (SH, "overstay.at_exit", 1, 0, 0, 0, None, None),
        (SH, "report.missing", 1, 0, 0, 0, None, None),
        (SH, "tppo.screening", 1, 1, 1, 0, 1, 1),
    ],
    ("alert-funnel", (("office", B), ("date_from", d(3, 5)), ("date_to", d(3, 6)))): [
        (B, "tppo.screening", 3, 3, 2, 0, 4, 8.8),
    ],
}
COLUMNS = {
    "hotel-compliance": HOTEL_COLUMNS,
    "overstays": OVERSTAY_COLUMNS,
    "tppo-screening": TPPO_COLUMNS,
    "tppo-indicators": INDICATOR_COLUMNS,
    "sponsor-compliance": SPONSOR_COLUMNS,
    "alert-funnel": FUNNEL_COLUMNS,
}


def run_case(store: Store, name: str, filters: tuple[tuple[str, Any], ...]) -> Result:
    return run_report(store, name, today=TODAY, **dict(filters))


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports") / "chdb"


@pytest.fixture(scope="module")
def session_store(chdb_dir: Path) -> Iterator[ChdbStore]:
    """Keeps the module's embedded server up; every store below opens a session on the same path."""
    store = ChdbStore(chdb_dir, "r_default")
    yield store
    store.close()


@pytest.fixture
def fresh(session_store: ChdbStore, chdb_dir: Path) -> Iterator[Store]:
    """A store with a database of its own."""
    store = ChdbStore(chdb_dir, f"r_{uuid.uuid4().hex[:12]}")
    yield store
    store.close()


@pytest.fixture(scope="module")
def loaded(session_store: ChdbStore, chdb_dir: Path) -> Iterator[Store]:
    store = ChdbStore(chdb_dir, f"r_{uuid.uuid4().hex[:12]}")
    load(store)
    yield store
    store.close()


# ------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("case", list(CASES), ids=lambda c: c[0] + "".join(f"-{k}={v}" for k, v in c[1]))
def test_report_numbers(loaded: Store, case: tuple[str, tuple[tuple[str, Any], ...]]) -> None:
    name, filters = case
    result = run_case(loaded, name, filters)
    assert result.columns == COLUMNS[name]
    assert result.rows == CASES[case]


def test_every_report_has_a_case() -> None:
    assert {name for name, _ in CASES} == set(REPORTS)


def test_empty_database_gives_empty_reports(fresh: Store) -> None:
    store = fresh
    migrate(store)
    for name in REPORTS:
        result = run_report(store, name, today=TODAY)
        assert result.rows == [], name
        assert result.columns == COLUMNS[name]


def test_duplicates_do_not_count(fresh: Store) -> None:
    """The data set loaded three times over gives the same numbers."""
    store = fresh
    load(store)
    load(store)
    for case, rows in CASES.items():
        assert run_case(store, *case).rows == rows, case


def test_unknown_report_lists_the_names(loaded: Store) -> None:
    with pytest.raises(ReportError) as err:
        run_report(loaded, "overstay")
    message = str(err.value)
    assert "'overstay'" in message
    for name in REPORTS:
        assert name in message


def test_from_after_to_is_refused(loaded: Store) -> None:
    with pytest.raises(ReportError, match="after"):
        run_report(loaded, "overstays", date_from=d(3, 2), date_to=d(3, 1))


def test_office_is_quoted(loaded: Store) -> None:
    assert run_report(loaded, "alert-funnel", office="X' OR '1'='1").rows == []


def test_formats(loaded: Store) -> None:
    result = run_case(loaded, "tppo-indicators", ())
    text = render(result, "csv")
    parsed = list(csv.reader(io.StringIO(text)))
    assert tuple(parsed[0]) == INDICATOR_COLUMNS
    assert parsed[4] == ["one_way", "3", "2", "1", "0.5"]
    assert parsed[6] == ["previous_delay", "1", "0", "0", ""]
    doc = json.loads(render(result, "json"))
    assert doc[3] == {"indicator": "one_way", "fired": 3, "resolved": 2, "upheld": 1, "precision": 0.5}
    assert doc[5]["precision"] is None
    assert [list(o) for o in doc] == [list(INDICATOR_COLUMNS)] * len(doc)
    table = render(result, "table").splitlines()
    assert table[0].split() == list(INDICATOR_COLUMNS)
    assert set(table[1]) == {"-", " "}
    assert table[2].split() == ["group_same_agent", "1", "1", "0", "0"]
    # numbers are right-aligned, text left-aligned: every row ends where the header does
    assert len({len(line) for line in table if "previous_delay" not in line}) == 1
    with pytest.raises(ReportError, match="formats: table, csv, json"):
        render(result, "xml")


def test_table_of_nothing() -> None:
    assert format_table(Result(("a", "bb"), [])) == "a  bb\n-  --\n(no rows)\n"


def test_dates_render_the_same_whatever_the_engine(loaded: Store) -> None:
    from connectors.sink.reports import normalise

    assert normalise(date(2026, 3, 1)) == "2026-03-01"  # the server driver's Date
    assert normalise("2026-03-01") == "2026-03-01"  # chdb's
    assert normalise(datetime(2026, 3, 1, 7, tzinfo=UTC)) == "2026-03-01 07:00:00"
    assert normalise(1.0) == 1 and isinstance(normalise(1.0), int)
    assert normalise(float("nan")) is None
    assert normalise(0.5) == 0.5


# ------------------------------------------------------------------------------------------ the CLI


def test_cli_unknown_report(tmp_path: Path) -> None:
    from streams.cli import main

    result = CliRunner().invoke(main, ["report", "nope"], env={"PORA_STATE_DIR": str(tmp_path)})
    assert result.exit_code != 0
    assert "unknown report 'nope'" in result.output
    for name in REPORTS:
        assert name in result.output


def test_cli_bad_date_names_the_option(tmp_path: Path) -> None:
    from streams.cli import main

    result = CliRunner().invoke(main, ["report", "overstays", "--from", "2026-13-01"], env={"PORA_STATE_DIR": "x"})
    assert result.exit_code != 0
    assert "--from" in result.output and "YYYY-MM-DD" in result.output


def test_cli_report(loaded: Store, chdb_dir: Path, tmp_path: Path) -> None:
    """The embedded default (chdb in <state dir>/chdb) on the data set, as JSON and as a table."""
    from streams.cli import main

    state = chdb_dir.parent
    env = {"PORA_STATE_DIR": str(state), "PORA_CLICKHOUSE_URL": "", "PORA_CLICKHOUSE_DATABASE": loaded.database}
    args = ["report", "overstays", "--office", SH, "--from", "2026-03-01", "--to", "2026-03-31"]
    result = CliRunner().invoke(main, [*args, "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        {
            "nationality": "CHN",
            "office": SH,
            "permit_type": "VOA",
            "days_over": "60+",
            "overstays": 1,
            "found_at_exit": 1,
            "charge_due_idr": 65_000_000,
        }
    ]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split() == list(OVERSTAY_COLUMNS)


def test_cli_report_on_a_new_database(session_store: ChdbStore, chdb_dir: Path) -> None:
    """An empty database is migrated first: an empty report, not an error."""
    from streams.cli import main

    env = {"PORA_STATE_DIR": str(chdb_dir.parent), "PORA_CLICKHOUSE_DATABASE": f"r_{uuid.uuid4().hex[:12]}"}
    result = CliRunner().invoke(main, ["report", "alert-funnel", "--format", "csv"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output == ",".join(FUNNEL_COLUMNS) + "\n"
