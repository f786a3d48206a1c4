"""SampleClock (siprec.stt.sampleclock, for provider authors): stream sample offsets back to feed() timestamps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siprec.stt.sampleclock import SampleClock


def test_clock_contiguous_blocks_keep_one_anchor() -> None:
    clock = SampleClock(16000)
    for i in range(100):
        clock.note(2.0 + i * 0.02, 320)
    assert clock.samples == 32000
    assert clock.at(0) == 2.0
    assert clock.at(16000) == pytest.approx(3.0)
    assert clock._offsets == [0]  # 100 blocks on one run: nothing else kept


def test_clock_jumps_map_each_sample_to_its_blocks_timestamp() -> None:
    clock = SampleClock(16000)
    clock.note(1.0, 16000)  # 1.0 .. 2.0
    clock.note(5.0, 8000)  # a dropped pause: 5.0 .. 5.5
    clock.note(5.5, 8000)  # continues the run
    clock.note(4.0, 1600)  # a late leg's block stamped earlier (overlap)
    assert clock.at(8000) == pytest.approx(1.5)
    assert clock.at(16000) == pytest.approx(5.0)
    assert clock.at(24000) == pytest.approx(5.5)
    assert clock.at(32000) == pytest.approx(4.0)
    assert clock.at(33600) == pytest.approx(4.1)  # the end of the last block
    clock.forget_before(20000)
    assert clock.at(20000) == pytest.approx(5.25) and clock.at(32800) == pytest.approx(4.05)


@given(st.lists(st.tuples(st.integers(1, 2000), st.floats(0.0, 0.5)), min_size=1, max_size=40))
def test_clock_matches_per_block_timestamps(blocks: list[tuple[int, float]]) -> None:
    """Property: whatever the gaps, every sample maps to its block's timestamp plus its place in the block."""
    clock = SampleClock(8000)
    expected: list[tuple[int, float]] = []
    t = 0.0
    for n, gap in blocks:
        t += gap if gap > 0.01 else 0.0  # small "gaps" are none: contiguous blocks
        expected.append((clock.samples, t))
        clock.note(t, n)
        t += n / 8000
    for offset, when in expected:
        assert clock.at(offset) == pytest.approx(when, abs=1e-9)
