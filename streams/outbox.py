"""The worker's writes (alerts, internal facts, dead letters), batched per run of input.

Agents add records while they work through what the consumer has buffered and flush when the
buffer runs dry or the outbox is full: the records go to the producer as one batch per partition
(:meth:`KafkaPublisher.submit`), without waiting for the acks, so the agent goes on reading. Acks
are checked as later flushes go by; a write the broker refused raises :class:`WriteFailed` in the
agent, which stops the worker (its agents run under a crashing supervisor). Nothing is lost that
way: the worker commits no offsets, so a restarted worker replays and writes it again, and the
alert ids are deterministic, so nothing already written is written twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Protocol

from connectors.gateway.publisher import OutRecord, Submitted


class WriteFailed(RuntimeError):
    """The broker did not take a record the worker wrote."""


class Submitter(Protocol):
    async def submit(self, records: Sequence[OutRecord]) -> Submitted: ...
    async def wait(self, submitted: Submitted) -> list[BaseException | None]: ...


class Outbox:
    def __init__(self, publisher: Submitter, *, max_records: int = 2000) -> None:
        self._publisher = publisher
        self.max_records = max_records
        self.records: list[OutRecord] = []
        self._in_flight: deque[tuple[Submitted, Sequence[OutRecord]]] = deque()
        self.written = 0  # records the broker acknowledged

    def add(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        self.records.append(OutRecord(topic, key, value, (), partition))

    @property
    def full(self) -> bool:
        return len(self.records) >= self.max_records

    async def flush(self) -> None:
        """Hand what was added to the producer; raise if an earlier write failed."""
        if self.records:
            records, self.records = self.records, []
            self._in_flight.append((await self._publisher.submit(records), records))
        while self._in_flight and self._in_flight[0][0].done():
            await self._settle(*self._in_flight.popleft())

    async def drain(self) -> None:
        """Flush and wait until the broker acknowledged everything."""
        await self.flush()
        while self._in_flight:
            await self._settle(*self._in_flight.popleft())

    async def _settle(self, submitted: Submitted, records: Sequence[OutRecord]) -> None:
        results = await self._publisher.wait(submitted)
        for record, error in zip(records, results, strict=True):
            if error is not None:
                raise WriteFailed(f"writing to {record.topic} failed: {error!r}") from error
        self.written += len(records)
