"""`GoogleStream`: one leg on Google's StreamingRecognize, as consecutive gRPC streams.

feed() never waits: the block goes on a SampleClock and its bytes on a queue. One task runs the streams: each opens
when there is audio to send, sends the StreamingRecognitionConfig, then the queued audio, and is half-closed once it
has carried `stream_limit_s` of audio (Google ends a stream after ~305 s with OUT_OF_RANGE), got nothing for
`idle_s` (a paused leg: Google would end it for lack of audio) or the leg closed; its last results are read, then the
next stream starts where it stopped. Google's times are from the start of each stream: the stream's first sample
offset is added before the clock maps them back to feed() timestamps. An utterance that spans a change of stream is
cut in two. Any RPC error ends the iteration with SttError (the pipeline's cue to fail over).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import numpy as np
from google.api_core import exceptions as google_errors
from google.cloud import speech_v1

from siprec.stt.provider import StreamParams, SttError, Transcript, Word
from siprec.stt.sampleclock import SampleClock
from siprec_stt_google.config import GoogleConfig

log = logging.getLogger("siprec.stt.google")

_END = object()


def streaming_config(config: GoogleConfig, params: StreamParams) -> speech_v1.StreamingRecognitionConfig:
    return speech_v1.StreamingRecognitionConfig(
        config=speech_v1.RecognitionConfig(
            encoding=speech_v1.RecognitionConfig.AudioEncoding.LINEAR16,
            sample_rate_hertz=params.sample_rate,
            audio_channel_count=1,
            language_code=params.language,
            model=config.model,
            use_enhanced=config.use_enhanced,
            enable_automatic_punctuation=config.punctuation,
            enable_word_time_offsets=True,
        ),
        interim_results=params.partials,
    )


def _seconds(value: Any) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value or 0)


class GoogleStream:
    def __init__(self, client: speech_v1.SpeechAsyncClient, config: GoogleConfig, params: StreamParams) -> None:
        self.params = params
        self.rate = params.sample_rate
        self.clock = SampleClock(self.rate)
        self.streams = 0  # gRPC streams opened so far
        self._client = client
        self._config = config
        self._setup = streaming_config(config, params)
        self._audio: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued_samples = 0
        self._results: asyncio.Queue[Any] = asyncio.Queue()
        self._failed: SttError | None = None
        self._closing = False
        self._ended = False  # the last audio (None) was taken from the queue
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"google-stt-{params.call_id}-{params.stream_label}"
        )

    # --- the pipeline's side ----------------------------------------------------------------------------------
    @property
    def backlog_s(self) -> float:
        return self._queued_samples / self.rate

    def feed(self, pcm: np.ndarray, timestamp: float) -> None:
        if self._failed is not None:
            raise self._failed
        if self._closing or not len(pcm):
            return
        self.clock.note(timestamp, len(pcm))
        self._audio.put_nowait(np.asarray(pcm, dtype="<i2").tobytes())
        self._queued_samples += len(pcm)

    async def __aiter__(self) -> AsyncIterator[Transcript]:
        while True:
            item = await self._results.get()
            if item is _END:
                return
            if isinstance(item, SttError):
                raise item
            yield item

    async def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._audio.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.shield(self._task)

    # --- the streams ----------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        sent = 0  # samples sent on earlier streams
        try:
            while not self._ended:
                first = await self._audio.get()  # a stream opens with audio to send: a paused leg holds none
                if first is None:
                    break
                sent = await self._one_stream(sent, first)
        except asyncio.CancelledError:
            self._fail(SttError("stream aborted"))
            raise
        except SttError as exc:
            self._fail(exc)
        except (google_errors.GoogleAPIError, Exception) as exc:  # grpc.aio.AioRpcError is wrapped by api_core
            self._fail(SttError(f"Google Speech: {type(exc).__name__}: {exc}"))
        else:
            self._results.put_nowait(_END)

    async def _one_stream(self, base: int, first: bytes) -> int:
        """One gRPC stream from sample `base`, starting with `first`; returns where the next one starts."""
        limit = int(self._config.stream_limit_s * self.rate)
        sent = 0

        async def requests() -> AsyncIterator[speech_v1.StreamingRecognizeRequest]:
            nonlocal sent
            yield speech_v1.StreamingRecognizeRequest(streaming_config=self._setup)
            chunk: bytes | None = first
            while chunk is not None:
                self._queued_samples -= len(chunk) // 2
                sent += len(chunk) // 2
                yield speech_v1.StreamingRecognizeRequest(audio_content=chunk)
                if sent >= limit:
                    return
                try:  # Google ends a stream that gets no audio for a while: a paused leg half-closes it
                    chunk = await asyncio.wait_for(self._audio.get(), self._config.idle_s)
                except TimeoutError:
                    return
            self._ended = True

        self.streams += 1
        responses = await self._client.streaming_recognize(requests=requests())
        last_end = 0.0  # end of the last final on this stream: where an interim result starts
        async for response in responses:
            if response.error and response.error.code:
                raise SttError(f"Google Speech error {response.error.code}: {response.error.message}")
            for result in response.results:
                if not result.alternatives:
                    continue
                transcript = self._transcript(result, base, last_end)
                if result.is_final:
                    last_end = _seconds(result.result_end_time)
                self._results.put_nowait(transcript)
        return base + sent

    def _at(self, base: int, seconds: float) -> float:
        return self.clock.at(base + round(seconds * self.rate))

    def _transcript(self, result: Any, base: int, last_end: float) -> Transcript:
        best = result.alternatives[0]
        words = tuple(
            Word(w.word, self._at(base, _seconds(w.start_time)), self._at(base, _seconds(w.end_time)))
            for w in best.words
        )
        end = _seconds(result.result_end_time)
        return Transcript(
            text=best.transcript.strip(),
            is_final=bool(result.is_final),
            start=words[0].start if words else self._at(base, last_end),
            end=words[-1].end if words else self._at(base, end),
            confidence=float(best.confidence) if result.is_final else None,
            words=words,
            language=result.language_code or None,
        )

    def _fail(self, exc: SttError) -> None:
        if self._failed is None:
            self._failed = exc
            log.warning(
                "Google Speech stream of leg %s failed: %s", self.params.stream_label, exc,
                extra={"call_id": self.params.call_id},
            )  # fmt: skip
        self._results.put_nowait(exc)
