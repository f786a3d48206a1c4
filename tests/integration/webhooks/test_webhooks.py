"""WebhookSender against a real aiohttp server on 127.0.0.1: signed POSTs of session_ended and recording_ready,
retries after 503/429/time-outs/refused connections, giving up after max_retries, no retry on 400, bounded
concurrency, and a stop that does not hang on retries."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from siprec.config import WebhooksConfig
from siprec.events.backoff import Backoff
from siprec.events.bus import EventBus
from siprec.events.types import RecordingReady, SessionEnded, SessionStarted
from siprec.events.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookSender,
    verify,
)
from tests.integration.store.stores import wait_for

pytestmark = pytest.mark.integration

SECRET = "s3cret-for-tests"
FAST = Backoff(base_s=0.05, cap_s=0.2)


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """An HTTP endpoint that records every request and answers with the next scripted status (then 200)."""

    url: str = ""
    script: list[int | Callable[[], object]] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    gate: asyncio.Event | None = None  # when set: requests wait on it (concurrency test)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.hits.append(Hit(dict(request.headers), body, time.time()))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.gate is not None:
                await self.gate.wait()
            step = self.script.pop(0) if self.script else 200
            if callable(step):
                return await step()  # type: ignore[no-any-return, misc]
            headers = {"Retry-After": "0"} if step == 429 else {}
            return web.Response(status=step, text="answer", headers=headers)
        finally:
            self.active -= 1


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}/hook"
    yield rec
    await runner.cleanup()


def ended(n: int = 0) -> SessionEnded:
    return SessionEnded(f"call-{n}", f"sess-{n}", "bye", 1700000000.0, 1700000042.0, 42.0)


async def running(config: WebhooksConfig, bus: EventBus, **kwargs: object) -> WebhookSender:
    sender = WebhookSender(config, bus=bus, retry=FAST, **kwargs)  # type: ignore[arg-type]
    await sender.start()
    return sender


async def test_signed_post_of_session_ended_and_recording_ready(receiver: Receiver) -> None:
    bus = EventBus()
    sender = await running(WebhooksConfig(urls=[receiver.url], secret=SECRET), bus)
    ready = RecordingReady(
        "call-0", "sess-0", "/rec/2024-01-01/call-0", "/rec/2024-01-01/call-0/manifest.json"
    )
    try:
        bus.publish(SessionStarted("call-0", "sess-0", 1700000000.0, True))  # not a webhook event
        bus.publish(ended())
        bus.publish(ready)
        await wait_for(lambda: sender.stats()["delivered"] == 2, 10, "two deliveries")
    finally:
        await sender.stop()
    assert len(receiver.hits) == 2
    by_type = {h.headers[EVENT_HEADER]: h for h in receiver.hits}
    assert set(by_type) == {"session_ended", "recording_ready"}
    for event in (ended(), ready):
        hit = by_type[event.type]
        assert hit.body == event.to_json().encode()
        assert json.loads(hit.body)["type"] == event.type
        assert hit.headers["Content-Type"] == "application/json"
        assert hit.headers["User-Agent"].startswith("siprec/")
        assert abs(int(hit.headers[TIMESTAMP_HEADER]) - hit.at) < 60
        uuid.UUID(hit.headers[DELIVERY_HEADER])
        assert hit.headers[SIGNATURE_HEADER].startswith("sha256=")
        assert verify(SECRET, hit.headers, hit.body)
        assert not verify("other-secret", hit.headers, hit.body)
        assert not verify(SECRET, hit.headers, hit.body.replace(b"call-0", b"call-1"))
        assert not verify(SECRET, {**hit.headers, EVENT_HEADER: "session_started"}, hit.body)
        assert not verify(SECRET, hit.headers, hit.body, now=hit.at + 3600)  # a replay an hour later


async def test_unsigned_without_secret(receiver: Receiver) -> None:
    bus = EventBus()
    sender = await running(WebhooksConfig(urls=[receiver.url]), bus)
    try:
        bus.publish(ended())
        await wait_for(lambda: sender.delivered == 1, 10, "the delivery")
    finally:
        await sender.stop()
    assert SIGNATURE_HEADER not in receiver.hits[0].headers


async def test_retried_after_503_then_delivered_with_the_same_delivery_id(receiver: Receiver) -> None:
    receiver.script = [503, 429]
    bus = EventBus()
    sender = await running(WebhooksConfig(urls=[receiver.url], secret=SECRET, max_retries=5), bus)
    try:
        bus.publish(ended())
        await wait_for(lambda: sender.delivered == 1, 10, "delivery after 503 and 429")
    finally:
        await sender.stop()
    assert len(receiver.hits) == 3
    assert len({h.headers[DELIVERY_HEADER] for h in receiver.hits}) == 1
    assert all(verify(SECRET, h.headers, h.body) for h in receiver.hits)  # every attempt signed afresh
    assert sender.stats() == {"delivered": 1, "failed": 0, "retries": 2, "dropped": 0, "pending": 0}
    assert sender.health()["status"] == "healthy"


async def test_gives_up_after_max_retries(receiver: Receiver) -> None:
    receiver.script = [500] * 10
    bus = EventBus()
    sender = await running(WebhooksConfig(urls=[receiver.url], max_retries=2), bus)
    try:
        bus.publish(ended())
        await wait_for(lambda: sender.failed == 1, 10, "the give-up")
        assert len(receiver.hits) == 3  # first attempt + 2 retries
        health = sender.health()
        assert health["status"] == "degraded" and "HTTP 500" in health["error"]
    finally:
        await sender.stop()
    assert sender.stats()["retries"] == 2 and sender.delivered == 0


async def test_no_retry_on_400(receiver: Receiver) -> None:
    receiver.script = [400]
    bus = EventBus()
    sender = await running(WebhooksConfig(urls=[receiver.url], max_retries=5), bus)
    try:
        bus.publish(ended())
        await wait_for(lambda: sender.failed == 1, 10, "the final failure")
    finally:
        await sender.stop()
    assert len(receiver.hits) == 1 and sender.retries == 0
    assert "not retried" in (sender.last_error or "")


async def test_timeout_is_retried(receiver: Receiver) -> None:
    release = asyncio.Event()

    async def slow() -> web.Response:
        await release.wait()  # answers only after the test is over: the sender has timed out long before
        return web.Response(status=200)

    receiver.script = [slow]
    bus = EventBus()
    sender = await running(WebhooksConfig(urls=[receiver.url], timeout_s=0.3, max_retries=3), bus)
    try:
        bus.publish(ended())
        await wait_for(lambda: sender.delivered == 1, 15, "delivery after a time-out")
    finally:
        release.set()
        await sender.stop()
    assert len(receiver.hits) == 2 and sender.retries == 1


async def test_refused_connection_is_retried_then_given_up() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    bus = EventBus()
    sender = await running(WebhooksConfig(urls=[f"http://127.0.0.1:{port}/hook"], max_retries=2), bus)
    try:
        bus.publish(ended())
        await wait_for(lambda: sender.failed == 1, 15, "the give-up")
    finally:
        await sender.stop()
    assert sender.retries == 2 and "Connect" in (sender.last_error or "")


async def test_bounded_concurrency_and_every_url_gets_every_event(receiver: Receiver) -> None:
    receiver.gate = asyncio.Event()
    bus = EventBus()
    sender = await running(
        WebhooksConfig(urls=[receiver.url, receiver.url + "?second"]), bus, max_concurrency=2
    )
    try:
        for n in range(5):
            bus.publish(ended(n))
        assert sender.stats()["pending"] == 10  # the bus call returned at once: nothing was awaited
        await wait_for(lambda: receiver.active == 2, 10, "two requests in flight")
        await asyncio.sleep(0.2)  # give a third request the chance to (wrongly) start
        assert receiver.max_active == 2
        receiver.gate.set()
        await wait_for(lambda: sender.delivered == 10, 10, "all deliveries")
    finally:
        await sender.stop()
    assert receiver.max_active == 2
    bodies = sorted(h.body for h in receiver.hits)
    assert bodies == sorted(ended(n).to_json().encode() for n in range(5) for _ in range(2))


async def test_pending_bound_and_stop_during_retries(receiver: Receiver) -> None:
    receiver.script = [503] * 100
    bus = EventBus()
    sender = WebhookSender(
        WebhooksConfig(urls=[receiver.url], max_retries=50),
        bus=bus,
        max_pending=3,
        retry=Backoff(base_s=5, cap_s=5),
    )
    await sender.start()
    for n in range(5):
        bus.publish(ended(n))
    assert sender.stats()["pending"] == 3 and sender.dropped == 2
    await wait_for(lambda: len(receiver.hits) == 3, 10, "the first attempts")
    started = time.monotonic()
    await sender.stop(timeout=0.5)  # the retries wait 5 s: they are cancelled, not waited for
    assert time.monotonic() - started < 3
    assert sender.stats()["pending"] == 0 and sender.dropped == 5
