"""Test databases on both back ends: a SQLite file under tmp_path, or PostgreSQL database `test` with a unique table
prefix (its tables dropped afterwards). PostgreSQL missing -> skip locally, fail under CI=true."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from siprec.store.db import Store, StoreError
from tests.support import require

PG_URL = os.environ.get("SIPREC_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
KINDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Database:
    kind: str
    url: str
    prefix: str

    async def open(self) -> Store:
        try:
            return await Store.open(self.url, prefix=self.prefix)
        except StoreError as exc:
            require(False, f"{self.kind} for the store tests ({exc})")
            raise

    async def cleanup(self) -> None:
        if self.kind != "postgresql":
            return
        store = await asyncio.wait_for(Store.open(self.url, prefix=self.prefix), 10)
        try:
            await store.drop_tables()
        finally:
            await store.close()


async def provide_database(kind: str, tmp_path: Path) -> AsyncIterator[Database]:
    """Body of a `db` fixture: yields the Database, drops the prefixed PostgreSQL tables at the end."""
    if kind == "sqlite":
        yield Database(kind, f"sqlite:///{tmp_path / 'siprec.db'}", "")
        return
    db = Database(kind, PG_URL, f"t{uuid.uuid4().hex[:10]}_")
    try:
        yield db
    finally:
        with contextlib.suppress(StoreError):  # PostgreSQL was never reachable: the test was skipped
            await db.cleanup()


async def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `predicate` (sync, or returning an awaitable) until true; fail with `what` after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
