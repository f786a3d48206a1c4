"""The WebSocket hub: /ws/transcriptions and /ws/analytics, fed from the event bus (CONTRACT.md "WebSockets",
docs/websocket.md).

    hub = WebSocketHub(bus, verify_token=auth.verify_token, session_exists=sessions.__contains__)
    hub.add_routes(app)          # the two GET routes, and hub.close() on the app's shutdown
    ...
    await hub.close()            # every client gets 1001; no task is left behind

Fan-out: the hub is one callback on the bus. Each event is serialised once (Event.to_json, UTF-8 encoded once) and
the same bytes are put in the outbox of every client that wants them; one task per client writes its outbox to its
socket. The publisher never waits. An outbox is bounded (`queue_size` items): when a client does not read, its
socket buffers fill, its task blocks, its outbox fills, and the next frame for it cuts it (error LAGGED, close
4008; the server lets go of the connection within `lag_grace_s` even if the client never reads again: the kernel
then delivers or drops what is left). Nobody else notices.

Which calls a client gets: every call's events while it has no subscription (from ?call_id= or subscribe); only its
subscribed calls' events once it has one; every call again when its last subscription is dropped (IZI SIPREC's
clients expect every call when they set no filter). Events without a call_id go to every client of the path.

Replay: subscribing to a call first sends what the client missed of it, from TranscriptHistory (session_started,
the final transcripts so far, session_ended if it ended), then its live events. Registration, the replay snapshot
and the filter change happen in one synchronous step between two bus events, so nothing is lost; frames the
client already got live (in every-call mode, or during an earlier subscription: its Coverage) are left out of
the replay, so nothing is sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import WSMsgType, web

from siprec.api.ws_clients import Audience, Channel, Outbox, OutItem, WsClient
from siprec.api.ws_frames import (
    CloseCode,
    ErrorCode,
    EventFrame,
    Heartbeat,
    ProtocolError,
    Subscribe,
    Unsubscribe,
    echo,
    error_frame,
    parse_client_message,
    pong_frame,
)
from siprec.api.ws_history import TranscriptHistory
from siprec.events.bus import EventBus
from siprec.events.types import Event

log = logging.getLogger("siprec.api.ws")

TRANSCRIPTIONS_PATH = "/ws/transcriptions"
ANALYTICS_PATH = "/ws/analytics"
SESSION_TYPES = frozenset({"session_started", "session_ended"})
DEFAULT_ANALYTICS_PREFIXES = ("analytics", "sentiment", "keyword", "snapshot", "alert")
DEFAULT_QUEUE_SIZE = 256
# Bounds what a stalled client holds in socket buffers (~4x this: kernel doubles SO_SNDBUF, plus the write buffer)
# and still carries ~0.6 MB/s at 200 ms RTT, more than an every-call dashboard of a busy server needs.
DEFAULT_SEND_BUFFER = 64 * 1024
MAX_CLIENT_MESSAGE = 64 * 1024  # client messages are a few dozen bytes; larger is closed by aiohttp with 1009


class WebSocketHub:
    def __init__(
        self,
        bus: EventBus,
        *,
        verify_token: Callable[[str], bool] | None,
        session_exists: Callable[[str], bool],
        queue_size: int = DEFAULT_QUEUE_SIZE,
        analytics_prefixes: Iterable[str] = DEFAULT_ANALYTICS_PREFIXES,
        history: TranscriptHistory | None = None,
        close_timeout_s: float = 5.0,
        lag_grace_s: float = 2.0,
        heartbeat_s: float | None = 30.0,
        send_buffer_bytes: int | None = DEFAULT_SEND_BUFFER,
    ) -> None:
        """`verify_token`: None = no auth; else a token from ?token= or `Authorization: Bearer` must verify.
        `session_exists(call_id)`: is there such a live call (a call still in the history counts too).
        `queue_size`: frames waiting per client before it is cut as lagged. `close_timeout_s`: how long a close
        handshake (and close()) may take. `lag_grace_s`: how long a lagged client keeps its connection to read
        the LAGGED frame. `heartbeat_s`: WebSocket ping interval that finds dead peers (None: off).
        `send_buffer_bytes`: per client, the kernel send buffer (SO_SNDBUF) and the write buffer in front of it;
        None leaves the system's (Linux autotunes the kernel's up to 4 MB, all of it held for a client that stops
        reading before its queue even starts to fill)."""
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.queue_size = queue_size
        self.close_timeout_s = close_timeout_s
        self.lag_grace_s = lag_grace_s
        self.heartbeat_s = heartbeat_s
        self.send_buffer_bytes = send_buffer_bytes
        self.history = history if history is not None else TranscriptHistory()
        self.channels = (
            Channel(TRANSCRIPTIONS_PATH, frozenset({"transcript"}) | SESSION_TYPES),
            Channel(ANALYTICS_PATH, SESSION_TYPES, tuple(analytics_prefixes)),
        )
        self._verify_token = verify_token
        self._session_exists = session_exists
        self._audiences = {c.path: Audience() for c in self.channels}
        self._clients: set[WsClient] = set()
        self._no_clients = asyncio.Event()
        self._no_clients.set()
        self._aborts: dict[WsClient, asyncio.TimerHandle] = {}
        self._ids = itertools.count(1)
        self._seq = 0
        self._closed = False
        # counters for stats()
        self.connections = 0
        self.refused: Counter[str] = Counter()
        self.lagged_disconnects = 0
        self.frames_sent = 0
        self.events_received = 0
        self.serialise_errors = 0
        self._subscription = bus.subscribe(self._on_event)

    # --- wiring ----------------------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """GET /ws/transcriptions and GET /ws/analytics; close() runs on the app's shutdown (idempotent)."""
        for channel in self.channels:
            app.router.add_get(channel.path, self._handler(channel), allow_head=False)
        app.on_shutdown.append(self._on_shutdown)

    def stats(self) -> dict[str, Any]:
        return {
            "clients": {path: len(a.members) for path, a in self._audiences.items()},
            "clients_total": len(self._clients),
            "connections_total": self.connections,
            "refused": dict(self.refused),
            "lagged_disconnects": self.lagged_disconnects,
            "frames_sent": self.frames_sent,
            "events_received": self.events_received,
            "serialise_errors": self.serialise_errors,
            "history_calls": len(self.history),
            "queue_size": self.queue_size,
        }

    async def health(self) -> tuple[str, Mapping[str, Any]]:
        """(status, details) as siprec.api.healthchecks expects: unhealthy once closed."""
        if self._closed:
            return "unhealthy", {"error": "closed", "clients": len(self._clients)}
        return "healthy", {
            "clients": len(self._clients),
            "lagged_disconnects": self.lagged_disconnects,
            "history_calls": len(self.history),
        }

    async def close(self) -> None:
        """Stop taking events; every client gets what is queued for it, then close 1001 (going away); a client
        that does not finish within close_timeout_s is aborted. Returns when every client task and handler is done."""
        if not self._closed:
            self._closed = True
            self._subscription.close()
            for client in list(self._clients):
                if not client.closing:
                    client.closing = True
                    client.outbox.close(CloseCode.GOING_AWAY)
        tasks = {c: c.task for c in self._clients if c.task is not None}
        if tasks:
            _, late = await asyncio.wait(tasks.values(), timeout=self.close_timeout_s)
            for client, task in tasks.items():
                if task in late:
                    log.warning("%s did not close in %.1f s: aborting it", client, self.close_timeout_s)
                    task.cancel()
                    self._abort(client)
            if late:
                await asyncio.wait(late)
        for client in list(self._aborts):
            self._abort(client)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.close_timeout_s):
                await self._no_clients.wait()

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.close()

    # --- events in -------------------------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        """The bus callback: serialise once, route, never wait."""
        channels = [c for c in self.channels if c.accepts(event.type)]
        if not channels or self._closed:
            return
        call_id = getattr(event, "call_id", None)
        if not isinstance(call_id, str):
            call_id = None
        try:
            data = event.to_json().encode("utf-8")
        except (TypeError, ValueError) as exc:
            self.serialise_errors += 1
            log.error("ws: cannot serialise %s for call %s: %s", event.type, call_id, exc)
            return
        self._seq += 1
        self.events_received += 1
        frame = EventFrame(self._seq, event.type, call_id, data)
        self.history.record(frame, is_final=getattr(event, "is_final", False) is True)
        for channel in channels:
            for client in self._audiences[channel.path].targets(call_id):
                self._offer(client, data)

    def _offer(self, client: WsClient, item: OutItem) -> None:
        if client.closing:
            return
        if not client.outbox.offer(item):
            self._cut_lagged(client)

    # --- connections -----------------------------------------------------------------------------------------

    def _handler(self, channel: Channel) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, channel)

        return handle

    async def _serve(self, request: web.Request, channel: Channel) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            timeout=self.close_timeout_s,
            heartbeat=self.heartbeat_s,
            compress=False,  # per-client compression would undo the one serialisation per event
            max_msg_size=MAX_CLIENT_MESSAGE,
            decode_text=False,  # bad UTF-8 gets our INVALID_JSON error instead of aiohttp's close 1007
            **({"writer_limit": self.send_buffer_bytes} if self.send_buffer_bytes else {}),
        )
        if not ws.can_prepare(request).ok and "websocket" not in request.headers.get("Upgrade", "").lower():
            raise web.HTTPUpgradeRequired(
                headers={"Upgrade": "websocket", "Connection": "Upgrade"},
                text=f"{channel.path} is a WebSocket endpoint: connect with a WebSocket client",
            )
        await ws.prepare(request)  # a malformed handshake raises 400 here
        self.connections += 1
        if self._closed:
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(self.close_timeout_s):
                    await ws.close(code=CloseCode.GOING_AWAY, message=b"server shutting down")
            return ws
        refusal = self._admission(request)
        if refusal is not None:
            await self._refuse(request, ws, *refusal)
            return ws
        self._limit_buffers(request.transport)
        client = self._register(request, ws, channel)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.ERROR:
                    break
                self._on_message(client, msg.type, msg.data)
        finally:
            self._unregister(client)
            task = client.task
            if task is not None:
                if not client.closing:
                    task.cancel()
                await asyncio.wait([task])
                if client.task is not task:  # lagged meanwhile: wait for the cut too
                    await asyncio.wait([client.task])
            log.info(
                "%s disconnected (%d frames sent, close code %s)", client, client.frames_sent, ws.close_code
            )
        return ws

    def _admission(self, request: web.Request) -> tuple[ErrorCode, str, CloseCode] | None:
        if self._verify_token is not None:
            token = request.query.get("token") or bearer_token(request.headers.get("Authorization"))
            if not token:
                return (
                    ErrorCode.AUTH_REQUIRED,
                    "a token is required: ?token= or Authorization: Bearer",
                    CloseCode.AUTH_FAILED,
                )
            try:
                valid = self._verify_token(token)
            except Exception:
                log.exception("ws: token verification failed")
                valid = False
            if not valid:
                return ErrorCode.INVALID_TOKEN, "the token is invalid or expired", CloseCode.AUTH_FAILED
        call_id = request.query.get("call_id")
        if call_id and not self._known(call_id):
            return (
                ErrorCode.SESSION_NOT_FOUND,
                f"no session with call_id {echo(call_id)}",
                CloseCode.SESSION_NOT_FOUND,
            )
        return None

    async def _refuse(
        self, request: web.Request, ws: web.WebSocketResponse, code: ErrorCode, message: str, close: CloseCode
    ) -> None:
        self.refused[code.value] += 1
        log.info(
            "ws %s from %s refused: %s (%s), close %d",
            request.path,
            request.remote,
            code.value,
            message,
            close,
        )
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(self.close_timeout_s):
                await ws.send_frame(error_frame(code, message), WSMsgType.TEXT)
                await ws.close(code=close, message=code.value.encode())

    def _limit_buffers(self, transport: asyncio.Transport | None) -> None:
        if not self.send_buffer_bytes or transport is None:
            return
        transport.set_write_buffer_limits(high=self.send_buffer_bytes)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer_bytes)

    def _known(self, call_id: str) -> bool:
        if call_id in self.history:
            return True
        try:
            return bool(self._session_exists(call_id))
        except Exception:
            log.exception("ws: session lookup for call %s failed", call_id)
            return False

    def _register(self, request: web.Request, ws: web.WebSocketResponse, channel: Channel) -> WsClient:
        client = WsClient(
            next(self._ids),
            channel,
            ws,
            request.transport,
            request.remote or "?",
            request.query.get("session_id", ""),
            Outbox(self.queue_size),
        )
        self._clients.add(client)
        self._no_clients.clear()
        audience = self._audiences[channel.path]
        audience.members.add(client)
        call_id = request.query.get("call_id")
        if call_id:
            self._subscribe(client, call_id)  # known: checked by _admission, nothing awaited since
        else:
            client.coverage.open(None, self._seq + 1)
            audience.everyone.add(client)
        client.task = asyncio.get_running_loop().create_task(
            self._send_loop(client), name=f"ws-client-{client.id}"
        )
        log.info("%s connected (%s)", client, f"call {call_id}" if call_id else "every call")
        return client

    def _unregister(self, client: WsClient) -> None:
        self._audiences[client.channel.path].remove(client)
        self._clients.discard(client)
        if not self._clients:
            self._no_clients.set()

    # --- client messages -------------------------------------------------------------------------------------

    def _on_message(self, client: WsClient, kind: WSMsgType, data: Any) -> None:
        if kind is WSMsgType.TEXT:
            msg = parse_client_message(data)
        elif kind is WSMsgType.BINARY:
            msg = ProtocolError(
                ErrorCode.INVALID_JSON, "binary frames are not accepted: send JSON in text frames"
            )
        else:
            return
        if isinstance(msg, Heartbeat):
            self._offer(client, pong_frame(time.time()))
        elif isinstance(msg, Subscribe):
            if not self._subscribe(client, msg.call_id):
                self._reply_error(
                    client, ErrorCode.SESSION_NOT_FOUND, f"no session with call_id {echo(msg.call_id)}"
                )
        elif isinstance(msg, Unsubscribe):
            self._unsubscribe(client, msg.call_id)
        else:
            self._reply_error(client, msg.code, msg.message)

    def _reply_error(self, client: WsClient, code: ErrorCode, message: str) -> None:
        client.bad_messages += 1
        if client.bad_messages == 1:  # once per client: a client repeating itself does not flood the log
            log.info("%s: %s %s", client, code.value, message)
        self._offer(client, error_frame(code, message))

    def _subscribe(self, client: WsClient, call_id: str) -> bool:
        """Follow `call_id`, after a replay of what the client has not had of it. False: no such call."""
        if call_id in client.calls:
            return True
        if not self._known(call_id):
            return False
        next_seq = self._seq + 1
        if not client.calls:
            client.coverage.close(None, next_seq)  # leaves every-call mode
        replay = tuple(
            f.data
            for f in self.history.replay(call_id)
            if client.channel.accepts(f.type) and not client.coverage.got(call_id, f.seq)
        )
        client.coverage.open(call_id, next_seq)
        client.calls.add(call_id)
        self._audiences[client.channel.path].follow(client, call_id)
        log.info("%s subscribed to call %s (%d frames replayed)", client, call_id, len(replay))
        if replay:
            self._offer(client, replay)
        return True

    def _unsubscribe(self, client: WsClient, call_id: str | None) -> None:
        if not client.calls:
            return  # every-call mode: nothing to drop
        audience = self._audiences[client.channel.path]
        next_seq = self._seq + 1
        for cid in [call_id] if call_id is not None else list(client.calls):
            if cid in client.calls:
                client.calls.discard(cid)
                client.coverage.close(cid, next_seq)
                audience.unfollow(client, cid)
                log.info("%s unsubscribed from call %s", client, cid)
        if not client.calls:  # the last one: every call again
            client.coverage.open(None, next_seq)
            audience.everyone.add(client)

    # --- frames out ------------------------------------------------------------------------------------------

    async def _send_loop(self, client: WsClient) -> None:
        ws = client.ws
        try:
            while (item := await client.outbox.get()) is not None:
                for data in (item,) if isinstance(item, bytes) else item:
                    await ws.send_frame(data, WSMsgType.TEXT)
                    client.frames_sent += 1
                    self.frames_sent += 1
            code = client.outbox.close_code or CloseCode.NORMAL
            await ws.close(
                code=code, message=b"server shutting down" if code == CloseCode.GOING_AWAY else b""
            )
        except ConnectionError:
            pass  # the peer went away; its handler sees it too

    def _cut_lagged(self, client: WsClient) -> None:
        client.closing = True
        self.lagged_disconnects += 1
        log.warning("%s is not reading: %d frames queued; closing it (LAGGED)", client, len(client.outbox))
        client.outbox.clear()
        self._audiences[client.channel.path].remove(client)
        writer = client.task
        client.task = asyncio.get_running_loop().create_task(
            self._cut(client, writer), name=f"ws-cut-{client.id}"
        )

    async def _cut(self, client: WsClient, writer: asyncio.Task[None] | None) -> None:
        if writer is not None:
            writer.cancel()  # it is blocked on the full socket; what it was writing is already in the buffer
            await asyncio.wait([writer])
        message = f"the client did not read fast enough: more than {self.queue_size} frames were waiting"
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(self.close_timeout_s):
                await client.ws.send_frame(error_frame(ErrorCode.LAGGED, message), WSMsgType.TEXT)
                await client.ws.close(
                    code=CloseCode.LAGGED, message=ErrorCode.LAGGED.value.encode(), drain=False
                )
        # The frames are queued behind everything the client has not read: give it a moment, then drop it.
        if client.transport is not None and not self._closed:
            loop = asyncio.get_running_loop()
            self._aborts[client] = loop.call_later(self.lag_grace_s, self._abort, client)
        else:
            self._abort(client)

    def _abort(self, client: WsClient) -> None:
        handle = self._aborts.pop(client, None)
        if handle is not None:
            handle.cancel()
        transport = client.transport
        # Only while it still holds unsent data (or is open): aborting a transport already gone fails on 3.11.
        if transport is not None and (not transport.is_closing() or transport.get_write_buffer_size()):
            transport.abort()


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
