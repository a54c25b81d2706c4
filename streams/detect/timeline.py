"""One partition's events in a deterministic order, released as its watermark advances.

Events are released in ``(time, event_id)`` order once the watermark has passed their time; the
watermark is the minimum over the partition's input topics of the newest time seen on each (an
event's ``reported_at`` or a clock tick), less an allowed lateness. Timers interleave with events
by time: at equal times events come first (they were known by then). The order therefore depends
only on the events, never on how fast or in which interleaving the topics were read.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

NEVER = -(2**62)

EVENT, TIMER = 0, 1


@dataclass(order=True)
class _Entry:
    time: int
    rank: int  # EVENT before TIMER at the same time
    tie: str
    payload: Any = field(compare=False)


class Timeline:
    def __init__(self, inputs: Iterable[str], lateness_ms: int) -> None:
        self.progress: dict[str, int] = dict.fromkeys(inputs, NEVER)
        if not self.progress:
            raise ValueError("a timeline needs at least one input topic")
        self.lateness_ms = lateness_ms
        self._heap: list[_Entry] = []
        self.released_until = NEVER  # time of the last entry released
        self.late = 0  # events that arrived after their time had been released

    @property
    def watermark(self) -> int:
        low = min(self.progress.values())
        return NEVER if low == NEVER else low - self.lateness_ms

    def _advance(self, topic: str, time: int) -> None:
        if topic not in self.progress:
            raise KeyError(f"{topic!r} is not an input of this timeline ({', '.join(self.progress)})")
        if time > self.progress[topic]:
            self.progress[topic] = time

    def offer(self, topic: str, time: int, tie: str, payload: Any) -> None:
        """An event read from ``topic``, to be released at ``time`` (its reported_at)."""
        self._advance(topic, time)
        if time < self.released_until:
            self.late += 1
        heapq.heappush(self._heap, _Entry(time, EVENT, tie, payload))

    def tick(self, topic: str, time: int) -> None:
        """Clock tick: nothing more will come on ``topic``'s partition with an earlier time."""
        self._advance(topic, time)

    def schedule(self, time: int, tie: str, payload: Any) -> None:
        heapq.heappush(self._heap, _Entry(time, TIMER, tie, payload))

    def release(self) -> Iterator[tuple[int, int, Any]]:
        """(time, EVENT or TIMER, payload) for everything the watermark has passed, in order.
        Timers scheduled while iterating are included when they are due."""
        heap = self._heap
        while heap and heap[0].time <= self.watermark:
            entry = heapq.heappop(heap)
            self.released_until = max(self.released_until, entry.time)
            yield entry.time, entry.rank, entry.payload

    def pending(self) -> int:
        return len(self._heap)
