"""AnalyticsService on a real EventBus: finals enriched before any subscriber sees them, sentiment_update and
keyword_detected after them, snapshots on the interval and a final one at the end, reload, disabled."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from siprec.analytics.service import AnalyticsService
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

T0 = 1_700_000_000.0


class Rig:
    def __init__(self, **config: Any) -> None:
        self.bus = EventBus()
        self.events: list[Event] = []
        self.bus.subscribe(self.events.append)
        self.now = T0
        self.service = AnalyticsService(AnalyticsConfig(**config), self.bus, clock=lambda: self.now)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def start_session(self, sid: str = "s1") -> None:
        self.bus.publish(SessionStarted(f"call-{sid}", sid, T0, True))

    def end_session(self, sid: str = "s1") -> None:
        self.bus.publish(SessionEnded(f"call-{sid}", sid, "bye", T0, self.now, self.now - T0))

    def say(self, text: str, *, leg: int = 1, start: float = 1.0, end: float = 2.0, final: bool = True,
            sid: str = "s1") -> None:  # fmt: skip
        self.service.publish(
            TranscriptEvent(f"call-{sid}", str(leg + 1), ["Agent", "Customer"][leg], text, final, start, end,
                            0.9, provider="tone", language="en-US", metadata={"session_id": sid, "leg": leg})
        )  # fmt: skip


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    made: list[Rig] = []

    def factory(**config: Any) -> Rig:
        r = Rig(**config)
        r.service.start()
        made.append(r)
        return r

    yield factory  # type: ignore[misc]
    for r in made:
        await r.service.stop()


async def test_a_final_is_enriched_then_followed_by_sentiment_and_keywords(rig: Any) -> None:
    r = rig(keywords=["refund", "card number"])
    r.start_session()
    r.say("Hi, I still haven't received my refund and I am really angry about it.")
    transcript, update, keyword = r.events[1:]
    assert isinstance(transcript, TranscriptEvent) and transcript.keywords == ("refund",)
    assert transcript.sentiment is not None and transcript.sentiment["label"] == "negative"
    wire = json.loads(transcript.to_json())["payload"]
    assert wire["sentiment"] == transcript.sentiment and wire["keywords"] == ["refund"]
    assert isinstance(update, SentimentUpdate) and update.routing_key == "sentiment.update"
    assert (update.call_id, update.session_id, update.leg, update.speaker_label) == ("call-s1", "s1", 1, "Customer")
    assert update.score == transcript.sentiment["score"] and update.call == update.speaker == transcript.sentiment
    assert isinstance(keyword, KeywordDetected) and keyword.routing_key == "keyword.detected"
    assert (keyword.keyword, keyword.start, keyword.end, keyword.stream_label) == ("refund", 1.0, 2.0, "2")

    r.say("Thank you so much, that was very helpful!", leg=0, start=3.0, end=5.0)
    update = r.of(SentimentUpdate)[-1]
    assert update.label == "positive" and update.speaker == {"score": update.score, "label": "positive"}
    assert update.call is not None and update.call["score"] < update.score  # the customer's anger weighs in


async def test_partials_and_other_events_pass_untouched(rig: Any) -> None:
    r = rig(keywords=["refund"])
    r.say("my refund", final=False)
    (partial,) = r.events
    assert partial.sentiment is None and partial.keywords == ()
    r.service.publish(event := SessionEnded("c", "x", "bye", T0, T0, 0.0))
    assert r.events[-1] is event


async def test_snapshots_on_the_interval_and_a_final_one(rig: Any) -> None:
    r = rig(keywords=["refund"], snapshot_interval_s=0.05)
    r.start_session("s1")
    r.start_session("quiet")  # no transcript: no snapshot
    r.say("where is my refund", leg=1, start=1.0, end=2.5)
    r.now = T0 + 3.0
    async with asyncio.timeout(5):
        while len(r.of(AnalyticsSnapshot)) < 2:
            await asyncio.sleep(0.01)
    snap = r.of(AnalyticsSnapshot)[0]
    assert snap.routing_key == "analytics.snapshot" and snap.type == "snapshot"
    assert (snap.session_id, snap.final, snap.at, snap.elapsed_s) == ("s1", False, T0 + 3.0, 3.0)
    assert snap.keywords == {"refund": 1} and snap.utterances == 1 and snap.talk_time_s == 1.5
    assert [s["speaker_label"] for s in snap.speakers] == ["Customer"]
    assert {s.session_id for s in r.of(AnalyticsSnapshot)} == {"s1"}
    r.end_session("s1")
    assert isinstance(r.events[-1], SessionEnded)
    await asyncio.sleep(0)  # the final snapshot follows session_ended
    final = r.of(AnalyticsSnapshot)[-1]
    assert final.final and final.session_id == "s1" and r.events[-1] is final
    count = len(r.of(AnalyticsSnapshot))
    await asyncio.sleep(0.2)
    assert len(r.of(AnalyticsSnapshot)) == count  # nothing after the final one
    r.say("the refund arrived, thanks", leg=1)  # a late final still counts in the call's sentiment
    assert r.of(KeywordDetected)[-1].session_id == "s1" and r.service.stats()["live_calls"] == 1  # "quiet"


async def test_a_final_of_a_forgotten_call_is_scored_but_never_snapshotted(rig: Any) -> None:
    """A post-call job finishing after hundreds of other calls ended: its call's tallies are gone; the final is
    still enriched and announced, and no live call appears for it."""
    r = rig(keywords=["refund"], snapshot_interval_s=0.05)
    r.say("my refund came, thank you", sid="long-gone")
    assert r.of(KeywordDetected)[-1].session_id == "long-gone" and r.of(SentimentUpdate)[-1].label == "positive"
    await asyncio.sleep(0.2)
    assert r.of(AnalyticsSnapshot) == [] and r.service.stats()["live_calls"] == 0


async def test_reload_changes_keywords_and_interval_and_disabled_passes_everything(rig: Any) -> None:
    r = rig(keywords=["refund"], snapshot_interval_s=3600)
    r.start_session()
    r.say("cancel my refund")
    assert [k.keyword for k in r.of(KeywordDetected)] == ["refund"]
    r.service.apply(AnalyticsConfig(keywords=["cancel"], snapshot_interval_s=0.05))
    r.say("cancel my refund")
    assert [k.keyword for k in r.of(KeywordDetected)] == ["refund", "cancel"]
    async with asyncio.timeout(5):  # the new interval applies now, not in an hour
        while not r.of(AnalyticsSnapshot):
            await asyncio.sleep(0.01)
    r.service.apply(AnalyticsConfig(enabled=False, keywords=["cancel"], snapshot_interval_s=0.05))
    before = len(r.events)
    r.say("cancel everything, this is terrible")
    (plain,) = r.events[before:]
    assert isinstance(plain, TranscriptEvent) and plain.sentiment is None and plain.keywords == ()
    await asyncio.sleep(0.2)
    assert len(r.events) == before + 1  # no snapshot either
    r.end_session()
    assert len(r.events) == before + 2  # session_ended only
