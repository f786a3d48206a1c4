"""One live leg: feed() segments the audio on the caller's thread (cheap: a VAD frame at a time), a task per
stream sends the utterances to the shared decode pool in order and turns the results into Transcripts."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import Callable

import numpy as np

from siprec.stt.provider import StreamParams, SttError, Transcript, Word

from .config import WhisperConfig
from .model import Decoded, WhisperEngine
from .pool import DecodePool, Priority
from .segmenter import FrameAssembler, Utterance, UtteranceSegmenter
from .vad import SAMPLE_RATE, FrameVad

log = logging.getLogger(__name__)

_END = object()  # end of the results


def make_segmenter(vad: FrameVad, config: WhisperConfig, *, partials: bool) -> UtteranceSegmenter:
    return UtteranceSegmenter(
        vad,
        min_silence_s=config.min_silence_ms / 1000,
        max_utterance_s=config.max_utterance_s,
        partial_interval_s=config.partial_interval_s if partials else None,
    )


def to_transcript(utterance: Utterance, decoded: Decoded) -> Transcript:
    """A decode of `utterance` on the feed clock (word offsets mapped through the utterance's frame times)."""
    words = tuple(
        Word(
            text=w.text,
            start=utterance.time_at(w.start),
            end=utterance.time_at(w.end),
            confidence=w.probability,
        )
        for w in decoded.words
    )
    return Transcript(
        text=decoded.text,
        is_final=utterance.final,
        start=utterance.speech_start,
        end=utterance.speech_end,
        confidence=decoded.confidence,
        words=words,
    )


class WhisperStream:
    def __init__(
        self,
        *,
        engine: WhisperEngine,
        pool: DecodePool,
        vad: FrameVad,
        config: WhisperConfig,
        params: StreamParams,
        on_closed: Callable[[WhisperStream], None],
    ) -> None:
        self.params = params
        self._engine = engine
        self._pool = pool
        self._on_closed = on_closed
        self._assembler = FrameAssembler()
        self._segmenter = make_segmenter(vad, config, partials=params.partials)
        self._finals: deque[Utterance] = deque()  # closed utterances not decoded yet, oldest first
        self._partial: Utterance | None = (
            None  # the newest snapshot of the open utterance, if not decoded yet
        )
        self._partial_job: asyncio.Future[Decoded] | None = None
        self._closed_seq = -1  # seq of the newest final taken: partials of it or older are stale
        self._fed_until = 0.0  # feed-clock end of the newest block
        self._wake = asyncio.Event()
        self._results: asyncio.Queue[object] = asyncio.Queue()
        self._closing = False
        self._error: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"whisper-stream {params.call_id}"
        )

    @property
    def backlog_s(self) -> float:
        """How far the finals are behind the feed: feed-clock seconds from the end of the oldest utterance still
        waiting for its final to the end of the audio fed (0 when every final is out). It includes the silence
        that ended the utterance; the pipeline watches it for a leg falling behind real time."""
        return max(0.0, self._fed_until - self._finals[0].speech_end) if self._finals else 0.0

    def feed(self, pcm: np.ndarray, timestamp: float) -> None:
        if self._error is not None:
            raise SttError(f"whisper stream failed: {self._error}")
        if self._closing:
            raise SttError("whisper stream is closed")
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise SttError(f"feed() takes 1-D int16 samples, got {getattr(pcm, 'dtype', type(pcm))!s}")
        samples = pcm.astype(np.float32) * (1.0 / 32768.0)
        self._fed_until = max(self._fed_until, timestamp + len(pcm) / SAMPLE_RATE)
        for frame, start in self._assembler.push(samples, timestamp):
            self._take(self._segmenter.push(frame, start))

    def _take(self, utterances: list[Utterance]) -> None:
        for u in utterances:
            if u.final:
                self._finals.append(u)
                self._closed_seq = u.seq
                self._partial = None
                if self._partial_job is not None:
                    self._partial_job.cancel()  # stale now; dropped if it has not started
            else:
                self._partial = u
        if utterances:
            self._wake.set()

    def _decode(self, utterance: Utterance, priority: Priority) -> asyncio.Future[Decoded]:
        job = functools.partial(
            self._engine.decode, utterance.samples, final=utterance.final, language=self.params.language
        )
        return self._pool.submit(job, priority)

    async def _run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._finals or self._partial is not None:
                    if self._finals:
                        utterance = self._finals[0]
                        decoded = await self._decode(utterance, Priority.FINAL)
                        self._finals.popleft()
                        self._results.put_nowait(to_transcript(utterance, decoded))
                        continue
                    utterance, self._partial = self._partial, None
                    assert utterance is not None
                    self._partial_job = self._decode(utterance, Priority.PARTIAL)
                    await asyncio.wait((self._partial_job,))
                    job, self._partial_job = self._partial_job, None
                    if not job.cancelled() and utterance.seq > self._closed_seq:
                        result = to_transcript(utterance, job.result())
                        if result.text:
                            self._results.put_nowait(result)
                if self._closing:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a decode failed: the stream has failed (the pipeline fails over)
            log.warning("whisper stream %s failed: %s", self.params.call_id, exc)
            self._error = exc
        finally:
            self._results.put_nowait(_END)

    def __aiter__(self) -> WhisperStream:
        return self

    async def __anext__(self) -> Transcript:
        item = await self._results.get()
        if item is _END:
            self._results.put_nowait(_END)  # later calls end too
            if self._error is not None:
                raise SttError(f"whisper stream failed: {self._error}") from self._error
            raise StopAsyncIteration
        assert isinstance(item, Transcript)
        return item

    async def close(self) -> None:
        """Finish the open utterance (a final), wait for the last decode, end the iteration. Idempotent."""
        if not self._closing:
            self._closing = True
            if self._error is None:
                for frame, start in self._assembler.flush():
                    self._take(self._segmenter.push(frame, start))
                self._take(self._segmenter.flush())
                self._partial = None
            self._wake.set()
        try:
            await asyncio.shield(self._task)
        finally:
            if self._task.done():
                self._on_closed(self)

    async def abort(self) -> None:
        """Stop at once without flushing (the provider is closing with the stream still open)."""
        self._closing = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task  # its finally ends the iteration
        self._on_closed(self)
