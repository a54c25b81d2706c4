"""Input records for the detector tests, as the gateway writes them (Avro-valid; dates as day
numbers, instants as epoch ms). Each builder returns ``(topic, kind, record)`` where a topic
applies, so a test can offer the record to a pure detector or encode it for the worker."""

from __future__ import annotations

import itertools
from datetime import date
from typing import Any

from streams import topics
from streams.detect.person import HOUR_MS, day_start, days

D0 = days(date(2026, 11, 1))  # a local day
_ids = itertools.count()

Input = tuple[str, str, dict[str, Any]]  # (topic without prefix, kind, record)


def at(day: int, hour: float = 10) -> int:
    """Epoch ms of a local (WIB) day and hour, days counted from D0."""
    return day_start(D0 + day) + int(hour * HOUR_MS)


def ident(pk: str, nat: str = "SGP") -> dict[str, Any]:
    return {
        "nationality": nat,
        "document_type": "PASSPORT",
        "document_number": "X" + pk,
        "given_names": "A",
        "surname": "B",
        "date_of_birth": None,
        "person_key": pk,
    }


CP = {"checkpoint_id": "TPI-BATAM-CENTRE", "name": "Batam Centre", "kind": "SEAPORT", "office": "KANIM-BATAM"}
CP2 = {"checkpoint_id": "TPI-SOEKARNO-HATTA", "name": "Soekarno-Hatta", "kind": "AIRPORT", "office": "KANIM-SH"}
EST = {"establishment_id": "EST-1", "name": "Hotel Harmoni", "region": "Kota Batam", "office": "KANIM-BATAM"}
SPONSOR = {"sponsor_id": "SPN-1", "name": "PT Sinar Baja", "region": "Mojokerto", "office": "KANIM-MALANG"}


def arrival(
    pk: str,
    when: int,
    until_day: int,
    *,
    declared: str | None = None,
    reported: int | None = None,
    eid: str | None = None,
) -> Input:
    return (
        topics.BORDER_CROSSINGS,
        "border_crossing",
        {
            "event_id": eid or f"arr-{next(_ids)}",
            "occurred_at": when,
            "reported_at": reported or when + 60_000,
            "source": "t",
            "direction": "ARRIVAL",
            "checkpoint": CP,
            "traveller": ident(pk),
            "transport_reference": None,
            "arrival": {
                "permit_type": "VOA",
                "authorised_until": D0 + until_day,
                "declared_establishment_id": declared,
                "declared_address": None,
            },
            "departure": None,
        },
    )


def departure(
    pk: str,
    when: int,
    *,
    nat: str = "SGP",
    journey: dict[str, Any] | None = None,
    checkpoint: dict[str, str] = CP,
    reported: int | None = None,
    eid: str | None = None,
    who: dict[str, Any] | None = None,
) -> Input:
    """``who``: the traveller's identity when it should differ from :func:`ident`'s."""
    return (
        topics.BORDER_CROSSINGS,
        "border_crossing",
        {
            "event_id": eid or f"dep-{next(_ids)}",
            "occurred_at": when,
            "reported_at": reported or when + 60_000,
            "source": "t",
            "direction": "DEPARTURE",
            "checkpoint": checkpoint,
            "traveller": who or ident(pk, nat),
            "transport_reference": None,
            "arrival": None,
            "departure": journey,
        },
    )


def permit(
    pk: str,
    when: int,
    until_day: int,
    *,
    reported: int | None = None,
    action: str = "EXTENDED",
    sponsor: str | None = None,
    office: str = "KANIM-BATAM",
    eid: str | None = None,
) -> Input:
    return (
        topics.PERMIT_UPDATES,
        "permit_update",
        {
            "event_id": eid or f"prm-{next(_ids)}",
            "occurred_at": when,
            "reported_at": reported or when + 60_000,
            "source": "t",
            "action": action,
            "permit_type": "VOA",
            "permit_number": None,
            "holder": ident(pk),
            "valid_from": None,
            "valid_until": D0 + until_day,
            "sponsor_id": sponsor,
            "office": office,
        },
    )


def hotel(
    pk: str,
    when: int,
    check_in_day: int,
    *,
    action: str = "CHECK_IN",
    expected_out: int | None = None,
    reported: int | None = None,
    corrects: str | None = None,
    eid: str | None = None,
    establishment: dict[str, str] = EST,
) -> Input:
    return (
        topics.HOTEL_GUEST_EVENTS,
        "hotel_guest_event",
        {
            "event_id": eid or f"htl-{next(_ids)}",
            "occurred_at": when,
            "reported_at": reported or when + 600_000,
            "source": "t",
            "action": action,
            "corrects_event_id": corrects,
            "establishment": establishment,
            "guest": ident(pk),
            "permit_type": None,
            "room": "1",
            "check_in_date": D0 + check_in_day,
            "expected_check_out_date": None if expected_out is None else D0 + expected_out,
            "check_out_date": D0 + check_in_day if action == "CHECK_OUT" else None,
        },
    )


def journey(**overrides: Any) -> dict[str, Any]:
    """A citizen's journey details: an ordinary trip unless overridden."""
    base: dict[str, Any] = {
        "destination_country": "SGP",
        "destination_city": None,
        "onward_route": [],
        "return_ticket": True,
        "purpose": "TOURISM",
        "passport_issued_on": D0 - 900,
        "group_reference": None,
        "agent_reference": None,
        "booking_reference": None,
        "job_offer_contact": None,
        "employer_paid_travel": None,
        "pmi_placement_id": None,
    }
    return {**base, **overrides}


def sponsor_report(
    when: int,
    period_end: date,
    roster: list[str],
    *,
    reported: int | None = None,
    sponsor: dict[str, str] = SPONSOR,
    eid: str | None = None,
) -> Input:
    """A monthly sponsor report listing the foreigners (person keys) in ``roster``."""
    return (
        topics.SPONSOR_REPORTS,
        "sponsor_report",
        {
            "event_id": eid or f"spr-{next(_ids)}",
            "occurred_at": when,
            "reported_at": reported or when,
            "source": "t",
            "sponsor": sponsor,
            "period_start": period_end.replace(day=1),
            "period_end": period_end,
            "roster": [
                {
                    "foreigner": ident(pk),
                    "permit_number": None,
                    "address": "Jl. Raya 1",
                    "job_title": "engineer",
                    "work_location": None,
                }
                for pk in roster
            ],
            "changes": [],
        },
    )


def clock_tick(topic: str, when: int) -> Input:
    """A clock tick: nothing reported before ``when`` follows it on its partition."""
    return (
        topic,
        "clock_tick",
        {"event_id": f"tick-{topic}-{when}", "occurred_at": when, "reported_at": when, "source": "t"},
    )
