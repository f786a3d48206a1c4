"""`GoogleStream`: one leg on Google's StreamingRecognize, as consecutive gRPC streams.

Feeding, results and failures are siprec.stt.remote.RemoteStream's. The session runs the streams: each opens
when there is audio to send, sends the StreamingRecognitionConfig, then the queued audio, and is half-closed once it
has carried `stream_limit_s` of audio (Google ends a stream after ~305 s with OUT_OF_RANGE), got nothing for
`idle_s` (a paused leg: Google would end it for lack of audio) or the leg closed; its last results are read, then the
next stream starts where it stopped. Google's times are from the start of each stream: the stream's first sample
offset is added before the clock maps them back to feed() timestamps. An utterance that spans a change of stream is
cut in two. Any RPC error ends the iteration with SttError (the pipeline's cue to fail over).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from google.cloud import speech_v1

from siprec.stt.provider import StreamParams, SttError, Transcript, Word
from siprec.stt.remote import RemoteStream
from siprec_stt_google.config import GoogleConfig


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


class GoogleStream(RemoteStream):
    service = "Google Speech"

    def __init__(self, client: speech_v1.SpeechAsyncClient, config: GoogleConfig, params: StreamParams) -> None:
        self.streams = 0  # gRPC streams opened so far
        self._client = client
        self._config = config
        self._setup = streaming_config(config, params)
        self._ended = False  # the last audio (None) was taken from the queue
        super().__init__(params)

    async def _session(self) -> None:
        sent = 0  # samples sent on earlier streams
        while not self._ended:
            first = await self._take_audio()  # a stream opens with audio to send: a paused leg holds none
            if first is None:
                return
            sent = await self._one_stream(sent, first)

    async def _one_stream(self, base: int, first: bytes) -> int:
        """One gRPC stream from sample `base`, starting with `first`; returns where the next one starts."""
        limit = int(self._config.stream_limit_s * self.rate)
        sent = 0

        async def requests() -> AsyncIterator[speech_v1.StreamingRecognizeRequest]:
            nonlocal sent
            yield speech_v1.StreamingRecognizeRequest(streaming_config=self._setup)
            chunk: bytes | None = first
            while chunk is not None:
                sent += len(chunk) // 2
                yield speech_v1.StreamingRecognizeRequest(audio_content=chunk)
                if sent >= limit:
                    return
                try:  # Google ends a stream that gets no audio for a while: a paused leg half-closes it
                    chunk = await self._take_audio(self._config.idle_s)
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
                self._emit(transcript)
        return base + sent

    def _transcript(self, result: Any, base: int, last_end: float) -> Transcript:
        best = result.alternatives[0]
        words = tuple(
            Word(w.word, self._time(_seconds(w.start_time), base), self._time(_seconds(w.end_time), base))
            for w in best.words
        )
        end = _seconds(result.result_end_time)
        return Transcript(
            text=best.transcript.strip(),
            is_final=bool(result.is_final),
            start=words[0].start if words else self._time(last_end, base),
            end=words[-1].end if words else self._time(end, base),
            confidence=float(best.confidence) if result.is_final else None,
            words=words,
            language=result.language_code or None,
        )
