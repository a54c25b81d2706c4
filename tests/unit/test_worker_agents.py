"""Every detector rule through the worker's faust agents (`streams.app.build_app`), no broker.

Each test runs both agents of one worker in faust's ``agent.test_context()`` and wires them into a
small in-memory pipeline (:class:`Pipeline`): records are encoded as the gateway writes them and
put on the topic they would come from; the agents write to an :class:`Outbox` whose submitter keeps
the records in memory; the pipeline decodes the alerts and dead letters and hands the internal
facts on (person stage → ``pora.entity-facts`` → entity stage → ``pora.person-facts`` → person
stage), as the broker would. Event time moves only with clock ticks (:meth:`Pipeline.advance`).
One upstream partition keeps it small; the rules' numbers come from ``streams/rules.toml``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from datetime import date
from typing import Any

import orjson
from builders import (
    CP,
    CP2,
    D0,
    EST,
    SPONSOR,
    Input,
    arrival,
    at,
    clock_tick,
    departure,
    hotel,
    ident,
    journey,
    permit,
    sponsor_report,
)

from connectors.gateway.publisher import OutRecord, Submitted
from schemas.codec import codec
from streams import topics
from streams.app import build_app
from streams.detect.config import TppoWeights, default_rules
from streams.detect.person import HOUR_MS, INPUTS, day_start, ms, show_day
from streams.outbox import Outbox
from streams.settings import Settings

RULES = default_rules()
LATE_MS = int(RULES.time.lateness_seconds * 1000)
PREFIX = "t-"
SETTINGS = Settings(kafka_bootstrap="localhost:1", topic_prefix=PREFIX, topic_partitions=1)
PERSON_TOPICS = (*INPUTS, topics.PERSON_FACTS)
ENTITY_TOPICS = (topics.ENTITY_FACTS, topics.SPONSOR_REPORTS)
SUBJECT_FIELDS = ("person_key", "establishment_id", "sponsor_id", "checkpoint_id")
C = codec()

Alert = dict[str, Any]


class MemorySubmitter:
    """The outbox's producer: keeps what it is given, every write acknowledged at once."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    async def submit(self, records: Sequence[OutRecord]) -> Submitted:
        self.records.extend(records)
        ack: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        ack.set_result(None)
        return Submitted([None] * len(records), [(ack, list(range(len(records))))])

    async def wait(self, submitted: Submitted) -> list[BaseException | None]:
        return list(submitted.results)


class Pipeline:
    """Both agents of one worker in test contexts, connected through an in-memory outbox.

    ``put`` delivers a record to the agent that reads its topic and then, in the order they were
    written, every internal fact that follows from it, until nothing is left in flight."""

    def __init__(self, *, already_emitted: set[str] | None = None) -> None:
        self.sink = MemorySubmitter()
        self.app = build_app(
            SETTINGS, RULES, outbox=Outbox(self.sink), upstream_partitions=1, already_emitted=already_emitted
        )
        self.alerts: list[Alert] = []
        self.dead_letters: list[dict[str, Any]] = []
        self.facts: dict[str, list[dict[str, Any]]] = {topics.ENTITY_FACTS: [], topics.PERSON_FACTS: []}
        self._read = 0
        self._stack = AsyncExitStack()
        self._agents: dict[str, Any] = {}
        self._channels: dict[str, Any] = {}

    async def __aenter__(self) -> Pipeline:
        assert set(self.app.agents) == {"person-rules", "entity-rules"}
        person = await self._stack.enter_async_context(self.app.agents["person-rules"].test_context())
        entity = await self._stack.enter_async_context(self.app.agents["entity-rules"].test_context())
        self._agents = {**dict.fromkeys(PERSON_TOPICS, person), **dict.fromkeys(ENTITY_TOPICS, entity)}
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def put(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        pending: deque[tuple[str, bytes | None, bytes]] = deque([(topic, key, value)])
        while pending:
            name, k, v = pending.popleft()
            agent = self._agents[name]
            if name not in self._channels:
                self._channels[name] = self.app.topic(SETTINGS.topic(name))
            agent.original_channel = self._channels[name]  # the topic the agent sees on the message
            await agent.put(v, key=k, partition=0)
            pending.extend(self._collect())

    async def send(self, *inputs: Input) -> None:
        """Encode each record as the gateway does and deliver it."""
        for topic, kind, record in inputs:
            await self.put(topic, C.encode(kind, record))

    async def advance(self, until: int) -> None:
        """Tick every input of the partition so that the person stage's watermark reaches ``until``:
        sponsor.reports (whose tick the entity stage routes to ``pora.person-facts``) and the four
        person topics. The entity stage's watermark trails by the lateness (it gets the person
        stage's watermark, then subtracts its own allowance)."""
        t = until + LATE_MS
        await self.send(clock_tick(topics.SPONSOR_REPORTS, t), *(clock_tick(topic, t) for topic in INPUTS))

    def _collect(self) -> list[tuple[str, bytes | None, bytes]]:
        """Read what the agents wrote since the last call; return the internal facts to deliver."""
        new, self._read = self.sink.records[self._read :], len(self.sink.records)
        forward: list[tuple[str, bytes | None, bytes]] = []
        for r in new:
            assert r.topic.startswith(PREFIX), r.topic
            name = r.topic[len(PREFIX) :]
            if name == topics.ALERTS:
                kind, alert = C.decode(r.value)
                assert kind == "alert" and r.key == alert["alert_id"].encode()
                self.alerts.append(alert)
            elif name == topics.DEAD_LETTERS:
                kind, letter = C.decode(r.value)
                assert kind == "dead_letter"
                self.dead_letters.append(letter)
            elif name in self.facts:
                fact = orjson.loads(r.value)
                _check_fact_key(name, r.key, r.partition, fact)
                self.facts[name].append(fact)
                forward.append((name, r.key, r.value))
            else:
                raise AssertionError(f"unexpected write to {r.topic}")
        return forward

    def found(self, rule: str, *, who: str | None = None, status: str | None = None) -> list[Alert]:
        return [
            a
            for a in self.alerts
            if a["rule_id"] == rule
            and (who is None or who in a["subject"].values())
            and (status is None or a["status"] == status)
        ]


def _check_fact_key(topic: str, key: bytes | None, partition: int | None, fact: dict[str, Any]) -> None:
    """Internal facts are keyed by what they concern; watermarks go to every partition (here: 0)."""
    if fact["t"] == "tick":
        assert key is None and partition == 0, (topic, fact)
        return
    expected = {"hotel": "est", "permit": "sponsor", "departure": "ref", "seen": "pk"}[fact["t"]]
    assert key == str(fact[expected]).encode() and partition is None, (topic, key, fact)


def in_pipeline(scenario: Callable[[Pipeline], Awaitable[None]]) -> Callable[[], None]:
    """A sync test that runs ``scenario`` against a fresh pipeline in its own event loop."""

    def test() -> None:
        async def run() -> None:
            async with Pipeline() as pipe:
                await scenario(pipe)

        asyncio.run(run())

    test.__doc__ = scenario.__doc__
    return test


def expected_id(rule: str, subject: dict[str, str], window: str) -> str:
    """RULES.md: ``"AL-" + blake2b(rule_id | subject key | window, 12 bytes)``."""
    key = "|".join(f"{k}={subject[k]}" for k in SUBJECT_FIELDS if subject.get(k))
    return "AL-" + hashlib.blake2b(f"{rule}|{key}|{window}".encode(), digest_size=12).hexdigest()


def check(
    alert: Alert,
    *,
    rule: str,
    status: str,
    severity: str,
    subject: dict[str, str],
    office: str,
    window: str,
    step: int = 0,
) -> dict[str, str]:
    """Assert an alert record's contract fields; return its evidence as name -> value."""
    assert (alert["rule_id"], alert["status"], alert["severity"], alert["office"]) == (rule, status, severity, office)
    assert alert["subject"] == {**dict.fromkeys(SUBJECT_FIELDS), **subject}
    assert alert["rule_version"] == RULES.version
    assert alert["reasons"] and all(r.strip() for r in alert["reasons"])
    assert alert["evidence"][-1] == {"name": "window", "value": window, "event_id": None, "weight": None}
    assert alert["alert_id"] == expected_id(rule, subject, window)
    assert alert["event_id"].split(":")[:3] == [alert["alert_id"], status.lower(), str(step)]
    return {e["name"]: e["value"] for e in alert["evidence"]}


def without_wall_time(alerts: list[Alert]) -> list[Alert]:
    """Alert records minus ``reported_at`` (the wall clock at emission)."""
    return [{k: v for k, v in a.items() if k != "reported_at"} for a in alerts]


def day_iso(day: int) -> str:
    """ISO date of a day counted from D0."""
    return show_day(D0 + day)


def midnight(day: int) -> int:
    """00:00 WIB of a day counted from D0."""
    return day_start(D0 + day)


# ------------------------------------------------------------------ overstay and the stay


@in_pipeline
async def test_overstay_from_the_day_after_expiry_amended_critical_at_60_days(pipe: Pipeline) -> None:
    await pipe.send(arrival("p1", at(0), until_day=29))  # authorised until 2026-11-30
    await pipe.advance(midnight(30) - 1)  # the last instant of the last authorised day
    assert pipe.found("overstay") == []
    await pipe.advance(midnight(30))
    (raised,) = pipe.found("overstay")
    ev = check(
        raised,
        rule="overstay",
        status="RAISED",
        severity="HIGH",
        subject={"person_key": "p1"},
        office="KANIM-BATAM",
        window=day_iso(29),
    )
    assert (ev["authorised_until"], ev["days_over"], ev["charge_idr"]) == (day_iso(29), "1", "1000000")
    assert ms(raised["occurred_at"]) == midnight(30)
    escalate = RULES.overstay.escalate_at_days
    await pipe.advance(midnight(29 + escalate) - 1)
    assert [a["status"] for a in pipe.found("overstay")] == ["RAISED"]
    await pipe.advance(midnight(29 + escalate))
    _, amended = pipe.found("overstay")
    ev = check(
        amended,
        rule="overstay",
        status="AMENDED",
        severity="CRITICAL",
        subject={"person_key": "p1"},
        office="KANIM-BATAM",
        window=day_iso(29),
        step=1,
    )
    assert amended["alert_id"] == raised["alert_id"]
    assert (ev["days_over"], ev["charge_idr"]) == (str(escalate), str(escalate * RULES.overstay.charge_per_day_idr))


@in_pipeline
async def test_an_extension_reported_after_the_overstay_began_withdraws_it(pipe: Pipeline) -> None:
    await pipe.send(
        arrival("p1", at(0), until_day=29),
        arrival("p2", at(0), until_day=29),
        permit("p2", at(20), until_day=59),  # extended in time, before the warning was due
    )
    await pipe.advance(at(31))
    (raised,) = pipe.found("overstay")
    assert raised["subject"]["person_key"] == "p1"
    await pipe.send(permit("p1", at(28), until_day=59, reported=at(32)))  # decided on day 28, known on day 32
    await pipe.advance(at(33))
    _, withdrawn = pipe.found("overstay", who="p1")
    check(
        withdrawn,
        rule="overstay",
        status="WITHDRAWN",
        severity="HIGH",
        subject={"person_key": "p1"},
        office="KANIM-BATAM",
        window=day_iso(29),
        step=1,
    )
    assert withdrawn["alert_id"] == raised["alert_id"]
    assert "reported later" in withdrawn["reasons"][-1]
    assert pipe.found("overstay", who="p2") == [] and pipe.found("permit.expiring", who="p2") == []


@in_pipeline
async def test_a_departure_after_expiry_is_overstay_at_exit(pipe: Pipeline) -> None:
    late = departure("p1", at(41), checkpoint=CP2, eid="dep-p1")
    very_late = departure("p2", at(29 + 63), eid="dep-p2")
    await pipe.send(
        arrival("p1", at(0), until_day=29),
        arrival("p2", at(0), until_day=29),
        arrival("p3", at(0), until_day=29),
        departure("p3", at(29, 22)),  # on the last authorised day
        late,
        very_late,
    )
    await pipe.advance(at(29 + 64))
    (a1,) = pipe.found("overstay.at_exit", who="p1")
    ev = check(
        a1,
        rule="overstay.at_exit",
        status="RAISED",
        severity="HIGH",
        subject={"person_key": "p1"},
        office="KANIM-SH",  # the departure checkpoint's office
        window="dep-p1",
    )
    assert (ev["days_over"], ev["charge_idr"]) == ("12", "12000000")
    assert any("Rp 12,000,000" in r for r in a1["reasons"])
    (a2,) = pipe.found("overstay.at_exit", who="p2")
    ev = check(
        a2,
        rule="overstay.at_exit",
        status="RAISED",
        severity="CRITICAL",
        subject={"person_key": "p2"},
        office="KANIM-BATAM",
        window="dep-p2",
    )
    assert ev["days_over"] == "63"
    assert pipe.found("overstay.at_exit", who="p3") == [] and pipe.found("overstay", who="p3") == []


@in_pipeline
async def test_permit_expiring_warns_before_the_stay_ends(pipe: Pipeline) -> None:
    warn = RULES.overstay.warn_before_days
    await pipe.send(
        arrival("p1", at(0), until_day=29, eid="arr-p1"),
        arrival("p2", at(0), until_day=warn - 2),  # the warning would fall before the arrival
    )
    await pipe.advance(midnight(29 - warn) - 1)
    assert pipe.found("permit.expiring") == []
    await pipe.advance(midnight(29 - warn))
    (a,) = pipe.found("permit.expiring")
    ev = check(
        a,
        rule="permit.expiring",
        status="RAISED",
        severity="LOW",
        subject={"person_key": "p1"},
        office="KANIM-BATAM",
        window=day_iso(29),
    )
    assert ev["authorised_until"] == day_iso(29)
    assert [e["event_id"] for e in a["evidence"] if e["name"] == "authorised_until"] == ["arr-p1"]
    assert ms(a["occurred_at"]) == midnight(29 - warn)


@in_pipeline
async def test_overstay_located_by_a_check_in_and_withdrawn_by_cancel_or_correction(pipe: Pipeline) -> None:
    await pipe.send(
        arrival("p1", at(0), until_day=29),
        arrival("p2", at(0), until_day=29),
        hotel("p1", at(35), 35, eid="htl-p1"),
        # p2's hotel typed day 35 for a check-in on day 20, and corrects it four hours later
        hotel("p2", at(20), 35, eid="htl-p2"),
        hotel("p2", at(20, 14), 20, action="CORRECTION", corrects="htl-p2"),
    )
    await pipe.advance(at(36))
    (located,) = pipe.found("overstay.located", who="p1")
    ev = check(
        located,
        rule="overstay.located",
        status="RAISED",
        severity="HIGH",
        subject={"person_key": "p1", "establishment_id": "EST-1"},
        office=EST["office"],
        window="htl-p1",
    )
    assert ev["days_over"] == "6"
    assert located["reasons"][0] == f"checked in at Hotel Harmoni on {day_iso(35)}"
    raised, corrected = pipe.found("overstay.located", who="p2")
    assert raised["status"] == "RAISED"
    check(
        corrected,
        rule="overstay.located",
        status="WITHDRAWN",
        severity="HIGH",
        subject={"person_key": "p2", "establishment_id": "EST-1"},
        office=EST["office"],
        window="htl-p2",
        step=1,
    )
    assert "within the authorised stay" in corrected["reasons"][-1]
    await pipe.send(hotel("p1", at(36, 12), 35, action="CANCEL", corrects="htl-p1"))
    await pipe.advance(at(37))
    _, cancelled = pipe.found("overstay.located", who="p1")
    assert (cancelled["status"], cancelled["alert_id"]) == ("WITHDRAWN", located["alert_id"])
    assert "cancelled" in cancelled["reasons"][-1]


@in_pipeline
async def test_a_correction_into_an_overstay_locates_the_person(pipe: Pipeline) -> None:
    await pipe.send(
        arrival("p1", at(0), until_day=29),
        hotel("p1", at(35), 20, eid="htl-typo"),  # typed day 20 for a check-in on day 35
        hotel("p1", at(35, 12), 35, action="CORRECTION", corrects="htl-typo"),
    )
    await pipe.advance(at(36))
    (located,) = pipe.found("overstay.located")
    check(
        located,
        rule="overstay.located",
        status="RAISED",
        severity="HIGH",
        subject={"person_key": "p1", "establishment_id": "EST-1"},
        office=EST["office"],
        window="htl-typo",
    )


@in_pipeline
async def test_a_corrected_expected_check_out_moves_the_check_out_deadline(pipe: Pipeline) -> None:
    await pipe.send(
        arrival("p1", at(0), until_day=60),
        hotel("p1", at(0, 15), 0, expected_out=3, eid="htl-p1"),
        hotel("p1", at(1), 0, expected_out=20, action="CORRECTION", corrects="htl-p1"),
    )
    due = midnight(21) + int(RULES.reporting.checkout_grace_hours * HOUR_MS)
    await pipe.advance(due - 1)
    assert pipe.found("report.checkout_missing") == []
    await pipe.advance(due)
    (missing,) = pipe.found("report.checkout_missing")
    assert ms(missing["occurred_at"]) == due


# ------------------------------------------------------------------ TPPO screening


ALLOWED_INDICATORS = set(TppoWeights.model_fields)


@in_pipeline
async def test_tppo_screening_lists_indicators_with_weights(pipe: Pipeline) -> None:
    risky = journey(
        destination_country="KHM",
        destination_city="Phnom Penh",
        return_ticket=False,
        passport_issued_on=D0 + 5,
        job_offer_contact=True,
    )
    work = journey(
        destination_country="SAU", onward_route=["KHM"], purpose="WORK", return_ticket=False, passport_issued_on=D0
    )
    # another traveller on c1's journey whose document shows other names, birth date and document
    other = {**ident("c4", "IDN"), "given_names": "Siti", "surname": "Rahma", "date_of_birth": D0 - 9000}
    await pipe.send(
        departure("c1", at(10), nat="IDN", journey=risky, eid="dep-c1"),
        departure("c2", at(10), nat="IDN", journey=work, eid="dep-c2"),
        departure("c3", at(10), nat="IDN", journey=journey()),  # an ordinary trip
        departure("c4", at(10), nat="IDN", journey=risky, eid="dep-c4", who={**other, "document_type": "OTHER"}),
        # c1 again two days later, at another checkpoint: one-way on the new passport
        departure(
            "c1",
            at(12),
            nat="IDN",
            checkpoint=CP2,
            journey=journey(return_ticket=False, passport_issued_on=D0 + 5),
            eid="dep-c1b",
        ),
    )
    await pipe.advance(at(13))
    assert pipe.found("tppo.screening", who="c3") == []
    first, again = pipe.found("tppo.screening", who="c1")
    weights = RULES.tppo.weights
    for alert, who in ((first, "c1"), (pipe.found("tppo.screening", who="c4")[0], "c4")):
        ev = check(
            alert,
            rule="tppo.screening",
            status="RAISED",
            severity="MEDIUM",
            subject={"person_key": who, "checkpoint_id": CP["checkpoint_id"]},
            office=CP["office"],
            window=f"dep-{who}",
        )
        fired = {e["name"]: e["weight"] for e in alert["evidence"] if e["weight"] is not None}
        assert fired == {
            "risk_destination": weights.risk_destination,
            "one_way": weights.one_way,
            "new_passport": weights.new_passport,
            "tourist_with_work_signs": weights.tourist_with_work_signs,
        }
        assert ev["score"] == "9"
        assert any("Phnom Penh" in r for r in alert["reasons"])
    (work_alert,) = pipe.found("tppo.screening", who="c2")
    ev = check(
        work_alert,
        rule="tppo.screening",
        status="RAISED",
        severity="HIGH",  # 12 >= 2 x threshold
        subject={"person_key": "c2", "checkpoint_id": CP["checkpoint_id"]},
        office=CP["office"],
        window="dep-c2",
    )
    assert ev["score"] == "12"
    assert {e["name"] for e in work_alert["evidence"] if e["weight"] is not None} == {
        "pmi_without_placement",
        "moratorium_destination",
        "risk_destination",
        "one_way",
        "new_passport",
    }
    ev = check(
        again,
        rule="tppo.screening",
        status="RAISED",
        severity="MEDIUM",
        subject={"person_key": "c1", "checkpoint_id": CP2["checkpoint_id"]},
        office=CP2["office"],
        window="dep-c1b",
    )
    assert ev["previous_delay"] == f"screened before at {CP['checkpoint_id']}" and ev["score"] == "7"
    # journey facts only: every weighted item is a configured indicator, and each reason after the
    # first is one of them with its weight
    for alert in pipe.found("tppo.screening"):
        weighted = [e for e in alert["evidence"] if e["weight"] is not None]
        assert {e["name"] for e in weighted} <= ALLOWED_INDICATORS
        assert {e["name"] for e in alert["evidence"]} - ALLOWED_INDICATORS == {"score", "window"}
        assert alert["reasons"][1:] == [f"{e['value']} (+{e['weight']:g})" for e in weighted]


@in_pipeline
async def test_tppo_group_indicator_from_the_second_stage(pipe: Pipeline) -> None:
    t = RULES.tppo
    assert t.group_min_travellers == 3
    risky = journey(destination_country="KHM", return_ticket=False, agent_reference="PT-MAJU")  # 5: raised alone
    near = journey(return_ticket=False, passport_issued_on=D0 + 5, agent_reference="PT-MAJU")  # 4: one short
    await pipe.send(
        departure("a", at(10, 8), nat="IDN", journey=risky, eid="dep-a"),
        departure("b", at(10, 9), nat="IDN", journey=near, eid="dep-b"),
        departure("c", at(10, 10), nat="IDN", journey=risky, eid="dep-c"),
        # the same agent, but outside the window of the others: no group
        departure("d", at(12, 10), nat="IDN", journey=near, eid="dep-d"),
    )
    await pipe.advance(at(11))
    screenings = pipe.found("tppo.screening")
    assert [(a["subject"]["person_key"], a["status"]) for a in screenings] == [
        ("a", "RAISED"),  # person stage
        ("c", "RAISED"),
        ("a", "AMENDED"),  # entity stage, when the third traveller is released
        ("b", "RAISED"),
        ("c", "AMENDED"),
    ]
    raised = {a["subject"]["person_key"]: a for a in screenings[:2]}
    for alert, who, status, step, score in (
        (screenings[2], "a", "AMENDED", 1, "6"),
        (screenings[3], "b", "RAISED", 0, "5"),
        (screenings[4], "c", "AMENDED", 1, "6"),
    ):
        ev = check(
            alert,
            rule="tppo.screening",
            status=status,
            severity="MEDIUM",
            subject={"person_key": who, "checkpoint_id": CP["checkpoint_id"]},
            office=CP["office"],
            window=f"dep-{who}",
            step=step,
        )
        assert alert["event_id"].endswith(":agent:PT-MAJU")
        assert ev["score"] == score
        (group,) = [e for e in alert["evidence"] if e["name"] == "group_same_agent"]
        assert group["weight"] == t.weights.group_same_agent and group["value"].startswith("3 travellers")
        if who in raised:
            assert alert["alert_id"] == raised[who]["alert_id"]
    await pipe.advance(at(13))
    assert pipe.found("tppo.screening", who="d") == []


# ------------------------------------------------------------------ hotel reporting


@in_pipeline
async def test_report_late_and_withdrawn_when_the_check_in_is_cancelled(pipe: Pipeline) -> None:
    deadline = RULES.reporting.hotel_deadline_hours
    await pipe.send(
        arrival("p1", at(0), until_day=29),
        arrival("p2", at(0), until_day=29),
        hotel("p1", at(1), 1, reported=at(1) + int((deadline + 1) * HOUR_MS), eid="htl-late"),
        hotel("p2", at(1), 1, reported=at(1) + int((deadline - 1) * HOUR_MS)),  # in time
    )
    await pipe.advance(at(3))
    (late,) = pipe.found("report.late")
    ev = check(
        late,
        rule="report.late",
        status="RAISED",
        severity="LOW",
        subject={"establishment_id": "EST-1", "person_key": "p1"},
        office=EST["office"],
        window="htl-late",
    )
    assert ev["delay_hours"] == f"{deadline + 1:.1f}"
    await pipe.send(hotel("p1", at(3, 12), 1, action="CANCEL", corrects="htl-late"))
    await pipe.advance(at(4))
    _, withdrawn = pipe.found("report.late")
    check(
        withdrawn,
        rule="report.late",
        status="WITHDRAWN",
        severity="LOW",
        subject={"establishment_id": "EST-1", "person_key": "p1"},
        office=EST["office"],
        window="htl-late",
        step=1,
    )


@in_pipeline
async def test_report_missing_when_the_declared_hotel_reports_nothing(pipe: Pipeline) -> None:
    await pipe.send(
        arrival("p1", at(0), until_day=29, declared="EST-1", eid="arr-p1"),
        arrival("p2", at(0), until_day=29, declared="EST-1"),
        hotel("p2", at(0, 15), 0),  # reported by the declared hotel
        arrival("p3", at(0), until_day=29, declared="EST-1"),
        departure("p3", at(1)),  # left before the deadline
    )
    deadline = at(0) + int(2 * RULES.reporting.hotel_deadline_hours * HOUR_MS)
    await pipe.advance(deadline - 1)
    assert pipe.found("report.missing") == []
    await pipe.advance(deadline)
    (missing,) = pipe.found("report.missing")
    ev = check(
        missing,
        rule="report.missing",
        status="RAISED",
        severity="MEDIUM",
        subject={"establishment_id": "EST-1", "person_key": "p1"},
        office=CP["office"],  # the arrival checkpoint's
        window="arr-p1",
    )
    assert ev["declared_establishment_id"] == "EST-1"
    assert ms(missing["occurred_at"]) == deadline


@in_pipeline
async def test_report_checkout_missing_after_departure_or_expected_check_out(pipe: Pipeline) -> None:
    grace = int(RULES.reporting.checkout_grace_hours * HOUR_MS)
    gone = departure("p1", at(5))
    await pipe.send(
        *(arrival(p, at(0), until_day=29) for p in ("p1", "p2", "p3")),
        hotel("p1", at(0, 15), 0, eid="htl-p1"),
        gone,
        hotel("p2", at(0, 15), 0, expected_out=3, eid="htl-p2"),
        hotel("p3", at(0, 15), 0, expected_out=3),
        hotel("p3", at(3, 9), 0, action="CHECK_OUT"),
    )
    await pipe.advance(at(7))
    assert pipe.found("report.checkout_missing", who="p3") == []
    for who, when in (("p1", gone[2]["reported_at"] + grace), ("p2", midnight(4) + grace)):
        (a,) = pipe.found("report.checkout_missing", who=who)
        check(
            a,
            rule="report.checkout_missing",
            status="RAISED",
            severity="LOW",
            subject={"establishment_id": "EST-1", "person_key": who},
            office=EST["office"],
            window=f"htl-{who}",
        )
        assert ms(a["occurred_at"]) == when


# ------------------------------------------------------------------ whereabouts


@in_pipeline
async def test_whereabouts_unknown_from_the_arrival_late_hotel_report_and_sponsor_roster(pipe: Pipeline) -> None:
    silent = RULES.reporting.whereabouts_silent_days
    await pipe.send(
        *(arrival(p, at(0), until_day=90) for p in ("p1", "p2", "p3")),
        # p2 checked in on day 5, the hotel reported it after the silence had run out
        hotel("p2", at(5), 5, reported=at(silent + 1, 12)),
        # p3 is listed by a sponsor for the period to 2026-11-10, routed by the entity stage
        sponsor_report(at(12), date(2026, 11, 10), ["p3"], eid="spr-p3"),
    )
    await pipe.advance(midnight(silent + 1) - 1)
    assert pipe.found("whereabouts.unknown") == []
    await pipe.advance(midnight(silent + 1))
    assert sorted(a["subject"]["person_key"] for a in pipe.found("whereabouts.unknown")) == ["p1", "p2"]
    (a,) = pipe.found("whereabouts.unknown", who="p1")
    check(
        a,
        rule="whereabouts.unknown",
        status="RAISED",
        severity="MEDIUM",
        subject={"person_key": "p1"},
        office=CP["office"],  # the arrival accounts for day 0
        window=day_iso(0),
    )
    assert "arrived at Batam Centre" in a["reasons"][1]
    await pipe.advance(at(silent + 2))
    _, withdrawn = pipe.found("whereabouts.unknown", who="p2")
    check(
        withdrawn,
        rule="whereabouts.unknown",
        status="WITHDRAWN",
        severity="MEDIUM",
        subject={"person_key": "p2"},
        office=CP["office"],
        window=day_iso(0),
        step=1,
    )
    assert "inside the silence" in withdrawn["reasons"][-1]
    assert [f["pk"] for f in pipe.facts[topics.PERSON_FACTS] if f["t"] == "seen"] == ["p3"]
    # the roster accounts for p3 until the sponsor's next report is due, day `due_day` of January
    covered = 61 + RULES.sponsor.due_day - 1  # day 61 is 2027-01-01
    assert day_iso(61) == "2027-01-01"
    await pipe.advance(midnight(covered + silent + 1) - 1)
    assert pipe.found("whereabouts.unknown", who="p3") == []
    await pipe.advance(midnight(covered + silent + 1))
    (listed,) = pipe.found("whereabouts.unknown", who="p3")
    ev = check(
        listed,
        rule="whereabouts.unknown",
        status="RAISED",
        severity="MEDIUM",
        subject={"person_key": "p3"},
        office=SPONSOR["office"],  # the sponsor's: its roster is the last sighting
        window=day_iso(covered),
    )
    assert ev["last_sighting"] == day_iso(covered)
    assert "listed by sponsor SPN-1" in listed["reasons"][1]
    assert [e["event_id"] for e in listed["evidence"] if e["name"] == "last_sighting"] == ["spr-p3"]


# ------------------------------------------------------------------ establishments and sponsors


@in_pipeline
async def test_establishment_silent_and_withdrawn_by_a_late_report(pipe: Pipeline) -> None:
    # a check-in every other day for four weeks (median gap 2 → 6 days of silence are unusual)
    await pipe.send(*(hotel(f"g{d}", at(d), d) for d in range(0, 30, 2)))
    last = 28
    threshold = max(RULES.establishment_silent.min_silent_days, 3 * 2)
    assert RULES.establishment_silent.silence_factor == 3.0
    await pipe.advance(midnight(last + threshold) - HOUR_MS)
    assert pipe.found("establishment.silent") == []
    await pipe.advance(midnight(last + threshold) + HOUR_MS)
    (silent,) = pipe.found("establishment.silent")
    ev = check(
        silent,
        rule="establishment.silent",
        status="RAISED",
        severity="MEDIUM",
        subject={"establishment_id": "EST-1"},
        office=EST["office"],
        window=day_iso(last),
    )
    assert (ev["threshold_days"], ev["silent_days"], ev["last_report_day"]) == ("6", "6", day_iso(last))
    assert ms(silent["occurred_at"]) == midnight(last + threshold)
    assert (ms(silent["window_start"]), ms(silent["window_end"])) == (midnight(last + 1), midnight(last + threshold))
    # a guest of day 31 reported on day 35: the establishment was late, not silent
    await pipe.send(hotel("g31", at(31), 31, reported=at(35)))
    await pipe.advance(at(36))
    _, withdrawn = pipe.found("establishment.silent")
    check(
        withdrawn,
        rule="establishment.silent",
        status="WITHDRAWN",
        severity="MEDIUM",
        subject={"establishment_id": "EST-1"},
        office=EST["office"],
        window=day_iso(last),
        step=1,
    )
    assert [f["day"] - D0 for f in pipe.facts[topics.ENTITY_FACTS] if f["t"] == "hotel"] == [*range(0, 30, 2), 31]


SPONSOR2 = {"sponsor_id": "SPN-2", "name": "PT Laut Biru", "region": "Batam", "office": "KANIM-BATAM"}


@in_pipeline
async def test_sponsor_overdue_when_a_month_goes_unreported(pipe: Pipeline) -> None:
    # both sponsors become known in November 2026: December is the first month they must report
    await pipe.send(
        permit("w1", at(1), until_day=300, action="GRANTED", sponsor="SPN-1", office="KANIM-MALANG"),
        permit("w2", at(1), until_day=300, action="GRANTED", sponsor="SPN-2", office="KANIM-BATAM"),
        # SPN-2 reports December on 2027-01-05
        sponsor_report(at(65), date(2026, 12, 31), ["w2"], sponsor=SPONSOR2),
    )
    due = midnight(61 + RULES.sponsor.due_day - 1)  # day 61 is 2027-01-01
    assert day_iso(61) == "2027-01-01"
    await pipe.advance(due - HOUR_MS)
    assert pipe.found("sponsor.overdue") == []
    await pipe.advance(due + HOUR_MS)
    (overdue,) = pipe.found("sponsor.overdue")
    ev = check(
        overdue,
        rule="sponsor.overdue",
        status="RAISED",
        severity="MEDIUM",
        subject={"sponsor_id": "SPN-1"},
        office="KANIM-MALANG",  # of its latest permit
        window="2026-12",
    )
    assert (ev["period"], ev["due"]) == ("2026-12", "2027-01-10")
    assert ms(overdue["occurred_at"]) == due


@in_pipeline
async def test_sponsor_roster_mismatch_names_omitted_and_unlisted(pipe: Pipeline) -> None:
    workers = [f"w{i}" for i in range(1, 6)]
    await pipe.send(
        *(permit(w, at(1), until_day=300, action="GRANTED", sponsor="SPN-1") for w in workers),
        permit("w6", at(1), until_day=300, action="CANCELLED", sponsor="SPN-1"),  # not expected on the roster
        sponsor_report(at(20), date(2026, 11, 30), [*workers[:4], "x9"], eid="spr-a"),  # w5 omitted, x9 unlisted
        sponsor_report(at(21), date(2026, 11, 30), [], eid="spr-b"),  # all five omitted
        sponsor_report(at(22), date(2026, 11, 30), workers, eid="spr-c"),  # as the permits say
    )
    await pipe.advance(at(23))
    a, b = pipe.found("sponsor.roster_mismatch")
    ev = check(
        a,
        rule="sponsor.roster_mismatch",
        status="RAISED",
        severity="MEDIUM",
        subject={"sponsor_id": "SPN-1"},
        office=SPONSOR["office"],  # the report's, not the permits' (KANIM-BATAM)
        window="spr-a",
    )
    named = {(e["name"], e["value"]) for e in a["evidence"]}
    assert {("omitted", "w5"), ("unlisted", "x9")} <= named and ("omitted", "w6") not in named
    assert (ev["omitted_count"], ev["unlisted_count"]) == ("1", "1")
    ev = check(
        b,
        rule="sponsor.roster_mismatch",
        status="RAISED",
        severity="HIGH",  # omitted >= sponsor.omitted_high
        subject={"sponsor_id": "SPN-1"},
        office=SPONSOR["office"],
        window="spr-b",
    )
    assert (ev["omitted_count"], ev["unlisted_count"]) == (str(RULES.sponsor.omitted_high), "0")


# ------------------------------------------------------------------ delivery: duplicates, order, bad input


def _mixed_inputs() -> list[Input]:
    """Inputs for every stage: stays, hotel reports (one late), a late extension, a sponsored
    permit and report, and a group of citizens on one agent."""
    near = journey(return_ticket=False, passport_issued_on=D0 + 5, agent_reference="PT-MAJU")
    return [
        arrival("p1", at(0), until_day=29, declared="EST-1", eid="mx-arr-p1"),
        arrival("p2", at(0), until_day=29, eid="mx-arr-p2"),
        hotel("p1", at(1), 1, reported=at(2, 12), eid="mx-htl-p1"),
        hotel("p2", at(33), 33, eid="mx-htl-p2"),
        permit("p1", at(28), until_day=59, reported=at(31), eid="mx-prm-p1"),
        permit("w1", at(1), until_day=300, action="GRANTED", sponsor="SPN-1", eid="mx-prm-w1"),
        departure("p2", at(34), eid="mx-dep-p2"),
        *(departure(c, at(10, 8 + i), nat="IDN", journey=near, eid=f"mx-dep-{c}") for i, c in enumerate("abc")),
        sponsor_report(at(20), date(2026, 11, 30), ["w1", "x9"], eid="mx-spr"),
        # two stays at one hotel and one check-out: it closes the later stay only, even if redelivered
        hotel("p4", at(0, 15), 0, expected_out=10, eid="mx-htl-p4a"),
        hotel("p4", at(1, 15), 1, expected_out=10, eid="mx-htl-p4b"),
        hotel("p4", at(3, 9), 3, action="CHECK_OUT", eid="mx-out-p4"),
        # a late check-in and its cancellation, reported in the same millisecond: applied by event id
        hotel("p5", at(3), 3, reported=at(4, 12), eid="mx-ci-p5"),
        hotel("p5", at(4), 3, reported=at(4, 12), action="CANCEL", corrects="mx-ci-p5", eid="mx-cx-p5"),
    ]


def test_the_same_event_delivered_twice_raises_nothing_more() -> None:
    async def scenario(twice: bool) -> list[Alert]:
        async with Pipeline() as pipe:
            for record in _mixed_inputs():
                await pipe.send(*([record, record] if twice else [record]))
            await pipe.advance(at(40))
            return without_wall_time(pipe.alerts)

    once, twice = asyncio.run(scenario(False)), asyncio.run(scenario(True))
    assert len({a["event_id"] for a in twice}) == len(twice)
    assert twice == once
    rules = {"report.late", "report.missing", "report.checkout_missing", "overstay.located", "tppo.screening"}
    assert rules | {"sponsor.roster_mismatch"} <= {a["rule_id"] for a in once}
    checkouts = [a["evidence"][-1]["value"] for a in once if a["rule_id"] == "report.checkout_missing"]
    assert checkouts == ["mx-htl-p4a", "mx-htl-p2"]  # p4's earlier stay stays open; p2 left the country


def test_records_in_another_order_across_topics_give_the_same_alerts() -> None:
    inputs = _mixed_inputs()
    orders = [inputs, inputs[::-1], sorted(inputs, key=lambda i: (i[0], -ms(i[2]["reported_at"])))]
    assert orders[0] != orders[2]

    async def scenario(records: list[Input]) -> list[Alert]:
        async with Pipeline() as pipe:
            await pipe.send(*records)
            await pipe.advance(at(40))
            return without_wall_time(pipe.alerts)

    results = [asyncio.run(scenario(records)) for records in orders]
    assert results[0] == results[1] == results[2]
    late_p5 = [a["status"] for a in results[0] if a["rule_id"] == "report.late" and a["subject"]["person_key"] == "p5"]
    assert late_p5 == ["RAISED", "WITHDRAWN"]
    assert len({a["alert_id"] for a in results[0]}) >= 8


@in_pipeline
async def test_an_undecodable_record_goes_to_the_dead_letter_topic_and_the_worker_goes_on(pipe: Pipeline) -> None:
    _, kind, record = hotel("p1", at(1), 1, reported=at(2, 12), eid="htl-late")
    good = C.encode(kind, record)
    garbage = b"\x00not avro at all"
    truncated = good[:-3]
    await pipe.put(topics.HOTEL_GUEST_EVENTS, garbage)
    await pipe.put(topics.BORDER_CROSSINGS, truncated)
    await pipe.put(topics.SPONSOR_REPORTS, garbage)  # the entity stage's own input
    await pipe.send(arrival("p1", at(0), until_day=29))
    await pipe.put(topics.HOTEL_GUEST_EVENTS, good)
    await pipe.advance(at(3))
    letters = pipe.dead_letters
    assert [(d["raw"], d["step"], d["reason"], d["source"]) for d in letters] == [
        (garbage, "worker.decode", "undecodable", "worker"),
        (truncated, "worker.decode", "undecodable", "worker"),
        (garbage, "worker.decode", "undecodable", "worker"),
    ]
    for letter, topic in zip(
        letters, (topics.HOTEL_GUEST_EVENTS, topics.BORDER_CROSSINGS, topics.SPONSOR_REPORTS), strict=True
    ):
        assert letter["event_id"].startswith(f"dl-worker:{SETTINGS.topic(topic)}:")
        assert letter["errors"] and letter["errors"][0]["problem"]
    assert "C3 01" in letters[0]["errors"][0]["problem"]
    assert "body of a hotel_guest_event record does not decode" in letters[1]["errors"][0]["problem"]
    (late,) = pipe.found("report.late")  # the good record after them is processed
    assert late["evidence"][-1]["value"] == "htl-late"


def test_a_restarted_worker_does_not_send_alerts_already_on_the_topic() -> None:
    async def scenario(already_emitted: set[str]) -> list[str]:
        async with Pipeline(already_emitted=already_emitted) as pipe:
            await pipe.send(*_mixed_inputs())
            await pipe.advance(at(40))
            return [a["event_id"] for a in pipe.alerts]

    sent = asyncio.run(scenario(set()))
    assert len(sent) > 2
    # it replays the same input: only the record that had not reached the alerts topic is written
    assert asyncio.run(scenario(set(sent[1:]))) == sent[:1]


def test_nothing_is_released_until_every_input_of_the_partition_has_passed() -> None:
    async def scenario() -> None:
        async with Pipeline() as pipe:
            await pipe.send(arrival("p1", at(0), until_day=29))
            later = at(40) + LATE_MS
            # every person topic but agency reports, and no roster tick yet: the watermark stays put
            await pipe.send(*(clock_tick(t, later) for t in INPUTS if t != topics.AGENCY_REPORTS))
            assert pipe.alerts == []
            await pipe.send(clock_tick(topics.AGENCY_REPORTS, later))
            assert pipe.alerts == []  # the roster input (pora.person-facts/0) has said nothing
            await pipe.send(clock_tick(topics.SPONSOR_REPORTS, later))  # routed as a roster tick
            assert {a["rule_id"] for a in pipe.alerts} == {"permit.expiring", "overstay", "whereabouts.unknown"}
            ticks = [f for f in pipe.facts[topics.ENTITY_FACTS] if f["t"] == "tick"]
            assert ticks and ticks[-1]["at"] == at(40)

    asyncio.run(scenario())
