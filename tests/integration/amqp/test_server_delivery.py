"""The running server delivers a real call's events: RabbitMQ gets session.started, session.ended and
recording.ready (durable topic exchange, persistent JSON frames equal to the WebSocket frames), and the configured
webhook receives session_ended and recording_ready signed with HMAC-SHA256. /health and /metrics show the
publisher. Analytics events reach RabbitMQ under their routing keys, filtered by the publish_* switches."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from siprec.events.types import TranscriptEvent
from siprec.events.webhooks import EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from tests.integration.amqp.broker import AMQP_URL, Topology, dedupe
from tests.integration.api.conftest import api_server, wait_for

pytestmark = pytest.mark.integration

SECRET = "hook-secret"


async def test_call_events_reach_rabbitmq_and_webhooks(topology: Topology, tmp_path: Path) -> None:
    hooks: list[tuple[dict[str, str], bytes]] = []

    async def receive(request: web.Request) -> web.Response:
        hooks.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    hook_app = web.Application()
    hook_app.router.add_post("/hook", receive)
    runner = web.AppRunner(hook_app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    overrides = {
        "amqp": {"enabled": True, "url": AMQP_URL, "exchange": topology.exchange},
        "webhooks": {"urls": [f"http://127.0.0.1:{hook_port}/hook"], "secret": SECRET},
    }
    received: list[Any] = []
    try:
        async with api_server(tmp_path, overrides) as api:
            await wait_for(lambda: api.server.services.amqp.connected, 15, "AMQP connected")
            call = await api.call()
            manifest = await api.manifest_after_bye(call)

            async def arrived() -> bool:
                received.extend(await asyncio.to_thread(topology.drain))
                keys = {m.routing_key for m in received}
                return {"session.started", "session.ended", "recording.ready"} <= keys

            deadline = asyncio.get_running_loop().time() + 15
            while not await arrived():
                assert asyncio.get_running_loop().time() < deadline, [m.routing_key for m in received]
                await asyncio.sleep(0.1)
            await wait_for(lambda: len(hooks) >= 2, 15, "two webhook deliveries")
            async with api.http.get(api.url("/health")) as r:
                health = await r.json()
            async with api.http.get(api.url("/metrics")) as r:
                metrics = await r.text()
    finally:
        await runner.cleanup()

    messages = [m for m in dedupe(received) if m.frame["payload"].get("call_id") == call.call_id]
    keys = [m.routing_key for m in messages]
    assert keys.index("session.started") < keys.index("session.ended") < keys.index("recording.ready"), keys
    for m in messages:
        assert m.properties.delivery_mode == 2 and m.properties.content_type == "application/json"
        frame = m.frame
        assert set(frame) == {"type", "payload"} and frame["type"].replace("_", ".") == m.routing_key
    ended = next(m.frame for m in messages if m.routing_key == "session.ended")
    assert ended["payload"]["session_id"] == manifest["session_id"] and ended["payload"]["reason"] == "bye"

    assert [h[EVENT_HEADER] for h, _ in hooks] == ["session_ended", "recording_ready"]
    for headers, body in hooks:
        sent = signature(SECRET, int(headers[TIMESTAMP_HEADER]), headers[EVENT_HEADER], body)
        assert headers[SIGNATURE_HEADER] == sent
        assert json.loads(body)["payload"]["call_id"] == call.call_id

    assert (
        health["checks"]["amqp"]["status"] == "healthy" and health["checks"]["store"]["status"] == "healthy"
    )
    assert health["checks"]["webhooks"]["status"] == "healthy"
    assert "siprec_amqp_confirmed_total" in metrics and "siprec_amqp_outbox_depth" in metrics


async def test_analytics_of_a_call_reach_rabbitmq(topology: Topology, tmp_path: Path) -> None:
    """What STT hands to the analytics stage of the running server (a final transcript of the live call; this
    server runs no STT provider) reaches RabbitMQ enriched, followed by sentiment.update and analytics.snapshot
    frames; keyword.detected is dropped by amqp.publish_keyword_detections: false before the outbox."""
    overrides = {
        "amqp": {"enabled": True, "url": AMQP_URL, "exchange": topology.exchange,
                 "publish_keyword_detections": False, "instance_id": "rec-a"},
        "analytics": {"keywords": ["refund"], "snapshot_interval_s": 0.2},
    }  # fmt: skip
    received: list[Any] = []
    async with api_server(tmp_path, overrides) as api:
        await wait_for(lambda: api.server.services.amqp.connected, 15, "AMQP connected")
        assert api.server.services.amqp.outbox.origin == "rec-a"  # its rows only: others may share the store
        call = await api.call()
        session = api.server.api.sessions.session(call.call_id)
        assert session is not None
        api.server.services.analytics.publish(TranscriptEvent(
            call.call_id, "2", "Bob", "I still have not received my refund, this is terrible.", True, 1.0, 4.0,
            0.9, provider="test", language="en-US", metadata={"session_id": session.session_id, "leg": 1},
        ))  # fmt: skip
        await asyncio.sleep(0.5)  # a couple of snapshot intervals while the call is up
        async with api.http.get(api.url("/api/sessions"), params={"id": call.call_id}) as r:
            speech = (await r.json())["sessions"][0]["analytics"]["speech"]  # the same figures over REST
        assert speech["keywords"] == {"refund": 1} and speech["sentiment"]["label"] == "negative"
        assert [s["speaker_label"] for s in speech["speakers"]] == ["Bob"] and speech["talk_time_s"] == 3.0
        await api.manifest_after_bye(call)

        async def arrived() -> bool:
            received.extend(await asyncio.to_thread(topology.drain))
            finals = [m for m in received if m.routing_key == "analytics.snapshot" and m.frame["payload"]["final"]]
            return bool(finals)

        deadline = asyncio.get_running_loop().time() + 15
        while not await arrived():
            assert asyncio.get_running_loop().time() < deadline, [m.routing_key for m in received]
            await asyncio.sleep(0.1)

    messages = [m for m in dedupe(received) if m.frame["payload"].get("call_id") == call.call_id]
    keys = [m.routing_key for m in messages]
    assert "keyword.detected" not in keys
    final = next(m.frame["payload"] for m in messages if m.routing_key == "transcript.final")
    assert final["keywords"] == ["refund"] and final["sentiment"]["label"] == "negative"
    update = next(m.frame for m in messages if m.routing_key == "sentiment.update")
    assert update["type"] == "sentiment_update" and update["payload"]["speaker_label"] == "Bob"
    snapshots = [m.frame for m in messages if m.routing_key == "analytics.snapshot"]
    assert all(s["type"] == "snapshot" for s in snapshots) and len(snapshots) >= 2
    assert snapshots[-1]["payload"]["final"] and snapshots[-1]["payload"]["keywords"] == {"refund": 1}
    assert keys.index("transcript.final") < keys.index("sentiment.update") < keys.index("session.ended")
    assert keys.index("session.ended") < len(keys) - 1 - keys[::-1].index("analytics.snapshot")
