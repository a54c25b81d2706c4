"""One partition's events in a deterministic order, released as its watermark advances.

Events are released in ``(time, event_id)`` order once the watermark has passed their time; the
watermark is the minimum over the partition's input topics of the newest time seen on each (an
event's ``reported_at`` or a clock tick), less an allowed lateness. Timers interleave with events
by time: at equal times events come first (they were known by then). The order therefore depends
only on the events, never on how fast or in which interleaving the topics were read.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

NEVER = -(2**62)

EVENT, TIMER = 0, 1

# Heap entries are tuples, compared in C: (time, rank, tie, seq, payload). rank puts events before
# timers at the same time; seq (insertion order) only separates entries equal on (time, rank, tie),
# i.e. the same event delivered twice or the same timer set twice, and keeps payloads uncompared.
_Entry = tuple[int, int, str, int, Any]


class Timeline:
    def __init__(self, inputs: Iterable[str], lateness_ms: int) -> None:
        self.progress: dict[str, int] = dict.fromkeys(inputs, NEVER)
        if not self.progress:
            raise ValueError("a timeline needs at least one input topic")
        self.lateness_ms = lateness_ms
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self.released_until = NEVER  # time of the last entry released
        self.late = 0  # events that arrived after their time had been released
        self.watermark = NEVER  # min over the inputs' progress, less the lateness (kept up to date)

    def _advance(self, topic: str, time: int) -> None:
        progress = self.progress
        known = progress.get(topic)
        if known is None:
            raise KeyError(f"{topic!r} is not an input of this timeline ({', '.join(progress)})")
        if time > known:
            progress[topic] = time
            if known - self.lateness_ms <= self.watermark or known == NEVER:
                low = min(progress.values())  # this input may have been the lowest
                self.watermark = NEVER if low == NEVER else low - self.lateness_ms

    def offer(self, topic: str, time: int, tie: str, payload: Any) -> None:
        """An event read from ``topic``, to be released at ``time`` (its reported_at)."""
        self._advance(topic, time)
        if time < self.released_until:
            self.late += 1
        heapq.heappush(self._heap, (time, EVENT, tie, next(self._seq), payload))

    def tick(self, topic: str, time: int) -> None:
        """Clock tick: nothing more will come on ``topic``'s partition with an earlier time."""
        self._advance(topic, time)

    def schedule(self, time: int, tie: str, payload: Any) -> None:
        heapq.heappush(self._heap, (time, TIMER, tie, next(self._seq), payload))

    def release(self) -> Iterator[tuple[int, int, Any]]:
        """(time, EVENT or TIMER, payload) for everything the watermark has passed, in order.
        Timers scheduled while iterating are included when they are due."""
        heap = self._heap
        watermark = self.watermark  # releasing does not move it
        while heap and heap[0][0] <= watermark:
            time, rank, _, _, payload = heapq.heappop(heap)
            if time > self.released_until:
                self.released_until = time
            yield time, rank, payload

    def pending(self) -> int:
        return len(self._heap)
