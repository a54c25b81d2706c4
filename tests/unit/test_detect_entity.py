"""Establishment and sponsor rules through the pure second stage."""

from __future__ import annotations

import itertools
from datetime import date
from typing import Any

from builders import sponsor_report

from streams import topics
from streams.detect.config import default_rules
from streams.detect.entity import EntityDetector
from streams.detect.person import HOUR_MS, day_start, days

RULES = default_rules()
LATE_MS = int(RULES.time.lateness_seconds * 1000)
D0 = days(date(2026, 1, 5))
_ids = itertools.count()


def at(day: int, hour: float = 10) -> int:
    return day_start(D0 + day) + int(hour * HOUR_MS)


def hotel_fact(day: int, *, reported_day: int | None = None, est: str = "EST-1") -> dict[str, Any]:
    return {
        "t": "hotel",
        "src": 0,
        "at": at(reported_day if reported_day is not None else day, 12),
        "id": f"h{next(_ids)}",
        "est": est,
        "name": "Hotel Harmoni",
        "office": "KANIM-BATAM",
        "day": D0 + day,
    }


def permit_fact(pk: str, day: int, until_day: int, action: str = "GRANTED") -> dict[str, Any]:
    return {
        "t": "permit",
        "src": 0,
        "at": at(day),
        "id": f"p{next(_ids)}",
        "sponsor": "SPN-1",
        "pk": pk,
        "until": D0 + until_day,
        "action": action,
        "occurred_at": at(day, 9),
        "office": "KANIM-MALANG",
    }


def report(day: int, period_end: date, roster: list[str]) -> dict[str, Any]:
    return sponsor_report(at(day), period_end, roster)[2]


def run(facts: list[dict[str, Any]], reports: list[dict[str, Any]], until: int) -> list[dict[str, Any]]:
    det = EntityDetector(RULES, 1, clock=lambda: 0)
    out: list[dict[str, Any]] = []
    for f in facts:
        out += det.offer_fact(f)
    for r in reports:
        out += det.offer_report("sponsor_report", r)
    out += det.offer_fact({"t": "tick", "src": 0, "at": until + LATE_MS})
    out += det.offer_report("clock_tick", {"reported_at": until + LATE_MS})
    return out


def test_a_regular_establishment_that_stops_reporting_is_silent() -> None:
    facts = [hotel_fact(d) for d in range(0, 30, 2)]  # every other day for a month; median gap 2 -> 6 days
    alerts = run(facts, [], until=at(40))
    silent = [a for a in alerts if a["rule_id"] == "establishment.silent"]
    assert len(silent) == 1
    assert silent[0]["occurred_at"] == day_start(D0 + 28 + 6)
    assert {e["name"]: e["value"] for e in silent[0]["evidence"]}["threshold_days"] == "6"


def test_no_silence_before_the_threshold_or_without_history() -> None:
    assert run([hotel_fact(d) for d in range(0, 30, 2)], [], until=at(33, 23)) == []
    assert run([hotel_fact(d) for d in range(0, 8)], [], until=at(40)) == []  # 7 days of history only


def test_a_late_report_inside_the_silence_withdraws_it() -> None:
    facts = [hotel_fact(d) for d in range(0, 30, 2)] + [hotel_fact(31, reported_day=36)]
    alerts = run(facts, [], until=at(37))
    assert [(a["rule_id"], a["status"]) for a in alerts][:2] == [
        ("establishment.silent", "RAISED"),
        ("establishment.silent", "WITHDRAWN"),
    ]


def test_sponsor_overdue_for_each_missed_month() -> None:
    facts = [permit_fact("pk1", 1, 300)]  # known from January: February is the first month checked
    on_time = report(40, date(2026, 2, 28), ["pk1"])  # day 40 = 2026-02-14: February reported early
    alerts = run(facts, [on_time], until=at(100))
    overdue = sorted(a["evidence"][0]["value"] for a in alerts if a["rule_id"] == "sponsor.overdue")
    assert overdue == ["2026-03"]  # February was reported early; March was due on 2026-04-10
    none_at_all = run(facts, [], until=at(100))
    assert sorted(a["evidence"][0]["value"] for a in none_at_all if a["rule_id"] == "sponsor.overdue") == [
        "2026-02",
        "2026-03",
    ]


def test_roster_mismatch_names_omitted_and_unlisted() -> None:
    facts = [permit_fact("pk1", 1, 300), permit_fact("pk2", 1, 300), permit_fact("pk3", 1, 300, "CANCELLED")]
    alerts = run(facts, [report(30, date(2026, 1, 31), ["pk1", "pk9"])], until=at(31))
    mismatch = [a for a in alerts if a["rule_id"] == "sponsor.roster_mismatch"]
    assert len(mismatch) == 1
    ev = {(e["name"], e["value"]) for e in mismatch[0]["evidence"]}
    assert ("omitted", "pk2") in ev and ("unlisted", "pk9") in ev and ("omitted", "pk3") not in ev
    assert mismatch[0]["office"] == "KANIM-MALANG"
    full = run(facts, [report(30, date(2026, 1, 31), ["pk1", "pk2"])], until=at(31))
    assert [a for a in full if a["rule_id"] == "sponsor.roster_mismatch"] == []


def test_facts_from_partitions_in_any_interleaving_give_the_same_alerts() -> None:
    facts = [hotel_fact(d) for d in range(0, 30, 2)]
    det_a, det_b = EntityDetector(RULES, 2, clock=lambda: 0), EntityDetector(RULES, 2, clock=lambda: 0)
    a_out: list[dict[str, Any]] = []
    b_out: list[dict[str, Any]] = []
    for i, f in enumerate(facts):
        a_out += det_a.offer_fact({**f, "src": i % 2})
    for i, f in reversed(list(enumerate(facts))):
        b_out += det_b.offer_fact({**f, "src": i % 2})
    for det, out in ((det_a, a_out), (det_b, b_out)):
        for src in (0, 1):
            out += det.offer_fact({"t": "tick", "src": src, "at": at(40)})
        out += det.offer_report("clock_tick", {"reported_at": at(40)})
    assert a_out == b_out and a_out
    assert topics.SPONSOR_REPORTS in det_a.timeline.progress


def departure_fact(
    pk: str,
    hour: float,
    fired: list[list[Any]],
    *,
    ref: str = "agent:PT-MAJU",
    day: int = 10,
    reported_hour: float | None = None,
) -> dict[str, Any]:
    dep = f"dep-{pk}-{day}-{hour}"
    return {
        "t": "departure",
        "src": 0,
        "at": at(day, reported_hour if reported_hour is not None else hour),
        "id": f"{dep}|{ref}",
        "ref": ref,
        "dep": dep,
        "pk": pk,
        "checkpoint_id": "TPI-BATAM-CENTRE",
        "office": "KANIM-BATAM",
        "occurred_at": at(day, hour),
        "fired": fired,
    }


RISKY = [["risk_destination", 3.0, "destination KHM"], ["one_way", 2.0, "one-way ticket"]]  # 5: raised already
NEAR = [["risk_destination", 3.0, "destination KHM"], ["tourist_with_work_signs", 1.0, "job offer"]]  # 4: one short


def test_group_indicator_amends_raised_screenings_and_raises_near_ones() -> None:
    facts = [departure_fact("a", 8, RISKY), departure_fact("b", 9, NEAR), departure_fact("c", 10, RISKY)]
    alerts = run(facts, [], until=at(11))
    assert [(a["subject"]["person_key"], a["status"], a["event_id"].split(":")[2]) for a in alerts] == [
        ("a", "AMENDED", "1"),
        ("b", "RAISED", "0"),
        ("c", "AMENDED", "1"),
    ]
    for a in alerts:
        group = [e for e in a["evidence"] if e["name"] == "group_same_agent"]
        assert group and group[0]["weight"] == 1.0 and "3 travellers" in group[0]["value"]
    assert {e["value"] for e in alerts[1]["evidence"] if e["name"] == "score"} == {"5"}


def test_no_group_below_the_count_outside_the_window_or_for_ordinary_trips() -> None:
    assert run([departure_fact("a", 8, RISKY), departure_fact("b", 9, NEAR)], [], until=at(11)) == []
    spread = [departure_fact("a", 1, NEAR), departure_fact("b", 9, NEAR, day=11), departure_fact("c", 10, NEAR, day=12)]
    assert run(spread, [], until=at(13)) == []
    pilgrims = [departure_fact(p, 8, []) for p in "abcde"]
    assert run(pilgrims, [], until=at(11)) == []


def test_a_late_reported_member_completes_the_group_for_the_earlier_ones() -> None:
    facts = [departure_fact("a", 8, NEAR), departure_fact("b", 9, NEAR), departure_fact("c", 7, NEAR, reported_hour=12)]
    alerts = run(facts, [], until=at(13))
    assert sorted(a["subject"]["person_key"] for a in alerts) == ["a", "b", "c"]
    assert {a["status"] for a in alerts} == {"RAISED"}
