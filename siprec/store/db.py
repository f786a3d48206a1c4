"""The store's database: one SQLAlchemy Core async engine, the same code for SQLite (aiosqlite) and PostgreSQL (asyncpg).

`store.url` is given as users write it (`sqlite:///./siprec.db`, `postgresql://user:pass@host/db`, `postgres://...`);
`async_url` maps it onto the async driver. SQLite runs in WAL mode with synchronous=FULL: a committed outbox row
survives a crash of the process and of the machine, and readers never wait for the writer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Table, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from siprec.config import redact_url
from siprec.store.tables import DEFAULT_TABLES, TableBuilder

log = logging.getLogger("siprec.store")

_PREFIX = re.compile(r"[a-z][a-z0-9_]{0,30}\Z")


class StoreError(Exception):
    """The store URL is unusable or the database cannot be opened."""


def async_url(url: str) -> str:
    """The SQLAlchemy URL with the async driver for `url` (any `+driver` given is replaced: only async ones work)."""
    scheme, sep, rest = url.partition("://")
    base = scheme.split("+", 1)[0].lower()
    if not sep:
        raise StoreError(f"store url has no scheme: {redact_url(url)}")
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if base in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    raise StoreError(f"store url must be sqlite:/// or postgresql:// (got {scheme}://)")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=10000", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


class Store:
    """An open database with the tables of `DEFAULT_TABLES` created. Build with `await Store.open(url)`.

    `prefix` prepends every table name (tests share one PostgreSQL database; deployments leave it empty).
    """

    def __init__(
        self, engine: AsyncEngine, metadata: MetaData, tables: dict[str, Table], *, url: str, prefix: str
    ) -> None:
        self.engine = engine
        self.metadata = metadata
        self.tables = tables
        self.url = redact_url(url)
        self.prefix = prefix
        self.dialect = engine.dialect.name  # "sqlite" | "postgresql"

    @classmethod
    async def open(
        cls, url: str, *, prefix: str = "", tables: Iterable[TableBuilder] = DEFAULT_TABLES
    ) -> Store:
        if prefix and not _PREFIX.match(prefix):
            raise StoreError(f"table prefix must match {_PREFIX.pattern}: {prefix!r}")
        target = make_url(async_url(url))
        kwargs: dict[str, Any] = {}
        if target.get_backend_name() == "sqlite":
            database = target.database or ""
            if database in ("", ":memory:"):
                # Every connection to :memory: is a new empty database: share one.
                kwargs["poolclass"] = StaticPool
            else:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        else:
            # asyncpg waits 60 s for a connection by default: too long for /health and start-up.
            kwargs.update(pool_size=5, max_overflow=5, pool_pre_ping=True, connect_args={"timeout": 10})
        engine = create_async_engine(target, **kwargs)
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        metadata = MetaData()
        built = [build(metadata, prefix) for build in tables]
        try:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.create_all, checkfirst=True)
        except (SQLAlchemyError, OSError) as exc:
            await engine.dispose()
            raise StoreError(f"cannot open store {redact_url(url)}: {exc.__class__.__name__}: {exc}") from exc
        store = cls(engine, metadata, {t.name.removeprefix(prefix): t for t in built}, url=url, prefix=prefix)
        log.info("store open", extra={"url": store.url, "dialect": store.dialect, "tables": len(built)})
        return store

    def table(self, name: str) -> Table:
        """A table by its name without the prefix (`store.table("outbox")`)."""
        return self.tables[name]

    async def ping(self) -> bool:
        """True when a trivial query answers (for /health)."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except (SQLAlchemyError, OSError):
            return False

    async def health_check(self) -> tuple[str, dict[str, Any]]:
        """For siprec.api.healthchecks: healthy when the database answers, else unhealthy."""
        details: dict[str, Any] = {"dialect": self.dialect, "url": self.url}
        if await self.ping():
            return "healthy", details
        return "unhealthy", {**details, "error": "the database does not answer"}

    async def drop_tables(self) -> None:
        """Drop this store's tables (tests clean up their prefixed tables in a shared database)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(self.metadata.drop_all, checkfirst=True)

    async def close(self) -> None:
        await self.engine.dispose()
