"""LegResampler: soxr streaming keeps rate, length, pitch and times; a timestamp jump starts a new run."""

from __future__ import annotations

import numpy as np
import pytest

from siprec.stt.resample import LegResampler
from tests.unit.stt.tone_provider import dominant_hz, tone


def run(resampler: LegResampler, pcm: np.ndarray, start: float, block: int) -> list[tuple[np.ndarray, float]]:
    out = []
    for i in range(0, len(pcm), block):
        out += resampler.process(pcm[i : i + block], start + i / resampler.in_rate)
    return out + resampler.flush()


def test_1khz_tone_8k_to_16k_keeps_frequency_length_and_times() -> None:
    pcm = tone(1000, 2.0, 8000)
    r = LegResampler(8000, 16000)
    blocks = run(r, pcm, start=3.25, block=160)
    out = np.concatenate([b for b, _ in blocks])
    assert out.dtype == np.int16
    assert len(out) == 32000  # exactly twice as many samples: no drift
    assert dominant_hz(out, 16000) == 1000
    # output is aligned with the input: sample k is the ideal 1 kHz sine at 3.25 + k / 16000
    ideal = 8000 * np.sin(2 * np.pi * 1000 * np.arange(32000) / 16000)
    assert np.corrcoef(out[200:-200], ideal[200:-200])[0, 1] > 0.999
    # each block's timestamp is where its first sample is, on the session clock
    position = 0
    for block, t in blocks:
        assert t == pytest.approx(3.25 + position / 16000, abs=1e-9)
        position += len(block)


def test_not_sample_dropping_48k_to_16k() -> None:
    # 3 kHz (below the 8 kHz Nyquist of the output) passes; 10 kHz (above it) is filtered out, not aliased
    rate = 48000
    kept = run(LegResampler(rate, 16000), tone(3000, 1.0, rate), 0.0, 960)
    out = np.concatenate([b for b, _ in kept])
    assert len(out) == 16000 and dominant_hz(out, 16000) == 3000
    alias = np.concatenate([b for b, _ in run(LegResampler(rate, 16000), tone(10000, 1.0, rate), 0.0, 960)])
    # decimating by dropping samples would fold 10 kHz to 6 kHz at full strength; soxr's filter removes it
    assert np.sqrt(np.mean(alias.astype(float) ** 2)) < 100


def test_timestamp_jump_starts_a_new_run() -> None:
    r = LegResampler(8000, 16000)
    first = r.process(tone(500, 0.5, 8000), 1.0)
    after_gap = r.process(tone(500, 0.5, 8000), 5.0)  # a pause: 3.5 s missing
    tail = r.flush()
    # the first run was flushed when the jump came: its samples end exactly at 1.5 s
    first_run = [*first, *[b for b in after_gap if b[1] < 5.0]]
    assert sum(len(b) for b, _ in first_run) == 16000 * 0.5
    later = [b for b in [*after_gap, *tail] if b[1] >= 5.0]
    assert later[0][1] == pytest.approx(5.0)
    assert sum(len(b) for b, _ in later) == 8000


def test_small_jitter_in_timestamps_is_not_a_jump() -> None:
    r = LegResampler(8000, 16000)
    out = []
    for i in range(50):
        out += r.process(tone(500, 0.02, 8000), 1.0 + i * 0.02 + (0.0005 if i % 2 else 0.0))
    out += r.flush()
    assert sum(len(b) for b, _ in out) == 16000  # one run: no flush in between
    assert out[0][1] == pytest.approx(1.0)


def test_same_rate_passes_copies_through() -> None:
    r = LegResampler(16000, 16000)
    pcm = tone(700, 0.1, 16000)
    ((block, t),) = r.process(pcm, 2.0)
    assert t == 2.0 and np.array_equal(block, pcm) and block is not pcm
    pcm[:] = 0  # the caller reuses its buffer
    assert block.any()
    assert r.flush() == []


def test_bad_rates_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        LegResampler(0, 16000)
