"""The Prometheus alert rules (monitoring/prometheus/alerts.yml) against promtool, their unit tests,
the runbook and the metrics Pora really exports.

promtool comes from Debian's ``prometheus`` package; without it these tests fail (they do not skip),
so a machine that cannot check the rules says so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.catalog import promql_metric_names, scraped_names

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "monitoring" / "prometheus" / "alerts.test.yml"
RUNBOOK = ROOT / "monitoring" / "RUNBOOK.md"
RUNBOOK_URL = "https://github.com/pora/pora/blob/main/monitoring/RUNBOOK.md#"

JOBS = {"pora-gateway", "pora-worker", "pora-sink", "pora-feed"}
TARGET_LABELS = {"job", "instance"}  # added by the scrape, on every series
SEVERITIES = {"critical", "warning"}
# PromQL's aggregation operators and keywords
AGGREGATIONS = "sum|avg|min|max|count|group|stddev|stdvar|topk|bottomk|quantile|count_values"
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}


# ------------------------------------------------------------------------------------------ helpers


@cache
def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


@cache
def rule_tests() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(RULE_TESTS.read_text())
    return doc


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not on PATH: install Debian's `prometheus` package (apt-get install prometheus), "
            "which provides it, to check the alert rules"
        )
    return path


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file: lower case, punctuation dropped,
    spaces to hyphens, a repeated anchor suffixed -1, -2, ...."""
    anchors: set[str] = set()
    seen: Counter[str] = Counter()
    in_code = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_code or m is None:
            continue
        text = re.sub(r"`|\*|\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1)).strip().lower()
        slug = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN").replace(" ", "-")
        anchors.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return anchors


def _blank_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def _balanced(expr: str, start: int) -> tuple[str, int]:
    """The text inside the parenthesis opening at ``start``, and the index after its close."""
    assert expr[start] == "(", expr[start:]
    depth = 0
    for i in range(start, len(expr)):
        depth += {"(": 1, ")": -1}.get(expr[i], 0)
        if depth == 0:
            return expr[start + 1 : i], i + 1
    raise ValueError(f"unbalanced parentheses in {expr!r}")


def _label_list(text: str) -> set[str]:
    return {name.strip() for name in text.split(",") if name.strip()}


def aggregations(expr: str) -> list[tuple[set[str], str]]:
    """(labels of its by/without clause, its argument) for every aggregation with such a clause,
    in either form: ``sum by (a) (x)`` and ``sum(x) by (a)``."""
    expr = _blank_strings(expr)
    found = []
    for m in re.finditer(rf"\b(?:{AGGREGATIONS})\s*", expr):
        at = m.end()
        clause = re.compile(r"(?:by|without)\s*\(([^)]*)\)\s*")
        if c := clause.match(expr, at):  # prefix form
            if expr[c.end() : c.end() + 1] == "(":
                arg, _ = _balanced(expr, c.end())
                found.append((_label_list(c.group(1)), arg))
        elif expr[at : at + 1] == "(":  # postfix form, or no clause
            arg, after = _balanced(expr, at)
            if c := re.compile(r"\s*(?:by|without)\s*\(([^)]*)\)").match(expr, after):
                found.append((_label_list(c.group(1)), arg))
    return found


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, label names matched) for every ``metric{...}`` selector."""
    expr = _blank_strings(expr)
    return [
        (m.group(1), set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", m.group(2))))
        for m in re.finditer(r"(?<![\w:.])([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", expr)
    ]


def series_names(expr: str) -> set[str]:
    """Every identifier in an expression that names a series: what is left once strings, label
    matchers, ranges, label lists, function calls, keywords and numbers are taken out."""
    text = _blank_strings(expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    words = re.findall(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()", text)
    return {w for w in words if w not in KEYWORDS and not re.fullmatch(r"(?:\d+[smhdwy])+|inf|nan", w, re.I)}


def expression_problems(expr: str, catalog: dict[str, set[str]]) -> list[str]:
    """What in ``expr`` does not match the series Pora exports, or the scrape jobs."""
    problems = []
    for name in sorted(series_names(expr) | promql_metric_names(expr)):
        if name != "up" and name not in catalog:
            problems.append(f"{name} is not a series Pora exports (monitoring/metrics.py)")
    for name, labels in selectors(expr):
        known = ({"job"} if name == "up" else catalog.get(name, set())) | TARGET_LABELS
        problems += [f"{name} has no label {label!r}" for label in sorted(labels - known)]
    for labels, arg in aggregations(expr):
        for name in sorted(promql_metric_names(arg)):
            known = catalog.get(name, set()) | TARGET_LABELS
            problems += [
                f"by/without ({label}) over {name}, which has no such label" for label in sorted(labels - known)
            ]
    everything = set().union(*(catalog.get(n, set()) for n in promql_metric_names(expr))) | TARGET_LABELS
    for m in re.finditer(r"\b(?:on|ignoring)\s*\(([^)]*)\)", _blank_strings(expr)):
        problems += [
            f"on/ignoring ({label}): no series here has it" for label in sorted(_label_list(m.group(1)) - everything)
        ]
    for m in re.finditer(r"\bup\s*\{([^}]*)\}", expr):
        jobs = re.findall(r'\bjob\s*(=~|=)\s*"([^"]*)"', m.group(1))
        if not jobs:
            problems.append(f"up{{{m.group(1)}}} does not select a job")
        for op, value in jobs:
            for job in value.split("|") if op == "=~" else [value]:
                if job not in JOBS:
                    problems.append(f"up{{job={job!r}}}: not one of the scrape jobs {sorted(JOBS)}")
    return problems


# ------------------------------------------------------------------------------------------ promtool


def test_promtool_checks_the_rules() -> None:
    run = subprocess.run(
        [promtool(), "check", "rules", str(RULES.relative_to(ROOT))], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, f"promtool check rules failed:\n{run.stdout}\n{run.stderr}"
    assert f"SUCCESS: {len(rules())} rules found" in run.stdout, run.stdout


def test_promtool_unit_tests_pass() -> None:
    run = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS.relative_to(ROOT))], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, f"promtool test rules failed:\n{run.stdout}\n{run.stderr}"
    assert "SUCCESS" in run.stdout, run.stdout


# ------------------------------------------------------------------------------------------ the rules


def test_there_are_alerts_and_no_strays() -> None:
    names = {r["alert"] for r in alert_rules()}
    assert {
        "PoraPipelineStalled",
        "PoraConsumerLagGrowing",
        "PoraDeadLetterRateSpike",
        "PoraSinkFailing",
        "PoraManyEstablishmentsSilent",
        "PoraDetectorWorkerDown",
    } <= names
    assert all("alert" in r for r in rules()), "only alerting rules here (no recording rules)"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: str(r["alert"]))
def test_alert_is_labelled_and_annotated(rule: dict[str, Any]) -> None:
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    annotations = rule.get("annotations", {})
    assert set(annotations) >= {"summary", "description", "runbook_url"}
    assert "{{" in annotations["summary"], "the summary says which job, instance, group, partition or rule"
    assert annotations["description"].strip()
    url = annotations["runbook_url"]
    assert url.startswith(RUNBOOK_URL), f"{url} does not point into {RUNBOOK_URL}"
    anchor = url[len(RUNBOOK_URL) :]
    assert anchor in github_anchors(RUNBOOK.read_text()), f"RUNBOOK.md has no heading with anchor #{anchor}"
    assert anchor == rule["alert"].lower(), "each alert's section is the heading named after it"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: str(r["alert"]))
def test_alert_reads_only_series_pora_exports(rule: dict[str, Any]) -> None:
    assert expression_problems(rule["expr"], scraped_names()) == []


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    doc = rule_tests()
    assert [Path(f).name for f in doc["rule_files"]] == [RULES.name]
    firing: Counter[str] = Counter()
    quiet: Counter[str] = Counter()
    for group in doc["tests"]:
        for case in group.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet)[case["alertname"]] += 1
    names = {r["alert"] for r in alert_rules()}
    assert sorted(names - set(firing)) == [], "alerts without a test case that expects them to fire"
    assert sorted(names - set(quiet)) == [], "alerts without a test case where they must not fire"
    assert sorted((set(firing) | set(quiet)) - names) == [], "test cases for alerts that do not exist"


def test_expected_alerts_carry_every_annotation() -> None:
    for group in rule_tests()["tests"]:
        for case in group.get("alert_rule_test", []):
            for alert in case.get("exp_alerts", []):
                assert "severity" in alert["exp_labels"], (group["name"], case["alertname"])
                assert set(alert.get("exp_annotations", {})) == {"summary", "description", "runbook_url"}, (
                    group["name"],
                    case["alertname"],
                )


# ------------------------------------------------------------------------------------------ the checkers


CATALOG = {
    "pora_alerts_total": {"rule_id", "status"},
    "pora_consumer_lag_records": {"group", "topic", "partition", "source"},
    "pora_event_to_alert_seconds_bucket": {"rule_id", "le"},
}


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("rate(pora_alerts_totals[5m]) > 0", "pora_alerts_totals is not a series"),
        ("process_start_time_seconds > 0", "process_start_time_seconds is not a series"),
        ('pora_alerts_total{office="KANIM-BATAM"}', "pora_alerts_total has no label 'office'"),
        ("sum by (office) (rate(pora_alerts_total[5m]))", "by/without (office) over pora_alerts_total"),
        ("sum(rate(pora_alerts_total[5m])) by (office)", "by/without (office) over pora_alerts_total"),
        ("sum without (consumer) (pora_consumer_lag_records)", "by/without (consumer) over pora_consumer_lag"),
        ("a_total > 0 and on (office) pora_alerts_total", "a_total is not a series"),
        ("pora_alerts_total and on (office) pora_alerts_total", "on/ignoring (office)"),
        ('up{job="pora-detectors"} == 0', "up{job='pora-detectors'}: not one of the scrape jobs"),
        ('absent(up{job=~"pora-sink|pora-ingest"})', "up{job='pora-ingest'}"),
        ('up{instance="x"} == 0', "does not select a job"),
    ],
)
def test_expression_checker_finds(expr: str, problem: str) -> None:
    assert any(problem in p for p in expression_problems(expr, CATALOG)), expression_problems(expr, CATALOG)


def test_expression_checker_passes_good_expressions() -> None:
    good = (
        "histogram_quantile(0.99, sum by (rule_id, le) (rate(pora_event_to_alert_seconds_bucket[10m]))) > 30",
        'sum(increase(pora_alerts_total{rule_id="establishment.silent"}[1h] offset 1d)) or vector(0)',
        'deriv(sum by (group) (pora_consumer_lag_records)[10m:1m]) > 1 and on () count(up{job="pora-worker"} == 1)',
        "sum by (job, instance) (pora_consumer_lag_records) > 1e6",
    )
    for expr in good:
        assert expression_problems(expr, CATALOG) == [], expr


def test_github_anchors() -> None:
    text = (
        "# Pora runbook\n## PoraSinkFailing\n```\n# not a heading\n```\n### Before you `start`!\n## Tools\n## Tools\n"
    )
    assert github_anchors(text) == {"pora-runbook", "porasinkfailing", "before-you-start", "tools", "tools-1"}
