"""One leg's PCM at the codec rate to the provider's input rate, with the session time of every output block.

soxr's streaming resampler (polyphase, high quality) keeps its filter state between blocks, so block edges leave
no clicks, and its output is aligned with its input: output sample k of a continuous run is at k / out_rate from
the run's first input sample. A timestamp that does not follow on from the previous block (a pause, a gap) ends
the run: the filter is flushed and a new run starts at the new timestamp, so times never drift.
"""

from __future__ import annotations

import numpy as np
import soxr

__all__ = ["DISCONTINUITY_S", "LegResampler", "TimedBlock"]

DISCONTINUITY_S = 0.002  # a block more than this off the expected time starts a new run
TimedBlock = tuple[np.ndarray, float]  # (int16 mono PCM, session time of its first sample)


class LegResampler:
    def __init__(self, in_rate: int, out_rate: int, *, quality: str = "HQ") -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive (got {in_rate} -> {out_rate})")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._quality = quality
        self._stream: soxr.ResampleStream | None = None
        self._run_start = 0.0  # session time of the run's first input sample
        self._in_count = 0  # input samples in this run
        self._out_count = 0  # output samples produced in this run

    @property
    def passthrough(self) -> bool:
        return self.in_rate == self.out_rate

    @property
    def expected(self) -> float | None:
        """The session time the next block should start at (None before the first block of a run)."""
        return self._run_start + self._in_count / self.in_rate if self._in_count else None

    def process(self, pcm: np.ndarray, timestamp: float) -> list[TimedBlock]:
        """Resample one block of int16 samples whose first sample is at `timestamp` (seconds)."""
        pcm = np.asarray(pcm, dtype=np.int16).reshape(-1)
        out: list[TimedBlock] = []
        expected = self.expected
        if expected is not None and abs(timestamp - expected) > DISCONTINUITY_S:
            out += self.flush()
        if not self._in_count:
            self._run_start = timestamp
        if self.passthrough:
            block = pcm.copy()  # the caller may reuse its buffer
        else:
            if self._stream is None:
                self._stream = soxr.ResampleStream(
                    self.in_rate, self.out_rate, 1, dtype="int16", quality=self._quality
                )
            block = self._stream.resample_chunk(pcm)
        self._in_count += len(pcm)
        if len(block):
            out.append((block, self._run_start + self._out_count / self.out_rate))
            self._out_count += len(block)
        return out

    def flush(self) -> list[TimedBlock]:
        """End the current run: the samples still inside the filter, then a fresh state."""
        out: list[TimedBlock] = []
        if self._stream is not None and self._in_count:
            tail = self._stream.resample_chunk(np.zeros(0, np.int16), last=True)
            if len(tail):
                out.append((tail, self._run_start + self._out_count / self.out_rate))
        self._stream = None
        self._in_count = 0
        self._out_count = 0
        return out
