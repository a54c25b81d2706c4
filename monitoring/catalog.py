"""The names Pora's metrics are scraped under, so alert rules and dashboards can be checked against
the definitions in :mod:`monitoring.metrics` (a renamed metric breaks a test, not a dashboard)."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY
from prometheus_client.registry import CollectorRegistry

import monitoring.metrics  # noqa: F401  (defines every metric in the default registry)

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}
# an identifier in PromQL that is not a function, keyword or label (labels sit inside {} or by())
_PROMQL_WORD = re.compile(r"(?<![\w:.\"'])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=[\[{)\s,]|$)")


def scraped_names(registry: CollectorRegistry = REGISTRY) -> dict[str, set[str]]:
    """Every series name a scrape of Pora shows, mapped to its label names (``le`` for buckets)."""
    names: dict[str, set[str]] = {}
    for collector in list(registry._collector_to_names):  # prometheus_client keeps no public list
        for family in collector.describe() if hasattr(collector, "describe") else ():
            if not family.name.startswith("pora_"):
                continue
            labels = set(getattr(collector, "_labelnames", ()))
            for suffix in _SUFFIXES.get(family.type, ("",)):
                name = family.name + suffix
                names[name] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def promql_metric_names(expr: str) -> set[str]:
    """The ``pora_*`` series an expression reads (a rough lexer: good enough for a name check)."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "{}", without_strings)
    return {m for m in _PROMQL_WORD.findall(without_labels) if m.startswith("pora_")}


def pora_samples(exposition: str) -> dict[str, float]:
    """The ``pora_*`` samples of a /metrics answer, as {'name{labels}': value} (for checks)."""
    out: dict[str, float] = {}
    for line in exposition.splitlines():
        if line.startswith("pora_") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out
