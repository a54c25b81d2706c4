"""Bad input tried against the real thing: schemathesis fuzzes the gateway from its own OpenAPI
document, oversized and deeply nested bodies hit its limits, and malformed Avro lands on an input
topic under a running detector worker. Every refusal is a 4xx problem+json naming a field (never a
5xx), and every refused input is on the dead-letter topic with its reason; what was accepted is
on its topic exactly once, and the worker goes on past what it cannot read."""

from __future__ import annotations

import asyncio
import hashlib
import time
import tracemalloc
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from conftest import HOTEL, RunningGateway, gateway_settings, make_topics, write_keys
from hypothesis import HealthCheck, Phase, given, settings
from kafka import KafkaProducer
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from test_detectors import END, comparable, reference, workload

from connectors.gateway.ingest import RAW_KEEP_BYTES, TOPIC_OF_KIND
from connectors.pipeline import alerts_when_settled, detector_workers
from connectors.replay import replay
from connectors.samples import SampleFactory
from schemas.codec import HEADER_LEN, MAGIC, DecodeError, codec
from streams import topics as names
from streams.reading import read_topic
from streams.settings import Settings

EXAMPLES = 20  # per operation and generation mode (half for sponsor reports: 4x the schema, 4x the time)
# the reason a dead letter gives for a refusal of the whole body, by problem type
BODY_REASONS = {
    "/problems/malformed-body": "malformed_json",
    "/problems/too-large": "too_large",
    "/problems/unsupported-media-type": "unsupported_media_type",
    "/problems/forbidden": "forbidden",
    "/problems/invalid-events": "empty",
}
INGESTION = ("/v1/events/", "/v1/registers/")


def dead_letters(bootstrap: str, prefix: str) -> list[dict[str, Any]]:
    letters = [r for r in read_topic(bootstrap, f"{prefix}{names.DEAD_LETTERS}")]
    assert all(r.record is not None for r in letters), [r.error for r in letters]
    return [r.record for r in letters if r.record is not None]


def expected_letters(path: str, status: int, body: dict[str, Any]) -> list[str]:
    """The dead letters a gateway answer promises, as their reasons: one per refused item, or one
    for a body refused whole."""
    if status in (401, 404, 405) or status < 400 or status >= 500:
        return []  # not dead-lettered: anonymous or not a request for an ingestion endpoint
    items = {e["index"]: e["reason"] for e in body.get("errors", []) if "index" in e}
    if items:
        assert len(items) == body["rejected"], body
        return list(items.values())
    reason = BODY_REASONS[body["type"]]
    return ["malformed_csv" if reason == "malformed_json" and path.startswith("/v1/registers/") else reason]


def assert_names_a_field(status: int, content_type: str, body: dict[str, Any]) -> None:
    assert content_type.startswith("application/problem+json"), (status, content_type)
    assert body["status"] == status and body["type"].startswith("/problems/") and body["detail"], body
    assert body.get("errors"), body
    for error in body["errors"]:
        assert error["field"] and error["problem"], error


# ---------------------------------------------------------------- schemathesis


def test_schemathesis_finds_no_server_error_and_every_refusal_is_dead_lettered(
    kafka_bootstrap: str, topics: dict[str, str], topic_prefix: str, tmp_path: Path
) -> None:
    gw = RunningGateway(*_gateway(kafka_bootstrap, topic_prefix, tmp_path)).start()
    try:
        schema = schemathesis.openapi.from_url(gw.url + "/openapi.json")
        answers: list[tuple[str, int, dict[str, Any]]] = []
        operations = [op.ok() for op in schema.get_all_operations() if isinstance(op, Ok)]
        assert len(operations) == 9  # five kinds, the register, three GETs: the document loaded whole
        for operation in operations:
            # the system key reaches validation for every kind; only a hotel key may upload a register
            key = gw.keys["hotel" if operation.path.startswith("/v1/registers/") else "system"]
            # negative data needs something to negate: a body (the GET endpoints take nothing)
            modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if operation.method == "post" else []
            for mode in modes or [GenerationMode.POSITIVE]:
                _fuzz(operation, mode, gw.url, {"Authorization": f"Bearer {key}"}, answers)
        statuses = Counter(status for _, status, _ in answers)
        assert len(answers) >= 11 * EXAMPLES and statuses[422] and statuses[400], statuses

        # every refusal of the run, and nothing else, is on the dead-letter topic with its reason
        promised = Counter(reason for answer in answers for reason in expected_letters(*answer))
        letters = dead_letters(kafka_bootstrap, topic_prefix)
        assert Counter(x["reason"] for x in letters) == promised
        for letter in letters:
            assert letter["source"] in ("system", "hotel") and letter["step"].startswith("gateway.")
            assert letter["errors"] and all(e["field"] and e["problem"] for e in letter["errors"]), letter
            assert len(letter["raw"]) <= RAW_KEEP_BYTES

        # and what was accepted is on its topic once
        receipts = {r["event_id"] for _, _, body in answers for r in body.get("receipts", [])}
        on_topics = [
            r.record["event_id"]
            for topic in TOPIC_OF_KIND.values()
            for r in read_topic(kafka_bootstrap, topics[topic])
            if r.record is not None
        ]
        assert sorted(on_topics) == sorted(receipts)
    finally:
        gw.stop()


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _fuzz(
    operation: Any, mode: GenerationMode, url: str, auth: dict[str, str], answers: list[tuple[str, int, dict[str, Any]]]
) -> None:
    """``EXAMPLES`` cases of ``operation`` in ``mode``, each checked; ingestion answers are kept."""
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS
    path = operation.path

    @settings(
        max_examples=EXAMPLES // 2 if "sponsor" in path else EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case[Any]) -> None:
        response = case.call(base_url=url, headers=auth, timeout=60)
        case.validate_response(response, checks=checks, headers=auth)
        if path.startswith(INGESTION):
            body = response.json()
            if response.status_code >= 400:
                assert_names_a_field(response.status_code, response.headers["content-type"][0], body)
            answers.append((path, response.status_code, body))

    run()


def _gateway(bootstrap: str, prefix: str, state: Path, **overrides: Any) -> tuple[Settings, dict[str, str]]:
    settings = gateway_settings(bootstrap, prefix, state, **overrides)
    return settings, write_keys(settings.keys_file)


# ---------------------------------------------------------------- limits


class Post:
    """Raw requests (urllib), streamed bodies included, that record what the gateway answered."""

    def __init__(self, gw: RunningGateway) -> None:
        self.gw = gw
        self.answers: list[tuple[str, int, dict[str, Any]]] = []

    def __call__(
        self,
        path: str,
        body: bytes | Iterator[bytes],
        *,
        source: str = "hotel",
        content_type: str = "application/json",
        length: int | None = None,
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": content_type, "Authorization": f"Bearer {self.gw.keys[source]}"}
        if length is not None:
            headers["Content-Length"] = str(length)
        req = urllib.request.Request(self.gw.url + path, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, raw, got = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as err:
            status, raw, got = err.code, err.read(), err.headers
        answer = orjson.loads(raw)
        if status >= 400:
            assert_names_a_field(status, got["Content-Type"], answer)
        self.answers.append((path, status, answer))
        return status, answer


def stream(total: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """``total`` bytes of a JSON array, made as they are sent (the client never holds them)."""
    piece = b"[" + b"0," * (chunk // 2 - 1)
    sent = 0
    while sent < total:
        out = piece[: total - sent]
        sent += len(out)
        yield out


def test_limits_are_refused_with_the_limit_named_and_dead_lettered_in_bounded_copies(
    kafka_bootstrap: str, topics: dict[str, str], topic_prefix: str, tmp_path: Path
) -> None:
    max_body = 2 * 1024 * 1024
    gw = RunningGateway(
        *_gateway(kafka_bootstrap, topic_prefix, tmp_path, gateway_max_body_bytes=max_body, gateway_max_batch=5)
    ).start()
    post = Post(gw)
    f = SampleFactory(seed=40)
    events = "/v1/events/hotel-guest-events"
    try:
        # 100 MB, streamed without a Content-Length (chunked): the gateway reads past its limit
        # no further than a chunk, so it never holds the body (traced in this process, where it runs)
        tracemalloc.start()
        status, body = post(events, stream(100 * 1024 * 1024))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert status == 413 and body["type"] == "/problems/too-large"
        assert body["errors"][0]["field"] == "<body>" and f"at most {max_body}" in body["errors"][0]["problem"]
        assert peak < 4 * max_body, f"{peak} bytes held for a body refused at {max_body}"

        # 50 MB announced by its Content-Length: refused as soon as the head is read
        status, body = post(events, stream(50 * 1024 * 1024), length=50 * 1024 * 1024)
        assert status == 413 and "52428800 bytes (Content-Length)" in body["detail"]

        batch = [f.hotel_check_in(HOTEL) for _ in range(6)]
        status, body = post(events, orjson.dumps(batch))
        assert status == 413 and "holds 6 events; at most 5" in body["errors"][0]["problem"]

        status, body = post(events, b"[" * 2000 + b"]" * 2000)  # deeper than any JSON parser goes
        assert status == 400 and body["errors"][0]["field"] == "<body>"

        deep = b"[" * 1000 + b"]" * 1000  # valid JSON, too deep to serialise again with orjson
        status, body = post(events, b"[" + orjson.dumps(batch[0]) + b"," + deep + b"]")
        assert status == 422 and body["accepted"] == 1 and body["errors"][0]["item"] == "[1]"

        huge = f.hotel_check_in(HOTEL)
        huge["guest"]["surname"] = "N" * 1_000_000
        huge_raw = orjson.dumps(huge)
        status, body = post(events, huge_raw)
        assert status == 422 and [e["field"] for e in body["errors"]] == ["guest.surname"]

        header = "occurred_at,nationality,document_number,surname,check_in_date\n"
        rows = "".join(f"2026-11-24 09:30,AUS,PA{i:07d},Brown,2026-11-24\n" for i in range(6))
        status, body = post("/v1/registers/hotel-guests", (header + rows).encode(), content_type="text/csv")
        assert status == 413 and body["errors"][0]["field"] == "<file>" and "at most 5" in body["errors"][0]["problem"]

        status, body = post(events, b"<xml/>", content_type="application/xml")
        assert status == 415 and body["errors"][0]["field"] == "Content-Type"
        status, body = post("/v1/events/border-crossings", orjson.dumps(batch[0]))
        assert status == 403 and body["errors"][0]["field"] == "kind"
    finally:
        gw.stop()

    letters = dead_letters(kafka_bootstrap, topic_prefix)
    promised = Counter(reason for answer in post.answers for reason in expected_letters(*answer))
    assert Counter(x["reason"] for x in letters) == promised
    assert [x["step"] for x in letters if x["reason"] == "too_large"].count("gateway.receive") == 2
    keep = min(RAW_KEEP_BYTES, max_body)
    for letter in letters:
        notes = [e["problem"] for e in letter["errors"] if e["field"] == "<raw>"]
        assert len(letter["raw"]) <= keep
        if notes:  # a cut copy says what it is cut from
            assert len(letter["raw"]) == keep and notes[0].startswith(f"truncated: the first {keep} bytes of ")
    streamed = [x for x in letters if x["step"] == "gateway.receive" and x["reason"] == "too_large"]
    assert {len(x["raw"]) for x in streamed} == {keep} and all(x["raw"].startswith(b"[0,0,") for x in streamed)
    [name] = [x for x in letters if any(e["field"] == "guest.surname" for e in x["errors"])]
    assert name["raw"] == huge_raw[:keep]
    assert f"{len(huge_raw)} bytes (SHA-256 {hashlib.sha256(huge_raw).hexdigest()})" in name["errors"][-1]["problem"]
    [nested] = [x for x in letters if x["reason"] == "invalid" and x["raw"].startswith(b"[[[")]
    assert nested["raw"] == deep  # the item itself, as sent


# ---------------------------------------------------------------- malformed Avro under a worker


def test_a_worker_dead_letters_what_it_cannot_decode_and_goes_on(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the worker keeps its faust data in its working directory
    make_topics(kafka_bootstrap, topic_prefix)
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, topic_partitions=3)
    lines = workload()
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines[: len(lines) // 2]))
    second.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines[len(lines) // 2 :]))
    crossings = settings.topic(names.BORDER_CROSSINGS)
    until = int(datetime.fromisoformat(END).timestamp() * 1000)

    with detector_workers(settings, 1):
        asyncio.run(replay(settings, first))
        bad = _write_malformed(kafka_bootstrap, crossings, settings)  # among the valid events
        stats = asyncio.run(replay(settings, second, until_ms=until))
        assert stats.rejected == 0, stats.rejected_lines
        expected = reference(settings)
        alerts = alerts_when_settled(settings, expected=len(expected))
        letters = _worker_letters(settings, len(bad))

    assert len(expected) > 20 and comparable(alerts) == expected  # the worker went on, every alert out
    by_place = {x["event_id"]: x for x in letters}
    assert len(letters) == len(bad) == len(by_place), [x["event_id"] for x in letters]
    for (partition, offset), (raw, problem) in bad.items():
        letter = by_place[f"dl-worker:{crossings}:{partition}:{offset}"]  # the record's place
        assert (letter["step"], letter["reason"], letter["raw"]) == ("worker.decode", "undecodable", raw)
        assert [e["field"] for e in letter["errors"]] == ["<record>"]
        assert letter["errors"][0]["problem"] == f"{crossings}[{partition}] offset {offset}: {problem}"


def _write_malformed(bootstrap: str, topic: str, settings: Settings) -> dict[tuple[int, int], tuple[bytes, str]]:
    """Bad records straight onto the topic (no gateway), one to each partition and one more:
    garbage, a truncated record, an unknown schema fingerprint, and a known fingerprint over another
    kind's body. Returns their places, their bytes and what decoding them says."""
    c = codec()
    crossing = next(r for r in read_topic(bootstrap, topic) if r.kind == "border_crossing")
    guest = next(r for r in read_topic(bootstrap, settings.topic(names.HOTEL_GUEST_EVENTS)))
    good, other = c.encode("border_crossing", crossing.record or {}), c.encode(guest.kind, guest.record or {})
    records = [
        b"this is not avro",
        good[: len(good) // 2],
        MAGIC + b"\x00" * 8 + good[HEADER_LEN:],
        good[:HEADER_LEN] + other[HEADER_LEN:],
    ]
    problems = []
    for raw in records:
        with pytest.raises(DecodeError) as exc:
            c.decode(raw)
        problems.append(str(exc.value))
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    try:
        placed = {}
        for i, (raw, problem) in enumerate(zip(records, problems, strict=True)):
            meta = producer.send(topic, value=raw, key=b"bad", partition=i % 3).get(timeout=30)
            placed[(meta.partition, meta.offset)] = (raw, problem)
        return placed
    finally:
        producer.close()


def _worker_letters(settings: Settings, expected: int) -> list[dict[str, Any]]:
    """The worker's dead letters once ``expected`` are there, and a second later (extras show)."""
    deadline = time.monotonic() + 60
    while True:
        letters = [x for x in dead_letters(settings.kafka_bootstrap, settings.topic_prefix) if x["source"] == "worker"]
        if len(letters) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    time.sleep(1)
    return [x for x in dead_letters(settings.kafka_bootstrap, settings.topic_prefix) if x["source"] == "worker"]
