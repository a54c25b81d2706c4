"""Retention: the detectors forget what can no longer change an alert, in event time, and the
alerts stay what they were without forgetting (RULES.md, "Retention")."""

from __future__ import annotations

from datetime import date
from typing import Any

from builders import CP2, D0, arrival, at, departure, hotel, journey
from test_detect_person import RULES, run

from connectors.replay import topic_records
from connectors.simulator import simulate
from schemas.codec import codec
from streams import topics
from streams.detect.config import RulesConfig
from streams.detect.offline import detect_offline
from streams.detect.person import DAY_MS, PersonDetector
from streams.detect.retention import RecentIds
from streams.detect.timeline import TIMER, Timeline

H = RULES.retention.days


def keeping_all(rules: RulesConfig = RULES) -> RulesConfig:
    return rules.model_copy(update={"retention": rules.retention.model_copy(update={"days": 1_000_000})})


# ------------------------------------------------------------------ timeline


def test_a_keyed_timer_replaces_the_pending_one_and_only_the_last_fires() -> None:
    tl = Timeline(["in"], 0)
    tl.schedule(10, "p:overstay", "first", key="p:overstay")
    tl.schedule(20, "p:overstay", "second", key="p:overstay")
    tl.schedule(15, "p:checkout", "unkeyed")
    tl.schedule(16, "p:checkout", "unkeyed again")
    assert tl.pending() == 3
    tl.tick("in", 100)
    assert [(t, p) for t, rank, p in tl.release() if rank == TIMER] == [
        (15, "unkeyed"),
        (16, "unkeyed again"),
        (20, "second"),
    ]
    assert tl.pending() == 0
    tl.schedule(120, "p:overstay", "after it fired", key="p:overstay")  # the key is free again
    tl.tick("in", 200)
    assert [p for _, _, p in tl.release()] == ["after it fired"]


def test_a_cancelled_timer_does_not_fire() -> None:
    tl = Timeline(["in"], 0)
    tl.schedule(10, "a", "a", key="a")
    tl.schedule(11, "b", "b", key="b")
    tl.cancel("a")
    tl.cancel("unknown")
    tl.tick("in", 50)
    assert [p for _, _, p in tl.release()] == ["b"]


def test_replaced_timers_do_not_pile_up_in_the_heap() -> None:
    tl = Timeline(["in"], 0)
    for i in range(20_000):
        tl.schedule(1_000_000 + i, "p:whereabouts", i, key="p:whereabouts")
    assert tl.pending() == 1
    assert len(tl._heap) < 3_000  # rebuilt whenever replaced entries are half of it
    tl.tick("in", 2_000_000)
    assert [p for _, _, p in tl.release()] == [19_999]


def test_recent_ids_forget_after_the_horizon() -> None:
    ids = RecentIds(100)
    assert ids.add("a", 0) and ids.add("b", 50)
    assert not ids.add("a", 100)  # redelivered inside the horizon
    assert ids.add("c", 150)  # "a" (at 0) is now older than the horizon
    assert "a" not in ids and "b" in ids and len(ids) == 2
    assert ids.add("a", 150)


# ------------------------------------------------------------------ person stage


def test_a_long_stay_holds_only_the_recent_check_ins_and_alerts_the_same() -> None:
    """A resident checks in and out of a guesthouse every week for a year, one check-in reported
    two days late (report.late): the worker holds about a horizon's worth of check-ins."""
    events = [arrival("r1", at(0), until_day=400)]
    for week in range(52):
        d = 1 + 7 * week
        late = week == 3
        events.append(
            hotel("r1", at(d), d, expected_out=d + 2, eid=f"ci-{week}", reported=at(d + 2, 12) if late else None)
        )
        events.append(hotel("r1", at(d + 2, 11), d + 2, action="CHECK_OUT"))
    retaining = PersonDetector(RULES, clock=lambda: 0)
    kept = PersonDetector(keeping_all(), clock=lambda: 0)
    alerts = run(events, at(380), retaining)
    assert alerts == run(events, at(380), kept)  # the same records, in the same order
    assert ("report.late", "RAISED") in {(a["rule_id"], a["status"]) for a in alerts}
    person = retaining.people["r1"]
    assert len(kept.people["r1"].checkins) == 52
    assert 0 < len(person.checkins) <= H // 7 + 2
    assert "ci-3" not in person.checkins and not any(a[0].window == "ci-3" for a in person.alerts.values())
    assert person.accounted == kept.people["r1"].accounted and person.accounted is not None
    assert person.accounted[0] == D0 + 1 + 7 * 51 + 2  # the last check-out


def test_someone_who_left_is_forgotten_a_horizon_after_their_last_record() -> None:
    events = [
        arrival("v1", at(0), until_day=20),
        hotel("v1", at(1), 1),  # never checked out: report.checkout_missing when they leave
        departure("v1", at(10)),
    ]
    retaining = PersonDetector(RULES, clock=lambda: 0)
    alerts = run(events, at(10 + H - 1), retaining)
    assert ("report.checkout_missing", "RAISED") in {(a["rule_id"], a["status"]) for a in alerts}
    assert "v1" in retaining.people
    assert run([], at(10 + H + 1), retaining) == []
    assert "v1" not in retaining.people
    # back a year later: a new stay, judged as anyone's
    back = run([arrival("v1", at(400), until_day=410)], at(412), retaining)
    assert [(a["rule_id"], a["status"]) for a in back] == [("permit.expiring", "RAISED"), ("overstay", "RAISED")]


def test_a_citizen_screened_months_ago_is_remembered_for_previous_delay() -> None:
    risky = journey(destination_country="KHM", return_ticket=False)
    events = [departure("c1", at(0), nat="IDN", journey=risky)]
    retaining = PersonDetector(RULES, clock=lambda: 0)
    run(events, at(0) + 3 * H * DAY_MS, retaining)
    assert not retaining.people["c1"].alerts
    again = run([departure("c1", at(3 * H + 1), nat="IDN", journey=risky, checkpoint=CP2)], at(3 * H + 2), retaining)
    (screening,) = again
    assert any(e["name"] == "previous_delay" for e in screening["evidence"])


def test_a_screening_older_than_the_lookback_is_forgotten_and_no_longer_counts() -> None:
    lookback = RULES.tppo.previous_delay_days
    risky = journey(destination_country="KHM", return_ticket=False)
    retaining = PersonDetector(RULES, clock=lambda: 0)
    run([departure("c1", at(0), nat="IDN", journey=risky)], at(lookback - 1), retaining)
    assert retaining.people["c1"].screened_at  # still within the lookback
    run([], at(lookback + H + 2), retaining)
    assert "c1" not in retaining.people
    again = run([departure("c1", at(lookback + H + 3), nat="IDN", journey=risky, checkpoint=CP2)], at(lookback + H + 4))
    (screening,) = again
    assert not any(e["name"] == "previous_delay" for e in screening["evidence"])


def test_a_sponsor_forgets_permits_that_ended_or_were_cancelled_before_the_horizon() -> None:
    from test_detect_entity import D0 as E0
    from test_detect_entity import at as at_entity
    from test_detect_entity import permit_fact, report

    from streams.detect.entity import EntityDetector

    det = EntityDetector(RULES, 1, clock=lambda: 0)

    def until(day: int) -> list[dict[str, Any]]:
        late = int(RULES.time.lateness_seconds * 1000) + 1
        tick = {"t": "tick", "src": 0, "at": at_entity(day) + late}
        return det.offer_fact(tick) + det.offer_report("clock_tick", {"reported_at": at_entity(day) + late})

    for fact in (
        permit_fact("ended", 1, 40),
        permit_fact("cancelled", 1, 400, "CANCELLED"),
        permit_fact("valid", 1, 400),
        permit_fact("ends-soon", 1, 150),
    ):
        det.offer_fact(fact)
    det.offer_report("sponsor_report", report(33, date(2026, 1, 31), ["valid", "ended", "ends-soon"]))
    until(34)
    assert set(det.sponsors["SPN-1"].permits) == {"ended", "cancelled", "valid", "ends-soon"}
    # mid-June: the horizon reaches back to May; "ended" (day 40, in February) was last counted by
    # January's report, "cancelled" was cancelled in January
    assert E0 + 160 - H - 62 > E0 + 40
    det.offer_report("sponsor_report", report(160, date(2026, 5, 31), ["valid", "ends-soon"]))
    alerts = until(161)
    assert set(det.sponsors["SPN-1"].permits) == {"valid", "ends-soon"}
    assert not [a for a in alerts if a["rule_id"] == "sponsor.roster_mismatch"]


def test_a_redelivery_inside_the_horizon_is_ignored() -> None:
    event = hotel("d1", at(1), 1, expected_out=3, eid="same")
    retaining = PersonDetector(RULES, clock=lambda: 0)
    run([event], at(2), retaining)
    retaining.people["d1"].checkins["same"].checked_out = True
    run([(event[0], event[1], {**event[2], "reported_at": at(2, 12)})], at(2, 13), retaining)
    assert retaining.people["d1"].checkins["same"].checked_out  # not reset by the copy


# ------------------------------------------------------------------ a simulated year


def simulated(days: int, travellers: int, seed: int, partitions: int) -> list[tuple[str, int, str, dict[str, Any]]]:
    sim = simulate(days, travellers, seed, date(2025, 1, 6))
    c = codec()
    end_ms = int(sim.end.timestamp() * 1000)
    return [(t, p, *c.decode(v)) for t, p, v in topic_records(sim.events, end_ms, partitions, b"r" * 32)]


def test_a_simulated_year_gives_the_same_alerts_with_and_without_retention() -> None:
    records = simulated(365, 2_500, 17, 2)
    alerts = detect_offline(records, RULES, 2)
    assert len(alerts) > 1_000
    assert alerts == detect_offline(records, keeping_all(), 2)


def held(det: PersonDetector) -> tuple[int, int, int, int]:
    """Check-ins, alert states, record ids and timers the detector holds."""
    return (
        sum(len(p.checkins) for p in det.people.values()),
        sum(len(p.alerts) for p in det.people.values()),
        len(det.applied),
        det.timeline.pending(),
    )


def test_state_levels_off_where_without_retention_it_grows_with_the_events() -> None:
    """Two simulated years at a steady rate: the check-ins, ids and timers the worker holds after the
    second year are about what it held after the first, where keeping everything doubles them. (The
    alert states of the people still in the country grow in both: the simulation's overstayers
    never leave.)"""
    records = simulated(730, 5_000, 17, 1)
    middle = len(records) // 2
    grown: dict[str, list[tuple[int, int, int, int]]] = {}
    for name, rules in (("kept", keeping_all()), ("retained", RULES)):
        det = PersonDetector(rules, clock=lambda: 0)
        for i, (topic, _, kind, record) in enumerate(records):
            if topic == topics.SPONSOR_REPORTS:
                continue  # rosters reach the person stage through the second stage
            det.offer(topic, kind, record)
            det.facts.clear()
            if i in (middle, len(records) - 1):
                grown.setdefault(name, []).append(held(det))
    (k1, k2), (r1, r2) = grown["kept"], grown["retained"]
    assert all(b > 1.6 * a for a, b in zip(k1[:3], k2[:3], strict=True)), (k1, k2)
    assert all(r1[i] * 1.25 > r2[i] for i in (0, 2, 3)), (r1, r2)
    assert all(r < k for r, k in zip(r2, k2, strict=True)), (r2, k2)
