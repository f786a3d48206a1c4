"""RFC 4733 telephone-event (DTMF) payloads: parse, and turn a packet stream into one event per key press.

A key press is sent as many packets sharing one RTP timestamp (the event's start) with a growing duration,
then an end packet repeated three times. `DtmfReceiver` emits a `DtmfEvent` once per event: on the first end
packet, or - when every end packet was lost - as soon as a newer event starts or at `flush()`.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

__all__ = ["DtmfEvent", "DtmfReceiver", "EventPayload", "build_event", "event_digit", "parse_events"]

_EVENT = struct.Struct("!BBH")
_DIGITS = "0123456789*#ABCD"
_FLASH = 16


def event_digit(event: int) -> str | None:
    """'0'-'9', '*', '#', 'A'-'D', 'flash' for hook flash, None for the non-DTMF tones."""
    if event < 16:
        return _DIGITS[event]
    return "flash" if event == _FLASH else None


@dataclass(frozen=True, slots=True)
class EventPayload:
    event: int
    end: bool
    volume: int  # dBm0 below zero, 0..63
    duration: int  # in RTP clock ticks since the event's timestamp


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    digit: str | None
    event: int
    start_timestamp: int  # RTP timestamp of the event's first packet
    duration_samples: int  # RTP clock ticks (8000 Hz for the usual telephone-event/8000)
    volume: int
    ended: bool = True  # False when no end packet arrived (event emitted on a newer event or flush)


def parse_events(payload: bytes | bytearray | memoryview) -> list[EventPayload]:
    """Every 4-byte event block in the payload (usually one; RFC 2198 redundancy is unwrapped elsewhere).
    Raises ValueError for an empty payload or one that is not a multiple of 4 bytes."""
    if not payload or len(payload) % 4:
        raise ValueError(f"telephone-event payload of {len(payload)} bytes")
    out = []
    for off in range(0, len(payload), 4):
        event, flags, duration = _EVENT.unpack_from(payload, off)
        out.append(EventPayload(event, bool(flags & 0x80), flags & 0x3F, duration))
    return out


def build_event(event: int, duration: int, *, end: bool = False, volume: int = 10) -> bytes:
    return _EVENT.pack(event, (0x80 if end else 0) | (volume & 0x3F), duration & 0xFFFF)


class DtmfReceiver:
    """Sans-I/O: feed each telephone-event packet's timestamp and payload; get completed events back."""

    def __init__(self) -> None:
        self._current: tuple[int, EventPayload] | None = None  # (timestamp, latest payload) of the open event
        self._done: deque[int] = deque(maxlen=32)  # timestamps already reported: late or repeated packets
        self._latest: int | None = None  # newest event start seen; anything older is a straggler
        self.malformed = 0

    def push(self, timestamp: int, payload: bytes | bytearray | memoryview) -> list[DtmfEvent]:
        try:
            blocks = parse_events(payload)
        except ValueError:
            self.malformed += 1
            return []
        # With several blocks the last is the current event; earlier ones are redundant copies.
        block = blocks[-1]
        if timestamp in self._done:
            return []  # an end retransmission, or a late packet of a finished event
        if self._latest is not None and _ts_before(timestamp, self._latest):
            return []  # a straggler from before the newest event: its own event is over
        self._latest = timestamp
        out: list[DtmfEvent] = []
        cur = self._current
        if cur is not None and cur[0] != timestamp:
            out.append(self._close(ended=False))
        cur = self._current
        if cur is None or block.duration >= cur[1].duration or block.end:
            self._current = (timestamp, block)
        if block.end:
            out.append(self._close(ended=True))
        return out

    def flush(self) -> list[DtmfEvent]:
        """End of stream: report an event whose end packets never came."""
        return [self._close(ended=False)] if self._current is not None else []

    def _close(self, ended: bool) -> DtmfEvent:
        assert self._current is not None
        ts, block = self._current
        self._current = None
        self._done.append(ts)
        return DtmfEvent(event_digit(block.event), block.event, ts, block.duration, block.volume, ended)


def _ts_before(a: int, b: int) -> bool:
    return 0 < ((b - a) & 0xFFFFFFFF) < 0x80000000
