"""The rules about one person, over the person-keyed topics (see RULES.md for their exact terms).

`PersonDetector` owns one partition's timeline and the state of the people whose events land on
it. Records come as the codec decodes them (datetimes and dates) or as plain epoch ms / days.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from streams import topics
from streams.detect.alerts import AlertStates, Evidence, Finding, alert_record, transition
from streams.detect.config import RulesConfig
from streams.detect.retention import Horizon, RecentIds
from streams.detect.timeline import EVENT, NEVER, Timeline

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
WIB_MS = 7 * HOUR_MS
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
CITIZEN = "IDN"
# the rules whose window is a check-in's event id: retired with the check-in
CHECK_IN_RULES = frozenset({"report.late", "overstay.located", "report.checkout_missing"})
INPUTS = (topics.HOTEL_GUEST_EVENTS, topics.BORDER_CROSSINGS, topics.PERMIT_UPDATES, topics.AGENCY_REPORTS)


def roster_input(partition: int) -> str:
    """The person stage's input for roster entries routed from one sponsor-reports partition."""
    return f"{topics.PERSON_FACTS}/{partition}"


def timeline_inputs(sponsor_partitions: int) -> tuple[str, ...]:
    return INPUTS + tuple(roster_input(q) for q in range(sponsor_partitions))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def ms(value: Any) -> int:
    """Epoch milliseconds of a decoded timestamp: exact (``timestamp() * 1000`` is a float, and can
    land a millisecond short), so a record decoded with ``ms_times`` gives the same number."""
    if isinstance(value, datetime):
        return (value - _EPOCH) // _MS
    return int(value)


def days(value: Any) -> int:
    if isinstance(value, date):
        return value.toordinal() - EPOCH_ORDINAL
    return int(value)


def local_day(at_ms: int) -> int:
    """Local (WIB) calendar day of an instant, as days since 1970-01-01."""
    return (at_ms + WIB_MS) // DAY_MS


def day_start(day: int) -> int:
    """00:00 WIB of a local day, as epoch ms."""
    return day * DAY_MS - WIB_MS


def show_day(day: int) -> str:
    return date.fromordinal(day + EPOCH_ORDINAL).isoformat()


def rupiah(amount: int) -> str:
    return "Rp " + f"{amount:,}"


@dataclass(slots=True)
class Arrival:
    event_id: str
    occurred_at: int
    authorised_until: int  # local day
    office: str
    checkpoint_id: str
    declared_establishment_id: str | None


@dataclass(slots=True)
class Permit:
    event_id: str
    occurred_at: int
    valid_until: int
    office: str
    action: str


@dataclass(slots=True)
class CheckIn:
    event_id: str
    establishment_id: str
    establishment_name: str
    office: str
    check_in_date: int
    expected_out: int | None
    occurred_at: int
    reported_at: int
    checked_out: bool = False
    cancelled: bool = False
    changed_at: int = NEVER  # event time of the last report about it (check-in, out, cancel, correction)

    def sighting(self) -> Sighting:
        """What this stay says of the person's whereabouts (RULES.md): the hotel vouches for the
        stay it reported, up to the expected check-out while the guest has not checked out."""
        day = self.check_in_date
        if not self.checked_out and self.expected_out is not None and self.expected_out > day:
            day = self.expected_out
        return day, self.event_id, self.office, f"checked in at {self.establishment_name}"


Sighting = tuple[int, str, str, str]  # (last local day it covers, sighting id, office, what)


@dataclass(slots=True)
class Person:
    key: str
    nationality: str = ""
    last_crossing: tuple[int, str, str] | None = None  # the latest (occurred_at, direction, event id)
    arrival: Arrival | None = None
    permit: Permit | None = None
    checkins: dict[str, CheckIn] = field(default_factory=dict)
    screened_at: dict[str, int] = field(default_factory=dict)  # checkpoint id -> local day of its latest screening
    alerts: AlertStates = field(default_factory=dict)
    # whereabouts: the best of the sightings that can no longer change (arrivals, check-outs, sponsor
    # listings, retired check-ins); the open check-ins are weighed against it each time
    settled: Sighting | None = None
    accounted: Sighting | None = None  # (day W, sighting id, office, what) of the running count
    touched: int = NEVER  # event time of the last record about the person
    busy_until: int = NEVER  # the latest check-out deadline set for the person
    retiring: bool = False  # a retire timer is pending

    @property
    def in_country(self) -> bool:
        return self.last_crossing is not None and self.last_crossing[1] == "ARRIVAL"

    def sighted(self, sighting: Sighting) -> None:
        if self.settled is None or sighting[:2] > self.settled[:2]:
            self.settled = sighting

    def authorised(self) -> tuple[int, str, str] | None:
        """(authorised-until day, office, event id it comes from), or None."""
        if self.arrival is None:
            return None
        p = self.permit
        if p is not None and p.occurred_at >= self.arrival.occurred_at:
            return p.valid_until, p.office, p.event_id
        return self.arrival.authorised_until, self.arrival.office, self.arrival.event_id


def tppo_finding(
    rules: RulesConfig,
    person_key: str,
    checkpoint_id: str,
    office: str,
    departure_id: str,
    occurred: int,
    fired: list[tuple[str, float, str]],
) -> Finding:
    """The screening alert for a departure and the indicators that fired (both stages build it)."""
    t = rules.tppo
    score = sum(weight for _, weight, _ in fired)
    severity = "HIGH" if score >= 2 * t.threshold else "MEDIUM"
    reasons = [
        f"score {score:g} reaches the screening threshold {t.threshold:g}: route to an interview, the officer decides"
    ] + [f"{text} (+{weight:g})" for _, weight, text in fired]
    evidence = [Evidence(name, text, departure_id, weight) for name, weight, text in fired]
    evidence.append(Evidence("score", f"{score:g}", departure_id))
    return Finding(
        "tppo.screening",
        departure_id,
        severity,
        office,
        {"person_key": person_key, "checkpoint_id": checkpoint_id},
        reasons,
        evidence,
        window_start=occurred,
    )


class PersonDetector:
    """All person rules for one partition of the person-keyed topics."""

    def __init__(
        self,
        rules: RulesConfig,
        *,
        partition: int = 0,
        sponsor_partitions: int = 0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        """``sponsor_partitions``: how many sponsor-reports partitions route roster entries here (the
        watermark waits for each); 0 when no rosters are routed (sponsor sightings are then unknown)."""
        self.rules = rules
        self.partition = partition
        self.timeline = Timeline(timeline_inputs(sponsor_partitions), int(rules.time.lateness_seconds * 1000))
        self.people: dict[str, Person] = {}
        self._clock = clock or (lambda: int(_time.time() * 1000))
        self._out: list[dict[str, Any]] = []
        # facts for the establishment/sponsor stage: (key, fact); key None = to every partition
        self.facts: list[tuple[bytes | None, dict[str, Any]]] = []
        self._forwarded = NEVER
        self.retain_ms = rules.retention.days * DAY_MS
        self.applied = RecentIds(self.retain_ms)
        # (establishment, local day) -> (name, office) last told to the second stage
        self._told: dict[tuple[str, int], tuple[str, str]] = {}
        self._told_horizon: Horizon[tuple[str, int]] = Horizon(self.retain_ms, self._forget_told)

    def held(self) -> dict[str, int]:
        """What this partition holds, by kind (cheap: for the worker's metrics)."""
        return {"people": len(self.people), "record_ids": len(self.applied), "timers": self.timeline.pending()}

    # ------------------------------------------------------------------ input

    def offer(self, topic: str, kind: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        """Take one record read from ``topic``; returns the alert records that became due."""
        reported = ms(record["reported_at"])
        if kind == "clock_tick":
            self.timeline.tick(topic, reported)
        else:
            self.timeline.offer(topic, reported, str(record["event_id"]), (kind, record))
        return self._run(forward=kind == "clock_tick")

    def offer_roster(self, fact: dict[str, Any]) -> list[dict[str, Any]]:
        """A routed roster fact (see :mod:`streams.detect.roster`): an entry, or a tick of its partition."""
        source = roster_input(int(fact["src"]))
        if fact["t"] == "tick":
            self.timeline.tick(source, int(fact["at"]))
            return self._run(forward=True)
        self.timeline.offer(source, int(fact["at"]), str(fact["event_id"]), ("roster", fact))
        return self._run()

    def tick(self, topic: str, at_ms: int) -> list[dict[str, Any]]:
        self.timeline.tick(topic, at_ms)
        return self._run(forward=True)

    def _forward_watermark(self, on_tick: bool) -> None:
        """Tell the second stage how far this partition has got, on clock ticks only: they come every
        second live and once per replay window, whereas forwarding on events would multiply the
        records (only *when* the second stage releases depends on this, not *what*)."""
        wm = self.timeline.watermark
        if on_tick and wm > self._forwarded:
            self._forwarded = wm
            self.facts.append((None, {"t": "tick", "src": self.partition, "at": wm}))

    def _run(self, *, forward: bool = False) -> list[dict[str, Any]]:
        for at, rank, payload in self.timeline.release():
            if rank == EVENT:
                self._apply(at, *payload)
            else:
                self._fire(at, payload)
        self._forward_watermark(forward)
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------ alerts

    def _emit(self, person: Person, finding: Finding, at: int, status: str = "RAISED") -> None:
        step = transition(person.alerts, finding, status)
        if step is None:
            return
        self._out.append(
            alert_record(finding, status=status, step=step, version=self.rules.version, at=at, emitted_at=self._clock())
        )

    def _withdraw(self, person: Person, rule_id: str, window: str, at: int, reason: str) -> None:
        for finding, status, _ in list(person.alerts.values()):
            if finding.rule_id == rule_id and finding.window == window and status != "WITHDRAWN":
                finding.reasons = [*finding.reasons, reason]
                self._emit(person, finding, at, "WITHDRAWN")

    def _active(self, person: Person, rule_id: str, window: str) -> Finding | None:
        for finding, status, _ in person.alerts.values():
            if finding.rule_id == rule_id and finding.window == window and status != "WITHDRAWN":
                return finding
        return None

    # ------------------------------------------------------------------ events

    def _person(self, ident: dict[str, Any]) -> Person:
        key = str(ident["person_key"])
        person = self.people.get(key)
        if person is None:
            person = self.people[key] = Person(key, str(ident["nationality"]))
        return person

    def _apply(self, at: int, kind: str, rec: dict[str, Any]) -> None:
        if kind == "roster":
            person = self._person({"person_key": rec["pk"], "nationality": rec["nat"]})
        elif kind == "border_crossing":
            person = self._person(rec["traveller"])
        elif kind == "hotel_guest_event":
            person = self._person(rec["guest"])
        elif kind == "permit_update":
            person = self._person(rec["holder"])
        else:
            return  # agency reports feed no person rule yet
        if not self.applied.add(str(rec["event_id"]), at):
            return  # redelivered
        person.touched = at
        if not person.retiring:
            person.retiring = True
            self.timeline.schedule(at + self.retain_ms, f"{person.key}:retire", ("retire", person.key))
        if kind == "border_crossing":
            self._crossing(person, at, rec)
        elif kind == "hotel_guest_event":
            self._hotel(person, at, rec)
        elif kind == "roster":
            person.sighted(
                (
                    self._next_roster_due(int(rec["day"])),
                    rec["event_id"],
                    rec["office"],
                    f"listed by sponsor {rec['sponsor']} for the period to {show_day(int(rec['day']))}",
                )
            )
        else:
            self._permit(person, at, rec)
        if person.nationality != CITIZEN:
            self._whereabouts(person, at)

    def _schedule(self, person: Person, at: int, tie: str, payload: tuple[Any, ...], *, keyed: bool = True) -> None:
        """A timer for one of the person's rules. ``keyed``: it replaces the pending one with the same
        tie, which its payload says is stale (every such timer checks, when it fires, that the state
        it was set for still holds)."""
        if payload[0] == "checkout":  # the only rule that fires for someone no longer in the country
            person.busy_until = max(person.busy_until, at)
        self.timeline.schedule(at, tie, payload, key=tie if keyed else None)

    def _schedule_stay(self, person: Person) -> None:
        auth = person.authorised()
        if auth is None:
            return
        until = auth[0]
        o = self.rules.overstay
        self._schedule(person, day_start(until + 1), f"{person.key}:overstay", ("overstay", person.key, until))
        self._schedule(
            person, day_start(until + o.escalate_at_days), f"{person.key}:escalate", ("escalate", person.key, until)
        )
        warn_at = day_start(until - o.warn_before_days)
        if person.arrival is not None and warn_at > person.arrival.occurred_at:
            self._schedule(person, warn_at, f"{person.key}:expiring", ("expiring", person.key, until))

    def _crossing(self, person: Person, at: int, rec: dict[str, Any]) -> None:
        occurred = ms(rec["occurred_at"])
        direction = rec["direction"]
        checkpoint = rec["checkpoint"]
        crossing = (occurred, direction, str(rec["event_id"]))
        if person.last_crossing is None or crossing > person.last_crossing:
            person.last_crossing = crossing
        citizen = person.nationality == CITIZEN
        if direction == "ARRIVAL" and not citizen and rec.get("arrival"):
            arr = rec["arrival"]
            if person.arrival is None or occurred >= person.arrival.occurred_at:
                person.arrival = Arrival(
                    rec["event_id"],
                    occurred,
                    days(arr["authorised_until"]),
                    checkpoint["office"],
                    checkpoint["checkpoint_id"],
                    arr.get("declared_establishment_id"),
                )
                self._schedule_stay(person)
                person.sighted(
                    (
                        local_day(occurred),
                        rec["event_id"],
                        checkpoint["office"],
                        f"arrived at {checkpoint.get('name') or checkpoint['checkpoint_id']}",
                    )
                )
                if arr.get("declared_establishment_id"):
                    deadline = occurred + int(2 * self.rules.reporting.hotel_deadline_hours * HOUR_MS)
                    self._schedule(person, deadline, f"{person.key}:missing", ("missing", person.key, rec["event_id"]))
        elif direction == "DEPARTURE" and not citizen:
            self._foreigner_departure(person, at, rec, occurred)
        elif direction == "DEPARTURE" and citizen and rec.get("departure"):
            self._screen(person, at, rec, occurred)

    def _foreigner_departure(self, person: Person, at: int, rec: dict[str, Any], occurred: int) -> None:
        auth = person.authorised()
        if auth is not None:
            until = auth[0]
            if occurred < day_start(until + 1):
                self._withdraw(
                    person,
                    "overstay",
                    show_day(until),
                    at,
                    f"departed on {show_day(local_day(occurred))}, within the authorised stay",
                )
            over = local_day(occurred) - until
            if over > 0:
                self._emit(
                    person,
                    self._overstay_finding(
                        person,
                        "overstay.at_exit",
                        rec["event_id"],
                        until,
                        over,
                        rec["checkpoint"]["office"],
                        departed=True,
                    ),
                    at,
                )
        grace = int(self.rules.reporting.checkout_grace_hours * HOUR_MS)
        for ci in person.checkins.values():
            if not ci.checked_out and not ci.cancelled and ci.occurred_at <= occurred:
                self._schedule(
                    person,
                    at + grace,
                    f"{person.key}:checkout:{ci.event_id}",
                    ("checkout", person.key, ci.event_id, "departed"),
                    keyed=False,  # its payload names no state: each departure's must fire
                )

    def _overstay_finding(
        self, person: Person, rule_id: str, window: str, until: int, over: int, office: str, *, departed: bool = False
    ) -> Finding:
        o = self.rules.overstay
        charge = over * o.charge_per_day_idr
        severity = "CRITICAL" if over >= o.escalate_at_days else "HIGH"
        permit = person.permit.valid_until if person.permit else None
        kind = "permit" if permit == until else "stay"
        reasons = [
            f"authorised {kind} ended {show_day(until)}; {over} day{'s' if over != 1 else ''} over "
            + ("at departure" if departed else "so far"),
            f"charge due {rupiah(charge)} ({rupiah(o.charge_per_day_idr)} a day)",
        ]
        if over >= o.escalate_at_days:
            reasons.append(f"{o.escalate_at_days} days or more: deportation and entry ban (UU 6/2011 art. 78)")
        return Finding(
            rule_id,
            window,
            severity,
            office,
            {"person_key": person.key},
            reasons,
            [
                Evidence("authorised_until", show_day(until)),
                Evidence("days_over", str(over)),
                Evidence("charge_idr", str(charge)),
            ],
        )

    def _screen(self, person: Person, at: int, rec: dict[str, Any], occurred: int) -> None:
        t = self.rules.tppo
        w = t.weights
        dep = rec["departure"]
        checkpoint = rec["checkpoint"]
        fired: list[tuple[str, float, str]] = []
        route = [c for c in dep.get("onward_route") or []]
        risky = [c for c in [dep["destination_country"], *route] if c in t.risk_countries]
        if risky:
            where = dep.get("destination_city") or dep["destination_country"]
            fired.append(
                (
                    "risk_destination",
                    w.risk_destination,
                    f"destination {where} or route via {', '.join(sorted(set(risky)))}",
                )
            )
        if dep.get("return_ticket") is False:
            fired.append(("one_way", w.one_way, "one-way ticket"))
        issued = dep.get("passport_issued_on")
        if issued is not None:
            age = local_day(occurred) - days(issued)
            if age <= t.passport_new_days:
                fired.append(("new_passport", w.new_passport, f"passport issued {age} days ago"))
        purpose = dep.get("purpose")
        if purpose == "TOURISM" and (dep.get("job_offer_contact") or dep.get("employer_paid_travel")):
            signs = [
                s
                for s, v in (
                    ("job offer contact", dep.get("job_offer_contact")),
                    ("travel paid by someone else", dep.get("employer_paid_travel")),
                )
                if v
            ]
            fired.append(
                ("tourist_with_work_signs", w.tourist_with_work_signs, "tourist purpose with " + " and ".join(signs))
            )
        if purpose == "WORK" and not dep.get("pmi_placement_id"):
            fired.append(("pmi_without_placement", w.pmi_without_placement, "work abroad without a placement record"))
        if purpose == "WORK" and dep["destination_country"] in t.moratorium_countries:
            fired.append(
                (
                    "moratorium_destination",
                    w.moratorium_destination,
                    f"work in {dep['destination_country']}, under a placement moratorium",
                )
            )
        today = local_day(occurred)
        earlier = [
            cp
            for cp, day in person.screened_at.items()
            if cp != checkpoint["checkpoint_id"] and today - day <= t.previous_delay_days
        ]
        if earlier:
            fired.append(("previous_delay", w.previous_delay, f"screened before at {', '.join(sorted(earlier))}"))
        refs = [
            f"{name}:{dep[f'{name}_reference']}"
            for name in ("group", "agent", "booking")
            if dep.get(f"{name}_reference")
        ]
        for ref in refs:  # the second stage looks for several travellers on one agent or booking
            self.facts.append(
                (
                    ref.encode(),
                    {
                        "t": "departure",
                        "src": self.partition,
                        "at": at,
                        "id": f"{rec['event_id']}|{ref}",
                        "ref": ref,
                        "dep": rec["event_id"],
                        "pk": person.key,
                        "checkpoint_id": checkpoint["checkpoint_id"],
                        "office": checkpoint["office"],
                        "occurred_at": occurred,
                        "fired": [list(f) for f in fired],
                    },
                )
            )
        if sum(weight for _, weight, _ in fired) < t.threshold:
            return
        cp = checkpoint["checkpoint_id"]
        person.screened_at[cp] = max(today, person.screened_at.get(cp, today))
        self._emit(
            person,
            tppo_finding(
                self.rules,
                person.key,
                checkpoint["checkpoint_id"],
                checkpoint["office"],
                rec["event_id"],
                occurred,
                fired,
            ),
            at,
        )

    def _permit(self, person: Person, at: int, rec: dict[str, Any]) -> None:
        occurred = ms(rec["occurred_at"])
        if rec.get("sponsor_id"):
            self.facts.append(
                (
                    str(rec["sponsor_id"]).encode(),
                    {
                        "t": "permit",
                        "src": self.partition,
                        "at": at,
                        "id": rec["event_id"],
                        "sponsor": rec["sponsor_id"],
                        "pk": person.key,
                        "until": days(rec["valid_until"]),
                        "action": rec["action"],
                        "occurred_at": occurred,
                        "office": rec["office"],
                    },
                )
            )
        if person.permit is not None and occurred < person.permit.occurred_at:
            return  # an older decision than the one we have
        before = person.authorised()
        person.permit = Permit(rec["event_id"], occurred, days(rec["valid_until"]), rec["office"], rec["action"])
        after = person.authorised()
        if before is not None and after is not None and after[0] > before[0]:
            self._withdraw(
                person,
                "overstay",
                show_day(before[0]),
                at,
                f"{rec['action'].lower()} until {show_day(after[0])}, reported later",
            )
        if after != before:
            self._schedule_stay(person)

    def _hotel(self, person: Person, at: int, rec: dict[str, Any]) -> None:
        action = rec["action"]
        est = rec["establishment"]
        if action == "CHECK_IN":
            ci = CheckIn(
                rec["event_id"],
                est["establishment_id"],
                est["name"],
                est["office"],
                days(rec["check_in_date"]),
                days(rec["expected_check_out_date"]) if rec.get("expected_check_out_date") is not None else None,
                ms(rec["occurred_at"]),
                at,
                changed_at=at,
            )
            person.checkins[ci.event_id] = ci
            self._report_day(ci, at)
            self._late(person, ci)
            self._located(person, ci, at)
            if ci.expected_out is not None:
                self._schedule_checkout(person, ci)
        elif action == "CHECK_OUT":
            out_day = days(rec["check_out_date"]) if rec.get("check_out_date") is not None else local_day(at)
            person.sighted((out_day, rec["event_id"], est["office"], f"checked out of {est['name']}"))
            open_stays = [
                c
                for c in person.checkins.values()
                if c.establishment_id == est["establishment_id"]
                and not c.checked_out
                and not c.cancelled
                and c.check_in_date <= out_day
            ]
            if open_stays:
                stay = max(open_stays, key=lambda c: (c.check_in_date, c.event_id))
                stay.checked_out, stay.changed_at = True, at
        elif action in ("CANCEL", "CORRECTION"):
            target = person.checkins.get(rec.get("corrects_event_id") or "")
            if target is None:
                return  # not a check-in of this person, or one retired: nothing to amend here
            target.changed_at = at
            if action == "CANCEL":
                target.cancelled = True
                for rule in ("report.late", "overstay.located", "report.checkout_missing"):
                    self._withdraw(person, rule, target.event_id, at, "the check-in report was cancelled")
            else:
                target.check_in_date = days(rec["check_in_date"])
                expected_before = target.expected_out
                if rec.get("expected_check_out_date") is not None:
                    target.expected_out = days(rec["expected_check_out_date"])
                if self._active(person, "overstay.located", target.event_id):
                    if not self._is_overstaying_on(person, target.check_in_date):
                        self._withdraw(
                            person,
                            "overstay.located",
                            target.event_id,
                            at,
                            "the corrected check-in date is within the authorised stay",
                        )
                else:
                    self._located(person, target, at)  # the corrected date may fall after the stay
                if target.expected_out is not None and target.expected_out != expected_before:
                    self._schedule_checkout(person, target)

    def _forget_told(self, _: int, told: tuple[str, int]) -> None:
        self._told.pop(told, None)  # a late check-in for the day is then told again: harmless

    def _report_day(self, ci: CheckIn, at: int) -> None:
        """Tell the second stage that the establishment reported a guest for a day. It reads only
        the day (and the name and office it goes by), so a check-in for an (establishment, day)
        this partition has already told it of, under the same name and office, is not sent again:
        it would change nothing there, and hotel check-ins would otherwise double the records the
        worker reads. (A day it learns first changes its rhythm; a day inside an alerted silence
        withdraws the alert: both come with the first check-in of the day.)"""
        told = (ci.establishment_id, local_day(ci.occurred_at))
        if self._told.get(told) == (ci.establishment_name, ci.office):
            return
        self._told[told] = (ci.establishment_name, ci.office)
        self._told_horizon.add(at, told)
        self.facts.append(
            (
                ci.establishment_id.encode(),
                {
                    "t": "hotel",
                    "src": self.partition,
                    "at": at,
                    "id": ci.event_id,
                    "est": ci.establishment_id,
                    "name": ci.establishment_name,
                    "office": ci.office,
                    "day": told[1],
                },
            )
        )

    def _schedule_checkout(self, person: Person, ci: CheckIn) -> None:
        assert ci.expected_out is not None
        self._schedule(
            person,
            self._checkout_due(ci.expected_out),
            f"{person.key}:checkout:{ci.event_id}",
            ("checkout", person.key, ci.event_id, "expected", ci.expected_out),
        )

    def _checkout_due(self, expected_out: int) -> int:
        return day_start(expected_out + 1) + int(self.rules.reporting.checkout_grace_hours * HOUR_MS)

    def _late(self, person: Person, ci: CheckIn) -> None:
        limit = self.rules.reporting.hotel_deadline_hours
        delay_h = (ci.reported_at - ci.occurred_at) / HOUR_MS
        if delay_h <= limit:
            return
        self._emit(
            person,
            Finding(
                "report.late",
                ci.event_id,
                "LOW",
                ci.office,
                {"establishment_id": ci.establishment_id, "person_key": person.key},
                [
                    f"{ci.establishment_name} reported a check-in {delay_h:.0f} h after it happened; "
                    f"the limit is {limit:g} h"
                ],
                [Evidence("delay_hours", f"{delay_h:.1f}", ci.event_id)],
            ),
            ci.reported_at,
        )

    def _is_overstaying_on(self, person: Person, day: int) -> bool:
        auth = person.authorised()
        return auth is not None and day > auth[0] and person.in_country

    def _located(self, person: Person, ci: CheckIn, at: int) -> None:
        if person.nationality == CITIZEN or not self._is_overstaying_on(person, ci.check_in_date):
            return
        auth = person.authorised()
        assert auth is not None
        over = ci.check_in_date - auth[0]
        finding = self._overstay_finding(person, "overstay.located", ci.event_id, auth[0], over, ci.office)
        finding.subject = {"person_key": person.key, "establishment_id": ci.establishment_id}
        finding.reasons.insert(0, f"checked in at {ci.establishment_name} on {show_day(ci.check_in_date)}")
        self._emit(person, finding, at)

    def _next_roster_due(self, period_end: int) -> int:
        """Day ``sponsor.due_day`` of the second month after ``period_end``'s: when the report that
        would list the person next is due."""
        d = date.fromordinal(period_end + EPOCH_ORDINAL)
        y, m = divmod(d.year * 12 + d.month - 1 + 2, 12)
        return date(y, m + 1, self.rules.sponsor.due_day).toordinal() - EPOCH_ORDINAL

    def _whereabouts(self, person: Person, at: int) -> None:
        """Recompute W, the last day a hotel, sponsor or arrival accounts for the person (RULES.md)."""
        best = person.settled
        for ci in person.checkins.values():
            if ci.cancelled:
                continue
            cand = ci.sighting()
            if best is None or cand[:2] > best[:2]:
                best = cand
        if best is None:
            return
        before, person.accounted = person.accounted, best
        if before is not None and before[0] == best[0]:
            return
        silent = self.rules.reporting.whereabouts_silent_days
        if before is not None and before[0] < best[0] <= before[0] + silent:
            self._withdraw(
                person,
                "whereabouts.unknown",
                show_day(before[0]),
                at,
                f"reported later: {best[3]} on {show_day(best[0])}, inside the silence",
            )
        self._schedule(
            person, day_start(best[0] + silent + 1), f"{person.key}:whereabouts", ("silent", person.key, best[0])
        )

    # ------------------------------------------------------------------ timers

    def _retire(self, person: Person, now: int) -> None:
        """Forget what no report within the retention horizon can change any more (RULES.md,
        "Retention"): the check-ins settled before it (folded into the person's settled whereabouts)
        with their alerts, and, once the person has left (or is a citizen) and nothing about them is
        pending or came within it, the person: a citizen screened within ``tppo.previous_delay_days``
        keeps only those screenings (a later departure is judged against them) until they are older,
        anyone else is forgotten whole."""
        person.retiring = False
        before = now - self.retain_ms
        # a citizen's alerts are screenings of departures, which nothing later withdraws
        away = person.nationality == CITIZEN or not person.in_country
        gone = away and person.touched < before and person.busy_until < now
        retired: set[str] = set()
        for ci in list(person.checkins.values()):
            settles = ci.changed_at
            if ci.expected_out is not None:
                settles = max(settles, self._checkout_due(ci.expected_out))
            closed = ci.checked_out or ci.cancelled or ci.expected_out is not None
            if gone or (closed and settles < before):
                if not ci.cancelled:
                    person.sighted(ci.sighting())
                del person.checkins[ci.event_id]
                retired.add(ci.event_id)
        lookback = self.rules.tppo.previous_delay_days
        if gone:
            # a departure reported within the horizon is judged against the screenings of the
            # previous_delay_days before it: older ones can no longer count
            oldest = local_day(before) - lookback
            person.screened_at = {cp: day for cp, day in person.screened_at.items() if day >= oldest}
            if not person.screened_at:
                del self.people[person.key]  # nothing left that a later record would be judged by
                return
            person.alerts.clear()
            due = day_start(max(person.screened_at.values()) + lookback + 1) + self.retain_ms
        else:
            for aid, (finding, _, _) in list(person.alerts.items()) if retired else ():
                if finding.rule_id in CHECK_IN_RULES and finding.window in retired:
                    del person.alerts[aid]
            # away: when the horizon has passed their last record and check-out deadlines; in the
            # country: a horizon on, for the check-ins that settle meanwhile
            due = max(person.touched + self.retain_ms, person.busy_until) + 1 if away else now + self.retain_ms
        person.retiring = True
        self.timeline.schedule(max(due, now + 1), f"{person.key}:retire", ("retire", person.key))

    def _fire(self, at: int, payload: tuple[Any, ...]) -> None:
        rule, key = payload[0], payload[1]
        person = self.people.get(key)
        if person is None:
            return  # forgotten (see _retire): its stay's deadlines were moot since it left
        if rule == "retire":
            self._retire(person, at)
            return
        auth = person.authorised()
        if rule in ("overstay", "escalate", "expiring"):
            until = payload[2]
            if auth is None or auth[0] != until or not person.in_country:
                return  # the stay changed since the timer was set, or the person left
            if rule == "overstay":
                self._emit(
                    person,
                    self._overstay_finding(person, "overstay", show_day(until), until, local_day(at) - until, auth[1]),
                    at,
                )
            elif rule == "escalate":
                finding = self._active(person, "overstay", show_day(until))
                if finding is not None and finding.severity != "CRITICAL":
                    amended = self._overstay_finding(
                        person, "overstay", show_day(until), until, local_day(at) - until, auth[1]
                    )
                    self._emit(person, amended, at, "AMENDED")
            else:
                self._emit(
                    person,
                    Finding(
                        "permit.expiring",
                        show_day(until),
                        "LOW",
                        auth[1],
                        {"person_key": person.key},
                        [
                            f"authorised stay ends {show_day(until)} (the last day), "
                            f"{until - local_day(at)} days from today, and no extension is known: "
                            "reach out before it lapses"
                        ],
                        [Evidence("authorised_until", show_day(until), auth[2])],
                    ),
                    at,
                )
        elif rule == "missing":
            arrival_id = payload[2]
            arr = person.arrival
            if arr is None or arr.event_id != arrival_id or not person.in_country:
                return
            est = arr.declared_establishment_id
            if any(
                c.establishment_id == est and not c.cancelled and c.occurred_at >= arr.occurred_at - DAY_MS
                for c in person.checkins.values()
            ):
                return
            hours = self.rules.reporting.hotel_deadline_hours * 2
            self._emit(
                person,
                Finding(
                    "report.missing",
                    arrival_id,
                    "MEDIUM",
                    arr.office,
                    {"establishment_id": str(est), "person_key": person.key},
                    [f"declared accommodation {est} at arrival; no check-in reported within {hours:g} h"],
                    [Evidence("declared_establishment_id", str(est), arrival_id)],
                ),
                at,
            )
        elif rule == "silent":
            since = payload[2]
            acc = person.accounted
            if acc is None or acc[0] != since or not person.in_country:
                return  # a later report accounted for the person, or they left
            silent = self.rules.reporting.whereabouts_silent_days
            self._emit(
                person,
                Finding(
                    "whereabouts.unknown",
                    show_day(since),
                    "MEDIUM",
                    acc[2],
                    {"person_key": person.key},
                    [
                        f"still in Indonesia, and no hotel or sponsor report has covered the {silent} days "
                        f"since {show_day(since)}",
                        f"last known: {acc[3]} ({show_day(since)})",
                    ],
                    [Evidence("last_sighting", show_day(since), acc[1].split("|")[0])],
                ),
                at,
            )
        elif rule == "checkout":
            ci = person.checkins.get(payload[2])
            if ci is None or ci.checked_out or ci.cancelled:
                return
            if payload[3] == "expected" and ci.expected_out != payload[4]:
                return  # a correction moved the expected check-out; its own timer is set
            why = (
                "the guest left Indonesia"
                if payload[3] == "departed"
                else f"the expected check-out {show_day(ci.expected_out or 0)} has passed"
            )
            self._emit(
                person,
                Finding(
                    "report.checkout_missing",
                    ci.event_id,
                    "LOW",
                    ci.office,
                    {"establishment_id": ci.establishment_id, "person_key": person.key},
                    [f"{ci.establishment_name} has not reported the check-out; {why}"],
                    [Evidence("check_in_date", show_day(ci.check_in_date), ci.event_id)],
                ),
                at,
            )
