"""Utterances of a recorded file, for post-call jobs: read a block at a time (soundfile), mix to mono, resample to
16 kHz (soxr's streaming resampler), and segment exactly like a live stream, times from the start of the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import soxr

from siprec.stt.provider import SttError

from .segmenter import FrameAssembler, Utterance, UtteranceSegmenter
from .vad import SAMPLE_RATE

READ_S = 10.0  # audio read per step: bounded memory whatever the file's length


class FileUtterances:
    """Blocking (run it in a worker thread): `read()` returns the utterances completed by the next READ_S seconds."""

    def __init__(self, path: Path, segmenter: UtteranceSegmenter) -> None:
        try:
            self._file = soundfile.SoundFile(str(path))
        except (soundfile.LibsndfileError, OSError) as exc:
            raise SttError(f"cannot read {path}: {exc}") from exc
        self._rate = self._file.samplerate
        self._resampler = (
            None
            if self._rate == SAMPLE_RATE
            else soxr.ResampleStream(self._rate, SAMPLE_RATE, 1, dtype="float32")
        )
        self._segmenter = segmenter
        self._assembler = FrameAssembler()
        self._position = 0  # 16 kHz samples handed to the segmenter
        self.done = False

    def read(self) -> list[Utterance]:
        block = self._file.read(int(READ_S * self._rate), dtype="float32", always_2d=True)
        last = len(block) == 0
        mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(np.ascontiguousarray(mono), last=last)
        out: list[Utterance] = []
        frames = self._assembler.push(mono, self._position / SAMPLE_RATE) if len(mono) else []
        self._position += len(mono)
        if last:
            frames += self._assembler.flush()
        for frame, start in frames:
            out.extend(self._segmenter.push(frame, start))
        if last:
            out.extend(self._segmenter.flush())
            self.close()
        return out

    def close(self) -> None:
        self.done = True
        self._file.close()
