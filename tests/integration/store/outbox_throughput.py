"""Outbox and AMQP publisher throughput, and how long the event loop is held while they work.

    .venv/bin/python -m tests.integration.store.outbox_throughput [N]

`run()` returns rows {name, value, unit, target} in the bench/ format. Measures, for SQLite (and PostgreSQL and
RabbitMQ when they answer): events committed per second when they arrive in one burst and when they trickle in
one per loop iteration (commits per event show the batching), the worst event-loop lag seen meanwhile (a 5 ms
ticker's lateness: what a SIP/RTP callback would have waited), and bus-to-confirm throughput through RabbitMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from siprec.config import AmqpConfig
from siprec.events.amqp import AmqpPublisher
from siprec.events.bus import EventBus
from siprec.events.outbox import Outbox
from siprec.events.types import TranscriptEvent
from siprec.store.db import Store, StoreError

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def event(i: int) -> TranscriptEvent:
    words = tuple(
        {"text": w, "start": i + k * 0.2, "end": i + k * 0.2 + 0.15, "confidence": 0.9}
        for k, w in enumerate(["so", "I", "would", "like", "to", "ask", "about", "my", "last", "invoice"])
    )
    return TranscriptEvent(
        "call-bench",
        "1",
        "Alice",
        "so I would like to ask about my last invoice",
        True,
        i,
        i + 2.0,
        0.91,
        words,
        "whisper",
        "en-US",
        None,
        (),
        {"session_id": "s", "leg": 0},
    )


class LagProbe:
    """Wall-clock lateness of a 5 ms ticker (`worst`): how long anything, the OS included, kept the loop from a
    timer. `steps` is the longest single loop step per task name in thread CPU time: what our own tasks
    ("outbox-writer", "amqp-publisher", pika's socket callbacks) hold the loop for, apart from the producer."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.worst_gc = 0.0  # a collection pauses whichever step triggers it: reported apart
        self._gc_started = 0.0
        self.steps: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._original = asyncio.events.Handle._run

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, loop.time() - t - 0.005)

    def __enter__(self) -> LagProbe:
        original, steps = self._original, self.steps

        def timed(handle: asyncio.events.Handle) -> None:
            started = time.thread_time()
            original(handle)
            took = time.thread_time() - started
            owner = getattr(handle._callback, "__self__", None)  # type: ignore[attr-defined]
            if isinstance(owner, asyncio.Task):
                name = owner.get_name()
            else:
                name = getattr(handle._callback, "__qualname__", "callback")  # type: ignore[attr-defined]
            steps[name] = max(steps.get(name, 0.0), took)

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.get_running_loop().create_task(self._tick(), name="lag-probe")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.events.Handle._run = self._original  # type: ignore[method-assign]
        gc.callbacks.remove(self._on_gc)
        assert self._task is not None
        self._task.cancel()

    def _on_gc(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.thread_time()
        else:
            self.worst_gc = max(self.worst_gc, time.thread_time() - self._gc_started)

    def rows(self, label: str, tasks: tuple[str, ...] = ("outbox-writer",)) -> list[dict[str, Any]]:
        out = [
            {
                "name": f"{label} loop lateness max (wall)",
                "value": self.worst * 1000,
                "unit": "ms",
                "target": "",
            },
            {
                "name": f"{label} longest GC pause (cpu)",
                "value": self.worst_gc * 1000,
                "unit": "ms",
                "target": "",
            },
        ]
        for task in tasks:
            out.append(
                {
                    "name": f"{label} longest {task} step (cpu)",
                    "value": self.steps.get(task, 0.0) * 1000,
                    "unit": "ms",
                    "target": "< 10",
                }
            )
        return out


async def outbox_rows(label: str, url: str, prefix: str, n: int) -> list[dict[str, Any]]:
    store = await Store.open(url, prefix=prefix)
    rows: list[dict[str, Any]] = []
    try:
        outbox = Outbox(store)
        await outbox.open()
        events = [event(i) for i in range(n)]
        with LagProbe() as lag:
            started = time.perf_counter()
            for i, e in enumerate(events, 1):
                outbox.add(e.routing_key, e)
                if i % 100 == 0:
                    await asyncio.sleep(0)  # a busy publisher: 100 events per loop iteration
            await outbox.flush()
            took = time.perf_counter() - started
        rows.append(
            {"name": f"{label} burst of {n}", "value": n / took, "unit": "events/s", "target": ">= 2000"}
        )
        rows += lag.rows(f"{label} burst")
        bodies = [e.to_json() for e in events]
        started = time.perf_counter()
        for i, body in enumerate(bodies, 1):
            outbox.add("transcript.final", body)
            if i % 100 == 0:
                await asyncio.sleep(0)
        await outbox.flush()
        took = time.perf_counter() - started
        rows.append(
            {
                "name": f"{label} burst, bodies pre-rendered",
                "value": n / took,
                "unit": "events/s",
                "target": "",
            }
        )
        paced = min(n, 3000)
        commits_before = outbox.commits
        with LagProbe() as lag:
            started = time.perf_counter()
            for e in events[:paced]:
                outbox.add(e.routing_key, e)
                await asyncio.sleep(0.001)  # ~1000 events/s offered
            await outbox.flush()
            took = time.perf_counter() - started
        per_commit = paced / (outbox.commits - commits_before)
        rows.append(
            {"name": f"{label} paced: offered rate", "value": paced / took, "unit": "events/s", "target": ""}
        )
        rows.append(
            {"name": f"{label} paced: events per commit", "value": per_commit, "unit": "", "target": "> 1"}
        )
        rows += lag.rows(f"{label} paced")
        await outbox.close()
    finally:
        await store.drop_tables()
        await store.close()
    return rows


async def amqp_rows(url: str, n: int) -> list[dict[str, Any]]:
    exchange = f"siprec.bench.{uuid.uuid4().hex[:8]}"
    store = await Store.open(url)
    bus = EventBus()
    publisher = AmqpPublisher(AmqpConfig(url=AMQP_URL, exchange=exchange), store, bus=bus)
    await publisher.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not publisher.connected:
            if loop.time() > deadline:
                return [
                    {"name": "amqp bus->confirm", "value": "broker not reachable", "unit": "", "target": ""}
                ]
            await asyncio.sleep(0.05)
        events = [event(i) for i in range(n)]
        with LagProbe() as lag:
            started = time.perf_counter()
            for i, e in enumerate(events):
                bus.publish(e)
                if i % 10 == 0:
                    await asyncio.sleep(0)
            while publisher.outbox.depth() > 0:
                await asyncio.sleep(0.005)
            took = time.perf_counter() - started
        return [
            {
                "name": f"amqp sqlite bus->confirmed->deleted ({n})",
                "value": n / took,
                "unit": "events/s",
                "target": ">= 2000",
            },
            *lag.rows(
                "amqp", ("outbox-writer", "amqp-publisher", "_AsyncPlaintextTransport._on_socket_readable")
            ),
        ]
    finally:
        await publisher.stop()
        await store.close()
        with contextlib.suppress(Exception):
            import pika

            conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
            conn.channel().exchange_delete(exchange)
            conn.close()


async def measure(n: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += await outbox_rows("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", "", n)
        try:
            rows += await outbox_rows("postgresql", PG_URL, f"b{uuid.uuid4().hex[:8]}_", n)
        except StoreError as exc:
            rows.append({"name": "postgresql", "value": f"not available ({exc})", "unit": "", "target": ""})
        rows += await amqp_rows(f"sqlite:///{Path(tmp) / 'amqp.db'}", n)
    return rows


def run(n: int = 10_000) -> list[dict[str, Any]]:
    return asyncio.run(measure(n))


if __name__ == "__main__":
    for row in run(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000):
        value = row["value"]
        shown = f"{value:,.1f}" if isinstance(value, float) else str(value)
        print(f"{row['name']:<45} {shown:>12} {row['unit']:<9} {row['target']}")
