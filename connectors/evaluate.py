"""`pora evaluate`: the alerts on the topic against the simulator's ground truth, per rule.

An alert matches a truth label by (rule, window, subject); extra keys of a label are not part of that
identity (``group`` of tppo.screening). A label with an ``office`` (whereabouts.unknown, where RULES.md
says which sighting's office it goes to) is also checked against the office of the alert that matches
it: a match with another office counts in ``wrong_office``, not against precision or recall."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from schemas.person import person_key
from streams import topics
from streams.reading import read_topic
from streams.settings import Settings


@dataclass
class Score:
    rule_id: str
    alerts: int = 0
    truths: int = 0
    matched_alerts: int = 0
    matched_truths: int = 0
    wrong_office: int = 0  # matched alerts whose office is not the label's (labels that name one)

    @property
    def precision(self) -> float:
        return self.matched_alerts / self.alerts if self.alerts else 1.0

    @property
    def recall(self) -> float:
        return self.matched_truths / self.truths if self.truths else 1.0


def final_alerts(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each alert id's latest record (by its step), whatever order the topic holds them in."""
    latest: dict[str, dict[str, Any]] = {}
    for rec in records:
        known = latest.get(rec["alert_id"])
        if known is None or _step(known) < _step(rec):
            latest[rec["alert_id"]] = rec
    return latest


def _step(record: dict[str, Any]) -> int:
    # event_id = alert id : status : step [: tag]
    return int(record["event_id"].split(":")[2])


def _alert_keys(alert: dict[str, Any]) -> set[tuple[str, str, str]]:
    window = next((e["value"] for e in alert["evidence"] if e["name"] == "window"), "")
    subject = alert["subject"]
    return {(alert["rule_id"], window, str(v)) for v in subject.values() if v}


def _truth_key(truth: dict[str, Any], secret: bytes) -> tuple[str, str, str]:
    subject = truth["subject"]
    if "document_number" in subject:
        who = person_key(secret, subject["nationality"], subject["document_number"])
    else:
        who = next(str(v) for v in subject.values())
    return truth["rule_id"], str(truth["window"]), who


def score(alerts: list[dict[str, Any]], truths: list[dict[str, Any]], secret: bytes) -> dict[str, Score]:
    scores: dict[str, Score] = defaultdict(lambda: Score(""))
    active = [a for a in final_alerts(alerts).values() if a["status"] != "WITHDRAWN"]
    truth_keys = {_truth_key(t, secret) for t in truths}
    offices = {_truth_key(t, secret): str(t["office"]) for t in truths if "office" in t}
    alert_keys: set[tuple[str, str, str]] = set()
    for a in active:
        keys = _alert_keys(a)
        alert_keys |= keys
        s = scores[a["rule_id"]]
        s.rule_id = a["rule_id"]
        s.alerts += 1
        s.matched_alerts += bool(keys & truth_keys)
        s.wrong_office += any(k in offices and offices[k] != a.get("office") for k in keys)
    for key in truth_keys:
        s = scores[key[0]]
        s.rule_id = key[0]
        s.truths += 1
        s.matched_truths += key in alert_keys
    return dict(sorted(scores.items()))


def evaluate(settings: Settings, truth_path: Path) -> dict[str, Score]:
    truths = [orjson.loads(line) for line in truth_path.read_bytes().splitlines() if line.strip()]
    alerts = [r.record for r in read_topic(settings.kafka_bootstrap, settings.topic(topics.ALERTS)) if r.record]
    return score(alerts, truths, settings.person_secret)


def table(scores: dict[str, Score]) -> str:
    lines = [f"{'rule':<26} {'alerts':>7} {'truth':>7} {'precision':>9} {'recall':>7}"]
    for s in scores.values():
        line = f"{s.rule_id:<26} {s.alerts:>7} {s.truths:>7} {s.precision:>9.3f} {s.recall:>7.3f}"
        lines.append(line + (f"   {s.wrong_office} with another office" if s.wrong_office else ""))
    return "\n".join(lines)
