"""The gateway against the real broker: what is posted comes back decoded from its topic, bad
input is refused with the field named and kept in the dead-letter topic, repeats are idempotent."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import HOTEL, RunningGateway, gateway_settings, write_keys

from connectors.gateway.ingest import iso, parse_receipt_header, receipt_id_for
from connectors.samples import CHECKPOINTS, SPONSOR, SampleFactory
from schemas.codec import codec
from schemas.person import person_key
from streams.settings import LOCAL_PERSON_KEY_SECRET

Consume = Callable[..., list[Any]]
EVENTS = "/v1/events/"


def decoded(records: list[Any]) -> list[dict[str, Any]]:
    return [codec().decode(r.value)[1] for r in records]


def test_each_kind_comes_back_decoded_from_its_topic(
    gateway: RunningGateway, topics: dict[str, str], consume: Consume
) -> None:
    f = SampleFactory(seed=1)
    cases = [
        ("hotel-guest-events", "hotel", f.hotel_check_in(HOTEL), "hotel.guest-events", "guest"),
        ("border-crossings", "checkpoint", f.arrival(CHECKPOINTS[0]), "border.crossings", "traveller"),
        ("sponsor-reports", "sponsor", f.sponsor_report(), "sponsor.reports", None),
        ("permit-updates", "office", f.permit_extension(), "permits.updates", "holder"),
        ("agency-reports", "agency", f.agency_report(), "agency.reports", "subject"),
    ]
    before = datetime.now(tz=UTC) - timedelta(seconds=5)
    for slug, source, event, topic, identity_field in cases:
        status, body, _ = gateway.post(EVENTS + slug, event, source=source)
        assert status == 200, body
        receipt = body["receipts"][0]
        assert receipt["event_id"] == f"{source}/{event['event_id']}"
        assert receipt["receipt_id"].startswith("RCP-")

        records = consume(topics[topic], 1)
        assert len(records) == 1
        event_id, received_ms, _, client_id = parse_receipt_header(dict(records[0].headers)["pora-receipt"])
        assert (event_id, client_id) == (receipt["event_id"], event["event_id"])
        assert iso(received_ms) == receipt["received_at"]
        assert receipt_id_for(event_id) == receipt["receipt_id"]
        rec = decoded(records)[0]
        assert rec["event_id"] == receipt["event_id"]
        assert rec["source"] == source
        assert rec["reported_at"] >= before  # set by the gateway's clock
        if identity_field:
            ident = event[identity_field]
            assert rec[identity_field]["person_key"] == person_key(
                LOCAL_PERSON_KEY_SECRET.encode(), ident["nationality"], ident["document_number"]
            )
            assert rec[identity_field]["document_number"] == ident["document_number"]
            # one traveller, one partition: the key is the person key
            assert records[0].key == rec[identity_field]["person_key"].encode()
    roster = decoded(consume(topics["sponsor.reports"], 1))[0]["roster"]
    assert all(e["foreigner"]["person_key"].startswith("pk_") for e in roster)


def test_bad_event_names_every_field_and_is_dead_lettered(
    gateway: RunningGateway, topics: dict[str, str], consume: Consume
) -> None:
    f = SampleFactory(seed=2)
    event = f.hotel_check_in(HOTEL)
    event["guest"]["nationality"] = "XYZ"
    event["check_in_date"] = "2026-02-30"
    event["roomm"] = "12"
    status, body, headers = gateway.post(EVENTS + "hotel-guest-events", event)
    assert status == 422
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["type"] == "/problems/invalid-events" and body["status"] == 422
    named = {e["field"]: e["problem"] for e in body["errors"]}
    assert set(named) == {"guest.nationality", "check_in_date", "roomm"}
    assert "ISO 3166-1 alpha-3" in named["guest.nationality"]
    assert "not a date" in named["check_in_date"]
    assert "not a field" in named["roomm"]
    assert body["accepted"] == 0 and body["receipts"] == []

    assert consume(topics["hotel.guest-events"], 0, timeout=1) == []
    letters = decoded(consume(topics["dead-letters"], 1))
    assert len(letters) == 1
    letter = letters[0]
    assert letter["reason"] == "invalid" and letter["source"] == "hotel" and letter["kind"] == "hotel_guest_event"
    assert letter["step"] == "gateway.validate"
    assert {e["field"] for e in letter["errors"]} == set(named)
    assert b'"roomm"' in letter["raw"]


def test_malformed_json_is_400_and_kept_raw(gateway: RunningGateway, topics: dict[str, str], consume: Consume) -> None:
    raw = b'{"event_id": "x1", "occurred_at": '
    status, body, _ = gateway.post(EVENTS + "hotel-guest-events", raw)
    assert status == 400 and body["type"] == "/problems/malformed-body"
    letter = decoded(consume(topics["dead-letters"], 1))[0]
    assert letter["raw"] == raw and letter["reason"] == "malformed_json" and letter["step"] == "gateway.parse"


def test_batch_with_a_bad_item_accepts_the_rest(
    gateway: RunningGateway, topics: dict[str, str], consume: Consume
) -> None:
    f = SampleFactory(seed=3)
    batch = [f.hotel_check_in(HOTEL) for _ in range(5)]
    batch[3]["action"] = "CHECK_OUT"  # without check_out_date
    status, body, _ = gateway.post(EVENTS + "hotel-guest-events", {"events": batch})
    assert status == 422
    assert body["accepted"] == 4 and body["rejected"] == 1
    assert body["errors"] == [
        {
            "index": 3,
            "item": "[3]",
            "reason": "invalid",
            "field": "check_out_date",
            "problem": "is required for CHECK_OUT",
        }
    ]
    on_topic = decoded(consume(topics["hotel.guest-events"], 4))
    assert sorted(r["event_id"] for r in on_topic) == sorted(r["event_id"] for r in body["receipts"])
    assert len(consume(topics["dead-letters"], 1)) == 1

    # the client fixes the item and sends the whole batch again: four repeats, one new, no copies
    batch[3]["check_out_date"] = batch[3]["check_in_date"]
    status, body, _ = gateway.post(EVENTS + "hotel-guest-events", batch)
    assert status == 200 and body["accepted"] == 5 and body["duplicates"] == 4
    assert len(consume(topics["hotel.guest-events"], 5)) == 5


def test_duplicate_gives_same_receipt_and_one_event(
    gateway: RunningGateway, topics: dict[str, str], consume: Consume
) -> None:
    event = SampleFactory(seed=4).hotel_check_in(HOTEL)
    first = gateway.post(EVENTS + "hotel-guest-events", event)
    second = gateway.post(EVENTS + "hotel-guest-events", event)
    assert first[0] == second[0] == 200
    assert first[1]["receipts"] == second[1]["receipts"]
    assert second[1]["duplicates"] == 1

    # concurrent repeats of a new event: all get the one receipt, one record is written
    other = SampleFactory(seed=5).hotel_check_in(HOTEL)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: gateway.post(EVENTS + "hotel-guest-events", [other, other]), range(8)))
    assert {a[0] for a in answers} == {200}
    assert len({a[1]["receipts"][0]["receipt_id"] for a in answers}) == 1
    assert len(consume(topics["hotel.guest-events"], 2)) == 2


def test_event_id_reused_for_other_content_is_409(
    gateway: RunningGateway, topics: dict[str, str], consume: Consume
) -> None:
    event = SampleFactory(seed=6).hotel_check_in(HOTEL)
    assert gateway.post(EVENTS + "hotel-guest-events", event)[0] == 200
    changed = {**event, "room": "999"}
    status, body, _ = gateway.post(EVENTS + "hotel-guest-events", changed)
    assert status == 409 and body["errors"][0]["field"] == "event_id"
    assert "CORRECTION" in body["errors"][0]["problem"]
    assert len(consume(topics["hotel.guest-events"], 1)) == 1
    assert decoded(consume(topics["dead-letters"], 1))[0]["reason"] == "conflict"


def test_event_ids_of_different_sources_do_not_collide(
    gateway: RunningGateway, topics: dict[str, str], consume: Consume
) -> None:
    f = SampleFactory(seed=7)
    mine = {**f.hotel_check_in(HOTEL), "event_id": "1"}
    theirs = {**f.hotel_check_in({**HOTEL, "establishment_id": "EST-DPS-0001"}), "event_id": "1"}
    assert gateway.post(EVENTS + "hotel-guest-events", mine, source="hotel")[0] == 200
    assert gateway.post(EVENTS + "hotel-guest-events", theirs, source="other-hotel")[0] == 200
    ids = sorted(r["event_id"] for r in decoded(consume(topics["hotel.guest-events"], 2)))
    assert ids == ["hotel/1", "other-hotel/1"]


def test_keys_are_bound_to_their_source(gateway: RunningGateway, topics: dict[str, str], consume: Consume) -> None:
    f = SampleFactory(seed=8)
    other_hotel = f.hotel_check_in({**HOTEL, "establishment_id": "EST-DPS-0001"})
    status, body, _ = gateway.post(EVENTS + "hotel-guest-events", other_hotel, source="hotel")
    assert status == 403 and body["errors"][0]["field"] == "establishment.establishment_id"
    assert "EST-BTM-0001" in body["errors"][0]["problem"]

    # its own establishment, but routed to another office than the key file registers: refused
    elsewhere = f.hotel_check_in({**HOTEL, "office": "KANIM-MEDAN"})
    status, body, _ = gateway.post(EVENTS + "hotel-guest-events", elsewhere, source="hotel")
    assert status == 403 and body["errors"][0]["field"] == "establishment.office"
    assert HOTEL["office"] in body["errors"][0]["problem"]

    status, body, _ = gateway.post(EVENTS + "border-crossings", f.arrival(CHECKPOINTS[0]), source="hotel")
    assert status == 403 and "may not send border_crossing" in body["detail"]

    status, _, _ = gateway.post(EVENTS + "border-crossings", f.arrival(CHECKPOINTS[1]), source="checkpoint")
    assert status == 403

    sponsor = {**f.sponsor_report(), "sponsor": {**SPONSOR, "sponsor_id": "SPN-OTHER"}}
    assert gateway.post(EVENTS + "sponsor-reports", sponsor, source="sponsor")[0] == 403

    status, body, headers = gateway.post(EVENTS + "hotel-guest-events", other_hotel, source=None)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert gateway.post(EVENTS + "hotel-guest-events", other_hotel, key="pora_not-a-key")[0] == 401

    # a trusted system source (replay) may post for anyone
    assert gateway.post(EVENTS + "border-crossings", f.arrival(CHECKPOINTS[1]), source="system")[0] == 200
    assert consume(topics["hotel.guest-events"], 0, timeout=1) == []
    letters = decoded(consume(topics["dead-letters"], 5))
    assert sorted(x["reason"] for x in letters) == ["forbidden"] * 5  # the kind this key may not send too


def test_csv_register_reports_the_bad_row_and_accepts_the_rest(
    gateway: RunningGateway, topics: dict[str, str], consume: Consume
) -> None:
    register = (
        "\ufeffoccurred_at;nationality;document_number;given_names;surname;check_in_date;room\n"
        "2026-11-24 09:30;AUS;PA1234567;Olivia;Brown;2026-11-24;214\n"
        "2026-11-24 09:45;XYZ;PB7654321;Liam;Wilson;2026-11-24;215\n"
        "2026-11-24T10:05:00+08:00;nld;pc 765 4322;Sanne;de Vries;2026-11-24;216\n"
    ).encode()
    status, body, _ = gateway.post("/v1/registers/hotel-guests", register, content_type="text/csv")
    assert status == 422
    assert body["accepted"] == 2
    assert [(e["item"], e["field"]) for e in body["errors"]] == [("row 3", "guest.nationality")]
    recs = sorted(decoded(consume(topics["hotel.guest-events"], 2)), key=lambda r: r["room"])
    assert [r["room"] for r in recs] == ["214", "216"]
    assert recs[0]["establishment"] == HOTEL  # completed from the key registry
    assert recs[0]["occurred_at"] == datetime(2026, 11, 24, 2, 30, tzinfo=UTC)  # 09:30 WIB
    assert recs[1]["guest"]["nationality"] == "NLD" and recs[1]["guest"]["document_number"] == "PC7654322"
    letter = decoded(consume(topics["dead-letters"], 1))[0]
    assert letter["raw"].startswith(b"occurred_at;") and b"XYZ" in letter["raw"]
    assert letter["errors"][0]["field"] == "guest.nationality"

    # uploading the same file again writes nothing new
    status, body, _ = gateway.post("/v1/registers/hotel-guests", register, content_type="text/csv")
    assert status == 422 and body["accepted"] == 2
    assert len(consume(topics["hotel.guest-events"], 2)) == 2

    status, body, _ = gateway.post("/v1/registers/hotel-guests", b"name;room\nx;1\n", content_type="text/csv")
    assert status == 400 and any("nationality" in e["problem"] for e in body["errors"])


def test_limits_and_media_types(
    kafka_bootstrap: str, topics: dict[str, str], topic_prefix: str, tmp_path: Path
) -> None:
    settings = gateway_settings(
        kafka_bootstrap, topic_prefix, tmp_path, gateway_max_batch=3, gateway_max_body_bytes=20_000
    )
    gw = RunningGateway(settings, write_keys(settings.keys_file)).start()
    try:
        f = SampleFactory(seed=9)
        status, body, _ = gw.post(EVENTS + "hotel-guest-events", [f.hotel_check_in(HOTEL) for _ in range(4)])
        assert status == 413 and "at most 3" in body["detail"]
        status, body, _ = gw.post(EVENTS + "hotel-guest-events", b"[" + b" " * 30_000 + b"]")
        assert status == 413 and body["type"] == "/problems/too-large"
        status, body, _ = gw.post(EVENTS + "hotel-guest-events", b"<xml/>", content_type="application/xml")
        assert status == 415
        status, body, _ = gw.post(EVENTS + "no-such-kind", {})
        assert status == 404
    finally:
        gw.stop()


def test_an_event_too_large_for_its_topic_is_refused_with_the_limit_and_dead_lettered(
    kafka_bootstrap: str, topics: dict[str, str], topic_prefix: str, tmp_path: Path, consume: Consume
) -> None:
    limit = 512 * 1024
    settings = gateway_settings(kafka_bootstrap, topic_prefix, tmp_path, kafka_max_message_bytes=limit)
    gw = RunningGateway(settings, write_keys(settings.keys_file)).start()
    try:
        f = SampleFactory(seed=11)
        big = f.sponsor_report(roster=6_000)  # a real broker with this limit would refuse it for ever
        status, body, _ = gw.post(EVENTS + "sponsor-reports", big, source="sponsor")
        assert status == 413 and body["type"] == "/problems/too-large", body
        (error,) = body["errors"]
        assert error["field"] == "<event>" and f"over the {limit:,} bytes" in error["problem"]
        # in a batch, the others go through
        small = f.sponsor_report(roster=3)
        status, body, _ = gw.post(EVENTS + "sponsor-reports", [f.sponsor_report(roster=6_000), small], source="sponsor")
        assert status == 422 and body["accepted"] == 1 and body["rejected"] == 1
        assert [e["index"] for e in body["errors"]] == [0]
        assert len(consume(topics["sponsor.reports"], 1)) == 1
        letters = decoded(consume(topics["dead-letters"], 2))
        assert [d["reason"] for d in letters] == ["too_large", "too_large"]
        assert all(any("over the" in e["problem"] for e in d["errors"]) for d in letters)
    finally:
        gw.stop()


def test_restarted_gateway_still_answers_repeats_with_the_first_receipt(
    kafka_bootstrap: str, topics: dict[str, str], topic_prefix: str, tmp_path: Path, consume: Consume
) -> None:
    settings = gateway_settings(kafka_bootstrap, topic_prefix, tmp_path)
    keys = write_keys(settings.keys_file)
    f = SampleFactory(seed=10)
    events = [f.hotel_check_in(HOTEL) for _ in range(3)]
    first = RunningGateway(settings, keys).start()
    try:
        status, body, _ = first.post(EVENTS + "hotel-guest-events", events)
        assert status == 200
    finally:
        first.stop()
    second = RunningGateway(settings.model_copy(update={"gateway_port": settings.gateway_port}), keys).start()
    try:
        status, again, _ = second.post(EVENTS + "hotel-guest-events", events)
        assert status == 200 and again["duplicates"] == 3
        assert again["receipts"] == body["receipts"]  # same ids, same received_at
    finally:
        second.stop()
    assert len(consume(topics["hotel.guest-events"], 3)) == 3


def test_health_readiness_metrics_and_openapi(gateway: RunningGateway) -> None:
    assert gateway.get("/healthz")[0] == 200
    status, body, _ = gateway.get("/readyz")
    assert status == 200 and b'"ready"' in body
    gateway.post(EVENTS + "hotel-guest-events", SampleFactory(seed=11).hotel_check_in(HOTEL))
    status, body, headers = gateway.get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert b'pora_gateway_events_accepted_total{kind="hotel_guest_event",source_kind="hotel"}' in body
    status, body, _ = gateway.get("/openapi.json")
    import json

    doc = json.loads(body)
    assert doc["openapi"].startswith("3.")
    assert "/v1/events/border-crossings" in doc["paths"] and "/v1/registers/hotel-guests" in doc["paths"]
    hotel = doc["components"]["schemas"]["HotelGuestEvent"]
    assert "reported_at" not in hotel["properties"]  # the gateway sets it
    assert "nationality" in hotel["properties"]["guest"]["properties"]


def test_clock_ticks_reach_every_partition_of_every_ingestion_topic(
    kafka_bootstrap: str, topics: dict[str, str], topic_prefix: str, tmp_path: Path
) -> None:
    from streams.reading import read_topic

    settings = gateway_settings(kafka_bootstrap, topic_prefix, tmp_path, gateway_tick_seconds=0.2)
    gw = RunningGateway(settings, write_keys(settings.keys_file)).start()
    try:
        before = int(datetime.now(tz=UTC).timestamp() * 1000)
        assert gw.post(EVENTS + "hotel-guest-events", SampleFactory(seed=30).hotel_check_in(HOTEL))[0] == 200
        import time

        time.sleep(1.5)
    finally:
        gw.stop()
    for name in ("hotel.guest-events", "border.crossings", "sponsor.reports", "permits.updates", "agency.reports"):
        ticks = [r for r in read_topic(kafka_bootstrap, topics[name], ticks=True) if r.kind == "clock_tick"]
        assert {r.partition for r in ticks} == {0, 1, 2}, name
        times = [int(r.record["reported_at"].timestamp() * 1000) for r in ticks if r.record]
        assert min(times) >= before - 1000
    events = read_topic(kafka_bootstrap, topics["hotel.guest-events"])
    assert [r.kind for r in events] == ["hotel_guest_event"]  # ticks are left out unless asked for
