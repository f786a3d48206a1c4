"""`DeepgramStream`: one live leg on one Deepgram streaming connection.

The feeding, the results and the failure handling are siprec.stt.remote.RemoteStream's (Deepgram counts seconds of
audio received; the stream's SampleClock turns them back into feed() timestamps, gaps included). The session
connects, then sends the queued audio, a KeepAlive whenever it had nothing to send for `keepalive_s` (a paused
leg), and CloseStream after close(); it reads the server's frames at the same time. Anything but a normal close
after CloseStream - a refused handshake, a close code from the server, a dropped connection - is an SttError.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import aiohttp

from siprec.stt.provider import StreamParams, SttError
from siprec.stt.remote import RemoteStream
from siprec_stt_deepgram.wire import CLOSE_STREAM, KEEPALIVE, WireError, parse_server_message


class DeepgramStream(RemoteStream):
    service = "Deepgram"

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        params: StreamParams,
        *,
        keepalive_s: float,
    ) -> None:
        self.request_id: str | None = None
        self._http, self._url, self._query, self._headers = http, url, dict(query), dict(headers)
        self._keepalive_s = keepalive_s
        super().__init__(params)

    async def _session(self) -> None:
        try:
            ws = await self._http.ws_connect(
                self._url, params=self._query, headers=self._headers,
                timeout=aiohttp.ClientWSTimeout(ws_close=10.0), autoping=True, max_msg_size=4 * 1024 * 1024,
            )  # fmt: skip
        except aiohttp.WSServerHandshakeError as exc:
            raise SttError(f"Deepgram refused the stream: HTTP {exc.status} {exc.message}") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SttError(f"cannot reach Deepgram at {self._url}: {type(exc).__name__}: {exc}") from None
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
                f"Deepgram closed the stream (code {ws.close_code}{f': {ws.exception()}' if ws.exception() else ''})"
            )

    async def _send(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            try:
                chunk = await self._take_audio(self._keepalive_s)
            except TimeoutError:
                await ws.send_str(KEEPALIVE)  # a paused leg: keep the connection
                continue
            if chunk is None:
                await ws.send_str(CLOSE_STREAM)
                return
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
                self._emit(parsed.transcript)
