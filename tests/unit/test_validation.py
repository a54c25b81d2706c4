"""Client JSON to contract records: valid samples pass, and every problem names its field and says what is wrong."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.samples import SampleFactory
from schemas.codec import Codec
from schemas.validation import INGESTED_KINDS, Validated, Validator

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
TODAY = date(2026, 3, 10)
SKEW_MS = 5 * 60 * 1000
Event = dict[str, Any]


@cache
def validator(kind: str) -> Validator:
    return Validator(kind)


def validate(kind: str, value: Any, *, trusted_clock: bool = False, now_ms: int = NOW_MS) -> Validated:
    return validator(kind)(value, now_ms=now_ms, max_skew_ms=SKEW_MS, trusted_clock=trusted_clock)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def days(text: str) -> int:
    return (date.fromisoformat(text) - date(1970, 1, 1)).days


def factory(seed: int = 7) -> SampleFactory:
    return SampleFactory(seed=seed, today=TODAY)


SAMPLES: dict[str, Callable[[SampleFactory], tuple[str, Event]]] = {
    "hotel_check_in": lambda f: ("hotel_guest_event", f.hotel_check_in()),
    "foreigner_arrival": lambda f: ("border_crossing", f.arrival()),
    "citizen_departure": lambda f: ("border_crossing", f.citizen_departure()),
    "risky_citizen_departure": lambda f: ("border_crossing", f.citizen_departure(risky=True)),
    "sponsor_report": lambda f: ("sponsor_report", f.sponsor_report()),
    "permit_extension": lambda f: ("permit_update", f.permit_extension()),
    "agency_report": lambda f: ("agency_report", f.agency_report()),
}


def sample(name: str, seed: int = 7) -> tuple[str, Event]:
    return SAMPLES[name](factory(seed))


# ---------------------------------------------------------------- valid input


def test_samples_cover_every_ingested_kind() -> None:
    assert {sample(name)[0] for name in SAMPLES} == set(INGESTED_KINDS)


@pytest.mark.parametrize("name", SAMPLES)
def test_a_valid_sample_passes_and_encodes(name: str) -> None:
    kind, event = sample(name)
    result = validate(kind, event)
    assert result.problems == []
    assert result.ok
    record = result.record
    assert record is not None
    assert record["event_id"] == event["event_id"]
    assert record["occurred_at"] == ms(event["occurred_at"])
    assert record["reported_at"] == NOW_MS
    assert record["source"] == ""
    record["source"] = "test-source"
    codec = Codec()
    assert codec.decode(codec.encode(kind, record))[0] == kind


@pytest.mark.parametrize("name", SAMPLES)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_samples_are_valid_for_any_seed(name: str, seed: int) -> None:
    kind, event = sample(name, seed)
    assert validate(kind, event).problems == []


def test_validation_does_not_modify_the_input() -> None:
    kind, event = sample("risky_citizen_departure")
    event["departure"]["onward_route"] = ["sgp", "mys"]
    event["traveller"]["document_number"] = "a 123-456"
    event["reported_at"] = "2026-03-10T11:00:00Z"
    before = copy.deepcopy(event)
    validate(kind, event)
    assert event == before


def test_a_missing_event_id_is_left_for_the_gateway_to_derive() -> None:
    kind, event = sample("hotel_check_in")
    del event["event_id"]
    result = validate(kind, event)
    assert result.problems == []
    assert result.record is not None and result.record["event_id"] == ""


def test_only_kinds_that_sources_send_have_a_validator() -> None:
    with pytest.raises(KeyError, match="'alert' is not a kind that sources may send"):
        Validator("alert")


# ---------------------------------------------------------------- invalid input, one rule at a time

Edit = Callable[[Event], None]


def _set(path: str, value: Any) -> Edit:
    """An edit that sets ``value`` at a dotted path (``roster.1.foreigner``)."""

    def edit(event: Event) -> None:
        *parents, last = path.split(".")
        target: Any = event
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return edit


def _del(path: str) -> Edit:
    def edit(event: Event) -> None:
        *parents, last = path.split(".")
        target: Any = event
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        del target[last]

    return edit


def _rename(path: str, new: str) -> Edit:
    def edit(event: Event) -> None:
        *parents, last = path.split(".")
        target: Any = event
        for part in parents:
            target = target[part]
        target[new] = target.pop(last)

    return edit


def _all(*edits: Edit) -> Edit:
    def edit(event: Event) -> None:
        for e in edits:
            e(event)

    return edit


COUNTRY = "is not an ISO 3166-1 alpha-3 country code"
ACTIONS = "CHECK_IN, CHECK_OUT, CORRECTION, CANCEL"

# (sample, edit, [(field, regex of the problem)]) -- the problems expected, exactly
BAD: list[Any] = [
    pytest.param(
        "hotel_check_in", _del("check_in_date"), [("check_in_date", "^is required$")], id="missing-required-field"
    ),
    pytest.param(
        "hotel_check_in", _del("guest.surname"), [("guest.surname", "^is required$")], id="missing-nested-field"
    ),
    pytest.param(
        "hotel_check_in",
        _rename("guest.nationality", "nationalty"),
        [
            ("guest.nationality", "^is required$"),
            ("guest.nationalty", r"^is not a field of this record \(fields: .*\bnationality\b"),
        ],
        id="unknown-field-typo",
    ),
    pytest.param(
        "hotel_check_in",
        _set("roomnumber", "101"),
        [("roomnumber", r"is not a field of this record \(fields: .*\broom\b")],
        id="unknown-top-level-field",
    ),
    pytest.param(
        "hotel_check_in",
        _set("room", 101),
        [("room", "^expected a string, got a number$")],
        id="wrong-type-number-for-string",
    ),
    pytest.param(
        "hotel_check_in",
        _set("guest", ["SGP"]),
        [("guest", "^expected an object, got an array$")],
        id="wrong-type-array-for-record",
    ),
    pytest.param(
        "agency_report",
        _all(_set("location.latitude", "-7.5"), _set("location.longitude", "112.6")),
        [
            ("location.latitude", "^expected a finite number, got a string$"),
            ("location.longitude", "^expected a finite number, got a string$"),
        ],
        id="wrong-type-string-for-number",
    ),
    pytest.param(
        "citizen_departure",
        _set("departure.return_ticket", "yes"),
        [("departure.return_ticket", "^expected true or false, got a string$")],
        id="wrong-type-string-for-boolean",
    ),
    pytest.param(
        "hotel_check_in", _set("action", "CHECKIN"), [("action", f"^'CHECKIN' is not one of {ACTIONS}$")], id="bad-enum"
    ),
    pytest.param(
        "hotel_check_in",
        _set("guest.document_type", "ID_CARD"),
        [("guest.document_type", "'ID_CARD' is not one of PASSPORT, ")],
        id="bad-nested-enum",
    ),
    pytest.param(
        "hotel_check_in",
        _set("check_in_date", "2026-02-30"),
        [("check_in_date", "^'2026-02-30' is not a date YYYY-MM-DD$")],
        id="bad-date-no-such-day",
    ),
    pytest.param(
        "hotel_check_in",
        _set("check_in_date", "10/03/2026"),
        [("check_in_date", "is not a date YYYY-MM-DD")],
        id="bad-date-format",
    ),
    pytest.param(
        "hotel_check_in",
        _set("guest.date_of_birth", "1890-01-01"),
        [("guest.date_of_birth", "must lie between 1900-01-01 and today")],
        id="date-of-birth-too-early",
    ),
    pytest.param(
        "hotel_check_in",
        _set("occurred_at", "2026-03-10T08:00:00"),
        [("occurred_at", "has no UTC offset")],
        id="naive-timestamp",
    ),
    pytest.param(
        "hotel_check_in",
        _set("occurred_at", "yesterday"),
        [("occurred_at", "is not an ISO 8601 timestamp")],
        id="not-a-timestamp",
    ),
    pytest.param(
        "hotel_check_in",
        _set("occurred_at", "1999-12-31T23:59:59Z"),
        [("occurred_at", "before the year 2000")],
        id="timestamp-before-2000",
    ),
    pytest.param(
        "hotel_check_in",
        _set("occurred_at", "2026-03-10T13:00:00Z"),
        [("occurred_at", "^lies 3600 s after it was reported$")],
        id="occurred-in-the-future",
    ),
    pytest.param(
        "hotel_check_in",
        _set("guest.nationality", "XYZ"),
        [("guest.nationality", f"'XYZ' {COUNTRY}")],
        id="non-iso-country",
    ),
    pytest.param(
        "hotel_check_in",
        _set("guest.nationality", "SG"),
        [("guest.nationality", f"'SG' {COUNTRY}")],
        id="alpha-2-country",
    ),
    pytest.param(
        "hotel_check_in",
        _set("guest.nationality", "IDN"),
        [("guest.nationality", "Indonesian citizen; only foreigners are reported")],
        id="idn-guest",
    ),
    pytest.param(
        "hotel_check_in",
        _set("guest.document_number", "A-1"),
        [("guest.document_number", "must be 3 to 20 letters and digits")],
        id="short-document-number",
    ),
    pytest.param(
        "hotel_check_in",
        _set("action", "CHECK_OUT"),
        [("check_out_date", "is required for CHECK_OUT")],
        id="check-out-without-date",
    ),
    pytest.param(
        "hotel_check_in",
        _set("action", "CORRECTION"),
        [("corrects_event_id", "is required for CORRECTION")],
        id="correction-without-target",
    ),
    pytest.param(
        "hotel_check_in",
        _set("action", "CANCEL"),
        [("corrects_event_id", "is required for CANCEL")],
        id="cancel-without-target",
    ),
    pytest.param(
        "hotel_check_in",
        _set("corrects_event_id", "chk-0"),
        [("corrects_event_id", "must be empty for CHECK_IN")],
        id="check-in-with-target",
    ),
    pytest.param(
        "hotel_check_in",
        _all(_set("action", "CHECK_OUT"), _set("check_in_date", "2026-03-08"), _set("check_out_date", "2026-03-07")),
        [("check_out_date", "^2026-03-07 is before check_in_date 2026-03-08$")],
        id="check-out-before-check-in",
    ),
    pytest.param(
        "hotel_check_in",
        _all(_set("check_in_date", "2026-03-08"), _set("expected_check_out_date", "2026-03-01")),
        [("expected_check_out_date", "2026-03-01 is before check_in_date 2026-03-08")],
        id="expected-check-out-before-check-in",
    ),
    pytest.param(
        "foreigner_arrival",
        _del("arrival"),
        [("arrival", "is required for a foreigner's ARRIVAL")],
        id="foreign-arrival-without-details",
    ),
    pytest.param(
        "foreigner_arrival",
        _set("arrival.authorised_until", "2026-03-01"),
        [("arrival.authorised_until", "lies before the arrival itself")],
        id="authorised-until-before-arrival",
    ),
    pytest.param(
        "foreigner_arrival",
        _set("traveller.nationality", "IDN"),
        [("arrival", "is only for a foreigner's ARRIVAL")],
        id="arrival-details-on-a-citizen",
    ),
    pytest.param(
        "citizen_departure",
        _set("traveller.nationality", "SGP"),
        [("departure", r"is only for a citizen's \(IDN\) DEPARTURE")],
        id="departure-details-on-a-foreigner",
    ),
    pytest.param(
        "risky_citizen_departure",
        _set("departure.onward_route", ["SGP", "XX1", "THA"]),
        [("departure.onward_route[1]", f"'XX1' {COUNTRY}")],
        id="bad-onward-route-code",
    ),
    pytest.param(
        "risky_citizen_departure",
        _set("departure.onward_route", ["SGP", 7]),
        [("departure.onward_route[1]", "expected a string, got a number")],
        id="onward-route-wrong-type",
    ),
    pytest.param(
        "risky_citizen_departure",
        _set("departure.destination_country", "KH"),
        [("departure.destination_country", f"'KH' {COUNTRY}")],
        id="bad-destination-country",
    ),
    pytest.param(
        "risky_citizen_departure",
        _set("departure.passport_issued_on", "2026-03-11"),
        [("departure.passport_issued_on", "lies after the departure")],
        id="passport-issued-after-departure",
    ),
    pytest.param(
        "sponsor_report",
        _set("roster.1.foreigner.nationality", "XYZ"),
        [("roster[1].foreigner.nationality", f"'XYZ' {COUNTRY}")],
        id="roster-item-bad-country",
    ),
    pytest.param(
        "sponsor_report",
        _set("roster.1.foreigner.nationality", 62),
        [("roster[1].foreigner.nationality", "expected a string, got a number")],
        id="roster-item-wrong-type",
    ),
    pytest.param(
        "sponsor_report",
        _del("roster.2.address"),
        [("roster[2].address", "^is required$")],
        id="roster-item-missing-field",
    ),
    pytest.param(
        "sponsor_report",
        _set("roster.0.foreigner.nationality", "IDN"),
        [("roster[0].foreigner.nationality", "Indonesian citizen")],
        id="roster-item-citizen",
    ),
    pytest.param(
        "sponsor_report",
        _set("period_end", "2025-01-01"),
        [("period_end", "is before period_start")],
        id="period-end-before-start",
    ),
    pytest.param(
        "permit_extension",
        _set("valid_from", "2026-12-01"),
        [("valid_until", "is before valid_from 2026-12-01")],
        id="permit-valid-until-before-from",
    ),
    pytest.param(
        "agency_report",
        _set("location.latitude", 91.5),
        [("location.latitude", "^must lie between -90 and 90$")],
        id="latitude-out-of-range",
    ),
    pytest.param(
        "agency_report",
        _set("location.longitude", -180.5),
        [("location.longitude", "^must lie between -180 and 180$")],
        id="longitude-out-of-range",
    ),
    pytest.param(
        "agency_report",
        _set("location.longitude", None),
        [("location", "latitude and longitude go together")],
        id="latitude-without-longitude",
    ),
    pytest.param(
        "agency_report",
        _set("description", "   "),
        [("description", "^must not be empty$")],
        id="blank-required-string",
    ),
    pytest.param(
        "agency_report", _set("description", "x" * 4001), [("description", "at most 4000")], id="overlong-string"
    ),
    pytest.param(
        "agency_report",
        _set("event_id", "e" * 129),
        [("event_id", "longer than 128 characters")],
        id="overlong-event-id",
    ),
]


@pytest.mark.parametrize(("name", "edit", "expected"), BAD)
def test_a_bad_input_is_reported_at_its_field(name: str, edit: Edit, expected: list[tuple[str, str]]) -> None:
    kind, event = sample(name)
    edit(event)
    result = validate(kind, event)
    got = sorted((p.field, p.problem) for p in result.problems)
    assert [field for field, _ in got] == sorted(field for field, _ in expected), got
    for (field, problem), (_, pattern) in zip(got, sorted(expected), strict=True):
        assert re.search(pattern, problem), f"{field}: {problem!r} does not match {pattern!r}"
    assert not result.ok


def test_a_body_that_is_not_an_object() -> None:
    result = validate("hotel_guest_event", [sample("hotel_check_in")[1]])
    assert [(p.field, p.problem) for p in result.problems] == [("<body>", "expected an object, got an array")]
    assert result.record is None


@pytest.mark.parametrize(
    ("name", "edit", "field", "problem"),
    [
        pytest.param(
            "agency_report",
            _set("location.latitude", "-7.5"),
            "location.latitude",
            "expected a finite number, got a string",
            id="latitude-as-string",
        ),
        pytest.param(
            "citizen_departure",
            _set("traveller.nationality", 62),
            "traveller.nationality",
            "expected a string, got a number",
            id="citizen-nationality-as-number",
        ),
    ],
)
def test_a_value_of_the_wrong_type_is_reported_once_without_follow_up_problems(
    name: str, edit: Edit, field: str, problem: str
) -> None:
    # The client did send both coordinates, and a citizen's journey: the only thing wrong is the type.
    kind, event = sample(name)
    edit(event)
    assert [(p.field, p.problem) for p in validate(kind, event).problems] == [(field, problem)]


def test_occurred_at_within_the_allowed_skew_is_accepted() -> None:
    kind, event = sample("hotel_check_in")
    event["occurred_at"] = "2026-03-10T12:04:59Z"  # 4:59 ahead of the gateway's clock, skew is 5 minutes
    assert validate(kind, event).problems == []


def test_several_problems_in_one_event_are_all_reported() -> None:
    kind, event = sample("hotel_check_in")
    del event["guest"]["surname"]
    event["action"] = "ARRIVE"
    event["check_in_date"] = "2026-13-01"
    event["room"] = 7
    event["guest"]["nationality"] = "XYZ"
    event["colour"] = "blue"
    fields = sorted(p.field for p in validate(kind, event).problems)
    assert fields == ["action", "check_in_date", "colour", "guest.nationality", "guest.surname", "room"]


def test_several_roster_items_are_each_named() -> None:
    kind, event = sample("sponsor_report")
    event["roster"][0]["foreigner"]["nationality"] = "XYZ"
    event["roster"][2]["foreigner"]["nationality"] = "IDN"
    del event["roster"][1]["job_title"]
    fields = sorted(p.field for p in validate(kind, event).problems)
    assert fields == ["roster[0].foreigner.nationality", "roster[1].job_title", "roster[2].foreigner.nationality"]


# ---------------------------------------------------------------- gateway fields and clocks


def test_reported_at_from_an_untrusted_client_is_ignored() -> None:
    kind, event = sample("hotel_check_in")
    event["reported_at"] = "2026-03-09T00:00:00Z"
    event["source"] = "someone-else"
    result = validate(kind, event)
    assert result.problems == []
    assert result.record is not None
    assert result.record["reported_at"] == NOW_MS
    assert result.record["source"] == ""


def test_reported_at_is_honoured_for_a_trusted_clock() -> None:
    kind, event = sample("hotel_check_in")
    event["reported_at"] = "2026-03-10T06:00:00+07:00"
    result = validate(kind, event, trusted_clock=True)
    assert result.problems == []
    assert result.record is not None
    assert result.record["reported_at"] == ms("2026-03-09T23:00:00+00:00")


def test_a_trusted_reported_at_is_the_clock_occurred_at_is_checked_against() -> None:
    kind, event = sample("hotel_check_in")
    event["occurred_at"] = "2026-03-05T10:00:00Z"
    event["reported_at"] = "2026-03-05T09:00:00Z"  # a replay of old data: reported an hour before it happened
    problems = [(p.field, p.problem) for p in validate(kind, event, trusted_clock=True).problems]
    assert problems == [("occurred_at", "lies 3600 s after it was reported")]


def test_a_trusted_client_without_reported_at_gets_the_gateway_time() -> None:
    kind, event = sample("hotel_check_in")
    result = validate(kind, event, trusted_clock=True)
    assert result.record is not None and result.record["reported_at"] == NOW_MS


def test_a_bad_trusted_reported_at_is_reported() -> None:
    kind, event = sample("hotel_check_in")
    event["reported_at"] = "2026-03-10 06:00"
    problems = validate(kind, event, trusted_clock=True).problems
    assert [p.field for p in problems] == ["reported_at"]
    assert "has no UTC offset" in problems[0].problem


# ---------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [("a 123-456", "A123456"), ("k1234567", "K1234567"), (" X 12 34 56<<", "X123456"), ("B-9876-543", "B9876543")],
)
def test_document_numbers_are_normalised(raw: str, normalised: str) -> None:
    kind, event = sample("hotel_check_in")
    event["guest"]["document_number"] = raw
    result = validate(kind, event)
    assert result.problems == []
    assert result.record is not None and result.record["guest"]["document_number"] == normalised


@pytest.mark.parametrize(
    ("path", "raw", "symbol"),
    [
        ("action", "check_in", "CHECK_IN"),
        ("action", " Check_In ", "CHECK_IN"),
        ("permit_type", "itas", "ITAS"),
        ("guest.document_type", "passport", "PASSPORT"),
    ],
)
def test_enums_are_case_insensitive(path: str, raw: str, symbol: str) -> None:
    kind, event = sample("hotel_check_in")
    _set(path, raw)(event)
    result = validate(kind, event)
    assert result.problems == []
    assert result.record is not None
    value: Any = result.record
    for part in path.split("."):
        value = value[part]
    assert value == symbol


def test_timestamps_are_utc_epoch_milliseconds_whatever_the_offset() -> None:
    kind, event = sample("hotel_check_in")
    for text in ("2026-03-10T08:30:00.250+07:00", "2026-03-10T01:30:00.250Z", "2026-03-10T01:30:00.250+00:00"):
        event["occurred_at"] = text
        result = validate(kind, event)
        assert result.record is not None and result.record["occurred_at"] == ms("2026-03-10T01:30:00.250+00:00")
    event["occurred_at"] = ms("2026-03-10T01:30:00+00:00")  # epoch milliseconds pass through
    result = validate(kind, event)
    assert result.problems == []
    assert result.record is not None and result.record["occurred_at"] == ms("2026-03-10T01:30:00+00:00")


def test_dates_are_days_since_the_epoch() -> None:
    kind, event = sample("hotel_check_in")
    event["check_in_date"] = "2026-03-09"
    event["expected_check_out_date"] = "2026-03-12"
    result = validate(kind, event)
    assert result.record is not None
    assert result.record["check_in_date"] == days("2026-03-09")
    assert result.record["expected_check_out_date"] == days("2026-03-12")


def test_optional_fields_may_be_omitted_null_or_blank() -> None:
    kind, event = sample("hotel_check_in")
    del event["room"]
    event["permit_type"] = None
    event["expected_check_out_date"] = ""
    result = validate(kind, event)
    assert result.problems == []
    assert result.record is not None
    assert (result.record["room"], result.record["permit_type"], result.record["expected_check_out_date"]) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("name", "path", "field"),
    [
        ("hotel_check_in", "guest.nationality", ("guest", "nationality")),
        ("risky_citizen_departure", "departure.destination_country", ("departure", "destination_country")),
        ("risky_citizen_departure", "departure.onward_route", ("departure", "onward_route")),
    ],
)
def test_country_codes_are_accepted_in_lower_case_and_stored_in_upper_case(
    name: str, path: str, field: tuple[str, str]
) -> None:
    kind, event = sample(name)
    outer, inner = field
    value = event[outer][inner]
    lowered = [c.lower() for c in value] if isinstance(value, list) else value.lower()
    event[outer][inner] = lowered
    result = validate(kind, event)
    assert result.problems == [], path
    assert result.record is not None and result.record[outer][inner] == value


def test_a_foreigners_departure_needs_no_details_and_a_citizens_arrival_none() -> None:
    f = factory()
    departure = f.citizen_departure()
    departure["traveller"] = f.identity("SGP")
    del departure["departure"]
    assert validate("border_crossing", departure).problems == []
    arrival = f.arrival(traveller=f.identity("IDN"))
    del arrival["arrival"]
    assert validate("border_crossing", arrival).problems == []


def test_a_timestamp_a_day_old_is_fine() -> None:  # reporting delay is for the detectors, not a validation error
    kind, event = sample("hotel_check_in")
    event["occurred_at"] = (NOW - timedelta(days=1)).isoformat()
    assert validate(kind, event).problems == []
