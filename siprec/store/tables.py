"""Table definitions of the store, one builder function per table.

A builder takes the store's `MetaData` and its table-name prefix and returns the `Table`; `Store.open` builds every
builder in `DEFAULT_TABLES` and creates what is missing. A later table (sessions, transcripts, jobs) is a builder in
its own module, added to `DEFAULT_TABLES`. Types are chosen to mean the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text

TableBuilder = Callable[[MetaData, str], Table]

# SQLite only makes INTEGER PRIMARY KEY an alias of the rowid, and only AUTOINCREMENT stops it from reusing the id
# of a deleted last row: outbox ids are AMQP message ids that consumers dedupe on, so they must never repeat.
Id = BigInteger().with_variant(Integer(), "sqlite")


def outbox_table(metadata: MetaData, prefix: str) -> Table:
    """Events stored before they are published (id order = publish order); a row is deleted when confirmed.
    `origin` names the instance that stored it: instances sharing one PostgreSQL store each publish their own."""
    name = f"{prefix}outbox"
    return Table(
        name,
        metadata,
        Column("id", Id, primary_key=True, autoincrement=True),
        Column("origin", String(255), nullable=False, default=""),
        Column("created_at", Float, nullable=False),  # Unix time the event was accepted
        Column("routing_key", String(255), nullable=False),
        Column("body", Text, nullable=False),  # the event's JSON frame
        Column("attempts", Integer, nullable=False, default=0),  # publishes that were not confirmed
        Index(f"{name}_origin_id", "origin", "id"),
        sqlite_autoincrement=True,
    )


DEFAULT_TABLES: tuple[TableBuilder, ...] = (outbox_table,)
