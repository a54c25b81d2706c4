"""Writes records to Kafka and tells, per record, whether the broker acknowledged it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaProducer


@dataclass(frozen=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


class Publisher(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def publish(self, records: Sequence[OutRecord]) -> list[BaseException | None]: ...
    def healthy(self) -> bool: ...


class KafkaPublisher:
    """aiokafka producer with acks from all in-sync replicas; returns per-record failures."""

    def __init__(self, bootstrap: str, *, send_timeout_s: float = 30.0, linger_ms: int = 5) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            linger_ms=linger_ms,
            max_batch_size=512 * 1024,
            max_request_size=8 * 1024 * 1024,
            request_timeout_ms=int(send_timeout_s * 1000),
            client_id="pora-gateway",
        )
        self._timeout = send_timeout_s
        self._started = False

    async def start(self) -> None:
        await self._producer.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._producer.stop()

    def healthy(self) -> bool:
        return self._started

    async def publish(self, records: Sequence[OutRecord]) -> list[BaseException | None]:
        futures: list[asyncio.Future[object] | BaseException] = []
        for r in records:
            try:
                futures.append(
                    await self._producer.send(r.topic, r.value, key=r.key, headers=list(r.headers) or None)
                )
            except Exception as exc:  # buffer full, unknown topic, producer closed
                futures.append(exc)
        pending = [f for f in futures if isinstance(f, asyncio.Future)]
        if pending:
            await asyncio.wait(pending, timeout=self._timeout)
        results: list[BaseException | None] = []
        for f in futures:
            if isinstance(f, BaseException):
                results.append(f)
            elif not f.done():
                f.cancel()
                results.append(TimeoutError(f"no acknowledgement from the broker within {self._timeout} s"))
            else:
                results.append(f.exception())
        return results
