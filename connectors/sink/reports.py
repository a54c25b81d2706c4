"""Named analytics reports over the ClickHouse tables (``pora report NAME``).

Each report is one SELECT that runs unchanged on ClickHouse 18.16, chdb and a current server: one
JOIN per SELECT (nested subqueries, no CTE tables), explicit ``ANY``/``ALL`` join strictness, no
lambda that captures a column (18.16 cannot), no window functions, aliases that never shadow a
column. Every table is a ReplacingMergeTree read with ``FINAL``, so a duplicate row (a redelivered
batch, a replayed topic) never counts twice.

Common definitions (every report):

- *local day*: the WIB (Asia/Jakarta) date of a timestamp, as the detector rules count days.
- ``--from``/``--to``: inclusive local days, applied to the report's event date (each report says which).
- *alert state*: an alert is its records grouped by ``alert_id``. Its latest record is the one with
  the greatest step (the number after the status in its ``event_id``), then the greatest
  ``reported_at`` (``event_id`` order is not time order); its status, office and evidence are that
  record's. It is *standing* unless that status is WITHDRAWN. It was *raised* on the local day of
  its first record's ``occurred_at`` (the event time its rule fired): the date filters use that day.
- *triage*: actions are ordered by (``occurred_at``, ``event_id``). An alert is *acknowledged* when it has
  an ACKNOWLEDGE action; *resolved* when its latest RESOLVE-or-REOPEN action is a RESOLVE, and then its
  *outcome* is that action's disposition (a later REOPEN makes it open again).
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from connectors.sink.store import Result, Store, _check_name
from streams.detect.config import RulesConfig, default_rules

FORMATS = ("table", "csv", "json")
TZ = "Asia/Jakarta"  # WIB: the detector's calendar days (streams/detect/RULES.md)
WIB = timedelta(hours=7)
POSITIVE = ("DELAYED_FOR_INTERVIEW", "REFERRED", "CONFIRMED")  # a screening the officer upheld
DISPOSITIONS = ("CLEARED", "DELAYED_FOR_INTERVIEW", "REFERRED", "CONFIRMED", "FALSE_POSITIVE")
_EPOCH = date(1970, 1, 1)


class ReportError(ValueError):
    """An unknown report name or a wrong filter; the message says what is allowed."""


@dataclass(frozen=True)
class Query:
    """What a report's SQL is built from: the database, the filters and the rules."""

    db: str
    date_from: date | None
    date_to: date | None
    office: str | None
    rules: RulesConfig
    today: date  # local (WIB) day the report is made: the default end of the sponsor period

    def days(self, expr: str) -> str:
        """`` AND`` conditions putting the local day ``expr`` in the period (empty without one)."""
        out = ""
        if self.date_from is not None:
            out += f" AND {expr} >= toDate('{self.date_from.isoformat()}')"
        if self.date_to is not None:
            out += f" AND {expr} <= toDate('{self.date_to.isoformat()}')"
        return out

    def in_office(self, expr: str) -> str:
        return "" if self.office is None else f" AND {expr} = {sql_string(self.office)}"


@dataclass(frozen=True)
class Report:
    name: str
    summary: str  # one line
    sql: Callable[[Query], str]  # its docstring defines every column

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.sql.__doc__ or self.summary)


# How a text becomes a ClickHouse string literal: what clickhouse-driver does for its %(name)s
# parameters (ClickHouse 18.16 has no server-side query parameters, so the driver's are this too),
# for both engines. Every value a user gives (an office, a person key) reaches SQL only through
# sql_string; dates only as ``date`` objects.
_ESCAPES = str.maketrans(
    {
        "\\": "\\\\",
        "'": "\\'",
        "\0": "\\0",
        "\a": "\\a",
        "\b": "\\b",
        "\f": "\\f",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
        "\v": "\\v",
    }
)


def sql_string(text: str) -> str:
    """``text`` as a quoted ClickHouse string literal (backslash escapes; both engines read it back
    exactly: see tests/integration/test_security.py)."""
    if not isinstance(text, str):
        raise TypeError(f"a SQL string literal is made of text, not {type(text).__name__}")
    return "'" + text.translate(_ESCAPES) + "'"


def _local_day(expr: str) -> str:
    return f"toDate({expr}, '{TZ}')"


def _names(values: Sequence[str]) -> str:
    return ", ".join(sql_string(v) for v in values)


# ----------------------------------------------------------------------------- shared subqueries


def _alerts(q: Query, rule_ids: Sequence[str] | None) -> str:
    """One row per alert of these rules (all without), see *alert state*; columns prefixed ``a_``."""
    where = "" if rule_ids is None else f"WHERE rule_id IN ({_names(rule_ids)})"
    key = "(a_step, reported_at)"
    return f"""
        SELECT alert_id AS a_id, any(rule_id) AS a_rule,
               argMax(status, {key}) AS a_status, argMax(office, {key}) AS a_office,
               ifNull(any(person_key), '') AS a_person, ifNull(any(establishment_id), '') AS a_establishment,
               ifNull(any(sponsor_id), '') AS a_sponsor, ifNull(any(checkpoint_id), '') AS a_checkpoint,
               argMax(evidence_names, {key}) AS a_names, argMax(evidence_values, {key}) AS a_values,
               min(occurred_at) AS a_raised_at, min(reported_at) AS a_emitted_at,
               {_local_day("min(occurred_at)")} AS a_day
        FROM (
            SELECT alert_id, rule_id, status, office, person_key, establishment_id, sponsor_id, checkpoint_id,
                   evidence_names, evidence_values, occurred_at, reported_at,
                   toUInt32OrZero(splitByChar(':', event_id)[3]) AS a_step
            FROM {q.db}.alerts FINAL
            {where}
        )
        GROUP BY alert_id"""


def _triage(q: Query) -> str:
    """One row per alert with actions, columns prefixed ``x_`` (see *triage*)."""
    order = "(occurred_at, event_id)"
    closing = "action IN ('RESOLVE', 'REOPEN')"
    return f"""
        SELECT alert_id AS x_id,
               countIf(action = 'ACKNOWLEDGE') > 0 AS x_acked,
               minIf(occurred_at, action = 'ACKNOWLEDGE') AS x_ack_at,
               argMaxIf(action, {order}, {closing}) = 'RESOLVE' AS x_resolved,
               argMaxIf(ifNull(disposition, ''), {order}, {closing}) AS x_disposition
        FROM {q.db}.alert_actions FINAL
        GROUP BY alert_id"""


def _alerts_with_triage(q: Query, rule_ids: Sequence[str] | None) -> str:
    """Alert state joined to its triage; ``x_outcome`` is the disposition of a resolved alert, else ''."""
    return f"""
        SELECT *, if(x_resolved, x_disposition, '') AS x_outcome
        FROM ({_alerts(q, rule_ids)}) AS alert_state
        ANY LEFT JOIN ({_triage(q)}) AS triage ON a_id = x_id"""


def _evidence(name: str) -> str:
    """The value of evidence ``name`` in the alert's latest record ('' when absent)."""
    return f"a_values[indexOf(a_names, {sql_string(name)})]"


# ----------------------------------------------------------------------------- the reports


def _hotel_compliance(q: Query) -> str:
    """hotel-compliance: one row per establishment (office, establishment_id order).

    Rows: every establishment with a check-in in the period or a standing report.missing or
    establishment.silent alert raised in the period (an establishment that never reported a guest
    shows up through its alerts, with an empty name and region and the alert's office).

    - name, region, office: from its latest hotel event (any time; by ``reported_at``), else ''/''/the
      alerts' office. ``--office`` filters on this office (so a report.missing alert routed to the
      arrival checkpoint's office still counts for the establishment).
    - checkins: CHECK_IN events whose local day of ``occurred_at`` is in the period, not cancelled by a
      CANCEL (corrections do not change it); on_time: those with ``reported_at - occurred_at`` at most
      ``reporting.hotel_deadline_hours`` (rules.toml); late = checkins - on_time.
    - report_missing, establishment_silent: standing alerts of that rule about it, raised in the period.
    - silent_days: days without a check-in between its first and its last check-in day in the period
      (both included): (last - first + 1) - days with a check-in. A silence after its last report is
      what establishment.silent alerts measure; 0 without check-ins.
    """
    deadline_s = int(q.rules.reporting.hotel_deadline_hours * 3600)
    return f"""
SELECT c_establishment AS establishment_id, d_name AS name, d_region AS region,
       if(d_office != '', d_office, c_alert_office) AS office,
       checkins, on_time, late, report_missing, establishment_silent, silent_days
FROM (
    SELECT c_establishment,
           sum(c_checkin) AS checkins, sum(c_on_time) AS on_time, checkins - on_time AS late,
           sum(c_missing) AS report_missing, sum(c_silent) AS establishment_silent,
           if(checkins = 0, 0,
              toUInt64(dateDiff('day', minIf(c_day, c_checkin = 1), maxIf(c_day, c_checkin = 1)) + 1)
              - uniqExactIf(c_day, c_checkin = 1)) AS silent_days,
           minIf(c_office, c_checkin = 0) AS c_alert_office
    FROM (
        SELECT establishment_id AS c_establishment, toUInt64(1) AS c_checkin,
               toUInt64(dateDiff('second', occurred_at, reported_at) <= {deadline_s}) AS c_on_time,
               toUInt64(0) AS c_missing, toUInt64(0) AS c_silent, {_local_day("occurred_at")} AS c_day,
               office AS c_office
        FROM {q.db}.hotel_guest_events FINAL
        WHERE action = 'CHECK_IN'
          AND event_id NOT IN (
              SELECT ifNull(corrects_event_id, '') FROM {q.db}.hotel_guest_events WHERE action = 'CANCEL')
          {q.days(_local_day("occurred_at"))}
        UNION ALL
        SELECT a_establishment, toUInt64(0), toUInt64(0),
               toUInt64(a_rule = 'report.missing'), toUInt64(a_rule = 'establishment.silent'), a_day, a_office
        FROM ({_alerts(q, ("report.missing", "establishment.silent"))})
        WHERE a_status != 'WITHDRAWN' AND a_establishment != '' {q.days("a_day")}
    )
    GROUP BY c_establishment
) AS per_establishment
ANY LEFT JOIN (
    SELECT establishment_id AS d_id, argMax(establishment_name, reported_at) AS d_name,
           argMax(region, reported_at) AS d_region, argMax(office, reported_at) AS d_office
    FROM {q.db}.hotel_guest_events FINAL
    GROUP BY establishment_id
) AS directory ON c_establishment = d_id
WHERE 1 {q.in_office("if(d_office != '', d_office, c_alert_office)")}
ORDER BY office, establishment_id"""


def _people(q: Query) -> str:
    """Per person key: nationality from the latest crossing or permit update (by ``occurred_at``),
    permit type from the latest permit update or arrival that names one."""
    return f"""
        SELECT p_key, argMax(p_nationality, (p_at, p_event)) AS p_nat,
               argMaxIf(p_permit, (p_at, p_event), p_permit != '') AS p_permit_type
        FROM (
            SELECT person_key AS p_key, nationality AS p_nationality, ifNull(permit_type, '') AS p_permit,
                   occurred_at AS p_at, event_id AS p_event
            FROM {q.db}.border_crossings FINAL
            UNION ALL
            SELECT person_key, nationality, permit_type, occurred_at, event_id
            FROM {q.db}.permit_updates FINAL
        )
        GROUP BY p_key"""


def _overstays(q: Query) -> str:
    """overstays: standing overstay and overstay.at_exit alerts, counted once per *case*.

    A case is a person and an authorised-until day (evidence ``authorised_until``): an overstay
    alert and the at-exit alert of the same stay are one case, and the at-exit one (the final
    figure) gives its office, days over and charge; otherwise the overstay alert's latest record
    does (for a person still in the country, days over as of that record: the escalation at 60
    days amends it, daily growth in between does not). The period filters on the day the case was
    first raised; ``--office`` on the case's office.

    - nationality: the person's latest crossing or permit update (by ``occurred_at``); permit_type:
      the latest permit update or arrival that names one ('' when the person is unknown).
    - days_over: bucket of the evidence ``days_over``: 1-7, 8-30, 31-59, 60+ (60+: deportation).
    - overstays: cases; found_at_exit: of them, found at a departure (overstay.at_exit);
      charge_due_idr: sum of the evidence ``charge_idr`` (Rp, PP 28/2019).
    """
    exit_first = "(o_exit, a_raised_at, a_id)"
    return f"""
SELECT p_nat AS nationality, o_office AS office, p_permit_type AS permit_type,
       multiIf(o_days <= 7, '1-7', o_days <= 30, '8-30', o_days < 60, '31-59', '60+') AS days_over,
       count() AS overstays, sum(o_departed) AS found_at_exit, sum(o_charge) AS charge_due_idr
FROM (
    SELECT o_person, o_until,
           argMax(a_office, {exit_first}) AS o_office, max(o_exit) AS o_departed,
           argMax(o_days_over, {exit_first}) AS o_days, argMax(o_charge_idr, {exit_first}) AS o_charge,
           min(a_day) AS o_day
    FROM (
        SELECT a_id, a_office, a_raised_at, a_day, a_person AS o_person,
               {_evidence("authorised_until")} AS o_until,
               toUInt64(a_rule = 'overstay.at_exit') AS o_exit,
               toUInt64OrZero({_evidence("days_over")}) AS o_days_over,
               toUInt64OrZero({_evidence("charge_idr")}) AS o_charge_idr
        FROM ({_alerts(q, ("overstay", "overstay.at_exit"))})
        WHERE a_status != 'WITHDRAWN'
    )
    GROUP BY o_person, o_until
) AS cases
ANY LEFT JOIN ({_people(q)}) AS people ON o_person = p_key
WHERE 1 {q.days("o_day")} {q.in_office("o_office")}
GROUP BY nationality, office, permit_type, days_over
ORDER BY office, nationality, permit_type,
         multiIf(days_over = '1-7', 1, days_over = '8-30', 2, days_over = '31-59', 3, 4)"""


def _screenings(q: Query) -> str:
    """Standing tppo.screening alerts in the period and office, with triage and the departure."""
    return f"""
        SELECT *
        FROM (
            SELECT *, {_evidence("window")} AS t_departure
            FROM ({_alerts_with_triage(q, ("tppo.screening",))})
            WHERE a_status != 'WITHDRAWN' {q.days("a_day")} {q.in_office("a_office")}
        ) AS screenings
        ANY LEFT JOIN (
            SELECT event_id AS t_event, ifNull(destination_country, '') AS t_destination,
                   arrayStringConcat(onward_route, '>') AS t_route
            FROM {q.db}.border_crossings FINAL
            WHERE direction = 'DEPARTURE'
        ) AS departures ON t_departure = t_event"""


def _tppo_screening(q: Query) -> str:
    """tppo-screening: standing tppo.screening alerts raised in the period, by office, checkpoint
    (the alert's subject), destination and route (of the departure in the alert's ``window``
    evidence; route = onward route countries joined by '>', '' when direct).

    - candidates: alerts; open: not resolved (no RESOLVE, or a REOPEN after the latest one);
    - cleared, delayed_for_interview, referred, confirmed, false_positive: resolved alerts by the
      disposition of their latest RESOLVE (a RESOLVE without disposition counts in none).
    """
    outcomes = ", ".join(f"countIf(x_outcome = '{d}') AS {d.lower()}" for d in DISPOSITIONS)
    return f"""
SELECT a_office AS office, a_checkpoint AS checkpoint_id, t_destination AS destination, t_route AS route,
       count() AS candidates, countIf(NOT x_resolved) AS open, {outcomes}
FROM ({_screenings(q)})
GROUP BY office, checkpoint_id, destination, route
ORDER BY office, checkpoint_id, destination, route"""


def _tppo_indicators(q: Query) -> str:
    """tppo-indicators: per indicator (evidence names of the alert's latest record, so an indicator
    added by an amendment counts; ``score`` and ``window`` are not indicators), over the same alerts
    as tppo-screening:

    - fired: alerts where it fired; resolved: of them, resolved ones;
    - upheld: resolved with DELAYED_FOR_INTERVIEW, REFERRED or CONFIRMED;
    - precision: upheld / resolved, 3 decimals; empty (null) when none is resolved.
    """
    return f"""
SELECT indicator, count() AS fired, countIf(x_resolved) AS resolved,
       countIf(x_resolved AND x_outcome IN ({_names(POSITIVE)})) AS upheld,
       if(resolved = 0, NULL, round(upheld / resolved, 3)) AS precision
FROM (
    SELECT x_resolved, x_outcome, arrayJoin(arrayFilter(n -> n NOT IN ('score', 'window'), a_names)) AS indicator
    FROM ({_screenings(q)})
)
GROUP BY indicator
ORDER BY indicator"""


def _month(d: date) -> date:
    return d.replace(day=1)


def _sponsor_compliance(q: Query) -> str:
    """sponsor-compliance: one row per sponsor known (from a permit update naming it, a sponsor
    report or a sponsor alert) by the end of the period, ``--office`` on its office.

    - name: from its latest report ('' when it never reported: the companies employing foreigners
      without reporting show up here, with reports_received 0); office: of its latest permit update
      or report (by ``reported_at``), as the detector routes its alerts.
    - foreigners: distinct persons whose latest permit update (by ``occurred_at``, up to ``--to``)
      names it, is not CANCELLED and is valid on or after ``--from``.
    - reports_due: calendar months whose last day is in the period (``--to`` defaults to today, WIB;
      so the current month is not due yet) and that come after the month the sponsor became known
      (its first permit update or report, by ``reported_at``: as sponsor.overdue decides).
    - reports_received: of those months, the ones whose last day lies in the period of one of its
      reports (whenever that report came; lateness is what overdue alerts count).
    - roster_mismatches, overdue_alerts: standing sponsor.roster_mismatch and sponsor.overdue alerts
      about it, raised in the period.
    """
    # months M due in the period: M's last day in [from, to], M after the month the sponsor became known
    first = _month(q.date_from) if q.date_from is not None else _EPOCH
    end = q.date_to if q.date_to is not None else q.today
    last = _month(end) if (end + timedelta(days=1)).day == 1 else _month(_month(end) - timedelta(days=1))
    first_sql, last_sql = f"toDate('{first.isoformat()}')", f"toDate('{last.isoformat()}')"
    permits_to = "" if q.date_to is None else f" AND {_local_day('occurred_at')} <= toDate('{q.date_to}')"
    valid_from = "" if q.date_from is None else f" AND l_until >= toDate('{q.date_from}')"
    order = "(occurred_at, event_id)"
    standing = f"a_status != 'WITHDRAWN' AND a_sponsor != '' {q.days('a_day')}"
    return f"""
SELECT s_id AS sponsor_id, any(s_name) AS name, any(s_office) AS office,
       uniqExactIf(e_value, e_kind = 'f') AS foreigners, any(s_due) AS reports_due,
       uniqExactIf(e_value, e_kind = 'r' AND e_value >= s_first_due) AS reports_received,
       uniqExactIf(e_value, e_kind = 'm') AS roster_mismatches,
       uniqExactIf(e_value, e_kind = 'o') AS overdue_alerts
FROM (
    SELECT s_id, s_name, s_office, toString(s_lo) AS s_first_due,
           if(s_lo > {last_sql}, toUInt64(0), toUInt64(dateDiff('month', s_lo, {last_sql}) + 1)) AS s_due
    FROM (
        SELECT u_id AS s_id, argMaxIf(u_name, u_at, u_kind = 'report') AS s_name,
               if(countIf(u_kind != 'alert') > 0, argMaxIf(u_office, u_at, u_kind != 'alert'), min(u_office))
                   AS s_office,
               {_local_day("if(countIf(u_kind != 'alert') > 0, minIf(u_at, u_kind != 'alert'), min(u_at))")}
                   AS s_known,
               greatest(addMonths(toStartOfMonth(s_known), 1), {first_sql}) AS s_lo
        FROM (
            SELECT ifNull(sponsor_id, '') AS u_id, '' AS u_name, office AS u_office, reported_at AS u_at,
                   'permit' AS u_kind
            FROM {q.db}.permit_updates FINAL
            WHERE ifNull(sponsor_id, '') != ''
            UNION ALL
            SELECT sponsor_id, sponsor_name, office, reported_at, 'report'
            FROM {q.db}.sponsor_reports FINAL
            UNION ALL
            SELECT a_sponsor, '', a_office, a_emitted_at, 'alert'
            FROM ({_alerts(q, ("sponsor.roster_mismatch", "sponsor.overdue"))})
            WHERE a_sponsor != ''
        )
        GROUP BY u_id
    )
    WHERE s_known <= toDate('{end.isoformat()}') {q.in_office("s_office")}
) AS sponsors
ALL LEFT JOIN (
    SELECT l_sponsor AS e_sponsor, 'f' AS e_kind, l_person AS e_value
    FROM (
        SELECT person_key AS l_person, argMax(ifNull(sponsor_id, ''), {order}) AS l_sponsor,
               argMax(action, {order}) AS l_action, argMax(valid_until, {order}) AS l_until
        FROM {q.db}.permit_updates FINAL
        WHERE 1 {permits_to}
        GROUP BY person_key
    )
    WHERE l_sponsor != '' AND l_action != 'CANCELLED' {valid_from}
    UNION ALL
    SELECT sponsor_id, 'r', toString(r_month)
    FROM (
        SELECT sponsor_id, period_start, period_end,
               addMonths(toStartOfMonth(period_start),
                         arrayJoin(range(toUInt32(dateDiff('month', period_start, period_end) + 1)))) AS r_month
        FROM {q.db}.sponsor_reports FINAL
        WHERE period_end >= period_start
    )
    WHERE addMonths(r_month, 1) - 1 >= period_start AND addMonths(r_month, 1) - 1 <= period_end
      AND r_month >= {first_sql} AND r_month <= {last_sql}
    UNION ALL
    SELECT a_sponsor, if(a_rule = 'sponsor.roster_mismatch', 'm', 'o'), a_id
    FROM ({_alerts(q, ("sponsor.roster_mismatch", "sponsor.overdue"))})
    WHERE {standing}
) AS facts ON s_id = e_sponsor
GROUP BY s_id
ORDER BY office, sponsor_id"""


def _alert_funnel(q: Query) -> str:
    """alert-funnel: alerts raised in the period (withdrawn ones included) by office and rule.

    - raised: alerts; acknowledged: with an ACKNOWLEDGE action; resolved: resolved now (see
      *triage*); withdrawn: latest status WITHDRAWN.
    - ack_median_hours, ack_p90_hours: hours from the alert's first record's ``reported_at`` (when
      the detector emitted it: officers could see it) to its first ACKNOWLEDGE's ``occurred_at``
      (never below 0), over acknowledged alerts; ClickHouse ``quantile`` (interpolated, exact up to
      8192 values per group), 1 decimal; empty (null) when none is acknowledged.
    """
    hours = "greatest(dateDiff('second', a_emitted_at, x_ack_at), 0) / 3600"
    return f"""
SELECT a_office AS office, a_rule AS rule_id, count() AS raised,
       countIf(x_acked) AS acknowledged, countIf(x_resolved) AS resolved,
       countIf(a_status = 'WITHDRAWN') AS withdrawn,
       if(acknowledged = 0, NULL, round(quantileIf(0.5)({hours}, x_acked), 1)) AS ack_median_hours,
       if(acknowledged = 0, NULL, round(quantileIf(0.9)({hours}, x_acked), 1)) AS ack_p90_hours
FROM ({_alerts_with_triage(q, None)})
WHERE 1 {q.days("a_day")} {q.in_office("a_office")}
GROUP BY office, rule_id
ORDER BY office, rule_id"""


REPORTS: dict[str, Report] = {
    r.name: r
    for r in (
        Report(
            "hotel-compliance", "check-ins reported on time and late, missing-report alerts, silence", _hotel_compliance
        ),
        Report("overstays", "standing overstays by nationality, office, permit type and days over", _overstays),
        Report(
            "tppo-screening", "screening candidates and officers' outcomes by checkpoint and route", _tppo_screening
        ),
        Report("tppo-indicators", "precision of each TPPO indicator against officers' outcomes", _tppo_indicators),
        Report(
            "sponsor-compliance", "foreigners sponsored, reports due and received, roster alerts", _sponsor_compliance
        ),
        Report("alert-funnel", "alerts raised, acknowledged, resolved, withdrawn; time to acknowledge", _alert_funnel),
    )
}


def report_names() -> list[str]:
    return list(REPORTS)


def get_report(name: str) -> Report:
    try:
        return REPORTS[name]
    except KeyError:
        raise ReportError(f"unknown report {name!r}; reports: {', '.join(REPORTS)}") from None


def today_wib(now: datetime | None = None) -> date:
    return ((now or datetime.now(UTC)) + WIB).date()


def run_report(
    store: Store,
    name: str,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    office: str | None = None,
    rules: RulesConfig | None = None,
    today: date | None = None,
) -> Result:
    """Run report ``name``; values come back the same whatever the engine (see :func:`normalise`).
    ``today`` (default: the current WIB day) only ends the sponsor period when there is no ``date_to``."""
    report = get_report(name)
    for flag, day in (("--from", date_from), ("--to", date_to)):
        if day is not None and (not isinstance(day, date) or isinstance(day, datetime)):
            raise ReportError(f"{flag} must be a date (YYYY-MM-DD), not {type(day).__name__}")
    if office is not None and not isinstance(office, str):
        raise ReportError(f"--office must be text, not {type(office).__name__}")
    if date_from is not None and date_to is not None and date_from > date_to:
        raise ReportError(f"--from {date_from} is after --to {date_to}")
    q = Query(
        db=_check_name(store.database),
        date_from=date_from,
        date_to=date_to,
        office=office,
        rules=rules or default_rules(),
        today=today or today_wib(),
    )
    result = store.query(report.sql(q))
    return Result(result.columns, [tuple(normalise(v) for v in row) for row in result.rows])


def normalise(value: Any) -> Any:
    """One rendering for both engines: dates as YYYY-MM-DD (chdb gives strings, the driver date
    objects), instants as YYYY-MM-DD HH:MM:SS UTC, whole floats as ints (chdb's JSON writes 1.0 as 1),
    NaN as None."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return int(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _numeric(values: Sequence[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)


def format_table(result: Result) -> str:
    """Columns aligned: numbers right, text left; an empty result says so under the header."""
    cells = [[_text(v) for v in row] for row in result.rows]
    widths = [len(c) for c in result.columns]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [
        all(
            isinstance(row[i], int | float) and not isinstance(row[i], bool)
            for row in result.rows
            if row[i] is not None
        )
        and any(row[i] is not None for row in result.rows)
        for i in range(len(result.columns))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(result.columns), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    if not cells:
        out.append("(no rows)")
    return "\n".join(out) + "\n"


def format_csv(result: Result) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(result.columns)
    writer.writerows([_text(v) for v in row] for row in result.rows)
    return buf.getvalue()


def format_json(result: Result) -> str:
    """A list of objects, one per row, keys in column order."""
    rows = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
    return json.dumps(rows, ensure_ascii=False, indent=2) + "\n"


FORMATTERS: dict[str, Callable[[Result], str]] = {"table": format_table, "csv": format_csv, "json": format_json}


def render(result: Result, fmt: str) -> str:
    try:
        return FORMATTERS[fmt](result)
    except KeyError:
        raise ReportError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}") from None
