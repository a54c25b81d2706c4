"""A hotel's guest register as CSV: parsing, local times, and what is wrong with a file or a row."""

from __future__ import annotations

import csv
import io
from datetime import datetime

import pytest

from connectors.gateway.keys import Source
from connectors.gateway.register_csv import REQUIRED, RegisterError, parse_register
from schemas.validation import Validator

HOTEL = Source(
    id="hotel-harmoni-batam",
    kind="hotel",
    binds="EST-BTM-0001",
    profile=(("name", "Hotel Harmoni One"), ("region", "Kota Batam"), ("office", "KANIM-BATAM")),
)
HOTEL_WITA = Source(
    id="kuta-beach-inn",
    kind="hotel",
    binds="EST-DPS-0001",
    profile=(
        ("name", "Kuta Beach Inn"),
        ("region", "Kabupaten Badung"),
        ("office", "KANIM-NGURAH-RAI"),
        ("utc_offset", "+08:00"),
    ),
)
HEADER = "nationality,document_number,surname,check_in_date,occurred_at"
NOW_MS = int(datetime.fromisoformat("2026-03-10T12:00:00+00:00").timestamp() * 1000)


def csv_bytes(*lines: str, bom: bool = False, newline: str = "\n") -> bytes:
    return ("\ufeff" if bom else "").encode() + (newline.join(lines) + newline).encode()


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def problems_of(exc: pytest.ExceptionInfo[RegisterError]) -> list[tuple[str, str]]:
    return [(p.field, p.problem) for p in exc.value.problems]


# ---------------------------------------------------------------- good files


def test_semicolons_and_a_bom_are_read() -> None:
    body = csv_bytes(
        "Nationality;Document_Number;SURNAME;given_names;check_in_date;occurred_at;room",
        "SGP;K1234567;Tan;Wei Ling;2026-03-09;2026-03-09T14:30:00+07:00;101",
        bom=True,
    )
    [item] = parse_register(body, HOTEL)
    assert item.problems == ()
    assert item.label == "row 2"
    assert item.value["guest"] == {
        "nationality": "SGP",
        "document_number": "K1234567",
        "surname": "Tan",
        "given_names": "Wei Ling",
        "document_type": "PASSPORT",
    }
    assert item.value["check_in_date"] == "2026-03-09"
    assert item.value["occurred_at"] == "2026-03-09T14:30:00+07:00"
    assert item.value["room"] == "101"
    assert item.value["action"] == "CHECK_IN"


def test_commas_and_crlf_are_read() -> None:
    body = csv_bytes(
        HEADER,
        "SGP,K1234567,Tan,2026-03-09,2026-03-09 14:30",
        "MYS,A7654321,Lim,2026-03-09,2026-03-09 15:00",
        newline="\r\n",
    )
    items = parse_register(body, HOTEL)
    assert [i.label for i in items] == ["row 2", "row 3"]
    assert [i.value["guest"]["surname"] for i in items] == ["Tan", "Lim"]
    assert items[1].value["occurred_at"] == "2026-03-09T15:00+07:00"


@pytest.mark.parametrize(
    ("source", "cell", "occurred_at"),
    [
        (HOTEL, "2026-03-09 14:30", "2026-03-09T14:30+07:00"),
        (HOTEL, "2026-03-09T14:30", "2026-03-09T14:30+07:00"),
        (HOTEL, "2026-03-09 14:30:15", "2026-03-09T14:30:15+07:00"),
        (HOTEL_WITA, "2026-03-09 14:30", "2026-03-09T14:30+08:00"),
        (HOTEL_WITA, "2026-03-09T14:30:00+07:00", "2026-03-09T14:30:00+07:00"),  # an explicit offset wins
        (HOTEL, "2026-03-09T07:30:00Z", "2026-03-09T07:30:00Z"),
    ],
)
def test_local_time_gets_the_establishments_utc_offset(source: Source, cell: str, occurred_at: str) -> None:
    [item] = parse_register(csv_bytes(HEADER, f"SGP,K1234567,Tan,2026-03-09,{cell}"), source)
    assert item.value["occurred_at"] == occurred_at


def test_a_parsed_row_is_a_valid_event_at_the_right_instant() -> None:
    body = csv_bytes(
        HEADER + ",permit_type,expected_check_out_date", "sgp,k 123-4567,Tan,2026-03-09,2026-03-09 14:30,voa,2026-03-12"
    )
    [item] = parse_register(body, HOTEL_WITA)
    result = Validator("hotel_guest_event")(item.value, now_ms=NOW_MS, max_skew_ms=300_000)
    assert result.problems == []
    assert result.record is not None
    assert result.record["occurred_at"] == ms("2026-03-09T06:30:00+00:00")
    assert result.record["guest"]["nationality"] == "SGP"
    assert result.record["guest"]["document_number"] == "K1234567"
    assert result.record["permit_type"] == "VOA"
    assert result.record["establishment"] == {
        "establishment_id": "EST-DPS-0001",
        "name": "Kuta Beach Inn",
        "region": "Kabupaten Badung",
        "office": "KANIM-NGURAH-RAI",
    }


def test_establishment_columns_override_the_key_registry_but_not_the_id() -> None:
    body = csv_bytes(HEADER + ",establishment_name,office", "SGP,K1234567,Tan,2026-03-09,2026-03-09 14:30,Annex,")
    [item] = parse_register(body, HOTEL)
    assert item.value["establishment"] == {
        "establishment_id": "EST-BTM-0001",
        "name": "Annex",
        "region": "Kota Batam",
        "office": "KANIM-BATAM",
    }


def test_blank_cells_in_optional_columns_mean_the_default() -> None:
    body = csv_bytes(
        HEADER + ",action,document_type,given_names,date_of_birth,room",
        "SGP,K1234567,Tan,2026-03-09,2026-03-09 14:30,,,,,",
    )
    [item] = parse_register(body, HOTEL)
    result = Validator("hotel_guest_event")(item.value, now_ms=NOW_MS, max_skew_ms=300_000)
    assert result.problems == []
    assert result.record is not None
    assert result.record["action"] == "CHECK_IN"
    assert result.record["guest"]["document_type"] == "PASSPORT"
    assert result.record["guest"]["date_of_birth"] is None
    assert result.record["room"] is None


def test_blank_lines_are_skipped_and_rows_keep_their_line_numbers() -> None:
    body = csv_bytes(
        HEADER,
        "",
        "SGP,K1234567,Tan,2026-03-09,2026-03-09 14:30",
        " , , , , ",
        "MYS,A7654321,Lim,2026-03-09,2026-03-09 15:00",
    )
    assert [i.label for i in parse_register(body, HOTEL)] == ["row 3", "row 5"]


def test_each_item_keeps_its_raw_row_with_the_header() -> None:
    body = csv_bytes(
        HEADER,
        'SGP,K1234567,"Tan, Jr.",2026-03-09,2026-03-09 14:30',
        'MYS,A7654321,"O""Brien",2026-03-09,2026-03-09 15:00',
    )
    source_rows = list(csv.reader(io.StringIO(body.decode())))
    items = parse_register(body, HOTEL)
    for item, row in zip(items, source_rows[1:], strict=True):
        # the dead-letter topic keeps exactly this: it must still be the row the client sent
        assert list(csv.reader(io.StringIO(item.raw.decode()))) == [source_rows[0], row]


# ---------------------------------------------------------------- bad files and rows


@pytest.mark.parametrize("column", REQUIRED)
def test_a_missing_required_column_is_named(column: str) -> None:
    header = [c for c in HEADER.split(",") if c != column]
    with pytest.raises(RegisterError) as exc:
        parse_register(csv_bytes(",".join(header), ",".join("x" * len(header))), HOTEL)
    assert problems_of(exc) == [("<header>", f"column {column!r} is missing")]
    assert f"column {column!r} is missing" in str(exc.value)


def test_an_unknown_column_is_named_with_the_known_ones() -> None:
    with pytest.raises(RegisterError) as exc:
        parse_register(csv_bytes(HEADER + ",nationalty", "SGP,K1234567,Tan,2026-03-09,2026-03-09 14:30,SGP"), HOTEL)
    [(field, problem)] = problems_of(exc)
    assert field == "<header>"
    assert problem.startswith("column 'nationalty' is not known (known: ")
    assert "nationality" in problem


def test_a_duplicate_column_is_named() -> None:
    with pytest.raises(RegisterError) as exc:
        parse_register(csv_bytes(HEADER + ",Surname", "SGP,K1234567,Tan,2026-03-09,2026-03-09 14:30,Lim"), HOTEL)
    assert problems_of(exc) == [("<header>", "column 'surname' appears more than once")]


def test_every_header_problem_is_reported_at_once() -> None:
    with pytest.raises(RegisterError) as exc:
        parse_register(csv_bytes("nationality,surname,colour", "SGP,Tan,red"), HOTEL)
    fields = [problem for _, problem in problems_of(exc)]
    assert fields[:3] == [
        "column 'document_number' is missing",
        "column 'check_in_date' is missing",
        "column 'occurred_at' is missing",
    ]
    assert fields[3].startswith("column 'colour' is not known")
    assert len(fields) == 4


def test_a_row_with_the_wrong_cell_count_is_reported_with_its_line_number() -> None:
    body = csv_bytes(
        HEADER,
        "SGP,K1234567,Tan,2026-03-09,2026-03-09 14:30",
        "",
        "MYS,A7654321,Lim,2026-03-09",
        "AUS,P1234567,Smith,2026-03-09,2026-03-09 16:00,extra",
        "JPN,T1234567,Sato,2026-03-09,2026-03-09 17:00",
    )
    items = parse_register(body, HOTEL)
    assert [i.label for i in items] == ["row 2", "row 4", "row 5", "row 6"]
    good, short, long, last = items
    assert good.problems == () and last.problems == ()
    assert short.value is None
    assert [(p.field, p.problem) for p in short.problems] == [("<row>", "has 4 cells, the header has 5")]
    assert [(p.field, p.problem) for p in long.problems] == [("<row>", "has 6 cells, the header has 5")]
    assert short.raw.decode().splitlines() == [HEADER, "MYS,A7654321,Lim,2026-03-09"]


@pytest.mark.parametrize(
    "body", [b"", b"\xef\xbb\xbf", b"\n\n", b"   \r\n"], ids=["empty", "bom-only", "blank", "spaces"]
)
def test_an_empty_file_is_refused(body: bytes) -> None:
    with pytest.raises(RegisterError) as exc:
        parse_register(body, HOTEL)
    assert problems_of(exc) == [("<header>", "the file is empty; the first line must name the columns")]


@pytest.mark.parametrize("body", [csv_bytes(HEADER), csv_bytes(HEADER, "", " , , , , ")], ids=["header", "blank-rows"])
def test_a_file_without_rows_is_refused(body: bytes) -> None:
    with pytest.raises(RegisterError) as exc:
        parse_register(body, HOTEL)
    assert problems_of(exc) == [("<file>", "holds a header but no rows")]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param((HEADER + "\nDEU,C1234567,Müller,2026-03-09,2026-03-09 14:30\n").encode("latin-1"), id="latin-1"),
        pytest.param((HEADER + "\n").encode("utf-16"), id="utf-16"),
    ],
)
def test_a_file_that_is_not_utf8_is_refused(body: bytes) -> None:
    with pytest.raises(RegisterError) as exc:
        parse_register(body, HOTEL)
    [(field, problem)] = problems_of(exc)
    assert field == "<file>"
    assert problem.startswith("is not UTF-8")
    assert "save the register as CSV UTF-8" in problem
