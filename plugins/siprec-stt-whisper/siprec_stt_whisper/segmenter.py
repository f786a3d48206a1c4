"""Sans-I/O utterance segmentation: timestamped PCM blocks in, utterances (and partial snapshots) out.

FrameAssembler cuts the fed blocks into VAD frames, each stamped with the feed-clock time of its first sample.
UtteranceSegmenter runs the VAD per frame and closes an utterance after `min_silence_s` of non-speech, at a gap in
the feed clock, or (cut at its quietest frame) when it reaches `max_utterance_s`. An utterance keeps every frame's
time, so any sample offset in it maps back to the feed clock however the blocks were spaced.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .vad import FRAME_S, FRAME_SAMPLES, SAMPLE_RATE, FrameVad

GAP_TOLERANCE_S = 0.002  # a block more than this off the previous one's end starts a new run of frames
PRE_ROLL_S = 0.3  # audio kept before the first speech frame (the VAD fires a little after the onset)
TAIL_S = 0.2  # audio kept after the last speech frame (Whisper transcribes a clipped last word badly)
MIN_SPEECH_S = 0.1  # fewer speech frames than this is a click, not an utterance
SPLIT_SEARCH_S = 1.0  # a forced cut goes at the quietest frame of the utterance's last second


@dataclass(frozen=True)
class Utterance:
    seq: int  # counts the stream's utterances; a partial snapshot has the seq of the utterance it belongs to
    samples: np.ndarray  # float32 at SAMPLE_RATE
    frame_times: np.ndarray  # float64: feed-clock time of the first sample of each FRAME_SAMPLES frame
    speech_start: float  # feed-clock time of the first speech frame
    speech_end: float  # feed-clock time of the end of the last speech frame (or of the audio, in a snapshot)
    final: bool  # False: a snapshot of the open utterance, for a partial result

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def time_at(self, offset_s: float) -> float:
        """Feed-clock time of the sample `offset_s` seconds into `samples`."""
        index = min(max(int(round(offset_s * SAMPLE_RATE)), 0), len(self.samples))
        frame = min(index // FRAME_SAMPLES, len(self.frame_times) - 1)
        return float(self.frame_times[frame]) + (index - frame * FRAME_SAMPLES) / SAMPLE_RATE


class FrameAssembler:
    """Cuts blocks of any size into FRAME_SAMPLES frames. A block that does not continue the previous one (a pause,
    a late leg) ends the pending frame with zeros, so a frame never spans a gap."""

    def __init__(self) -> None:
        self._carry = np.zeros(0, dtype=np.float32)
        self._carry_end = 0.0  # feed-clock time just after the carried samples

    def push(self, samples: np.ndarray, timestamp: float) -> list[tuple[np.ndarray, float]]:
        frames: list[tuple[np.ndarray, float]] = []
        if len(self._carry) and abs(timestamp - self._carry_end) > GAP_TOLERANCE_S:
            frames.extend(self.flush())
        data = np.concatenate((self._carry, samples)) if len(self._carry) else samples
        start = timestamp - len(self._carry) / SAMPLE_RATE  # frames are anchored on the newest block's time
        whole = len(data) // FRAME_SAMPLES * FRAME_SAMPLES
        for offset in range(0, whole, FRAME_SAMPLES):
            frames.append(
                (
                    np.array(data[offset : offset + FRAME_SAMPLES], dtype=np.float32),
                    start + offset / SAMPLE_RATE,
                )
            )
        self._carry = np.array(data[whole:], dtype=np.float32)
        self._carry_end = timestamp + len(samples) / SAMPLE_RATE
        return frames

    def flush(self) -> list[tuple[np.ndarray, float]]:
        """The pending samples as a last frame padded with zeros (none if nothing is pending)."""
        if not len(self._carry):
            return []
        frame = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        frame[: len(self._carry)] = self._carry
        start = self._carry_end - len(self._carry) / SAMPLE_RATE
        self._carry = np.zeros(0, dtype=np.float32)
        return [(frame, start)]


class UtteranceSegmenter:
    def __init__(
        self,
        vad: FrameVad,
        *,
        min_silence_s: float,
        max_utterance_s: float,
        partial_interval_s: float | None,
    ) -> None:
        self._vad = vad
        self._silence_frames = max(1, round(min_silence_s / FRAME_S))
        self._max_frames = max(2, int(max_utterance_s / FRAME_S))
        self._partial_frames = (
            None if partial_interval_s is None else max(1, round(partial_interval_s / FRAME_S))
        )
        self._tail_frames = round(TAIL_S / FRAME_S)
        self._min_speech_frames = max(1, round(MIN_SPEECH_S / FRAME_S))
        self._split_frames = round(SPLIT_SEARCH_S / FRAME_S)
        self._pre: deque[tuple[np.ndarray, float]] = deque(maxlen=round(PRE_ROLL_S / FRAME_S))
        self._expected: float | None = None  # where the next frame should start if the feed has no gap
        self._active = False  # the VAD's previous decision (its hysteresis)
        self._seq = 0
        # the open utterance, frame by frame
        self._frames: list[np.ndarray] = []
        self._times: list[float] = []
        self._speech: list[bool] = []
        self._last_speech = -1
        self._since_partial = 0

    @property
    def is_open(self) -> bool:
        return bool(self._frames)

    @property
    def open_seq(self) -> int:
        """The seq of the open utterance (or of the next one)."""
        return self._seq

    def push(self, frame: np.ndarray, timestamp: float) -> list[Utterance]:
        """One frame (float32, FRAME_SAMPLES) starting at `timestamp`; returns what it completed: finals, and a
        partial snapshot every partial interval while an utterance is open."""
        out: list[Utterance] = []
        if self._expected is not None and timestamp - self._expected > self._silence_frames * FRAME_S:
            out.extend(self.flush())  # the feed skipped at least a silence's worth: the utterance ended
            self._pre.clear()
        self._expected = timestamp + FRAME_S
        speech = self._active = self._vad.is_speech(frame, self._active)
        if not self._frames:
            if not speech:
                self._pre.append((frame, timestamp))
                return out
            for f, t in self._pre:
                self._append(f, t, False)
            self._pre.clear()
        self._append(frame, timestamp, speech)
        if len(self._frames) - 1 - self._last_speech >= self._silence_frames:
            out.extend(self._close(min(len(self._frames), self._last_speech + 1 + self._tail_frames)))
        elif len(self._frames) >= self._max_frames:
            out.extend(self._close(self._quietest_cut()))
        elif self._partial_frames is not None:
            self._since_partial += 1
            if self._since_partial >= self._partial_frames and speech:  # none during the closing silence
                self._since_partial = 0
                out.append(self._snapshot())
        return out

    def flush(self) -> list[Utterance]:
        """End of audio: the open utterance as a final (none if nothing is open or it was only a click)."""
        return self._close(len(self._frames)) if self._frames else []

    def _append(self, frame: np.ndarray, timestamp: float, speech: bool) -> None:
        self._frames.append(frame)
        self._times.append(timestamp)
        self._speech.append(speech)
        if speech:
            self._last_speech = len(self._frames) - 1

    def _quietest_cut(self) -> int:
        """Where to cut an over-long utterance: at the quietest frame of its last second (between words, with luck)."""
        first = max(1, len(self._frames) - self._split_frames)
        levels = [float(np.dot(f, f)) for f in self._frames[first:]]
        return first + int(np.argmin(levels))

    def _close(self, end: int) -> list[Utterance]:
        """Emit frames[:end] as a final; frames after `end` open the next utterance if they hold speech."""
        frames, times, speech = self._frames, self._times, self._speech
        self._frames, self._times, self._speech = [], [], []
        self._last_speech, self._since_partial = -1, 0
        out: list[Utterance] = []
        if sum(speech[:end]) >= self._min_speech_frames:
            out.append(self._utterance(frames[:end], times[:end], speech[:end], final=True))
            self._seq += 1
        rest = list(zip(frames[end:], times[end:], speech[end:], strict=True))
        if any(s for _, _, s in rest):
            for f, t, s in rest:
                self._append(f, t, s)
        else:
            self._pre.extend((f, t) for f, t, _ in rest)
        return out

    def _snapshot(self) -> Utterance:
        return self._utterance(self._frames, self._times, self._speech, final=False)

    def _utterance(
        self, frames: list[np.ndarray], times: list[float], speech: list[bool], *, final: bool
    ) -> Utterance:
        first = speech.index(True) if True in speech else 0
        last = len(speech) - 1 - speech[::-1].index(True) if final and True in speech else len(speech) - 1
        return Utterance(
            seq=self._seq,
            samples=np.concatenate(frames),
            frame_times=np.asarray(times, dtype=np.float64),
            speech_start=times[first],
            speech_end=times[last] + FRAME_S,
            final=final,
        )
