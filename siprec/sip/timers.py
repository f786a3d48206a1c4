"""RFC 3261 timer values (section 17, table 4) and a small deadline queue for the sans-I/O layers.

Nothing here reads a clock: callers pass `now` in and ask `next_deadline()` when to call back.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class TimerSettings:
    """T1 (RTT estimate), T2 (max non-INVITE retransmit interval), T4 (max time a message lives in the network)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    def __post_init__(self) -> None:
        if not (0 < self.t1 <= self.t2) or self.t4 < 0:
            raise ValueError("timers need 0 < T1 <= T2 and T4 >= 0")

    @property
    def timeout(self) -> float:
        """64*T1: timers B, F, H, J and L (and the 2xx retransmission give-up of section 13.3.1.4)."""
        return 64 * self.t1


@dataclass(frozen=True)
class Timer:
    key: Hashable  # what the timer belongs to (a transaction id, a dialog key ...)
    name: str  # "G", "H", "E" ...
    deadline: float


class TimerQueue:
    """Named one-shot timers per owner. Rescheduling a name replaces it; stale heap entries are skipped lazily,
    so cancel is O(1) and the heap never holds more than a bounded multiple of the live timers."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable, str]] = []
        self._live: dict[tuple[Hashable, str], int] = {}  # (key, name) -> sequence number of the live entry
        self._names: dict[Hashable, set[str]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def schedule(self, key: Hashable, name: str, deadline: float) -> None:
        seq = next(self._seq)
        self._live[(key, name)] = seq
        self._names.setdefault(key, set()).add(name)
        heapq.heappush(self._heap, (deadline, seq, key, name))
        # Rescheduling leaves dead entries behind; rebuild when they dominate so memory stays bounded.
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self._live):
            self._compact()

    def cancel(self, key: Hashable, name: str) -> None:
        if self._live.pop((key, name), None) is not None:
            names = self._names.get(key)
            if names is not None:
                names.discard(name)
                if not names:
                    del self._names[key]

    def cancel_all(self, key: Hashable) -> None:
        for name in self._names.pop(key, ()):
            self._live.pop((key, name), None)

    def is_scheduled(self, key: Hashable, name: str) -> bool:
        return (key, name) in self._live

    def next_deadline(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> Timer | None:
        """The earliest timer with deadline <= now (removed from the queue), or None."""
        self._drop_stale()
        if not self._heap or self._heap[0][0] > now:
            return None
        deadline, _, key, name = heapq.heappop(self._heap)
        self.cancel(key, name)
        return Timer(key, name, deadline)

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap and self._live.get((heap[0][2], heap[0][3])) != heap[0][1]:
            heapq.heappop(heap)

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if self._live.get((e[2], e[3])) == e[1]]
        heapq.heapify(self._heap)
