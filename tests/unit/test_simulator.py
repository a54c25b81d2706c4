"""The simulator: valid gateway JSON, deterministic, in replay order, and a ground truth that follows
streams/detect/RULES.md (checked on whole simulations, on hand-made timelines and by recomputing
some rules independently), for the person rules (whereabouts.unknown with the sponsor rosters routed
to people included) and for the second stage's establishment and sponsor rules."""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from connectors.simulator import AmbiguousCase, Simulation, ground_truth, load_rules, simulate
from schemas.validation import Validator, parse_timestamp_ms

START = date(2026, 1, 5)
FAR_FUTURE_MS = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp() * 1000)
SKEW_MS = 5 * 60 * 1000
RULES_MD = Path(__file__).resolve().parents[2] / "streams" / "detect" / "RULES.md"
WIB_OFFSET_MS = 7 * 3_600_000
DAY_MS = 86_400_000
Event = dict[str, Any]
ENTITY_RULES = frozenset({"establishment.silent", "sponsor.overdue", "sponsor.roster_mismatch"})
# people the second stage (and the roster_gap sponsor drawn last) adds (not among ``travellers``)
SECOND_STAGE_PEOPLE = (
    "resident_guest",
    "sponsored",
    "sponsored_arrives",
    "sponsored_unreported",
    "sponsored_cancelled",
    "sponsored_gap_arrives",
)
# foreigners drawn last, in addition to ``travellers``, whose whereabouts go unreported
WHEREABOUTS_SCENARIOS = ("whereabouts_villa", "whereabouts_late_register")


@cache
def sim(days: int = 90, travellers: int = 500, seed: int = 1) -> Simulation:
    return simulate(days=days, travellers=travellers, seed=seed, start=START)


@cache
def validator(kind: str) -> Validator:
    return Validator(kind)


def ms(text: str) -> int:
    return parse_timestamp_ms(text)


def wib_date(millis: int) -> date:
    return date(1970, 1, 1) + timedelta(days=(millis + WIB_OFFSET_MS) // DAY_MS)


def wib_midnight(day: date) -> int:
    return (day - date(1970, 1, 1)).days * DAY_MS - WIB_OFFSET_MS


def who(event: Event) -> tuple[str, str]:
    ident = event.get("traveller") or event.get("guest") or event.get("holder")
    assert ident is not None
    return ident["nationality"], ident["document_number"]


def by_person(s: Simulation) -> dict[tuple[str, str], list[Event]]:
    people: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for item in s.events:
        if item["kind"] != "sponsor_report":
            people[who(item["event"])].append(item["event"])
    return people


def travellers_of(s: Simulation) -> dict[str, str]:
    return {
        k: v
        for k, v in s.scenarios.items()
        if v not in SECOND_STAGE_PEOPLE
        and v != "unlisted_worker"
        and not v.startswith("group_")
        and v not in WHEREABOUTS_SCENARIOS
    }


def people_in(s: Simulation, scenario: str) -> list[tuple[str, str]]:
    out = []
    for key, name in s.scenarios.items():
        if name == scenario or name.startswith(scenario + ":"):
            nat, doc = key.split(":")
            out.append((nat, doc))
    return out


def labels_of(s: Simulation, person: tuple[str, str]) -> list[dict[str, Any]]:
    events = {e["event_id"] for e in by_person(s)[person]}
    subject = {"nationality": person[0], "document_number": person[1]}
    return [t for t in s.truth if t["subject"] == subject or t["window"] in events]


def roster_covers(period_end: str) -> str:
    """The day a roster entry accounts for its person to: its sponsor's next report's due date."""
    end = date.fromisoformat(period_end)
    year, month = (end.year + 1, end.month - 10) if end.month > 10 else (end.year, end.month + 2)
    return date(year, month, load_rules().sponsor_due_day).isoformat()


def test_roster_cover_is_the_next_reports_due_date() -> None:
    assert roster_covers("2026-01-31") == "2026-03-10"
    assert roster_covers("2026-11-30") == "2027-01-10"
    assert roster_covers("2026-12-31") == "2027-02-10"


def sightings_of(s: Simulation) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """(day, office) of every possible sighting of each person: arrival date, check-in, expected
    check-out and check-out dates, the day roster entries cover to."""
    out: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for item in s.events:
        e = item["event"]
        if item["kind"] == "sponsor_report":
            for entry in e["roster"]:
                out[who({"guest": entry["foreigner"]})].add((roster_covers(e["period_end"]), e["sponsor"]["office"]))
        elif item["kind"] == "border_crossing" and e["direction"] == "ARRIVAL":
            out[who(e)].add((wib_date(ms(e["occurred_at"])).isoformat(), e["checkpoint"]["office"]))
        elif item["kind"] == "hotel_guest_event":
            for name in ("check_in_date", "expected_check_out_date", "check_out_date"):
                if e.get(name):
                    out[who(e)].add((e[name], e["establishment"]["office"]))
    return out


def rule_ids_in_rules_md() -> set[str]:
    text = RULES_MD.read_text()
    ids: set[str] = set()
    for section in ("## Rules", "## Establishment and sponsor rules", "## Whereabouts"):
        part = text.split(section, 1)[1].split("\n## ", 1)[0]
        ids |= set(re.findall(r"^- \*\*([a-z_.]+)\*\*:", part, flags=re.MULTILINE))
    later = text.split("## Not yet evaluated", 1)[1] if "## Not yet evaluated" in text else ""
    return ids - set(re.findall(r"`([a-z_.]+)`", later))


# ---------------------------------------------------------------- the events


def test_every_event_passes_the_gateway_validation() -> None:
    s = sim()
    for item in s.events:
        event = item["event"]
        result = validator(item["kind"])(event, now_ms=FAR_FUTURE_MS, max_skew_ms=SKEW_MS, trusted_clock=True)
        assert result.problems == [], (event["event_id"], result.problems)
        assert result.record is not None
        assert result.record["reported_at"] == ms(event["reported_at"])
        assert result.record["event_id"] == event["event_id"]


def test_events_are_in_replay_order_with_unique_ids() -> None:
    events = [item["event"] for item in sim().events]
    keys = [(ms(e["reported_at"]), e["event_id"]) for e in events]
    assert keys == sorted(keys)
    assert len({e["event_id"] for e in events}) == len(events)


def test_reported_after_it_happened_with_a_small_delay_except_late_reports() -> None:
    s = sim()
    delays: Counter[str] = Counter()
    for item in s.events:
        e = item["event"]
        delay = ms(e["reported_at"]) - ms(e["occurred_at"])
        assert delay > 0
        if item["kind"] == "border_crossing":
            assert delay <= 3 * 60 * 1000
        if item["kind"] == "hotel_guest_event" and e["action"] == "CHECK_IN":
            delays["late" if delay > 24 * 3_600_000 else "on time"] += 1
    assert delays["on time"] > 10 * delays["late"] > 0


def test_every_event_lies_inside_the_horizon() -> None:
    s = sim()
    start_ms = wib_midnight(START)
    end_ms = int(s.end.timestamp() * 1000)
    assert s.end == datetime(2026, 4, 4, 16, 0, tzinfo=UTC)  # 2026-04-04 23:00 WIB, the 90th day
    for item in s.events:
        e = item["event"]
        assert start_ms <= ms(e["occurred_at"]) < ms(e["reported_at"]) < end_ms - 10 * 60 * 1000


def test_population_size_and_mix() -> None:
    s = sim()
    people = by_person(s)
    assert len(travellers_of(s)) == 500
    assert set(people) == {tuple(k.split(":")) for k, v in s.scenarios.items() if v != "unlisted_worker"}
    added = Counter(v for v in s.scenarios.values() if v in SECOND_STAGE_PEOPLE)
    assert sum(n for name, n in added.items() if name.startswith("sponsored")) >= 30
    assert added["resident_guest"] >= 60
    assert added["sponsored_unreported"] == 5 and added["sponsored_cancelled"] == 2 and added["sponsored_arrives"] >= 1
    assert 4.5 <= len(s.events) / 500 <= 10
    kinds = Counter(item["kind"] for item in s.events)
    assert set(kinds) == {"border_crossing", "hotel_guest_event", "permit_update", "sponsor_report"}
    checkpoints = {item["event"]["checkpoint"]["checkpoint_id"] for item in s.events if "checkpoint" in item["event"]}
    assert checkpoints == {"TPI-BATAM-CENTRE", "TPI-SOEKARNO-HATTA", "TPI-NGURAH-RAI", "TPI-KUALANAMU"}
    offices = {item["event"]["establishment"]["office"] for item in s.events if "establishment" in item["event"]}
    assert {"KANIM-BATAM", "KANIM-NGURAH-RAI", "KANIM-JAKARTA-PUSAT", "KANIM-MALANG"} <= offices
    permits = Counter(
        item["event"]["arrival"]["permit_type"] for item in s.events if item["event"].get("arrival") is not None
    )
    assert {"VISA_EXEMPT", "VOA", "VISITOR_VISA", "ITAS"} <= set(permits)
    actions = Counter(item["event"]["action"] for item in s.events if item["kind"] == "hotel_guest_event")
    assert actions["CHECK_IN"] > actions["CHECK_OUT"] > 0 and actions["CANCEL"] > 0 and actions["CORRECTION"] > 0


def test_arrival_authorised_until_follows_the_stay_table() -> None:
    stay = load_rules().stay_days
    for item in sim().events:
        arrival = item["event"].get("arrival")
        if arrival is None or arrival["permit_type"] not in stay:
            continue
        arrived = date.fromisoformat(item["event"]["occurred_at"][:10])
        assert date.fromisoformat(arrival["authorised_until"]) == arrived + timedelta(
            days=stay[arrival["permit_type"]] - 1
        )


def test_bali_sources_use_wita_and_crossings_keep_clear_of_midnight() -> None:
    for item in sim().events:
        e = item["event"]
        place = e.get("checkpoint", {}).get("checkpoint_id") or e.get("establishment", {}).get("region")
        if place in ("TPI-NGURAH-RAI", "Kabupaten Badung", "Kabupaten Gianyar"):
            assert e["occurred_at"].endswith("+08:00")
        if item["kind"] == "border_crossing":
            assert 2 <= int(e["occurred_at"][11:13]) < 22


# ---------------------------------------------------------------- determinism


def test_same_seed_same_output_and_another_seed_differs() -> None:
    a = simulate(days=20, travellers=60, seed=7, start=START)
    b = simulate(days=20, travellers=60, seed=7, start=START)
    c = simulate(days=20, travellers=60, seed=8, start=START)
    assert json.dumps(a.events) == json.dumps(b.events)
    assert a.truth == b.truth and a.withdrawn == b.withdrawn
    assert json.dumps(a.events) != json.dumps(c.events)
    full = simulate(days=90, travellers=500, seed=1, start=START)  # the second stage included
    assert json.dumps(full.events) == json.dumps(sim().events)
    assert (full.truth, full.withdrawn, full.scenarios, full.entities) == (
        sim().truth,
        sim().withdrawn,
        sim().scenarios,
        sim().entities,
    )


def test_write_gives_json_lines(tmp_path: Path) -> None:
    s = simulate(days=10, travellers=30, seed=3, start=START)
    s.write(tmp_path / "events.jsonl", tmp_path / "truth.jsonl")
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    truth = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    assert events == s.events
    assert truth == s.truth


@pytest.mark.parametrize(("days", "travellers", "seed"), [(1, 10, 0), (3, 5, 1), (30, 120, 2), (61, 200, 3)])
def test_small_and_odd_sizes_work(days: int, travellers: int, seed: int) -> None:
    s = simulate(days=days, travellers=travellers, seed=seed, start=START)
    assert len(travellers_of(s)) == travellers
    assert all(t["rule_id"] for t in s.truth)


def test_fast_enough() -> None:
    started = time.perf_counter()
    simulate(days=90, travellers=500, seed=11, start=START)
    assert time.perf_counter() - started < 5


# ---------------------------------------------------------------- the truth, as a whole


def test_every_evaluated_rule_of_rules_md_has_labels() -> None:
    expected = rule_ids_in_rules_md()
    assert {"overstay", "tppo.screening", "report.checkout_missing"} <= expected
    assert expected >= ENTITY_RULES and "whereabouts.unknown" in expected
    counts = Counter(t["rule_id"] for t in sim().truth)
    assert expected <= set(counts), expected - set(counts)
    assert set(counts) <= expected


def test_truth_labels_are_unique_and_refer_to_existing_events() -> None:
    s = sim()
    events = {item["event"]["event_id"]: item["event"] for item in s.events}
    people = by_person(s)
    sightings = sightings_of(s)
    seen = set()
    for t in s.truth:
        key = json.dumps(t, sort_keys=True)
        assert key not in seen
        seen.add(key)
        assert set(t) - {"group", "office"} == {"rule_id", "subject", "window"}
        assert t.get("group", True) is True and ("group" not in t or t["rule_id"] == "tppo.screening")
        assert ("office" in t) == (t["rule_id"] == "whereabouts.unknown")
        if t["rule_id"] == "whereabouts.unknown":  # a sighting of this person covers the day, from that office
            person = (t["subject"]["nationality"], t["subject"]["document_number"])
            assert (t["window"], t["office"]) in sightings[person], t
            continue
        if t["rule_id"] == "establishment.silent":
            est = t["subject"]["establishment_id"]
            assert any(
                e.get("action") == "CHECK_IN"
                and e["establishment"]["establishment_id"] == est
                and wib_date(ms(e["occurred_at"])).isoformat() == t["window"]
                for e in events.values()
            )
            continue
        if t["rule_id"] == "sponsor.overdue":
            assert re.fullmatch(r"\d{4}-\d{2}", t["window"]) and set(t["subject"]) == {"sponsor_id"}
            continue
        if t["rule_id"] == "sponsor.roster_mismatch":
            assert events[t["window"]]["sponsor"]["sponsor_id"] == t["subject"]["sponsor_id"]
            continue
        if t["rule_id"] in ("overstay", "permit.expiring"):
            person = (t["subject"]["nationality"], t["subject"]["document_number"])
            untils = {e["arrival"]["authorised_until"] for e in people[person] if e.get("arrival")}
            untils |= {e["valid_until"] for e in people[person] if "valid_until" in e}
            assert t["window"] in untils
            continue
        event = events[t["window"]]
        if "document_number" in t["subject"]:
            assert who(event) == (t["subject"]["nationality"], t["subject"]["document_number"])
        elif t["rule_id"] == "report.missing":
            assert event["arrival"]["declared_establishment_id"] == t["subject"]["establishment_id"]
        else:
            assert event["establishment"]["establishment_id"] == t["subject"]["establishment_id"]


def test_truth_is_the_reference_evaluation_of_the_events() -> None:
    s = sim()
    truth, withdrawn = ground_truth(s.events, s.end)
    assert truth == s.truth and withdrawn == s.withdrawn


def test_many_seeds_produce_no_ambiguous_case() -> None:
    for seed in range(2, 8):
        s = simulate(days=90, travellers=500, seed=seed, start=START)
        assert set(Counter(t["rule_id"] for t in s.truth)) == rule_ids_in_rules_md()


# ---------------------------------------------------------------- hand-checked scenario properties


def test_an_overstay_has_no_departure_and_no_extension_before_it() -> None:
    s = sim()
    people = by_person(s)
    overstays = [t for t in s.truth if t["rule_id"] == "overstay"]
    assert len(overstays) >= 10
    for t in overstays:
        until = date.fromisoformat(t["window"])
        begins = wib_midnight(until + timedelta(days=1))
        events = people[(t["subject"]["nationality"], t["subject"]["document_number"])]
        arrival = max(
            (e for e in events if e.get("direction") == "ARRIVAL" and ms(e["occurred_at"]) < begins),
            key=lambda e: ms(e["occurred_at"]),
        )
        assert arrival["arrival"]["authorised_until"] == t["window"] or any(
            e.get("valid_until") == t["window"] for e in events
        )
        assert not any(
            e.get("direction") == "DEPARTURE" and ms(arrival["occurred_at"]) < ms(e["occurred_at"]) < begins
            for e in events
        )
        assert not any(e.get("valid_until", "") > t["window"] for e in events)


def test_an_overstay_reaches_the_escalation_within_ninety_days() -> None:
    s = sim()
    escalate = load_rules().escalate_at_days
    last_day = START + timedelta(days=89)
    assert any(
        t["rule_id"] == "overstay" and (last_day - date.fromisoformat(t["window"])).days >= escalate for t in s.truth
    )
    events = {item["event"]["event_id"]: item["event"] for item in s.events}
    people = by_person(s)
    exits = []
    for t in s.truth:
        if t["rule_id"] != "overstay.at_exit":
            continue
        departure = events[t["window"]]
        person = people[who(departure)]
        arrival = max(
            (e for e in person if e.get("direction") == "ARRIVAL" and e["occurred_at"] < departure["occurred_at"]),
            key=lambda e: ms(e["occurred_at"]),
        )
        over = (
            wib_date(ms(departure["occurred_at"])) - date.fromisoformat(arrival["arrival"]["authorised_until"])
        ).days
        assert over >= 1
        exits.append(over)
    assert max(exits) >= escalate


def test_every_overstayer_leaving_late_is_caught_at_exit_and_overstays() -> None:
    s = sim()
    for person in people_in(s, "overstay_exit"):
        rules = Counter(t["rule_id"] for t in labels_of(s, person))
        assert rules["overstay.at_exit"] == 1 and rules["overstay"] == 1 and rules["permit.expiring"] == 1


def test_overstayers_located_at_a_hotel() -> None:
    s = sim()
    located = people_in(s, "overstay_located")
    assert located
    silent = 0
    for person in located:
        rules = Counter(t["rule_id"] for t in labels_of(s, person))
        # they live privately before and after the hotel that finds them: more than 14 days of that go unaccounted
        silent += rules.pop("whereabouts.unknown", 0)
        sent_home = rules.pop("overstay.at_exit", 0)  # within a month of the hotel, when the horizon allows
        assert rules == Counter({"overstay": 1, "overstay.located": 1, "permit.expiring": 1}) and sent_home <= 1
    assert silent >= len(located)


def test_overstayers_who_stay_on_leave_months_later_when_the_horizon_allows() -> None:
    s = sim(days=500, travellers=300)
    escalate = load_rules().escalate_at_days
    stay_on = people_in(s, "overstay_stays") + people_in(s, "overstay_stays_escalated")
    left = 0
    for person in stay_on:
        rules = Counter(t["rule_id"] for t in labels_of(s, person))
        assert rules["overstay"] == 1 and rules["permit.expiring"] == 1
        exits = [t for t in labels_of(s, person) if t["rule_id"] == "overstay.at_exit"]
        left += len(exits)
        (overstay,) = [t for t in labels_of(s, person) if t["rule_id"] == "overstay"]
        until = date.fromisoformat(overstay["window"])
        for t in exits:  # after the escalation: they stayed on for months
            (dep,) = [e for e in by_person(s)[person] if e["event_id"] == t["window"]]
            over = (date.fromisoformat(dep["occurred_at"][:10]) - until).days
            assert escalate < over <= 365 + 1, (person, over)
    assert 0 < left <= len(stay_on)


def test_itas_workers_go_home_before_their_permit_ends_and_never_overstay() -> None:
    s = sim(days=500, travellers=300)
    workers = people_in(s, "itas_worker")
    gone = 0
    for person in workers:
        events = by_person(s)[person]
        (arrival,) = [e for e in events if e.get("direction") == "ARRIVAL"]
        until = date.fromisoformat(arrival["arrival"]["authorised_until"])
        departures = [e for e in events if e.get("direction") == "DEPARTURE"]
        if until < s.end.date() - timedelta(days=1):
            (dep,) = departures
            assert date.fromisoformat(dep["occurred_at"][:10]) <= until
            gone += 1
        # the warning a week before, while they are still at work; never an overstay
        assert {t["rule_id"] for t in labels_of(s, person)} <= {"permit.expiring"}
    assert gone


def test_a_voa_extension_on_time_prevents_the_overstay() -> None:
    s = sim()
    for person in people_in(s, "voa_extension"):
        assert not [t for t in labels_of(s, person) if t["rule_id"].startswith("overstay")]


def test_a_late_reported_extension_withdraws_the_overstay() -> None:
    s = sim()
    late = people_in(s, "voa_extension_late")
    assert late
    for person in late:
        subject = {"nationality": person[0], "document_number": person[1]}
        withdrawn = [w for w in s.withdrawn if w["subject"] == subject]
        assert [w["rule_id"] for w in withdrawn] == ["overstay"]
        assert withdrawn[0] not in s.truth
        expiring = [t for t in labels_of(s, person) if t["rule_id"] == "permit.expiring"]
        assert {"window": withdrawn[0]["window"], "rule_id": "permit.expiring", "subject": subject} in expiring
        assert not [t for t in labels_of(s, person) if t["rule_id"].startswith("overstay")]


def test_permit_expiring_recomputed_for_travellers_without_permit_updates() -> None:
    """Independently: in the country at A - 7 days 00:00 WIB (one trip, A from the arrival)."""
    s = sim()
    end_ms = int(s.end.timestamp() * 1000)
    warn = load_rules().warn_before_days
    checked = 0
    for person, events in by_person(s).items():
        crossings = [e for e in events if "direction" in e]
        if person[0] == "IDN" or any("valid_until" in e for e in events) or not 0 < len(crossings) <= 2:
            continue
        arrival = crossings[0]
        until = date.fromisoformat(arrival["arrival"]["authorised_until"])
        moment = wib_midnight(until - timedelta(days=warn))
        left = [ms(e["occurred_at"]) for e in crossings[1:]]
        expected = ms(arrival["occurred_at"]) < moment < end_ms and not (left and left[0] < moment)
        label = {
            "rule_id": "permit.expiring",
            "subject": dict(zip(("nationality", "document_number"), person, strict=True)),
            "window": until.isoformat(),
        }
        assert (label in s.truth) == expected, person
        checked += 1
    assert checked > 300


def test_report_late_exactly_when_a_check_in_comes_more_than_a_day_late_and_stays() -> None:
    s = sim()
    cancelled = {e["event"]["corrects_event_id"] for e in s.events if e["event"].get("action") == "CANCEL"}
    late = set()
    for item in s.events:
        e = item["event"]
        delay = ms(e["reported_at"]) - ms(e["occurred_at"])
        if e.get("action") == "CHECK_IN" and delay > 24 * 3_600_000 and e["event_id"] not in cancelled:
            late.add(e["event_id"])
    assert late == {t["window"] for t in s.truth if t["rule_id"] == "report.late"}
    assert cancelled
    assert {w["window"] for w in s.withdrawn if w["rule_id"] == "report.late"} == cancelled
    assert not cancelled & {t["window"] for t in s.truth}


def test_report_missing_only_when_the_declared_hotel_is_silent_and_the_traveller_stays() -> None:
    s = sim()
    for person in people_in(s, "missing_departs_early"):
        assert not [t for t in labels_of(s, person) if t["rule_id"] == "report.missing"]
    never = people_in(s, "hotel_never_reports")
    end_ms = int(s.end.timestamp() * 1000)
    people = by_person(s)
    for person in never:
        arrival = people[person][0]
        if ms(arrival["occurred_at"]) + 48 * 3_600_000 < end_ms:
            windows = [t["window"] for t in labels_of(s, person) if t["rule_id"] == "report.missing"]
            assert windows == [arrival["event_id"]]
    for t in s.truth:
        if t["rule_id"] == "report.missing":
            assert t["subject"]["establishment_id"].startswith("EST-")


def test_checkout_missing_for_silent_check_outs_and_long_stays() -> None:
    s = sim()
    for scenario in ("no_checkout", "stayed_past_expected"):
        with_label = [
            p for p in people_in(s, scenario) if any(t["rule_id"] == "report.checkout_missing" for t in labels_of(s, p))
        ]
        assert len(with_label) >= len(people_in(s, scenario)) // 2
    for person in people_in(s, "normal"):
        assert not [t for t in labels_of(s, person) if t["rule_id"] != "permit.expiring"], person


def test_tppo_screening_follows_the_profiles() -> None:
    s = sim()
    for person in people_in(s, "tppo_fires"):
        assert [t["rule_id"] for t in labels_of(s, person)] == ["tppo.screening"]
    for person in people_in(s, "tppo_near"):
        assert labels_of(s, person) == []
    for person in people_in(s, "ordinary"):
        assert labels_of(s, person) == []
    expected = {"another_checkpoint": 2, "same_checkpoint": 1, "first_below": 0}
    seen = set()
    for person in people_in(s, "tppo_repeat"):
        variant = s.scenarios[":".join(person)].split(":")[1]
        seen.add(variant)
        assert len(labels_of(s, person)) == expected[variant]
    assert seen == set(expected)
    assert {s.scenarios[":".join(p)] for p in people_in(s, "tppo_near")} >= {"tppo_near:khm_31_days"}
    assert "tppo_fires:khm_30_days" in set(s.scenarios.values())


# ---------------------------------------------------------------- the second stage on whole simulations


def test_each_second_stage_rule_has_labels_and_the_late_report_is_withdrawn() -> None:
    s = sim()
    counts = Counter(t["rule_id"] for t in s.truth)
    assert all(counts[rule] >= 1 for rule in ENTITY_RULES), counts
    silent = {t["subject"]["establishment_id"] for t in s.truth if t["rule_id"] == "establishment.silent"}
    assert {"EST-MJK-0002", "EST-JKT-0004"} <= silent  # silent_resumes, silent_for_good
    late = [w for w in s.withdrawn if w["subject"] == {"establishment_id": "EST-BTM-0005"}]
    assert [w["rule_id"] for w in late] == ["establishment.silent"]
    assert s.entities["EST-BTM-0005"] == "silent_late_report"
    assert not [t for t in s.truth if t["rule_id"] in ENTITY_RULES and t in s.withdrawn]


def test_sponsor_scenarios_give_their_alerts_and_no_others() -> None:
    s = sim()
    by_sponsor: dict[str, Counter[str]] = defaultdict(Counter)
    for t in s.truth:
        if "sponsor_id" in t["subject"]:
            by_sponsor[t["subject"]["sponsor_id"]][t["rule_id"]] += 1
    reports = Counter(e["event"]["sponsor"]["sponsor_id"] for e in s.events if e["kind"] == "sponsor_report")
    for sponsor, scenario in s.entities.items():
        if not sponsor.startswith("SPN-"):
            continue
        got = by_sponsor[sponsor]
        if scenario in ("regular", "regular_with_cancellation"):
            assert got == Counter(), (sponsor, got)
        elif scenario in ("stops_reporting", "reports_late"):
            assert got == Counter({"sponsor.overdue": 1}), (sponsor, got)  # February, due on 10 March
        elif scenario == "roster_gap":  # the reports that leave a worker off for a while
            gap = {tuple(k.split(":")) for k, v in s.scenarios.items() if v == "sponsored_gap_arrives"}
            left_off = [
                e
                for e in s.events
                if e["kind"] == "sponsor_report"
                and e["event"]["sponsor"]["sponsor_id"] == sponsor
                and not gap <= {who({"guest": x["foreigner"]}) for x in e["event"]["roster"]}
            ]
            assert len(gap) == 1 and 1 <= len(left_off) < reports[sponsor]
            assert got == Counter({"sponsor.roster_mismatch": len(left_off)}), (sponsor, got)
        else:  # every report of roster_omits and roster_unlisted
            assert got == Counter({"sponsor.roster_mismatch": reports[sponsor]}), (sponsor, got)
            assert reports[sponsor] >= 2
    assert reports["SPN-MJK-0003"] == 1
    cancelled = [e["event"] for e in s.events if e["event"].get("action") == "CANCELLED"]
    assert {e["sponsor_id"] for e in cancelled} == {"SPN-BTM-0001", "SPN-BTM-0002"}


def test_second_stage_people_leave_the_person_rules_alone() -> None:
    """Without the sponsors' people and reports and the guesthouses' guests, the person rules give the same
    for the travellers; of the people added, only the sponsors' workers who arrive in the story have person
    labels, and only whereabouts.unknown (a monthly roster alone cannot keep them accounted for: see
    test_reference_whereabouts_of_a_roster_listed_worker)."""
    s = sim()
    added = {k for k, v in s.scenarios.items() if v in SECOND_STAGE_PEOPLE}

    def travellers(labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            t
            for t in labels
            if t["rule_id"] not in ENTITY_RULES
            and f"{t['subject'].get('nationality')}:{t['subject'].get('document_number')}" not in added
        ]

    travellers_only = [
        item for item in s.events if item["kind"] != "sponsor_report" and ":".join(who(item["event"])) not in added
    ]
    truth, withdrawn = ground_truth(travellers_only, s.end)
    assert travellers(s.truth) == travellers(truth) == [t for t in truth if t["rule_id"] not in ENTITY_RULES]
    assert (
        travellers(s.withdrawn) == travellers(withdrawn) == [w for w in withdrawn if w["rule_id"] not in ENTITY_RULES]
    )
    arriving: set[str] = set()
    for t in s.truth + s.withdrawn:
        key = f"{t['subject'].get('nationality')}:{t['subject'].get('document_number')}"
        if key in added:
            assert t["rule_id"] == "whereabouts.unknown" and s.scenarios[key].endswith("_arrives"), t
            arriving.add(key)
    assert arriving and arriving <= {k for k, v in s.scenarios.items() if v.endswith("_arrives")}


def labelled(labels: list[dict[str, Any]], rule: str) -> set[tuple[str, str]]:
    """(establishment or sponsor id, window) of the labels of a second-stage rule."""
    return {(next(iter(t["subject"].values())), t["window"]) for t in labels if t["rule_id"] == rule}


def _threshold(days: list[int]) -> int | None:
    """RULES.md's silence threshold, written out again (see the simulator's docstring for the readings)."""
    rules = load_rules()
    last = days[-1]
    regular = len([d for d in days if last - 28 < d]) >= rules.silent_min_report_days
    if last - days[0] < rules.silent_min_history_days or not regular:
        return None
    gaps = sorted(b - a for a, b in itertools.pairwise(days))
    middle = len(gaps) // 2
    median = gaps[middle] if len(gaps) % 2 else (gaps[middle - 1] + gaps[middle]) / 2
    return max(rules.min_silent_days, math.ceil(rules.silence_factor * median))


def test_establishment_silent_recomputed_instant_by_instant() -> None:
    """At every midnight and just after every check-in report: what is known then decides."""
    s = simulate(days=70, travellers=400, seed=5, start=START)
    end_ms = int(s.end.timestamp() * 1000)
    epoch = date(1970, 1, 1)
    reports: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for item in s.events:
        e = item["event"]
        if e.get("action") == "CHECK_IN":
            day = (wib_date(ms(e["occurred_at"])) - epoch).days
            reports[e["establishment"]["establishment_id"]].append((ms(e["reported_at"]), day))
    midnights = [wib_midnight(START + timedelta(days=i)) for i in range(71)]
    standing: set[tuple[str, str]] = set()
    withdrawn: set[tuple[str, str]] = set()
    for est, items in reports.items():
        items.sort()
        raised: dict[int, tuple[int, int]] = {}  # last report day -> (silence days, raised at)
        for t in sorted({*midnights, *(rep + 1 for rep, _ in items)}):
            if t >= end_ms:
                break
            days = sorted({d for rep, d in items if rep < t})
            if days and days[-1] not in raised:
                n = _threshold(days)
                if n is not None and t >= wib_midnight(epoch + timedelta(days=days[-1] + n)):
                    raised[days[-1]] = (n, t)
        for last, (n, at) in raised.items():
            late = any(rep >= at and last < d < last + n for rep, d in items if rep < end_ms)
            key = (est, (epoch + timedelta(days=last)).isoformat())
            (withdrawn if late else standing).add(key)
    assert labelled(s.truth, "establishment.silent") == standing and len(standing) > 10
    assert labelled(s.withdrawn, "establishment.silent") == withdrawn and withdrawn


def test_sponsor_rules_recomputed_from_the_events() -> None:
    s = sim()
    end_ms = int(s.end.timestamp() * 1000)
    permits: dict[str, list[Event]] = defaultdict(list)
    reports: dict[str, list[Event]] = defaultdict(list)
    for item in s.events:
        e = item["event"]
        if item["kind"] == "permit_update" and e.get("sponsor_id"):
            permits[e["sponsor_id"]].append(e)
        elif item["kind"] == "sponsor_report":
            reports[e["sponsor"]["sponsor_id"]].append(e)
    overdue: set[tuple[str, str]] = set()
    mismatch: set[tuple[str, str]] = set()
    for sponsor in permits.keys() | reports.keys():
        first = min(ms(e["reported_at"]) for e in permits[sponsor] + reports[sponsor])
        month = wib_date(first).replace(day=1)
        while True:
            month = (month + timedelta(days=31)).replace(day=1)
            due = wib_midnight((month + timedelta(days=31)).replace(day=load_rules().sponsor_due_day))
            if due >= end_ms:
                break
            last = ((month + timedelta(days=31)).replace(day=1) - timedelta(days=1)).isoformat()
            if not any(r["period_end"] >= last and ms(r["reported_at"]) < due for r in reports[sponsor]):
                overdue.add((sponsor, month.isoformat()[:7]))
        for r in reports[sponsor]:
            latest: dict[tuple[str, str], Event] = {}
            for e in sorted(permits[sponsor], key=lambda e: ms(e["occurred_at"])):
                if ms(e["reported_at"]) < ms(r["reported_at"]):
                    latest[who(e)] = e
            valid = {k for k, e in latest.items() if e["action"] != "CANCELLED" and e["valid_until"] >= r["period_end"]}
            listed = {(x["foreigner"]["nationality"], x["foreigner"]["document_number"]) for x in r["roster"]}
            if valid != listed:
                mismatch.add((sponsor, r["event_id"]))
    assert labelled(s.truth, "sponsor.overdue") == overdue == {("SPN-MJK-0003", "2026-02"), ("SPN-JKT-0001", "2026-02")}
    assert labelled(s.truth, "sponsor.roster_mismatch") == mismatch and len(mismatch) >= 4


def test_roster_omits_five_and_lists_one_without_a_permit() -> None:
    s = sim()
    permits: dict[tuple[str, str], Event] = {}
    for item in s.events:
        if item["kind"] == "permit_update" and item["event"].get("sponsor_id"):
            permits[who(item["event"])] = item["event"]
    for item in s.events:
        if item["kind"] != "sponsor_report":
            continue
        r = item["event"]
        listed = {(x["foreigner"]["nationality"], x["foreigner"]["document_number"]) for x in r["roster"]}
        if r["sponsor"]["sponsor_id"] == "SPN-MJK-0002":
            hidden = {tuple(k.split(":")) for k, v in s.scenarios.items() if v == "sponsored_unreported"}
            assert len(hidden) == 5 and not hidden & listed
        if r["sponsor"]["sponsor_id"] == "SPN-BTM-0002":
            without = [k for k in listed if k not in permits]
            assert [s.scenarios[":".join(k)] for k in without] == ["unlisted_worker"]
        for x in r["roster"]:
            assert x["address"] and x["job_title"]
        assert r["period_start"][:7] == r["period_end"][:7] < r["occurred_at"][:7]


# ---------------------------------------------------------------- the reference on hand-made timelines


def _t(day: str, hh: int, mm: int = 0) -> str:
    return f"{day}T{hh:02d}:{mm:02d}:00+07:00"


def _person() -> dict[str, str]:
    return {
        "nationality": "AUS",
        "document_type": "PASSPORT",
        "document_number": "PA1234567",
        "given_names": "Mia",
        "surname": "Brown",
    }


def _crossing(eid: str, at: str, direction: str, until: str | None = None, rep: str | None = None) -> Event:
    event: Event = {
        "event_id": eid,
        "occurred_at": at,
        "reported_at": rep or at,
        "direction": direction,
        "checkpoint": {
            "checkpoint_id": "TPI-BATAM-CENTRE",
            "name": "Batam Centre",
            "kind": "SEAPORT",
            "office": "KANIM-BATAM",
        },
        "traveller": _person(),
    }
    if until is not None:
        event["arrival"] = {
            "permit_type": "VOA",
            "authorised_until": until,
            "declared_establishment_id": "EST-BTM-0001",
        }
    return {"kind": "border_crossing", "event": event}


def _check_in(
    eid: str,
    at: str,
    rep: str,
    day: str,
    expected: str,
    action: str = "CHECK_IN",
    corrects: str | None = None,
    room: str = "101",
) -> Event:
    event: Event = {
        "event_id": eid,
        "occurred_at": at,
        "reported_at": rep,
        "action": action,
        "establishment": {
            "establishment_id": "EST-BTM-0001",
            "name": "Hotel Harmoni One",
            "region": "Kota Batam",
            "office": "KANIM-BATAM",
        },
        "guest": _person(),
        "room": room,
        "check_in_date": day,
        "expected_check_out_date": expected,
    }
    if corrects:
        event["corrects_event_id"] = corrects
    return {"kind": "hotel_guest_event", "event": event}


def _extension(eid: str, at: str, rep: str, until: str) -> Event:
    return {
        "kind": "permit_update",
        "event": {
            "event_id": eid,
            "occurred_at": at,
            "reported_at": rep,
            "action": "EXTENDED",
            "permit_type": "VOA",
            "holder": _person(),
            "valid_until": until,
            "office": "KANIM-BATAM",
        },
    }


def _rules_of(truth: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((t["rule_id"], t["window"]) for t in truth)


END = datetime(2026, 6, 1, tzinfo=UTC)


def test_reference_overstay_exit_and_warning() -> None:
    events = [
        _crossing("a1", _t("2026-01-05", 10), "ARRIVAL", "2026-02-03", rep=_t("2026-01-05", 10, 1)),
        _check_in("c1", _t("2026-01-05", 13), _t("2026-01-05", 14), "2026-01-05", "2026-01-08"),
        _check_in("o1", _t("2026-01-08", 9), _t("2026-01-08", 10), "2026-01-05", "2026-01-08", action="CHECK_OUT"),
        _crossing("d1", _t("2026-02-05", 10), "DEPARTURE", rep=_t("2026-02-05", 10, 1)),
    ]
    events[2]["event"]["check_out_date"] = "2026-01-08"
    truth, withdrawn = ground_truth(events, END)
    assert _rules_of(truth) == [
        ("overstay", "2026-02-03"),
        ("overstay.at_exit", "d1"),
        ("permit.expiring", "2026-02-03"),
        ("whereabouts.unknown", "2026-01-08"),  # nothing reported after the check-out
    ]
    assert withdrawn == []


def test_reference_leaving_on_the_last_day_and_in_the_last_week() -> None:
    arrive = _crossing("a1", _t("2026-01-05", 10), "ARRIVAL", "2026-02-03", rep=_t("2026-01-05", 10, 1))
    on_last_day = [arrive, _crossing("d1", _t("2026-02-03", 20), "DEPARTURE", rep=_t("2026-02-03", 20, 1))]
    assert _rules_of(ground_truth(on_last_day, END)[0])[0] == ("permit.expiring", "2026-02-03")
    # the check-in never came: report.missing too, and nobody accounted for them after the arrival day
    assert len(ground_truth(on_last_day, END)[0]) == 1 + 1 + 1
    day_before_warning = [arrive, _crossing("d1", _t("2026-01-26", 20), "DEPARTURE", rep=_t("2026-01-26", 20, 1))]
    assert [t["rule_id"] for t in ground_truth(day_before_warning, END)[0]] == ["report.missing", "whereabouts.unknown"]
    on_warning_day = [arrive, _crossing("d1", _t("2026-01-27", 8), "DEPARTURE", rep=_t("2026-01-27", 8, 1))]
    assert "permit.expiring" in [t["rule_id"] for t in ground_truth(on_warning_day, END)[0]]


def test_reference_late_extension_is_withdrawn_and_on_time_prevents() -> None:
    base = [
        _crossing("a1", _t("2026-01-05", 10), "ARRIVAL", "2026-02-03", rep=_t("2026-01-05", 10, 1)),
        _check_in("c1", _t("2026-01-05", 13), _t("2026-01-05", 14), "2026-01-05", "2026-03-01"),
    ]
    late = [*base, _extension("p1", _t("2026-01-30", 10), _t("2026-02-06", 10), "2026-03-05")]
    truth, withdrawn = ground_truth(late, END)
    assert ("overstay", "2026-02-03") in _rules_of(withdrawn)
    assert ("overstay", "2026-02-03") not in _rules_of(truth)
    assert ("permit.expiring", "2026-02-03") in _rules_of(truth)
    assert ("overstay", "2026-03-05") in _rules_of(truth)  # never left: the new A ran out too
    on_time = [*base, _extension("p1", _t("2026-01-20", 10), _t("2026-01-20", 10, 5), "2026-03-05")]
    truth, withdrawn = ground_truth(on_time, END)
    assert ("permit.expiring", "2026-02-03") not in _rules_of(truth)
    assert ("overstay", "2026-02-03") not in _rules_of(truth + withdrawn)


def test_reference_report_rules() -> None:
    arrive = _crossing("a1", _t("2026-01-05", 10), "ARRIVAL", "2026-02-03", rep=_t("2026-01-05", 10, 1))
    leave = _crossing("d1", _t("2026-01-12", 15), "DEPARTURE", rep=_t("2026-01-12", 15, 1))
    late = _check_in("c1", _t("2026-01-05", 13), _t("2026-01-06", 13, 1), "2026-01-05", "2026-01-12")
    truth, _ = ground_truth([arrive, late, leave], END)
    # 24 h 1 min late, but known before the 48 h deadline; no check-out before departure + 24 h
    assert _rules_of(truth) == [("report.checkout_missing", "c1"), ("report.late", "c1")]
    very_late = _check_in("c1", _t("2026-01-05", 13), _t("2026-01-07", 11), "2026-01-05", "2026-01-12")
    assert ("report.missing", "a1") in _rules_of(ground_truth([arrive, very_late, leave], END)[0])
    cancel = _check_in(
        "x1", _t("2026-01-05", 13), _t("2026-01-07", 18), "2026-01-05", "2026-01-12", action="CANCEL", corrects="c1"
    )
    truth, withdrawn = ground_truth([arrive, late, cancel, leave], END)
    assert _rules_of(withdrawn) == [("report.late", "c1")]
    assert truth == []  # known at the 48 h deadline; its check-out deadline comes after the CANCEL


def test_reference_refuses_what_rules_md_does_not_settle() -> None:
    arrive = _crossing("a1", _t("2026-01-05", 10), "ARRIVAL", "2026-02-03", rep=_t("2026-01-05", 10, 1))
    check_in = _check_in("c1", _t("2026-01-05", 13), _t("2026-01-05", 14), "2026-01-05", "2026-01-12")
    moved = _check_in(
        "r1", _t("2026-01-05", 13), _t("2026-01-05", 15), "2026-01-05", "2026-01-20", action="CORRECTION", corrects="c1"
    )
    with pytest.raises(AmbiguousCase):
        ground_truth([arrive, check_in, moved], END)
    straddling = _crossing("d1", _t("2026-01-07", 9, 59), "DEPARTURE", rep=_t("2026-01-07", 10, 1))
    with pytest.raises(AmbiguousCase):
        ground_truth([arrive, straddling], END)
    cancelled_early = _check_in(
        "x1", _t("2026-01-05", 13), _t("2026-01-06", 18), "2026-01-05", "2026-01-12", action="CANCEL", corrects="c1"
    )
    with pytest.raises(AmbiguousCase):  # does a check-in cancelled before the 48 h deadline count as known?
        ground_truth([arrive, check_in, cancelled_early], END)


# ---------------------------------------------------------------- the second stage on hand-made timelines


def _resident(n: int) -> dict[str, str]:
    return {"nationality": "JPN", "document_type": "PASSPORT", "document_number": f"TK{n:07d}", "surname": "Sato"}


def _reported_check_in(day: str, hh: int, rep_day: str | None = None, rep_hh: int | None = None) -> Event:
    """A check-in at EST-TEST-0001 by a resident (no crossing), reported an hour later unless said otherwise."""
    n = int(day.replace("-", "")) * 100 + hh
    reported = _t(rep_day or day, rep_hh if rep_hh is not None else hh + 1)
    event: Event = {
        "event_id": f"c-{day}-{hh}",
        "occurred_at": _t(day, hh),
        "reported_at": reported[:19] + ".123+07:00",  # off the midnight deadlines
        "action": "CHECK_IN",
        "establishment": {
            "establishment_id": "EST-TEST-0001",
            "name": "Losmen Uji",
            "region": "Kota Batam",
            "office": "KANIM-BATAM",
        },
        "guest": _resident(n),
        "check_in_date": day,
    }
    return {"kind": "hotel_guest_event", "event": event}


def _days(first: str, last: str, step: int = 1) -> list[str]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return [(a + timedelta(days=i)).isoformat() for i in range(0, (b - a).days + 1, step)]


def _silences(events: list[Event]) -> tuple[list[str], list[str]]:
    truth, withdrawn = ground_truth(events, END)
    standing, gone = (sorted(w for _, w in labelled(x, "establishment.silent")) for x in (truth, withdrawn))
    return standing, gone


def test_reference_silence_and_a_late_report_inside_it() -> None:
    regular = [_reported_check_in(d, 10) for d in _days("2026-01-01", "2026-01-20")]
    assert _silences(regular) == (["2026-01-20"], [])  # median gap 1: 3 days, raised 23 Jan 00:00
    # the evening of the 22nd typed in on the 23rd at 08:00: after the alert, inside the silence
    late = _reported_check_in("2026-01-22", 20, "2026-01-23", 8)
    assert _silences([*regular, late]) == (["2026-01-22"], ["2026-01-20"])  # then silent again from the 22nd
    # a guest of the 23rd (L + N) reported a day late: after the alert, so the silence was real
    after = _reported_check_in("2026-01-23", 13, "2026-01-24", 9)
    assert _silences([*regular, after]) == (["2026-01-20", "2026-01-23"], [])
    # reporting resumed on the 25th; a late report of the 21st still withdraws the alert of the 20th
    resumed = [_reported_check_in(d, 10) for d in _days("2026-01-25", "2026-01-31")]
    old = _reported_check_in("2026-01-21", 19, "2026-02-01", 9)
    truth, withdrawn = _silences([*regular, *resumed, old])
    assert "2026-01-20" in withdrawn and "2026-01-20" not in truth


def test_reference_silence_needs_history_and_regularity() -> None:
    assert _silences([_reported_check_in(d, 10) for d in _days("2026-01-01", "2026-01-14")]) == ([], [])
    assert _silences([_reported_check_in(d, 10) for d in _days("2026-01-01", "2026-01-15")]) == (["2026-01-15"], [])
    every_fourth = [_reported_check_in(d, 10) for d in _days("2026-01-05", "2026-01-25", 4)]  # 6 days, gap 4
    assert _silences([_reported_check_in("2025-12-28", 10), *every_fourth]) == ([], [])  # L - 28: outside
    assert _silences([_reported_check_in("2025-12-29", 10), *every_fourth]) == (["2026-01-25"], [])  # L - 27


def test_reference_silence_median_of_an_even_number_of_gaps() -> None:
    # gaps 1,1,1,1,1,2,2,2,2,2: median 1.5, N = ceil(4.5) = 5, so the 16th is silent only from 21 Jan
    days = [*_days("2026-01-01", "2026-01-06"), *_days("2026-01-08", "2026-01-16", 2)]
    events = [_reported_check_in(d, 10) for d in days]
    assert _silences(events) == (["2026-01-16"], [])
    on_the_20th = _reported_check_in("2026-01-20", 10)  # before 21 Jan: no alert for the 16th
    assert _silences([*events, on_the_20th]) == (["2026-01-20"], [])


def _sponsored(eid: str, holder: str, at: str, action: str, until: str, sponsor: str = "SPN-TEST-0001") -> Event:
    return {
        "kind": "permit_update",
        "event": {
            "event_id": eid,
            "occurred_at": at,
            "reported_at": at[:16] + ":05.321+07:00",
            "action": action,
            "permit_type": "ITAS",
            "holder": _resident(int(holder)),
            "valid_until": until,
            "sponsor_id": sponsor,
            "office": "KANIM-BATAM",
        },
    }


def _report(eid: str, at: str, start: str, end: str, holders: list[str]) -> Event:
    return {
        "kind": "sponsor_report",
        "event": {
            "event_id": eid,
            "occurred_at": at,
            "reported_at": at[:16] + ":30.777+07:00",
            "sponsor": {
                "sponsor_id": "SPN-TEST-0001",
                "name": "PT Uji Coba",
                "region": "Kota Batam",
                "office": "KANIM-BATAM",
            },
            "period_start": start,
            "period_end": end,
            "roster": [{"foreigner": _resident(int(h)), "address": "Batam", "job_title": "Welder"} for h in holders],
        },
    }


def _sponsor_rules(events: list[Event]) -> list[tuple[str, str]]:
    truth, withdrawn = ground_truth(events, END)
    assert not [w for w in withdrawn if w["rule_id"] in ENTITY_RULES]
    return _rules_of([t for t in truth if t["rule_id"] in ENTITY_RULES])


def test_reference_sponsor_overdue_and_roster_mismatch() -> None:
    permits = [
        _sponsored("p1", "1", _t("2026-01-10", 10), "GRANTED", "2027-01-09"),
        _sponsored("p2", "2", _t("2026-01-12", 10), "GRANTED", "2027-01-11"),
        _sponsored("p3", "2", _t("2026-03-20", 10), "CANCELLED", "2026-04-05"),
        _extension("v1", _t("2026-01-03", 9), _t("2026-01-03", 9, 1), "2026-03-01"),  # no sponsor: no fact
    ]
    r1 = _report("r1", _t("2026-02-03", 9), "2026-01-01", "2026-01-31", ["1"])  # 2 omitted
    r2 = _report("r2", _t("2026-03-12", 9), "2026-02-01", "2026-02-28", ["1", "2"])  # complete, but late
    r3 = _report("r3", _t("2026-04-06", 9), "2026-03-01", "2026-03-31", ["1", "2"])  # 2's permit cancelled
    events = [*permits, r1, r2, r3]
    # known in January: February is due by 10 March, March by 10 April, April by 10 May (June's end: later)
    assert _sponsor_rules(events) == [
        ("sponsor.overdue", "2026-02"),
        ("sponsor.overdue", "2026-04"),
        ("sponsor.roster_mismatch", "r1"),
        ("sponsor.roster_mismatch", "r3"),
    ]
    two_months = _report("r4", _t("2026-05-05", 9), "2026-04-01", "2026-05-31", ["1"])  # covers April too
    assert ("sponsor.overdue", "2026-04") not in _sponsor_rules([*events, two_months])
    expired = _sponsored("p4", "1", _t("2026-02-20", 10), "EXTENDED", "2026-02-25")  # ends before period_end
    assert ("sponsor.roster_mismatch", "r2") in _sponsor_rules([*events, expired])


def test_reference_sponsor_cases_rules_md_does_not_settle() -> None:
    permit = _sponsored("p1", "1", _t("2026-01-10", 10), "GRANTED", "2027-01-09")
    elsewhere = _sponsored("p2", "1", _t("2026-02-10", 10), "GRANTED", "2027-02-09", sponsor="SPN-TEST-0002")
    with pytest.raises(AmbiguousCase):  # each sponsor's detector sees its own facts only
        ground_truth([permit, elsewhere], END)
    twice = _report("r1", _t("2026-02-03", 9), "2026-01-01", "2026-01-31", ["1", "1"])
    with pytest.raises(AmbiguousCase):
        ground_truth([permit, twice], END)


# ---------------------------------------------------------------- tppo.screening's group indicator

GROUP_SCENARIOS = (
    "group_scam_route",
    "group_job_offer",
    "group_umrah",
    "group_tour",
    "group_short",
    "group_straggler",
    "group_straggler_of_more",
)


def _references(departure: Event) -> list[str]:
    j = departure["departure"]
    return [f"{n}:{j[n + '_reference']}" for n in ("group", "agent", "booking") if j.get(n + "_reference")]


def test_group_departures_give_the_group_indicator_as_rules_md_counts_it() -> None:
    s = sim()
    rules = load_rules()
    window = rules.group_window_ms
    people = by_person(s)
    departures = [e for evs in people.values() for e in evs if e.get("departure")]
    grouped = [e for e in departures if s.scenarios[":".join(who(e))].startswith("group_")]
    assert {s.scenarios[":".join(who(e))].split(":")[0] for e in grouped} == set(GROUP_SCENARIOS)
    for e in grouped:  # valid gateway JSON, like every event
        result = validator("border_crossing")(e, now_ms=FAR_FUTURE_MS, max_skew_ms=SKEW_MS, trusted_clock=True)
        assert result.problems == [], (e["event_id"], result.problems)
    # recomputed from all the events (reported in the order they happened within a reference here)
    by_ref: dict[str, list[Event]] = defaultdict(list)
    for e in departures:
        for ref in _references(e):
            by_ref[ref].append(e)
    gains: set[str] = set()
    for same in by_ref.values():
        for a in same:
            inside = [x for x in same if ms(a["occurred_at"]) - window <= ms(x["occurred_at"]) <= ms(a["occurred_at"])]
            if len({who(x) for x in inside}) >= rules.group_min_travellers:
                gains |= {x["event_id"] for x in inside}
    tppo = {t["window"]: t for t in s.truth if t["rule_id"] == "tppo.screening"}
    assert {w for w, t in tppo.items() if t.get("group")} == gains & set(tppo)
    assert gains <= {e["event_id"] for e in grouped}  # nobody else shares a reference
    for e in grouped:
        scenario, role = s.scenarios[":".join(who(e))].split(":")
        label = tppo.get(e["event_id"])
        if scenario in ("group_scam_route", "group_job_offer") or (
            scenario == "group_straggler_of_more" and role == "member"
        ):
            assert label is not None and label.get("group") is True, (scenario, e["event_id"])
            assert labels_of(s, who(e)) == [label]
        else:  # tour groups, one short of the count, the latecomers
            assert labels_of(s, who(e)) == [], (scenario, role)
    # both kinds occur: alerts the person stage raised (amended) and alerts only the group raises
    alone, _ = ground_truth([{"kind": "border_crossing", "event": e} for e in grouped], s.end)
    raised_by_person_stage = {t["window"] for t in ground_truth_without_groups(grouped, s.end)}
    group_labels = [t for t in alone if t.get("group")]
    assert {t["window"] for t in alone} == {w for w, t in tppo.items() if t.get("group")}
    new = [t for t in group_labels if t["window"] not in raised_by_person_stage]
    amended = [t for t in group_labels if t["window"] in raised_by_person_stage]
    assert len(new) >= 3 and len(amended) >= 3


def ground_truth_without_groups(departures: list[Event], end: datetime) -> list[dict[str, Any]]:
    """The person stage alone: every departure with its references removed."""
    bare = []
    for e in departures:
        e = json.loads(json.dumps(e))
        for name in ("group_reference", "agent_reference", "booking_reference"):
            e["departure"].pop(name, None)
        bare.append({"kind": "border_crossing", "event": e})
    truth, _ = ground_truth(bare, end)
    assert not [t for t in truth if t.get("group")]
    return truth


def test_groups_are_drawn_after_everything_else() -> None:
    """Their event counters come after the rest, but for the unreported whereabouts and the roster_gap
    sponsor, drawn last: the rest of a seed's events and truth are as before them."""
    counters: dict[str, list[int]] = defaultdict(list)
    s = sim()
    gap = next(k for k, v in s.entities.items() if v == "roster_gap")
    for item in s.events:
        e = item["event"]
        scenario = "" if item["kind"] == "sponsor_report" else s.scenarios[":".join(who(e))]
        if scenario.startswith("group_"):
            kind = "group"
        elif scenario in WHEREABOUTS_SCENARIOS or gap in (e.get("sponsor_id"), e.get("sponsor", {}).get("sponsor_id")):
            kind = "last"
        elif scenario in ("sponsored_arrives", "sponsored_gap_arrives") and any(
            p.get("sponsor_id") == gap for p in by_person(s)[who(e)]
        ):
            kind = "last"  # the arrival of a roster_gap worker
        else:
            kind = "rest"
        counters[kind].append(int(e["event_id"].rsplit("-", 1)[1]))
    assert max(counters["rest"]) < min(counters["group"]) <= max(counters["group"]) < min(counters["last"])


def _citizen_departure(
    eid: str,
    at: str,
    rep: str,
    doc: str,
    *,
    base: str = "job_offer",
    checkpoint: str = "TPI-SOEKARNO-HATTA",
    **refs: str,
) -> Event:
    journeys: dict[str, dict[str, Any]] = {
        "job_offer": {  # 2 + 2
            "destination_country": "THA",
            "return_ticket": False,
            "purpose": "TOURISM",
            "job_offer_contact": True,
        },
        "scam_route": {  # 3 + 2 + 2
            "destination_country": "KHM",
            "onward_route": ["SGP", "MYS", "THA"],
            "return_ticket": False,
            "purpose": "TOURISM",
            "job_offer_contact": True,
        },
        "umrah": {"destination_country": "SAU", "return_ticket": True, "purpose": "PILGRIMAGE"},  # 0
        "umrah_new_passport": {  # 2
            "destination_country": "SAU",
            "return_ticket": True,
            "purpose": "PILGRIMAGE",
            "passport_issued_on": "2026-01-01",
        },
    }
    journey = dict(journeys[base])
    journey.setdefault("passport_issued_on", "2019-05-01")
    journey.update({f"{k}_reference": v for k, v in refs.items()})
    event: Event = {
        "event_id": eid,
        "occurred_at": at,
        "reported_at": rep,
        "direction": "DEPARTURE",
        "checkpoint": {"checkpoint_id": checkpoint, "name": checkpoint, "kind": "AIRPORT", "office": "KANIM-X"},
        "traveller": {"nationality": "IDN", "document_type": "PASSPORT", "document_number": doc, "surname": "Uji"},
        "departure": journey,
    }
    return {"kind": "border_crossing", "event": event}


def _tppo(events: list[Event]) -> list[tuple[str, bool]]:
    truth, _ = ground_truth(events, END)
    return sorted((t["window"], bool(t.get("group"))) for t in truth if t["rule_id"] == "tppo.screening")


def test_reference_group_indicator() -> None:
    a = _citizen_departure("d1", _t("2026-01-10", 9), _t("2026-01-10", 9, 1), "C1000001", agent="AGT-1")
    b = _citizen_departure("d2", _t("2026-01-10", 15), _t("2026-01-10", 15, 1), "C1000002", agent="AGT-1")
    # the third, within 24 hours of the first: all three gain the indicator when it is released (4 + 1 = 5)
    c = _citizen_departure("d3", _t("2026-01-11", 8), _t("2026-01-11", 8, 1), "C1000003", agent="AGT-1")
    assert _tppo([a, b, c]) == [("d1", True), ("d2", True), ("d3", True)]
    assert _tppo([a, b]) == []  # one short of group_min_travellers
    # the same person twice counts once
    again = _citizen_departure("d4", _t("2026-01-10", 18), _t("2026-01-10", 18, 1), "C1000002", agent="AGT-1")
    assert _tppo([a, b, again]) == []
    # more than 24 hours after the first: two in every window
    late = _citizen_departure("d3", _t("2026-01-11", 9, 30), _t("2026-01-11", 9, 31), "C1000003", agent="AGT-1")
    assert _tppo([a, b, late]) == []
    # another reference each time: no group; whichever references match, once
    booked = _citizen_departure("d3", _t("2026-01-11", 8), _t("2026-01-11", 8, 1), "C1000003", booking="PNRABC")
    assert _tppo([a, b, booked]) == []
    a2 = _citizen_departure("d1", _t("2026-01-10", 9), _t("2026-01-10", 9, 1), "C1000001", agent="AGT-1", group="G")
    b2 = _citizen_departure("d2", _t("2026-01-10", 15), _t("2026-01-10", 15, 1), "C1000002", agent="AGT-1", group="G")
    c2 = _citizen_departure("d3", _t("2026-01-11", 8), _t("2026-01-11", 8, 1), "C1000003", group="G")
    assert _tppo([a2, b2, c2]) == [("d1", True), ("d2", True), ("d3", True)]
    # base at the threshold already: the same alert, amended
    scam = _citizen_departure("d2", _t("2026-01-10", 15), _t("2026-01-10", 15, 1), "C1000002", base="scam_route")
    assert _tppo([scam]) == [("d2", False)]
    scam_in_group = _citizen_departure(
        "d2", _t("2026-01-10", 15), _t("2026-01-10", 15, 1), "C1000002", base="scam_route", agent="AGT-1"
    )
    assert _tppo([a, scam_in_group, c]) == [("d1", True), ("d2", True), ("d3", True)]


def test_reference_an_ordinary_tour_group_raises_nothing() -> None:
    pilgrims = [
        _citizen_departure(
            f"u{i}",
            _t("2026-02-01", 9, 10 * i),
            _t("2026-02-01", 9, 10 * i + 1),
            f"C200000{i}",
            base="umrah_new_passport" if i % 2 else "umrah",
            agent="AGT-UMRAH",
            group="GRP-UMRAH-1",
            booking="UMRAHX",
        )
        for i in range(6)
    ]
    assert _tppo(pilgrims) == []  # 0 or 2, plus 1


def test_reference_group_order_of_release() -> None:
    a = _citizen_departure("d1", _t("2026-01-10", 9), _t("2026-01-10", 9, 1), "C1000001", agent="AGT-1")
    c = _citizen_departure("d3", _t("2026-01-10", 11), _t("2026-01-10", 11, 1), "C1000003", agent="AGT-1")
    # reported last but happened in between: it completes the windows of the departures after it too
    b = _citizen_departure("d2", _t("2026-01-10", 10), _t("2026-01-10", 10, 2), "C1000002", agent="AGT-1")
    assert _tppo([a, b, c]) == [("d1", True), ("d2", True), ("d3", True)]
    # ... and when only a window that ends after it completes the count (another reading than counting
    # only the windows ending at the departure released): never generated
    b_late = _citizen_departure("d2", _t("2026-01-10", 10), _t("2026-01-10", 12), "C1000002", agent="AGT-1")
    with pytest.raises(AmbiguousCase):
        ground_truth([a, b_late, c], END)
    exactly = _citizen_departure("d3", _t("2026-01-11", 9), _t("2026-01-11", 9, 1), "C1000003", agent="AGT-1")
    with pytest.raises(AmbiguousCase):  # exactly group_window_hours apart
        ground_truth([a, b, exactly], END)
    # previous_delay after an alert only the group stage raises: does the person stage know it?
    onward = _citizen_departure(
        "d5", _t("2026-01-20", 9), _t("2026-01-20", 9, 1), "C1000003", base="umrah", checkpoint="TPI-BATAM-CENTRE"
    )
    with pytest.raises(AmbiguousCase):
        ground_truth([a, b, c, onward], END)


# ---------------------------------------------------------------- whereabouts.unknown

WHEREABOUTS = "whereabouts.unknown"


def _whereabouts(events: list[Event], end: datetime = END) -> tuple[list[tuple[str, str]], list[str]]:
    """((window, office) of the standing whereabouts.unknown labels, windows of the withdrawn ones)."""
    truth, withdrawn = ground_truth(events, end)
    return (
        sorted((t["window"], t["office"]) for t in truth if t["rule_id"] == WHEREABOUTS),
        sorted(w["window"] for w in withdrawn if w["rule_id"] == WHEREABOUTS),
    )


def _at_hotel(eid: str, at: str, rep: str, day: str, expected: str | None, office: str, **kw: Any) -> Event:
    """A guest event of _person() at a hotel of ``office`` (EST-<office>)."""
    item = _check_in(eid, at, rep, day, expected or day, **kw)
    item["event"]["establishment"] = {
        "establishment_id": f"EST-{office}",
        "name": f"Hotel {office}",
        "region": "Kota Batam",
        "office": office,
    }
    if expected is None:
        del item["event"]["expected_check_out_date"]
    return item


def _silent_tourist(back_on: str | None = "2026-01-25") -> list[Event]:
    """Arrives at Batam Centre on 5 Jan, three nights at a hotel (out on the 8th), then nobody reports
    them: W = 8 Jan, the alert at 23 Jan 00:00 WIB; back at another hotel on ``back_on``; leaves 30 Jan."""
    events = [
        _crossing("a1", _t("2026-01-05", 10), "ARRIVAL", "2026-02-03", rep=_t("2026-01-05", 10, 1)),
        _at_hotel("c1", _t("2026-01-05", 13), _t("2026-01-05", 14), "2026-01-05", "2026-01-08", "KANIM-A"),
        _at_hotel(
            "o1", _t("2026-01-08", 9), _t("2026-01-08", 10), "2026-01-05", "2026-01-08", "KANIM-A", action="CHECK_OUT"
        ),
        _crossing("d1", _t("2026-01-30", 10), "DEPARTURE", rep=_t("2026-01-30", 10, 1)),
    ]
    events[2]["event"]["check_out_date"] = "2026-01-08"
    if back_on is not None:
        events.append(_at_hotel("c2", _t(back_on, 15), _t(back_on, 16), back_on, "2026-01-30", "KANIM-B"))
    return events


def test_reference_whereabouts_of_a_silent_tourist() -> None:
    # one alert, window W = the check-out day, office of the sighting that covers it (the hotel's)
    assert _whereabouts(_silent_tourist()) == ([("2026-01-08", "KANIM-A")], [])
    truth, _ = ground_truth(_silent_tourist(), END)
    assert [t for t in truth if t["rule_id"] == WHEREABOUTS] == [
        {
            "rule_id": WHEREABOUTS,
            "subject": {"nationality": "AUS", "document_number": "PA1234567"},
            "window": "2026-01-08",
            "office": "KANIM-A",
        }
    ]
    # back at a hotel on day W + 14 (reported then): no silence of more than 14 days
    assert _whereabouts(_silent_tourist("2026-01-22")) == ([], [])
    # leaving before the deadline: no alert; leaving after it does not withdraw it
    gone = _silent_tourist(None)
    gone[3] = _crossing("d1", _t("2026-01-22", 20), "DEPARTURE", rep=_t("2026-01-22", 20, 1))
    assert _whereabouts(gone) == ([], [])
    assert _whereabouts(_silent_tourist(None)) == ([("2026-01-08", "KANIM-A")], [])
    # nothing but the arrival: W is the arrival day, the checkpoint's office
    arrival_only = [_silent_tourist(None)[0], _silent_tourist(None)[3]]
    assert _whereabouts(arrival_only) == ([("2026-01-05", "KANIM-BATAM")], [])
    # the deadline after the end of the story: not yet
    assert _whereabouts(_silent_tourist(None), datetime(2026, 1, 22, 16, tzinfo=UTC)) == ([], [])
    assert _whereabouts(_silent_tourist(None), datetime(2026, 1, 22, 17, 1, tzinfo=UTC)) == (
        [("2026-01-08", "KANIM-A")],
        [],
    )


def test_reference_whereabouts_open_stays_and_corrections() -> None:
    arrive = _crossing("a1", _t("2026-01-05", 10), "ARRIVAL", "2026-03-05", rep=_t("2026-01-05", 10, 1))
    leave = _crossing("d1", _t("2026-02-20", 10), "DEPARTURE", rep=_t("2026-02-20", 10, 1))
    # no CHECK_OUT: the hotel vouches for the stay up to its expected check-out date
    open_stay = _at_hotel("c1", _t("2026-01-05", 13), _t("2026-01-05", 14), "2026-01-05", "2026-01-20", "KANIM-A")
    assert _whereabouts([arrive, open_stay, leave]) == ([("2026-01-20", "KANIM-A")], [])
    # a check-out on the 10th takes the vouching back: W = 10 Jan, due 25 Jan (known before it)
    out = _at_hotel(
        "o1", _t("2026-01-10", 9), _t("2026-01-10", 10), "2026-01-05", "2026-01-20", "KANIM-A", action="CHECK_OUT"
    )
    out["event"]["check_out_date"] = "2026-01-10"
    assert _whereabouts([arrive, open_stay, out, leave]) == ([("2026-01-10", "KANIM-A")], [])
    # no expected date: the check-in date only
    bare = _at_hotel("c1", _t("2026-01-05", 13), _t("2026-01-05", 14), "2026-01-05", None, "KANIM-A")
    assert _whereabouts([arrive, bare, leave]) == ([("2026-01-05", "KANIM-A")], [])
    # a cancelled check-in is no sighting (the arrival, the same day, is then the last one)
    cancel = _at_hotel(
        "x1", _t("2026-01-05", 13), _t("2026-01-05", 18), "2026-01-05", "2026-01-20", "KANIM-A", action="CANCEL"
    )
    cancel["event"]["corrects_event_id"] = "c1"
    assert _whereabouts([arrive, open_stay, cancel, leave]) == ([("2026-01-05", "KANIM-BATAM")], [])
    # the same day from the checkpoint and the hotel: the greatest event id's office ("c1" > "a1")
    assert _whereabouts([arrive, bare, leave])[0] == [("2026-01-05", "KANIM-A")]
    early = _crossing("z1", _t("2026-01-05", 10), "ARRIVAL", "2026-03-05", rep=_t("2026-01-05", 10, 1))
    assert _whereabouts([early, bare, leave])[0] == [("2026-01-05", "KANIM-BATAM")]


def test_reference_whereabouts_late_hotel_report_inside_the_silence() -> None:
    # a homestay of the 18th-20th (inside the silence, W + 10) typed in on the 24th, after the alert
    base = _silent_tourist()
    late = _at_hotel("h1", _t("2026-01-18", 15), _t("2026-01-24", 9), "2026-01-18", None, "KANIM-C")
    standing, withdrawn = _whereabouts([*base, late])
    assert standing == [] and withdrawn == ["2026-01-08"]
    # the last day of the silence, W + 14, is inside it too
    on_the_22nd = _at_hotel("h1", _t("2026-01-22", 15), _t("2026-01-23", 9), "2026-01-22", None, "KANIM-C")
    assert _whereabouts([*base, on_the_22nd]) == ([], ["2026-01-08"])
    # a late report of W + 15 or later: the silence was real, the alert stands
    after = _at_hotel("h1", _t("2026-01-23", 15), _t("2026-01-24", 9), "2026-01-23", None, "KANIM-C")
    assert _whereabouts([*base, after]) == ([("2026-01-08", "KANIM-A")], [])
    # a late report of a day before W changes nothing
    before = _at_hotel("h1", _t("2026-01-07", 15), _t("2026-01-24", 9), "2026-01-07", None, "KANIM-C")
    assert _whereabouts([*base, before]) == ([("2026-01-08", "KANIM-A")], [])
    # withdrawn, then silent again from the homestay's day: a new alert 15 days on, if still here
    stays_on = [e for e in base if e["event"]["event_id"] not in ("c2", "d1")]
    assert _whereabouts([*stays_on, late]) == ([("2026-01-18", "KANIM-C")], ["2026-01-08"])


def test_reference_whereabouts_cases_rules_md_does_not_settle() -> None:
    base = _silent_tourist(None)
    # reported after the alert, begins inside the silence, but its expected check-out lies after it
    spanning = _at_hotel("h1", _t("2026-01-20", 15), _t("2026-01-24", 9), "2026-01-20", "2026-01-27", "KANIM-C")
    with pytest.raises(AmbiguousCase):
        ground_truth([*base, spanning], END)
    # a sighting inside the silence reported after W has moved on already
    moved_on = _at_hotel("c2", _t("2026-01-24", 15), _t("2026-01-24", 16), "2026-01-24", "2026-01-26", "KANIM-B")
    late = _at_hotel("h1", _t("2026-01-18", 15), _t("2026-01-25", 9), "2026-01-18", None, "KANIM-C")
    with pytest.raises(AmbiguousCase):
        ground_truth([*base, moved_on, late], END)
    # a new W whose deadline has passed by the time it is known
    very_late = _at_hotel("h1", _t("2026-01-18", 15), _t("2026-02-03", 9), "2026-01-18", None, "KANIM-C")
    stays_on = [e for e in base if e["event"]["event_id"] != "d1"]
    with pytest.raises(AmbiguousCase):
        ground_truth([*stays_on, very_late], END)


def _worker_arrives(day: str, who: int = 1) -> Event:
    """A sponsored worker (the _report helpers' _resident) arriving at Soekarno-Hatta on an ITAS."""
    return {
        "kind": "border_crossing",
        "event": {
            "event_id": f"a-{who}",
            "occurred_at": _t(day, 10),
            "reported_at": _t(day, 10)[:16] + ":07.123+07:00",
            "direction": "ARRIVAL",
            "checkpoint": {
                "checkpoint_id": "TPI-SOEKARNO-HATTA",
                "name": "Soekarno-Hatta",
                "kind": "AIRPORT",
                "office": "KANIM-SOEKARNO-HATTA",
            },
            "traveller": _resident(who),
            "arrival": {"permit_type": "ITAS", "authorised_until": "2029-01-01", "declared_address": "Mess, Batam"},
        },
    }


def test_reference_whereabouts_of_a_roster_listed_worker() -> None:
    """A roster entry accounts for its person until the sponsor's next report is due, from when it comes."""
    arrive = _worker_arrives("2026-01-20")
    permit = _sponsored("p1", "1", _t("2026-01-22", 10), "GRANTED", "2029-01-01")
    january = _report("r1", _t("2026-02-03", 9), "2026-01-01", "2026-01-31", ["1"])  # before 4 Feb 00:00
    until_14_feb = datetime(2026, 2, 14, 16, tzinfo=UTC)  # 23:00 WIB
    # listed: accounted for until 10 March (the February report's due date), before the arrival's silence ended
    assert _whereabouts([arrive, permit, january], until_14_feb) == ([], [])
    # left off the roster: nobody has seen them since the arrival
    left_off = _report("r1", _t("2026-02-03", 9), "2026-01-01", "2026-01-31", [])
    assert _whereabouts([arrive, permit, left_off], until_14_feb) == ([("2026-01-20", "KANIM-SOEKARNO-HATTA")], [])
    # the same roster reported on 6 Feb, after the alert: it covers to 10 March, past the silence (20 Jan to
    # 3 Feb), so the person resurfaced after it and the alert stands
    late = _report("r1", _t("2026-02-06", 9), "2026-01-01", "2026-01-31", ["1"])
    assert _whereabouts([arrive, permit, late], until_14_feb) == ([("2026-01-20", "KANIM-SOEKARNO-HATTA")], [])
    # listed on every monthly roster: never silent
    february = _report("r2", _t("2026-03-04", 9), "2026-02-01", "2026-02-28", ["1"])
    until_14_apr = datetime(2026, 4, 14, 16, tzinfo=UTC)
    assert _whereabouts([arrive, permit, january, february], until_14_apr) == ([], [])
    # left off February's roster: silent from 10 March, the due date January's entry covered to
    february_without = _report("r2", _t("2026-03-04", 9), "2026-02-01", "2026-02-28", [])
    assert _whereabouts([arrive, permit, january, february_without], until_14_apr) == (
        [("2026-03-10", "KANIM-BATAM")],
        [],
    )
    # living at a mess whose check-in vouches for the stay to the permit's end: accounted for throughout
    mess = _check_in("m1", _t("2026-01-21", 15), _t("2026-01-21", 16), "2026-01-21", "2029-01-01")
    mess["event"]["guest"] = _resident(1)
    assert _whereabouts([arrive, permit, mess, january, february]) == ([], [])
    # a worker never seen crossing is not known to be in the country
    assert _whereabouts([permit, january, february]) == ([], [])


def _by_subject(labels: list[dict[str, Any]], person: tuple[str, str]) -> list[dict[str, Any]]:
    subject = {"nationality": person[0], "document_number": person[1]}
    return [t for t in labels if t["rule_id"] == WHEREABOUTS and t["subject"] == subject]


def test_whereabouts_in_the_simulation() -> None:
    s = sim()  # simulate(90, 500, seed=1)
    standing = [t for t in s.truth if t["rule_id"] == WHEREABOUTS]
    assert len(standing) >= 20
    people = by_person(s)
    # tourists at a villa for 16-22 days after their hotels: one alert each, W = the last check-out day
    villa = people_in(s, "whereabouts_villa")
    assert len(villa) == 10
    end_ms = int(s.end.timestamp() * 1000)
    for person in villa:
        [label] = _by_subject(s.truth, person)
        assert _by_subject(s.withdrawn, person) == []
        moments = [(ms(e["occurred_at"]), e) for e in people[person]] + [(end_ms, {})]  # (stories cut at the end)
        moments.sort(key=lambda m: m[0])
        before_the_villa = [  # the check-out after which nothing happens for more than 15 days
            (e["check_out_date"], e["establishment"]["office"])
            for (occurred, e), (after, _) in itertools.pairwise(moments)
            if e.get("action") == "CHECK_OUT" and after - occurred > 15 * DAY_MS
        ]
        assert [(label["window"], label["office"])] == before_the_villa
    # the homestay typed in after the alert: raised, then withdrawn; nothing stands
    late = people_in(s, "whereabouts_late_register")
    assert len(late) == 2
    for person in late:
        assert _by_subject(s.truth, person) == [] and len(_by_subject(s.withdrawn, person)) == 1
    # moving between reporting hotels, or living at a mess that vouches for the stay: never unaccounted for
    quiet = ("normal", "leaves_last_week", "frequent_visitor", "itas_worker", "voa_extension", "hotel_late")
    for scenario in quiet:
        assert people_in(s, scenario)
        for person in people_in(s, scenario):
            assert _by_subject(s.truth + s.withdrawn, person) == [], (scenario, person)
    # roster_gap: the worker left off a roster goes silent after the due date its last listing covered to;
    # the colleagues, listed on every roster, are accounted for from their first listing on
    reports = [e["event"] for e in s.events if e["kind"] == "sponsor_report"]
    [gap] = people_in(s, "sponsored_gap_arrives")
    sponsor = next(e["sponsor_id"] for e in people[gap] if e.get("sponsor_id"))
    mine = [r for r in reports if r["sponsor"]["sponsor_id"] == sponsor]
    covers = {roster_covers(r["period_end"]) for r in mine}
    colleagues = {who({"guest": x["foreigner"]}) for r in mine for x in r["roster"]} - {gap}
    assert {t["window"] for t in _by_subject(s.truth, gap)} & covers
    for colleague in colleagues:
        assert not {t["window"] for t in _by_subject(s.truth, colleague)} & covers


def test_whereabouts_recomputed_midnight_by_midnight() -> None:
    """Independently, on whole simulations: at every midnight, from the events reported before it."""
    silent = load_rules().whereabouts_silent_days
    for s in (sim(), simulate(days=75, travellers=400, seed=11, start=date(2026, 3, 2))):
        end_ms = int(s.end.timestamp() * 1000)
        start = wib_date(ms(s.events[0]["event"]["reported_at"]))
        midnights = [wib_midnight(start + timedelta(days=i)) for i in range(120)]
        sightings: dict[tuple[str, str], list[tuple[int, str, Event]]] = defaultdict(list)
        for item in s.events:
            e = item["event"]
            if item["kind"] == "sponsor_report":
                for x in e["roster"]:
                    sightings[who({"guest": x["foreigner"]})].append((ms(e["reported_at"]), "roster", e))
            else:
                sightings[who(e)].append((ms(e["reported_at"]), item["kind"], e))
        expected: set[tuple[str, str, str, str]] = set()
        gone: set[tuple[str, str, str]] = set()
        for person, items in sightings.items():
            if person[0] == "IDN" or not any(kind == "border_crossing" for _, kind, _ in items):
                continue

            def at(t: int, items: list[tuple[int, str, Event]] = items) -> tuple[str, str, bool]:
                known = [(kind, e) for rep, kind, e in items if rep < t]
                crossings = [e for kind, e in known if kind == "border_crossing"]
                arrivals = [e for e in crossings if e["direction"] == "ARRIVAL"]
                cancelled = {e["corrects_event_id"] for kind, e in known if e.get("action") == "CANCEL"}
                out_at = {e["establishment"]["establishment_id"] for kind, e in known if e.get("action") == "CHECK_OUT"}
                seen: list[tuple[str, str, str]] = []  # day, id, office
                if arrivals:
                    a = max(arrivals, key=lambda e: ms(e["occurred_at"]))
                    seen.append((wib_date(ms(a["occurred_at"])).isoformat(), a["event_id"], a["checkpoint"]["office"]))
                for kind, e in known:
                    if kind == "roster":
                        seen.append((roster_covers(e["period_end"]), e["event_id"] + "|", e["sponsor"]["office"]))
                    elif e.get("action") == "CHECK_OUT":
                        seen.append((e["check_out_date"], e["event_id"], e["establishment"]["office"]))
                    elif e.get("action") == "CHECK_IN" and e["event_id"] not in cancelled:
                        day = e["check_in_date"]
                        if e["establishment"]["establishment_id"] not in out_at:
                            day = max(day, e.get("expected_check_out_date") or day)
                        seen.append((day, e["event_id"], e["establishment"]["office"]))
                w, _, office = max(seen)
                here = max(crossings, key=lambda e: ms(e["occurred_at"]))["direction"] == "ARRIVAL"
                return w, office, here

            for m in midnights:
                if m >= end_ms or m <= min(rep for rep, kind, _ in items if kind == "border_crossing"):
                    continue
                w, office, here = at(m)
                if here and m == wib_midnight(date.fromisoformat(w) + timedelta(days=silent + 1)):
                    # withdrawn by a sighting reported later inside (W, W + silent]
                    last = (date.fromisoformat(w) + timedelta(days=silent)).isoformat()
                    later = [rep for rep, _, _ in items if m < rep < end_ms and w < at(rep + 1)[0] <= last]
                    if later:
                        gone.add((*person, w))
                    else:
                        expected.add((*person, w, office))
        got = {
            (t["subject"]["nationality"], t["subject"]["document_number"], t["window"], t["office"])
            for t in s.truth
            if t["rule_id"] == WHEREABOUTS
        }
        assert got == expected
        assert {
            (w["subject"]["nationality"], w["subject"]["document_number"], w["window"])
            for w in s.withdrawn
            if w["rule_id"] == WHEREABOUTS
        } == gone
        assert len(expected) >= 20 and gone
