"""Realistic sample events in the gateway's JSON form, for the demo, tests and benchmarks.

Deterministic for a given seed. (The full simulator with ground truth comes with the detectors.)
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

ESTABLISHMENTS = [
    {"establishment_id": "EST-BTM-0001", "name": "Hotel Harmoni One", "region": "Kota Batam", "office": "KANIM-BATAM"},
    {"establishment_id": "EST-BTM-0002", "name": "Nagoya Guesthouse", "region": "Kota Batam", "office": "KANIM-BATAM"},
    {
        "establishment_id": "EST-DPS-0001",
        "name": "Kuta Beach Inn",
        "region": "Kabupaten Badung",
        "office": "KANIM-NGURAH-RAI",
    },
    {
        "establishment_id": "EST-MJK-0001",
        "name": "Mess PT Sinar Baja",
        "region": "Kabupaten Mojokerto",
        "office": "KANIM-MALANG",
    },
]
CHECKPOINTS = [
    {
        "checkpoint_id": "TPI-BATAM-CENTRE",
        "name": "Batam Centre International Ferry Terminal",
        "kind": "SEAPORT",
        "office": "KANIM-BATAM",
    },
    {
        "checkpoint_id": "TPI-SOEKARNO-HATTA",
        "name": "Soekarno-Hatta International Airport",
        "kind": "AIRPORT",
        "office": "KANIM-SOEKARNO-HATTA",
    },
]
SPONSOR = {
    "sponsor_id": "SPN-MJK-0001",
    "name": "PT Sinar Baja Mojokerto",
    "region": "Kabupaten Mojokerto",
    "office": "KANIM-MALANG",
}
AGENCY = {"agency_id": "AGY-POLRES-MJK", "name": "Polres Mojokerto", "kind": "POLICE"}
NATIONALITIES = ["SGP", "MYS", "CHN", "AUS", "KOR", "JPN", "IND", "NLD", "USA", "GBR", "RUS", "FRA"]
SURNAMES = ["Tan", "Lim", "Wong", "Smith", "Kim", "Sato", "Singh", "de Vries", "Ivanov", "Martin", "Li", "Brown"]
GIVEN = ["Wei", "Mei", "James", "Ji-ho", "Yuki", "Arjun", "Sanne", "Olga", "Pierre", "Chen", "Amelia", "Noah"]
WIB = "+07:00"


def _ts(day: date, hour: int, minute: int) -> str:
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}:00{WIB}"


class SampleFactory:
    def __init__(self, seed: int = 7, today: date | None = None) -> None:
        self.rng = random.Random(seed)
        self.today = today or datetime.now(tz=UTC).date()
        self._n = 0

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self.rng.getrandbits(40):010x}-{self._n}"

    def identity(self, nationality: str | None = None) -> dict[str, Any]:
        r = self.rng
        born = date(1960, 1, 1) + timedelta(days=r.randrange(365 * 45))
        return {
            "nationality": nationality or r.choice(NATIONALITIES),
            "document_type": "PASSPORT",
            "document_number": f"{r.choice('ABCEKMNPX')}{r.randrange(10_000_000, 99_999_999)}",
            "given_names": r.choice(GIVEN),
            "surname": r.choice(SURNAMES),
            "date_of_birth": born.isoformat(),
        }

    def hotel_check_in(
        self, establishment: dict[str, str] | None = None, guest: dict[str, Any] | None = None, days_ago: int = 0
    ) -> dict[str, Any]:
        r = self.rng
        day = self.today - timedelta(days=days_ago)
        return {
            "event_id": self._id("chk"),
            "occurred_at": _ts(day, r.randrange(0, 6), r.randrange(60)),
            "action": "CHECK_IN",
            "establishment": establishment or r.choice(ESTABLISHMENTS),
            "guest": guest or self.identity(),
            "permit_type": r.choice(["VISA_EXEMPT", "VOA", "VISITOR_VISA", "ITAS"]),
            "room": str(r.randrange(101, 720)),
            "check_in_date": day.isoformat(),
            "expected_check_out_date": (day + timedelta(days=r.randrange(1, 10))).isoformat(),
        }

    def arrival(
        self, checkpoint: dict[str, str] | None = None, traveller: dict[str, Any] | None = None, days_ago: int = 0
    ) -> dict[str, Any]:
        r = self.rng
        day = self.today - timedelta(days=days_ago)
        permit, stay = r.choice([("VISA_EXEMPT", 30), ("VOA", 30), ("VISITOR_VISA", 60)])
        est = r.choice(ESTABLISHMENTS)
        return {
            "event_id": self._id("arr"),
            "occurred_at": _ts(day, r.randrange(0, 6), r.randrange(60)),
            "direction": "ARRIVAL",
            "checkpoint": checkpoint or r.choice(CHECKPOINTS),
            "traveller": traveller or self.identity(),
            "transport_reference": r.choice(["GA 826", "SQ 952", "MAJESTIC 0815", "BATAMFAST 12"]),
            "arrival": {
                "permit_type": permit,
                "authorised_until": (day + timedelta(days=stay - 1)).isoformat(),
                "declared_establishment_id": est["establishment_id"],
            },
        }

    def citizen_departure(self, checkpoint: dict[str, str] | None = None, risky: bool = False) -> dict[str, Any]:
        r = self.rng
        if risky:
            journey = {
                "destination_country": "KHM",
                "destination_city": "Phnom Penh",
                "onward_route": ["SGP", "MYS", "THA", "KHM"],
                "return_ticket": False,
                "purpose": "TOURISM",
                "passport_issued_on": (self.today - timedelta(days=5)).isoformat(),
                "group_reference": "GRP-" + str(r.randrange(100, 999)),
                "job_offer_contact": True,
                "employer_paid_travel": True,
            }
        else:
            journey = {
                "destination_country": r.choice(["SGP", "MYS", "SAU", "JPN"]),
                "onward_route": [],
                "return_ticket": True,
                "purpose": r.choice(["TOURISM", "PILGRIMAGE", "FAMILY", "BUSINESS"]),
                "passport_issued_on": (self.today - timedelta(days=r.randrange(200, 2000))).isoformat(),
            }
        return {
            "event_id": self._id("dep"),
            "occurred_at": _ts(self.today, r.randrange(0, 6), r.randrange(60)),
            "direction": "DEPARTURE",
            "checkpoint": checkpoint or r.choice(CHECKPOINTS),
            "traveller": self.identity("IDN"),
            "departure": journey,
        }

    def sponsor_report(self, roster: int = 3) -> dict[str, Any]:
        first = self.today.replace(day=1)
        return {
            "event_id": self._id("spr"),
            "occurred_at": _ts(self.today, 1, 0),
            "sponsor": SPONSOR,
            "period_start": (first - timedelta(days=1)).replace(day=1).isoformat(),
            "period_end": (first - timedelta(days=1)).isoformat(),
            "roster": [
                {
                    "foreigner": self.identity("CHN"),
                    "address": "Mess PT Sinar Baja, Ngoro",
                    "job_title": "Furnace engineer",
                }
                for _ in range(roster)
            ],
        }

    def permit_extension(self, holder: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "event_id": self._id("prm"),
            "occurred_at": _ts(self.today, 2, 30),
            "action": "EXTENDED",
            "permit_type": "VOA",
            "holder": holder or self.identity(),
            "valid_until": (self.today + timedelta(days=30)).isoformat(),
            "office": "KANIM-BATAM",
        }

    def agency_report(self, subject: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "event_id": self._id("agy"),
            "occurred_at": _ts(self.today, 3, 15),
            "agency": AGENCY,
            "observation": "WORKING_WITHOUT_PERMIT",
            "description": "Foreign national seen working at a construction site, claims tourist stay",
            "location": {
                "region": "Kabupaten Mojokerto",
                "office": "KANIM-MALANG",
                "address": "Jl. Raya Ngoro 12",
                "latitude": -7.56,
                "longitude": 112.6,
            },
            "subject": subject or self.identity(),
        }
