"""Person rules, edge by edge, through the pure detector (event time, ticks drive the clock)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from builders import CP2, D0, arrival, at, departure, hotel, journey, permit

from streams import topics
from streams.detect.config import default_rules
from streams.detect.person import DAY_MS, HOUR_MS, INPUTS, PersonDetector, day_start, days
from streams.detect.timeline import NEVER

RULES = default_rules()
LATE_MS = int(RULES.time.lateness_seconds * 1000)


def run(
    events: list[tuple[str, str, dict[str, Any]]], until: int, detector: PersonDetector | None = None
) -> list[dict[str, Any]]:
    """Feed events, then tick every input up to ``until`` (plus lateness) so that all is released."""
    det = detector or PersonDetector(RULES, clock=lambda: 0)
    out: list[dict[str, Any]] = []
    for topic, kind, rec in events:
        out += det.offer(topic, kind, rec)
    for topic in INPUTS:
        out += det.tick(topic, until + LATE_MS)
    return out


def rules_of(alerts: list[dict[str, Any]], *, whereabouts: bool = False) -> list[tuple[str, str]]:
    """(rule, status) of each alert; whereabouts.unknown only when asked (anyone followed for
    more than two weeks without a hotel report also gets it, which most tests are not about)."""
    return [(a["rule_id"], a["status"]) for a in alerts if whereabouts or a["rule_id"] != "whereabouts.unknown"]


# ------------------------------------------------------------------ overstay


def test_no_overstay_on_the_last_authorised_day() -> None:
    alerts = run([arrival("p1", at(0), until_day=29)], until=at(29, 23.9))
    assert "overstay" not in {r for r, _ in rules_of(alerts)}


def test_overstay_from_the_first_day_after() -> None:
    alerts = run([arrival("p1", at(0), until_day=29)], until=at(30, 0.01))
    overstay = [a for a in alerts if a["rule_id"] == "overstay"]
    assert len(overstay) == 1
    a = overstay[0]
    assert a["status"] == "RAISED" and a["severity"] == "HIGH" and a["office"] == "KANIM-BATAM"
    assert {e["name"]: e["value"] for e in a["evidence"]} == {
        "authorised_until": "2026-11-30",
        "days_over": "1",
        "charge_idr": "1000000",
        "window": "2026-11-30",
    }
    assert a["occurred_at"] == day_start(D0 + 30)
    assert any("Rp 1,000,000" in r for r in a["reasons"])


def test_overstay_escalates_at_60_days() -> None:
    alerts = run([arrival("p1", at(0), until_day=29)], until=at(29 + 60, 1))
    overstay = [a for a in alerts if a["rule_id"] == "overstay"]
    assert [(a["status"], a["severity"]) for a in overstay] == [("RAISED", "HIGH"), ("AMENDED", "CRITICAL")]
    assert overstay[0]["alert_id"] == overstay[1]["alert_id"]
    assert {e["name"]: e["value"] for e in overstay[1]["evidence"]}["days_over"] == "60"


def test_extension_before_expiry_means_no_overstay() -> None:
    alerts = run([arrival("p1", at(0), until_day=29), permit("p1", at(20), until_day=59)], until=at(40))
    assert rules_of(alerts) == []  # extended on day 20, before the day-22 warning would have been due
    warned = run([arrival("p2", at(0), until_day=29), permit("p2", at(25), until_day=59)], until=at(40))
    assert rules_of(warned) == [("permit.expiring", "RAISED")]  # warned on day 22, extended on day 25


def test_extension_reported_late_withdraws_the_overstay() -> None:
    late = permit("p1", at(28), until_day=59, reported=at(32))
    alerts = run([arrival("p1", at(0), until_day=29), late], until=at(40))
    assert rules_of(alerts) == [("permit.expiring", "RAISED"), ("overstay", "RAISED"), ("overstay", "WITHDRAWN")]


def test_departure_in_time_but_reported_late_withdraws_the_overstay() -> None:
    dep = departure("p1", at(29, 8), reported=at(31))
    alerts = run([arrival("p1", at(0), until_day=29), dep], until=at(40))
    assert ("overstay", "WITHDRAWN") in rules_of(alerts)
    assert "overstay.at_exit" not in [r for r, _ in rules_of(alerts)]


def test_overstay_at_exit_counts_days_and_charge() -> None:
    alerts = run([arrival("p1", at(0), until_day=29), departure("p1", at(41))], until=at(42))
    exit_ = [a for a in alerts if a["rule_id"] == "overstay.at_exit"]
    assert len(exit_) == 1
    ev = {e["name"]: e["value"] for e in exit_[0]["evidence"]}
    assert ev["days_over"] == "12" and ev["charge_idr"] == "12000000"
    assert any("Rp 12,000,000" in r for r in exit_[0]["reasons"])


def test_permit_expiring_only_while_in_the_country_and_unchanged() -> None:
    alerts = run([arrival("p1", at(0), until_day=29)], until=at(23))
    assert rules_of(alerts) == [("permit.expiring", "RAISED")]
    assert [a["occurred_at"] for a in alerts if a["rule_id"] == "permit.expiring"] == [day_start(D0 + 22)]
    left = run([arrival("p2", at(0), until_day=29), departure("p2", at(10))], until=at(25))
    assert left == []


def test_overstay_located_by_a_hotel_check_in() -> None:
    alerts = run([arrival("p1", at(0), until_day=29), hotel("p1", at(35), 35)], until=at(36))
    located = [a for a in alerts if a["rule_id"] == "overstay.located"]
    assert len(located) == 1
    assert located[0]["subject"]["establishment_id"] == "EST-1"
    assert located[0]["reasons"][0].startswith("checked in at Hotel Harmoni on 2026-12-06")


# ------------------------------------------------------------------ reporting


def test_report_late_and_its_cancellation() -> None:
    ci = hotel("p1", at(1), 1, reported=at(2, 11), eid="htl-late")
    cancel = hotel("p1", at(3), 1, action="CANCEL", corrects="htl-late")
    alerts = run([arrival("p1", at(0), until_day=29), ci, cancel], until=at(4))
    assert rules_of(alerts) == [("report.late", "RAISED"), ("report.late", "WITHDRAWN")]
    assert alerts[0]["subject"]["establishment_id"] == "EST-1"


def test_report_on_time_is_not_late() -> None:
    alerts = run(
        [arrival("p1", at(0), until_day=29), hotel("p1", at(1), 1, reported=at(1) + 23 * HOUR_MS)], until=at(3)
    )
    assert alerts == []


def test_report_missing_when_the_declared_hotel_stays_silent() -> None:
    alerts = run([arrival("p1", at(0), until_day=29, declared="EST-1")], until=at(2, 12))
    assert rules_of(alerts) == [("report.missing", "RAISED")]
    assert alerts[0]["occurred_at"] == at(0) + 48 * HOUR_MS
    reported = run([arrival("p2", at(0), until_day=29, declared="EST-1"), hotel("p2", at(0, 15), 0)], until=at(3))
    assert reported == []
    gone = run([arrival("p3", at(0), until_day=29, declared="EST-1"), departure("p3", at(1))], until=at(3))
    assert gone == []


def test_checkout_missing_after_departure_and_after_expected_date() -> None:
    a = run([arrival("p1", at(0), until_day=29), hotel("p1", at(0, 15), 0), departure("p1", at(5))], until=at(7))
    assert rules_of(a) == [("report.checkout_missing", "RAISED")]
    b = run([arrival("p2", at(0), until_day=29), hotel("p2", at(0, 15), 0, expected_out=3)], until=at(6))
    assert rules_of(b) == [("report.checkout_missing", "RAISED")]
    checked_out = hotel("p3", at(3, 9), 0, action="CHECK_OUT")
    c = run([arrival("p3", at(0), until_day=29), hotel("p3", at(0, 15), 0, expected_out=3), checked_out], until=at(6))
    assert c == []


# ------------------------------------------------------------------ TPPO


def test_tppo_screening_lists_each_indicator_with_its_weight() -> None:
    risky = journey(
        destination_country="KHM",
        destination_city="Phnom Penh",
        onward_route=["SGP", "MYS", "THA"],
        return_ticket=False,
        passport_issued_on=D0 + 5,
        job_offer_contact=True,
    )
    alerts = run([departure("c1", at(10), nat="IDN", journey=risky)], until=at(10, 12))
    assert len(alerts) == 1
    a = alerts[0]
    assert a["rule_id"] == "tppo.screening" and a["severity"] == "MEDIUM"  # 9 < 2 x threshold
    fired = {e["name"]: e["weight"] for e in a["evidence"] if e["weight"] is not None}
    assert fired == {"risk_destination": 3.0, "one_way": 2.0, "new_passport": 2.0, "tourist_with_work_signs": 2.0}
    assert any("passport issued 5 days ago" in r for r in a["reasons"])
    assert any("Phnom Penh" in r for r in a["reasons"])
    assert "the officer decides" in a["reasons"][0]


def test_tppo_below_threshold_and_ordinary_trips_raise_nothing() -> None:
    near = journey(return_ticket=False, passport_issued_on=D0 + 5)  # 4 < 5
    assert run([departure("c1", at(10), nat="IDN", journey=near)], until=at(11)) == []
    assert run([departure("c2", at(10), nat="IDN", journey=journey())], until=at(11)) == []


def test_tppo_previous_screening_at_another_checkpoint_counts() -> None:
    first = departure("c1", at(10), nat="IDN", journey=journey(destination_country="KHM", return_ticket=False))
    again = departure(
        "c1", at(12), nat="IDN", checkpoint=CP2, journey=journey(return_ticket=False, passport_issued_on=D0 + 11)
    )
    alerts = run([first, again], until=at(13))
    assert [a["subject"]["checkpoint_id"] for a in alerts] == ["TPI-BATAM-CENTRE", "TPI-SOEKARNO-HATTA"]
    assert "previous_delay" in {e["name"] for e in alerts[1]["evidence"]}


def test_tppo_previous_screening_counts_for_previous_delay_days_only() -> None:
    lookback = RULES.tppo.previous_delay_days
    risky = journey(destination_country="KHM", return_ticket=False)
    for gap, counts in ((lookback, True), (lookback + 1, False)):
        first = departure("c1", at(10), nat="IDN", journey=risky)
        again = departure("c1", at(10 + gap), nat="IDN", checkpoint=CP2, journey=risky)
        alerts = run([first, again], until=at(11 + gap))
        assert len(alerts) == 2
        assert ("previous_delay" in {e["name"] for e in alerts[1]["evidence"]}) is counts, gap


def test_work_without_placement_to_a_moratorium_country() -> None:
    work = journey(destination_country="SAU", purpose="WORK")
    alerts = run([departure("c1", at(10), nat="IDN", journey=work)], until=at(11))
    assert {e["name"] for e in alerts[0]["evidence"]} >= {"pmi_without_placement", "moratorium_destination"}


# ------------------------------------------------------------------ determinism


def test_duplicate_events_change_nothing() -> None:
    events = [arrival("p1", at(0), until_day=29, eid="arr-x"), hotel("p1", at(35), 35, eid="htl-x")]
    once = run(events, until=at(36))
    twice = run(events + events, until=at(36))
    assert once == twice


def test_out_of_order_arrival_of_topics_gives_the_same_alerts() -> None:
    events = [
        arrival("p1", at(0), until_day=29, declared="EST-1", eid="arr-o"),
        hotel("p1", at(0, 15), 0, eid="htl-o", expected_out=2),
        permit("p1", at(28), until_day=59, reported=at(32)),
        departure("p1", at(33), eid="dep-o"),
    ]
    by_topic = sorted(events, key=lambda e: e[0])  # all of one topic first, then the next
    assert run(events, until=at(40)) == run(list(reversed(events)), until=at(40)) == run(by_topic, until=at(40))


def test_nothing_is_released_before_every_input_has_reached_the_time() -> None:
    det = PersonDetector(RULES, clock=lambda: 0)
    det.offer(*arrival("p1", at(0), until_day=29))
    assert det.tick(topics.BORDER_CROSSINGS, at(40)) == []  # other topics have said nothing yet
    for topic in INPUTS[:-1]:
        det.tick(topic, at(40))
    assert det.timeline.watermark < at(1)
    out = det.tick(INPUTS[-1], at(40))
    assert [r for r, _ in rules_of(out)] == ["permit.expiring", "overstay"]


def test_alert_ids_depend_on_rule_subject_and_window_only() -> None:
    a = run([arrival("p1", at(0), until_day=29)], until=at(31))
    b = run([arrival("p1", at(0), until_day=29)], until=at(31))
    assert [x["alert_id"] for x in a] == [x["alert_id"] for x in b]
    c = run([arrival("p2", at(0), until_day=29)], until=at(31))
    assert not {x["alert_id"] for x in a} & {x["alert_id"] for x in c}


@pytest.mark.parametrize("hours", [0.5, 23.5])
def test_day_boundaries_are_local_time(hours: float) -> None:
    # a departure at 00:30 or 23:30 WIB on the day after authorised-until is one day over
    alerts = run([arrival("p1", at(0), until_day=29), departure("p1", at(30, hours))], until=at(31))
    exit_ = [a for a in alerts if a["rule_id"] == "overstay.at_exit"]
    assert {e["name"]: e["value"] for e in exit_[0]["evidence"]}["days_over"] == "1"
    assert DAY_MS == 86_400_000


# ------------------------------------------------------------------ whereabouts.unknown

SILENT = RULES.reporting.whereabouts_silent_days


def roster_fact(pk: str, reported: int, period_end_day: int, *, src: int = 0, report: str = "spr-1") -> dict[str, Any]:
    return {
        "t": "seen",
        "src": src,
        "at": reported,
        "event_id": f"{report}|{pk}",
        "pk": pk,
        "nat": "SGP",
        "day": D0 + period_end_day,
        "office": "KANIM-JAKSEL",
        "sponsor": "SPN-1",
    }


def run_with_rosters(
    events: list[tuple[str, str, dict[str, Any]]], rosters: list[dict[str, Any]], until: int
) -> list[dict[str, Any]]:
    det = PersonDetector(RULES, sponsor_partitions=1, clock=lambda: 0)
    out: list[dict[str, Any]] = []
    for fact in rosters:
        out += det.offer_roster(fact)
    out += det.offer_roster({"t": "tick", "src": 0, "at": until + LATE_MS})
    return out + run(events, until, det)


def whereabouts(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in alerts if a["rule_id"] == "whereabouts.unknown"]


def test_whereabouts_unknown_after_the_silent_days_from_the_arrival() -> None:
    just_before = run([arrival("p1", at(0), until_day=59)], until=at(SILENT, 23.9))
    assert whereabouts(just_before) == []
    alerts = run([arrival("p1", at(0), until_day=59)], until=at(SILENT + 1, 0.01))
    (a,) = whereabouts(alerts)
    assert (a["status"], a["severity"], a["office"]) == ("RAISED", "MEDIUM", "KANIM-BATAM")
    assert a["occurred_at"] == day_start(D0 + SILENT + 1)
    assert {e["name"]: e["value"] for e in a["evidence"]}["window"] == "2026-11-01"
    assert "arrived at Batam Centre" in a["reasons"][1]


def test_a_hotel_stay_counts_until_its_expected_check_out() -> None:
    stay = [arrival("p1", at(0), until_day=59), hotel("p1", at(0, 14), 0, expected_out=10)]
    assert whereabouts(run(stay, until=at(10 + SILENT, 23))) == []
    (a,) = whereabouts(run(stay, until=at(10 + SILENT + 1, 1)))
    assert {e["name"]: e["value"] for e in a["evidence"]}["window"] == "2026-11-11"
    assert "checked in at Hotel Harmoni" in a["reasons"][1]


def test_a_check_out_ends_what_the_stay_vouched_for() -> None:
    left_early = [
        arrival("p1", at(0), until_day=59),
        hotel("p1", at(0, 14), 0, expected_out=20),
        hotel("p1", at(2, 11), 2, action="CHECK_OUT"),
    ]
    (a,) = whereabouts(run(left_early, until=at(2 + SILENT + 1, 1)))
    assert {e["name"]: e["value"] for e in a["evidence"]}["window"] == "2026-11-03"
    assert "checked out of Hotel Harmoni" in a["reasons"][1]


def test_a_sponsor_roster_accounts_for_the_person_until_its_next_report_is_due() -> None:
    events = [arrival("p1", at(0), until_day=120)]
    # listed for a period ending on 11 November (day 10), reported on day 12: the sponsor answers for
    # the person until its next report is due, 10 January (day 70)
    listed = [roster_fact("p1", at(12), 10)]
    due = days(date(2027, 1, 10)) - D0
    assert whereabouts(run_with_rosters(events, listed, until=at(due + SILENT, 23))) == []
    (a,) = whereabouts(run_with_rosters(events, listed, until=at(due + SILENT + 1, 1)))
    assert a["office"] == "KANIM-JAKSEL"
    assert {e["name"]: e["value"] for e in a["evidence"]}["window"] == "2027-01-10"
    assert "listed by sponsor SPN-1 for the period to 2026-11-11" in a["reasons"][1]


def test_the_person_stage_waits_for_every_roster_partition() -> None:
    det = PersonDetector(RULES, sponsor_partitions=2, clock=lambda: 0)
    run([arrival("p1", at(0), until_day=90)], until=at(20), detector=det)  # person topics at day 20
    assert det.timeline.watermark == NEVER  # no roster partition has said anything
    det.offer_roster({"t": "tick", "src": 0, "at": at(20)})
    assert det.timeline.watermark == NEVER
    out = det.offer_roster({"t": "tick", "src": 1, "at": at(20)})
    assert [a["rule_id"] for a in whereabouts(out)] == ["whereabouts.unknown"]


def test_a_late_report_inside_the_silence_withdraws() -> None:
    alerts = run(
        [
            arrival("p1", at(0), until_day=59),
            # checked in on day 5, reported on day 16: a late report, not silence
            hotel("p1", at(5), 5, reported=at(SILENT + 2)),
        ],
        until=at(SILENT + 3),
    )
    assert rules_of(whereabouts(alerts), whereabouts=True) == [
        ("whereabouts.unknown", "RAISED"),
        ("whereabouts.unknown", "WITHDRAWN"),
    ]
    assert "inside the silence" in alerts[-1]["reasons"][-1]


def test_resurfacing_after_the_silence_keeps_the_alert_and_counts_again() -> None:
    alerts = run(
        [arrival("p1", at(0), until_day=90), hotel("p1", at(SILENT + 5), SILENT + 5)],
        until=at(2 * SILENT + 7),
    )
    found = whereabouts(alerts)
    assert rules_of(found, whereabouts=True) == [("whereabouts.unknown", "RAISED")] * 2
    windows = [{e["name"]: e["value"] for e in a["evidence"]}["window"] for a in found]
    assert windows == ["2026-11-01", "2026-11-20"]


def test_no_whereabouts_alert_after_departure_or_for_citizens() -> None:
    gone = run([arrival("p1", at(0), until_day=59), departure("p1", at(10))], until=at(SILENT + 5))
    assert whereabouts(gone) == []
    home = run([departure("c1", at(0), nat="IDN")], until=at(SILENT + 5))
    assert whereabouts(home) == []


def test_a_cancelled_check_in_accounts_for_nothing() -> None:
    ci = hotel("p1", at(3), 3, eid="ci-1")
    cancel = hotel("p1", at(4), 3, action="CANCEL", corrects="ci-1")
    (a,) = whereabouts(run([arrival("p1", at(0), until_day=59), ci, cancel], until=at(SILENT + 1, 1)))
    assert {e["name"]: e["value"] for e in a["evidence"]}["window"] == "2026-11-01"
