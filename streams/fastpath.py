"""A faster message loop for faust's consumer, for the faust-streaming versions it was checked against.

Two changes, both installed by :func:`install`: the message loop below, and a shorter fetch wait
(see ``FETCH_MAX_WAIT_MS``).

faust's ``Consumer._drain_messages`` hands every message to the conductor through
``wait_first(callback(message), suspend_flow.wait())``: per message it creates four tasks and an
``asyncio.wait`` and cancels them again, so that a rebalance can interrupt a callback blocked on a
full stream buffer. That costs more than the detectors themselves (py-spy: ~20 % of the worker in
``wait_first``; see ../shared/PERFORMANCE.md, faust-streaming #229, robinhood/faust #563).

:func:`install` replaces the method with a copy that calls the callback directly while flow is
active and keeps ``wait_first`` while it is suspended. What changes: a put blocked on a full stream
buffer (``stream_buffer_maxsize``) is no longer interrupted by a rebalance. The detectors'
agents never block on anything but their own sends, so the buffer drains and the rebalance goes on
once it has. Anything else in the loop (read offsets, gap tracking, commits, yielding to the event
loop every 100 messages) is kept as it was.

The method body is faust's own; the guard refuses to patch a version it was not compared with, so
an upgrade falls back to faust's loop (slower, still correct) and says so in the log.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import faust
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger("pora.fastpath")

CHECKED_VERSIONS = frozenset({"0.15.3"})

_original = faust_consumer.Consumer._drain_messages
_original_worker_consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
_installed = False

# faust creates its consumer with fetch_max_wait_ms=1500, fixed. A broker that holds a fetch for
# the whole wait when a partition has nothing new (Tansu does) then delays every quiet input, and
# with it the watermark, by up to 1.5 s: alert latency was 2.4 s at p50. 100 ms costs a few idle
# fetches a second.
FETCH_MAX_WAIT_MS = 100


def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _original_worker_consumer(self, transport)
    consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts its fetcher
    return consumer


async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - the worker's hot loop
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    flow_suspended = self.suspend_flow.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = faust_consumer.CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = getmany(timeout=1.0)
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if flow_suspended():
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        else:
                            await callback(message)
                        set_read_offset(tp, offset)
                    else:
                        self.log.dev("DROPPED MESSAGE ROFF %r: k=%r v=%r", offset, message.key, message.value)
                unset_flag(flag_consumer_fetching)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)


def install() -> bool:
    """Patch faust's consumer loop once; False (and a warning) on an unchecked faust version."""
    global _installed
    if _installed:
        return True
    if faust.__version__ not in CHECKED_VERSIONS:
        log.warning(
            "faust-streaming %s is not one of %s: keeping faust's own message loop (slower)",
            faust.__version__,
            ", ".join(sorted(CHECKED_VERSIONS)),
        )
        return False
    cast(Any, faust_consumer.Consumer)._drain_messages = _drain_messages
    cast(Any, faust_aiokafka.AIOKafkaConsumerThread)._create_worker_consumer = _create_worker_consumer
    _installed = True
    return True


def uninstall() -> None:
    global _installed
    cast(Any, faust_consumer.Consumer)._drain_messages = _original
    cast(Any, faust_aiokafka.AIOKafkaConsumerThread)._create_worker_consumer = _original_worker_consumer
    _installed = False


def installed() -> bool:
    return bool(faust_consumer.Consumer._drain_messages is _drain_messages)
