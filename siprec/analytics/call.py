"""`CallAnalytics`: what the final transcripts of one session add up to, per speaker and for the call (sans-I/O).

Talk time is the sum of the final utterances' spans (start..end on the session clock), so it is speech the
recogniser heard, not the length of the leg. Sentiment is averaged over utterances weighted by their word count, so
a long complaint outweighs a short "thanks".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from siprec.analytics.sentiment import Sentiment, label_for

__all__ = ["CallAnalytics", "SpeakerTally"]


@dataclass
class _Weighted:
    total: float = 0.0
    weight: int = 0

    def add(self, value: float, weight: int) -> None:
        self.total += value * weight
        self.weight += weight

    @property
    def sentiment(self) -> Sentiment | None:
        if not self.weight:
            return None
        value = round(self.total / self.weight, 4)
        return Sentiment(value, label_for(value))


@dataclass
class SpeakerTally:
    leg: int | None
    stream_label: str | None
    speaker_label: str | None
    talk_time_s: float = 0.0
    words: int = 0
    utterances: int = 0
    mood: _Weighted = field(default_factory=_Weighted)

    def entry(self, call_talk_s: float) -> dict[str, Any]:
        sentiment = self.mood.sentiment
        return {
            "leg": self.leg,
            "stream_label": self.stream_label,
            "speaker_label": self.speaker_label,
            "talk_time_s": round(self.talk_time_s, 3),
            "talk_share": round(self.talk_time_s / call_talk_s, 3) if call_talk_s > 0 else 0.0,
            "words": self.words,
            "utterances": self.utterances,
            "words_per_minute": round(60 * self.words / self.talk_time_s, 1) if self.talk_time_s > 0 else 0.0,
            "sentiment": sentiment.to_dict() if sentiment else None,
        }


@dataclass
class CallAnalytics:
    call_id: str
    session_id: str
    started_at: float | None = None  # Unix time of the session start (None: unknown, e.g. a late final)
    speakers: dict[int | None, SpeakerTally] = field(default_factory=dict)  # by leg index
    keywords: Counter[str] = field(default_factory=Counter)
    mood: _Weighted = field(default_factory=_Weighted)
    utterances: int = 0

    def add_final(
        self,
        *,
        leg: int | None,
        stream_label: str | None,
        speaker_label: str | None,
        start: float,
        end: float,
        words: int,
        sentiment: Sentiment | None,
        keywords: tuple[str, ...],
    ) -> tuple[Sentiment | None, Sentiment | None]:
        """Count one final utterance; returns the speaker's and the call's sentiment so far."""
        tally = self.speakers.get(leg)
        if tally is None:
            tally = self.speakers[leg] = SpeakerTally(leg, stream_label, speaker_label)
        tally.speaker_label = speaker_label or tally.speaker_label  # a metadata update names the speaker
        tally.talk_time_s += max(0.0, end - start)
        tally.words += words
        tally.utterances += 1
        self.utterances += 1
        self.keywords.update(keywords)
        if sentiment is not None and words:
            tally.mood.add(sentiment.score, words)
            self.mood.add(sentiment.score, words)
        return tally.mood.sentiment, self.mood.sentiment

    def snapshot(self, now: float) -> dict[str, Any]:
        """The snapshot payload's body (the event adds call_id, session_id, at and final)."""
        talk = sum(t.talk_time_s for t in self.speakers.values())
        sentiment = self.mood.sentiment
        ordered = sorted(self.speakers.values(), key=lambda t: (t.leg is None, t.leg or 0))
        return {
            "elapsed_s": round(now - self.started_at, 3) if self.started_at is not None else None,
            "utterances": self.utterances,
            "talk_time_s": round(talk, 3),
            "speakers": tuple(t.entry(talk) for t in ordered),
            "sentiment": sentiment.to_dict() if sentiment else None,
            "keywords": dict(self.keywords),
        }
