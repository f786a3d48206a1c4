"""The "recogniser" of the cloud STT fakes (fake_deepgram.py, fake_google.py): utterances found by loudness in a
stream of 16-bit samples, each saying the next text of a script, words spread evenly over it. It does not
recognise speech; it lets a fake answer real audio the way its service would, with times that can be checked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

FRAME_S = 0.02
LOUD_RMS = 200.0
PARTIAL_EVERY_S = 0.5


@dataclass(frozen=True)
class SpokenWord:
    text: str  # as the script has it (punctuation kept)
    start: float  # seconds of audio from the start of the stream
    end: float


@dataclass(frozen=True)
class Utterance:
    words: tuple[SpokenWord, ...]
    start: float
    end: float
    final: bool

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


class EnergyRecogniser:
    """push() samples, get Utterances: interim ones every PARTIAL_EVERY_S of speech (when `interim`), a final one
    once `endpointing_s` of quiet followed the speech; finish() ends the open one."""

    def __init__(self, rate: int, endpointing_s: float, interim: bool, next_text: Callable[[], str]) -> None:
        self.rate, self.frame = rate, int(rate * FRAME_S)
        self.endpointing_s, self.interim = endpointing_s, interim
        self.next_text = next_text
        self.buffer = np.zeros(0, dtype=np.int16)
        self.frames = 0
        self.start: float | None = None  # the open utterance
        self.last_loud = 0.0
        self.next_partial = 0.0
        self.text: str | None = None

    @property
    def seconds(self) -> float:
        return self.frames * FRAME_S + len(self.buffer) / self.rate

    def push(self, pcm: np.ndarray) -> list[Utterance]:
        self.buffer = np.concatenate([self.buffer, pcm.astype(np.int16)])
        out = []
        while len(self.buffer) >= self.frame:
            frame, self.buffer = self.buffer[: self.frame], self.buffer[self.frame :]
            t = self.frames * FRAME_S
            self.frames += 1
            if float(np.sqrt(np.mean(frame.astype(np.float64) ** 2))) > LOUD_RMS:
                if self.start is None:
                    self.start, self.text, self.next_partial = t, self.next_text(), t + PARTIAL_EVERY_S
                self.last_loud = t + FRAME_S
            if self.start is None:
                continue
            now = t + FRAME_S
            if now - self.last_loud >= self.endpointing_s:
                out.append(self._utterance(True))
            elif self.interim and now >= self.next_partial:
                self.next_partial = now + PARTIAL_EVERY_S
                out.append(self._utterance(False, until=now))
        return out

    def finish(self) -> list[Utterance]:
        return [self._utterance(True)] if self.start is not None else []

    def _utterance(self, final: bool, until: float | None = None) -> Utterance:
        assert self.start is not None and self.text is not None
        start, end = self.start, self.last_loud
        texts = self.text.split()
        if not final:  # what was said so far, by the share of the utterance's time gone
            assert until is not None
            texts = texts[: max(1, int(len(texts) * min(1.0, (until - start) / max(end - start, 0.5))))]
        step = (end - start) / max(len(texts), 1)
        words = tuple(
            SpokenWord(w, round(start + i * step, 3), round(start + (i + 1) * step, 3)) for i, w in enumerate(texts)
        )
        if final:
            self.start = self.text = None
        return Utterance(words, round(start, 3), round(end, 3), final)
