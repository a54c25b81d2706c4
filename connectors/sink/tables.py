"""From a decoded record to a table row: one table per event kind (see migrations/0001_initial.sql).

Records come from ``Codec.decode(..., ms_times=True)``: timestamps are epoch milliseconds, written
as epoch seconds (both engines take integers for DateTime, and no datetime objects are made).

Only the pseudonymous ``person_key`` and the nationality of a person reach a table; names, document
numbers and dates of birth stay on the topics, which officers reach through the feed by role.
Dead letters are refused input, so anything may be in them: the table keeps where, why and how big,
and of each error the field (a path of the contracts' field names, else ``<unknown>``) and the problem
with every quoted value replaced by ``'…'``; the raw input and the values stay on the topic.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from schemas.registry import KINDS, current
from streams import topics

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Table:
    name: str
    kind: str  # the Avro kind its rows come from
    columns: tuple[str, ...]
    row: Callable[[dict[str, Any]], Row]


def _ident(i: dict[str, Any] | None) -> tuple[Any, Any]:
    return (i["person_key"], i["nationality"]) if i else (None, None)


def _s(ms: int | None) -> int | None:
    """Epoch seconds for a DateTime column, from the epoch milliseconds the sink decodes."""
    return None if ms is None else ms // 1000


def _common(r: dict[str, Any]) -> Row:
    return r["event_id"], r["occurred_at"] // 1000, r["reported_at"] // 1000


def _hotel(r: dict[str, Any]) -> Row:
    est = r["establishment"]
    return (
        *_common(r),
        r["source"],
        r["action"],
        r.get("corrects_event_id"),
        est["establishment_id"],
        est["name"],
        est["region"],
        est["office"],
        *_ident(r["guest"]),
        r.get("permit_type"),
        r["check_in_date"],
        r.get("expected_check_out_date"),
        r.get("check_out_date"),
    )


def _flag(v: bool | None) -> int | None:
    return None if v is None else int(v)


def _crossing(r: dict[str, Any]) -> Row:
    cp, arr, dep = r["checkpoint"], r.get("arrival") or {}, r.get("departure") or {}
    return (
        *_common(r),
        r["source"],
        r["direction"],
        cp["checkpoint_id"],
        cp["kind"],
        cp["office"],
        *_ident(r["traveller"]),
        arr.get("permit_type"),
        arr.get("authorised_until"),
        arr.get("declared_establishment_id"),
        dep.get("destination_country"),
        list(dep.get("onward_route") or ()),
        _flag(dep.get("return_ticket")),
        dep.get("purpose"),
        dep.get("group_reference"),
        dep.get("agent_reference"),
        dep.get("booking_reference"),
        dep.get("pmi_placement_id"),
    )


def _permit(r: dict[str, Any]) -> Row:
    return (
        *_common(r),
        r["source"],
        r["action"],
        r["permit_type"],
        *_ident(r["holder"]),
        r.get("valid_from"),
        r["valid_until"],
        r.get("sponsor_id"),
        r["office"],
    )


def _sponsor(r: dict[str, Any]) -> Row:
    sp = r["sponsor"]
    return (
        *_common(r),
        r["source"],
        sp["sponsor_id"],
        sp["name"],
        sp["region"],
        sp["office"],
        r["period_start"],
        r["period_end"],
        [e["foreigner"]["person_key"] for e in r["roster"]],
        [c["kind"] for c in r["changes"]],
        [c["foreigner"]["person_key"] for c in r["changes"]],
    )


def _agency(r: dict[str, Any]) -> Row:
    ag, loc = r["agency"], r["location"]
    return (
        *_common(r),
        r["source"],
        ag["agency_id"],
        ag["kind"],
        r["observation"],
        loc["region"],
        loc["office"],
        *_ident(r.get("subject")),
        r.get("establishment_id"),
        r.get("sponsor_id"),
    )


def _alert(r: dict[str, Any]) -> Row:
    s = r["subject"]
    return (
        *_common(r),
        r["alert_id"],
        r["rule_id"],
        r["rule_version"],
        r["status"],
        r["severity"],
        r["office"],
        s.get("person_key"),
        s.get("establishment_id"),
        s.get("sponsor_id"),
        s.get("checkpoint_id"),
        _s(r.get("window_start")),
        _s(r.get("window_end")),
        [e["name"] for e in r["evidence"]],
        [e["value"] for e in r["evidence"]],
        list(r["reasons"]),
    )


def _action(r: dict[str, Any]) -> Row:
    return (
        *_common(r),
        r["alert_id"],
        r["rule_id"],
        r["office"],
        r["action"],
        r["actor"],
        r["actor_role"],
        r.get("assignee"),
        r.get("disposition"),
    )


def _field_names(schema: Any) -> Iterator[str]:
    if isinstance(schema, list):
        for branch in schema:
            yield from _field_names(branch)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            for f in schema["fields"]:
                yield f["name"]
                yield from _field_names(f["type"])
        elif schema.get("type") == "array":
            yield from _field_names(schema["items"])


@cache
def contract_field_names() -> frozenset[str]:
    """Every field name of every contract: what a dead letter's field path may be made of."""
    return frozenset(name for kind in KINDS for name in _field_names(current(kind).parsed))


_LABEL = re.compile(r"^((?:row|line) \d+)(?:: |$)")  # a CSV row or line, before the field
_PLACEHOLDER = re.compile(r"^<[a-z]+>$")  # <body>, <header>, <row>, <file>, <raw>, <record>
_REQUEST_PARTS = frozenset({"Content-Type", "Authorization", "kind"})
_SEGMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[\d*\])*$")
_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'" + r'|"(?:[^"\\\n]|\\.)*"')  # a Python repr of a text
UNKNOWN_FIELD = "<unknown>"
REDACTED = "'…'"


def redact_field(field: str) -> str:
    """The path of a bad field, as far as it is made of contract field names: a key the sender
    made up (a passport number used as a JSON key, a guest's row read as a CSV header) is not."""
    label = _LABEL.match(field)
    prefix = ""
    if label is not None:
        prefix, field = label.group(1), field[label.end() :]
        if not field:
            return prefix
        prefix += ": "
    if _PLACEHOLDER.match(field) or field in _REQUEST_PARTS:
        return prefix + field
    known = contract_field_names()
    kept: list[str] = []
    for part in field.split("."):
        m = _SEGMENT.match(part)
        if m is None or m.group(1) not in known:
            kept.append(UNKNOWN_FIELD)
            break
        kept.append(part)
    return prefix + ".".join(kept)


def redact_problem(problem: str) -> str:
    """The problem with every quoted value (the validators quote each value they show) replaced."""
    return _QUOTED.sub(REDACTED, problem)


def _dead_letter(r: dict[str, Any]) -> Row:
    return (
        *_common(r),
        r["source"],
        r["step"],
        r.get("kind"),
        r["reason"],
        [redact_field(e["field"]) for e in r["errors"]],
        [redact_problem(e["problem"]) for e in r["errors"]],
        r["content_type"],
        len(r["raw"]),
    )


_C = ("event_id", "occurred_at", "reported_at")

TABLES: dict[str, Table] = {
    t.kind: t
    for t in (
        Table(
            "hotel_guest_events",
            "hotel_guest_event",
            (
                *_C,
                "source",
                "action",
                "corrects_event_id",
                "establishment_id",
                "establishment_name",
                "region",
                "office",
                "person_key",
                "nationality",
                "permit_type",
                "check_in_date",
                "expected_check_out_date",
                "check_out_date",
            ),
            _hotel,
        ),
        Table(
            "border_crossings",
            "border_crossing",
            (
                *_C,
                "source",
                "direction",
                "checkpoint_id",
                "checkpoint_kind",
                "office",
                "person_key",
                "nationality",
                "permit_type",
                "authorised_until",
                "declared_establishment_id",
                "destination_country",
                "onward_route",
                "return_ticket",
                "purpose",
                "group_reference",
                "agent_reference",
                "booking_reference",
                "pmi_placement_id",
            ),
            _crossing,
        ),
        Table(
            "permit_updates",
            "permit_update",
            (
                *_C,
                "source",
                "action",
                "permit_type",
                "person_key",
                "nationality",
                "valid_from",
                "valid_until",
                "sponsor_id",
                "office",
            ),
            _permit,
        ),
        Table(
            "sponsor_reports",
            "sponsor_report",
            (
                *_C,
                "source",
                "sponsor_id",
                "sponsor_name",
                "region",
                "office",
                "period_start",
                "period_end",
                "roster_person_keys",
                "change_kinds",
                "change_person_keys",
            ),
            _sponsor,
        ),
        Table(
            "agency_reports",
            "agency_report",
            (
                *_C,
                "source",
                "agency_id",
                "agency_kind",
                "observation",
                "region",
                "office",
                "person_key",
                "nationality",
                "establishment_id",
                "sponsor_id",
            ),
            _agency,
        ),
        Table(
            "alerts",
            "alert",
            (
                *_C,
                "alert_id",
                "rule_id",
                "rule_version",
                "status",
                "severity",
                "office",
                "person_key",
                "establishment_id",
                "sponsor_id",
                "checkpoint_id",
                "window_start",
                "window_end",
                "evidence_names",
                "evidence_values",
                "reasons",
            ),
            _alert,
        ),
        Table(
            "alert_actions",
            "alert_action",
            (*_C, "alert_id", "rule_id", "office", "action", "actor", "actor_role", "assignee", "disposition"),
            _action,
        ),
        Table(
            "dead_letters",
            "dead_letter",
            (
                *_C,
                "source",
                "step",
                "kind",
                "reason",
                "error_fields",
                "error_problems",
                "content_type",
                "raw_bytes",
            ),
            _dead_letter,
        ),
    )
}

# the topics the sink reads: every public topic (each carries one kind, plus clock ticks it skips)
SINK_TOPICS: tuple[str, ...] = tuple(t.name for t in topics.PUBLIC)
