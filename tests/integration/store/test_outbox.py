"""Store and outbox on real SQLite files and the real PostgreSQL: tables created, order kept across re-opens, ids never
reused, one transaction per batch, confirmed rows deleted, depth counted."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from siprec.events.backoff import Backoff
from siprec.events.outbox import Outbox
from siprec.events.types import SessionEnded
from siprec.store.db import Store, StoreError, async_url
from tests.integration.store.stores import Database, wait_for

pytestmark = pytest.mark.integration


async def take_all(outbox: Outbox, limit: int = 100) -> list:
    rows = []
    while batch := await outbox.take(limit):
        rows += batch
    return rows


async def count_rows(store: Store) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(store.table("outbox")))).scalar_one())


def test_async_url_maps_user_urls_to_async_drivers() -> None:
    assert async_url("sqlite:///./siprec.db") == "sqlite+aiosqlite:///./siprec.db"
    assert async_url("sqlite:////var/lib/siprec.db") == "sqlite+aiosqlite:////var/lib/siprec.db"
    assert async_url("postgresql://u:p@db/siprec") == "postgresql+asyncpg://u:p@db/siprec"
    assert async_url("postgres://u@db/siprec") == "postgresql+asyncpg://u@db/siprec"
    assert async_url("postgresql+psycopg2://u@db/x") == "postgresql+asyncpg://u@db/x"
    with pytest.raises(StoreError, match="sqlite:/// or postgresql://"):
        async_url("mysql://u:secret@db/x")


async def test_bad_prefix_and_unreachable_database_are_precise_errors(tmp_path) -> None:
    with pytest.raises(StoreError, match="prefix"):
        await Store.open(f"sqlite:///{tmp_path}/x.db", prefix="x; drop table")
    # A closed port: the error names the URL without its password.
    with pytest.raises(StoreError) as info:
        await Store.open("postgresql://siprec:hunter2@127.0.0.1:1/none")
    assert "hunter2" not in str(info.value) and "***" in str(info.value)


async def test_in_memory_sqlite_is_one_shared_database() -> None:
    store = await Store.open("sqlite:///:memory:")
    try:
        outbox = Outbox(store)
        await outbox.open()
        outbox.add("a.b", "{}")
        await outbox.flush(10)
        assert await count_rows(store) == 1
        await outbox.close()
    finally:
        await store.close()


async def test_sqlite_file_in_a_new_directory_is_created(tmp_path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path}/sub/dir/siprec.db")
    await store.close()
    assert (tmp_path / "sub" / "dir" / "siprec.db").is_file()


async def test_tables_created_with_prefix_and_ping(db: Database) -> None:
    store = await db.open()
    try:
        assert store.table("outbox").name == f"{db.prefix}outbox"
        assert await store.ping()
        assert await count_rows(store) == 0
    finally:
        await store.close()


async def test_rows_come_back_in_order_across_reopen_and_ids_are_never_reused(db: Database) -> None:
    store = await db.open()
    outbox = Outbox(store)
    await outbox.open()
    for i in range(250):
        outbox.add("session.ended", SessionEnded(f"call-{i}", "s", "bye", 0.0, 1.0, 1.0))
    await outbox.flush(30)
    assert outbox.depth() == 250
    first = await outbox.take(100)
    assert [json.loads(r.body)["payload"]["call_id"] for r in first] == [f"call-{i}" for i in range(100)]
    outbox.ack(r.id for r in first)
    await outbox.flush(30)
    assert outbox.depth() == 150
    await outbox.close()
    await store.close()

    # "Restart": a new Store and Outbox on the same database hand out the 150 left, in order.
    store = await db.open()
    outbox = Outbox(store)
    await outbox.open()
    try:
        assert outbox.depth() == 150
        rest = await take_all(outbox, 64)
        assert [json.loads(r.body)["payload"]["call_id"] for r in rest] == [
            f"call-{i}" for i in range(100, 250)
        ]
        ids = [r.id for r in first + rest]
        assert ids == sorted(ids) and len(set(ids)) == 250
        outbox.ack(r.id for r in rest)
        await outbox.flush(30)
        assert outbox.depth() == 0 and await count_rows(store) == 0
        # The table is empty now: a new row must still get an id above every id handed out before (message_id dedupe).
        outbox.add("session.ended", "{}")
        await outbox.flush(30)
        (new,) = await outbox.take(10)
        assert new.id > max(ids)
    finally:
        await outbox.close()
        await store.close()


async def test_events_added_in_one_loop_iteration_share_one_transaction(db: Database) -> None:
    store = await db.open()
    outbox = Outbox(store, max_batch=1000)
    await outbox.open()
    try:
        for i in range(1000):
            outbox.add("a.b", json.dumps({"i": i}))
        await outbox.flush(30)
        assert outbox.commits == 1
        assert outbox.inserted == 1000
        # More than max_batch: split into bounded transactions, still in order.
        for i in range(1000, 3500):
            outbox.add("a.b", json.dumps({"i": i}))
        await outbox.flush(30)
        assert outbox.commits == 4
        rows = await take_all(outbox, 700)
        assert [json.loads(r.body)["i"] for r in rows] == list(range(3500))
    finally:
        await outbox.close()
        await store.close()


async def test_reader_behind_the_cache_reads_from_the_table(db: Database) -> None:
    """A reader that falls more than max_cached rows behind gets the rest from the table, in order, once each."""
    store = await db.open()
    outbox = Outbox(store, max_batch=50, max_cached=120)
    await outbox.open()
    try:
        got: list[int] = []
        for i in range(400):
            outbox.add("a.b", json.dumps({"i": i}))
            if i % 90 == 0:
                await outbox.flush(30)
                got += [json.loads(r.body)["i"] for r in await outbox.take(7)]
        await outbox.flush(30)
        got += [json.loads(r.body)["i"] for r in await take_all(outbox, 33)]
        assert got == list(range(400))
        outbox.add("a.b", json.dumps({"i": 400}))
        await outbox.flush(30)
        assert [json.loads(r.body)["i"] for r in await outbox.take(10)] == [400]
    finally:
        await outbox.close()
        await store.close()


async def test_failures_are_counted_per_row_and_acked_rows_deleted(db: Database) -> None:
    store = await db.open()
    outbox = Outbox(store)
    await outbox.open()
    try:
        for i in range(5):
            outbox.add("a.b", str(i))
        await outbox.flush(30)
        rows = await outbox.take(10)
        outbox.record_failures([rows[1].id, rows[2].id])
        outbox.record_failures([rows[2].id])
        await outbox.flush(30)
        outbox.record_failures([rows[2].id])
        outbox.ack([rows[0].id, rows[4].id])
        await outbox.flush(30)
        assert outbox.depth() == 3
        await outbox.close()
        await store.close()
        store = await db.open()
        outbox = Outbox(store)
        await outbox.open()
        left = await outbox.take(10)
        assert [(r.body, r.attempts) for r in left] == [("1", 1), ("2", 2), ("3", 0)]
    finally:
        await outbox.close()
        await store.close()


async def test_add_never_waits_and_pending_is_bounded(tmp_path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path}/b.db")
    outbox = Outbox(store, max_pending=10)
    await outbox.open()
    try:
        accepted = [outbox.add("a.b", str(i)) for i in range(15)]
        assert accepted == [True] * 10 + [False] * 5
        assert outbox.dropped == 5 and outbox.depth() == 10
        await outbox.flush(30)
        assert [r.body for r in await outbox.take(20)] == [str(i) for i in range(10)]
    finally:
        await outbox.close()
        await store.close()


async def test_store_failure_keeps_events_in_order_and_retries(db: Database) -> None:
    """A commit that fails (here the table is gone) is retried with backoff; nothing is lost or reordered."""
    store = await db.open()
    outbox = Outbox(store, retry=Backoff(base_s=0.05, cap_s=0.2))
    await outbox.open()
    try:
        table = store.table("outbox")
        async with store.engine.begin() as conn:
            await conn.run_sync(table.drop)
        outbox.add("a.b", "first")
        outbox.add("a.b", "second")
        await wait_for(lambda: outbox.last_error is not None, 10, "the failed commit to be reported")
        assert "outbox" in outbox.last_error
        outbox.add("a.b", "third")
        assert outbox.depth() == 3
        async with store.engine.begin() as conn:
            await conn.run_sync(store.metadata.create_all)
        assert await outbox.flush(30)
        assert outbox.last_error is None
        assert [r.body for r in await outbox.take(10)] == ["first", "second", "third"]
    finally:
        await outbox.close()
        await store.close()


async def test_instances_sharing_a_store_each_see_their_own_rows(db: Database) -> None:
    """Two instances on one database (PostgreSQL scale-out): each outbox counts, reads and deletes only its own."""
    store = await db.open()
    a, b = Outbox(store, origin="rec1"), Outbox(store, origin="rec2")
    await a.open()
    await b.open()
    try:
        for i in range(3):
            a.add("a.b", f"a{i}")
            b.add("a.b", f"b{i}")
        await a.flush(30)
        await b.flush(30)
        assert [r.body for r in await take_all(a)] == ["a0", "a1", "a2"]
        b_rows = await take_all(b)
        assert [r.body for r in b_rows] == ["b0", "b1", "b2"]
        b.ack(r.id for r in b_rows)
        await b.flush(30)
        assert (a.depth(), b.depth()) == (3, 0)
        await a.close()
        a = Outbox(store, origin="rec1")  # rec1 restarts: its three are still there, rec2's are not counted
        await a.open()
        assert a.depth() == 3 and [r.body for r in await take_all(a)] == ["a0", "a1", "a2"]
    finally:
        await a.close()
        await b.close()
        await store.close()
