"""Turn a client's JSON object into a record of a Pora contract, or say exactly what is wrong.

The checks are compiled once per kind from the Avro schema itself (types, required fields,
enums, unknown fields), then each kind's domain rules run on the typed record (dates in order,
ISO country codes, citizens vs foreigners, ...). Every problem is reported with the path of the
field, so a hotel's IT person can fix the row without guessing.

JSON conventions: timestamps are ISO 8601 with a UTC offset (or epoch milliseconds), dates are
``YYYY-MM-DD``, enums are their symbol (case-insensitive), optional fields may be omitted or null.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from schemas.person import CITIZEN, COUNTRY_CODES, normalise_document_number, valid_document_number
from schemas.registry import current, expand_named

EPOCH_DATE = date(1970, 1, 1)
MAX_STRING = 4000
MAX_ARRAY = 10_000
MIN_MILLIS = 946_684_800_000  # 2000-01-01: older event times are typos, not history
DAY_MS = 86_400_000
# The instants a reader can turn back into a datetime (years 1 to 9999): beyond them an accepted
# event would be undecodable downstream (fastavro reads timestamp-millis as datetimes).
FIRST_MILLIS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
LAST_MILLIS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
# Plausible instants and days, the window the detectors are safe in: a sponsor report for a period
# ending 9999-12-31 made the worker compute a due date in the year 10000 and crash on every replay.
MAX_MILLIS = 7_258_118_399_999  # 2199-12-31T23:59:59.999Z: later event times are typos as well
FIRST_DAY = -62_091  # 1800-01-01, as days since 1970-01-01
LAST_DAY = 84_005  # 2199-12-31
MAX_PROBLEMS = 50  # per item: enough to fix it, bounded however broken the input is
MAX_EXTRA_FIELDS = 10  # unknown fields named one by one; the rest are counted

# Fields a client never sets: the gateway fills them in.
GATEWAY_FIELDS = frozenset({"reported_at", "source"})
# Strings that may legitimately be empty.
MAY_BE_EMPTY = frozenset({"given_names", "person_key", "source", "rule_id"})


@dataclass(frozen=True)
class FieldError:
    field: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


class Problems(list[FieldError]):
    def add(self, field: str, problem: str) -> None:
        self.append(FieldError(field, problem))


Converter = Callable[[Any, Problems], Any]
_MISSING = object()


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def parse_timestamp_ms(value: Any) -> int:
    """ISO 8601 with offset, or epoch milliseconds, to epoch milliseconds (UTC)."""
    if isinstance(value, bool):
        raise ValueError("expected an ISO 8601 timestamp, got a boolean")
    if isinstance(value, int):
        if not FIRST_MILLIS <= value <= LAST_MILLIS:
            raise ValueError(f"{value} epoch milliseconds lies outside the years 1 to 9999")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 timestamp, got {_describe(value)}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{_clip(value)!r} is not an ISO 8601 timestamp (e.g. 2026-11-25T14:30:00+07:00)") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{_clip(value)!r} has no UTC offset; add one, e.g. +07:00 for WIB or Z for UTC")
    try:
        ms: int | None = int(parsed.timestamp() * 1000)
    except (OverflowError, ValueError):  # beyond what datetime computes
        ms = None
    if ms is None or not FIRST_MILLIS <= ms <= LAST_MILLIS:  # e.g. 9999-12-31T23:00-14:00: year 10000 UTC
        raise ValueError(f"{_clip(value)!r} lies outside the years 1 to 9999 in UTC")
    return ms


def event_time_problem(ms: int) -> str | None:
    """Why an event time (epoch ms) is implausible, or None: before 2000 or after 2199."""
    if ms < MIN_MILLIS:
        return "lies before the year 2000"
    if ms > MAX_MILLIS:
        return "lies after the year 2199"
    return None


def _clip(text: str, limit: int = 80) -> str:
    """A value quoted in a problem: long enough to recognise, never the whole of a huge one."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


_DAYS: dict[str, int] = {}  # the same few hundred dates recur in every batch


def parse_date_days(value: Any) -> int:
    if isinstance(value, str):
        days = _DAYS.get(value)
        if days is not None:
            return days
        try:
            days = (date.fromisoformat(value.strip()) - EPOCH_DATE).days
        except ValueError:
            raise ValueError(f"{_clip(value)!r} is not a date YYYY-MM-DD") from None
        if len(_DAYS) < 100_000:
            _DAYS[value] = days
        return days
    if isinstance(value, date) and not isinstance(value, datetime):
        return (value - EPOCH_DATE).days
    raise ValueError(f"expected a date YYYY-MM-DD, got {_describe(value)}")


def days_to_date(days: int) -> date:
    return date.fromordinal(EPOCH_DATE.toordinal() + days)


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _compile(schema: Any, path: str, field_name: str = "") -> Converter:
    """A converter for ``schema`` at ``path``; paths are fixed at compile time (cheap when valid)."""
    if isinstance(schema, list):
        return _compile_union(schema, path, field_name)
    if isinstance(schema, str):
        return _compile_primitive(schema, None, path, field_name)
    kind = schema["type"]
    if kind == "record":
        return _compile_record(schema, path)
    if kind == "enum":
        symbols = {s.upper(): s for s in schema["symbols"]}
        listed = ", ".join(schema["symbols"])

        def conv_enum(value: Any, problems: Problems) -> Any:
            if isinstance(value, str):
                found = symbols.get(value.strip().upper())
                if found is not None:
                    return found
            shown = repr(_clip(value)) if isinstance(value, str) else _describe(value)
            problems.add(path, f"{shown} is not one of {listed}")
            return None

        return conv_enum
    if kind == "array":
        placeholder = f"{path}[]"
        item = _compile(schema["items"], placeholder, field_name)

        def conv_array(value: Any, problems: Problems) -> Any:
            if not isinstance(value, list):
                problems.add(path, f"expected an array, got {_describe(value)}")
                return None
            if len(value) > MAX_ARRAY:
                problems.add(path, f"has {len(value)} items; at most {MAX_ARRAY} are accepted")
                return None
            out = []
            for i, v in enumerate(value):
                seen = len(problems)
                out.append(item(v, problems))
                for j in range(seen, len(problems)):  # name the item that failed
                    problems[j] = FieldError(
                        problems[j].field.replace(placeholder, f"{path}[{i}]", 1), problems[j].problem
                    )
            return out

        return conv_array
    if isinstance(kind, str) and kind in {"string", "int", "long", "double", "float", "boolean", "bytes", "null"}:
        return _compile_primitive(kind, schema.get("logicalType"), path, field_name)
    if isinstance(kind, dict | list):
        return _compile(kind, path, field_name)
    raise TypeError(f"schema type {kind!r} is not supported by the validator")


def _compile_primitive(kind: str, logical: str | None, path: str, field_name: str) -> Converter:
    if logical == "timestamp-millis":

        def conv_ts(value: Any, problems: Problems) -> Any:
            try:
                ms = parse_timestamp_ms(value)
            except ValueError as exc:
                problems.add(path, str(exc))
                return None
            problem = event_time_problem(ms)
            if problem:
                problems.add(path, problem)
            return ms

        return conv_ts
    if logical == "date":

        def conv_date(value: Any, problems: Problems) -> Any:
            try:
                days = parse_date_days(value)
            except ValueError as exc:
                problems.add(path, str(exc))
                return None
            if not FIRST_DAY <= days <= LAST_DAY:
                problems.add(path, "must lie between 1800-01-01 and 2199-12-31")
            return days

        return conv_date
    if kind == "string":
        may_be_empty = field_name in MAY_BE_EMPTY

        def conv_str(value: Any, problems: Problems) -> Any:
            if not isinstance(value, str):
                problems.add(path, f"expected a string, got {_describe(value)}")
                return None
            value = value.strip()
            if not value and not may_be_empty:
                problems.add(path, "must not be empty")
            elif len(value) > MAX_STRING:
                problems.add(path, f"is {len(value)} characters long; at most {MAX_STRING} are accepted")
            return value

        return conv_str
    if kind == "boolean":

        def conv_bool(value: Any, problems: Problems) -> Any:
            if not isinstance(value, bool):
                problems.add(path, f"expected true or false, got {_describe(value)}")
                return None
            return value

        return conv_bool
    if kind in ("double", "float"):

        def conv_float(value: Any, problems: Problems) -> Any:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                problems.add(path, f"expected a finite number, got {_describe(value)}")
                return None
            return float(value)

        return conv_float
    if kind in ("int", "long"):
        limit = 2**31 if kind == "int" else 2**63

        def conv_int(value: Any, problems: Problems) -> Any:
            if isinstance(value, bool) or not isinstance(value, int) or not -limit <= value < limit:
                problems.add(path, f"expected an integer, got {_describe(value)}")
                return None
            return value

        return conv_int
    if kind == "null":

        def conv_null(value: Any, problems: Problems) -> Any:
            if value is not None:
                problems.add(path, "must be null")
            return None

        return conv_null
    if kind == "bytes":

        def conv_bytes(value: Any, problems: Problems) -> Any:
            if isinstance(value, bytes):
                return value
            if isinstance(value, str):
                return value.encode()
            problems.add(path, f"expected bytes, got {_describe(value)}")
            return None

        return conv_bytes
    raise TypeError(f"primitive {kind!r} is not supported by the validator")


def _compile_union(branches: list[Any], path: str, field_name: str) -> Converter:
    others = [b for b in branches if b != "null"]
    if len(others) != 1 or len(branches) != 2:
        raise TypeError("the validator supports only optional unions ['null', T]")
    inner = _compile(others[0], path, field_name)

    def conv_optional(value: Any, problems: Problems) -> Any:
        if value is None:
            return None
        if isinstance(value, str) and not value.strip():
            return None  # an empty cell in a register means "not given"
        return inner(value, problems)

    return conv_optional


_SLOW, _TEXT, _OPTIONAL_TEXT = 0, 1, 2


def _shortcut(field: dict[str, Any]) -> int:
    """Plain string fields, the most common, are checked inline in the record loop (no call)."""
    if field["name"] in MAY_BE_EMPTY:
        return _SLOW
    if field["type"] == "string":
        return _TEXT
    if field["type"] in (["null", "string"], ["string", "null"]):
        return _OPTIONAL_TEXT
    return _SLOW


def _compile_record(schema: dict[str, Any], path: str) -> Converter:
    fields = [
        (
            f["name"],
            _join(path, f["name"]),
            _compile(f["type"], _join(path, f["name"]), f["name"]),
            f.get("default", _MISSING),
            _shortcut(f),
        )
        for f in schema["fields"]
    ]
    known = {name for name, _, _, _, _ in fields}
    listed = ", ".join(sorted(known))

    def conv_record(value: Any, problems: Problems) -> Any:
        if not isinstance(value, dict):
            problems.add(path or "<body>", f"expected an object, got {_describe(value)}")
            return None
        out: dict[str, Any] = {}
        given = 0
        for name, field_path, conv, default, shortcut in fields:
            raw = value.get(name, _MISSING)
            if raw is _MISSING:
                if default is _MISSING:
                    problems.add(field_path, "is required")
                else:
                    out[name] = list(default) if isinstance(default, list) else default
                continue
            given += 1
            if shortcut and type(raw) is str:
                text = raw.strip()
                if text and len(text) <= MAX_STRING:
                    out[name] = text
                    continue
            elif shortcut == _OPTIONAL_TEXT and raw is None:
                out[name] = None
                continue
            out[name] = conv(raw, problems)
        if given != len(value):
            extras = sorted(map(str, value.keys() - known))
            for extra in extras[:MAX_EXTRA_FIELDS]:
                shown = _clip(extra) if extra.strip() else repr(extra)  # a blank name, shown as ''
                problems.add(_join(path, shown), f"is not a field of this record (fields: {listed})")
            if len(extras) > MAX_EXTRA_FIELDS:
                problems.add(
                    path or "<body>",
                    f"has {len(extras) - MAX_EXTRA_FIELDS} more fields that are not fields of this record",
                )
        return out

    return conv_record


# ---------------------------------------------------------------- domain rules per kind

Check = Callable[[dict[str, Any], Problems], None]


_today_cache: list[float] = [0.0, 0.0]


def _today_days() -> int:
    now = time.monotonic()
    if now - _today_cache[0] > 60:
        _today_cache[:] = [now, float((date.today() - EPOCH_DATE).days)]
    return int(_today_cache[1])


def _country(code: Any, path: str, problems: Problems) -> None:
    if isinstance(code, str) and code not in COUNTRY_CODES:
        problems.add(path, f"{code!r} is not an ISO 3166-1 alpha-3 country code")


def _identity(ident: Any, path: str, problems: Problems, *, foreigner: bool) -> None:
    if not isinstance(ident, dict):
        return
    nat = ident.get("nationality")
    if isinstance(nat, str):
        ident["nationality"] = nat = nat.upper()
        _country(nat, f"{path}.nationality", problems)
        if foreigner and nat == CITIZEN:
            problems.add(f"{path}.nationality", "IDN is an Indonesian citizen; only foreigners are reported here")
    doc = ident.get("document_number")
    if isinstance(doc, str):
        ident["document_number"] = doc = normalise_document_number(doc)
        if doc and not valid_document_number(doc):
            problems.add(f"{path}.document_number", "must be 3 to 20 letters and digits")
    dob = ident.get("date_of_birth")
    if isinstance(dob, int) and not -25_567 <= dob <= _today_days():  # 1900..today
        problems.add(f"{path}.date_of_birth", "must lie between 1900-01-01 and today")


def _not_before(rec: dict[str, Any], later: str, earlier: str, problems: Problems) -> None:
    a, b = rec.get(later), rec.get(earlier)
    if isinstance(a, int) and isinstance(b, int) and a < b:
        problems.add(later, f"{days_to_date(a)} is before {earlier} {days_to_date(b)}")


def _check_hotel(rec: dict[str, Any], problems: Problems) -> None:
    _identity(rec.get("guest"), "guest", problems, foreigner=True)
    action, corrects = rec.get("action"), rec.get("corrects_event_id")
    if action in ("CORRECTION", "CANCEL") and not corrects:
        problems.add("corrects_event_id", f"is required for {action}: name the report it amends")
    if action in ("CHECK_IN", "CHECK_OUT") and corrects:
        problems.add("corrects_event_id", f"must be empty for {action}")
    if action == "CHECK_OUT" and rec.get("check_out_date") is None:
        problems.add("check_out_date", "is required for CHECK_OUT")
    _not_before(rec, "check_out_date", "check_in_date", problems)
    _not_before(rec, "expected_check_out_date", "check_in_date", problems)


def _check_crossing(rec: dict[str, Any], problems: Problems) -> None:
    traveller = rec.get("traveller")
    _identity(traveller, "traveller", problems, foreigner=False)
    nat = traveller.get("nationality") if isinstance(traveller, dict) else None
    direction, arrival, departure = rec.get("direction"), rec.get("arrival"), rec.get("departure")
    citizen = nat == CITIZEN
    known = isinstance(nat, str)  # else its problem is reported already, and whose journey it is is unknown
    if known and direction == "ARRIVAL" and not citizen and arrival is None:
        problems.add("arrival", "is required for a foreigner's ARRIVAL (permit_type, authorised_until)")
    if known and arrival is not None and (citizen or direction != "ARRIVAL"):
        problems.add("arrival", "is only for a foreigner's ARRIVAL")
    if known and departure is not None and (not citizen or direction != "DEPARTURE"):
        problems.add("departure", "is only for a citizen's (IDN) DEPARTURE")
    occurred = rec.get("occurred_at")
    occurred_day = occurred // DAY_MS if isinstance(occurred, int) else None
    if isinstance(arrival, dict):
        until = arrival.get("authorised_until")
        if isinstance(until, int) and occurred_day is not None and until < occurred_day:
            problems.add("arrival.authorised_until", "lies before the arrival itself")
    if isinstance(departure, dict):
        dest = departure.get("destination_country")
        if isinstance(dest, str):
            departure["destination_country"] = dest = dest.upper()
        _country(dest, "departure.destination_country", problems)
        route = departure.get("onward_route") or []
        for i, code in enumerate(route):
            if isinstance(code, str):
                route[i] = code = code.upper()
            _country(code, f"departure.onward_route[{i}]", problems)
        issued = departure.get("passport_issued_on")
        if isinstance(issued, int) and occurred_day is not None and issued > occurred_day:
            problems.add("departure.passport_issued_on", "lies after the departure")


def _check_sponsor(rec: dict[str, Any], problems: Problems) -> None:
    _not_before(rec, "period_end", "period_start", problems)
    for i, entry in enumerate(rec.get("roster") or []):
        if isinstance(entry, dict):
            _identity(entry.get("foreigner"), f"roster[{i}].foreigner", problems, foreigner=True)
    for i, change in enumerate(rec.get("changes") or []):
        if isinstance(change, dict):
            _identity(change.get("foreigner"), f"changes[{i}].foreigner", problems, foreigner=True)


def _check_permit(rec: dict[str, Any], problems: Problems) -> None:
    _identity(rec.get("holder"), "holder", problems, foreigner=True)
    _not_before(rec, "valid_until", "valid_from", problems)


def _check_agency(rec: dict[str, Any], problems: Problems) -> None:
    if rec.get("subject") is not None:
        _identity(rec.get("subject"), "subject", problems, foreigner=True)
    loc = rec.get("location")
    if isinstance(loc, dict):
        lat, lon = loc.get("latitude"), loc.get("longitude")
        if isinstance(lat, float) and not -90 <= lat <= 90:
            problems.add("location.latitude", "must lie between -90 and 90")
        if isinstance(lon, float) and not -180 <= lon <= 180:
            problems.add("location.longitude", "must lie between -180 and 180")
        reported = {p.field for p in problems} & {"location.latitude", "location.longitude"}
        if (lat is None) != (lon is None) and not reported:
            problems.add("location", "latitude and longitude go together: give both or neither")


DOMAIN_CHECKS: dict[str, Check] = {
    "hotel_guest_event": _check_hotel,
    "border_crossing": _check_crossing,
    "sponsor_report": _check_sponsor,
    "permit_update": _check_permit,
    "agency_report": _check_agency,
}
INGESTED_KINDS: tuple[str, ...] = tuple(DOMAIN_CHECKS)


@dataclass(frozen=True)
class Validated:
    record: dict[str, Any] | None
    problems: list[FieldError]

    @property
    def ok(self) -> bool:
        return not self.problems


class Validator:
    """Validates client input of one kind; compiled once, safe to share."""

    def __init__(self, kind: str) -> None:
        if kind not in DOMAIN_CHECKS:
            raise KeyError(f"{kind!r} is not a kind that sources may send; kinds: {', '.join(INGESTED_KINDS)}")
        self.kind = kind
        schema = expand_named(current(kind).parsed, {})
        # A client may leave out event_id (the gateway derives one) and the gateway's own fields.
        client_fields = []
        for f in schema["fields"]:
            if f["name"] in GATEWAY_FIELDS:
                continue
            if f["name"] == "event_id":
                f = {**f, "default": ""}
            client_fields.append(f)
        self._convert = _compile_record({**schema, "fields": client_fields}, "")
        self._check = DOMAIN_CHECKS[kind]

    def __call__(self, value: Any, *, now_ms: int, max_skew_ms: int, trusted_clock: bool = False) -> Validated:
        """Convert and check ``value``; ``reported_at`` is ``now_ms`` unless the source has a trusted clock."""
        problems = Problems()
        given_reported = _MISSING
        given_source = _MISSING
        if isinstance(value, dict) and (GATEWAY_FIELDS & value.keys()):
            value = dict(value)
            given_reported = value.pop("reported_at", _MISSING)
            given_source = value.pop("source", _MISSING)
        record = self._convert(value, problems)
        if record is None:
            return Validated(None, list(problems))
        reported = now_ms
        if trusted_clock and given_reported is not _MISSING:
            try:
                reported = parse_timestamp_ms(given_reported)
            except ValueError as exc:
                problems.add("reported_at", str(exc))
            else:
                if problem := event_time_problem(reported):
                    problems.add("reported_at", problem)
        elif given_reported is not _MISSING and not trusted_clock:
            pass  # a source cannot choose when it reported: the gateway's clock decides
        del given_source  # always the authenticated source, never what the body claims
        record["reported_at"] = reported
        record["source"] = ""
        occurred = record.get("occurred_at")
        if isinstance(occurred, int) and occurred > reported + max_skew_ms:
            problems.add("occurred_at", f"lies {(occurred - reported) // 1000} s after it was reported")
        for name in ("event_id", "corrects_event_id"):
            _check_id(record.get(name), name, problems)
        self._check(record, problems)
        if len(problems) > MAX_PROBLEMS:
            more = len(problems) - MAX_PROBLEMS
            del problems[MAX_PROBLEMS:]
            problems.add("<item>", f"{more} more problems are not listed; fix the ones above first")
        return Validated(record, list(problems))


def _check_id(value: Any, name: str, problems: Problems) -> None:
    """Event ids hold no control characters: they are namespaced, logged, and written into record
    headers whose parts are separated by one (US, 0x1f)."""
    if not isinstance(value, str):
        return
    if len(value) > 128:
        problems.add(name, "is longer than 128 characters")
    bad = next((c for c in value if c < " " or "\x7f" <= c < "\xa0"), None)
    if bad is not None:
        problems.add(name, f"holds the control character U+{ord(bad):04X}")
