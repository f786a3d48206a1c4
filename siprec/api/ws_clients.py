"""The hub's bookkeeping of connected clients: the paths (Channel), each client's bounded outbox, and the index of
who follows which call (Audience). No I/O besides the outbox's wait; the hub (siprec.api.ws) drives them."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web

from siprec.api.ws_history import Coverage

# One frame, or a replay: one outbox slot, its length bounded by the history.
OutItem = bytes | tuple[bytes, ...]


@dataclass(frozen=True)
class Channel:
    """One WebSocket path and the event types it carries (exact names, or name prefixes)."""

    path: str
    types: frozenset[str]
    prefixes: tuple[str, ...] = ()

    def accepts(self, event_type: str) -> bool:
        return event_type in self.types or event_type.startswith(self.prefixes)


class Outbox:
    """A client's bounded queue of frames to write. `close(code)`: the writer sends what is queued, then closes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.close_code: int | None = None
        self._items: deque[OutItem] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: OutItem) -> bool:
        if len(self._items) >= self.limit:
            return False
        self._items.append(item)
        self._wake()
        return True

    def clear(self) -> None:
        self._items.clear()

    def close(self, code: int) -> None:
        self.close_code = code
        self._wake()

    async def get(self) -> OutItem | None:
        """The next item; None once closed and empty."""
        while not self._items:
            if self.close_code is not None:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


@dataclass(eq=False)
class WsClient:
    id: int
    channel: Channel
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    peer: str
    label: str  # ?session_id= (IZI's name for the client's own session), for logs
    outbox: Outbox
    calls: set[str] = field(default_factory=set)  # subscribed calls; empty: every call
    coverage: Coverage = field(default_factory=Coverage)  # what it got live, left out of replays
    task: asyncio.Task[None] | None = None  # the writer; after a lag, the task cutting the client
    closing: bool = False  # the hub is closing it (lag or shutdown): `task` owns the close
    frames_sent: int = 0
    bad_messages: int = 0

    def __str__(self) -> str:
        label = f" {self.label}" if self.label else ""
        return f"ws client {self.id}{label} ({self.channel.path} from {self.peer})"


@dataclass
class Audience:
    """The clients of one path, indexed so that an event reaches only those that want it."""

    members: set[WsClient] = field(default_factory=set)
    everyone: set[WsClient] = field(default_factory=set)  # every-call mode
    by_call: dict[str, set[WsClient]] = field(default_factory=dict)

    def targets(self, call_id: str | None) -> Iterator[WsClient]:
        if call_id is None:
            yield from list(self.members)
            return
        yield from list(self.everyone)
        yield from list(self.by_call.get(call_id, ()))

    def follow(self, client: WsClient, call_id: str) -> None:
        self.everyone.discard(client)
        self.by_call.setdefault(call_id, set()).add(client)

    def unfollow(self, client: WsClient, call_id: str) -> None:
        followers = self.by_call.get(call_id)
        if followers is not None:
            followers.discard(client)
            if not followers:
                del self.by_call[call_id]

    def remove(self, client: WsClient) -> None:
        self.members.discard(client)
        self.everyone.discard(client)
        for call_id in client.calls:
            self.unfollow(client, call_id)
