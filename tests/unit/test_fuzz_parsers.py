"""Arbitrary input into every parser on the way in: the gateway's JSON preparation, the CSV guest
register, the replay file reader and the API key file. Each either accepts the input or refuses it
with its documented error naming a field; nothing else is ever raised. What is accepted decodes
again (the detectors and the sink can read it), and what is refused keeps its raw bytes for the
dead-letter topic.

Deterministic (``derandomize``): a failure here is a failure every time, with its input shown.
"""

from __future__ import annotations

import codecs
import copy
import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.gateway.ingest import TOPIC_OF_KIND, parse_receipt_header, receipt_header
from connectors.gateway.items import Item
from connectors.gateway.keys import BINDINGS, KeyFileError, KeyRing, Source, hash_key, key_entry
from connectors.gateway.prepare import BodyProblem, Prepared, Preparer
from connectors.gateway.register_csv import GUEST, KNOWN, REQUIRED, RegisterError, parse_register
from connectors.replay import ReplayError, read_lines
from connectors.samples import AGENCY, CHECKPOINTS, ESTABLISHMENTS, SPONSOR, SampleFactory
from schemas.codec import codec
from schemas.person import normalise_document_number
from schemas.validation import INGESTED_KINDS, MAX_MILLIS
from streams.detect.config import default_rules
from streams.detect.offline import detect_offline

TODAY = date(2026, 3, 10)
NOW_MS = int(datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp() * 1000)
SKEW_MS = 5 * 60 * 1000
PREPARER = Preparer(b"fuzz-secret", SKEW_MS)
MAX_BATCH = 50
Quoting = Literal[0, 1, 2, 3]  # csv.QUOTE_*
KNOWN_LIST = f" (known: {', '.join(sorted(KNOWN))})"

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(FUZZ, max_examples=60)
CHEAP = settings(FUZZ, max_examples=1000)  # raw bytes: fast to make, so many more
SLOW = settings(FUZZ, max_examples=120)  # files written to disk from structured values

HOTEL = ESTABLISHMENTS[0]
SOURCES: dict[str, Source] = {
    "hotel": Source(
        "hotel-harmoni",
        "hotel",
        HOTEL["establishment_id"],
        (("name", HOTEL["name"]), ("region", HOTEL["region"]), ("office", HOTEL["office"])),
    ),
    "checkpoint": Source("tpi-batam", "checkpoint", CHECKPOINTS[0]["checkpoint_id"]),
    "sponsor": Source("sponsor", "sponsor", SPONSOR["sponsor_id"]),
    "office": Source("kanim-batam", "office", "KANIM-BATAM"),
    "agency": Source("polres", "agency", AGENCY["agency_id"]),
    "system": Source("replay", "system", ""),
}
KIND_OF_SOURCE = {"hotel": "hotel_guest_event", "checkpoint": "border_crossing", "sponsor": "sponsor_report"}
KIND_OF_SOURCE |= {"office": "permit_update", "agency": "agency_report"}


def sample(kind: str, seed: int) -> dict[str, Any]:
    return copy.deepcopy(_sample(kind, seed))  # the factory shares its constants' dicts; tests change them


def _sample(kind: str, seed: int) -> dict[str, Any]:
    f = SampleFactory(seed=seed, today=TODAY)
    if kind == "hotel_guest_event":
        return f.hotel_check_in(HOTEL)
    if kind == "border_crossing":
        return f.arrival(CHECKPOINTS[0]) if seed % 2 else f.citizen_departure(CHECKPOINTS[0], risky=seed % 3 == 0)
    if kind == "sponsor_report":
        return f.sponsor_report(roster=seed % 4)
    if kind == "permit_update":
        event = f.permit_extension()
        event["office"] = "KANIM-BATAM"
        return event
    return f.agency_report()


def test_the_samples_are_accepted_as_they_are() -> None:  # so that what the mutations break is theirs
    for who, kind in KIND_OF_SOURCE.items():
        for seed in range(4):
            result = PREPARER.prepare_json(SOURCES[who], kind, orjson.dumps(sample(kind, seed)), NOW_MS, MAX_BATCH)
            assert isinstance(result, Prepared) and not result.rejections, (kind, result)


# ---------------------------------------------------------------- what every answer must be


def assert_well_formed(result: Prepared | BodyProblem, kind: str, source: Source) -> None:
    """Either a whole-body refusal naming the problem, or every item accepted (and decodable as
    its kind, for its source) or refused with each problem at a named field and its raw bytes."""
    if isinstance(result, BodyProblem):
        assert 400 <= result.status < 500 and result.reason and result.detail
        assert result.errors and all(e.field and e.problem for e in result.errors), result
        return
    assert result.total == len(result.ready) + len(result.rejections)
    assert sorted([r.at for r in result.ready] + [r.index for r in result.rejections]) == list(range(result.total))
    for rej in result.rejections:
        assert rej.reason in ("invalid", "forbidden") and rej.raw, rej
        assert rej.errors and all(e.field and e.problem for e in rej.errors), rej
        assert len(rej.errors) <= 51  # bounded however broken the item: 50 and one "more" line
    for ready in result.ready:
        decoded_kind, record = codec().decode(ready.value)  # the worker and the sink can read it
        assert decoded_kind == kind and record["event_id"] == ready.event_id
        assert record["source"] == source.id
        assert not any(c < " " for c in ready.event_id), ready.event_id  # safe in the receipt header
        assert parse_receipt_header(receipt_header(ready.event_id, NOW_MS, ready.digest, ready.client_id)) == (
            ready.event_id,
            NOW_MS,
            ready.digest,
            ready.client_id,
        )


def prepare(who: str, kind: str, body: bytes) -> Prepared | BodyProblem:
    source = SOURCES[who]
    result = PREPARER.prepare_json(source, kind, body, NOW_MS, MAX_BATCH)
    assert_well_formed(result, kind, source)
    return result


# ---------------------------------------------------------------- JSON bodies

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what JSON parsers read
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
)
who_and_kind = st.sampled_from([*KIND_OF_SOURCE.items(), *(("system", k) for k in INGESTED_KINDS)])


@CHEAP
@given(body=st.binary(max_size=300), target=who_and_kind)
def test_any_bytes_are_accepted_or_refused_with_the_field_named(body: bytes, target: tuple[str, str]) -> None:
    prepare(*target, body)


@FUZZ
@given(value=json_values, shape=st.sampled_from(["one", "array", "events"]), target=who_and_kind)
def test_any_json_value_is_accepted_or_refused_with_the_field_named(
    value: Any, shape: str, target: tuple[str, str]
) -> None:
    body = {"one": value, "array": [value, value], "events": {"events": [value]}}[shape]
    result = prepare(*target, orjson.dumps(body))
    assert isinstance(result, BodyProblem) or not result.ready  # nothing random is a valid event


# Values that have broken parsers before: the edges of time, of integers, of text.
interesting: st.SearchStrategy[Any] = st.sampled_from(
    [
        None,
        "",
        " ",
        0,
        -1,
        2**31,
        2**63 - 1,
        2**63,
        2**64 - 1,
        -(2**63),
        1.5,
        1e308,
        True,
        [],
        {},
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "9999-12-31T23:59:59.999Z",
        "2026-02-30T10:00:00+07:00",
        "2026-03-10T10:00:00",
        "2026-03-10 10:00+07:00",
        "20260310T100000+0700",
        "2026-02-30",
        "0000-01-01",
        "9999-12-31",
        253_402_300_800_000,
        -62_135_596_800_001,
        "A\x1fB",
        "A\x00B",
        "x" * 4001,
        " " * 4001 + "x",
        "é" * 200,
        "\ud7ff\ue000",
        "checkin",
        "IDN",
        "idn",
    ]
)
mutation_values = interesting | json_values | st.text(max_size=40)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON value: keys of objects, indexes of arrays."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield (*prefix, k)
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield (*prefix, i)
            yield from paths(v, (*prefix, i))


@st.composite
def mutated_events(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    who, kind = draw(who_and_kind)
    event = sample(kind, draw(st.integers(0, 7)))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from([(), *paths(event)]))
        parent: Any = event
        for step in where[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["set", "set", "delete", "add"]))
        if not where or action == "add":
            target = parent[where[-1]] if where else event
            if isinstance(target, dict):
                name = draw(st.sampled_from(["reported_at", "source", "event_id", "extra", "corrects_event_id"]))
                target[name] = copy.deepcopy(draw(mutation_values))
        elif action == "delete":
            del parent[where[-1]]
        else:
            parent[where[-1]] = copy.deepcopy(draw(mutation_values))  # a fresh copy: later edits go into it
    return who, kind, event


@FUZZ
@given(case=mutated_events())
def test_a_sample_with_any_field_changed_is_accepted_or_refused_with_the_field_named(
    case: tuple[str, str, dict[str, Any]],
) -> None:
    who, kind, event = case
    prepare(who, kind, orjson.dumps(event))


@FEW
@given(cases=st.lists(mutated_events(), min_size=1, max_size=8))
def test_a_batch_of_changed_samples_answers_item_by_item(cases: list[tuple[str, str, dict[str, Any]]]) -> None:
    who, kind, _ = cases[0]
    items = [event for w, k, event in cases if (w, k) == (who, kind)]
    result = prepare(who, kind, orjson.dumps({"events": items}))
    assert isinstance(result, Prepared) and result.total == len(items)
    for rej in result.rejections:
        assert rej.label == f"[{rej.index}]" and orjson.loads(rej.raw) == items[rej.index]


@FEW
@given(depth=st.integers(1, 1100), container=st.sampled_from(["[]", "{}"]), where=st.sampled_from(range(4)))
def test_deeply_nested_json_is_refused_and_kept_whole(depth: int, container: str, where: int) -> None:
    open_, close = (b"[", b"]") if container == "[]" else (b'{"a":', b"}")
    nested = open_ * depth + (b"" if container == "[]" else b"1") + close * depth
    event = orjson.dumps(sample("agency_report", 1))
    body, kept = [
        (nested, nested[1:-1] if container == "[]" else nested),  # the body itself (an array is a batch)
        (b"[" + nested + b"]", nested),  # one item of a batch
        (event[:-1] + b',"deep":' + nested + b"}",) * 2,  # an unknown field
        (event[:-1] + b',"description":' + nested + b"}",) * 2,  # a known one (the last of a repeated key wins)
    ][where]
    result = prepare("agency", "agency_report", body)
    if isinstance(result, Prepared):  # else too deep for JSON (1,024 levels) or an empty batch: a 4xx
        assert not result.ready and len(result.rejections) == 1
        assert result.rejections[0].raw == kept  # compared as bytes: == on such values recurses


def test_a_batch_item_too_deep_for_orjson_is_kept_byte_for_byte() -> None:
    deep = b"[" * 1000 + b"]" * 1000
    result = prepare("agency", "agency_report", b"[" + deep + b"," + deep + b"]")
    assert isinstance(result, Prepared) and [r.raw for r in result.rejections] == [deep, deep]
    assert Item(orjson.loads(b'{"a":' * 600 + b"1" + b"}" * 600)).raw_bytes() == b'{"a":' * 600 + b"1" + b"}" * 600


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        pytest.param({"occurred_at": 253_402_300_800_000}, "occurred_at", id="epoch-ms-after-year-9999"),
        pytest.param({"reported_at": 2**63 - 1}, "reported_at", id="trusted-reported-at-beyond-datetimes"),
        pytest.param({"reported_at": "9999-12-31T23:59:59-14:00"}, "reported_at", id="year-10000-in-utc"),
        pytest.param({"event_id": "abc\x1f123"}, "event_id", id="receipt-separator-in-event-id"),
        pytest.param({"event_id": "abc\n123"}, "event_id", id="newline-in-event-id"),
        pytest.param({f"x{i}": 0 for i in range(5000)}, "<body>", id="thousands-of-unknown-fields"),
    ],
)
def test_inputs_that_were_accepted_undecodable_or_broke_the_answer(edit: dict[str, Any], field: str) -> None:
    event = {**sample("agency_report", 1), **edit}
    result = prepare("system", "agency_report", orjson.dumps(event))
    assert isinstance(result, Prepared) and not result.ready, "accepted, but no consumer could read it"
    assert field in {e.field for e in result.rejections[0].errors}


TICK_AT_THE_END = {"event_id": "tick", "occurred_at": MAX_MILLIS, "reported_at": MAX_MILLIS, "source": "t"}


def detect(accepted: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """The detectors over accepted events, then a clock tick at the last accepted instant."""
    c = codec()
    records = [(TOPIC_OF_KIND[kind], 0, *c.decode(value)) for kind, value in accepted]
    tick = c.decode(c.encode("clock_tick", TICK_AT_THE_END))
    records += [(topic, 0, *tick) for topic in sorted(set(TOPIC_OF_KIND.values()))]
    return detect_offline(records, default_rules(), 1)


@FEW
@given(cases=st.lists(mutated_events(), min_size=1, max_size=4))
def test_whatever_the_gateway_accepts_the_detectors_can_process(cases: list[tuple[str, str, dict[str, Any]]]) -> None:
    # a poison pill here crashes the worker on every replay of its partition
    accepted = [(k, sample(k, 3)) for k in INGESTED_KINDS] + [(k, e) for _, k, e in cases]
    ready = []
    for kind, event in accepted:
        result = PREPARER.prepare_json(SOURCES["system"], kind, orjson.dumps(event), NOW_MS, MAX_BATCH)
        assert isinstance(result, Prepared)
        ready += [(kind, r.value) for r in result.ready]
    detect(ready)


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        pytest.param("sponsor_report", "period_end", "9999-12-31", id="sponsor-period-ending-in-9999"),
        pytest.param("permit_update", "valid_from", "0001-01-01", id="permit-valid-from-year-1"),
        pytest.param("agency_report", "reported_at", "9999-12-31T00:00:00Z", id="trusted-report-in-9999"),
    ],
)
def test_dates_the_detectors_cannot_count_from_are_refused(kind: str, field: str, value: str) -> None:
    event = {**sample(kind, 1), field: value}
    who = "system" if field == "reported_at" else next(w for w, k in KIND_OF_SOURCE.items() if k == kind)
    result = prepare(who, kind, orjson.dumps(event))
    assert isinstance(result, Prepared) and not result.ready  # a sponsor key's report crashed every worker
    assert field in {e.field for e in result.rejections[0].errors}
    edge = {**sample(kind, 1), field: {"period_end": "2199-12-31", "valid_from": "1800-01-01"}.get(field, value)}
    if field != "reported_at":  # the last day of the window is accepted, and the detectors take it
        result = prepare(who, kind, orjson.dumps(edge))
        assert isinstance(result, Prepared) and len(result.ready) == 1, result
        detect([(kind, result.ready[0].value)])


def test_a_one_megabyte_name_is_refused_at_its_field() -> None:
    event = sample("hotel_guest_event", 1)
    event["guest"]["surname"] = "N" * 1_000_000
    result = prepare("hotel", "hotel_guest_event", orjson.dumps(event))
    assert isinstance(result, Prepared)
    [problem] = result.rejections[0].errors
    assert problem.field == "guest.surname" and "at most 4000" in problem.problem


def test_a_batch_over_the_limit_is_refused_whole_and_dead_lettered() -> None:
    body = orjson.dumps([sample("agency_report", i) for i in range(MAX_BATCH + 1)])
    result = prepare("agency", "agency_report", body)
    assert isinstance(result, BodyProblem) and result.status == 413 and result.reason == "too_large"
    assert f"at most {MAX_BATCH}" in result.errors[0].problem
    empty = prepare("agency", "agency_report", b"[]")
    assert isinstance(empty, BodyProblem) and (empty.status, empty.reason) == (422, "empty")


# ---------------------------------------------------------------- the CSV guest register


def check_register(body: bytes, source: Source = SOURCES["hotel"]) -> Prepared | BodyProblem:
    try:
        items = parse_register(body, source)
    except RegisterError as exc:
        assert exc.problems and all(p.field and p.problem for p in exc.problems), exc
        assert len(exc.problems) <= 21
    else:
        labels = [i.label for i in items]
        assert all(re.fullmatch(r"row \d+", x) for x in labels) and len(set(labels)) == len(labels)
        assert all(i.raw for i in items)
    result = PREPARER.prepare_register(source, body, NOW_MS, MAX_BATCH)
    assert_well_formed(result, "hotel_guest_event", source)
    if isinstance(result, Prepared):
        for ready in result.ready:
            record = codec().decode(ready.value)[1]
            assert record["establishment"]["establishment_id"] == source.binds  # the key's, never the file's
    return result


@CHEAP
@given(body=st.binary(max_size=400))
def test_any_bytes_as_a_register_are_read_or_refused_with_the_field_named(body: bytes) -> None:
    check_register(body)


cell_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
cells_by_column: dict[str, st.SearchStrategy[str]] = {
    "occurred_at": st.sampled_from(
        [
            "2026-03-09 14:30",
            "2026-03-09T14:30",
            "2026-03-09 14:30:15",
            "2026-03-09T14:30:00+08:00",
            "2026-03-09T07:30:00Z",
            "2026-02-30 14:30",
            "2026-03-09 25:00",
            "09/03/2026 14:30",
            "2026-03-09",
            "",
        ]
    ),
    "check_in_date": st.sampled_from(["2026-03-09", "2026-02-30", "09-03-2026", "2026-3-9", ""]),
    "check_out_date": st.sampled_from(["2026-03-10", "2026-03-01", "x", ""]),
    "date_of_birth": st.sampled_from(["1980-01-31", "1899-12-31", "2999-01-01", "1980-13-01", ""]),
    "nationality": st.sampled_from(["SGP", "sgp", "IDN", "XYZ", "SG", ""]),
    "document_number": st.sampled_from(["K1234567", "k 123-4567", "12", "X" * 21, ""]),
    "action": st.sampled_from(["CHECK_IN", "check_out", "CANCEL", "BOGUS", ""]),
}


@st.composite
def registers(draw: st.DrawFn) -> bytes:
    """Files as spreadsheets and hand edits make them: any columns, delimiters, quoting, line ends,
    encodings, a BOM, ragged rows, blank lines, huge cells."""
    columns = draw(st.lists(st.sampled_from([*sorted(KNOWN), "Nationality ", "bogus", ""]), max_size=10))
    if draw(st.booleans()):
        columns = [*REQUIRED, *columns]
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    quoting: Quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    line_end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    rows: list[list[str]] = []
    for _ in range(draw(st.integers(0, 6))):
        row = [draw(cells_by_column.get(c.strip().lower(), cell_text)) for c in columns]
        shape = draw(st.sampled_from(["as-is", "as-is", "as-is", "short", "long", "blank", "huge"]))
        if shape == "short":
            row = row[:-1]
        elif shape == "long":
            row = [*row, "extra"]
        elif shape == "blank":
            row = [""] * len(columns)
        elif shape == "huge" and row:
            row[0] = "H" * draw(st.sampled_from([5000, 140_000]))
        rows.append(row)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, quoting=quoting, lineterminator=line_end)
    writer.writerow(columns)
    writer.writerows(rows)
    text = out.getvalue()
    if draw(st.booleans()):  # a hand edit: a stray or unclosed quote, a NUL, a form feed
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(['"', '""', "\x00", "\x0c", "\u2028", ";", "\r"])) + text[at:]
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]))
    return text.encode(encoding, errors="replace")


@FUZZ
@given(body=registers())
def test_any_register_file_is_read_row_by_row_or_refused_with_the_field_named(body: bytes) -> None:
    result = check_register(body)
    if not body.decode("utf-8-sig", errors="replace").strip():
        assert isinstance(result, BodyProblem)


@st.composite
def good_registers(draw: st.DrawFn) -> tuple[bytes, list[dict[str, str]], str]:
    """Valid registers in any column order, delimiter, quoting, line end and BOM."""
    optional = draw(st.lists(st.sampled_from(["given_names", "room", "date_of_birth", "event_id"]), unique=True))
    columns = draw(st.permutations([*REQUIRED, *optional]))
    rows = []
    for i in range(draw(st.integers(1, 5))):
        day = TODAY - timedelta(days=draw(st.integers(1, 20)))
        local = draw(st.booleans())
        row = {
            "nationality": draw(st.sampled_from(["SGP", "aus", " nld "])),
            "document_number": draw(st.sampled_from(["K1234567", "pa 765 4321", "E-12345678"])) + str(i),
            "surname": draw(st.sampled_from(["Tan", "de Vries", "O'Brien", 'Smith "Jr"', "Lee; Kim", "Ng, Wei"])),
            "check_in_date": day.isoformat(),
            "occurred_at": f"{day.isoformat()} 09:{i:02d}" if local else f"{day.isoformat()}T09:{i:02d}:00+08:00",
            "given_names": draw(st.sampled_from(["", "Wei Ling", "Zoë", "José María"])),
            "room": draw(st.sampled_from(["101", "", "2-B", "Suite\n7", "Suite\r\n8"])),
            "date_of_birth": draw(st.sampled_from(["", "1980-01-31"])),
            "event_id": f"row-{i}",
        }
        rows.append(row)
    delimiter = draw(st.sampled_from([",", ";"]))
    line_end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    out = io.StringIO()
    # QUOTE_ALL where the line end is not \r\n: the writer quotes a newline in a cell only when it
    # is one of the line end's characters (spreadsheets always quote it)
    quoting: Quoting = csv.QUOTE_ALL
    if line_end == "\r\n":
        quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    writer = csv.writer(out, delimiter=delimiter, lineterminator=line_end, quoting=quoting)
    writer.writerow(columns)
    writer.writerows([[r[c] for c in columns] for r in rows])
    bom = codecs.BOM_UTF8 if draw(st.booleans()) else b""
    return bom + out.getvalue().encode(), rows, line_end


@FUZZ
@given(case=good_registers())
def test_every_row_of_a_valid_register_is_accepted_as_written(case: tuple[bytes, list[dict[str, str]], str]) -> None:
    body, rows, _ = case
    result = check_register(body)
    assert isinstance(result, Prepared) and not result.rejections, result
    records = [codec().decode(r.value)[1] for r in result.ready]
    assert len(records) == len(rows)
    for row, record in zip(rows, records, strict=True):
        guest = record["guest"]
        assert guest["surname"] == row["surname"].strip()
        assert guest["nationality"] == row["nationality"].strip().upper()
        assert guest["document_number"] == normalise_document_number(row["document_number"])
        local = re.fullmatch(r"\S+ (\d\d):(\d\d)", row["occurred_at"])
        hour = record["occurred_at"].hour + (7 if local else 8)  # WIB for local times, else its offset
        assert hour == 9 and record["check_in_date"].isoformat() == row["check_in_date"]
    assert GUEST <= KNOWN


def test_a_lone_carriage_return_ends_a_line() -> None:  # old Mac line ends used to be a 500
    body = (
        b"nationality,document_number,surname,check_in_date,occurred_at\r"
        + b"SGP,K1234567,Tan,2026-03-09,2026-03-09 10:00\r"
    )
    result = check_register(body)
    assert isinstance(result, Prepared) and len(result.ready) == 1


def test_a_cell_too_long_for_the_csv_module_names_its_line() -> None:  # used to be a 500
    body = ",".join(REQUIRED).encode() + b"\nSGP,K1,Tan,2026-03-09,2026-03-09 10:00\n" + b'"' + b"x" * 200_000
    with pytest.raises(RegisterError) as exc:
        parse_register(body, SOURCES["hotel"])
    assert [p.field for p in exc.value.problems] == ["line 3"]


def test_a_header_of_200_000_columns_is_refused_quickly_and_briefly() -> None:
    body = (",".join(REQUIRED) + ",x" * 200_000 + "\n").encode()  # counting duplicates was quadratic: hours
    with pytest.raises(RegisterError) as exc:
        parse_register(body, SOURCES["hotel"])
    assert [p.problem for p in exc.value.problems] == [
        "column 'x' is not known" + KNOWN_LIST,
        "column 'x' appears more than once",
    ]
    body = (",".join(REQUIRED) + "".join(f",c{i}" for i in range(200_000)) + "\n").encode()
    with pytest.raises(RegisterError) as exc:
        parse_register(body, SOURCES["hotel"])
    assert len(exc.value.problems) == 21 and exc.value.problems[-1].problem == "199980 more columns are not known"


def test_too_many_rows_are_refused_whole() -> None:
    row = "SGP,K{},Tan,2026-03-09,2026-03-09 10:00\n"
    body = (",".join(REQUIRED) + "\n" + "".join(row.format(i) for i in range(MAX_BATCH + 1))).encode()
    result = check_register(body)
    assert isinstance(result, BodyProblem) and (result.status, result.reason) == (413, "too_large")
    assert result.errors[0].field == "<file>"


# ---------------------------------------------------------------- the replay file


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def read_or_refuse(path: Path, content: bytes) -> list[Any]:
    path.write_bytes(content)
    lines: list[Any] = []
    try:
        lines.extend(read_lines(path))
    except ReplayError as exc:
        found = re.match(rf"{re.escape(str(path))}:(\d+): .+", str(exc))
        assert found, str(exc)  # names the line, and says what is wrong with it
        number = int(found.group(1))
        assert 1 <= number <= content.count(b"\n") + 1
        assert all(ln.number < number for ln in lines)
    return lines


replay_lines = st.one_of(
    st.binary(max_size=60),
    json_values.map(orjson.dumps),
    st.fixed_dictionaries(
        {"kind": st.sampled_from([*INGESTED_KINDS, "clock_tick", "nope"]) | json_values},
        optional={"event": json_values | st.fixed_dictionaries({"reported_at": mutation_values}), "at": interesting},
    ).map(orjson.dumps),
)


@SLOW
@given(lines=st.lists(replay_lines, max_size=6), bom=st.booleans())
def test_any_replay_file_is_read_or_refused_naming_the_line(workdir: Path, lines: list[bytes], bom: bool) -> None:
    content = (codecs.BOM_UTF8 if bom else b"") + b"\n".join(lines)
    for line in read_or_refuse(workdir / "events.jsonl", content):
        assert line.kind in (*INGESTED_KINDS, "clock_tick")
        assert isinstance(line.at, int)
        assert line.event is None if line.kind == "clock_tick" else isinstance(line.event, dict)


@FEW
@given(kinds=st.lists(st.sampled_from(INGESTED_KINDS), min_size=1, max_size=5), bom=st.booleans())
def test_a_valid_replay_file_is_read_line_by_line(workdir: Path, kinds: list[str], bom: bool) -> None:
    events = [{**sample(k, i), "reported_at": f"2026-03-10T0{i}:00:00Z"} for i, k in enumerate(kinds)]
    text = b"\n\n".join(orjson.dumps({"kind": k, "event": e}) for k, e in zip(kinds, events, strict=True))
    lines = read_or_refuse(workdir / "good.jsonl", (codecs.BOM_UTF8 if bom else b"") + text + b"\n")
    assert [(ln.number, ln.kind) for ln in lines] == [(2 * i + 1, k) for i, k in enumerate(kinds)]
    assert [ln.at for ln in lines] == [NOW_MS - (12 - i) * 3_600_000 for i in range(len(kinds))]


@pytest.mark.parametrize(
    ("line", "named"),
    [
        pytest.param(b"[1, 2]", "expected an object", id="array"),
        pytest.param(b'{"event": {}}', "field 'kind' is missing", id="no-kind"),
        pytest.param(b'{"kind": ["x"], "event": {}}', "field 'kind': list is not one of", id="kind-a-list"),
        pytest.param(b'{"kind": "agency_report"}', "field 'event' is missing", id="no-event"),
        pytest.param(b'{"kind": "agency_report", "event": "x"}', "field 'event' must be an object", id="event-text"),
        pytest.param(b'{"kind": "agency_report", "event": {}}', "field 'event.reported_at' is missing", id="no-time"),
        pytest.param(
            b'{"kind": "agency_report", "event": {"reported_at": "0001-01-01T00:00:00+14:00"}}',
            "field 'event.reported_at': '0001-01-01T00:00:00+14:00' lies outside the years 1 to 9999",
            id="before-year-1",  # was an OverflowError out of the CLI
        ),
        pytest.param(b'{"kind": "clock_tick", "at": 1e3}', "field 'at': expected an ISO 8601", id="tick-a-float"),
        pytest.param(b'{"kind": "clock_tick"}', "field 'at' is missing", id="tick-without-time"),
        pytest.param(
            b'{"kind": "clock_tick", "at": "9999-12-31T00:00:00Z"}',
            "field 'at': '9999-12-31T00:00:00Z' lies after the year 2199",
            id="tick-in-9999",  # every detector would compute a deadline in the year 10000 and crash
        ),
    ],
)
def test_a_bad_replay_line_is_named_with_its_field(workdir: Path, line: bytes, named: str) -> None:
    path = workdir / "bad.jsonl"
    path.write_bytes(b"\n" + line + b"\n")
    with pytest.raises(ReplayError, match=f"^{re.escape(f'{path}:2: {named}')}"):
        list(read_lines(path))


def test_a_missing_replay_file_is_a_replay_error(workdir: Path) -> None:
    with pytest.raises(ReplayError, match="cannot be read"):
        list(read_lines(workdir / "nope.jsonl"))


# ---------------------------------------------------------------- the API key file


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


toml_scalars = st.text(max_size=10) | st.integers(-(2**63), 2**63 - 1) | st.booleans() | st.floats(allow_nan=False)
toml_values = st.recursive(
    toml_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
)
FIELDS = ("id", "kind", "binds", "key_sha256", "name", "region", "office", "utc_offset")
field_values: dict[str, st.SearchStrategy[Any]] = {
    "kind": st.sampled_from([*BINDINGS, "hostel", ""]) | toml_values,
    "key_sha256": st.sampled_from([hash_key("k1"), hash_key("k2"), hash_key("k1").upper(), "0" * 63, "g" * 64])
    | toml_values,
    "utc_offset": st.sampled_from(["+07:00", "+14:00", "-12:00", "+15:00", "7", "+7:00", ""]) | toml_values,
}


@st.composite
def key_files(draw: st.DrawFn) -> str:
    entries = []
    for _ in range(draw(st.integers(0, 3))):
        chosen = draw(st.lists(st.sampled_from(FIELDS), unique=True, min_size=2))
        if draw(st.booleans()):
            chosen = list(dict.fromkeys(["id", "kind", "key_sha256", *chosen]))
        values = {f: draw(field_values.get(f, st.text(max_size=12) | toml_values)) for f in chosen}
        entries.append("[[source]]\n" + "".join(f"{f} = {toml_value(v)}\n" for f, v in values.items()))
    return "\n".join(entries)


def load_or_refuse(path: Path, content: bytes) -> KeyRing | None:
    path.write_bytes(content)
    try:
        return KeyRing.load(path)
    except KeyFileError as exc:
        message = str(exc)
        assert message.startswith((f"API key file {path} ", f"{path}: ")), message
        entry = re.match(rf"{re.escape(str(path))}: source #(\d+): (.+)", message)
        if entry:  # an entry's problem names the field (or the key listed twice)
            assert re.search(r"\b(id|kind|binds|key_sha256|utc_offset|name|region|office|key)\b", entry.group(2))
        return None


@SLOW
@given(content=key_files())
def test_any_key_file_loads_or_is_refused_naming_the_entry_and_field(workdir: Path, content: str) -> None:
    ring = load_or_refuse(workdir / "keys.toml", content.encode())
    if ring is not None:
        for key in ("k1", "k2"):
            source = ring.authenticate(key)
            assert source is None or (isinstance(source.id, str) and isinstance(source.binds, str))


@CHEAP
@given(content=st.binary(max_size=200))
def test_any_bytes_as_a_key_file_load_or_are_refused(workdir: Path, content: bytes) -> None:
    load_or_refuse(workdir / "bytes.toml", content)


def test_a_key_file_that_is_not_utf8_or_not_a_file_is_refused(workdir: Path) -> None:
    assert load_or_refuse(workdir / "latin1.toml", key_entry("hôtel", "system", "", "k").encode("latin-1")) is None
    with pytest.raises(KeyFileError, match="cannot be read"):
        KeyRing.load(workdir)  # a directory


@CHEAP
@given(key=st.text(st.characters(categories=["Cs"]) | st.characters(), max_size=40))  # lone surrogates: aiohttp's
# form of header bytes that are not UTF-8
def test_any_presented_key_authenticates_or_not_without_error(key: str) -> None:
    ring = KeyRing({hash_key("k1"): SOURCES["hotel"]})
    assert ring.authenticate(key) in (None, SOURCES["hotel"])
    assert ring.authenticate("\udcff\udcfe") is None
