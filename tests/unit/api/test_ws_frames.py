"""The WebSocket wire protocol without sockets: client messages -> typed messages or errors; server frames."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siprec.api.ws import bearer_token
from siprec.api.ws_clients import Channel, Outbox
from siprec.api.ws_frames import (
    ErrorCode,
    Heartbeat,
    ProtocolError,
    Subscribe,
    Unsubscribe,
    error_frame,
    parse_client_message,
    pong_frame,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"type":"heartbeat","payload":{}}', Heartbeat()),
        ('{"type":"heartbeat"}', Heartbeat()),
        ('{"type":"ping","payload":null}', Heartbeat()),  # IZI SIPREC analytics clients
        ('{"type":"subscribe","payload":{"call_id":"abc@host"}}', Subscribe("abc@host")),
        ('{"type":"subscribe","call_id":"abc@host"}', Subscribe("abc@host")),  # IZI: call_id at top level
        ('{"type":"unsubscribe","payload":{"call_id":"abc@host"}}', Unsubscribe("abc@host")),
        ('{"type":"unsubscribe","payload":{}}', Unsubscribe(None)),
        (b'{"type":"subscribe","payload":{"call_id":"\xc3\xa9t\xc3\xa9"}}', Subscribe("été")),
    ],
)
def test_valid_messages(raw: str | bytes, expected: object) -> None:
    assert parse_client_message(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", ErrorCode.EMPTY_MESSAGE),
        (" \n\t", ErrorCode.EMPTY_MESSAGE),
        (b"", ErrorCode.EMPTY_MESSAGE),
        ("{not json", ErrorCode.INVALID_JSON),
        (b"\xff\xfe{}", ErrorCode.INVALID_JSON),
        ("[1, 2]", ErrorCode.INVALID_JSON),
        ('"heartbeat"', ErrorCode.INVALID_JSON),
        ('{"payload":{}}', ErrorCode.INVALID_JSON),
        ('{"type":7}', ErrorCode.INVALID_JSON),
        ('{"type":"heartbeat","payload":[]}', ErrorCode.INVALID_JSON),
        ('{"type":"subscribe","payload":{}}', ErrorCode.INVALID_JSON),
        ('{"type":"subscribe","payload":{"call_id":""}}', ErrorCode.INVALID_JSON),
        ('{"type":"subscribe","payload":{"call_id":42}}', ErrorCode.INVALID_JSON),
        ('{"type":"unsubscribe","payload":{"call_id":["a"]}}', ErrorCode.INVALID_JSON),
        ('{"type":"transcript","payload":{}}', ErrorCode.UNKNOWN_TYPE),
        ('{"type":"","payload":{}}', ErrorCode.UNKNOWN_TYPE),
    ],
)
def test_bad_messages(raw: str | bytes, code: ErrorCode) -> None:
    result = parse_client_message(raw)
    assert isinstance(result, ProtocolError)
    assert result.code is code
    assert result.message


def test_unknown_type_message_is_cut_short() -> None:
    result = parse_client_message(json.dumps({"type": "x" * 10_000}))
    assert isinstance(result, ProtocolError) and len(result.message) < 300


@given(st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_any_input_gives_a_message_or_an_error(raw: bytes | str) -> None:
    result = parse_client_message(raw)
    assert isinstance(result, Heartbeat | Subscribe | Unsubscribe | ProtocolError)


def test_error_frame_carries_the_message_twice() -> None:
    frame = json.loads(error_frame(ErrorCode.SESSION_NOT_FOUND, "no session with call_id 'x'"))
    assert frame == {
        "type": "error",
        "payload": {"code": "SESSION_NOT_FOUND", "message": "no session with call_id 'x'"},
        "message": "no session with call_id 'x'",
    }


def test_pong_frame() -> None:
    assert json.loads(pong_frame(1700000000.25)) == {"type": "pong", "payload": {"ts": 1700000000.25}}


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def", "abc.def"),
        ("bearer   abc", "abc"),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_channel_accepts_types_and_prefixes() -> None:
    channel = Channel("/ws/analytics", frozenset({"session_started"}), ("analytics", "alert"))
    assert channel.accepts("session_started")
    assert channel.accepts("analytics_snapshot")
    assert channel.accepts("alert")
    assert not channel.accepts("transcript")
    assert not Channel("/x", frozenset({"transcript"})).accepts("transcripts")


async def test_outbox_is_bounded_and_drains_before_closing() -> None:
    outbox = Outbox(2)
    assert outbox.offer(b"1") and outbox.offer((b"2", b"3"))
    assert not outbox.offer(b"4")  # full: the hub cuts the client
    outbox.close(1001)
    assert await outbox.get() == b"1"
    assert await outbox.get() == (b"2", b"3")
    assert await outbox.get() is None


async def test_outbox_wakes_a_waiting_writer() -> None:
    outbox = Outbox(4)
    waiting = asyncio.ensure_future(outbox.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    outbox.offer(b"x")
    assert await asyncio.wait_for(waiting, 5) == b"x"
