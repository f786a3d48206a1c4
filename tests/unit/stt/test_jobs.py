"""cut_wav: the stretch of a leg file a post-call job transcribes, at the provider's rate, from WAV or FLAC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from siprec.stt.jobs import cut_wav
from tests.unit.stt.tone_provider import dominant_hz, tone


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_cut_resamples_the_asked_stretch(tmp_path: Path, suffix: str) -> None:
    src = tmp_path / f"leg{suffix}"
    soundfile.write(
        str(src), np.concatenate([tone(500, 1.0, 8000), tone(1200, 1.0, 8000)]), 8000, subtype="PCM_16"
    )
    dst = tmp_path / "piece.wav"
    assert cut_wav(src, dst, 1.25, 1.75, 16000) == pytest.approx(0.5)
    data, rate = soundfile.read(str(dst), dtype="int16")
    info = soundfile.info(str(dst))
    assert (rate, info.subtype, info.channels, len(data)) == (16000, "PCM_16", 1, 8000)
    assert dominant_hz(data, 16000) == 1200


def test_cut_past_the_end_of_the_file(tmp_path: Path) -> None:
    src = tmp_path / "leg.wav"
    soundfile.write(str(src), tone(500, 1.0, 8000), 8000, subtype="PCM_16")
    assert cut_wav(src, tmp_path / "a.wav", 0.5, 3.0, 8000) == pytest.approx(0.5)  # same rate: copied as is
    assert cut_wav(src, tmp_path / "b.wav", 2.0, 3.0, 16000) == 0.0


def test_cut_unreadable_file_raises(tmp_path: Path) -> None:
    src = tmp_path / "leg.wav"
    src.write_bytes(b"not audio")
    with pytest.raises(RuntimeError):  # soundfile.LibsndfileError: the job reports the file, other jobs go on
        cut_wav(src, tmp_path / "x.wav", 0, 1, 8000)
