"""Fixtures of the AMQP tests: the real broker (missing -> skip locally, fail under CI=true), a per-test topology,
and `db` on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.integration.amqp.broker import Topology, broker_reachable, start_broker
from tests.integration.store.stores import KINDS, Database, provide_database
from tests.support import require


@pytest.fixture
def broker() -> Iterator[None]:
    require(broker_reachable(), "RabbitMQ on 127.0.0.1:5672")
    yield
    if not broker_reachable():
        # A test that stopped the broker failed to start it again: do it here so later tests still have one.
        asyncio.run(start_broker())


@pytest.fixture
async def topology(broker: None) -> AsyncIterator[Topology]:
    topo = await asyncio.to_thread(Topology.declare)
    yield topo
    await asyncio.to_thread(topo.delete)


@pytest.fixture(params=KINDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async for value in provide_database(request.param, tmp_path):
        yield value
