"""The topic names of the platform, in one place; every service prefixes them from settings."""

from __future__ import annotations

from dataclasses import dataclass

HOTEL_GUEST_EVENTS = "hotel.guest-events"
BORDER_CROSSINGS = "border.crossings"
SPONSOR_REPORTS = "sponsor.reports"
PERMIT_UPDATES = "permits.updates"
AGENCY_REPORTS = "agency.reports"
ALERTS = "alerts"
ALERT_ACTIONS = "alerts.actions"
DEAD_LETTERS = "dead-letters"
ENTITY_FACTS = "pora.entity-facts"  # internal: the person stage's facts for the establishment/sponsor stage
PERSON_FACTS = "pora.person-facts"  # internal: sponsor roster entries routed to the people they name


@dataclass(frozen=True)
class TopicSpec:
    name: str
    schema: str  # the Avro record kind written to it (schemas/<schema>.avsc)
    doc: str


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(HOTEL_GUEST_EVENTS, "hotel_guest_event", "guest check-in, check-out, correction, cancel"),
    TopicSpec(BORDER_CROSSINGS, "border_crossing", "arrivals and departures at checkpoints (TPI)"),
    TopicSpec(SPONSOR_REPORTS, "sponsor_report", "sponsors' periodic rosters and changes"),
    TopicSpec(PERMIT_UPDATES, "permit_update", "stay permits granted, extended, cancelled"),
    TopicSpec(AGENCY_REPORTS, "agency_report", "Timpora member agencies' field reports and tips"),
    TopicSpec(ALERTS, "alert", "alerts raised, amended or withdrawn by the detectors"),
    TopicSpec(ALERT_ACTIONS, "alert_action", "audit trail of triage actions"),
    TopicSpec(DEAD_LETTERS, "dead_letter", "rejected raw input with the reason"),
    TopicSpec(ENTITY_FACTS, "", "internal (JSON): facts keyed by establishment or sponsor, and watermarks"),
    TopicSpec(PERSON_FACTS, "", "internal (JSON): sponsor roster entries keyed by person, and watermarks"),
)

BY_NAME = {t.name: t for t in TOPICS}
PUBLIC = tuple(t for t in TOPICS if t.schema)  # the topics that carry Avro contracts
