"""The Grafana dashboards and their provisioning (monitoring/grafana/): well-formed dashboards whose
data sources are provisioned, Prometheus queries that read only the series Pora exports (names and
labels, from monitoring.catalog), ClickHouse queries that read only the analytics tables, with FINAL,
through the plugin's macros and the dashboard's own variables. The ClickHouse queries themselves run
in tests/integration/test_dashboard_queries.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.sink.tables import TABLES
from monitoring.catalog import promql_metric_names, scraped_names
from streams.detect.config import default_rules
from streams.settings import Settings

GRAFANA = Path(__file__).resolve().parents[2] / "monitoring" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
PROVISIONING = GRAFANA / "provisioning"
TARGET_LABELS = {"job", "instance"}  # Prometheus adds them to every scraped series
# macros of grafana-clickhouse-datasource (pkg/macros/macros.go)
CLICKHOUSE_MACROS = {
    "timeFilter",
    "timeFilter_ms",
    "dateFilter",
    "dateTimeFilter",
    "dt",
    "fromTime",
    "toTime",
    "fromTime_ms",
    "toTime_ms",
    "timeInterval",
    "timeInterval_ms",
    "interval_s",
}
# variables Grafana itself defines
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms"}
Dashboard = dict[str, Any]
Panel = dict[str, Any]


def load(name: str) -> Dashboard:
    doc: Dashboard = json.loads((DASHBOARDS / name).read_text())
    return doc


def dashboards() -> list[str]:
    return sorted(p.name for p in DASHBOARDS.glob("*.json"))


def panels(doc: Dashboard) -> Iterator[Panel]:
    """Every panel, rows' collapsed children included."""
    for p in doc["panels"]:
        yield p
        yield from p.get("panels", [])


def datasources() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yml").read_text())
    return {d["uid"]: d for d in doc["datasources"]}


def targets(doc: Dashboard, ds_type: str) -> Iterator[tuple[Panel, dict[str, Any]]]:
    for p in panels(doc):
        if p["type"] == "row":
            continue
        for t in p.get("targets", []):
            if (t.get("datasource") or p["datasource"])["type"] == ds_type:
                yield p, t


def variables(doc: Dashboard) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in doc["templating"]["list"]}


# ------------------------------------------------------------------------------------ provisioning


def test_both_dashboards_are_there() -> None:
    assert {"pipeline-health.json", "domain.json"} <= set(dashboards())


def test_data_sources_are_provisioned_without_a_literal_password() -> None:
    ds = datasources()
    assert set(ds) == {"prometheus", "clickhouse"}
    prom = ds["prometheus"]
    assert prom["type"] == "prometheus" and prom["url"] == "http://prometheus:9090"
    ch = ds["clickhouse"]
    assert ch["type"] == "grafana-clickhouse-datasource"
    assert {k: ch["jsonData"][k] for k in ("host", "port", "protocol")} == {
        "host": "clickhouse",
        "port": 9000,
        "protocol": "native",
    }
    assert "password" not in ch["jsonData"]
    assert re.fullmatch(r"\$__env\{[A-Z_][A-Z0-9_]*\}", ch["secureJsonData"]["password"])
    assert ch["jsonData"]["defaultDatabase"] == Settings.model_fields["clickhouse_database"].default


def test_dashboard_provider_loads_the_mounted_directory() -> None:
    doc = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


# ------------------------------------------------------------------------------------ every dashboard


@pytest.mark.parametrize("name", dashboards())
def test_dashboard_is_well_formed(name: str) -> None:
    doc = load(name)
    assert doc.get("id") is None  # Grafana assigns it
    assert doc["uid"] and doc["title"] and doc["refresh"]
    assert doc["schemaVersion"] >= 39
    ids = [p["id"] for p in panels(doc)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    assert all(isinstance(i, int) for i in ids)


@pytest.mark.parametrize("name", dashboards())
def test_panels_sit_on_the_grid_without_overlapping(name: str) -> None:
    boxes: list[tuple[str, dict[str, int]]] = []
    for p in load(name)["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for title, other in boxes:
            overlap_x = g["x"] < other["x"] + other["w"] and other["x"] < g["x"] + g["w"]
            overlap_y = g["y"] < other["y"] + other["h"] and other["y"] < g["y"] + g["h"]
            assert not (overlap_x and overlap_y), f"{p['title']!r} overlaps {title!r}"
        boxes.append((p["title"], g))


@pytest.mark.parametrize("name", dashboards())
def test_every_panel_uses_a_provisioned_data_source(name: str) -> None:
    ds = datasources()
    for p in panels(load(name)):
        if p["type"] == "row":
            continue
        assert p["title"] and p["targets"], p["id"]
        refs = [p["datasource"], *(t.get("datasource", p["datasource"]) for t in p["targets"])]
        for ref in refs:
            assert ref["uid"] in ds, f"{p['title']!r}: data source {ref['uid']!r} is not provisioned"
            assert ref["type"] == ds[ref["uid"]]["type"], p["title"]
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), p["title"]


# ------------------------------------------------------------------------------------ PromQL

_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
_GROUPING = re.compile(r"\b(by|without)\s*\(([^)]*)\)")
_AGGREGATION_BEFORE = re.compile(
    r"\b(sum|min|max|avg|count|group|stddev|stdvar|topk|bottomk|quantile|count_values)\s*$"
)
_LEGEND = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def _group_after(expr: str, start: int) -> str:
    """The balanced parenthesised text that opens at or after ``start``."""
    i = expr.index("(", start)
    depth = 0
    for j in range(i, len(expr)):
        depth += {"(": 1, ")": -1}.get(expr[j], 0)
        if depth == 0:
            return expr[i : j + 1]
    raise ValueError(f"unbalanced parentheses in {expr!r}")


def _group_before(expr: str, end: int) -> str:
    """The balanced parenthesised text that closes right before ``end``."""
    j = expr.rindex(")", 0, end)
    depth = 0
    for i in range(j, -1, -1):
        depth += {")": 1, "(": -1}.get(expr[i], 0)
        if depth == 0:
            return expr[i : j + 1]
    raise ValueError(f"unbalanced parentheses in {expr!r}")


def _series(expr: str) -> set[str]:
    """The series an expression reads: Pora's (monitoring.catalog) and Prometheus' own ``up``."""
    plain = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return promql_metric_names(expr) | ({"up"} if re.search(r"(?<![\w:])up\s*[{\[)\s]", plain + " ") else set())


def promql_problems(expr: str, legend: str = "") -> list[str]:
    """What is wrong with ``expr`` against the series Pora exports: unknown series, label matchers,
    ``by``/``without`` labels or legend labels that the series read there do not carry. A rough
    reading of PromQL (no full parser), strict where it looks."""
    known = scraped_names()
    labels_of = {name: labels | TARGET_LABELS for name, labels in known.items()} | {"up": set(TARGET_LABELS)}
    problems = []
    series = _series(expr)
    for name in sorted(series - set(labels_of)):
        problems.append(f"unknown series {name}")
    if not series:
        problems.append("reads no Pora series")
    for name, body in _SELECTOR.findall(expr):
        if name in labels_of:
            problems += [
                f"{name} has no label {label!r}" for label in _MATCHER.findall(body) if label not in labels_of[name]
            ]
    grouped: set[str] = set()
    for m in _GROUPING.finditer(expr):
        labels = {x.strip() for x in m.group(2).split(",") if x.strip()}
        grouped |= labels
        if _AGGREGATION_BEFORE.search(expr[: m.start()]):  # sum by (x) (arg)
            argument = _group_after(expr, m.end())
        else:  # sum(arg) by (x)
            argument = _group_before(expr, m.start())
        for name in _series(argument) & set(labels_of):
            problems += [f"{m.group(1)} ({label}): {name} has no such label" for label in labels - labels_of[name]]
    available = grouped or set().union(*(labels_of.get(name, set()) for name in series))
    problems += [
        f"legend label {label!r} is not on the result" for label in _LEGEND.findall(legend) if label not in available
    ]
    return problems


def test_the_promql_check_can_fail() -> None:
    assert promql_problems("sum(rate(pora_sink_rows_total[5m]))") == []
    assert promql_problems("rate(pora_no_such_total[5m])") == ["unknown series pora_no_such_total"]
    assert promql_problems('pora_sink_rows_total{tabel="alerts"}') == ["pora_sink_rows_total has no label 'tabel'"]
    assert promql_problems("sum by (rule) (rate(pora_alerts_total[5m]))") != []
    assert promql_problems("sum(rate(pora_alerts_total[5m])) by (rule)") != []
    assert promql_problems("histogram_quantile(0.9, sum by (le) (rate(pora_sink_insert_seconds_bucket[5m])))") == []
    assert promql_problems("sum by (route) (rate(pora_sink_insert_seconds_bucket[5m]))") != []
    assert promql_problems("sum by (table) (rate(pora_sink_rows_total[5m]))", "{{table}} {{stage}}") != []
    assert promql_problems('up{job="pora-worker"}', "{{instance}}") == []
    assert promql_problems("vector(1)") == ["reads no Pora series"]


def test_every_prometheus_query_reads_series_pora_exports() -> None:
    doc = load("pipeline-health.json")
    found = list(targets(doc, "prometheus"))
    assert len(found) >= 25
    problems = []
    for panel, target in found:
        problems += [
            f"{panel['title']!r}: {p}" for p in promql_problems(target["expr"], target.get("legendFormat", ""))
        ]
        used = set(re.findall(r"\$(\w+)", target["expr"]))
        assert used <= GRAFANA_VARIABLES, (panel["title"], used)
    assert problems == []


def test_pipeline_health_shows_what_operators_need() -> None:
    """The brief of the dashboard: each of these series is on some panel."""
    exprs = " ".join(t["expr"] for _, t in targets(load("pipeline-health.json"), "prometheus"))
    read = promql_metric_names(exprs)
    wanted = {
        "pora_gateway_events_accepted_total",
        "pora_gateway_events_rejected_total",
        "pora_dead_letters_total",
        "pora_alerts_total",
        "pora_event_to_alert_seconds_bucket",
        "pora_worker_watermark_delay_seconds",
        "pora_consumer_lag_records",
        "pora_sink_batch_rows_bucket",
        "pora_sink_insert_seconds_bucket",
        "pora_sink_rows_total",
        "pora_sink_insert_retries_total",
        "pora_sink_paused",
        "pora_feed_users_connected",
        "pora_feed_streams_open",
        "pora_feed_actions_total",
    }
    assert wanted <= read, wanted - read
    for job in ("pora-gateway", "pora-worker", "pora-sink", "pora-feed"):
        assert f'up{{job="{job}"}}' in exprs, job


# ------------------------------------------------------------------------------------ ClickHouse SQL

_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def sql_targets() -> list[tuple[Panel, dict[str, Any]]]:
    return list(targets(load("domain.json"), "grafana-clickhouse-datasource"))


def test_domain_dashboard_variables() -> None:
    """Constants pin what the SQL shares with the rules and the sink's settings; ``office`` filters."""
    v = variables(load("domain.json"))
    rules = default_rules()
    assert v["database"]["type"] == "constant"
    assert v["database"]["query"] == Settings.model_fields["clickhouse_database"].default
    assert float(v["deadline_hours"]["query"]) == rules.reporting.hotel_deadline_hours
    assert int(v["escalate_days"]["query"]) == rules.overstay.escalate_at_days
    office = v["office"]
    assert office["type"] == "query" and office["multi"] and office["includeAll"]
    assert office["allValue"] == "__all"  # the SQL's "no filter" value
    assert office["datasource"]["uid"] in datasources()
    assert set(_VARIABLE.findall(office["query"])) == {("database", "", "")}


def test_sql_panels_use_the_plugin_macros_and_the_dashboard_variables_only() -> None:
    names = set(variables(load("domain.json")))
    found = sql_targets()
    assert len(found) >= 15
    for panel, target in found:
        sql = target["rawSql"]
        assert target["editorType"] == "sql" and sql.strip(), panel["title"]
        macros = set(re.findall(r"\$__(\w+)", sql))
        assert macros <= CLICKHOUSE_MACROS, (panel["title"], macros - CLICKHOUSE_MACROS)
        assert macros & {"timeFilter", "fromTime", "toTime"}, f"{panel['title']!r} ignores the time range"
        used = {m[0] or m[2] for m in _VARIABLE.findall(sql)} - {f"__{m}" for m in macros}
        assert used <= names, (panel["title"], used - names)
        assert "${office:singlequote}" in sql, f"{panel['title']!r} ignores the office filter"
        assert "--" not in sql and "/*" not in sql  # the plugin strips comments before expanding macros


def test_sql_panels_read_the_analytics_tables_with_final() -> None:
    tables = {t.name for t in TABLES.values()}
    for panel, target in sql_targets():
        refs = re.findall(r"\$\{database\}\.(\w+)(\s+FINAL\b)?", target["rawSql"])
        assert refs, panel["title"]
        for table, final in refs:
            assert table in tables, (panel["title"], table)
            assert final, f"{panel['title']!r} reads {table} without FINAL: duplicates would count twice"


def test_time_series_panels_return_time_first() -> None:
    for panel, target in sql_targets():
        series = panel["type"] == "timeseries"
        assert target["format"] == (0 if series else 1), panel["title"]
        assert target["queryType"] == ("timeseries" if series else "table"), panel["title"]
        if series:
            flat = target["rawSql"]
            while re.search(r"\([^()]*\)", flat):  # no parentheses, so the first comma ends the first column
                flat = re.sub(r"\([^()]*\)", "", flat)
            assert re.match(r"\s*SELECT\s+[^,]* AS time,", flat), f"{panel['title']!r}: the first column is not time"
            assert re.search(r"ORDER BY time\b", target["rawSql"]), panel["title"]


def test_promtool_parses_every_prometheus_query(tmp_path: Path) -> None:
    """Each query as a recording rule (Grafana's range variables set to 5m), for `promtool check rules`:
    PromQL that does not parse fails here rather than on the dashboard."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: Debian's `prometheus` package has it (.ci/run installs it)"
    rules = [
        {"record": f"pora_dashboard:query_{i}", "expr": re.sub(r"\$\{?__\w+\}?", "5m", target["expr"])}
        for i, (_, target) in enumerate(targets(load("pipeline-health.json"), "prometheus"))
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout
