"""The sink's tables: rows match the migration's columns, and no table holds who a person is."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from connectors.gateway.items import Item
from connectors.gateway.prepare import Preparer
from connectors.replay import REPLAY_SOURCE
from connectors.samples import SampleFactory
from connectors.sink.migrate import MIGRATIONS_DIR, migrations
from connectors.sink.tables import SINK_TOPICS, TABLES
from schemas.codec import codec
from streams import topics
from streams.detect.alerts import Evidence, Finding, alert_record

IDENTITY_COLUMNS = {"given_names", "surname", "document_number", "document_type", "date_of_birth", "name_on_document"}


def ddl_columns() -> dict[str, tuple[str, ...]]:
    sql = "\n".join(m.sql for m in migrations())
    found = {}
    for name, body in re.findall(r"CREATE TABLE IF NOT EXISTS \{db\}\.(\w+) \((.*?)\) ENGINE", sql, re.S):
        found[name] = tuple(line.strip().split()[0] for line in body.strip().splitlines())
    return found


def test_every_table_has_the_columns_its_rows_fill() -> None:
    ddl = ddl_columns()
    assert set(ddl) == {t.name for t in TABLES.values()}
    for t in TABLES.values():
        assert ddl[t.name] == t.columns, t.name


def test_no_table_column_names_a_person() -> None:
    for t in TABLES.values():
        assert not IDENTITY_COLUMNS & set(t.columns), t.name


def test_the_sink_reads_every_public_topic() -> None:
    assert set(SINK_TOPICS) == {t.name for t in topics.PUBLIC}
    assert {t.schema for t in topics.PUBLIC} <= set(TABLES) | {"clock_tick"}


def _encoded(kind: str, event: dict[str, Any]) -> bytes:
    out = Preparer(b"s" * 32, 10**12).prepare(REPLAY_SOURCE, kind, [Item(event)], int(time.time() * 1000))
    assert not out.rejections, out.rejections
    return out.ready[0].value


def _samples() -> list[tuple[str, dict[str, Any]]]:
    f = SampleFactory(seed=3)
    traveller = f.identity("AUS")
    return [
        ("border_crossing", f.arrival(traveller=traveller)),
        ("border_crossing", f.citizen_departure(risky=True)),
        ("hotel_guest_event", f.hotel_check_in(guest=traveller)),
        ("permit_update", f.permit_extension(holder=traveller)),
        ("sponsor_report", f.sponsor_report(roster=3)),
        ("agency_report", f.agency_report(subject=traveller)),
    ]


@pytest.mark.parametrize("index", range(6))
def test_a_row_per_event_kind_without_names_or_document_numbers(index: int) -> None:
    kind, event = _samples()[index]
    raw = _encoded(kind, event)
    got_kind, record = codec().decode(raw, ms_times=True)
    table = TABLES[got_kind]
    row = table.row(record)
    assert len(row) == len(table.columns)
    values = dict(zip(table.columns, row, strict=True))
    assert values["event_id"] == record["event_id"]
    assert values["occurred_at"] == record["occurred_at"] // 1000  # epoch seconds
    flat = repr(row)
    identities = [event.get(k) for k in ("traveller", "guest", "holder", "subject") if event.get(k)]
    identities += [e["foreigner"] for e in event.get("roster", [])]
    assert identities
    for ident in identities:
        assert ident["document_number"] not in flat
        assert ident["surname"] not in flat
        assert ident["given_names"] not in flat


def test_alert_rows_keep_evidence_and_reasons() -> None:
    finding = Finding(
        "overstay",
        "2026-11-30",
        "HIGH",
        "KANIM-BATAM",
        {"person_key": "pk_1"},
        ["authorised stay ended 2026-11-30"],
        [Evidence("days_over", "3"), Evidence("charge_idr", "3000000")],
        window_start=1_796_000_000_000,
    )
    record = alert_record(
        finding, status="RAISED", step=0, version="v", at=1_796_000_000_000, emitted_at=1_796_000_001_000
    )
    _, decoded = codec().decode(codec().encode("alert", record), ms_times=True)
    values = dict(zip(TABLES["alert"].columns, TABLES["alert"].row(decoded), strict=True))
    assert values["evidence_names"] == ["days_over", "charge_idr", "window"]
    assert values["evidence_values"] == ["3", "3000000", "2026-11-30"]
    assert values["window_start"] == 1_796_000_000 and values["window_end"] is None
    assert values["person_key"] == "pk_1" and values["reasons"] == ["authorised stay ended 2026-11-30"]


def test_migrations_split_into_statements_without_comments() -> None:
    (first,) = [m for m in migrations() if m.version == 1]
    statements = first.statements("pora_x")
    assert len(statements) == len(TABLES)
    assert all(s.startswith("CREATE TABLE IF NOT EXISTS pora_x.") for s in statements)
    assert not any("--" in s or "{db}" in s for s in statements)
    assert MIGRATIONS_DIR.is_dir()
