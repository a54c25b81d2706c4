"""All stages without Kafka: the alerts the worker gives for records as they lie on the topics.
The reference for the tests and the benchmark, and a way to try a rules change on recorded data."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from connectors.gateway.partitioning import partition_for
from streams import topics
from streams.detect.config import RulesConfig
from streams.detect.entity import EntityDetector
from streams.detect.person import INPUTS, PersonDetector
from streams.detect.roster import route_roster


def detect_offline(
    records: Iterable[tuple[str, int, str, dict[str, Any]]], rules: RulesConfig, partitions: int
) -> list[dict[str, Any]]:
    """``records``: (topic name without prefix, partition, kind, decoded record), each partition in
    offset order. Returns the alert records in the order the stages emit them."""
    person = {
        p: PersonDetector(rules, partition=p, sponsor_partitions=partitions, clock=lambda: 0) for p in range(partitions)
    }
    entity = {q: EntityDetector(rules, partitions, clock=lambda: 0) for q in range(partitions)}
    out: list[dict[str, Any]] = []

    def to_entities(detector: PersonDetector) -> None:
        nonlocal out
        for key, fact in detector.facts:
            targets = range(partitions) if key is None else [partition_for(key, partitions)]
            for q in targets:
                out += entity[q].offer_fact(fact)
        detector.facts.clear()

    for topic, p, kind, record in records:
        if topic == topics.SPONSOR_REPORTS:
            out += entity[p].offer_report(kind, record)
            for key, fact in route_roster(p, kind, record):
                targets = range(partitions) if key is None else [partition_for(key, partitions)]
                for target in targets:
                    out += person[target].offer_roster(fact)
                    to_entities(person[target])
        elif topic in INPUTS:
            out += person[p].offer(topic, kind, record)
            to_entities(person[p])
    return out
