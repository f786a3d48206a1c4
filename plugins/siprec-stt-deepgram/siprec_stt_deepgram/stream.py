"""`DeepgramStream`: one live leg on one Deepgram streaming connection.

feed() never waits: it notes the block on a SampleClock (Deepgram counts seconds of audio received; the clock turns
them back into feed() timestamps, gaps included) and queues its bytes. One task connects, then sends the queued
audio, a KeepAlive whenever it had nothing to send for `keepalive_s` (a paused leg), and CloseStream after close();
it reads the server's frames at the same time. Anything but a normal close after CloseStream - a refused
handshake, a close code from the server, a dropped connection - ends the iteration with SttError, which is the
pipeline's cue to hand the leg to a fallback provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import numpy as np

from siprec.stt.provider import StreamParams, SttError, Transcript
from siprec.stt.sampleclock import SampleClock
from siprec_stt_deepgram.wire import CLOSE_STREAM, KEEPALIVE, WireError, parse_server_message

log = logging.getLogger("siprec.stt.deepgram")

_END = object()


class DeepgramStream:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        params: StreamParams,
        *,
        keepalive_s: float,
        connect_timeout_s: float,
    ) -> None:
        self.params = params
        self.rate = params.sample_rate
        self.clock = SampleClock(self.rate)
        self.request_id: str | None = None
        self._audio: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued_samples = 0
        self._results: asyncio.Queue[Any] = asyncio.Queue()
        self._keepalive_s = keepalive_s
        self._failed: SttError | None = None
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(
            self._run(http, url, dict(query), dict(headers), connect_timeout_s),
            name=f"deepgram-{params.call_id}-{params.stream_label}",
        )

    # --- the pipeline's side ----------------------------------------------------------------------------------
    @property
    def backlog_s(self) -> float:
        """Audio fed and not sent yet (connecting, or a connection slower than real time)."""
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
        with contextlib.suppress(Exception):  # a failure reaches the reader of the results
            await asyncio.shield(self._task)

    def abort(self) -> None:
        """Drop the connection without waiting for the last results (cancellation)."""
        self._task.cancel()

    # --- the connection -----------------------------------------------------------------------------------------
    def _time(self, seconds: float) -> float:
        return self.clock.at(round(seconds * self.rate))

    async def _run(
        self, http: aiohttp.ClientSession, url: str, query: dict[str, str], headers: dict[str, str],
        connect_timeout_s: float,
    ) -> None:  # fmt: skip
        try:
            try:
                ws = await http.ws_connect(
                    url, params=query, headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=10.0),
                    autoping=True, max_msg_size=4 * 1024 * 1024,
                )  # fmt: skip
            except aiohttp.WSServerHandshakeError as exc:
                raise SttError(f"Deepgram refused the stream: HTTP {exc.status} {exc.message}") from None
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise SttError(f"cannot reach Deepgram at {url}: {type(exc).__name__}: {exc}") from None
            async with ws:
                sender = asyncio.create_task(self._send(ws))
                try:
                    await self._receive(ws)
                finally:
                    sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await sender
            if not self._closing or ws.close_code not in (1000, None):
                raise SttError(
                    f"Deepgram closed the stream (code {ws.close_code}"
                    f"{f': {ws.exception()}' if ws.exception() else ''})"
                )
        except SttError as exc:
            self._fail(exc)
        except asyncio.CancelledError:
            self._fail(SttError("stream aborted"))
            raise
        except Exception as exc:  # a bug or an unexpected library error: never a silent leg
            self._fail(SttError(f"Deepgram stream failed: {type(exc).__name__}: {exc}"))
        else:
            self._results.put_nowait(_END)

    def _fail(self, exc: SttError) -> None:
        if self._failed is None:
            self._failed = exc
            log.warning(
                "Deepgram stream of leg %s failed: %s", self.params.stream_label, exc,
                extra={"call_id": self.params.call_id},
            )  # fmt: skip
        self._results.put_nowait(exc)

    async def _send(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            try:
                chunk = await asyncio.wait_for(self._audio.get(), self._keepalive_s)
            except TimeoutError:
                await ws.send_str(KEEPALIVE)  # a paused leg: keep the connection
                continue
            if chunk is None:
                await ws.send_str(CLOSE_STREAM)
                return
            self._queued_samples -= len(chunk) // 2
            await ws.send_bytes(chunk)

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                raise SttError(f"Deepgram sent a {message.type.name} frame")
            try:
                parsed = parse_server_message(message.data, self._time)
            except WireError as exc:
                raise SttError(str(exc)) from None
            if parsed.kind == "Metadata":
                self.request_id = parsed.request_id
            elif parsed.transcript is not None:
                self._results.put_nowait(parsed.transcript)
