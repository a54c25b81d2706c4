"""When the broker does not acknowledge, nothing is receipted: the client gets 503 and retries."""

from __future__ import annotations

from pathlib import Path

from conftest import HOTEL, RunningGateway, gateway_settings, make_topics, write_keys

from connectors.samples import SampleFactory
from streams.localstack import running_broker


def test_no_receipt_without_the_broker(tmp_path: Path) -> None:
    with running_broker() as bootstrap:
        make_topics(bootstrap, "down.")
        settings = gateway_settings(bootstrap, "down.", tmp_path, gateway_send_timeout_seconds=3.0)
        gw = RunningGateway(settings, write_keys(settings.keys_file)).start()
        f = SampleFactory(seed=21)
        assert gw.post("/v1/events/hotel-guest-events", f.hotel_check_in(HOTEL))[0] == 200
    # the broker is gone; the gateway is still up
    try:
        status, body, headers = gw.post("/v1/events/hotel-guest-events", [f.hotel_check_in(HOTEL) for _ in range(3)])
        assert status == 503
        assert headers["Retry-After"] == "5"
        assert body["type"] == "/problems/unavailable"
        assert body["accepted"] == 0 and body["receipts"] == [] and body["unavailable"] == [0, 1, 2]
    finally:
        gw.stop()
