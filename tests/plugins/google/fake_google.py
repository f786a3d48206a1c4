"""A local stand-in for Google Cloud Speech-to-Text v1 (the cloud cannot be reached from the tests), serving the
real gRPC method `google.cloud.speech.v1.Speech/StreamingRecognize` with the messages of the google-cloud-speech
package, behaving as Google documents it (cloud.google.com/speech-to-text/docs/streaming-recognize):

- the first request must carry `streaming_config` and no audio, the others only `audio_content` (else
  INVALID_ARGUMENT); LINEAR16 needs `sample_rate_hertz`;
- results carry `is_final`, `result_end_time` from the stream's start, interim results (with
  `interim_results`) have a `stability` and no words, finals have words with `start_time`/`end_time`;
- a stream that carried more than `max_stream_s` of audio (Google: 305 s) is aborted with OUT_OF_RANGE
  "Exceeded maximum allowed stream duration"; `fail_after_s` aborts with UNAVAILABLE (a broken connection).

It does not check credentials (the provider connects with `insecure: true`) nor recognise speech:
tests/plugins/energy_speech.py finds utterances by loudness and says the next text of its script.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc
import numpy as np
from google.cloud import speech_v1

from tests.plugins.energy_speech import EnergyRecogniser, Utterance

ENDPOINTING_S = 0.6


@dataclass
class FakeGoogleSpeech:
    texts: deque[str] = field(default_factory=deque)
    max_stream_s: float = 305.0
    fail_after_s: float | None = None
    streams: list[dict[str, Any]] = field(default_factory=list)  # per stream: config, audio_s, ended_by
    _said: int = 0
    _server: grpc.aio.Server | None = None

    async def start(self) -> str:
        server = grpc.aio.server()
        handler = grpc.stream_stream_rpc_method_handler(
            self._streaming_recognize,
            request_deserializer=speech_v1.StreamingRecognizeRequest.deserialize,
            response_serializer=speech_v1.StreamingRecognizeResponse.serialize,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("google.cloud.speech.v1.Speech", {"StreamingRecognize": handler}),)
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server
        return f"127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)

    def _next_text(self) -> str:
        self._said += 1
        return self.texts.popleft() if self.texts else f"utterance {self._said}"

    async def _streaming_recognize(
        self, requests: AsyncIterator[speech_v1.StreamingRecognizeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[speech_v1.StreamingRecognizeResponse]:
        record: dict[str, Any] = {"config": None, "audio_s": 0.0, "ended_by": None}
        self.streams.append(record)
        first = await anext(aiter(requests), None)
        if first is None or not first.streaming_config or first.audio_content:
            record["ended_by"] = "INVALID_ARGUMENT"
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first request must hold streaming_config only")
        setup = first.streaming_config
        record["config"] = setup
        rate = setup.config.sample_rate_hertz
        if setup.config.encoding != speech_v1.RecognitionConfig.AudioEncoding.LINEAR16 or not rate:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "LINEAR16 with sample_rate_hertz expected")
        recogniser = EnergyRecogniser(rate, ENDPOINTING_S, setup.interim_results, self._next_text)
        async for request in requests:
            if request.streaming_config:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "streaming_config is only for the first request")
            utterances = recogniser.push(np.frombuffer(request.audio_content, dtype="<i2"))
            record["audio_s"] = recogniser.seconds
            if recogniser.seconds > self.max_stream_s:
                record["ended_by"] = "OUT_OF_RANGE"
                await context.abort(
                    grpc.StatusCode.OUT_OF_RANGE,
                    f"Exceeded maximum allowed stream duration of {self.max_stream_s:g} seconds.",
                )
            if self.fail_after_s is not None and recogniser.seconds >= self.fail_after_s:
                record["ended_by"] = "UNAVAILABLE"
                await context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")
            for utterance in utterances:
                yield response(utterance, setup.config.language_code)
        for utterance in recogniser.finish():
            yield response(utterance, setup.config.language_code)
        record["ended_by"] = "half-close"


def response(u: Utterance, language: str) -> speech_v1.StreamingRecognizeResponse:
    words = [
        speech_v1.WordInfo(word=w.text, start_time=timedelta(seconds=w.start), end_time=timedelta(seconds=w.end))
        for w in u.words
    ] if u.final else []  # fmt: skip
    return speech_v1.StreamingRecognizeResponse(
        results=[
            speech_v1.StreamingRecognitionResult(
                alternatives=[speech_v1.SpeechRecognitionAlternative(transcript=u.text, confidence=0.9, words=words)],
                is_final=u.final,
                stability=0.0 if u.final else 0.8,
                result_end_time=timedelta(seconds=u.end),
                language_code=language.lower(),
            )
        ]
    )
