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

# Heap entries are tuples, compared in C: (time, rank, tie, seq, payload, key). rank puts events
# before timers at the same time; seq (insertion order) only separates entries equal on (time, rank,
# tie), i.e. the same event delivered twice or the same timer set twice, and keeps payloads uncompared.
_Entry = tuple[int, int, str, int, Any, str | None]

# Replaced timers stay in the heap (removing from the middle of a heap is O(n)) until they would
# fire or until they are this share of it, when it is rebuilt without them.
_STALE_SHARE = 0.5
_STALE_MIN = 1024


class Timeline:
    def __init__(self, inputs: Iterable[str], lateness_ms: int) -> None:
        self.progress: dict[str, int] = dict.fromkeys(inputs, NEVER)
        if not self.progress:
            raise ValueError("a timeline needs at least one input topic")
        self.lateness_ms = lateness_ms
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._keyed: dict[str, int] = {}  # key -> seq of the timer that holds it
        self._stale = 0  # replaced timers still in the heap
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
        heapq.heappush(self._heap, (time, EVENT, tie, next(self._seq), payload, None))

    def tick(self, topic: str, time: int) -> None:
        """Clock tick: nothing more will come on ``topic``'s partition with an earlier time."""
        self._advance(topic, time)

    def schedule(self, time: int, tie: str, payload: Any, *, key: str | None = None) -> None:
        """A timer. With a ``key``, it replaces the pending timer set with the same key, if any: for
        timers whose payload names the state they were set for, so that the one replaced would have
        found its state changed and done nothing (this keeps one timer per key, not one per change)."""
        seq = next(self._seq)
        if key is not None:
            if self._keyed.get(key) is not None:
                self._stale += 1
            self._keyed[key] = seq
        heapq.heappush(self._heap, (time, TIMER, tie, seq, payload, key))
        if self._stale > _STALE_MIN and self._stale > _STALE_SHARE * len(self._heap):
            self._compact()

    def cancel(self, key: str) -> None:
        """Forget the pending timer set with ``key`` (nothing if there is none)."""
        if self._keyed.pop(key, None) is not None:
            self._stale += 1

    def _live(self, entry: _Entry) -> bool:
        key = entry[5]
        return key is None or self._keyed.get(key) == entry[3]

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if self._live(e)]
        heapq.heapify(self._heap)
        self._stale = 0

    def release(self) -> Iterator[tuple[int, int, Any]]:
        """(time, EVENT or TIMER, payload) for everything the watermark has passed, in order.
        Timers scheduled while iterating are included when they are due."""
        watermark = self.watermark  # releasing does not move it
        keyed = self._keyed
        while self._heap and self._heap[0][0] <= watermark:
            time, rank, _, seq, payload, key = heapq.heappop(self._heap)
            if key is not None:
                if keyed.get(key) != seq:
                    self._stale -= 1
                    continue  # replaced or cancelled
                del keyed[key]
            if time > self.released_until:
                self.released_until = time
            yield time, rank, payload

    def pending(self) -> int:
        """Events and timers waiting (replaced timers not counted)."""
        return len(self._heap) - self._stale
