"""Pause intervals on a sample timeline: wall-clock pauses to sample ranges, silenced or cut out consistently."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from siprec.recording.timeline import (
    OPEN_END,
    Interval,
    apply_silence,
    dropped_before,
    kept_segments,
    to_samples,
)


def _mask(position: int, length: int, intervals: list[Interval]) -> np.ndarray:
    """True for every sample of the block [position, position + length) that lies in a pause (reference model)."""
    mask = np.zeros(length, bool)
    for a, b in intervals:
        lo, hi = max(a, position), min(b, position + length)
        if lo < hi:
            mask[lo - position : hi - position] = True
    return mask


# Wall-clock pauses in whole samples at rate 1 and origin 0 (exact in floats), some still open.
_pauses = st.lists(
    st.tuples(st.integers(-50, 400), st.one_of(st.none(), st.integers(-50, 400))).map(
        lambda p: (float(p[0]), None if p[1] is None else float(p[1]))
    ),
    max_size=6,
)
_intervals = _pauses.map(lambda ps: to_samples(ps, 0.0, 1))


# --- to_samples ----------------------------------------------------------------------------------------


def test_to_samples_maps_wall_clock_to_samples_from_the_origin() -> None:
    # 8 kHz: a pause from 1.0 s to 1.5 s after an origin at t=100 s covers samples 8000..12000.
    assert to_samples([(101.0, 101.5)], 100.0, 8000) == [(8000, 12000)]


def test_to_samples_open_pause_runs_to_open_end() -> None:
    assert to_samples([(100.25, None)], 100.0, 8000) == [(2000, OPEN_END)]


def test_to_samples_clamps_at_origin_and_drops_pauses_before_it() -> None:
    pauses = [(98.0, 99.0), (99.5, 100.5), (97.0, 100.0)]  # before, straddling, ending exactly at the origin
    assert to_samples(pauses, 100.0, 8000) == [(0, 4000)]


def test_to_samples_sorts_and_merges_overlapping_and_touching_pauses() -> None:
    pauses = [(3.0, 4.0), (1.0, 2.0), (1.5, 2.5), (2.5, 2.75), (6.0, None), (7.0, 8.0)]
    assert to_samples(pauses, 0.0, 100) == [(100, 275), (300, 400), (600, OPEN_END)]


def test_to_samples_drops_empty_and_reversed_pauses() -> None:
    assert to_samples([(1.0, 1.0), (2.0, 1.0)], 0.0, 8000) == []


@given(_pauses)
def test_to_samples_is_sorted_disjoint_and_covers_the_same_samples(
    pauses: list[tuple[float, float | None]],
) -> None:
    merged = to_samples(pauses, 0.0, 1)
    for a, b in merged:
        assert 0 <= a < b
    for (_, b1), (a2, _) in zip(merged, merged[1:], strict=False):
        assert b1 < a2  # touching intervals are merged too
    horizon = 500
    expected = np.zeros(horizon, bool)
    for start, end in pauses:
        a = max(0, int(start))
        b = horizon if end is None else max(0, int(end))
        expected[a:b] = True
    assert np.array_equal(_mask(0, horizon, merged), expected)


# --- apply_silence ------------------------------------------------------------------------------------


def test_apply_silence_zeroes_the_paused_stretch_only_and_leaves_the_input_alone() -> None:
    pcm = np.arange(1, 11, dtype=np.int16)  # samples 100..109 of the timeline
    out = apply_silence(100, pcm, [(95, 102), (104, 106), (109, OPEN_END)])
    assert out.tolist() == [0, 0, 3, 4, 0, 0, 7, 8, 9, 0]
    assert pcm.tolist() == list(range(1, 11))


def test_apply_silence_outside_every_pause_keeps_the_samples() -> None:
    pcm = np.arange(1, 11, dtype=np.int16)
    assert apply_silence(100, pcm, [(0, 100), (110, 120)]).tolist() == pcm.tolist()


@settings(max_examples=200)
@given(_intervals, st.integers(0, 300), st.integers(0, 200), st.integers(0, 2**32 - 1))
def test_apply_silence_zeroes_exactly_the_paused_samples(
    intervals: list[Interval], position: int, length: int, seed: int
) -> None:
    pcm = np.random.default_rng(seed).integers(1, 32768, length, dtype=np.int16)  # no natural zeros
    before = pcm.copy()
    out = apply_silence(position, pcm, intervals)
    paused = _mask(position, length, intervals)
    assert np.array_equal(out == 0, paused)
    assert np.array_equal(out[~paused], before[~paused])
    assert np.array_equal(pcm, before)


# --- kept_segments / dropped_before -------------------------------------------------------------------


def test_kept_segments_are_block_offsets_outside_the_pauses() -> None:
    assert kept_segments(100, 50, [(90, 110), (120, 125), (140, 200)]) == [(10, 20), (25, 40)]
    assert kept_segments(100, 50, []) == [(0, 50)]
    assert kept_segments(100, 50, [(0, OPEN_END)]) == []


def test_dropped_before_counts_paused_samples_before_a_position() -> None:
    intervals = [(10, 20), (30, 40)]
    assert [dropped_before(p, intervals) for p in (0, 10, 15, 20, 35, 40, 1000)] == [0, 0, 5, 10, 15, 20, 20]
    assert dropped_before(10**9, [(5, OPEN_END)]) == 10**9 - 5


@settings(max_examples=200)
@given(_intervals, st.integers(0, 300), st.integers(0, 200))
def test_kept_segments_and_pauses_partition_the_block(
    intervals: list[Interval], position: int, length: int
) -> None:
    segments = kept_segments(position, length, intervals)
    kept = np.zeros(length, bool)
    cursor = 0
    for a, b in segments:
        assert cursor <= a < b <= length  # in order, disjoint, never empty
        assert not kept[a:b].any()
        kept[a:b] = True
        cursor = b
    paused = _mask(position, length, intervals)
    assert np.array_equal(kept, ~paused)  # every sample is either kept or paused, never both


@settings(max_examples=200)
@given(_intervals, st.integers(0, 300), st.integers(0, 200))
def test_dropped_before_agrees_with_kept_segments(
    intervals: list[Interval], position: int, length: int
) -> None:
    # In drop mode a block lands in the file at position - dropped_before(position) and contributes its kept
    # samples, so the file offsets of consecutive blocks must line up.
    kept = sum(b - a for a, b in kept_segments(position, length, intervals))
    end = position + length
    assert (end - dropped_before(end, intervals)) - (position - dropped_before(position, intervals)) == kept
    assert position - dropped_before(position, intervals) == sum(
        b - a for a, b in kept_segments(0, position, intervals)
    )
