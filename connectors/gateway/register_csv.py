"""A hotel's guest register as CSV, for establishments with no IT integration.

One row per guest movement. Columns (header names, any order, case-insensitive)::

    required: nationality, document_number, surname, check_in_date, occurred_at
    optional: event_id, action (default CHECK_IN), document_type (default PASSPORT), given_names,
              date_of_birth, permit_type, room, expected_check_out_date, check_out_date,
              corrects_event_id, establishment_name, region, office

``occurred_at`` is ISO 8601 with an offset, or local time ``YYYY-MM-DD HH:MM`` in the
establishment's time zone (the key's ``utc_offset``, WIB +07:00 unless set). The establishment
is the one the API key is bound to; its name, region and office come from the key registry
unless the columns give them. Comma or semicolon separated, UTF-8 (with or without BOM).
Rows are independent: a bad row is reported with its line number and dead-lettered, the rest
are accepted (the client fixes the row and uploads the file again: accepted rows are idempotent).
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from typing import Any

from connectors.gateway.items import Item
from connectors.gateway.keys import Source
from schemas.validation import FieldError

REQUIRED = ("nationality", "document_number", "surname", "check_in_date", "occurred_at")
GUEST = {"nationality", "document_type", "document_number", "given_names", "surname", "date_of_birth"}
ESTABLISHMENT = {"establishment_name": "name", "region": "region", "office": "office"}
TOP = {
    "event_id",
    "action",
    "permit_type",
    "room",
    "check_in_date",
    "expected_check_out_date",
    "check_out_date",
    "corrects_event_id",
    "occurred_at",
}
KNOWN = GUEST | TOP | set(ESTABLISHMENT)
_LOCAL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?$")
_LINE_END = re.compile(r"\r\n|\r|\n")
MAX_HEADER_PROBLEMS = 20


class RegisterError(ValueError):
    """The file as a whole cannot be read; names what is wrong."""

    def __init__(self, problems: list[FieldError]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = problems


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RegisterError(
            [FieldError("<file>", f"is not UTF-8 (byte {exc.start}); save the register as CSV UTF-8")]
        ) from None


def parse_register(body: bytes, source: Source) -> list[Item]:
    text = _decode(body)
    first = _LINE_END.split(text, maxsplit=1)[0]  # the header line, as csv reads lines
    if not first.strip():
        raise RegisterError([FieldError("<header>", "the file is empty; the first line must name the columns")])
    delimiter = ";" if first.count(";") > first.count(",") else ","
    # newline="": the csv module sees \r, \n and \r\n line ends itself (and newlines in quotes)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header_row = next(reader)
        header = [h.strip().lower() for h in header_row]
        problems = [FieldError("<header>", f"column {c!r} is missing") for c in REQUIRED if c not in header]
        unknown = [c for c in dict.fromkeys(header) if c not in KNOWN]
        problems += _at_most(
            [
                FieldError("<header>", f"column {_clip(c)!r} is not known (known: {', '.join(sorted(KNOWN))})")
                for c in unknown[:MAX_HEADER_PROBLEMS]
            ],
            len(unknown),
            "columns are not known",
        )
        dupes = sorted(c for c, n in Counter(header).items() if n > 1)
        problems += _at_most(
            [
                FieldError("<header>", f"column {_clip(c)!r} appears more than once")
                for c in dupes[:MAX_HEADER_PROBLEMS]
            ],
            len(dupes),
            "columns appear more than once",
        )
        if problems:
            raise RegisterError(problems)

        offset = source.attribute("utc_offset", "+07:00")  # checked when the key file was loaded
        items: list[Item] = []
        header_line = _row_text(header_row, delimiter)
        for row in reader:
            line_no = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            raw = (header_line + _row_text(row, delimiter)).encode()
            label = f"row {line_no}"
            if len(row) != len(header):
                items.append(
                    Item(
                        value=None,
                        raw=raw,
                        label=label,
                        problems=(FieldError("<row>", f"has {len(row)} cells, the header has {len(header)}"),),
                    )
                )
                continue
            cells = {h: c.strip() for h, c in zip(header, row, strict=True)}
            items.append(Item(value=_event(cells, source, offset), raw=raw, label=label))
    except csv.Error as exc:  # a cell longer than the csv module reads (often an unclosed quote)
        raise RegisterError([FieldError(f"line {reader.line_num}", f"cannot be read as CSV: {exc}")]) from None
    if not items:
        raise RegisterError([FieldError("<file>", "holds a header but no rows")])
    return items


def _at_most(problems: list[FieldError], total: int, what: str) -> list[FieldError]:
    """The first problems of a kind and a count of the rest: a header of a million columns gets
    an answer of a few lines."""
    if total > len(problems):
        problems.append(FieldError("<header>", f"{total - len(problems)} more {what}"))
    return problems


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _row_text(row: list[str], delimiter: str) -> str:
    """The row as CSV again, quoted where a cell needs it, so that it reads back the same."""
    out = io.StringIO()
    if any("\r" in cell for cell in row):  # the writer quotes a \r only if it is in its line terminator
        csv.writer(out, delimiter=delimiter, lineterminator="\n", quoting=csv.QUOTE_ALL).writerow(row)
    else:
        csv.writer(out, delimiter=delimiter, lineterminator="\n").writerow(row)
    return out.getvalue()


def _event(cells: dict[str, str], source: Source, offset: str) -> dict[str, Any]:
    guest: dict[str, Any] = {k: cells[k] for k in GUEST if cells.get(k)}
    guest.setdefault("document_type", "PASSPORT")
    guest.setdefault("given_names", "")
    if not guest.get("date_of_birth"):
        guest.pop("date_of_birth", None)
    establishment = {
        "establishment_id": source.binds,
        **{field: cells.get(col) or source.attribute(field) for col, field in ESTABLISHMENT.items()},
    }
    event: dict[str, Any] = {k: cells[k] for k in TOP if cells.get(k)}
    event.setdefault("action", "CHECK_IN")
    occurred = cells.get("occurred_at", "")
    if _LOCAL_TIME.match(occurred):
        event["occurred_at"] = occurred.replace(" ", "T") + offset
    event["guest"] = guest
    event["establishment"] = establishment
    return event
