"""The named reports on a real ClickHouse server (the 18.16 Debian package here) and on chdb:
the same data set gives the expected numbers and byte-identical output in every format."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from click.testing import CliRunner

from connectors.sink.reports import FORMATS, REPORTS, render

if TYPE_CHECKING:
    from connectors.sink.localserver import ClickHouseServer
    from connectors.sink.store import ChdbStore, ServerStore


def _unit_data() -> ModuleType:
    """tests/unit/test_reports.py: the data set and the expected rows (loaded by path, not collected)."""
    path = Path(__file__).resolve().parents[1] / "unit" / "test_reports.py"
    spec = importlib.util.spec_from_file_location("reports_data_set", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DATA = _unit_data()


def test_reports_on_the_server_match_chdb(server_store: ServerStore, chdb_store: ChdbStore) -> None:
    DATA.load(server_store)
    DATA.load(chdb_store)
    assert {name for name, _ in DATA.CASES} == set(REPORTS)
    for case, rows in DATA.CASES.items():
        on_server = DATA.run_case(server_store, *case)
        on_chdb = DATA.run_case(chdb_store, *case)
        assert on_server.columns == DATA.COLUMNS[case[0]], case
        assert on_server.rows == rows, case
        for fmt in FORMATS:
            assert render(on_server, fmt) == render(on_chdb, fmt), (case, fmt)


def test_empty_server_database_gives_empty_reports(server_store: ServerStore) -> None:
    from connectors.sink.migrate import migrate

    migrate(server_store)
    for name in REPORTS:
        result = DATA.run_case(server_store, name, ())
        assert result.rows == [] and result.columns == DATA.COLUMNS[name], name


def test_cli_report_on_the_server(
    clickhouse_server: ClickHouseServer, server_store: ServerStore, tmp_path: Path
) -> None:
    from streams.cli import main

    DATA.load(server_store)
    env = {
        "PORA_STATE_DIR": str(tmp_path),
        "PORA_CLICKHOUSE_URL": f"clickhouse://{clickhouse_server.host}:{clickhouse_server.port}",
        "PORA_CLICKHOUSE_DATABASE": server_store.database,
    }
    args = ["report", "tppo-screening", "--office", "KANIM-SH", "--to", "2026-03-31", "--format", "json"]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        {
            "office": "KANIM-SH",
            "checkpoint_id": "TPI-SH",
            "destination": "SAU",
            "route": "",
            "candidates": 1,
            "open": 0,
            "cleared": 0,
            "delayed_for_interview": 0,
            "referred": 0,
            "confirmed": 0,
            "false_positive": 1,
        }
    ]
