"""monitoring/README.md lists every metric with its type and labels, as monitoring/metrics.py defines it."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

import monitoring.metrics as defined

README = Path(__file__).resolve().parents[2] / "monitoring" / "README.md"
_ROW = re.compile(r"^\| `(pora_[a-z_]+)` \| (\w+) \|\s*([a-z_, ]*?)\s*\|", re.M)


def _defined() -> dict[str, tuple[str, tuple[str, ...]]]:
    out = {}
    for value in vars(defined).values():
        if isinstance(value, MetricWrapperBase):
            name = value._name + ("_total" if value._type == "counter" else "")
            out[name] = (value._type, tuple(value._labelnames))
    return out


def test_every_metric_is_documented_with_its_type_and_labels() -> None:
    documented = {
        name: (kind, tuple(label.strip() for label in labels.split(",") if label.strip()))
        for name, kind, labels in _ROW.findall(README.read_text())
    }
    assert documented == _defined()
