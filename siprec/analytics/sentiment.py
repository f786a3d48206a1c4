"""Sentiment of an utterance: VADER (Hutto & Gilbert, 2014; the `vaderSentiment` package, MIT), a lexicon and rule
based scorer made for short informal text. It needs no model download and scores an utterance in ~20-100 us.

The score is VADER's compound value in [-1, 1]; the label uses VADER's own thresholds: >= 0.05 positive,
<= -0.05 negative, neutral between. It reads English only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

__all__ = ["Sentiment", "label_for", "score"]

THRESHOLD = 0.05


@dataclass(frozen=True)
class Sentiment:
    score: float  # -1 (most negative) .. 1 (most positive)
    label: str  # positive | neutral | negative

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "label": self.label}


def label_for(value: float) -> str:
    if value >= THRESHOLD:
        return "positive"
    if value <= -THRESHOLD:
        return "negative"
    return "neutral"


@lru_cache(maxsize=1)
def _analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()  # reads its lexicon once (~13 ms)


def score(text: str) -> Sentiment:
    value = round(float(_analyzer().polarity_scores(text)["compound"]), 4)
    return Sentiment(value, label_for(value))
