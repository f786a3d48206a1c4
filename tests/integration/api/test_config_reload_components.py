"""The component appliers of siprec.reload with the real components: a WebhookSender starts posting to a URL (signed
with the secret) that a reload added, and stops posting to one it removed; an AmqpPublisher's publish_* filter
follows a reload (no broker needed: the filter acts before the outbox)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from siprec.appliers import register_components
from siprec.config import Config, load_config
from siprec.events.amqp import AmqpPublisher
from siprec.events.bus import EventBus
from siprec.events.types import SessionEnded, TranscriptEvent
from siprec.events.webhooks import WebhookSender, verify
from siprec.reload import ConfigReloader
from siprec.store.db import Store

pytestmark = pytest.mark.integration


class Receiver:
    """A webhook endpoint on a free loopback port that keeps what it gets."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.headers), await request.read()))
        self.arrived.set()
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rx.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rx.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield rx
    finally:
        await runner.cleanup()


def ended(call_id: str) -> SessionEnded:
    return SessionEnded(
        call_id=call_id, session_id="s", reason="bye", started_at=0.0, ended_at=1.0, duration_s=1.0
    )


def write(path: Path, data: dict[str, Any]) -> Config:
    path.write_text(json.dumps(data), encoding="utf-8")
    return load_config(path, env={})


async def test_webhook_urls_and_secret_follow_a_reload(tmp_path: Path, receiver: Receiver) -> None:
    path = tmp_path / "c.yaml"
    config = write(path, {"webhooks": {"urls": [], "timeout_s": 5}})
    bus = EventBus()
    sender = WebhookSender(config.webhooks, bus=bus)
    await sender.start()
    reloader = ConfigReloader(path, config, env={})
    register_components(reloader, webhook_sender=sender)
    try:
        bus.publish(ended("before"))  # no URL yet: nothing is sent
        write(path, {"webhooks": {"urls": [receiver.url], "secret": "s3cret", "timeout_s": 9}})
        outcome = reloader.reload()
        assert outcome.applied == ["webhooks.secret", "webhooks.urls"]
        assert outcome.restart_required == ["webhooks.timeout_s"]
        bus.publish(ended("after"))
        await asyncio.wait_for(receiver.arrived.wait(), 10)
        headers, body = receiver.got[0]
        assert json.loads(body)["payload"]["call_id"] == "after"
        assert verify("s3cret", headers, body)
        for _ in range(200):  # the delivery task ends just after the receiver answered
            if sender.stats()["pending"] == 0:
                break
            await asyncio.sleep(0.05)
        assert sender.stats()["delivered"] == 1 and sender.stats()["pending"] == 0

        write(path, {"webhooks": {"urls": [], "secret": "s3cret", "timeout_s": 9}})
        assert reloader.reload().applied == ["webhooks.urls"]
        bus.publish(ended("removed"))
        assert sender.stats()["pending"] == 0  # publish() starts no delivery without a URL
        assert sender.stats()["delivered"] == 1 and len(receiver.got) == 1
    finally:
        await sender.stop()


async def test_amqp_publish_filters_follow_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    config = write(path, {"amqp": {"publish_partial_transcripts": True}})
    store = await Store.open(f"sqlite:///{tmp_path / 'siprec.db'}")
    publisher = AmqpPublisher(
        config.amqp, store
    )  # never started: the filter acts before the outbox and the broker
    reloader = ConfigReloader(path, config, env={})
    register_components(reloader, amqp_publisher=publisher)
    assert publisher.wants("transcript.partial")
    write(path, {"amqp": {"publish_partial_transcripts": False, "exchange": "other"}})
    outcome = reloader.reload()
    assert outcome.applied == ["amqp.publish_partial_transcripts"]
    assert outcome.restart_required == ["amqp.exchange"]
    assert not publisher.wants("transcript.partial") and publisher.wants("transcript.final")
    partial = TranscriptEvent(
        call_id="c", stream_label=None, speaker_label=None, text="hel", is_final=False, start=0.0, end=0.4
    )
    publisher.publish(partial)
    assert publisher.filtered == 1
    assert publisher.exchange == "siprec.events"  # restart-required: untouched
    await store.close()
