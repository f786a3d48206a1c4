"""LegClock: session time <-> leg file time, with pauses kept as silence or cut out (drop mode)."""

from __future__ import annotations

import pytest

from siprec.stt.legclock import LegClock, subtract


def feed(
    clock: LegClock,
    start: float,
    seconds: float,
    *,
    paused: bool = False,
    cut: bool = False,
    block: float = 0.02,
) -> float:
    t = start
    for _ in range(round(seconds / block)):
        clock.note(t, block, paused=paused, in_file=not cut)
        t += block
    return t


def test_silence_mode_is_linear_from_the_first_block() -> None:
    clock = LegClock()
    t = feed(clock, 2.0, 1.0)
    t = feed(clock, t, 0.5, paused=True)
    feed(clock, t, 1.0)
    assert clock.start == 2.0 and clock.end == pytest.approx(4.5)
    assert clock.file_duration == pytest.approx(2.5)
    assert clock.file_time(3.7) == pytest.approx(1.7)
    assert clock.session_time(2.2) == pytest.approx(4.2)
    assert clock.paused == [(pytest.approx(3.0), pytest.approx(3.5))]


def test_drop_mode_cuts_paused_stretches_out_of_file_time() -> None:
    clock = LegClock()
    t = feed(clock, 1.0, 1.0)  # file 0..1
    t = feed(clock, t, 2.0, paused=True, cut=True)  # session 2..4 not in the file
    feed(clock, t, 1.0)  # file 1..2
    assert clock.file_duration == pytest.approx(2.0)
    assert clock.file_time(1.5) == pytest.approx(0.5)
    assert clock.file_time(3.0) == pytest.approx(1.0)  # inside the cut: where the cut is
    assert clock.file_time(4.5) == pytest.approx(1.5)
    assert clock.session_time(0.5) == pytest.approx(1.5)
    assert clock.session_time(1.5) == pytest.approx(4.5)


def test_drop_mode_paused_at_the_start() -> None:
    clock = LegClock()
    t = feed(clock, 0.5, 1.0, cut=True)
    feed(clock, t, 1.0)
    assert clock.start == 0.5 and clock.file_duration == pytest.approx(1.0)
    assert clock.session_time(0.0) == pytest.approx(1.5)
    assert clock.file_time(2.0) == pytest.approx(0.5)


def test_gap_in_timestamps_is_filled_in_the_file() -> None:
    # the recording fills silence-suppression gaps with zeros, so the file keeps session time
    clock = LegClock()
    feed(clock, 0.0, 1.0)
    feed(clock, 3.0, 1.0)
    assert clock.file_duration == pytest.approx(4.0)
    assert clock.file_time(3.5) == pytest.approx(3.5)


def test_recording_and_transcription_pauses_are_apart() -> None:
    clock = LegClock()
    t = feed(clock, 0.0, 1.0)
    t = feed(clock, t, 1.0, cut=True)  # recording paused (cut), transcription not
    t = feed(clock, t, 1.0, paused=True)  # transcription paused, the recording kept it
    feed(clock, t, 1.0)
    assert clock.paused == [(pytest.approx(2.0), pytest.approx(3.0))]
    assert clock.file_duration == pytest.approx(3.0)
    assert clock.session_time(1.5) == pytest.approx(2.5)


def test_drop_paused_default_for_in_file() -> None:
    clock = LegClock(drop_paused=True)  # note() without in_file: paused blocks are the cut ones
    clock.note(0.0, 1.0)
    clock.note(1.0, 1.0, paused=True)
    clock.note(2.0, 1.0)
    assert clock.file_duration == pytest.approx(2.0) and clock.session_time(1.5) == pytest.approx(2.5)


def test_subtract() -> None:
    assert subtract([(0, 10)], [(2, 3), (5, 6)]) == [(0, 2), (3, 5), (6, 10)]
    assert subtract([(0, 10)], [(-1, 20)]) == []
    assert subtract([(0, 1), (4, 8)], [(0.5, 5)]) == [(0, 0.5), (5, 8)]
    assert subtract([(1, 2)], []) == [(1, 2)]
