"""A local stand-in for Deepgram's API (the cloud service cannot be reached from the tests), speaking its wire
protocol as documented at developers.deepgram.com (reference/speech-to-text/listen-streaming and listen-pre-recorded):

- GET /v1/projects with `Authorization: Token <key>`: 200, or 401 with Deepgram's error body.
- GET /v1/listen upgraded to a WebSocket: the handshake is refused with 401 (bad key) or 400 (encoding other than
  linear16, channels other than 1, no sample_rate); binary frames are audio; text frames `KeepAlive` and
  `CloseStream`; the server sends `Results` (interim with `interim_results=true`, finals with `is_final` and
  `speech_final`, times in seconds of audio received), `Metadata` after CloseStream and closes with 1000. No audio
  and no KeepAlive for `idle_timeout_s` (Deepgram: 10 s) closes with 1011 and NET-0001.
- POST /v1/listen with a WAV body: `{metadata, results: {channels, utterances}}`.

It does not recognise speech: it finds utterances by loudness (20 ms frames, an utterance ends after `endpointing`
ms of quiet) and says the next text of its script for each, words spread evenly over the utterance.
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

FRAME_S = 0.02
LOUD_RMS = 200.0
PARTIAL_EVERY_S = 0.5


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
        detector = _Detector(int(q["sample_rate"]), int(q.get("endpointing", "300")) / 1000, q.get("interim_results") == "true")
        try:
            async for message in ws:
                if message.type == WSMsgType.BINARY:
                    pcm = np.frombuffer(message.data, dtype="<i2")
                    for event in detector.push(pcm, self._next_text):
                        await ws.send_str(json.dumps(event))
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
                        for event in detector.finish(self._next_text):
                            await ws.send_str(json.dumps(event))
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
        detector = _Detector(rate, 0.6, False)
        events = [*detector.push(pcm, self._next_text), *detector.finish(self._next_text)]
        utterances = []
        for n, e in enumerate(events):
            alt = e["channel"]["alternatives"][0]
            words = alt["words"]
            utterances.append({
                "start": words[0]["start"], "end": words[-1]["end"], "confidence": alt["confidence"], "channel": 0,
                "transcript": alt["transcript"], "words": words, "id": f"u-{n}",
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


class _Detector:
    """Utterances by loudness in a stream of samples, as Results messages."""

    def __init__(self, rate: int, endpointing_s: float, interim: bool) -> None:
        self.rate, self.frame = rate, int(rate * FRAME_S)
        self.endpointing_s, self.interim = endpointing_s, interim
        self.buffer = np.zeros(0, dtype=np.int16)
        self.frames = 0  # frames processed
        self.start: float | None = None  # open utterance
        self.last_loud = 0.0
        self.next_partial = 0.0
        self.text: str | None = None

    @property
    def seconds(self) -> float:
        return self.frames * FRAME_S + len(self.buffer) / self.rate

    def push(self, pcm: np.ndarray, next_text: Any) -> list[dict[str, Any]]:
        self.buffer = np.concatenate([self.buffer, pcm.astype(np.int16)])
        out = []
        while len(self.buffer) >= self.frame:
            frame, self.buffer = self.buffer[: self.frame], self.buffer[self.frame :]
            t = self.frames * FRAME_S
            self.frames += 1
            loud = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2))) > LOUD_RMS
            if loud:
                if self.start is None:
                    self.start, self.text, self.next_partial = t, next_text(), t + PARTIAL_EVERY_S
                self.last_loud = t + FRAME_S
            if self.start is None:
                continue
            now = t + FRAME_S
            if now - self.last_loud >= self.endpointing_s:
                out.append(self._result(True))
            elif self.interim and now >= self.next_partial:
                self.next_partial = now + PARTIAL_EVERY_S
                out.append(self._result(False, until=now))
        return out

    def finish(self, next_text: Any) -> list[dict[str, Any]]:
        return [self._result(True)] if self.start is not None else []

    def _result(self, final: bool, until: float | None = None) -> dict[str, Any]:
        assert self.start is not None and self.text is not None
        start, end = self.start, self.last_loud
        words = self.text.split()
        if not final:  # what was said so far, by the share of the utterance's time gone
            assert until is not None
            words = words[: max(1, int(len(words) * min(1.0, (until - start) / max(end - start, 0.5))))]
        step = (end - start) / max(len(words), 1)
        listed = [
            {"word": w.strip(",.?!").lower(), "start": round(start + i * step, 3), "end": round(start + (i + 1) * step, 3),
             "confidence": 0.9, "punctuated_word": w}
            for i, w in enumerate(words)
        ]  # fmt: skip
        if final:
            self.start = self.text = None
        return {
            "type": "Results", "channel_index": [0, 1], "duration": round(end - start, 3), "start": round(start, 3),
            "is_final": final, "speech_final": final,
            "channel": {"alternatives": [{"transcript": " ".join(words), "confidence": 0.9, "words": listed}]},
            "metadata": {"request_id": "fake", "model_info": {"name": "fake", "version": "1", "arch": "fake"}},
        }  # fmt: skip
