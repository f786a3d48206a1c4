"""`AnalyticsService`: the stage between speech to text and the event bus, and the per-call snapshots.

STT publishes its transcripts through `publish()` instead of straight onto the bus: a final transcript gets its
`sentiment` and `keywords` filled in before any sink (WebSocket, AMQP, webhooks, history) sees it, and is followed
by a `sentiment_update` and one `keyword_detected` per keyword found. Partials and every other event pass through
untouched. From the bus the service learns when sessions start and end; every `analytics.snapshot_interval_s` it
publishes a `snapshot` of each live call that has transcripts, and a final one when the call ends.

Finals that arrive after their call ended (the live stream's last utterance, post-call jobs) still count: the
state of the last ENDED_KEPT calls is kept, so their sentiment and keywords go on adding up, but no snapshot
follows the final one. `analytics.enabled: false` lets everything pass through untouched and publishes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from siprec.analytics import sentiment
from siprec.analytics.call import CallAnalytics
from siprec.analytics.keywords import KeywordSpotter, words_of
from siprec.config import AnalyticsConfig
from siprec.events.bus import EventBus
from siprec.events.types import (
    AnalyticsSnapshot,
    Event,
    KeywordDetected,
    SentimentUpdate,
    SessionEnded,
    SessionStarted,
    TranscriptEvent,
)

__all__ = ["AnalyticsService"]

log = logging.getLogger("siprec.analytics")

ENDED_KEPT = 256  # ended calls whose tallies late finals still update


class AnalyticsService:
    def __init__(self, config: AnalyticsConfig, bus: EventBus, *, clock: Callable[[], float] = time.time) -> None:
        self.bus = bus
        self.clock = clock
        self.config = config
        self.spotter = KeywordSpotter(tuple(config.keywords))
        self.live: dict[str, CallAnalytics] = {}  # by session_id
        self.ended: OrderedDict[str, CallAnalytics] = OrderedDict()
        self.counters = {"finals": 0, "keywords": 0, "snapshots": 0}
        self._ticker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._subscription = bus.subscribe(self._on_bus_event, types=(SessionStarted.type, SessionEnded.type))

    # --- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="siprec-analytics")

    async def stop(self) -> None:
        self.bus.unsubscribe(self._subscription)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None

    def apply(self, config: AnalyticsConfig) -> None:
        """A reload: keywords for the next finals, the interval from the next snapshot, enabled at once."""
        self.config = config
        self.spotter = KeywordSpotter(tuple(config.keywords))
        self._wake.set()  # a shorter interval takes effect now, not after the old one ran out

    def session_view(self, session_id: str) -> dict[str, Any]:
        """The call's analytics so far for GET /api/sessions (the body of a snapshot); {} before any final."""
        call = self.live.get(session_id) or self.ended.get(session_id)
        return call.snapshot(self.clock()) if call is not None and call.utterances else {}

    def stats(self) -> dict[str, Any]:
        return {"enabled": self.config.enabled, "live_calls": len(self.live), **self.counters}

    # --- the STT side: transcripts in, enriched transcripts and analytics events out ----------------------------
    def publish(self, event: Event) -> None:
        if not (isinstance(event, TranscriptEvent) and event.is_final and self.config.enabled):
            self.bus.publish(event)
            return
        words = words_of(event.text)
        mood = sentiment.score(event.text) if words else None
        keywords = self.spotter.find_in(words)
        enriched = dataclasses.replace(
            event, sentiment=mood.to_dict() if mood else None, keywords=keywords or event.keywords
        )
        self.bus.publish(enriched)
        self.counters["finals"] += 1
        meta = event.metadata
        session_id, leg = str(meta.get("session_id", "")), meta.get("leg")
        call = self._call(event.call_id, session_id)
        speaker_mood, call_mood = call.add_final(
            leg=leg, stream_label=event.stream_label, speaker_label=event.speaker_label, start=event.start,
            end=event.end, words=len(words), sentiment=mood, keywords=keywords,
        )  # fmt: skip
        who = (event.call_id, session_id, leg, event.stream_label, event.speaker_label)
        if mood is not None:
            self.bus.publish(
                SentimentUpdate(
                    *who, event.start, event.end, mood.score, mood.label,
                    speaker_mood.to_dict() if speaker_mood else None, call_mood.to_dict() if call_mood else None,
                )  # fmt: skip
            )
        for keyword in keywords:
            self.counters["keywords"] += 1
            self.bus.publish(KeywordDetected(*who, keyword, event.text, event.start, event.end))

    def _call(self, call_id: str, session_id: str) -> CallAnalytics:
        call = self.live.get(session_id) or self.ended.get(session_id)
        if call is None:  # a late final of a call ended ENDED_KEPT calls ago: tallied, never snapshotted
            call = self.ended[session_id] = CallAnalytics(call_id, session_id)
            self._trim_ended()
        return call

    def _trim_ended(self) -> None:
        while len(self.ended) > ENDED_KEPT:
            self.ended.popitem(last=False)

    # --- the bus side: sessions start and end -----------------------------------------------------------------
    def _on_bus_event(self, event: Event) -> None:
        if isinstance(event, SessionStarted):
            call = self.live.setdefault(event.session_id, CallAnalytics(event.call_id, event.session_id))
            call.started_at = event.started_at
        elif isinstance(event, SessionEnded):
            call = self.live.pop(event.session_id, None)
            if call is None:
                return
            self.ended[event.session_id] = call
            self._trim_ended()
            if call.utterances and self.config.enabled:
                # next loop turn: every subscriber gets session_ended before the final snapshot
                asyncio.get_running_loop().call_soon(self._publish_snapshot, call, True)

    # --- snapshots --------------------------------------------------------------------------------------------
    async def _tick(self) -> None:
        while True:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.snapshot_interval_s)
                continue  # woken by a reload: wait the (new) interval from now
            if not self.config.enabled:
                continue
            for call in list(self.live.values()):
                if call.utterances:
                    self._publish_snapshot(call, False)

    def _publish_snapshot(self, call: CallAnalytics, final: bool) -> None:
        now = self.clock()
        body = call.snapshot(now)
        self.counters["snapshots"] += 1
        self.bus.publish(AnalyticsSnapshot(call.call_id, call.session_id, now, final=final, **body))
