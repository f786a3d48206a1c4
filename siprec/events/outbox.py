"""The outbox: events are committed to the store before anything publishes them, and deleted once confirmed.

`add()` never blocks and never touches the database: it appends to a pending list and wakes one writer task. The
writer takes everything pending (events added in the same loop iteration, plus those that arrived while the
previous transaction ran, up to `max_batch`), renders the JSON bodies, and inserts them with the confirmed-row
deletes in ONE transaction: one commit per batch, not per event. Committed rows are handed to the reader in id
order (`take`), from memory while the reader keeps up, from the table when it has fallen behind or after a
restart. Ids come from an autoincrement key, so publish order is insert order across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from siprec.events.backoff import Backoff
from siprec.store.db import Store

log = logging.getLogger("siprec.events.outbox")

DELETE_CHUNK = 500  # ids per DELETE ... IN (...): well under SQLite's and asyncpg's parameter limits
RENDER_SLICE = 32  # bodies rendered between yields to the loop (a transcript's to_json() is ~0.2 ms)


class Renderable(Protocol):
    def to_json(self) -> str: ...


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    routing_key: str
    body: str
    created_at: float
    attempts: int = 0


@dataclass(slots=True)
class _Pending:
    created_at: float
    routing_key: str
    body: str | Renderable


class Outbox:
    """Durable FIFO of events in `store.table("outbox")`. `await open()`, then `add`/`take`/`ack`, `await close()`.

    `on_stored` (if set) is called after each commit that added rows: the reader's cue to `take`.
    `max_pending` bounds the events accepted but not yet committed (a database outage): beyond it `add` refuses
    and counts `dropped`, so memory stays bounded while the store is down.
    `origin` names this instance: each Outbox sees only its own rows. Instances sharing one PostgreSQL store must
    each have a distinct origin that stays the same across their restarts; "" (default) suits one instance.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = 500,
        linger_s: float = 0.0,
        max_pending: int = 100_000,
        max_cached: int = 10_000,
        retry: Backoff | None = None,
        origin: str = "",
    ) -> None:
        self.store = store
        self.origin = origin
        self.table = store.table("outbox")
        self.max_batch = max_batch
        self.linger_s = linger_s
        self.max_pending = max_pending
        self.max_cached = max_cached
        self.on_stored: Callable[[], None] | None = None
        self._retry = retry or Backoff(base_s=0.2, cap_s=5.0)
        self._pending: deque[_Pending] = deque()
        self._acked: set[int] = set()
        self._failed: set[int] = set()
        self._cache: deque[OutboxRow] = deque()  # committed, not yet taken; a prefix of the untaken rows
        self._synced = False  # True: every committed untaken row is in _cache
        self._taken_upto = 0  # highest id handed out by take()
        self._stored = 0  # rows in the table (as of our last commit)
        self._committing = 0  # events taken from _pending by the commit in progress
        self._lock = asyncio.Lock()  # a commit and a table read never interleave (keeps _cache exact)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None
        self.commits = 0
        self.inserted = 0
        self.deleted = 0
        self.dropped = 0
        self.last_error: str | None = None

    # ------------------------------------------------------------------ life cycle

    async def open(self) -> None:
        async with self.store.engine.connect() as conn:
            self._stored = int((await conn.execute(self._count_query())).scalar_one())
        self._writer = asyncio.create_task(self._write_loop(), name="outbox-writer")
        if self._stored:
            log.info("outbox has %d events from before: they are published first", self._stored)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything added or acked so far is committed; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Commit what is pending (within `timeout`), then stop the writer. Uncommitted events are counted as dropped."""
        if self._writer is None:
            return
        await self.flush(timeout)
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        self._writer = None
        if self._pending:
            log.warning("outbox closed with %d events not stored", len(self._pending))
            self.dropped += len(self._pending)
            self._pending.clear()

    # ------------------------------------------------------------------ producer side

    def add(self, routing_key: str, body: str | Renderable) -> bool:
        """Queue an event for the next commit. `body` may be an object with `to_json()`: it is rendered by the
        writer, off the caller's path. Never blocks; False (counted in `dropped`) when `max_pending` is reached."""
        if len(self._pending) >= self.max_pending:
            if self.dropped == 0 or self.dropped % 1000 == 0:
                log.error("outbox: %d events waiting for the store; dropping events", len(self._pending))
            self.dropped += 1
            return False
        self._pending.append(_Pending(time.time(), routing_key, body))
        self._kick()
        return True

    # ------------------------------------------------------------------ reader side

    async def take(self, limit: int) -> list[OutboxRow]:
        """Up to `limit` committed rows after the last taken, in id order; [] when there are none now."""
        async with self._lock:
            if self._cache:
                n = min(limit, len(self._cache))
                rows = [self._cache.popleft() for _ in range(n)]
            elif not self._synced:
                rows = await self._read_after(self._taken_upto, limit)
                if len(rows) < limit:
                    self._synced = True  # the table holds nothing newer: later commits go through _cache
            else:
                return []
            if rows:
                self._taken_upto = rows[-1].id
        return rows

    def ack(self, ids: Iterable[int]) -> None:
        """These rows are confirmed: delete them in the next commit."""
        before = len(self._acked)
        self._acked.update(ids)
        if len(self._acked) != before:
            self._kick()

    def record_failures(self, ids: Iterable[int]) -> None:
        """These rows were published and not confirmed (nack, connection lost): count an attempt on each."""
        before = len(self._failed)
        self._failed.update(ids)
        if len(self._failed) != before:
            self._kick()

    def depth(self) -> int:
        """Events accepted and not yet confirmed (stored rows plus those waiting for the next commit)."""
        return self._stored + self._committing + len(self._pending)

    # ------------------------------------------------------------------ writer

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    async def _write_loop(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Yield once (or linger): events published later in this loop iteration join the same transaction.
            await asyncio.sleep(self.linger_s)
            while self._pending or self._acked or self._failed:
                batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
                acked, self._acked = self._acked, set()
                failed, self._failed = self._failed - acked, set()
                self._committing = len(batch)
                try:
                    await self._commit(batch, acked, failed)
                    error = None
                except asyncio.CancelledError:
                    self._pending.extendleft(reversed(batch))  # close() counts what was never stored
                    raise
                except (SQLAlchemyError, OSError) as exc:
                    # Put everything back in order and retry: nothing is lost while the store is down.
                    self._pending.extendleft(reversed(batch))
                    self._acked |= acked
                    self._failed |= failed
                    error = f"{exc.__class__.__name__}: {exc}"
                finally:
                    self._committing = 0
                if error is not None:
                    failures += 1
                    self.last_error = error
                    if failures == 1:
                        log.error("outbox: store write failed, retrying: %s", error)
                    await asyncio.sleep(self._retry.delay(failures))
                    continue
                if failures:
                    log.info("outbox: store writes work again after %d failures", failures)
                    failures = 0
                    self.last_error = None
            if not self._wake.is_set():
                self._idle.set()

    async def _commit(self, batch: list[_Pending], acked: set[int], failed: set[int]) -> None:
        t = self.table
        values: list[dict[str, Any]] = []
        for i, p in enumerate(batch, 1):
            body = p.body if isinstance(p.body, str) else p.body.to_json()
            values.append(
                {
                    "origin": self.origin,
                    "created_at": p.created_at,
                    "routing_key": p.routing_key,
                    "body": body,
                    "attempts": 0,
                }
            )
            if i % RENDER_SLICE == 0:
                # Rendering is CPU work on the loop thread: let SIP and RTP run between slices.
                await asyncio.sleep(0)
        async with self._lock:
            deleted = 0
            async with self.store.engine.begin() as conn:
                if failed:
                    await conn.execute(
                        update(t).where(t.c.id.in_(sorted(failed))).values(attempts=t.c.attempts + 1)
                    )
                ids_done = sorted(acked)
                for i in range(0, len(ids_done), DELETE_CHUNK):
                    result = await conn.execute(delete(t).where(t.c.id.in_(ids_done[i : i + DELETE_CHUNK])))
                    deleted += result.rowcount
                ids = await self._insert(conn, values) if values else []
            self.commits += 1
            self.inserted += len(ids)
            self.deleted += deleted
            self._stored += len(ids) - deleted
            if not ids:
                return
            rows = [
                OutboxRow(i, v["routing_key"], v["body"], v["created_at"])
                for i, v in zip(ids, values, strict=True)
            ]
            if self._synced and len(self._cache) + len(rows) <= self.max_cached:
                self._cache.extend(rows)
            else:
                self._synced = False  # the reader reads these back from the table when it gets there
        if self.on_stored is not None:
            self.on_stored()

    async def _insert(self, conn: AsyncConnection, values: list[dict[str, Any]]) -> list[int]:
        """Insert in the given order; the ids, in the same order."""
        t = self.table
        if self.store.dialect == "sqlite":
            # SQLAlchemy can only return SQLite ids in parameter order by inserting row by row (10x slower). A
            # plain executemany inserts the rows in order, and from its first row this transaction holds SQLite's
            # single write lock: AUTOINCREMENT gives them consecutive ids ending at max(id).
            await conn.execute(insert(t), values)
            last = int((await conn.execute(select(func.max(t.c.id)))).scalar_one())
            return list(range(last - len(values) + 1, last + 1))
        result = await conn.execute(insert(t).returning(t.c.id, sort_by_parameter_order=True), values)
        return list(result.scalars())

    def _count_query(self) -> Select[tuple[int]]:
        return select(func.count()).select_from(self.table).where(self.table.c.origin == self.origin)

    async def _read_after(self, after_id: int, limit: int) -> list[OutboxRow]:
        t = self.table
        query = select(t.c.id, t.c.routing_key, t.c.body, t.c.created_at, t.c.attempts).where(
            t.c.origin == self.origin, t.c.id > after_id
        )
        async with self.store.engine.connect() as conn:
            result = await conn.execute(query.order_by(t.c.id).limit(limit))
            return [OutboxRow(r.id, r.routing_key, r.body, r.created_at, r.attempts) for r in result]
