"""The WebSocket hub over real sockets: an aiohttp server on 127.0.0.1 and aiohttp clients (CONTRACT.md
"WebSockets", docs/websocket.md). Events go in through a real EventBus; what the tests check is what a client sees:
frames, error codes, close codes. The lag tests use a raw socket that stops reading (bench.ws_fanout)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from aiohttp import ClientSession, ClientWebSocketResponse, WSMsgType, web
from aiohttp.test_utils import TestServer

from bench.ws_fanout import lag_outcome, open_silent_client, read_to_end
from siprec.api.ws import ANALYTICS_PATH, TRANSCRIPTIONS_PATH, WebSocketHub
from siprec.api.ws_history import TranscriptHistory
from siprec.events.bus import EventBus
from siprec.events.types import (
    AnalyticsSnapshot,
    DtmfDetected,
    Event,
    SessionEnded,
    SessionStarted,
    TranscriptEvent,
)

DEADLINE_S = 10.0  # every wait is for a condition, with this bound (2 shared cores: generous)


# --- events ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalyticsEvent(Event):
    """Any event type starting with "analytics": the hub routes by type name, not by class."""

    type: ClassVar[str] = "analytics_snapshot"

    call_id: str
    sentiment: float


@dataclass(frozen=True)
class AlertRaised(Event):
    type: ClassVar[str] = "alert"

    rule: str
    call_id: str | None = None


def started(call_id: str) -> SessionStarted:
    return SessionStarted(call_id=call_id, session_id=f"s-{call_id}", started_at=time.time(), siprec=True)


def ended(call_id: str) -> SessionEnded:
    now = time.time()
    return SessionEnded(call_id, f"s-{call_id}", "bye", now - 1, now, 1.0)


def transcript(call_id: str, n: int, *, final: bool = True, text: str = "") -> TranscriptEvent:
    return TranscriptEvent(
        call_id=call_id,
        stream_label="leg-0",
        speaker_label="Alice",
        text=text or f"{call_id} says {n}",
        is_final=final,
        start=float(n),
        end=n + 0.5,
        confidence=0.9,
        words=({"text": "says", "start": float(n), "end": n + 0.2, "confidence": 0.9},),
        provider="test",
        language="en-US",
        sentiment={"label": "neutral", "score": 0.0},
        keywords=("billing",),
        metadata={"n": n, "leg": 0},
    )


# --- the rig --------------------------------------------------------------------------------------------------


@dataclass
class Rig:
    bus: EventBus
    hub: WebSocketHub
    server: TestServer
    http: ClientSession
    live: set[str]  # what session_exists says exists

    def url(self, path: str = TRANSCRIPTIONS_PATH, **query: str) -> str:
        return str(self.server.make_url(path).with_query(query))

    async def connect(
        self, path: str = TRANSCRIPTIONS_PATH, *, headers: Mapping[str, str] | None = None, **query: str
    ) -> ClientWebSocketResponse:
        return await self.http.ws_connect(self.url(path, **query), headers=headers, autoclose=True)

    async def ready(self, path: str = TRANSCRIPTIONS_PATH, **query: str) -> ClientWebSocketResponse:
        """Connected and registered: a heartbeat was answered, so events published now reach it."""
        ws = await self.connect(path, **query)
        await heartbeat(ws)
        return ws

    def publish(self, *events: Event) -> None:
        for event in events:
            self.bus.publish(event)


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig() -> AsyncIterator[RigFactory]:
    rigs: list[Rig] = []

    async def make(*, live: set[str] | None = None, **hub_options: Any) -> Rig:
        bus = EventBus()
        known = set() if live is None else live
        hub_options.setdefault("verify_token", None)
        hub = WebSocketHub(bus, session_exists=known.__contains__, **hub_options)
        app = web.Application()
        hub.add_routes(app)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        rig = Rig(bus, hub, server, ClientSession(), known)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        await rig.http.close()
        await rig.server.close()  # runs the app's shutdown, hence hub.close()


@pytest.fixture
async def rig(make_rig: RigFactory) -> Rig:
    return await make_rig(live={"call-a", "call-b"})


# --- client helpers -------------------------------------------------------------------------------------------


async def next_frame(ws: ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=DEADLINE_S)
    assert msg.type is WSMsgType.TEXT, f"expected a text frame, got {msg}"
    frame = json.loads(msg.data)
    assert isinstance(frame, dict) and set(frame) >= {"type", "payload"}, frame
    return frame


async def heartbeat(ws: ClientWebSocketResponse) -> dict[str, Any]:
    """Send a heartbeat and return the pong; frames before it must not be lost: the caller reads them first."""
    await ws.send_json({"type": "heartbeat", "payload": {}})
    frame = await next_frame(ws)
    assert frame["type"] == "pong", frame
    return frame


async def frames_until(
    ws: ClientWebSocketResponse, last: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(DEADLINE_S):
        while True:
            frame = await next_frame(ws)
            frames.append(frame)
            if last(frame):
                return frames


def is_text(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f["type"] == "transcript" and f["payload"]["text"] == text


def texts(frames: list[dict[str, Any]]) -> list[str]:
    return [f["payload"]["text"] for f in frames if f["type"] == "transcript"]


async def expect_error_then_close(ws: ClientWebSocketResponse, code: str, close_code: int) -> dict[str, Any]:
    frame = await next_frame(ws)
    assert frame["type"] == "error" and frame["payload"]["code"] == code, frame
    assert frame["message"] == frame["payload"]["message"] and frame["message"]
    msg = await ws.receive(timeout=DEADLINE_S)
    assert msg.type is WSMsgType.CLOSE, msg
    assert msg.data == close_code
    return frame


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


# --- frames ---------------------------------------------------------------------------------------------------


async def test_a_transcript_is_one_frame_with_the_event_json(rig: Rig) -> None:
    ws = await rig.ready()
    event = transcript("call-a", 1)
    rig.publish(event)
    frame = await next_frame(ws)
    assert frame == json.loads(event.to_json())
    assert frame["type"] == "transcript"
    assert set(frame["payload"]) >= {
        "call_id", "stream_label", "speaker_label", "text", "is_final", "start", "end", "confidence", "words",
        "provider", "language", "sentiment", "keywords", "metadata",
    }  # fmt: skip


async def test_each_path_carries_its_event_types(rig: Rig) -> None:
    transcriptions = await rig.ready(TRANSCRIPTIONS_PATH)
    analytics = await rig.ready(ANALYTICS_PATH)
    rig.publish(
        started("call-a"),
        transcript("call-a", 1, final=False),
        AnalyticsEvent("call-a", 0.5),
        DtmfDetected("call-a", "s-call-a", 0, "5", 5, 1.0, 0.1, True),
        AlertRaised("keyword", "call-a"),
        ended("call-a"),
    )
    got_t = await frames_until(transcriptions, lambda f: f["type"] == "session_ended")
    got_a = await frames_until(analytics, lambda f: f["type"] == "session_ended")
    assert [f["type"] for f in got_t] == ["session_started", "transcript", "session_ended"]
    assert [f["type"] for f in got_a] == ["session_started", "analytics_snapshot", "alert", "session_ended"]
    assert got_a[1]["payload"] == {"call_id": "call-a", "sentiment": 0.5}
    await heartbeat(transcriptions)  # nothing else (the dtmf) was queued before the pong
    await heartbeat(analytics)


async def test_analytics_prefixes_are_a_parameter(make_rig: RigFactory) -> None:
    rig = await make_rig(analytics_prefixes=("alert",))
    ws = await rig.ready(ANALYTICS_PATH)
    rig.publish(AnalyticsEvent("x", 0.1), AlertRaised("r1", "x"))
    frame = await next_frame(ws)
    assert frame["type"] == "alert"


async def test_an_event_without_call_id_reaches_subscribed_clients_too(rig: Rig) -> None:
    ws = await rig.ready(ANALYTICS_PATH, call_id="call-a")
    rig.publish(AlertRaised("disk-full"))
    frame = await next_frame(ws)
    assert frame == {"type": "alert", "payload": {"rule": "disk-full", "call_id": None}}


async def test_heartbeat_is_answered_with_pong_ts(rig: Rig) -> None:
    ws = await rig.connect()
    before = time.time()
    pong = await heartbeat(ws)
    assert set(pong["payload"]) == {"ts"}
    assert before - 1 <= pong["payload"]["ts"] <= time.time() + 1
    await ws.send_json({"type": "ping"})  # IZI SIPREC's analytics clients say ping
    assert (await next_frame(ws))["type"] == "pong"


# --- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("send", "code"),
    [
        (lambda ws: ws.send_str("{not json"), "INVALID_JSON"),
        (lambda ws: ws.send_str("[]"), "INVALID_JSON"),
        (lambda ws: ws.send_frame(b'{"type":"heartbeat","payload":{}}\xff', WSMsgType.TEXT), "INVALID_JSON"),
        (lambda ws: ws.send_bytes(b'{"type":"heartbeat","payload":{}}'), "INVALID_JSON"),
        (lambda ws: ws.send_json({"type": "subscribe", "payload": {}}), "INVALID_JSON"),
        (lambda ws: ws.send_json({"type": "heartbeat", "payload": "x"}), "INVALID_JSON"),
        (lambda ws: ws.send_json({"type": "dance", "payload": {}}), "UNKNOWN_TYPE"),
        (lambda ws: ws.send_str(""), "EMPTY_MESSAGE"),
        (lambda ws: ws.send_str("   "), "EMPTY_MESSAGE"),
    ],
    ids=[
        "not-json",
        "not-object",
        "bad-utf8",
        "binary",
        "no-call-id",
        "payload-not-object",
        "unknown",
        "empty",
        "blank",
    ],
)
async def test_a_bad_message_gets_an_error_and_the_connection_stays(
    rig: Rig, send: Callable[[ClientWebSocketResponse], Awaitable[None]], code: str
) -> None:
    ws = await rig.connect()
    await send(ws)
    frame = await next_frame(ws)
    assert frame["type"] == "error"
    assert frame["payload"]["code"] == code
    assert frame["message"] == frame["payload"]["message"] and frame["message"]
    await heartbeat(ws)
    rig.publish(transcript("call-a", 1))
    assert (await next_frame(ws))["type"] == "transcript"


async def test_an_oversized_message_closes_with_1009(rig: Rig) -> None:
    ws = await rig.connect()
    await ws.send_str(json.dumps({"type": "heartbeat", "payload": {"pad": "x" * 100_000}}))
    msg = await ws.receive(timeout=DEADLINE_S)
    assert msg.type is WSMsgType.CLOSE and msg.data == 1009


async def test_unknown_call_id_at_connect_is_refused_with_4004(rig: Rig) -> None:
    ws = await rig.connect(call_id="no-such-call")
    frame = await expect_error_then_close(ws, "SESSION_NOT_FOUND", 4004)
    assert "no-such-call" in frame["message"]
    assert rig.hub.stats()["refused"] == {"SESSION_NOT_FOUND": 1}


async def test_subscribing_to_an_unknown_call_is_an_error_frame_only(rig: Rig) -> None:
    ws = await rig.ready()
    await ws.send_json({"type": "subscribe", "payload": {"call_id": "no-such-call"}})
    frame = await next_frame(ws)
    assert frame["type"] == "error" and frame["payload"]["code"] == "SESSION_NOT_FOUND"
    await heartbeat(ws)
    rig.publish(transcript("call-b", 1))  # still in every-call mode
    assert (await next_frame(ws))["payload"]["call_id"] == "call-b"


async def test_a_plain_get_is_told_to_upgrade(rig: Rig) -> None:
    async with rig.http.get(rig.url()) as response:
        assert response.status == 426
        assert response.headers["Upgrade"] == "websocket"


# --- auth -----------------------------------------------------------------------------------------------------


@pytest.fixture
async def auth_rig(make_rig: RigFactory) -> Rig:
    return await make_rig(live={"call-a"}, verify_token=lambda token: token == "good-token")


@pytest.mark.parametrize(
    ("query", "headers", "code"),
    [
        ({}, {}, "AUTH_REQUIRED"),
        ({"token": ""}, {}, "AUTH_REQUIRED"),
        ({}, {"Authorization": "Basic Z29vZC10b2tlbg=="}, "AUTH_REQUIRED"),
        ({"token": "bad-token"}, {}, "INVALID_TOKEN"),
        ({}, {"Authorization": "Bearer bad-token"}, "INVALID_TOKEN"),
        ({"token": "bad-token", "call_id": "no-such-call"}, {}, "INVALID_TOKEN"),  # auth is checked first
    ],
)
async def test_auth_failures_close_with_4001(
    auth_rig: Rig, query: dict[str, str], headers: dict[str, str], code: str
) -> None:
    ws = await auth_rig.connect(headers=headers, **query)
    await expect_error_then_close(ws, code, 4001)
    assert auth_rig.hub.stats()["refused"] == {code: 1}
    assert auth_rig.hub.stats()["clients_total"] == 0


@pytest.mark.parametrize(
    ("query", "headers"),
    [({"token": "good-token"}, {}), ({}, {"Authorization": "Bearer good-token"})],
    ids=["query", "header"],
)
async def test_a_valid_token_by_query_or_header_is_accepted(
    auth_rig: Rig, query: dict[str, str], headers: dict[str, str]
) -> None:
    ws = await auth_rig.connect(ANALYTICS_PATH, headers=headers, call_id="call-a", **query)
    await heartbeat(ws)
    auth_rig.publish(started("call-a"))
    assert (await next_frame(ws))["type"] == "session_started"


# --- who gets which call --------------------------------------------------------------------------------------


async def test_subscribe_and_unsubscribe_filter_the_calls(rig: Rig) -> None:
    ws = await rig.ready()
    rig.publish(transcript("call-a", 1), transcript("call-b", 1))
    assert texts(await frames_until(ws, is_text("call-b says 1"))) == ["call-a says 1", "call-b says 1"]

    await ws.send_json({"type": "subscribe", "payload": {"call_id": "call-a"}})
    await heartbeat(ws)  # nothing replayed: it got call-a live since it connected
    rig.publish(transcript("call-b", 2), transcript("call-a", 2))
    assert texts(await frames_until(ws, is_text("call-a says 2"))) == ["call-a says 2"]

    await ws.send_json({"type": "subscribe", "call_id": "call-b"})  # IZI style, call_id at top level
    got = await frames_until(ws, is_text("call-b says 2"))  # replayed: call-b's finals it did not get
    assert texts(got) == ["call-b says 2"]
    await heartbeat(ws)  # and nothing else: call-b 1 came live before the subscription

    await ws.send_json({"type": "unsubscribe", "payload": {"call_id": "call-a"}})
    await heartbeat(ws)
    rig.publish(transcript("call-a", 3), transcript("call-b", 3))
    assert texts(await frames_until(ws, is_text("call-b says 3"))) == ["call-b says 3"]

    await ws.send_json(
        {"type": "unsubscribe", "payload": {"call_id": "call-b"}}
    )  # the last one: every call again
    await heartbeat(ws)
    rig.publish(transcript("call-a", 4), transcript("call-b", 4))
    assert texts(await frames_until(ws, is_text("call-b says 4"))) == ["call-a says 4", "call-b says 4"]


async def test_unsubscribe_without_call_id_drops_every_subscription(rig: Rig) -> None:
    ws = await rig.ready(call_id="call-a")
    rig.publish(transcript("call-b", 1), transcript("call-a", 1))
    assert texts(await frames_until(ws, is_text("call-a says 1"))) == ["call-a says 1"]
    await ws.send_json({"type": "unsubscribe", "payload": {}})
    await heartbeat(ws)
    rig.publish(transcript("call-b", 2))
    assert texts([await next_frame(ws)]) == ["call-b says 2"]


async def test_connecting_with_call_id_gets_only_that_call(rig: Rig) -> None:
    other = await rig.ready()
    ws = await rig.ready(call_id="call-b")
    rig.publish(started("call-a"), transcript("call-a", 1), started("call-b"), transcript("call-b", 1))
    got = await frames_until(ws, is_text("call-b says 1"))
    assert [(f["type"], f["payload"]["call_id"]) for f in got] == [
        ("session_started", "call-b"),
        ("transcript", "call-b"),
    ]
    assert len(await frames_until(other, is_text("call-b says 1"))) == 4


# --- replay ---------------------------------------------------------------------------------------------------


async def test_a_late_subscriber_gets_the_final_transcripts_so_far_then_live(rig: Rig) -> None:
    rig.publish(
        started("call-a"),
        transcript("call-a", 0, final=False),
        transcript("call-a", 0),
        transcript("call-b", 0),
        transcript("call-a", 1, final=False),
        transcript("call-a", 1),
        transcript("call-a", 2, final=False),  # the partial in progress is not replayed
    )
    ws = await rig.connect(call_id="call-a")
    got = [await next_frame(ws) for _ in range(3)]
    assert [f["type"] for f in got] == ["session_started", "transcript", "transcript"]
    assert texts(got) == ["call-a says 0", "call-a says 1"]
    assert all(f["payload"]["is_final"] for f in got[1:])
    rig.publish(transcript("call-a", 2))
    assert texts([await next_frame(ws)]) == ["call-a says 2"]
    await heartbeat(ws)


async def test_subscribing_from_every_call_mode_replays_only_what_came_before_connecting(rig: Rig) -> None:
    rig.publish(started("call-a"), transcript("call-a", 0))
    ws = await rig.ready()
    rig.publish(transcript("call-a", 1))
    assert texts([await next_frame(ws)]) == ["call-a says 1"]
    await ws.send_json({"type": "subscribe", "payload": {"call_id": "call-a"}})
    got = await frames_until(ws, is_text("call-a says 0"))
    assert [f["type"] for f in got] == ["session_started", "transcript"]
    await heartbeat(ws)  # call-a 1 is not sent twice


async def test_an_analytics_subscriber_gets_the_latest_snapshot_at_once(rig: Rig) -> None:
    """A dashboard joining a call on /ws/analytics has its figures right away (the latest snapshot, replayed),
    not after the next snapshot interval; /ws/transcriptions replays no snapshot."""
    rig.live.add("call-a")
    snap = [
        AnalyticsSnapshot("call-a", "s-call-a", 1000.0 + n, float(n), False, n, float(n), (), None, {"refund": n})
        for n in (1, 2)
    ]  # fmt: skip
    rig.publish(started("call-a"), transcript("call-a", 0), snap[0], snap[1])
    ws = await rig.connect(ANALYTICS_PATH, call_id="call-a")
    got = [await next_frame(ws) for _ in range(2)]
    assert [f["type"] for f in got] == ["session_started", "snapshot"]
    assert got[1]["payload"]["keywords"] == {"refund": 2}  # the latest only
    await heartbeat(ws)
    ws = await rig.connect(call_id="call-a")
    got = [await next_frame(ws) for _ in range(2)]
    assert [f["type"] for f in got] == ["session_started", "transcript"]
    await heartbeat(ws)


async def test_replay_has_no_gap_and_no_duplicate_while_events_flow(rig: Rig) -> None:
    """Clients join one call at different moments while its transcripts keep coming, some with ?call_id=,
    some by subscribing from every-call mode: each gets every final exactly once."""
    count = 300
    published = 0
    rig.live.add("flow")

    async def publisher() -> None:
        nonlocal published
        rig.publish(started("flow"))
        for n in range(count):
            rig.publish(transcript("flow", n, final=False), transcript("flow", n))
            published = n + 1
            await asyncio.sleep(0.002)
        rig.publish(ended("flow"))

    async def join(after: int, by_subscribe: bool) -> list[dict[str, Any]]:
        await wait_for(lambda: published >= after, f"{after} events published")
        if by_subscribe:
            ws = await rig.connect()
            await ws.send_json({"type": "subscribe", "payload": {"call_id": "flow"}})
        else:
            ws = await rig.connect(call_id="flow")
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(DEADLINE_S * 3):
            while True:
                frame = await next_frame(ws)
                if frame["payload"].get("call_id") != "flow":
                    continue
                frames.append(frame)
                if frame["type"] == "session_ended":
                    return frames

    task = asyncio.create_task(publisher())
    joins = [(0, False), (40, True), (90, False), (150, True), (220, False), (280, True)]
    results = await asyncio.gather(*(join(after, sub) for after, sub in joins))
    await task
    for (after, by_subscribe), frames in zip(joins, results, strict=True):
        finals = [
            f["payload"]["metadata"]["n"]
            for f in frames
            if f["type"] == "transcript" and f["payload"]["is_final"]
        ]
        assert sorted(finals) == list(range(count)), f"joined after {after} (subscribe: {by_subscribe})"
        if not by_subscribe:
            assert finals == list(range(count))  # replay, then live, in order
            assert frames[0]["type"] == "session_started"
        assert [f["type"] for f in frames].count("session_started") == 1


async def test_an_ended_call_is_replayed_until_it_is_forgotten(make_rig: RigFactory) -> None:
    now = [0.0]
    rig = await make_rig(live=set(), history=TranscriptHistory(keep_after_end_s=60, clock=lambda: now[0]))
    rig.publish(started("gone"), transcript("gone", 0), ended("gone"))
    ws = await rig.connect(call_id="gone")
    got = [await next_frame(ws) for _ in range(3)]
    assert [f["type"] for f in got] == ["session_started", "transcript", "session_ended"]
    now[0] += 61
    late = await rig.connect(call_id="gone")
    await expect_error_then_close(late, "SESSION_NOT_FOUND", 4004)


async def test_a_live_call_without_history_can_be_subscribed(rig: Rig) -> None:
    ws = await rig.ready(call_id="call-a")  # session_exists knows it; no event about it yet
    rig.publish(transcript("call-a", 0))
    assert texts([await next_frame(ws)]) == ["call-a says 0"]


# --- slow clients ---------------------------------------------------------------------------------------------


BIG = "word " * 3000  # ~15 KB frames: the buffers of a client that does not read fill within a few dozen


async def _flood_until_lagged(rig: Rig, event: Callable[[int], Event]) -> int:
    """Publish `event(n)` for n = 0, 1, ... until the hub cuts a client; returns how many were published."""
    n = 0
    deadline = time.monotonic() + DEADLINE_S * 2
    while not rig.hub.lagged_disconnects:
        assert time.monotonic() < deadline, f"no client was cut after {n} events: {rig.hub.stats()}"
        rig.publish(event(n))
        n += 1
        await asyncio.sleep(0.001)
    return n


async def test_a_client_that_does_not_read_is_cut_with_lagged_and_4008(make_rig: RigFactory) -> None:
    rig = await make_rig(live={"busy"}, queue_size=8, lag_grace_s=DEADLINE_S * 3)
    reader = await rig.ready(call_id="busy")
    sock, _ = await open_silent_client(
        "127.0.0.1", rig.server.port or 0, f"{TRANSCRIPTIONS_PATH}?call_id=busy"
    )
    try:
        await wait_for(lambda: rig.hub.stats()["clients_total"] == 2, "both clients registered")
        received: list[int] = []

        async def read_all() -> None:
            while True:
                frame = await next_frame(reader)
                assert frame["type"] == "transcript", frame
                received.append(frame["payload"]["metadata"]["n"])

        reading = asyncio.create_task(read_all())
        published = await _flood_until_lagged(rig, lambda n: transcript("busy", n, text=f"{n} {BIG}"))
        rig.publish(transcript("busy", published, text="after the cut"))
        await wait_for(lambda: len(received) == published + 1, "the reader got every event")
        reading.cancel()
        assert received == list(range(published + 1))  # the other client lost nothing
        stats = rig.hub.stats()
        assert stats["lagged_disconnects"] == 1
        await wait_for(
            lambda: rig.hub.stats()["clients"][TRANSCRIPTIONS_PATH] == 1, "the lagged client dropped"
        )

        data, closed = await read_to_end(sock, timeout_s=DEADLINE_S * 2)  # now it reads what was left for it
        assert closed, "the server did not close the lagged connection"
        outcome = lag_outcome(data)
        assert outcome["lagged_frame"] and outcome["close_code"] == 4008, outcome
        await heartbeat(reader)
    finally:
        sock.close()


async def test_a_lagged_client_that_never_reads_does_not_keep_its_connection(make_rig: RigFactory) -> None:
    rig = await make_rig(live={"busy"}, queue_size=4, lag_grace_s=0.2)
    sock, _ = await open_silent_client("127.0.0.1", rig.server.port or 0, f"{ANALYTICS_PATH}?call_id=busy")
    try:
        await wait_for(lambda: rig.hub.stats()["clients_total"] == 1, "the client registered")
        await _flood_until_lagged(rig, lambda n: AlertRaised(f"{n} {BIG}", "busy"))
        await wait_for(lambda: rig.hub.stats()["clients_total"] == 0, "the lagged client's handler finished")
        # Still without reading a byte, the client loses its connection: the server process lets go of it (what
        # the kernel still holds for it, it sends or drops on its own).
        assert rig.server.runner is not None and rig.server.runner.server is not None
        server = rig.server.runner.server
        await wait_for(lambda: not server.connections, "the server to let go of a client that never reads")
        _, closed = await read_to_end(sock, timeout_s=DEADLINE_S)
        assert closed
    finally:
        sock.close()


# --- shutdown, stats, health ----------------------------------------------------------------------------------


def _hub_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("ws-")]


async def test_close_says_going_away_to_everyone_and_leaves_no_task(make_rig: RigFactory) -> None:
    rig = await make_rig(live={"call-a"}, close_timeout_s=2.0)
    baseline = asyncio.all_tasks()
    clients = [await rig.ready(), await rig.ready(ANALYTICS_PATH), await rig.ready(call_id="call-a")]
    sock, _ = await open_silent_client("127.0.0.1", rig.server.port or 0, TRANSCRIPTIONS_PATH)
    try:
        await wait_for(lambda: rig.hub.stats()["clients_total"] == 4, "four clients")
        rig.publish(started("call-a"), ended("call-a"))
        await rig.hub.close()
        for ws in clients:
            got = await frames_until(
                ws, lambda f: f["type"] == "session_ended"
            )  # what was queued is delivered
            assert got[-1]["payload"]["call_id"] == "call-a"
            msg = await ws.receive(timeout=DEADLINE_S)
            assert msg.type is WSMsgType.CLOSE and msg.data == 1001
        assert rig.hub.stats()["clients_total"] == 0
        assert _hub_tasks() == []
        await wait_for(
            lambda: not (asyncio.all_tasks() - baseline - {asyncio.current_task()}), "server tasks done"
        )
        assert (await rig.hub.health())[0] == "unhealthy"

        late = await rig.connect()  # after close: refused with 1001 straight away
        msg = await late.receive(timeout=DEADLINE_S)
        assert msg.type is WSMsgType.CLOSE and msg.data == 1001
        await rig.hub.close()  # idempotent
    finally:
        sock.close()


async def test_a_client_closing_gets_1000_and_leaves_nothing_behind(rig: Rig) -> None:
    ws = await rig.ready(call_id="call-a")
    sock, _ = await open_silent_client("127.0.0.1", rig.server.port or 0, ANALYTICS_PATH)
    await wait_for(lambda: rig.hub.stats()["clients_total"] == 2, "two clients")
    await ws.close()
    assert ws.close_code == 1000
    sock.close()  # gone without a close handshake
    await wait_for(lambda: rig.hub.stats()["clients_total"] == 0, "both clients dropped")
    await wait_for(lambda: not _hub_tasks(), "their tasks done")
    rig.publish(transcript("call-a", 1), AlertRaised("r", "call-a"))  # nobody left to send to: nothing breaks
    assert rig.hub.stats()["clients"] == {TRANSCRIPTIONS_PATH: 0, ANALYTICS_PATH: 0}


async def test_the_app_shutdown_closes_the_hub(make_rig: RigFactory) -> None:
    rig = await make_rig()
    ws = await rig.ready()
    await rig.server.close()
    msg = await ws.receive(timeout=DEADLINE_S)
    assert msg.type is WSMsgType.CLOSE and msg.data == 1001
    assert _hub_tasks() == []


async def test_stats_and_health(rig: Rig) -> None:
    assert await rig.hub.health() == ("healthy", {"clients": 0, "lagged_disconnects": 0, "history_calls": 0})
    t = await rig.ready()
    a = await rig.ready(ANALYTICS_PATH, session_id="dashboard-1")
    refused = await rig.connect(call_id="nope")
    await expect_error_then_close(refused, "SESSION_NOT_FOUND", 4004)
    rig.publish(started("call-a"), transcript("call-a", 0))
    await frames_until(t, is_text("call-a says 0"))
    await next_frame(a)
    stats = rig.hub.stats()
    assert stats["clients"] == {TRANSCRIPTIONS_PATH: 1, ANALYTICS_PATH: 1}
    assert stats["clients_total"] == 2
    assert stats["connections_total"] == 3
    assert stats["refused"] == {"SESSION_NOT_FOUND": 1}
    assert stats["events_received"] == 2
    assert stats["frames_sent"] == 3 + 2  # pong, session_started, transcript; pong, session_started
    assert stats["lagged_disconnects"] == 0
    assert stats["history_calls"] == 1
    status, details = await rig.hub.health()
    assert status == "healthy" and details["clients"] == 2
