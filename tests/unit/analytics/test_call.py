"""CallAnalytics: talk time and shares, words per minute, word-weighted sentiment, keyword counts."""

from __future__ import annotations

from siprec.analytics.call import CallAnalytics
from siprec.analytics.sentiment import Sentiment, label_for, score


def test_sentiment_scores_and_labels() -> None:
    assert score("Thank you so much, that was very helpful!").label == "positive"
    assert score("This is terrible, I am really angry.").label == "negative"
    assert score("The return arrived at our warehouse last Monday.").label == "neutral"
    assert (label_for(0.05), label_for(0.0499), label_for(-0.05)) == ("positive", "neutral", "negative")


def test_tallies_per_speaker_and_call() -> None:
    call = CallAnalytics("c1", "s1", started_at=1000.0)
    speaker, overall = call.add_final(
        leg=0, stream_label="1", speaker_label="Agent", start=1.0, end=3.0, words=6,
        sentiment=Sentiment(0.5, "positive"), keywords=(),
    )  # fmt: skip
    assert speaker == overall == Sentiment(0.5, "positive")
    speaker, overall = call.add_final(
        leg=1, stream_label="2", speaker_label="Customer", start=3.5, end=9.5, words=18,
        sentiment=Sentiment(-0.7, "negative"), keywords=("refund",),
    )  # fmt: skip
    assert speaker == Sentiment(-0.7, "negative")
    assert overall == Sentiment(round((0.5 * 6 - 0.7 * 18) / 24, 4), "negative")  # weighted by words
    call.add_final(
        leg=1, stream_label="2", speaker_label="Customer", start=10.0, end=11.0, words=0, sentiment=None,
        keywords=("refund", "card number"),
    )  # fmt: skip
    snap = call.snapshot(1012.5)
    assert snap["elapsed_s"] == 12.5 and snap["utterances"] == 3 and snap["talk_time_s"] == 9.0
    assert snap["keywords"] == {"refund": 2, "card number": 1}
    agent, customer = snap["speakers"]
    assert (agent["speaker_label"], agent["talk_time_s"], agent["talk_share"], agent["words_per_minute"]) == (
        "Agent", 2.0, round(2 / 9, 3), 180.0)  # fmt: skip
    assert (customer["talk_time_s"], customer["words"], customer["utterances"]) == (7.0, 18, 2)
    assert customer["sentiment"] == {"score": -0.7, "label": "negative"}
    assert snap["sentiment"]["label"] == "negative"


def test_an_empty_call() -> None:
    snap = CallAnalytics("c1", "s1").snapshot(5.0)
    assert snap == {"elapsed_s": None, "utterances": 0, "talk_time_s": 0, "speakers": (), "sentiment": None,
                    "keywords": {}}  # fmt: skip
