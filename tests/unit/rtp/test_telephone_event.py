"""RFC 4733 telephone-event parsing and one DtmfEvent per key press."""

from __future__ import annotations

import pytest

from rtp.codecs.telephone_event import (
    DtmfEvent,
    DtmfReceiver,
    EventPayload,
    build_event,
    event_digit,
    parse_events,
)


def test_parse_fields() -> None:
    # Event 5, end bit, volume 10, duration 1600 (RFC 4733 2.3 layout).
    assert parse_events(b"\x05\x8a\x06\x40") == [EventPayload(5, True, 10, 1600)]
    assert parse_events(build_event(11, 320, volume=7)) == [EventPayload(11, False, 7, 320)]
    assert parse_events(b"\x01\x00\x00\xa0" * 2)[1].event == 1  # several blocks
    for bad in (b"", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05"):
        with pytest.raises(ValueError):
            parse_events(bad)


def test_digits() -> None:
    assert [event_digit(e) for e in range(17)] == [*"0123456789*#ABCD", "flash"]
    assert event_digit(40) is None


def key_press(rx: DtmfReceiver, event: int, ts: int, steps: int = 5, ends: int = 3) -> list[DtmfEvent]:
    out = []
    for i in range(1, steps + 1):
        out += rx.push(ts, build_event(event, 160 * i))
    for _ in range(ends):
        out += rx.push(ts, build_event(event, 160 * steps, end=True))
    return out


def test_one_event_per_press_despite_three_end_packets() -> None:
    rx = DtmfReceiver()
    assert key_press(rx, 1, 8000) == [DtmfEvent("1", 1, 8000, 800, 10)]
    assert key_press(rx, 11, 16000, steps=8) == [DtmfEvent("#", 11, 16000, 1280, 10)]
    assert rx.flush() == []


def test_same_digit_twice_is_two_events() -> None:
    rx = DtmfReceiver()
    events = key_press(rx, 4, 1000) + key_press(rx, 4, 3000)
    assert [(e.digit, e.start_timestamp) for e in events] == [("4", 1000), ("4", 3000)]


def test_lost_end_packets_reported_by_next_event_or_flush() -> None:
    rx = DtmfReceiver()
    assert key_press(rx, 7, 100, ends=0) == []
    events = key_press(rx, 8, 5000, ends=0)
    assert events == [DtmfEvent("7", 7, 100, 800, 10, ended=False)]
    assert rx.flush() == [DtmfEvent("8", 8, 5000, 800, 10, ended=False)]
    assert rx.flush() == []


def test_reordered_and_late_packets() -> None:
    rx = DtmfReceiver()
    assert rx.push(2**32 - 100, build_event(2, 480)) == []
    assert rx.push(2**32 - 100, build_event(2, 320)) == []  # older update must not shrink the duration
    [ev] = rx.push(2**32 - 100, build_event(2, 640, end=True))
    assert ev.duration_samples == 640 and ev.start_timestamp == 2**32 - 100
    key_press(rx, 3, 60)  # timestamp wrapped past 2**32
    assert rx.push(2**32 - 100, build_event(2, 640, end=True)) == []  # late retransmission
    assert rx.push(2**32 - 200, build_event(9, 160)) == []  # straggler from before: ignored
    assert rx.flush() == []


def test_malformed_counted() -> None:
    rx = DtmfReceiver()
    assert rx.push(1, b"\x01") == []
    assert rx.malformed == 1
