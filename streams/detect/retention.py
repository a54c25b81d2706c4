"""What the detectors forget, and when: state kept for a horizon of event time (``[retention]`` in
rules.toml), so that a worker's memory follows the people and places it watches, not the number
of events it has read. See RULES.md, "Retention"."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class Horizon(Generic[T]):
    """Items in the order they came, each with its time, handed to ``forget`` once they are older than
    ``horizon_ms``. Times must not decrease (a timeline releases in time order), so the oldest is
    always first and forgetting costs O(1) an item."""

    def __init__(self, horizon_ms: int, forget: Callable[[int, T], None]) -> None:
        self.horizon_ms = horizon_ms
        self._forget = forget
        self._order: deque[tuple[int, T]] = deque()

    def add(self, at: int, item: T) -> None:
        self.expire(at)
        self.push(at, item)

    def push(self, at: int, item: T) -> None:
        """Add without expiring first (for a caller that just did)."""
        self._order.append((at, item))

    def expire(self, now: int) -> None:
        before = now - self.horizon_ms
        order = self._order
        while order and order[0][0] < before:
            at, item = order.popleft()
            self._forget(at, item)

    def __len__(self) -> int:
        return len(self._order)


class RecentIds:
    """Record ids applied in the last ``horizon_ms`` of event time: a record delivered again within
    the horizon is recognised; one older than that is taken as new."""

    def __init__(self, horizon_ms: int) -> None:
        self._ids: set[str] = set()
        self._horizon: Horizon[str] = Horizon(horizon_ms, lambda _, key: self._ids.discard(key))

    def add(self, key: str, at: int) -> bool:
        """Remember ``key`` at ``at``; False when it was already known (a redelivery)."""
        self._horizon.expire(at)
        if key in self._ids:
            return False
        self._ids.add(key)
        self._horizon.push(at, key)
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)
