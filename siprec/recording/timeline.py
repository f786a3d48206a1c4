"""Pause intervals on a sample timeline: wall-clock pauses mapped to sample ranges, applied as zeros or cut out.

A pause is recorded by the session with wall-clock times (the API call or the SRC's hold). Every writer maps it to
its own timeline with its origin (the wall time of its sample 0) and rate, so every leg and the combined file pause
over exactly the same stretch of the call however late the jitter buffer released the audio.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["Interval", "apply_silence", "dropped_before", "kept_segments", "to_samples"]

Interval = tuple[int, int]  # [start, end) in samples; end may be a huge number for a pause still open
OPEN_END = 1 << 62


def to_samples(pauses: Iterable[tuple[float, float | None]], origin: float, rate: int) -> list[Interval]:
    """Wall-clock [start, end) pairs (end None = still paused) to sorted, merged sample intervals from `origin`."""
    out: list[Interval] = []
    for start, end in pauses:
        a = max(0, math.floor((start - origin) * rate))
        b = OPEN_END if end is None else max(0, math.floor((end - origin) * rate))
        if b > a:
            out.append((a, b))
    out.sort()
    merged: list[Interval] = []
    for a, b in out:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def apply_silence(position: int, pcm: np.ndarray, intervals: Sequence[Interval]) -> np.ndarray:
    """`pcm` (samples from `position`) with every paused sample set to zero (a copy only when something changes)."""
    end = position + len(pcm)
    copied = False
    for a, b in intervals:
        lo, hi = max(a, position), min(b, end)
        if lo < hi:
            if not copied:
                pcm = pcm.copy()
                copied = True
            pcm[lo - position : hi - position] = 0
    return pcm


def kept_segments(position: int, length: int, intervals: Sequence[Interval]) -> list[tuple[int, int]]:
    """The [start, end) offsets within a block of `length` samples at `position` that are outside every interval."""
    segments: list[tuple[int, int]] = []
    cursor = position
    end = position + length
    for a, b in intervals:
        if b <= cursor or a >= end:
            continue
        if a > cursor:
            segments.append((cursor - position, a - position))
        cursor = max(cursor, b)
        if cursor >= end:
            break
    if cursor < end:
        segments.append((cursor - position, end - position))
    return segments


def dropped_before(position: int, intervals: Sequence[Interval]) -> int:
    """How many samples before `position` fall in the intervals (file offset = position - this, in drop mode)."""
    return sum(max(0, min(b, position) - a) for a, b in intervals if a < position)
