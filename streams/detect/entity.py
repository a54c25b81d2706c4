"""The establishment and sponsor rules (second stage; see RULES.md).

The person stage hands each released hotel check-in and sponsored permit on as a *fact*, keyed by
establishment or sponsor, with ticks carrying its watermark; `EntityDetector` orders the facts of
all upstream partitions and the sponsor reports on one timeline, exactly as the person stage does.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from streams import topics
from streams.detect.alerts import AlertStates, Evidence, Finding, alert_record, transition
from streams.detect.config import RulesConfig
from streams.detect.person import (
    DAY_MS,
    EPOCH_ORDINAL,
    HOUR_MS,
    day_start,
    days,
    local_day,
    ms,
    show_day,
    tppo_finding,
)
from streams.detect.retention import Horizon, RecentIds
from streams.detect.timeline import EVENT, Timeline


def fact_input(partition: int) -> str:
    return f"facts@{partition}"


def _month_of(day: int) -> tuple[int, int]:
    d = date.fromordinal(day + EPOCH_ORDINAL)
    return d.year, d.month


def _next_month(ym: tuple[int, int]) -> tuple[int, int]:
    y, m = ym
    return (y + 1, 1) if m == 12 else (y, m + 1)


def _day_of(y: int, m: int, d: int) -> int:
    return date(y, m, d).toordinal() - EPOCH_ORDINAL


def _last_day(ym: tuple[int, int]) -> int:
    ny, nm = _next_month(ym)
    return _day_of(ny, nm, 1) - 1


@dataclass
class Establishment:
    id: str
    name: str = ""
    office: str = ""
    report_days: set[int] = field(default_factory=set)  # local days of check-ins (by occurred_at)
    silences: list[str] = field(default_factory=list)  # ids of its establishment.silent alerts

    @property
    def last_day(self) -> int:
        return max(self.report_days)


@dataclass
class Sponsor:
    id: str
    office: str = ""
    first_seen: int = 0
    reports: list[tuple[int, int]] = field(default_factory=list)  # (period_end day, reported_at)
    permits: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # person -> occurred, until, action


class EntityDetector:
    def __init__(self, rules: RulesConfig, upstream_partitions: int, *, clock: Callable[[], int] | None = None) -> None:
        self.rules = rules
        inputs = [topics.SPONSOR_REPORTS, *(fact_input(p) for p in range(upstream_partitions))]
        self.timeline = Timeline(inputs, int(rules.time.lateness_seconds * 1000))
        self.establishments: dict[str, Establishment] = {}
        self.sponsors: dict[str, Sponsor] = {}
        self.alerts: AlertStates = {}
        self.journeys: dict[str, list[dict[str, Any]]] = {}  # reference -> departure facts
        self.grouped: set[str] = set()  # departures that have the group indicator
        retain_ms = rules.retention.days * DAY_MS
        self.applied = RecentIds(retain_ms)
        # departures forgotten after the retention horizon: their group windows closed long before
        self._journey_horizon: Horizon[tuple[str, str]] = Horizon(retain_ms, self._forget_journey)
        self._clock = clock or (lambda: int(_time.time() * 1000))
        self._out: list[dict[str, Any]] = []

    def held(self) -> dict[str, int]:
        """What this partition holds, by kind (cheap: for the worker's metrics)."""
        return {
            "establishments": len(self.establishments),
            "sponsors": len(self.sponsors),
            "journeys": len(self._journey_horizon),
            "record_ids": len(self.applied),
            "timers": self.timeline.pending(),
        }

    # ------------------------------------------------------------------ input

    def offer_fact(self, fact: dict[str, Any]) -> list[dict[str, Any]]:
        source = fact_input(int(fact["src"]))
        if fact["t"] == "tick":
            self.timeline.tick(source, int(fact["at"]))
        else:
            self.timeline.offer(source, int(fact["at"]), str(fact["id"]), ("fact", fact))
        return self._run()

    def offer_report(self, kind: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        reported = ms(record["reported_at"])
        if kind == "clock_tick":
            self.timeline.tick(topics.SPONSOR_REPORTS, reported)
        elif kind == "sponsor_report":
            self.timeline.offer(topics.SPONSOR_REPORTS, reported, str(record["event_id"]), ("report", record))
        return self._run()

    def _run(self) -> list[dict[str, Any]]:
        for at, rank, payload in self.timeline.release():
            if rank == EVENT:
                what, body = payload
                if not self.applied.add(str(body.get("id") or body.get("event_id")), at):
                    continue
                if what == "fact":
                    self._fact(at, body)
                else:
                    self._report(at, body)
            else:
                self._fire(at, payload)
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------ alerts

    def _emit(self, finding: Finding, at: int, status: str = "RAISED") -> None:
        step = transition(self.alerts, finding, status)
        if step is None:
            return
        self._out.append(
            alert_record(finding, status=status, step=step, version=self.rules.version, at=at, emitted_at=self._clock())
        )

    # ------------------------------------------------------------------ establishments

    def _threshold(self, est: Establishment) -> int | None:
        """Days of silence that make this establishment silent, or None while it has no regular history."""
        cfg = self.rules.establishment_silent
        ordered = sorted(est.report_days)
        last = ordered[-1]
        if last - ordered[0] < cfg.min_history_days:
            return None
        if sum(1 for d in ordered if d > last - 28) < cfg.min_report_days:
            return None
        gaps = [b - a for a, b in itertools.pairwise(ordered)]
        median = statistics.median(gaps) if gaps else 1
        return max(cfg.min_silent_days, math.ceil(cfg.silence_factor * median))

    def _fact(self, at: int, fact: dict[str, Any]) -> None:
        if fact["t"] == "hotel":
            est = self.establishments.setdefault(fact["est"], Establishment(fact["est"]))
            est.name, est.office = fact["name"], fact["office"]
            day = int(fact["day"])
            # a check-in from inside a silence already alerted means the report was late, not absent
            for aid in est.silences:
                finding, status, _ = self.alerts[aid]
                if status != "WITHDRAWN" and int(finding.window_start or 0) <= day_start(day) < int(
                    finding.window_end or 0
                ):
                    finding.reasons = [*finding.reasons, f"a check-in of {show_day(day)} was reported late"]
                    self._emit(finding, at, "WITHDRAWN")
            if day in est.report_days:
                return  # history, threshold and timer as they were
            est.report_days.add(day)
            threshold = self._threshold(est)
            if threshold is not None:
                last = est.last_day
                self.timeline.schedule(
                    day_start(last + threshold), f"silent:{est.id}:{last}", ("silent", est.id, last, threshold)
                )
        elif fact["t"] == "departure":
            self._group(at, fact)
        elif fact["t"] == "permit":
            sp = self._sponsor(fact["sponsor"], fact["office"], at)
            known = sp.permits.get(fact["pk"])
            occurred = int(fact["occurred_at"])
            if known is None or occurred >= known[0]:
                sp.permits[fact["pk"]] = (occurred, int(fact["until"]), str(fact["action"]))

    # ------------------------------------------------------------------ TPPO groups

    def _group(self, at: int, fact: dict[str, Any]) -> None:
        t = self.rules.tppo
        window = int(t.group_window_hours * HOUR_MS)
        journeys = self.journeys.setdefault(fact["ref"], [])
        journeys.append(fact)
        self._journey_horizon.add(at, (fact["ref"], fact["dep"]))
        new = int(fact["occurred_at"])
        # every window that ends at a departure and now holds this one
        for end in sorted({int(j["occurred_at"]) for j in journeys if new <= int(j["occurred_at"]) <= new + window}):
            members = [j for j in journeys if end - window <= int(j["occurred_at"]) <= end]
            if len({j["pk"] for j in members}) < t.group_min_travellers:
                continue
            for j in sorted(members, key=lambda j: (int(j["occurred_at"]), j["dep"])):
                if j["dep"] not in self.grouped:
                    self.grouped.add(j["dep"])
                    self._add_group_indicator(at, j, fact["ref"], len({m["pk"] for m in members}))

    def _forget_journey(self, _: int, item: tuple[str, str]) -> None:
        ref, dep = item
        journeys = self.journeys.get(ref)
        if journeys is not None:
            journeys[:] = [j for j in journeys if j["dep"] != dep]
            if not journeys:
                del self.journeys[ref]
        if dep in self.grouped:
            self.grouped.discard(dep)

    def _add_group_indicator(self, at: int, journey: dict[str, Any], ref: str, travellers: int) -> None:
        t = self.rules.tppo
        fired = [(str(n), float(w), str(x)) for n, w, x in journey["fired"]]
        base = sum(w for _, w, _ in fired)
        kind, _, value = ref.partition(":")
        fired.append(
            (
                "group_same_agent",
                t.weights.group_same_agent,
                f"{travellers} travellers within {t.group_window_hours:g} h with the same {kind} {value}",
            )
        )
        finding = tppo_finding(
            self.rules,
            journey["pk"],
            journey["checkpoint_id"],
            journey["office"],
            journey["dep"],
            int(journey["occurred_at"]),
            fired,
        )
        # A departure's references may hash to different partitions, each of which may find a
        # group: every such statement is its own record (tagged with the reference), all of them
        # saying the same thing (base score + the group weight once), so none depends on another.
        if base >= t.threshold:
            status, step = "AMENDED", 1  # the person stage raised it (step 0)
        elif base + t.weights.group_same_agent >= t.threshold:
            status, step = "RAISED", 0
        else:
            return
        self._out.append(
            alert_record(
                finding, status=status, step=step, version=self.rules.version, at=at, emitted_at=self._clock(), tag=ref
            )
        )

    # ------------------------------------------------------------------ sponsors

    def _sponsor(self, sponsor_id: str, office: str, at: int) -> Sponsor:
        sp = self.sponsors.get(sponsor_id)
        if sp is None:
            sp = self.sponsors[sponsor_id] = Sponsor(sponsor_id, office, at)
            first = _next_month(_month_of(local_day(at)))
            self._schedule_due(sp, first)
        elif office:
            sp.office = office
        return sp

    def _schedule_due(self, sp: Sponsor, month: tuple[int, int]) -> None:
        ny, nm = _next_month(month)
        due = day_start(_day_of(ny, nm, self.rules.sponsor.due_day))
        self.timeline.schedule(due, f"due:{sp.id}:{month}", ("due", sp.id, month))

    def _forget_permits(self, sp: Sponsor, at: int) -> None:
        """Forget the permits no report within the retention horizon can count: cancelled before it,
        or ended two months before it (every report whose period they cover was due by then). A
        permit fact or report later than the horizon is judged without them."""
        before = at - self.rules.retention.days * DAY_MS
        ended_before = local_day(before) - 62
        for pk, (occurred, until, action) in list(sp.permits.items()):
            if until < ended_before or (action == "CANCELLED" and occurred < before):
                del sp.permits[pk]

    def _report(self, at: int, rec: dict[str, Any]) -> None:
        s = rec["sponsor"]
        sp = self._sponsor(s["sponsor_id"], s["office"], at)
        period_end = days(rec["period_end"])
        sp.reports.append((period_end, at))
        self._forget_permits(sp, at)
        roster = {str(e["foreigner"]["person_key"]) for e in rec["roster"]}
        valid = {pk for pk, (_, until, action) in sp.permits.items() if action != "CANCELLED" and until >= period_end}
        omitted, unlisted = sorted(valid - roster), sorted(roster - valid)
        if not omitted and not unlisted:
            return
        reasons = [
            f"{s['name']} reported {len(roster)} foreigners for the period ending {show_day(period_end)}; "
            f"permits name it as sponsor of {len(valid)}"
        ]
        if omitted:
            reasons.append(
                f"{len(omitted)} sponsored foreigner{'s' if len(omitted) != 1 else ''} with a valid "
                "permit missing from the report"
            )
        if unlisted:
            reasons.append(f"{len(unlisted)} listed without a valid permit from this sponsor")
        evidence = [Evidence("omitted", pk) for pk in omitted[:20]] + [Evidence("unlisted", pk) for pk in unlisted[:20]]
        evidence += [Evidence("omitted_count", str(len(omitted))), Evidence("unlisted_count", str(len(unlisted)))]
        severity = "HIGH" if len(omitted) >= self.rules.sponsor.omitted_high else "MEDIUM"
        self._emit(
            Finding(
                "sponsor.roster_mismatch",
                rec["event_id"],
                severity,
                s["office"],
                {"sponsor_id": sp.id},
                reasons,
                evidence,
            ),
            at,
        )

    # ------------------------------------------------------------------ timers

    def _fire(self, at: int, payload: tuple[Any, ...]) -> None:
        if payload[0] == "silent":
            _, est_id, last, _ = payload
            est = self.establishments[est_id]
            threshold = self._threshold(est)
            if est.last_day != last or threshold is None or local_day(at) < last + threshold:
                return  # it reported again, or its rhythm changed and another timer is due
            silence = Finding(
                "establishment.silent",
                show_day(last),
                "MEDIUM",
                est.office,
                {"establishment_id": est.id},
                [
                    f"{est.name} has reported no guest since {show_day(last)} ({local_day(at) - last} days); "
                    f"it usually reports every few days, so {threshold} days of silence is unusual"
                ],
                [
                    Evidence("last_report_day", show_day(last)),
                    Evidence("silent_days", str(local_day(at) - last)),
                    Evidence("threshold_days", str(threshold)),
                ],
                window_start=day_start(last + 1),
                window_end=day_start(last + threshold),
            )
            self._emit(silence, at)
            if silence.alert_id in self.alerts and silence.alert_id not in est.silences:
                est.silences.append(silence.alert_id)
        elif payload[0] == "due":
            _, sponsor_id, month = payload
            sp = self.sponsors[sponsor_id]
            self._schedule_due(sp, _next_month(month))
            month_end = _last_day(month)
            if any(end >= month_end and reported <= at for end, reported in sp.reports):
                return
            label = f"{month[0]:04d}-{month[1]:02d}"
            self._emit(
                Finding(
                    "sponsor.overdue",
                    label,
                    "MEDIUM",
                    sp.office,
                    {"sponsor_id": sp.id},
                    [
                        f"no sponsor report for {label} by {show_day(local_day(at))} "
                        f"(due by day {self.rules.sponsor.due_day} of the next month)"
                    ],
                    [Evidence("period", label), Evidence("due", show_day(local_day(at)))],
                ),
                at,
            )
