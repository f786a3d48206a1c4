"""A small deterministic STT provider for the pipeline tests (registered in code, or through a real entry point).

It "recognises" tones: an utterance is a stretch of 20 ms frames whose RMS is above `threshold`, ended by
`min_silence_s` of quiet; its final result's text is "tone <Hz>" with the dominant frequency measured by FFT at
the stream's input rate (so a resampler that changed the pitch would show). Partials ("tone ...") come every
`partial_every_s` of speech. Times follow the protocol: each sample is placed at the timestamp of the block it came
in. Options make it fail on purpose: at start, on feed after `fail_after_s` of audio (feed raises, or the result
iteration raises), or stall (never process audio until close, reporting the backlog in `backlog_s`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import soundfile

from siprec.stt.provider import Capabilities, ProviderConfig, StreamParams, SttError, Transcript, Word

FRAME_S = 0.02


class ToneConfig(ProviderConfig):
    threshold: float = 300.0
    min_silence_s: float = 0.3
    partial_every_s: float = 0.55
    fail_start: bool = False
    fail_after_s: float | None = None
    fail_in: Literal["feed", "results"] = "feed"
    stall: bool = False
    fail_files: bool = False
    tags: list[str] = []


def tone(freq: float, seconds: float, rate: int, amplitude: float = 8000.0) -> np.ndarray:
    n = int(round(seconds * rate))
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.int16)


def silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(int(round(seconds * rate)), np.int16)


def dominant_hz(samples: np.ndarray, rate: int) -> int:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return int(round(np.argmax(spectrum) * rate / len(samples), -1))


class _Detector:
    """Frames in, results out: the same logic for streams and files."""

    def __init__(self, rate: int, config: ToneConfig) -> None:
        self.rate, self.config = rate, config
        self.frame = int(round(FRAME_S * rate))
        self._pending = np.zeros(0, np.int16)
        self._pending_ts = 0.0
        self._speech: list[np.ndarray] = []
        self._start = 0.0
        self._end = 0.0
        self._quiet = 0.0
        self._since_partial = 0.0

    def push(self, pcm: np.ndarray, ts: float) -> list[Transcript]:
        if not len(self._pending):
            self._pending_ts = ts
        self._pending = np.concatenate([self._pending, pcm])
        out: list[Transcript] = []
        while len(self._pending) >= self.frame:
            frame, self._pending = self._pending[: self.frame], self._pending[self.frame :]
            t = self._pending_ts
            self._pending_ts += self.frame / self.rate
            out += self._frame(frame, t)
        return out

    def _frame(self, frame: np.ndarray, t: float) -> list[Transcript]:
        loud = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2))) > self.config.threshold
        dur = len(frame) / self.rate
        if loud:
            if not self._speech:
                self._start, self._since_partial = t, 0.0
            self._speech.append(frame)
            self._end, self._quiet = t + dur, 0.0
            self._since_partial += dur
            if self._since_partial >= self.config.partial_every_s:
                self._since_partial = 0.0
                return [Transcript("tone ...", False, self._start, self._end)]
            return []
        if self._speech:
            self._quiet += dur
            if self._quiet >= self.config.min_silence_s:
                return self.finish()
        return []

    def finish(self) -> list[Transcript]:
        if not self._speech:
            return []
        samples = np.concatenate(self._speech)
        self._speech = []
        hz = dominant_hz(samples, self.rate)
        words = (Word("tone", self._start, self._end, 1.0), Word(str(hz), self._start, self._end, 1.0))
        return [Transcript(f"tone {hz}", True, self._start, self._end, 1.0, words, "en")]


class ToneStream:
    def __init__(self, provider: ToneProvider, params: StreamParams) -> None:
        self.provider, self.params = provider, params
        self._detector = _Detector(params.sample_rate, provider.config)
        self._results: asyncio.Queue[Transcript | BaseException | None] = asyncio.Queue()
        self._fed_s = 0.0
        self._stalled: list[tuple[np.ndarray, float]] = []
        self.closed = False
        self.blocks: list[tuple[int, float]] = []  # (samples, timestamp) as fed

    @property
    def backlog_s(self) -> float:
        return sum(len(p) for p, _ in self._stalled) / self.params.sample_rate

    def feed(self, pcm: np.ndarray, timestamp: float) -> None:
        assert pcm.dtype == np.int16, pcm.dtype
        config = self.provider.config
        self.blocks.append((len(pcm), timestamp))
        self._fed_s += len(pcm) / self.params.sample_rate
        if config.fail_after_s is not None and self._fed_s > config.fail_after_s:
            if config.fail_in == "feed":
                raise SttError("tone stream broke (feed)")
            self._results.put_nowait(SttError("tone stream broke (results)"))
            return
        if config.stall:
            self._stalled.append((pcm, timestamp))
            return
        for r in self._detector.push(pcm, timestamp):
            self._results.put_nowait(r)

    async def __aiter__(self) -> AsyncIterator[Transcript]:
        while True:
            item = await self._results.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def close(self) -> None:
        for pcm, ts in self._stalled:
            for r in self._detector.push(pcm, ts):
                self._results.put_nowait(r)
        self._stalled.clear()
        for r in self._detector.finish():
            self._results.put_nowait(r)
        self.closed = True
        self._results.put_nowait(None)


class ToneProvider:
    name: ClassVar[str] = "tone"
    capabilities: ClassVar[Capabilities] = Capabilities(
        streaming=True, partials=True, word_timestamps=True, languages=("en",), sample_rates=(16000,)
    )
    config_model: ClassVar[type[ProviderConfig]] = ToneConfig

    instances: ClassVar[list[ToneProvider]] = []

    def __init__(self, config: ToneConfig) -> None:
        self.config = config
        self.started = False
        self.closed = False
        self.streams: list[ToneStream] = []
        self.files: list[tuple[int, float]] = []  # (rate, seconds) of each file transcribed
        type(self).instances.append(self)

    async def start(self) -> None:
        await asyncio.sleep(0)
        if self.config.fail_start:
            raise SttError(f"{self.name}: model missing (on purpose)")
        self.started = True

    def open_stream(self, params: StreamParams) -> ToneStream:
        assert self.started and not self.closed
        assert params.sample_rate in self.capabilities.sample_rates
        stream = ToneStream(self, params)
        self.streams.append(stream)
        return stream

    async def transcribe_file(self, path: Path, *, language: str) -> Sequence[Transcript]:
        if self.config.fail_files:
            raise SttError(f"{self.name}: cannot transcribe files (on purpose)")
        data, rate = await asyncio.to_thread(soundfile.read, str(path), dtype="int16")
        self.files.append((rate, len(data) / rate))
        detector = _Detector(rate, self.config)
        return [*detector.push(data, 0.0), *detector.finish()]

    async def close(self) -> None:
        self.closed = True


class NarrowbandProvider(ToneProvider):
    """A second provider (fallback) that wants 8 kHz: failover changes the resampling."""

    name: ClassVar[str] = "narrowband"
    capabilities: ClassVar[Capabilities] = Capabilities(
        streaming=True, partials=False, word_timestamps=False, languages=("*",), sample_rates=(8000,)
    )
    instances: ClassVar[list[ToneProvider]] = []


class GermanProvider(ToneProvider):
    name: ClassVar[str] = "german"
    capabilities: ClassVar[Capabilities] = Capabilities(
        streaming=False, partials=False, word_timestamps=False, languages=("de",), sample_rates=(16000, 8000)
    )
    instances: ClassVar[list[ToneProvider]] = []
