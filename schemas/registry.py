"""The event contracts: each kind's Avro schema, parsed once, with its fingerprint and history.

Schemas live beside this module as ``<kind>.avsc``; shared named types as ``pora.<Name>.avsc``
(fastavro's ``load_schema`` inlines them). Each published version is frozen, fully expanded, in
``history/<kind>.v<N>.avsc`` so that readers can still decode data written with it and a test can
prove that the current schema reads it (BACKWARD compatibility).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro.schema import fingerprint, load_schema, parse_schema, to_parsing_canonical_form

SCHEMA_DIR = Path(__file__).resolve().parent
HISTORY_DIR = SCHEMA_DIR / "history"

KINDS: tuple[str, ...] = (
    "hotel_guest_event",
    "border_crossing",
    "sponsor_report",
    "permit_update",
    "agency_report",
    "alert",
    "alert_action",
    "dead_letter",
    "clock_tick",
)

_VERSION_FILE = re.compile(r"^(?P<kind>[a-z_]+)\.v(?P<version>\d+)\.avsc$")


@dataclass(frozen=True)
class Contract:
    kind: str
    version: int  # 0 = the working copy, not yet frozen in history/
    parsed: dict[str, Any]
    canonical: str
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO, as single-object encoding writes it

    @property
    def name(self) -> str:
        return str(self.parsed["name"])


def _contract(kind: str, version: int, parsed: dict[str, Any]) -> Contract:
    canonical = to_parsing_canonical_form(parsed)
    return Contract(
        kind=kind,
        version=version,
        parsed=parsed,
        canonical=canonical,
        fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
    )


def _as_record(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise TypeError("an event contract must be an Avro record schema")
    return schema


@cache
def current(kind: str) -> Contract:
    """The schema that writers use now."""
    if kind not in KINDS:
        raise KeyError(f"unknown event kind {kind!r}; known: {', '.join(KINDS)}")
    parsed = _as_record(load_schema(str(SCHEMA_DIR / f"{kind}.avsc"), _write_hint=False))
    frozen = history(kind)
    version = frozen[-1].version if frozen and frozen[-1].canonical == to_parsing_canonical_form(parsed) else 0
    return _contract(kind, version, parsed)


@cache
def history(kind: str) -> tuple[Contract, ...]:
    """Every frozen version of a kind, oldest first."""
    found: list[Contract] = []
    for path in HISTORY_DIR.glob(f"{kind}.v*.avsc"):
        m = _VERSION_FILE.match(path.name)
        if m is None or m["kind"] != kind:
            continue
        parsed = _as_record(parse_schema(json.loads(path.read_text()), _write_hint=False))
        found.append(_contract(kind, int(m["version"]), parsed))
    return tuple(sorted(found, key=lambda c: c.version))


def expanded_json(kind: str) -> str:
    """The current schema with every named type inlined, as frozen into history/."""
    return json.dumps(current(kind).parsed, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def freeze(kind: str) -> Path | None:
    """Write the current schema as the next history version, unless it is already the latest."""
    frozen = history(kind)
    if frozen and frozen[-1].canonical == current(kind).canonical:
        return None
    path = HISTORY_DIR / f"{kind}.v{(frozen[-1].version if frozen else 0) + 1}.avsc"
    path.write_text(expanded_json(kind))
    history.cache_clear()
    current.cache_clear()
    return path


_PRIMITIVE_NAMES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def expand_named(schema: Any, named: dict[str, Any]) -> Any:
    """Inline references to named types (Avro writes a named type in full only once)."""
    if isinstance(schema, str):
        return schema if schema in _PRIMITIVE_NAMES else named[schema]
    if isinstance(schema, list):
        return [expand_named(b, named) for b in schema]
    kind = schema["type"]
    if kind == "record":
        out = {**schema, "fields": []}
        named[schema["name"]] = out
        out["fields"] = [{**f, "type": expand_named(f["type"], named)} for f in schema["fields"]]
        return out
    if kind in ("enum", "fixed"):
        named[schema["name"]] = schema
        return schema
    if kind == "array":
        return {**schema, "items": expand_named(schema["items"], named)}
    if kind == "map":
        return {**schema, "values": expand_named(schema["values"], named)}
    if isinstance(kind, dict | list):
        return expand_named(kind, named)
    return schema
