"""Counters of the STT pipeline and the end-of-utterance -> final latency, as plain data for /api/stt/stats and
/metrics (cumulative histogram buckets in the Prometheus convention, plus p50/p95 of the recent samples)."""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LATENCY_BUCKETS_S", "Counters", "LatencyHistogram"]

LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
RECENT_SAMPLES = 1000


@dataclass
class Counters:
    legs_opened: int = 0
    legs_live: int = 0  # legs that got a live stream at open
    legs_queued: int = 0  # legs queued for post-call at open (capacity)
    legs_promoted: int = 0  # of those, legs that went live mid-call when a live stream ended
    lagging_switches: int = 0
    stream_failures: int = 0
    failovers: int = 0  # a failed leg went on live with the next provider
    failed_to_post_call: int = 0  # a failed leg had no live fallback left
    jobs_done: int = 0
    jobs_failed: int = 0
    jobs_abandoned: int = 0  # still queued when the service closed
    finals: int = 0
    partials: int = 0
    transcripts_written: int = 0


@dataclass
class LatencyHistogram:
    """Seconds from the moment the last audio of an utterance reached the pipeline to its final result."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS_S
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    total: float = 0.0
    count: int = 0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_SAMPLES))

    def observe(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds
        self.count += 1
        self.recent.append(seconds)

    def quantile(self, q: float) -> float | None:
        if not self.recent:
            return None
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    def to_dict(self) -> dict[str, Any]:
        cumulative, running = [], 0
        for le, n in zip((*self.buckets, math.inf), self.counts, strict=True):
            running += n
            cumulative.append(["+Inf" if le == math.inf else le, running])
        p50, p95 = self.quantile(0.5), self.quantile(0.95)
        return {
            "count": self.count,
            "sum": round(self.total, 6),
            "buckets": cumulative,
            "p50": None if p50 is None else round(p50, 4),
            "p95": None if p95 is None else round(p95, 4),
            "recent": len(self.recent),
        }
