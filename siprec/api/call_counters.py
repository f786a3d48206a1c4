"""Calls counted from the bus since start: started, and ended by outcome (the SessionEnded reason).

Counted by a bus callback (cheap, inline), read by /metrics and /api/sessions/stats.
"""

from __future__ import annotations

from collections import Counter

from siprec.events.bus import EventBus, Subscription
from siprec.events.types import Event, SessionEnded, SessionPaused, SessionStarted

COUNTED = (SessionStarted.type, SessionEnded.type, SessionPaused.type)


class CallCounters:
    def __init__(self) -> None:
        self.started = 0
        self.ended: Counter[str] = (
            Counter()
        )  # by reason: bye, cancel, rtp-timeout, session-expired, shutdown...
        self.paused: Counter[str] = Counter()  # session_paused events by reason (hold, api)
        self._subscription: Subscription | None = None

    def attach(self, bus: EventBus) -> None:
        if self._subscription is None:
            self._subscription = bus.subscribe(self.on_event, types=COUNTED)

    def detach(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    @property
    def ended_total(self) -> int:
        return sum(self.ended.values())

    def on_event(self, event: Event) -> None:
        if isinstance(event, SessionStarted):
            self.started += 1
        elif isinstance(event, SessionEnded):
            self.ended[event.reason] += 1
        elif isinstance(event, SessionPaused):
            self.paused[event.reason] += 1
