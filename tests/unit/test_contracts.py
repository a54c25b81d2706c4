"""The Avro contracts: encoding, fingerprints, documentation, privacy and BACKWARD compatibility."""

from __future__ import annotations

import copy
import re
from functools import cache
from io import BytesIO
from typing import Any, cast

import pytest
from avro_strategies import decoded, expand, read_as, records
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import HEADER_LEN, MAGIC, Codec, DecodeError
from schemas.compat import backward_problems
from schemas.registry import KINDS, Contract, current, history

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HISTORY = [(kind, old.version) for kind in KINDS for old in history(kind)]


@cache
def shared_codec() -> Codec:
    return Codec()


@cache
def strategy_for(kind: str, version: int | None = None) -> st.SearchStrategy[Any]:
    return records(current(kind).parsed if version is None else old_contract(kind, version).parsed)


def old_contract(kind: str, version: int) -> Contract:
    return next(c for c in history(kind) if c.version == version)


def parsed(schema: dict[str, Any]) -> dict[str, Any]:
    """A synthetic schema in the registry's form (fastavro-parsed, full names, no hints)."""
    return cast(dict[str, Any], parse_schema(copy.deepcopy(schema), _write_hint=False))


# ---------------------------------------------------------------- CRC-64-AVRO, from the specification

_EMPTY = 0xC15D213AA4D7A795


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY if fp & 1 else 0)
        table.append(fp)
    return table


_TABLE = _table()


def crc64_avro(data: bytes) -> int:
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def test_crc64_avro_matches_the_specification_test_vector() -> None:
    assert crc64_avro(b'"null"') == 0x63DD24E7CC258F8A
    # fastavro (used by the registry) gives the bytes as single-object encoding writes them: little-endian
    assert bytes.fromhex(fingerprint(to_parsing_canonical_form("null"), "CRC-64-AVRO")) == (
        0x63DD24E7CC258F8A
    ).to_bytes(8, "little")
    assert (0x63DD24E7CC258F8A).to_bytes(8, "little") == bytes.fromhex("8a8f25cce724dd63")


@pytest.mark.parametrize("kind", KINDS)
def test_registry_fingerprint_is_crc64_of_the_canonical_form_little_endian(kind: str) -> None:
    contract = current(kind)
    assert contract.canonical == to_parsing_canonical_form(contract.parsed)
    assert contract.fingerprint == crc64_avro(contract.canonical.encode()).to_bytes(8, "little")


def test_every_kind_has_its_own_fingerprint() -> None:
    prints = {current(kind).fingerprint for kind in KINDS}
    assert len(prints) == len(KINDS)


# ---------------------------------------------------------------- round trip


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.data())
def test_round_trip_through_single_object_encoding(kind: str, data: st.DataObject) -> None:
    record = data.draw(strategy_for(kind), label="record")
    codec = shared_codec()
    encoded = codec.encode(kind, record)
    assert encoded[:2] == b"\xc3\x01"
    assert encoded[2:HEADER_LEN] == current(kind).fingerprint
    reference = BytesIO()
    schemaless_writer(reference, parse_schema(current(kind).parsed), record)
    assert encoded[HEADER_LEN:] == reference.getvalue()  # the body is plain Avro binary, as any Avro library writes it
    assert codec.kind_of(encoded) == kind
    decoded_kind, decoded_record = codec.decode(encoded)
    assert decoded_kind == kind
    assert decoded_record == decoded(current(kind).parsed, record)


def test_encode_names_an_unknown_kind() -> None:
    with pytest.raises(KeyError, match="hotel_guest_events"):
        shared_codec().encode("hotel_guest_events", {})


# ---------------------------------------------------------------- what decode rejects


SAMPLE_HOTEL_RECORD: dict[str, Any] = {
    "event_id": "chk-1",
    "occurred_at": 1_790_000_000_000,
    "reported_at": 1_790_000_060_000,
    "source": "hotel-1",
    "action": "CHECK_IN",
    "corrects_event_id": None,
    "establishment": {"establishment_id": "EST-1", "name": "Hotel", "region": "Kota Batam", "office": "KANIM-BATAM"},
    "guest": {
        "nationality": "SGP",
        "document_type": "PASSPORT",
        "document_number": "K1234567",
        "given_names": "Wei",
        "surname": "Tan",
        "date_of_birth": 3650,
        "person_key": "",
    },
    "permit_type": "VISA_EXEMPT",
    "room": "101",
    "check_in_date": 20_717,
    "expected_check_out_date": None,
    "check_out_date": None,
}


def sample_bytes() -> bytes:
    return shared_codec().encode("hotel_guest_event", SAMPLE_HOTEL_RECORD)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"", r"no C3 01 header", id="empty"),
        pytest.param(b"\xc3\x01\x00", r"no C3 01 header", id="shorter-than-header"),
        pytest.param(b"Obj\x01" + b"\x00" * 20, r"no C3 01 header", id="avro-container-magic"),
        pytest.param(b"\xc3\x02" + b"\x00" * 20, r"no C3 01 header", id="wrong-version-byte"),
        pytest.param(b'{"event_id": "x"}', r"no C3 01 header", id="json"),
        pytest.param(
            MAGIC + bytes(8) + b"\x00", r"unknown schema fingerprint 0000000000000000", id="unknown-fingerprint"
        ),
    ],
)
def test_decode_rejects_what_is_not_a_pora_event(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        shared_codec().decode(data)
    with pytest.raises(DecodeError, match=message):
        shared_codec().kind_of(data)


def test_decode_names_the_unknown_fingerprint() -> None:
    good = sample_bytes()
    flipped = bytearray(good)
    flipped[HEADER_LEN - 1] ^= 0xFF
    with pytest.raises(DecodeError, match=f"unknown schema fingerprint {bytes(flipped[2:HEADER_LEN]).hex()}"):
        shared_codec().decode(bytes(flipped))


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.data())
def test_decode_rejects_a_truncated_body(kind: str, data: st.DataObject) -> None:
    encoded = shared_codec().encode(kind, data.draw(strategy_for(kind), label="record"))
    cut = data.draw(st.integers(min_value=HEADER_LEN, max_value=len(encoded) - 1), label="cut")
    with pytest.raises(DecodeError, match=f"body of a {kind} record does not decode"):
        shared_codec().decode(encoded[:cut])


@pytest.mark.parametrize("extra", [b"\x00", b"\x02abc", bytes(50)])
def test_decode_rejects_trailing_bytes(extra: bytes) -> None:
    with pytest.raises(DecodeError, match=f"{len(extra)} trailing bytes after a hotel_guest_event record"):
        shared_codec().decode(sample_bytes() + extra)


def test_a_good_sample_decodes() -> None:  # the rejections above are not the codec rejecting everything
    kind, record = shared_codec().decode(sample_bytes())
    assert kind == "hotel_guest_event"
    assert record == decoded(current(kind).parsed, SAMPLE_HOTEL_RECORD)


# ---------------------------------------------------------------- documentation and envelope


def undocumented(schema: Any) -> list[str]:
    """Every record and field of ``schema`` without a non-empty doc, by path."""
    missing: list[str] = []
    seen: set[str] = set()

    def walk(s: Any, path: str) -> None:
        if isinstance(s, list):
            for branch in s:
                walk(branch, path)
            return
        if not isinstance(s, dict):
            return
        kind = s["type"]
        if isinstance(kind, dict | list):
            walk(kind, path)
        elif kind == "record":
            if s["name"] in seen:
                return
            seen.add(s["name"])
            if not str(s.get("doc", "")).strip():
                missing.append(f"record {s['name']} (at {path or '<root>'})")
            for field in s["fields"]:
                sub = f"{path}.{field['name']}" if path else field["name"]
                if not str(field.get("doc", "")).strip():
                    missing.append(f"field {sub}")
                walk(field["type"], sub)
        elif kind == "array":
            walk(s["items"], f"{path}[]")
        elif kind == "map":
            walk(s["values"], f"{path}{{}}")

    walk(schema, "")
    return missing


def test_the_documentation_check_finds_a_missing_doc() -> None:
    schema = parsed(
        {
            "type": "record",
            "name": "R",
            "namespace": "t",
            "doc": "A record.",
            "fields": [
                {"name": "a", "type": "string", "doc": "Documented."},
                {
                    "name": "b",
                    "type": {
                        "type": "array",
                        "items": {
                            "type": "record",
                            "name": "Inner",
                            "fields": [
                                {"name": "c", "type": "string", "doc": " "},
                            ],
                        },
                    },
                    "doc": "Documented.",
                },
            ],
        }
    )
    assert undocumented(schema) == ["record t.Inner (at b[])", "field b[].c"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_record_and_field_is_documented(kind: str) -> None:
    missing = undocumented(current(kind).parsed)
    assert missing == [], f"undocumented in {kind}: {missing}"


TIMESTAMP_MILLIS = {"type": "long", "logicalType": "timestamp-millis"}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_carries_the_event_envelope(kind: str) -> None:
    fields = {f["name"]: f["type"] for f in current(kind).parsed["fields"]}
    assert fields.get("event_id") == "string"
    assert fields.get("occurred_at") == TIMESTAMP_MILLIS
    assert fields.get("reported_at") == TIMESTAMP_MILLIS


# ---------------------------------------------------------------- no sensitive attributes

SENSITIVE = re.compile(r"gender|sex|relig|ethnic|race|tribe|caste|suku|agama|kelamin|kepercayaan|faith", re.IGNORECASE)


def names_in(schema: Any) -> list[str]:
    """Every record, enum and field name, and every enum symbol, in ``schema``."""
    found: list[str] = []

    def walk(s: Any) -> None:
        if isinstance(s, list):
            for branch in s:
                walk(branch)
        elif isinstance(s, dict):
            kind = s["type"]
            if isinstance(kind, dict | list):
                walk(kind)
            elif kind == "record":
                found.append(s["name"])
                for field in s["fields"]:
                    found.append(field["name"])
                    walk(field["type"])
            elif kind == "enum":
                found.append(s["name"])
                found.extend(s["symbols"])
            elif kind == "array":
                walk(s["items"])
            elif kind == "map":
                walk(s["values"])

    walk(schema)
    return found


def sensitive_names(schema: Any) -> list[str]:
    return [name for name in names_in(schema) if SENSITIVE.search(name)]


def test_the_sensitive_attribute_scan_finds_one() -> None:
    schema = parsed(
        {
            "type": "record",
            "name": "P",
            "namespace": "t",
            "fields": [
                {"name": "nationality", "type": "string"},
                {
                    "name": "person",
                    "type": {
                        "type": "record",
                        "name": "Q",
                        "fields": [
                            {"name": "Gender", "type": ["null", "string"]},
                            {"name": "belief", "type": {"type": "enum", "name": "Religion", "symbols": ["A", "B"]}},
                            {"name": "group", "type": {"type": "enum", "name": "G", "symbols": ["ETHNIC_X", "Y"]}},
                        ],
                    },
                },
            ],
        }
    )
    assert sensitive_names(schema) == ["Gender", "t.Religion", "ETHNIC_X"]


@pytest.mark.parametrize("kind", KINDS)
def test_no_schema_describes_ethnicity_religion_or_gender(kind: str) -> None:
    assert sensitive_names(current(kind).parsed) == []
    for old in history(kind):
        assert sensitive_names(old.parsed) == [], f"history v{old.version}"


# ---------------------------------------------------------------- BACKWARD compatibility of the contracts


# Fingerprints of the published versions: data on the topics carries them. Editing a frozen
# history file is allowed only where the canonical form ignores it (docs, key order); when a new
# version is frozen, add its fingerprint here.
PUBLISHED = {
    ("hotel_guest_event", 1): "19cf1e60a36509eb",
    ("border_crossing", 1): "77ada29a6bf79152",
    ("sponsor_report", 1): "eb1cc128a0a477cc",
    ("permit_update", 1): "4258a0b2bfdcaa4f",
    ("agency_report", 1): "047978a8c93464c6",
    ("alert", 1): "7e8f40fb673b3812",
    ("alert_action", 1): "5231d09e97b7d554",
    ("dead_letter", 1): "5bc2b58e77bea074",
    ("clock_tick", 1): "794e0a28db0421ee",
}


def test_frozen_versions_keep_their_published_fingerprints() -> None:
    frozen = {(kind, old.version): old.fingerprint.hex() for kind in KINDS for old in history(kind)}
    assert frozen == PUBLISHED


def test_every_kind_has_frozen_history() -> None:  # else the checks below prove nothing
    assert {kind for kind, _ in HISTORY} == set(KINDS)


@pytest.mark.parametrize(("kind", "version"), HISTORY)
def test_current_schema_reads_every_frozen_version(kind: str, version: int) -> None:
    assert backward_problems(old_contract(kind, version).parsed, current(kind).parsed) == []


def single_object(contract: Contract, record: dict[str, Any]) -> bytes:
    buf = BytesIO()
    buf.write(MAGIC + contract.fingerprint)
    schemaless_writer(buf, parse_schema(contract.parsed), record)
    return buf.getvalue()


@pytest.mark.parametrize(("kind", "version"), HISTORY)
@SETTINGS
@given(data=st.data())
def test_data_written_with_a_frozen_version_decodes_in_the_current_schema(
    kind: str, version: int, data: st.DataObject
) -> None:
    old = old_contract(kind, version)
    record = data.draw(strategy_for(kind, version), label="old record")
    decoded_kind, got = shared_codec().decode(single_object(old, record))
    assert decoded_kind == kind
    assert got == read_as(expand(old.parsed), expand(current(kind).parsed), record)


# ---------------------------------------------------------------- the checker on synthetic changes

BASE: dict[str, Any] = {
    "type": "record",
    "name": "Stay",
    "namespace": "test",
    "doc": "A stay.",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "nights", "type": "int"},
        {
            "name": "guest",
            "type": {
                "type": "record",
                "name": "Guest",
                "fields": [
                    {"name": "nationality", "type": "string"},
                    {
                        "name": "document_type",
                        "type": {"type": "enum", "name": "DocType", "symbols": ["PASSPORT", "VISA", "OTHER"]},
                    },
                    {"name": "room", "type": ["null", "string"], "default": None},
                ],
            },
        },
        {
            "name": "rooms",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Room",
                    "fields": [
                        {"name": "number", "type": "string"},
                    ],
                },
            },
        },
    ],
}


def changed(edit: Any) -> dict[str, Any]:
    schema = copy.deepcopy(BASE)
    edit(schema)
    return schema


def _guest(schema: dict[str, Any]) -> dict[str, Any]:
    guest: dict[str, Any] = schema["fields"][2]["type"]
    return guest


def _doc_type(schema: dict[str, Any]) -> dict[str, Any]:
    doc_type: dict[str, Any] = _guest(schema)["fields"][1]["type"]
    return doc_type


BREAKING = [
    pytest.param(
        changed(lambda s: _guest(s)["fields"].append({"name": "date_of_birth", "type": "string"})),
        ["guest.date_of_birth", "new field without a default"],
        id="new-field-without-default",
    ),
    pytest.param(
        changed(lambda s: _doc_type(s).update(symbols=["PASSPORT", "OTHER"])),
        ["guest.document_type", "enum symbols removed without a default: VISA"],
        id="enum-symbol-removed",
    ),
    pytest.param(
        changed(lambda s: s["fields"][3]["type"]["items"]["fields"][0].update(type="int")),
        ["rooms[].number", "type changed from string to int"],
        id="string-to-int",
    ),
    pytest.param(
        changed(lambda s: _guest(s).update(name="Traveller")),
        ["guest", "renamed from test.Guest to test.Traveller without alias"],
        id="record-renamed",
    ),
    pytest.param(
        changed(lambda s: _guest(s)["fields"][2].update(type="string", default="")),
        ["guest.room", "type changed from null to string"],
        id="optional-made-required",
    ),
]


@pytest.mark.parametrize(("reader", "expected"), BREAKING)
def test_the_checker_names_each_breaking_change(reader: dict[str, Any], expected: list[str]) -> None:
    problems = backward_problems(parsed(BASE), parsed(reader))
    path, text = expected
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: "), problems
    assert text in problems[0]


def _add_optional(s: dict[str, Any]) -> None:
    s["fields"].append({"name": "remarks", "type": ["null", "string"], "default": None})


COMPATIBLE = [
    pytest.param(
        changed(lambda s: _guest(s)["fields"].append({"name": "given_names", "type": "string", "default": ""})),
        id="new-field-with-default",
    ),
    pytest.param(changed(lambda s: s["fields"][1].update(type="long")), id="int-to-long"),
    pytest.param(changed(lambda s: s["fields"][1].update(type="double")), id="int-to-double"),
    pytest.param(changed(lambda s: _doc_type(s)["symbols"].append("SEAMAN_BOOK")), id="enum-symbol-added"),
    pytest.param(changed(_add_optional), id="new-optional-field"),
    pytest.param(changed(lambda s: _guest(s)["fields"].pop(0)), id="field-removed"),
    pytest.param(
        changed(lambda s: _doc_type(s).update(symbols=["PASSPORT", "OTHER"], default="OTHER")),
        id="enum-symbol-removed-with-enum-default",
    ),
    pytest.param(
        changed(lambda s: _guest(s).update(name="Traveller", aliases=["Guest"])), id="record-renamed-with-alias"
    ),
    pytest.param(
        changed(lambda s: s["fields"][0].update(type=["null", "string"], default=None)), id="required-made-optional"
    ),
]


@pytest.mark.parametrize("reader", COMPATIBLE)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_the_checker_accepts_compatible_changes_and_fastavro_agrees(
    reader: dict[str, Any], data: st.DataObject
) -> None:
    writer = parsed(BASE)
    reader_parsed = parsed(reader)
    assert backward_problems(writer, reader_parsed) == []
    record = data.draw(records(writer), label="record")
    buf = BytesIO()
    schemaless_writer(buf, parse_schema(writer), record)
    buf.seek(0)
    got = schemaless_reader(buf, parse_schema(writer), parse_schema(reader_parsed))
    assert got == read_as(expand(writer), expand(reader_parsed), record)


# The registry's schemas are fastavro-parsed: a named type is written in full at its first use and
# by name after it. Schema evolution moves that first use around, so the checker must compare the
# definitions, not the places where each schema happens to spell them out.

IDENTITY_V1: dict[str, Any] = {
    "type": "record",
    "name": "Identity",
    "namespace": "pora",
    "fields": [
        {"name": "nationality", "type": "string"},
    ],
}
IDENTITY_V2_BREAKING: dict[str, Any] = {
    "type": "record",
    "name": "Identity",
    "namespace": "pora",
    "fields": [
        {"name": "nationality", "type": "string"},
        {"name": "document_number", "type": "string"},  # no default: old data cannot be read
    ],
}


def _roster(identity: Any, *extra_first: dict[str, Any], changes: bool = True) -> dict[str, Any]:
    fields = [*extra_first, {"name": "roster", "type": {"type": "array", "items": identity}}]
    if changes:
        fields.append({"name": "changes", "type": {"type": "array", "items": "pora.Identity"}})
    return parsed({"type": "record", "name": "Report", "namespace": "pora", "fields": fields})


def fastavro_reads(writer: dict[str, Any], reader: dict[str, Any], record: dict[str, Any]) -> bool:
    buf = BytesIO()
    schemaless_writer(buf, parse_schema(writer), record)
    buf.seek(0)
    try:
        schemaless_reader(buf, parse_schema(writer), parse_schema(reader))
    except Exception:
        return False
    return True


def test_checker_accepts_a_new_optional_field_that_uses_a_named_type_before_its_old_first_use() -> None:
    writer = _roster(IDENTITY_V1)
    guardian = {"name": "guardian", "type": ["null", IDENTITY_V1], "default": None}
    reader = _roster("pora.Identity", guardian)  # Identity is now defined at 'guardian', referenced at 'roster'
    record = {"roster": [{"nationality": "SGP"}], "changes": [{"nationality": "MYS"}]}
    assert fastavro_reads(writer, reader, record)
    assert backward_problems(writer, reader) == []


def test_checker_finds_a_breaking_change_to_a_named_type_defined_in_a_new_place() -> None:
    old_first = {"name": "contact", "type": IDENTITY_V1}
    writer = _roster("pora.Identity", old_first, changes=False)  # defined at 'contact', referenced at 'roster'
    guardian = {"name": "guardian", "type": ["null", IDENTITY_V2_BREAKING], "default": None}
    reader = _roster("pora.Identity", guardian, changes=False)  # 'contact' dropped, defined at 'guardian'
    record = {"contact": {"nationality": "SGP"}, "roster": [{"nationality": "MYS"}]}
    assert not fastavro_reads(writer, reader, record)
    problems = backward_problems(writer, reader)
    assert any("document_number" in p for p in problems), problems
