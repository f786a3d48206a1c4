"""A local stand-in for Deepgram's API (the cloud service cannot be reached from the tests), speaking its wire
protocol as documented at developers.deepgram.com (reference/speech-to-text/listen-streaming and listen-pre-recorded):

- GET /v1/projects with `Authorization: Token <key>`: 200, or 401 with Deepgram's error body.
- GET /v1/listen upgraded to a WebSocket: the handshake is refused with 401 (bad key) or 400 (encoding other than
  linear16, channels other than 1, no sample_rate); binary frames are audio; text frames `KeepAlive` and
  `CloseStream`; the server sends `Results` (interim with `interim_results=true`, finals with `is_final` and
  `speech_final`, times in seconds of audio received), `Metadata` after CloseStream and closes with 1000. No audio
  and no KeepAlive for `idle_timeout_s` (Deepgram: 10 s) closes with 1011 and NET-0001.
- POST /v1/listen with a WAV body: `{metadata, results: {channels, utterances}}`.

It does not recognise speech: tests/plugins/energy_speech.py finds the utterances by loudness (an utterance ends
after `endpointing` ms of quiet) and says the next text of its script for each.
"""

from __future__ import annotations

import io
import json
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soundfile
from aiohttp import WSCloseCode, WSMsgType, web

from tests.plugins.energy_speech import EnergyRecogniser, Utterance


@dataclass
class FakeDeepgram:
    api_key: str = "dg-test-key"
    texts: deque[str] = field(default_factory=deque)  # said in order, one per utterance (then "utterance N")
    idle_timeout_s: float = 10.0
    fail_after_s: float | None = None  # close streams with 1011 once this much audio arrived
    streams: list[dict[str, Any]] = field(default_factory=list)  # per connection: query, keepalives, closed_by
    uploads: list[dict[str, Any]] = field(default_factory=list)
    _said: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/projects", self._projects)
        app.router.add_get("/v1/listen", self._listen)
        app.router.add_post("/v1/listen", self._upload)
        return app

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Token {self.api_key}"

    @staticmethod
    def _error(status: int, code: str, message: str) -> web.Response:
        return web.json_response({"err_code": code, "err_msg": message, "request_id": str(uuid.uuid4())}, status=status)

    def _next_text(self) -> str:
        self._said += 1
        return self.texts.popleft() if self.texts else f"utterance {self._said}"

    async def _projects(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return self._error(401, "INVALID_AUTH", "Invalid credentials.")
        return web.json_response({"projects": [{"project_id": "p-1", "name": "siprec tests"}]})

    # --- streaming ----------------------------------------------------------------------------------------------
    async def _listen(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return self._error(401, "INVALID_AUTH", "Invalid credentials.")
        q = request.query
        if q.get("encoding") != "linear16" or q.get("channels", "1") != "1" or not q.get("sample_rate", "").isdigit():
            return self._error(400, "Bad Request", "unsupported encoding, channels or sample_rate")
        ws = web.WebSocketResponse(receive_timeout=self.idle_timeout_s)
        await ws.prepare(request)
        record: dict[str, Any] = {"query": dict(q), "keepalives": 0, "closed_by": None, "audio_s": 0.0}
        self.streams.append(record)
        detector = EnergyRecogniser(
            int(q["sample_rate"]), int(q.get("endpointing", "300")) / 1000, q.get("interim_results") == "true",
            self._next_text,
        )  # fmt: skip
        try:
            async for message in ws:
                if message.type == WSMsgType.BINARY:
                    pcm = np.frombuffer(message.data, dtype="<i2")
                    for utterance in detector.push(pcm):
                        await ws.send_str(json.dumps(results_message(utterance)))
                    record["audio_s"] = detector.seconds
                    if self.fail_after_s is not None and detector.seconds >= self.fail_after_s:
                        record["closed_by"] = "failure"
                        await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"NET-0000")
                        return ws
                elif message.type == WSMsgType.TEXT:
                    kind = json.loads(message.data).get("type")
                    if kind == "KeepAlive":
                        record["keepalives"] += 1
                    elif kind == "CloseStream":
                        for utterance in detector.finish():
                            await ws.send_str(json.dumps(results_message(utterance)))
                        await ws.send_str(json.dumps({
                            "type": "Metadata", "request_id": str(uuid.uuid4()), "duration": detector.seconds,
                            "channels": 1, "models": ["fake"],
                        }))  # fmt: skip
                        record["closed_by"] = "CloseStream"
                        await ws.close(code=WSCloseCode.OK)
                        return ws
        except TimeoutError:  # nothing for idle_timeout_s: what Deepgram does
            record["closed_by"] = "NET-0001"
            await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"NET-0001")
        return ws

    # --- pre-recorded ---------------------------------------------------------------------------------------------
    async def _upload(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return self._error(401, "INVALID_AUTH", "Invalid credentials.")
        body = await request.read()
        try:
            pcm, rate = soundfile.read(io.BytesIO(body), dtype="int16")
        except RuntimeError:
            return self._error(400, "Bad Request", "failed to process audio: corrupt or unsupported data")
        self.uploads.append({"query": dict(request.query), "bytes": len(body), "rate": rate})
        detector = EnergyRecogniser(rate, 0.6, False, self._next_text)
        utterances = []
        for n, u in enumerate([*detector.push(pcm), *detector.finish()]):
            utterances.append({
                "start": u.start, "end": u.end, "confidence": 0.9, "channel": 0, "transcript": u.text,
                "words": word_list(u), "id": f"u-{n}",
            })  # fmt: skip
        transcript = " ".join(u["transcript"] for u in utterances)
        return web.json_response({
            "metadata": {"request_id": str(uuid.uuid4()), "duration": len(pcm) / rate, "channels": 1},
            "results": {
                "channels": [{"alternatives": [{"transcript": transcript, "confidence": 0.9,
                                                "words": [w for u in utterances for w in u["words"]]}]}],
                "utterances": utterances,
            },
        })  # fmt: skip


def word_list(u: Utterance) -> list[dict[str, Any]]:
    return [
        {"word": w.text.strip(",.?!").lower(), "start": w.start, "end": w.end, "confidence": 0.9, "punctuated_word": w.text}
        for w in u.words
    ]


def results_message(u: Utterance) -> dict[str, Any]:
    return {
        "type": "Results", "channel_index": [0, 1], "duration": round(u.end - u.start, 3), "start": u.start,
        "is_final": u.final, "speech_final": u.final,
        "channel": {"alternatives": [{"transcript": u.text, "confidence": 0.9, "words": word_list(u)}]},
        "metadata": {"request_id": "fake", "model_info": {"name": "fake", "version": "1", "arch": "fake"}},
    }  # fmt: skip
