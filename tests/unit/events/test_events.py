"""Event schema (one to_json shape) and the EventBus (never blocks, counts and reports overflow)."""

from __future__ import annotations

import asyncio
import json

import pytest

from siprec.events.bus import EventBus, SubscriberLagged
from siprec.events.types import Event, LegInfo, ParticipantInfo, SessionEnded, SessionStarted


def started(n: int = 0) -> SessionStarted:
    alice = ParticipantInfo("p1", "sip:alice@example.com", "Alice")
    leg = LegInfo(0, "1", "open", "PCMU", 0, 8000, 20000, alice, (alice,), "metadata-label")
    return SessionStarted(f"call-{n}", "sid", 1700000000.0, True, (alice,), (leg,))


def test_to_json_is_type_and_payload() -> None:
    frame = json.loads(started().to_json())
    assert set(frame) == {"type", "payload"}
    assert frame["type"] == "session_started"
    payload = frame["payload"]
    assert payload["call_id"] == "call-0"
    assert payload["participants"] == [{"id": "p1", "aor": "sip:alice@example.com", "name": "Alice"}]
    assert payload["legs"][0]["participant"]["name"] == "Alice"
    assert payload["legs"][0]["rule"] == "metadata-label"
    assert started().routing_key == "session.started"


def test_ended_payload_and_unicode_kept() -> None:
    ev = SessionEnded("c\u00e9", "s", "bye", 10.0, 25.5, 15.5)
    assert '"c\u00e9"' in ev.to_json()
    assert ev.to_dict()["payload"]["duration_s"] == 15.5


def test_callback_subscribers_filters_and_failures() -> None:
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe(got.append)
    only_end: list[Event] = []
    bus.subscribe(only_end.append, types=["session_ended"])

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    bad = bus.subscribe(broken)
    bus.publish(started())
    bus.publish(SessionEnded("c", "s", "bye", 0, 1, 1))
    assert [e.type for e in got] == ["session_started", "session_ended"]
    assert [e.type for e in only_end] == ["session_ended"]
    assert bad.errors == 2
    bad.close()
    assert len(bus) == 2


async def test_slow_queue_subscriber_never_blocks_and_is_told_it_lagged() -> None:
    bus = EventBus()
    fast: list[Event] = []
    bus.subscribe(fast.append)
    q, sub = bus.queue(maxsize=2)
    for n in range(5):
        bus.publish(started(n))  # returns at once although nobody reads q
    assert len(fast) == 5
    assert sub.dropped == 3
    assert [q.get_nowait().call_id for _ in range(2)] == ["call-0", "call-1"]  # type: ignore[attr-defined]
    bus.publish(started(5))
    lag = q.get_nowait()
    assert isinstance(lag, SubscriberLagged) and (lag.missed, lag.total_dropped) == (3, 3)
    assert q.get_nowait().call_id == "call-5"  # type: ignore[attr-defined]
    assert json.loads(lag.to_json()) == {"type": "subscriber_lagged", "payload": {"missed": 3, "total_dropped": 3}}


async def test_unbounded_queue_is_refused() -> None:
    with pytest.raises(ValueError):
        EventBus().subscribe(asyncio.Queue())
