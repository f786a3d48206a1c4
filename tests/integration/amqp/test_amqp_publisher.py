"""AmqpPublisher against the real RabbitMQ: what a consumer of a queue bound to the exchange receives (routing keys,
properties, bodies equal to the WebSocket frames), the publish_* filters, and nothing lost or reordered across a
broker stop/start in the middle of 200 events or a SIGKILL of our process with a non-empty outbox.

Delivery is at-least-once on the wire: a message whose confirm was lost with the connection is sent again. The
tests check what a consumer deduping on message_id (the outbox id) processes: every event exactly once, in order;
they also print how many raw duplicates the broker restart produced.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import ClassVar

import pytest

from siprec.config import AmqpConfig
from siprec.events.amqp import AmqpPublisher
from siprec.events.backoff import Backoff
from siprec.events.bus import EventBus
from siprec.events.types import Event, SessionEnded, SessionStarted, TranscriptEvent
from siprec.store.db import Store
from tests.integration.amqp.broker import (
    AMQP_URL,
    Received,
    TcpProxy,
    Topology,
    broker_stopped,
    dedupe,
    rabbitmqctl_available,
)
from tests.integration.store.stores import Database, wait_for
from tests.support import REPO, require

pytestmark = pytest.mark.integration

FAST_RECONNECT = Backoff(base_s=0.2, cap_s=2.0)


@dataclass(frozen=True)
class SentimentUpdate(Event):
    type: ClassVar[str] = "sentiment_update"
    call_id: str
    score: float


@dataclass(frozen=True)
class KeywordDetected(Event):
    type: ClassVar[str] = "keyword_detected"
    call_id: str
    keyword: str


@dataclass(frozen=True)
class SpeakerChanged(Event):
    type: ClassVar[str] = "speaker_changed"
    call_id: str
    speaker: str


def numbered(i: int) -> SessionEnded:
    return SessionEnded(f"call-{i}", f"sess-{i}", "bye", 1700000000.0 + i, 1700000010.0 + i, 10.0)


def transcript(text: str, final: bool) -> TranscriptEvent:
    return TranscriptEvent(
        "call-t",
        "1",
        "Alice",
        text,
        final,
        0.5,
        1.5,
        0.9,
        ({"text": text, "start": 0.5, "end": 1.5, "confidence": 0.9},),
    )


async def drain(topology: Topology) -> list[Received]:
    return await asyncio.to_thread(topology.drain)


async def settle(publisher: AmqpPublisher, timeout: float = 60.0) -> None:
    """Wait until every event handed to the publisher is confirmed and deleted from the outbox."""
    await wait_for(
        lambda: publisher.connected and publisher.outbox.depth() == 0,
        timeout,
        f"outbox empty ({publisher.stats()})",
    )


def assert_exactly_once_in_order(received: list[Received], n: int) -> None:
    firsts = dedupe(received)
    call_ids = [m.frame["payload"]["call_id"] for m in firsts]
    missing = sorted(set(range(n)) - {int(c.split("-")[1]) for c in call_ids})
    assert not missing, f"events never delivered: {missing}"
    assert call_ids == [f"call-{i}" for i in range(n)], "events out of order after dedupe by message_id"
    ids = [int(m.properties.message_id) for m in firsts]
    assert ids == sorted(ids)
    # Same message_id, same body: a re-send is a copy, never a different event under a reused id.
    by_id = {m.properties.message_id: m.body for m in firsts}
    assert all(by_id[m.properties.message_id] == m.body for m in received)


async def test_events_arrive_with_routing_keys_properties_and_frames(topology: Topology, tmp_path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path}/siprec.db")
    bus = EventBus()
    publisher = AmqpPublisher(AmqpConfig(url=AMQP_URL, exchange=topology.exchange), store, bus=bus)
    await publisher.start()
    events: list[Event] = [
        SessionStarted("call-t", "sess-t", 1700000000.0, True),
        transcript("hello", final=False),
        transcript("hello world", final=True),
        SessionEnded("call-t", "sess-t", "bye", 1700000000.0, 1700000012.5, 12.5),
    ]
    try:
        for event in events:
            bus.publish(event)
        await settle(publisher)
        assert publisher.health()["status"] == "healthy"
    finally:
        await publisher.stop()
        await store.close()
    received = await drain(topology)
    assert [m.routing_key for m in received] == [
        "session.started",
        "transcript.partial",
        "transcript.final",
        "session.ended",
    ]
    assert [m.body.decode() for m in received] == [e.to_json() for e in events]
    for m in received:
        p = m.properties
        assert p.content_type == "application/json"
        assert p.content_encoding == "utf-8"
        assert p.delivery_mode == 2
        assert p.app_id == "siprec"
        assert p.type == m.routing_key
        assert abs(p.timestamp - time.time()) < 600
    ids = [int(m.properties.message_id) for m in received]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    stats = publisher.stats()
    assert stats["published"] == stats["confirmed"] == 4
    assert stats["outbox_depth"] == 0 and stats["nacked"] == 0 and not stats["connected"]


async def test_publish_filters_drop_events_before_the_outbox(topology: Topology, tmp_path) -> None:
    config = AmqpConfig(
        url=AMQP_URL,
        exchange=topology.exchange,
        publish_partial_transcripts=False,
        publish_final_transcripts=True,
        publish_sentiment_updates=False,
        publish_keyword_detections=True,
        publish_speaker_changes=False,
    )
    store = await Store.open(f"sqlite:///{tmp_path}/siprec.db")
    bus = EventBus()
    publisher = AmqpPublisher(config, store, bus=bus)
    await publisher.start()
    try:
        for event in (
            transcript("par", final=False),
            transcript("fin", final=True),
            SentimentUpdate("call-t", -0.4),
            KeywordDetected("call-t", "refund"),
            SpeakerChanged("call-t", "Bob"),
            numbered(0),
        ):
            bus.publish(event)
        await settle(publisher)
        assert publisher.outbox.inserted == 3, "filtered events must not be stored"
    finally:
        await publisher.stop()
        await store.close()
    received = await drain(topology)
    assert [m.routing_key for m in received] == ["transcript.final", "keyword.detected", "session.ended"]
    assert publisher.stats()["filtered"] == 3


async def test_unusable_exchange_is_reported_not_fatal(broker: None, tmp_path) -> None:
    """An exchange that exists with another type: the declare fails (406), health says why, events stay stored."""
    topo = await asyncio.to_thread(Topology.declare)
    await asyncio.to_thread(topo.delete)
    import pika

    def declare_direct() -> None:
        conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        conn.channel().exchange_declare(topo.exchange, exchange_type="direct", durable=True)
        conn.close()

    await asyncio.to_thread(declare_direct)
    store = await Store.open(f"sqlite:///{tmp_path}/siprec.db")
    publisher = AmqpPublisher(
        AmqpConfig(url=AMQP_URL, exchange=topo.exchange), store, reconnect=FAST_RECONNECT
    )
    await publisher.start()
    try:
        publisher.publish(numbered(0))
        await wait_for(lambda: publisher.last_error is not None, 20, "the failed declare to be reported")
        health = publisher.health()
        assert health["status"] == "degraded" and not health["connected"]
        assert "PRECONDITION_FAILED" in health["error"]
        await publisher.outbox.flush(10)
        assert publisher.outbox.depth() == 1
    finally:
        await publisher.stop(timeout=1)
        await store.close()
        await asyncio.to_thread(topo.delete)


async def test_refused_messages_are_sent_again_in_order(broker: None, tmp_path) -> None:
    """A queue limited to 5 messages with x-overflow=reject-publish: RabbitMQ nacks what does not fit. The
    publisher holds back (degraded), sends the refused ones again with backoff, and once a consumer makes room all
    12 arrive, once each and in order."""
    import pika

    topo = await asyncio.to_thread(Topology.declare)
    await asyncio.to_thread(topo.delete)

    def declare_limited() -> None:
        conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        ch = conn.channel()
        ch.exchange_declare(topo.exchange, exchange_type="topic", durable=True)
        ch.queue_declare(
            topo.queue, durable=True, arguments={"x-max-length": 5, "x-overflow": "reject-publish"}
        )
        ch.queue_bind(topo.queue, topo.exchange, routing_key="#")
        conn.close()

    await asyncio.to_thread(declare_limited)
    store = await Store.open(f"sqlite:///{tmp_path}/siprec.db")
    publisher = AmqpPublisher(
        AmqpConfig(url=AMQP_URL, exchange=topo.exchange), store, reconnect=Backoff(base_s=0.1, cap_s=0.5)
    )
    await publisher.start()
    received: list[Received] = []
    try:
        for i in range(12):
            publisher.publish(numbered(i))
        await wait_for(lambda: publisher.nacked >= 7, 20, "the refusals")
        health = publisher.health()
        assert health["status"] == "degraded" and "Basic.Nack" in health["error"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len(received) < 12:  # a slow consumer: whatever fits, read, repeat
            assert loop.time() < deadline, f"only {len(received)} of 12 received: {publisher.stats()}"
            received += await drain(topo)
            await asyncio.sleep(0.05)
        await settle(publisher)
        assert publisher.health()["status"] == "healthy"
    finally:
        await publisher.stop()
        await store.close()
        await asyncio.to_thread(topo.delete)
    assert [m.frame["payload"]["call_id"] for m in received] == [f"call-{i}" for i in range(12)]
    assert publisher.stats()["confirmed"] == 12


async def test_stop_during_a_hanging_handshake_is_prompt(tmp_path) -> None:
    """A peer that accepts TCP and never speaks AMQP: the publisher keeps events in the outbox, reports degraded,
    and stop() returns at once without leaving the socket open."""
    accepted: list[asyncio.StreamWriter] = []
    closed_by_us = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        while await reader.read(4096):  # the AMQP header arrives and is never answered
            pass
        closed_by_us.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = await Store.open(f"sqlite:///{tmp_path}/siprec.db")
    publisher = AmqpPublisher(AmqpConfig(url=f"amqp://guest:guest@127.0.0.1:{port}/"), store)
    await publisher.start()
    try:
        publisher.publish(numbered(0))
        await wait_for(lambda: accepted, 10, "the TCP connection")
        await publisher.outbox.flush(10)
        assert publisher.health()["status"] == "degraded" and publisher.outbox.depth() == 1
        started = time.monotonic()
        await publisher.stop(timeout=1.0)
        assert time.monotonic() - started < 5
        await asyncio.wait_for(closed_by_us.wait(), 5)  # the peer read EOF: our socket is closed
    finally:
        server.close()
        for w in accepted:
            w.close()
        await server.wait_closed()
        await store.close()
    assert publisher.outbox.depth() == 1  # kept for the next start


async def test_broker_stop_and_start_in_the_middle_of_200_events(topology: Topology, db: Database) -> None:
    require(rabbitmqctl_available(), "rabbitmqctl (to stop and start the broker)")
    store = await db.open()
    bus = EventBus()
    config = AmqpConfig(url=AMQP_URL, exchange=topology.exchange)
    publisher = AmqpPublisher(config, store, bus=bus, reconnect=FAST_RECONNECT)
    await publisher.start()
    try:
        await wait_for(lambda: publisher.connected, 20, "the first connection")

        async def emit(first: int, last: int) -> None:
            for i in range(first, last):
                bus.publish(numbered(i))
                await asyncio.sleep(0.01)

        await emit(0, 60)
        await wait_for(lambda: publisher.confirmed >= 30, 20, "some confirms before the broker stops")
        async with broker_stopped():
            # Events keep coming while the broker goes down and is down.
            await asyncio.gather(
                emit(60, 140), wait_for(lambda: not publisher.connected, 30, "the connection loss")
            )
            assert publisher.health()["status"] == "degraded"
        await emit(140, 200)
        await settle(publisher)
        stats = publisher.stats()
        assert stats["reconnects"] >= 1
        assert stats["confirmed"] >= 200
    finally:
        await publisher.stop()
        await store.close()
    received = await drain(topology)
    assert_exactly_once_in_order(received, 200)
    print(
        f"\n[{db.kind}] broker restart: {len(received)} messages received for 200 events, {publisher.stats()}"
    )


async def test_connection_cut_with_unconfirmed_messages_resends_them(
    topology: Topology, db: Database
) -> None:
    """The network drops (RST) while 60 messages are in the queue but their confirms have not come back: they are
    sent again after the reconnect. The consumer sees those duplicates on the wire and, after dedupe by
    message_id, every event once and in order."""
    proxy = TcpProxy()
    await proxy.start()
    store = await db.open()
    bus = EventBus()
    publisher = AmqpPublisher(
        AmqpConfig(url=proxy.url, exchange=topology.exchange), store, bus=bus, reconnect=FAST_RECONNECT
    )
    await publisher.start()
    try:
        await wait_for(lambda: publisher.connected, 20, "the first connection")
        for i in range(60):
            bus.publish(numbered(i))
        await settle(publisher)
        proxy.set_hold_replies(True)
        for i in range(60, 120):
            bus.publish(numbered(i))
        # The messages reach the broker; only their confirms are held back.
        await wait_for(
            lambda: asyncio.to_thread(lambda: topology.message_count() >= 120), 30, "120 in the queue"
        )
        assert publisher.confirmed == 60 and publisher.stats()["in_flight"] == 60
        proxy.refuse = True
        proxy.cut()
        proxy.set_hold_replies(False)
        await wait_for(lambda: not publisher.connected, 20, "the connection loss to be noticed")
        for i in range(120, 160):
            bus.publish(numbered(i))
        proxy.refuse = False
        for i in range(160, 200):
            bus.publish(numbered(i))
        await settle(publisher)
        stats = publisher.stats()
        assert stats["reconnects"] == 1 and stats["resent"] == 60 and stats["confirmed"] == 200
    finally:
        await publisher.stop()
        await store.close()
        await proxy.close()
    received = await drain(topology)
    assert len(received) == 260, "the 60 unconfirmed messages are on the wire twice"
    assert_exactly_once_in_order(received, 200)


async def test_killed_process_leaves_outbox_that_the_next_one_delivers(
    topology: Topology, db: Database
) -> None:
    """A child process publishes 100 events (confirmed), stores 100 more and is SIGKILLed at once; a new publisher
    on the same store delivers the rest: all 200 exactly once (after dedupe) and in order."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.amqp.outbox_child",
        db.url,
        db.prefix,
        topology.exchange,
        AMQP_URL,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == -signal.SIGKILL, (
        f"child exited {proc.returncode}: {out.decode()} {err.decode()[-2000:]}"
    )
    assert b"stored 200" in out, out.decode()
    store = await db.open()
    publisher = AmqpPublisher(AmqpConfig(url=AMQP_URL, exchange=topology.exchange), store)
    await publisher.start()
    try:
        left = publisher.outbox.depth()
        assert 0 < left <= 100, f"the child confirmed the first 100 before it was killed; {left} left"
        await settle(publisher)
    finally:
        await publisher.stop()
        await store.close()
    received = await drain(topology)
    assert_exactly_once_in_order(received, 200)
    print(
        f"\n[{db.kind}] after SIGKILL: {left} events left, {len(received)} messages received for 200 events"
    )
