"""`DeepgramProvider`: Deepgram's cloud speech to text (entry point `deepgram`).

Live legs stream over one WebSocket each (stream.py); post-call jobs upload the leg file to the pre-recorded API.
The API key comes from `stt.deepgram.api_key` or the DEEPGRAM_API_KEY environment variable and is checked at
start (GET /v1/projects), so a wrong key fails the start with a clear message rather than every call.
Audio leaves the machine: only configure it where your recording policy allows a cloud processor.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import aiohttp

from siprec.stt.provider import Capabilities, StreamParams, SttError, Transcript
from siprec_stt_deepgram.config import API_KEY_VARIABLE, DeepgramConfig
from siprec_stt_deepgram.stream import DeepgramStream
from siprec_stt_deepgram.wire import WireError, batch_query, file_transcripts, listen_query, stream_url


class DeepgramProvider:
    name: ClassVar[str] = "deepgram"
    capabilities: ClassVar[Capabilities] = Capabilities(
        streaming=True,
        partials=True,
        word_timestamps=True,
        languages=("*",),  # Deepgram refuses a language its model lacks when the stream opens (HTTP 400)
        sample_rates=(16000, 8000, 48000),  # linear16 at the leg's own rate: G.711 legs are sent as they are
    )
    config_model: ClassVar[type[DeepgramConfig]] = DeepgramConfig

    def __init__(self, config: DeepgramConfig | None = None) -> None:
        self.config = config if config is not None else DeepgramConfig()
        self._http: aiohttp.ClientSession | None = None
        self._key = ""

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self._key}"}

    async def start(self) -> None:
        self._key = self.config.api_key or os.environ.get(API_KEY_VARIABLE, "")
        if not self._key:
            raise SttError(f"no Deepgram API key: set stt.deepgram.api_key or {API_KEY_VARIABLE}")
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_connect=self.config.connect_timeout_s))
        if self.config.check_key:
            try:
                await self._check_key()
            except BaseException:
                await self.close()
                raise

    async def _check_key(self) -> None:
        assert self._http is not None
        url = f"{self.config.url}/v1/projects"
        try:
            async with self._http.get(
                url, headers=self._headers, timeout=aiohttp.ClientTimeout(total=self.config.connect_timeout_s)
            ) as response:
                if response.status in (401, 403):
                    raise SttError(f"Deepgram refused the API key (HTTP {response.status})")
                if response.status != 200:
                    raise SttError(f"Deepgram answered HTTP {response.status} to {url}")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SttError(f"cannot reach Deepgram at {url}: {type(exc).__name__}: {exc}") from None

    def open_stream(self, params: StreamParams) -> DeepgramStream:
        if self._http is None:
            raise SttError("the Deepgram provider is not started")
        c = self.config
        query = listen_query(
            model=c.model, language=params.language, sample_rate=params.sample_rate, partials=params.partials,
            punctuate=c.punctuate, smart_format=c.smart_format, endpointing_ms=c.endpointing_ms,
        )  # fmt: skip
        # the connection time-out is the session's (sock_connect = connect_timeout_s)
        return DeepgramStream(self._http, stream_url(c.url), query, self._headers, params, keepalive_s=c.keepalive_s)

    async def transcribe_file(self, path: Path, *, language: str) -> Sequence[Transcript]:
        if self._http is None:
            raise SttError("the Deepgram provider is not started")
        c = self.config
        body = await asyncio.to_thread(Path(path).read_bytes)
        query = batch_query(model=c.model, language=language, punctuate=c.punctuate, smart_format=c.smart_format)
        url = f"{c.url}/v1/listen"
        try:
            async with self._http.post(
                url, params=query, data=body, headers={**self._headers, "Content-Type": "audio/wav"},
                timeout=aiohttp.ClientTimeout(total=c.file_timeout_s),
            ) as response:  # fmt: skip
                if response.status != 200:
                    detail = (await response.text())[:300]
                    raise SttError(f"Deepgram refused {Path(path).name}: HTTP {response.status}: {detail}")
                return file_transcripts(await response.json())
        except WireError as exc:
            raise SttError(str(exc)) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SttError(f"Deepgram upload of {Path(path).name} failed: {type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()
