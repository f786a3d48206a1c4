"""The real RabbitMQ on 127.0.0.1:5672 for the AMQP tests: reachability, a per-test exchange and durable queue,
draining the queue, and stopping/starting the broker with rabbitmqctl (always started again)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pika

AMQP_URL = os.environ.get("SIPREC_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
BROKER_ADDR = ("127.0.0.1", 5672)
RABBITMQCTL_TIMEOUT_S = 60


def broker_reachable() -> bool:
    try:
        with socket.create_connection(BROKER_ADDR, timeout=2):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Received:
    routing_key: str
    properties: Any  # pika.BasicProperties
    body: bytes

    @property
    def frame(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass(frozen=True)
class Topology:
    """A durable topic exchange and a durable queue bound to it with '#', both unique to one test."""

    exchange: str
    queue: str

    @classmethod
    def declare(cls) -> Topology:
        name = f"siprec.test.{uuid.uuid4().hex[:12]}"
        topo = cls(name, name)
        with _channel() as ch:
            ch.exchange_declare(topo.exchange, exchange_type="topic", durable=True)
            ch.queue_declare(topo.queue, durable=True)
            ch.queue_bind(topo.queue, topo.exchange, routing_key="#")
        return topo

    def delete(self) -> None:
        with _channel() as ch:
            ch.queue_delete(self.queue)
            ch.exchange_delete(self.exchange)

    def drain(self) -> list[Received]:
        """Every message now in the queue, acknowledged (blocking: call through asyncio.to_thread)."""
        out: list[Received] = []
        with _channel() as ch:
            while True:
                method, properties, body = ch.basic_get(self.queue, auto_ack=True)
                if method is None:
                    return out
                out.append(Received(method.routing_key, properties, body))

    def message_count(self) -> int:
        with _channel() as ch:
            return int(ch.queue_declare(self.queue, passive=True).method.message_count)


class _channel:
    def __enter__(self) -> Any:
        self.conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        return self.conn.channel()

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def dedupe(messages: list[Received]) -> list[Received]:
    """What a consumer that drops message_ids it has seen processes: first copies, in arrival order."""
    seen: set[str] = set()
    out = []
    for m in messages:
        if m.properties.message_id not in seen:
            seen.add(m.properties.message_id)
            out.append(m)
    return out


def rabbitmqctl_available() -> bool:
    return shutil.which("rabbitmqctl") is not None


async def rabbitmqctl(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), RABBITMQCTL_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(
            f"rabbitmqctl {' '.join(args)} did not finish in {RABBITMQCTL_TIMEOUT_S} s"
        ) from None
    if proc.returncode != 0:
        raise AssertionError(
            f"rabbitmqctl {' '.join(args)} failed ({proc.returncode}): {out.decode(errors='replace')}"
        )


async def start_broker() -> None:
    await rabbitmqctl("start_app")
    await rabbitmqctl("await_startup")


@asynccontextmanager
async def broker_stopped() -> AsyncIterator[None]:
    """`rabbitmqctl stop_app` for the body; the broker is started again on the way out, whatever happened."""
    try:
        await rabbitmqctl("stop_app")
        yield
    finally:
        await start_broker()


class TcpProxy:
    """A TCP relay on 127.0.0.1 between the publisher and the broker that a test can misbehave with: hold the
    broker's replies (confirms stop arriving while messages still reach the queue), cut every connection abruptly
    (RST, no AMQP close), and refuse new connections."""

    def __init__(self, target: tuple[str, int] = BROKER_ADDR) -> None:
        self.target = target
        self.hold_replies = False
        self.refuse = False
        self._server: asyncio.base_events.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._held = asyncio.Event()
        self._held.set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"amqp://guest:guest@127.0.0.1:{port}/"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    def set_hold_replies(self, hold: bool) -> None:
        self.hold_replies = hold
        if hold:
            self._held.clear()
        else:
            self._held.set()

    def cut(self) -> None:
        for client, upstream in list(self._pairs):
            for w in (client, upstream):
                w.transport.abort()
        self._pairs.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        for coro in (self._pipe(reader, up_writer, False), self._pipe(up_reader, writer, True)):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, replies: bool) -> None:
        try:
            while data := await reader.read(65536):
                if replies:
                    await self._held.wait()
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()
