"""The wire protocol of /ws/transcriptions and /ws/analytics, without I/O (CONTRACT.md "WebSockets").

Every frame is one JSON object `{"type": ..., "payload": {...}}` in a text frame. This module parses what a client
sends into a typed message or a typed protocol error, and builds the server's own frames (pong, error). Event
frames come from `Event.to_json()`, encoded to UTF-8 once per event and shared by every client (`EventFrame`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

# A call id echoed in an error message is cut to this many characters (the message is for humans).
_ECHO_MAX = 128


class ErrorCode(StrEnum):
    AUTH_REQUIRED = "AUTH_REQUIRED"  # auth is on and no token came (?token= or Authorization: Bearer)
    INVALID_TOKEN = "INVALID_TOKEN"  # the token did not verify
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"  # no live (or recently ended) call with this call_id
    INVALID_JSON = "INVALID_JSON"  # not UTF-8 JSON, not an object, or not the shape the message type needs
    UNKNOWN_TYPE = "UNKNOWN_TYPE"  # a "type" this server does not know
    EMPTY_MESSAGE = "EMPTY_MESSAGE"  # an empty (or whitespace-only) text frame
    LAGGED = "LAGGED"  # the client did not read fast enough: its outgoing queue overflowed


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001  # the server shuts down
    AUTH_FAILED = 4001  # after AUTH_REQUIRED or INVALID_TOKEN
    SESSION_NOT_FOUND = 4004  # ?call_id= names no call
    LAGGED = 4008  # after LAGGED (4000 + HTTP 408-ish "too slow"; 1008 is too generic to act upon)


# --- client -> server -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heartbeat:
    """{"type": "heartbeat", "payload": {}} (or IZI's "ping"): answered with a pong."""


@dataclass(frozen=True)
class Subscribe:
    call_id: str


@dataclass(frozen=True)
class Unsubscribe:
    call_id: str | None  # None: drop every subscription (back to every call)


@dataclass(frozen=True)
class ProtocolError:
    code: ErrorCode
    message: str


ClientMessage = Heartbeat | Subscribe | Unsubscribe


def parse_client_message(data: bytes | str) -> ClientMessage | ProtocolError:
    """What one client text frame asks for. `call_id` is read from the payload, or from the top level as IZI
    SIPREC's analytics clients send it ({"type": "subscribe", "call_id": ...})."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return ProtocolError(ErrorCode.INVALID_JSON, "the message is not valid UTF-8")
    else:
        text = data
    if not text.strip():
        return ProtocolError(ErrorCode.EMPTY_MESSAGE, "the message is empty")
    try:
        obj = json.loads(text)
    except ValueError as exc:
        return ProtocolError(ErrorCode.INVALID_JSON, f"the message is not valid JSON: {exc}")
    if not isinstance(obj, dict):
        return ProtocolError(
            ErrorCode.INVALID_JSON, 'the message must be a JSON object {"type": ..., "payload": {...}}'
        )
    kind = obj.get("type")
    if not isinstance(kind, str):
        return ProtocolError(ErrorCode.INVALID_JSON, 'the message needs a string "type"')
    payload = obj.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        return ProtocolError(ErrorCode.INVALID_JSON, '"payload" must be a JSON object')
    if kind in ("heartbeat", "ping"):
        return Heartbeat()
    if kind in ("subscribe", "unsubscribe"):
        call_id = payload.get("call_id", obj.get("call_id"))
        if call_id is None and kind == "unsubscribe":
            return Unsubscribe(None)
        if not isinstance(call_id, str) or not call_id:
            return ProtocolError(
                ErrorCode.INVALID_JSON, f'{kind} needs "payload": {{"call_id": "<Call-ID>"}}'
            )
        return Subscribe(call_id) if kind == "subscribe" else Unsubscribe(call_id)
    return ProtocolError(
        ErrorCode.UNKNOWN_TYPE,
        f"unknown message type {echo(kind)}; expected heartbeat, subscribe or unsubscribe",
    )


def echo(value: str) -> str:
    """A client-given string quoted for an error message, cut short."""
    return repr(value if len(value) <= _ECHO_MAX else value[:_ECHO_MAX] + "...")


# --- server -> client -----------------------------------------------------------------------------------------


def encode(obj: dict[str, Any]) -> bytes:
    """One frame's bytes, in the same JSON style as Event.to_json()."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def pong_frame(ts: float) -> bytes:
    return encode({"type": "pong", "payload": {"ts": ts}})


def error_frame(code: ErrorCode, message: str) -> bytes:
    """IZI SIPREC clients read the message at the top level; CONTRACT.md has it in the payload: both."""
    return encode({"type": "error", "payload": {"code": code.value, "message": message}, "message": message})


@dataclass(frozen=True, slots=True)
class EventFrame:
    """One bus event, serialised once. `seq` orders events as the hub received them (replay windows)."""

    seq: int
    type: str
    call_id: str | None
    data: bytes
