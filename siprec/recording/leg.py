"""`LegWriter`: one leg's timeline PCM to its WAV file, with pauses applied, in bounded blocks.

The leg timeline (sample 0 = the leg's first RTP packet, wall-clock aligned by the jitter buffer) arrives in
contiguous blocks. Paused stretches become zeros (pause_mode silence: the file stays aligned with the call) or are
cut out of the file (pause_mode drop). Audio is held in memory only until `flush_samples` (or at most
`max_buffer_bytes`) accumulate, then written with one pwrite and the WAV header refreshed, so a killed process
leaves a playable file that misses at most one block.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from siprec.recording.timeline import Interval, apply_silence, dropped_before, kept_segments
from siprec.recording.wav import WavWriter

__all__ = ["LegWriter"]

MAX_BUFFER_BYTES = 64 * 1024
FLUSH_SECONDS = 0.5


class LegWriter:
    def __init__(
        self,
        path: Path,
        sample_rate: int,
        *,
        drop_paused: bool = False,
        flush_seconds: float = FLUSH_SECONDS,
        max_buffer_bytes: int = MAX_BUFFER_BYTES,
    ) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self.drop_paused = drop_paused
        self.flush_samples = max(1, min(int(flush_seconds * sample_rate), max_buffer_bytes // 2))
        self._wav = WavWriter(path, sample_rate, 1)
        self._blocks: list[np.ndarray] = []
        self._buffered = 0
        self.buffer_start = 0  # timeline position of the first buffered sample
        self.timeline_end = 0  # timeline position after the last sample accepted
        self.late_samples = 0  # offered for a stretch already written (cannot happen with a jitter buffer)

    @property
    def frames(self) -> int:
        """Frames in the file so far (buffered audio not included)."""
        return self._wav.frames

    @property
    def buffered(self) -> int:
        return self._buffered

    def append(self, position: int, pcm: np.ndarray, pauses: Sequence[Interval] = ()) -> np.ndarray:
        """Accept timeline samples from `position`; returns them with pauses silenced (what the combined file and
        transcription get). A block starting after the end is preceded by silence; overlap is trimmed."""
        if position > self.timeline_end:
            self._push(np.zeros(position - self.timeline_end, np.int16), pauses)
        elif position < self.timeline_end:
            cut = self.timeline_end - position
            self.late_samples += min(cut, len(pcm))
            pcm = pcm[cut:]
            position = self.timeline_end
        return self._push(pcm, pauses) if len(pcm) else pcm

    def _push(self, pcm: np.ndarray, pauses: Sequence[Interval]) -> np.ndarray:
        if pauses:
            pcm = apply_silence(self.timeline_end, pcm, pauses)
        if not self._buffered:
            self.buffer_start = self.timeline_end
        self._blocks.append(pcm)
        self._buffered += len(pcm)
        self.timeline_end += len(pcm)
        return pcm

    def pending_blocks(self) -> list[np.ndarray]:
        """The buffered timeline blocks (pauses silenced), from `buffer_start`: what a flush will write."""
        return list(self._blocks)

    @property
    def due(self) -> bool:
        return self._buffered >= self.flush_samples

    def flush(self, pauses: Sequence[Interval] = ()) -> None:
        """Write the buffer (without the paused stretches in drop mode) and refresh the header."""
        if not self._buffered:
            return
        block = self._blocks[0] if len(self._blocks) == 1 else np.concatenate(self._blocks)
        self._blocks = []
        self._buffered = 0
        if self.drop_paused and pauses:
            for a, b in kept_segments(self.buffer_start, len(block), pauses):
                self._wav.write(block[a:b])
        else:
            self._wav.write(block)
        self._wav.refresh_header()

    def file_position(self, timeline_position: int, pauses: Sequence[Interval] = ()) -> int:
        """Where a timeline position lands in the file (differs only in drop mode)."""
        return (
            timeline_position - dropped_before(timeline_position, pauses)
            if self.drop_paused
            else timeline_position
        )

    def close(self, pauses: Sequence[Interval] = ()) -> None:
        self.flush(pauses)
        self._wav.close()
