"""LegWriter: a leg's timeline blocks to its WAV file - gaps padded, overlaps trimmed, pauses silenced or cut,
bounded buffering, and a header that describes the file after every flush."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from siprec.recording.leg import LegWriter
from siprec.recording.timeline import OPEN_END, Interval, to_samples
from siprec.recording.wav import read_wav, wav_info


def _noise(n: int, seed: int = 0) -> np.ndarray:
    """Non-zero samples, so silence in a file can only come from the writer."""
    rng = np.random.default_rng(seed)
    return (rng.integers(1, 32768, n) * rng.choice([-1, 1], n)).astype(np.int16)


def _file(path: Path) -> np.ndarray:
    pcm, _ = read_wav(path)
    return pcm


def test_contiguous_blocks_are_written_in_order(tmp_path: Path) -> None:
    a, b = _noise(300, 1), _noise(200, 2)
    w = LegWriter(tmp_path / "leg.wav", 8000)
    w.append(0, a)
    w.append(300, b)
    w.close()
    assert np.array_equal(_file(tmp_path / "leg.wav"), np.concatenate([a, b]))
    assert wav_info(tmp_path / "leg.wav").sample_rate == 8000


def test_a_block_after_the_end_is_preceded_by_silence(tmp_path: Path) -> None:
    a, b = _noise(300, 1), _noise(200, 2)
    w = LegWriter(tmp_path / "leg.wav", 8000)
    w.append(0, a)
    w.append(400, b)  # 100 samples never delivered
    w.close()
    assert np.array_equal(_file(tmp_path / "leg.wav"), np.concatenate([a, np.zeros(100, np.int16), b]))
    assert w.late_samples == 0


def test_overlap_is_trimmed_and_counted_as_late(tmp_path: Path) -> None:
    a, b, c = _noise(300, 1), _noise(200, 2), _noise(50, 3)
    w = LegWriter(tmp_path / "leg.wav", 8000)
    w.append(0, a)
    w.append(250, b)  # first 50 samples overlap what is already on the timeline
    w.append(100, c)  # entirely in the past
    w.close()
    assert np.array_equal(_file(tmp_path / "leg.wav"), np.concatenate([a, b[50:]]))
    assert w.late_samples == 100
    assert w.timeline_end == 450


def test_flush_threshold_is_half_a_second_capped_at_64_kib(tmp_path: Path) -> None:
    assert LegWriter(tmp_path / "a.wav", 8000).flush_samples == 4000
    assert LegWriter(tmp_path / "b.wav", 48000, flush_seconds=1.0).flush_samples == 32768  # 64 KiB of int16
    assert LegWriter(tmp_path / "c.wav", 8000, max_buffer_bytes=1000).flush_samples == 500


def test_nothing_reaches_the_file_until_a_flush_and_due_says_when(tmp_path: Path) -> None:
    path = tmp_path / "leg.wav"
    w = LegWriter(path, 8000, flush_seconds=0.1)  # 800 samples
    w.append(0, _noise(799))
    assert not w.due
    assert w.buffered == 799 and w.frames == 0 and wav_info(path).frames == 0
    w.append(799, _noise(1, 9))
    assert w.due
    w.flush()
    assert w.buffered == 0 and w.frames == 800
    w.flush()  # nothing buffered: nothing happens
    assert w.frames == 800


def test_header_describes_the_file_after_every_flush(tmp_path: Path) -> None:
    path = tmp_path / "leg.wav"
    timeline = _noise(2500, 4)
    w = LegWriter(path, 16000, flush_seconds=0.03)  # 480 samples
    written = 0
    for start in range(0, len(timeline), 170):
        w.append(start, timeline[start : start + 170])
        if w.due:
            w.flush()
            written = w.frames
            assert (
                wav_info(path).frames == written
            )  # a crash now leaves a playable file of everything flushed
            assert np.array_equal(_file(path), timeline[:written])
    assert 0 < written < len(timeline)
    w.close()
    assert np.array_equal(_file(path), timeline)


def test_silence_mode_zeroes_pauses_keeps_alignment_and_returns_the_silenced_audio(tmp_path: Path) -> None:
    path = tmp_path / "leg.wav"
    timeline = _noise(1000, 5)
    pauses = [(100, 200), (900, OPEN_END)]
    w = LegWriter(path, 8000)
    out1 = w.append(0, timeline[:500], pauses)
    out2 = w.append(600, timeline[600:], pauses)  # the hole 500..600 is silence anyway
    expected = timeline.copy()
    expected[100:200] = 0
    expected[500:600] = 0
    expected[900:] = 0
    assert np.array_equal(np.concatenate([out1, out2]), np.concatenate([expected[:500], expected[600:]]))
    assert np.array_equal(np.concatenate(w.pending_blocks()), expected)
    w.close(pauses)
    assert np.array_equal(_file(path), expected)
    assert w.file_position(300, pauses) == 300


def test_drop_mode_cuts_pauses_from_the_file_but_not_from_what_append_returns(tmp_path: Path) -> None:
    path = tmp_path / "leg.wav"
    timeline = _noise(1000, 6)
    pauses = [(100, 200), (400, 450)]
    w = LegWriter(path, 8000, drop_paused=True, flush_seconds=0.04)  # 320 samples per flush
    returned = []
    for start in range(0, 1000, 100):
        returned.append(w.append(start, timeline[start : start + 100], pauses))
        if w.due:
            w.flush(pauses)
    w.close(pauses)
    silenced = timeline.copy()
    silenced[100:200] = 0
    silenced[400:450] = 0
    assert np.array_equal(np.concatenate(returned), silenced)  # the combined file stays aligned
    assert np.array_equal(_file(path), np.concatenate([timeline[:100], timeline[200:400], timeline[450:]]))
    assert [w.file_position(p, pauses) for p in (50, 150, 300, 425, 999)] == [50, 100, 200, 300, 849]


def test_drop_mode_open_pause_drops_everything_after_it(tmp_path: Path) -> None:
    path = tmp_path / "leg.wav"
    timeline = _noise(800, 7)
    pauses = to_samples([(0.05, None)], 0.0, 8000)  # paused 50 ms in and still paused at hang-up
    w = LegWriter(path, 8000, drop_paused=True)
    w.append(0, timeline, pauses)
    w.close(pauses)
    assert np.array_equal(_file(path), timeline[:400])


@settings(max_examples=40, deadline=None)
@given(
    length=st.integers(0, 120_000),
    cuts=st.lists(st.integers(0, 120_000), max_size=40),
    raw_pauses=st.lists(st.tuples(st.integers(0, 120_000), st.integers(1, 30_000)), max_size=3),
    drop=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_split_gives_the_same_file_and_the_buffer_stays_under_64_kib(
    length: int, cuts: list[int], raw_pauses: list[tuple[int, int]], drop: bool, seed: int
) -> None:
    timeline = _noise(length, seed)
    pauses: list[Interval] = to_samples([(float(a), float(a + n)) for a, n in raw_pauses], 0.0, 1)
    bounds = sorted({0, length, *(c for c in cuts if c < length)})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "leg.wav"
        # 48 kHz with 1 s flushes: the 64 KiB cap, not the time, decides when to write.
        w = LegWriter(path, 48000, drop_paused=drop, flush_seconds=1.0)
        for start, end in zip(bounds, bounds[1:], strict=False):
            w.append(start, timeline[start:end], pauses)
            if w.due:  # what the recorder does after every block
                w.flush(pauses)
            assert w.buffered * 2 < 64 * 1024  # what stays in memory between blocks
        w.close(pauses)
        paused = np.zeros(length, bool)
        for a, b in pauses:
            paused[a:b] = True
        if drop:
            expected = timeline[~paused]
        else:
            expected = np.where(paused, 0, timeline).astype(np.int16)
        got = _file(path)
        assert np.array_equal(got, expected)
        assert wav_info(path).frames == len(expected)
