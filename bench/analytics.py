"""Analytics on the SIP process's event loop: what scoring a final transcript costs, and a snapshot round.

Each final goes through `AnalyticsService.publish` (words, VADER sentiment, keywords, the call's tallies, the
enriched transcript + sentiment_update + keyword_detected on the bus); every `snapshot_interval_s` each live call
with transcripts gets a snapshot. The bus here has one subscriber that keeps nothing, so the figures are the
analytics' own. Finals are the fixture call's 12 lines, spread over 1,000 calls; a busy contact centre with 1,000
calls produces a few finals per second per call at most.

`python -m bench.analytics` prints the table; `run()` returns the rows.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from siprec.analytics.service import AnalyticsService
from siprec.config import AnalyticsConfig
from siprec.events.bus import EventBus
from siprec.events.types import SessionStarted, TranscriptEvent
from tests.support import FIXTURES

CALLS = 1000
FINALS = 20_000
KEYWORDS = ["refund", "card number", "cancel*", "manager", "complaint"]


def _lines() -> list[tuple[str, str]]:
    script = FIXTURES / "audio" / "call" / "script.json"
    try:
        return [(u["speaker"], u["text"]) for u in json.loads(script.read_text())["utterances"]]
    except OSError:  # without the shared fixtures: a few lines of the same kind
        return [("customer", "I still have not received my refund."), ("agent", "Thank you for calling.")]


async def _measure() -> list[dict[str, Any]]:
    bus = EventBus()
    bus.subscribe(lambda event: None)
    service = AnalyticsService(AnalyticsConfig(keywords=KEYWORDS, snapshot_interval_s=3600), bus)
    for n in range(CALLS):
        bus.publish(SessionStarted(f"call-{n}", f"s-{n}", time.time(), True))
    lines = _lines()
    finals = [
        TranscriptEvent(
            f"call-{i % CALLS}", "1" if who == "agent" else "2", who.title(), text, True, i * 0.01, i * 0.01 + 2.0,
            0.9, provider="bench", language="en-US", metadata={"session_id": f"s-{i % CALLS}", "leg": int(who != "agent")},
        )  # fmt: skip
        for i, (who, text) in enumerate(lines[i % len(lines)] for i in range(FINALS))
    ]
    service.publish(finals[0])  # VADER reads its lexicon once
    started = time.perf_counter()
    for event in finals:
        service.publish(event)
    per_final = (time.perf_counter() - started) / len(finals)
    started = time.perf_counter()
    for call in list(service.live.values()):
        service._publish_snapshot(call, False)
    snapshot_round = time.perf_counter() - started
    return [
        {"name": "score a final (sentiment, keywords, tallies, 3 events)", "value": per_final * 1e6, "unit": "us"},
        {"name": "finals scored per second on one core", "value": int(1 / per_final), "unit": "finals/s"},
        {"name": f"snapshot round of {CALLS:,} calls", "value": snapshot_round * 1000, "unit": "ms"},
    ]


def run() -> list[dict[str, Any]]:
    return asyncio.run(_measure())


if __name__ == "__main__":
    for row in run():
        print(f"{row['name']:<60} {row['value']:>12,.1f} {row['unit']}")
