"""The roster router: sponsor roster entries, keyed by sponsor, re-keyed by the person they name.

Sponsor reports land on partitions by sponsor, people's events by person key; whereabouts needs
both in one place. Each roster entry becomes a fact keyed by its person key (so it lands on that
person's partition of ``pora.person-facts``, which has the person topics' partition count), and
each clock tick of a sponsor-reports partition becomes a tick to every partition, so the person
stage's watermark can wait for every sponsor-reports partition (RULES.md, "Whereabouts").
"""

from __future__ import annotations

from typing import Any

from streams.detect.person import days, ms

Fact = tuple[bytes | None, dict[str, Any]]  # (person key, or None for every partition; fact)


def route_roster(partition: int, kind: str, record: dict[str, Any]) -> list[Fact]:
    """Facts for one record read from partition ``partition`` of ``sponsor.reports``."""
    at = ms(record["reported_at"])
    if kind == "clock_tick":
        return [(None, {"t": "tick", "src": partition, "at": at})]
    if kind != "sponsor_report":
        return []
    sponsor = record["sponsor"]
    out: list[Fact] = []
    for entry in record["roster"]:
        who = entry["foreigner"]
        pk = str(who["person_key"])
        out.append(
            (
                pk.encode(),
                {
                    "t": "seen",
                    "src": partition,
                    "at": at,
                    "event_id": f"{record['event_id']}|{pk}",
                    "pk": pk,
                    "nat": who["nationality"],
                    "day": days(record["period_end"]),
                    "office": sponsor["office"],
                    "sponsor": sponsor["sponsor_id"],
                },
            )
        )
    return out
