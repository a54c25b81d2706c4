"""Alerts as the contract has them, with ids that depend only on rule, subject and window."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

SUBJECT_FIELDS = ("person_key", "establishment_id", "sponsor_id", "checkpoint_id")


def alert_id(rule_id: str, subject_key: str, window: str) -> str:
    digest = hashlib.blake2b(f"{rule_id}|{subject_key}|{window}".encode(), digest_size=12).hexdigest()
    return f"AL-{digest}"


@dataclass
class Evidence:
    name: str
    value: str
    event_id: str | None = None
    weight: float | None = None

    def as_record(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "event_id": self.event_id, "weight": self.weight}


@dataclass
class Finding:
    """What a rule found; the engine turns it into alert records."""

    rule_id: str
    window: str
    severity: str
    office: str
    subject: dict[str, str]
    reasons: list[str]
    evidence: list[Evidence] = field(default_factory=list)
    window_start: int | None = None
    window_end: int | None = None

    @property
    def alert_id(self) -> str:
        key = "|".join(f"{k}={self.subject[k]}" for k in SUBJECT_FIELDS if self.subject.get(k))
        return alert_id(self.rule_id, key, self.window)


def alert_record(
    finding: Finding, *, status: str, step: int, version: str, at: int, emitted_at: int, tag: str = ""
) -> dict[str, Any]:
    """The Avro `alert` record. ``event_id`` is the alert id with its status and step (and a tag
    where several partitions may state the same step), so a replay gives the same record ids."""
    aid = finding.alert_id
    return {
        "event_id": f"{aid}:{status.lower()}:{step}" + (f":{tag}" if tag else ""),
        "occurred_at": at,
        "reported_at": emitted_at,
        "alert_id": aid,
        "rule_id": finding.rule_id,
        "rule_version": version,
        "status": status,
        "severity": finding.severity,
        "office": finding.office,
        "subject": {k: finding.subject.get(k) for k in SUBJECT_FIELDS},
        "window_start": finding.window_start,
        "window_end": finding.window_end,
        # the window (an event id or a date) closes the evidence, so the alert can be traced and matched
        "evidence": [e.as_record() for e in finding.evidence] + [Evidence("window", finding.window).as_record()],
        "reasons": list(finding.reasons),
    }


AlertStates = dict[str, tuple[Finding, str, int]]  # alert id -> finding, status, step


def transition(states: AlertStates, finding: Finding, status: str) -> int | None:
    """Record that ``finding`` is RAISED, AMENDED or WITHDRAWN; returns the record's step, or None
    when nothing changes (raised again on redelivery, or amending what is withdrawn or unknown)."""
    aid = finding.alert_id
    known = states.get(aid)
    if status == "RAISED":
        if known is not None:
            return None
        step = 0
    else:
        if known is None or known[1] == "WITHDRAWN":
            return None
        step = known[2] + 1
    states[aid] = (finding, status, step)
    return step
