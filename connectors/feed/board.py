"""The alerts as the feed shows them: the latest state of each alert, its history and its triage,
kept from the ``alerts`` and ``alerts.actions`` topics, with live subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from connectors.feed.users import User

SEVERITIES = ("INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL")
RULE_IDS = (  # streams/detect/RULES.md
    "overstay",
    "overstay.at_exit",
    "permit.expiring",
    "overstay.located",
    "tppo.screening",
    "report.late",
    "report.missing",
    "report.checkout_missing",
    "establishment.silent",
    "sponsor.overdue",
    "sponsor.roster_mismatch",
    "whereabouts.unknown",
)
TPPO_DISPOSITIONS = ("CLEARED", "DELAYED_FOR_INTERVIEW", "REFERRED")
DISPOSITIONS = ("CONFIRMED", "FALSE_POSITIVE", *TPPO_DISPOSITIONS)
PERSON_KEY = re.compile(r"pk_[0-9A-Za-z_-]{8,}")  # schemas/person.py: "pk_" and the keyed hash
HIDDEN_PERSON = "(a person)"


def _without_people(text: str) -> str:
    """For roles that see no person keys: any key in a text (a reason, an evidence value) hidden."""
    return PERSON_KEY.sub(HIDDEN_PERSON, text)


@dataclass
class Alert:
    alert_id: str
    record: dict[str, Any]  # the latest alert record
    first_at: int  # occurred_at (ms) of the first record: when it was raised, in event time
    first_seen: int  # reported_at (ms) of the first record: when the detectors emitted it
    history: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def office(self) -> str:
        return str(self.record["office"])

    @property
    def rule_id(self) -> str:
        return str(self.record["rule_id"])

    @property
    def triage(self) -> str:
        """OPEN, ACKNOWLEDGED, ASSIGNED or RESOLVED, from the latest actions (REOPEN opens again)."""
        state = "OPEN"
        for a in self.actions:
            kind = a["action"]
            if kind == "RESOLVE":
                state = "RESOLVED"
            elif kind == "REOPEN":
                state = "OPEN"
            elif kind == "ASSIGN" and state != "RESOLVED":
                state = "ASSIGNED"
            elif kind == "ACKNOWLEDGE" and state == "OPEN":
                state = "ACKNOWLEDGED"
        return state

    def view(self, user: User, *, detail: bool = False) -> dict[str, Any]:
        """The alert as ``user`` may see it: without person keys anywhere for an agency member (the
        subject's, evidence naming people, such as a roster mismatch's omitted and unlisted
        foreigners, and any key quoted in a text)."""
        r = self.record
        people = user.sees_people
        text = (lambda t: t) if people else _without_people
        subject = {k: v for k, v in r["subject"].items() if v is not None}
        if not people:
            subject.pop("person_key", None)
        out: dict[str, Any] = {
            "alert_id": self.alert_id,
            "rule_id": r["rule_id"],
            "rule_version": r["rule_version"],
            "status": r["status"],
            "severity": r["severity"],
            "office": r["office"],
            "subject": subject,
            "raised_at": self.first_at,
            "emitted_at": self.first_seen,
            "updated_at": int(r["reported_at"]),
            "triage": self.triage,
            "reasons": [text(x) for x in r["reasons"]],
        }
        if detail:
            out["evidence"] = [
                {k: v for k, v in e.items() if v is not None}
                for e in r["evidence"]
                if people or (e["name"] != "person_key" and not PERSON_KEY.search(str(e["value"])))
            ]
            out["history"] = [
                {
                    "status": h["status"],
                    "severity": h["severity"],
                    "at": int(h["occurred_at"]),
                    "reasons": [text(x) for x in h["reasons"]],
                }
                for h in self.history
            ]
            out["actions"] = [
                {
                    k: text(a[k]) if k == "comment" else a[k]
                    for k in ("event_id", "action", "actor", "actor_role", "assignee", "disposition", "comment")
                    if a.get(k) is not None
                }
                | {"at": int(a["occurred_at"])}
                for a in self.actions
            ]
        return out


@dataclass(frozen=True)
class Filters:
    office: str | None = None
    rule: str | None = None
    severity: str | None = None
    status: str | None = None  # RAISED / AMENDED / WITHDRAWN, or a triage state
    since: int | None = None  # raised at or after (ms)
    until: int | None = None

    def match(self, a: Alert) -> bool:
        r = a.record
        if self.office and r["office"] != self.office:
            return False
        if self.rule and r["rule_id"] != self.rule:
            return False
        if self.severity and r["severity"] != self.severity:
            return False
        if self.status and self.status not in (r["status"], a.triage):
            return False
        if self.since is not None and a.first_at < self.since:
            return False
        return not (self.until is not None and a.first_at > self.until)


DAY_MS = 86_400_000
SWEEP_EVERY = 1000  # records applied between two sweeps of the board


class AlertBoard:
    """The supervisors' working board. It holds the alerts whose latest record or action lies
    within ``horizon_days`` of event time (the newest alert record's ``occurred_at``), and a CRITICAL
    alert still open for ``critical_days`` (an overstay past the deportation threshold waits for
    someone, but a board that kept every untriaged one for ever would grow for ever); older alerts
    are in the analytics (ClickHouse, `pora report`). Event time, not the wall clock, so a feed that
    replays the topics after a restart builds the same board."""

    def __init__(self, max_queue: int = 1000, *, horizon_days: float = 90.0, critical_days: float = 365.0) -> None:
        self.alerts: dict[str, Alert] = {}
        self._seen: set[str] = set()  # record ids applied (alerts and actions), so redelivery is harmless
        self._subscribers: set[asyncio.Queue[Alert | None]] = set()
        self._max_queue = max_queue
        self._orphans: dict[str, list[dict[str, Any]]] = {}  # actions read before their alert
        self.actions: dict[str, dict[str, Any]] = {}  # every action applied, by event id (idempotent retries)
        self.horizon_ms = int(horizon_days * DAY_MS)
        self.critical_ms = max(self.horizon_ms, int(critical_days * DAY_MS))
        self.newest = 0  # the latest occurred_at of an alert record applied
        self.evicted = 0  # alerts that left the board for their age
        self._since_sweep = 0

    def apply_alert(self, record: dict[str, Any]) -> Alert | None:
        if record["event_id"] in self._seen:
            return None
        self._seen.add(record["event_id"])
        aid = record["alert_id"]
        alert = self.alerts.get(aid)
        if alert is None:
            alert = self.alerts[aid] = Alert(aid, record, int(record["occurred_at"]), int(record["reported_at"]))
            alert.actions.extend(self._orphans.pop(aid, []))
        else:
            alert.record = record
        alert.history.append(record)
        self.newest = max(self.newest, int(record["occurred_at"]))
        self._notify(alert)
        self._count_for_sweep()
        return alert

    def apply_action(self, record: dict[str, Any]) -> Alert | None:
        if record["event_id"] in self._seen:
            return None
        self._seen.add(record["event_id"])
        self.actions[record["event_id"]] = record
        alert = self.alerts.get(record["alert_id"])
        if alert is None:  # the two topics are read side by side: its alert comes later
            self._orphans.setdefault(record["alert_id"], []).append(record)
            return None
        alert.actions.append(record)
        self._notify(alert)
        self._count_for_sweep()
        return alert

    # ------------------------------------------------------------------ horizon

    def _count_for_sweep(self) -> None:
        self._since_sweep += 1
        if self._since_sweep >= SWEEP_EVERY:
            self.sweep()

    def _stays(self, a: Alert, before: int, critical_before: int) -> bool:
        last = max([int(a.record["occurred_at"])] + [int(x["occurred_at"]) for x in a.actions])
        if last >= before:
            return True
        return (
            last >= critical_before
            and a.record["severity"] == "CRITICAL"
            and a.record["status"] != "WITHDRAWN"
            and a.triage != "RESOLVED"
        )

    def sweep(self) -> int:
        """Take the alerts that aged out of the horizon off the board (with what was kept to
        recognise their records); returns how many left."""
        self._since_sweep = 0
        before = self.newest - self.horizon_ms
        critical_before = self.newest - self.critical_ms
        gone = [a for a in self.alerts.values() if not self._stays(a, before, critical_before)]
        for a in gone:
            del self.alerts[a.alert_id]
            for h in a.history:
                self._seen.discard(h["event_id"])
            for x in a.actions:
                self._seen.discard(x["event_id"])
                self.actions.pop(x["event_id"], None)
        for aid, actions in list(self._orphans.items()):
            if all(int(x["occurred_at"]) < before for x in actions):
                del self._orphans[aid]  # actions on an alert that will not come (or aged out)
        self.evicted += len(gone)
        return len(gone)

    def visible(self, user: User, filters: Filters = Filters()) -> list[Alert]:
        found = [a for a in self.alerts.values() if user.sees(a.office, a.rule_id) and filters.match(a)]
        found.sort(key=lambda a: (a.first_seen, a.alert_id), reverse=True)
        return found

    def counts(self, user: User, filters: Filters = Filters()) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.visible(user, filters):
            out[a.rule_id] = out.get(a.rule_id, 0) + 1
        return dict(sorted(out.items()))

    def per_day(self, alerts: Iterable[Alert]) -> dict[str, int]:
        from datetime import UTC, datetime, timedelta

        wib = timedelta(hours=7)
        out: dict[str, int] = {}
        for a in alerts:
            day = (datetime.fromtimestamp(a.first_at / 1000, UTC) + wib).date().isoformat()
            out[day] = out.get(day, 0) + 1
        return dict(sorted(out.items()))

    # ------------------------------------------------------------------ live

    def subscribe(self) -> asyncio.Queue[Alert | None]:
        q: asyncio.Queue[Alert | None] = asyncio.Queue(self._max_queue)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Alert | None]) -> None:
        self._subscribers.discard(q)

    def close_streams(self) -> None:
        """Ask every live client to go (they reconnect to whichever feed serves them next)."""
        for q in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        self._subscribers.clear()

    def _notify(self, alert: Alert) -> None:
        for q in list(self._subscribers):
            try:
                q.put_nowait(alert)
            except asyncio.QueueFull:  # a client that does not read: tell it to reload, then drop it
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
                q.put_nowait(None)
                self._subscribers.discard(q)
