"""The worker's faust fast path (version guard) and its batching outbox (acks, failures)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import faust
import pytest
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from connectors.gateway.publisher import OutRecord, Submitted
from streams import fastpath
from streams.outbox import Outbox, WriteFailed


def test_fast_path_patches_only_a_checked_faust_version(monkeypatch: pytest.MonkeyPatch) -> None:
    fastpath.uninstall()
    try:
        monkeypatch.setattr(faust, "__version__", "0.99.0")
        assert fastpath.install() is False
        assert not fastpath.installed()
        assert faust_consumer.Consumer._drain_messages is fastpath._original
        monkeypatch.setattr(faust, "__version__", next(iter(fastpath.CHECKED_VERSIONS)))
        assert fastpath.install() is True
        assert fastpath.installed()
        assert faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer is fastpath._create_worker_consumer
        fastpath.uninstall()
        assert faust_consumer.Consumer._drain_messages is fastpath._original
    finally:
        fastpath.install()


class _Acks:
    """Stands in for the producer: every submit is one batch whose ack is the given outcome."""

    def __init__(self, fail_topic: str | None = None) -> None:
        self.fail_topic = fail_topic
        self.batches: list[list[OutRecord]] = []

    async def submit(self, records: Sequence[OutRecord]) -> Submitted:
        self.batches.append(list(records))
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if any(r.topic == self.fail_topic for r in records):
            fut.set_exception(ConnectionError("broker went away"))
        else:
            fut.set_result(None)
        return Submitted([None] * len(records), [(fut, list(range(len(records))))])

    async def wait(self, submitted: Submitted) -> list[BaseException | None]:
        out = list(submitted.results)
        for fut, members in submitted.sent:
            err = fut.exception()
            for i in members:
                out[i] = err
        return out


def test_outbox_batches_until_flushed_and_counts_acknowledged_writes() -> None:
    async def go() -> tuple[_Acks, Outbox]:
        acks = _Acks()
        box = Outbox(acks, max_records=3)
        box.add("alerts", b"a", b"1")
        box.add("facts", None, b"2", 4)
        assert not box.full and acks.batches == []
        box.add("alerts", b"b", b"3")
        assert box.full
        await box.flush()
        await box.drain()
        return acks, box

    acks, box = asyncio.run(go())
    assert [[r.value for r in b] for b in acks.batches] == [[b"1", b"2", b"3"]]
    assert acks.batches[0][1].partition == 4
    assert box.written == 3 and box.records == []


def test_a_refused_write_raises_and_names_the_topic() -> None:
    async def go() -> None:
        box = Outbox(_Acks(fail_topic="alerts"))
        box.add("alerts", b"a", b"1")
        await box.drain()

    with pytest.raises(WriteFailed, match="writing to alerts failed: ConnectionError"):
        asyncio.run(go())
