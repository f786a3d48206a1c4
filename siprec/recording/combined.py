"""`CombinedWriter`: every leg of a session in one multi-channel WAV, channel n = leg n, aligned by wall clock.

Each leg's timeline is placed at `offset = (leg start - session start) * rate` samples. Legs deliver audio at
different moments (jitter, batching), so each channel keeps a short queue of pending blocks and the file is written
up to a horizon: the point every channel has delivered, or, for a channel with nothing to say (held, one-way,
not started), the wall clock less `lag_s` (the jitter buffer's delay plus a margin), where its silence is certain.
Audio arriving for an already written stretch is counted in `late_samples`, never written out of place.

A leg at another sample rate than the file (a G.722 leg beside G.711 ones) is resampled with soxr, streaming.
In drop mode, session-wide pauses are cut out of the file; a leg's own hold stays silence so channels keep aligned.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from siprec.recording.timeline import Interval, dropped_before, kept_segments
from siprec.recording.wav import WavWriter

__all__ = ["CombinedWriter"]

MIN_BLOCK_SECONDS = 0.5


@dataclass
class _Channel:
    offset: int | None = (
        None  # file position of this leg's timeline sample 0 (None until the leg's first audio)
    )
    end: int = 0  # combined position after the last sample delivered
    rate: int = 0
    resampler: object | None = None
    leg_end: int = 0  # leg samples delivered (timeline)
    pending: deque[tuple[int, np.ndarray]] = field(default_factory=deque)


class CombinedWriter:
    def __init__(
        self,
        path: Path,
        sample_rate: int,
        channels: int,
        origin: float,
        *,
        lag_s: float,
        drop_paused: bool = False,
        min_block_s: float = MIN_BLOCK_SECONDS,
    ) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self.channels = channels
        self.origin = origin  # wall-clock time of combined position 0
        self.lag_s = lag_s
        self.drop_paused = drop_paused
        self.min_block = max(1, int(min_block_s * sample_rate))
        self._wav = WavWriter(path, sample_rate, channels)
        self._ch = [_Channel() for _ in range(channels)]
        self.written = 0  # combined positions consumed (written or dropped)
        self.late_samples = 0

    @property
    def frames(self) -> int:
        return self._wav.frames

    def offset(self, channel: int) -> int | None:
        return self._ch[channel].offset

    def place(self, channel: int, leg_origin: float, leg_rate: int) -> None:
        """Leg `channel` starts (or starts again, for a re-opened m-line) at wall time `leg_origin`."""
        ch = self._ch[channel]
        ch.offset = max(0, round((leg_origin - self.origin) * self.sample_rate))
        ch.rate = leg_rate
        ch.leg_end = 0
        ch.end = max(ch.end, ch.offset)
        ch.resampler = None
        if leg_rate != self.sample_rate:
            import soxr  # only sessions that mix sample rates pay for it

            ch.resampler = soxr.ResampleStream(leg_rate, self.sample_rate, 1, dtype="int16")

    def feed(self, channel: int, position: int, pcm: np.ndarray) -> None:
        """Leg timeline samples from `position` (contiguous per leg; silence fills any hole)."""
        ch = self._ch[channel]
        if ch.offset is None or not len(pcm):
            return
        if position > ch.leg_end:  # a hole in the leg's delivery: silence, so the channel keeps its alignment
            self.feed(channel, ch.leg_end, np.zeros(position - ch.leg_end, np.int16))
        elif position < ch.leg_end:
            pcm = pcm[ch.leg_end - position :]
        ch.leg_end += len(pcm)
        if ch.resampler is not None:
            pcm = ch.resampler.resample_chunk(pcm)  # type: ignore[attr-defined]
        start = ch.end
        if start < self.written:
            skip = min(self.written - start, len(pcm))
            self.late_samples += skip
            pcm = pcm[skip:]
            start += skip
        if len(pcm):
            ch.pending.append((start, pcm))
        ch.end = start + len(pcm)

    def advance(self, now: float, session_pauses: Sequence[Interval] = (), *, final: bool = False) -> int:
        """Write what every channel has delivered or can no longer deliver by wall time `now`; returns frames
        written. `final` writes everything pending."""
        if final:
            horizon = max((ch.end for ch in self._ch), default=self.written)
        else:
            wall_bound = math.floor((now - self.origin - self.lag_s) * self.sample_rate)
            horizon = min(max(ch.end, wall_bound) for ch in self._ch)
            if horizon - self.written < self.min_block:
                return 0
        if horizon <= self.written:
            return 0
        start, length = self.written, horizon - self.written
        block = np.zeros((length, self.channels), np.int16)
        for index, ch in enumerate(self._ch):
            queue = ch.pending
            while queue:
                at, pcm = queue[0]
                end = at + len(pcm)
                lo, hi = max(at, start), min(end, horizon)
                if lo < hi:
                    block[lo - start : hi - start, index] = pcm[lo - at : hi - at]
                if end <= horizon:
                    queue.popleft()
                else:
                    if at < horizon:  # keep the unwritten tail; a block wholly beyond the horizon stays as it is
                        queue[0] = (horizon, pcm[horizon - at :])
                    break
        self.written = horizon
        before = self._wav.frames
        if self.drop_paused and session_pauses:
            for a, b in kept_segments(start, length, session_pauses):
                self._write(block[a:b])
        else:
            self._write(block)
        self._wav.refresh_header()
        return self._wav.frames - before

    def _write(self, block: np.ndarray) -> None:
        self._wav.write(block if self.channels > 1 else block[:, 0])

    def file_offset(self, channel: int, session_pauses: Sequence[Interval] = ()) -> int | None:
        """Where leg `channel`'s sample 0 is in the file (drop mode shifts it by the pauses before it)."""
        offset = self._ch[channel].offset
        if offset is None or not self.drop_paused:
            return offset
        return offset - dropped_before(offset, session_pauses)

    def close(self, now: float, session_pauses: Sequence[Interval] = ()) -> None:
        for ch in self._ch:
            if ch.resampler is not None:  # the resampler's tail
                tail = ch.resampler.resample_chunk(np.zeros(0, np.int16), last=True)  # type: ignore[attr-defined]
                if len(tail):
                    ch.pending.append((ch.end, tail))
                    ch.end += len(tail)
        self.advance(now, session_pauses, final=True)
        self._wav.close()
