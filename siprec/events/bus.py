"""In-process publish/subscribe of typed events: the one place the SIP/media side hands events to the sinks.

`publish` never blocks and never raises: a queue subscriber gets events through a bounded `asyncio.Queue` (full ->
the event is dropped for that subscriber only, counted, and the subscriber is told with a `SubscriberLagged`
event as soon as its queue has room); a callback subscriber is called inline and must be quick (a failing
callback is logged and counted, never propagated to the publisher). Call from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from siprec.events.types import Event

log = logging.getLogger("siprec.events")

DEFAULT_QUEUE_SIZE = 1000

Callback = Callable[[Event], None]


@dataclass(frozen=True)
class SubscriberLagged(Event):
    """Told to one subscriber only: `missed` events were dropped because its queue was full."""

    type: ClassVar[str] = "subscriber_lagged"

    missed: int
    total_dropped: int


@dataclass(eq=False)
class Subscription:
    id: int
    target: Callback | asyncio.Queue[Event]
    types: frozenset[str] | None  # None = every type
    dropped: int = 0  # events this subscriber never got (queue full)
    errors: int = 0  # callback exceptions
    _unreported: int = field(default=0, repr=False)  # dropped since the last SubscriberLagged
    _bus: EventBus | None = field(default=None, repr=False)

    def wants(self, event: Event) -> bool:
        return self.types is None or event.type in self.types

    def close(self) -> None:
        if self._bus is not None:
            self._bus.unsubscribe(self)
            self._bus = None


class EventBus:
    def __init__(self) -> None:
        self._subs: dict[int, Subscription] = {}
        self._ids = itertools.count(1)
        self.published = 0

    def __len__(self) -> int:
        return len(self._subs)

    def subscribe(
        self, target: Callback | asyncio.Queue[Event], *, types: Iterable[str] | None = None
    ) -> Subscription:
        """Deliver events (optionally only these `type`s) to a callback or a bounded queue.
        An unbounded queue is refused: it would turn a slow consumer into unbounded memory."""
        if isinstance(target, asyncio.Queue) and target.maxsize <= 0:
            raise ValueError("EventBus.subscribe: the queue must be bounded (maxsize > 0)")
        sub = Subscription(next(self._ids), target, frozenset(types) if types is not None else None)
        sub._bus = self
        self._subs[sub.id] = sub
        return sub

    def queue(self, maxsize: int = DEFAULT_QUEUE_SIZE, *, types: Iterable[str] | None = None) -> tuple[
        asyncio.Queue[Event], Subscription
    ]:
        """A new bounded queue subscribed to the bus (the usual way for an async consumer)."""
        q: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        return q, self.subscribe(q, types=types)

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.pop(sub.id, None)

    def publish(self, event: Event) -> None:
        self.published += 1
        for sub in list(self._subs.values()):
            if sub.wants(event):
                self._deliver(sub, event)

    def _deliver(self, sub: Subscription, event: Event) -> None:
        target = sub.target
        if isinstance(target, asyncio.Queue):
            if sub._unreported:
                if target.full():
                    self._drop(sub)
                    return
                target.put_nowait(SubscriberLagged(sub._unreported, sub.dropped))
                sub._unreported = 0
            if target.full():
                self._drop(sub)
                return
            target.put_nowait(event)
            return
        try:
            target(event)
        except Exception:
            sub.errors += 1
            log.exception("event subscriber %d failed on %s", sub.id, event.type)

    @staticmethod
    def _drop(sub: Subscription) -> None:
        if sub.dropped == 0:
            log.warning("event subscriber %d is too slow: dropping events for it", sub.id)
        sub.dropped += 1
        sub._unreported += 1
