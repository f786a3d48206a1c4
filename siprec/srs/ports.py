"""RTP port numbers for recording legs: even ports (RTCP on port + 1), handed out and taken back.

Only numbers: `rtp/` binds the sockets. A released port sits in quarantine before it is handed out again, so
late RTP of a finished call (an SRC that keeps streaming a few seconds after BYE) never lands in a new call.
Allocation also rotates through the range, which keeps reuse rare even before the quarantine matters.
Time is passed in (or read from the injected clock), nothing here sleeps.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from siprec.sip.errors import SipError

NO_PORTS_RETRY_AFTER_S = 5
DEFAULT_QUARANTINE_S = 30.0


class PortPool:
    """Even RTP ports in [port_min, port_max - 1], each with its RTCP port + 1 inside the range."""

    def __init__(
        self,
        port_min: int,
        port_max: int,
        *,
        quarantine_s: float = DEFAULT_QUARANTINE_S,
        clock: Callable[[], float] = time.monotonic,
        reserve: Callable[[int], bool] | None = None,
        unreserve: Callable[[int], None] | None = None,
    ) -> None:
        """`reserve(port)` is asked before a port is handed out (the media layer binds its sockets there and
        answers False when another process holds the port: that port then waits out a quarantine and another
        is tried); `unreserve(port)` is told when a port is released."""
        first = port_min + (port_min % 2)
        if not 0 < first < port_max <= 65535:
            raise ValueError(f"PortPool: no even RTP/RTCP pair in {port_min}-{port_max}")
        if quarantine_s < 0:
            raise ValueError("PortPool: quarantine_s must be >= 0")
        self.first = first
        self.slots = (port_max - first + 1) // 2  # pairs (p, p + 1) that fit
        self.quarantine_s = quarantine_s
        self.clock = clock
        self._free = [True] * self.slots
        self._free_count = self.slots
        self._quarantine: deque[tuple[float, int]] = deque()  # (free again at, slot), in release order
        self._queued: set[int] = set()  # slots in quarantine, for O(1) double-release checks
        self._cursor = 0  # next slot to try: rotating spreads reuse over the whole range
        self._reserve = reserve
        self._unreserve = unreserve

    # --- queries (as of the clock's now) ----------------------------------------------------------------
    @property
    def available(self) -> int:
        """Ports that could be handed out now (quarantine not counted until it is over)."""
        self._expire(self.clock())
        return self._free_count

    @property
    def in_use(self) -> int:
        return self.slots - self.available - len(self._quarantine)

    @property
    def quarantined(self) -> int:
        self._expire(self.clock())
        return len(self._quarantine)

    # --- allocation -------------------------------------------------------------------------------------
    def allocate(self, count: int, now: float | None = None) -> list[int]:
        """`count` RTP ports: p, p+2, p+4... when such a run is free, else any free even ports (ascending from
        the cursor). Raises SipError(503, Retry-After) without taking anything when there are not enough."""
        if count < 0:
            raise ValueError("PortPool.allocate: negative count")
        self._expire(self.clock() if now is None else now)
        if count == 0:
            return []
        if count > self._free_count:
            raise SipError(503, "no free RTP ports", headers=[("Retry-After", str(NO_PORTS_RETRY_AFTER_S))])
        now = self.clock() if now is None else now
        chosen: list[int] = []
        while len(chosen) < count:
            need = count - len(chosen)
            if need > self._free_count:
                self._give_back(chosen)
                raise SipError(503, "no free RTP ports", headers=[("Retry-After", str(NO_PORTS_RETRY_AFTER_S))])
            slots = self._contiguous(need) or self._scattered(need)
            for slot in slots:
                self._free[slot] = False
                self._free_count -= 1
                if self._reserve is None or self._reserve(self.first + 2 * slot):
                    chosen.append(slot)
                else:
                    self._quarantine.append((now + self.quarantine_s, slot))
                    self._queued.add(slot)
            self._cursor = (slots[-1] + 1) % self.slots
        return [self.first + 2 * slot for slot in chosen]

    def _give_back(self, slots: list[int]) -> None:
        # Undo a partial allocation at once (those ports never reached an SDP answer, so no quarantine).
        for slot in slots:
            if self._unreserve is not None:
                self._unreserve(self.first + 2 * slot)
            self._free[slot] = True
            self._free_count += 1

    def release(self, ports: Iterable[int], now: float | None = None) -> None:
        """Give ports back; they become available after the quarantine. Unknown or free ports are ignored, so a
        double release (BYE racing a time-out) cannot corrupt the pool."""
        at = (self.clock() if now is None else now) + self.quarantine_s
        for port in ports:
            slot, odd = divmod(port - self.first, 2)
            if odd or not 0 <= slot < self.slots or self._free[slot] or slot in self._queued:
                continue
            self._quarantine.append((at, slot))
            self._queued.add(slot)
            if self._unreserve is not None:
                self._unreserve(port)
        if self.quarantine_s == 0:
            self._expire(at)

    # --- internals --------------------------------------------------------------------------------------
    def _expire(self, now: float) -> None:
        q = self._quarantine
        while q and q[0][0] <= now:
            _, slot = q.popleft()
            self._queued.discard(slot)
            self._free[slot] = True
            self._free_count += 1

    def _contiguous(self, count: int) -> list[int] | None:
        # One pass over the ring from the cursor; a run may not wrap past the top of the range.
        free = self._free
        run = 0
        for step in range(self.slots):
            slot = (self._cursor + step) % self.slots
            if slot == 0:
                run = 0
            run = run + 1 if free[slot] else 0
            if run == count:
                return list(range(slot - count + 1, slot + 1))
        return None

    def _scattered(self, count: int) -> list[int]:
        free = self._free
        out: list[int] = []
        for step in range(self.slots):
            slot = (self._cursor + step) % self.slots
            if free[slot]:
                out.append(slot)
                if len(out) == count:
                    break
        return out
