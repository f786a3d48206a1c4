"""CombinedWriter: every leg in one multi-channel WAV, channel n = leg n, placed by wall clock; the horizon
waits for legs that may still deliver and pads the ones the wall clock has given up on. Time is passed in."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from siprec.recording.combined import CombinedWriter
from siprec.recording.wav import read_wav, wav_info

ORIGIN = 1_700_000_000.0  # wall-clock time of the combined file's sample 0
RATE = 8000


def _noise(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.integers(1, 32768, n) * rng.choice([-1, 1], n)).astype(np.int16)


def _tone(freq: float, rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (12000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _writer(tmp_path: Path, channels: int = 2, **kw: object) -> CombinedWriter:
    kw.setdefault("lag_s", 0.5)
    kw.setdefault("min_block_s", 0.01)
    return CombinedWriter(tmp_path / "combined.wav", RATE, channels, ORIGIN, **kw)  # type: ignore[arg-type]


def _read(tmp_path: Path) -> np.ndarray:
    pcm, rate = read_wav(tmp_path / "combined.wav")
    assert rate == RATE
    return pcm


def test_channel_n_is_leg_n_placed_at_its_wall_clock_offset(tmp_path: Path) -> None:
    a, b = _noise(4000, 1), _noise(3000, 2)
    w = _writer(tmp_path)
    w.place(0, ORIGIN, RATE)
    w.place(1, ORIGIN + 0.25, RATE)  # the second leg's first packet came 250 ms later
    assert (w.offset(0), w.offset(1), w.file_offset(1)) == (0, 2000, 2000)
    w.feed(0, 0, a)
    w.feed(1, 0, b)
    w.close(ORIGIN + 10)
    pcm = _read(tmp_path)
    assert pcm.shape == (5000, 2)
    assert np.array_equal(pcm[:4000, 0], a) and not pcm[4000:, 0].any()
    assert not pcm[:2000, 1].any() and np.array_equal(pcm[2000:, 1], b)


def test_a_leg_starting_before_the_session_is_placed_at_zero(tmp_path: Path) -> None:
    w = _writer(tmp_path, channels=1)
    w.place(0, ORIGIN - 1.0, RATE)
    assert w.offset(0) == 0


def test_a_hole_in_a_legs_delivery_stays_silence_and_keeps_alignment(tmp_path: Path) -> None:
    a, b = _noise(1000, 1), _noise(1000, 2)
    w = _writer(tmp_path, channels=1)
    w.place(0, ORIGIN, RATE)
    w.feed(0, 0, a)
    w.feed(0, 1500, b)
    w.feed(0, 2000, b[500:])  # overlaps what was delivered: ignored
    w.close(ORIGIN + 10)
    pcm = _read(tmp_path)
    assert pcm.ndim == 1  # one leg: a mono file
    assert np.array_equal(pcm, np.concatenate([a, np.zeros(500, np.int16), b]))


def test_the_file_waits_for_a_silent_leg_until_the_wall_clock_passes_the_lag(tmp_path: Path) -> None:
    talk = _noise(8000, 3)
    w = _writer(tmp_path, lag_s=0.5)
    w.place(0, ORIGIN, RATE)
    w.place(1, ORIGIN, RATE)  # leg 1 is on hold: nothing arrives
    w.feed(0, 0, talk)
    # Within the lag leg 1 might still deliver: nothing may be written yet.
    assert w.advance(ORIGIN + 0.5) == 0 and wav_info(tmp_path / "combined.wav").frames == 0
    # Then its silence is certain up to the wall clock less the lag.
    assert w.advance(ORIGIN + 0.75) == 2000
    assert w.advance(ORIGIN + 1.0) == 2000
    assert w.frames == 4000 and wav_info(tmp_path / "combined.wav").frames == 4000
    pcm = _read(tmp_path)
    assert np.array_equal(pcm[:, 0], talk[:4000]) and not pcm[:, 1].any()
    assert w.advance(ORIGIN + 1.5) == 4000
    assert np.array_equal(_read(tmp_path)[:, 0], talk)


def test_legs_that_both_delivered_are_written_without_waiting_for_the_clock(tmp_path: Path) -> None:
    w = _writer(tmp_path)
    for ch in (0, 1):
        w.place(ch, ORIGIN, RATE)
    w.feed(0, 0, _noise(3000, 1))
    w.feed(1, 0, _noise(2000, 2))
    assert w.advance(ORIGIN) == 2000  # up to what every channel has delivered
    assert w.advance(ORIGIN) == 0


def test_less_than_a_minimum_block_is_not_written_yet(tmp_path: Path) -> None:
    w = _writer(tmp_path, channels=1, min_block_s=0.5)
    w.place(0, ORIGIN, RATE)
    w.feed(0, 0, _noise(3999, 1))
    assert w.advance(ORIGIN) == 0
    w.feed(0, 3999, _noise(1, 2))
    assert w.advance(ORIGIN) == 4000


def test_audio_for_a_stretch_already_written_is_counted_late_not_misplaced(tmp_path: Path) -> None:
    talk, held = _noise(8000, 4), _noise(6000, 5)
    w = _writer(tmp_path, lag_s=0.5)
    w.place(0, ORIGIN, RATE)
    w.place(1, ORIGIN, RATE)
    w.feed(0, 0, talk)
    assert w.advance(ORIGIN + 1.0) == 4000  # channel 1 padded over 0..4000
    w.feed(1, 0, held)  # then its audio for 0..6000 finally arrives
    assert w.late_samples == 4000
    w.close(ORIGIN + 10)
    pcm = _read(tmp_path)
    assert not pcm[:4000, 1].any()
    assert np.array_equal(pcm[4000:6000, 1], held[4000:])
    assert np.array_equal(pcm[:, 0], talk)


def test_a_later_leg_is_not_pulled_back_to_the_horizon(tmp_path: Path) -> None:
    a, b = _noise(4000, 1), _noise(1000, 2)
    w = _writer(tmp_path, lag_s=0.1)
    w.place(0, ORIGIN, RATE)
    w.place(1, ORIGIN + 1.0, RATE)  # second leg joins 1 s in: offset 8000
    w.feed(0, 0, a)  # leg 0 has flushed its first 0.5 s
    w.feed(1, 0, b)  # leg 1's first block: 8000..9000
    assert w.advance(ORIGIN + 0.2) == 4000  # horizon = leg 0's end, before leg 1 starts
    w.close(ORIGIN + 10)
    pcm = _read(tmp_path)
    assert pcm.shape == (9000, 2)
    assert np.array_equal(pcm[8000:, 1], b)
    assert not pcm[:8000, 1].any()


def test_a_16_khz_leg_is_resampled_into_an_8_khz_file_keeping_length_and_pitch(tmp_path: Path) -> None:
    narrow, wide = _tone(440, RATE, 1.0), _tone(1000, 16000, 1.0)
    w = _writer(tmp_path)
    w.place(0, ORIGIN, RATE)
    w.place(1, ORIGIN, 16000)
    w.feed(0, 0, narrow)
    for start in range(0, 16000, 320):  # 20 ms packets' worth at a time
        w.feed(1, start, wide[start : start + 320])
        w.advance(ORIGIN + start / 16000)
    w.close(ORIGIN + 10)
    pcm = _read(tmp_path)
    assert abs(len(pcm) - 8000) <= 80  # 1 s of audio at 8 kHz, within 10 ms
    assert np.array_equal(pcm[:8000, 0], narrow)
    ch1 = pcm[:, 1].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(ch1 * np.hanning(len(ch1))))
    peak_hz = np.argmax(spectrum) * RATE / len(ch1)
    assert abs(peak_hz - 1000) < 5
    assert np.sqrt(np.mean(ch1[1000:7000] ** 2)) > 12000 / np.sqrt(2) * 0.9  # not attenuated


def test_drop_mode_cuts_session_pauses_and_shifts_offsets(tmp_path: Path) -> None:
    a, b = _noise(8000, 6), _noise(2000, 7)
    pauses = [(2000, 4000)]  # a session-wide pause 0.25 s..0.5 s
    w = _writer(tmp_path, drop_paused=True)
    w.place(0, ORIGIN, RATE)
    w.place(1, ORIGIN + 0.75, RATE)  # offset 6000
    w.feed(0, 0, a)
    w.feed(1, 0, b)
    w.advance(ORIGIN + 0.4, pauses)
    w.close(ORIGIN + 10, pauses)
    pcm = _read(tmp_path)
    assert pcm.shape == (6000, 2)
    assert np.array_equal(pcm[:, 0], np.concatenate([a[:2000], a[4000:]]))
    assert (w.offset(1), w.file_offset(1, pauses)) == (6000, 4000)
    assert np.array_equal(pcm[4000:, 1], b) and not pcm[:4000, 1].any()


def test_silence_mode_ignores_pauses_for_offsets(tmp_path: Path) -> None:
    w = _writer(tmp_path)
    w.place(1, ORIGIN + 0.75, RATE)
    assert w.file_offset(1, [(2000, 4000)]) == 6000
    assert w.file_offset(0, [(2000, 4000)]) is None  # leg 0 never started
