"""RTCP parsing and building (RFC 3550 section 6): SR, RR, SDES, BYE, compound packets, errors."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    RtcpErrorReason,
    RtcpUnknown,
    SdesChunk,
    SenderReport,
    SourceDescription,
    parse_rtcp,
    serialize_rtcp,
)

BLOCK = ReportBlock(0xCAFE, 64, 1234, 0x1FFFF, 77, 0x12345678, 65536)


def test_sender_report_by_hand() -> None:
    # Built byte by byte, not with serialize_rtcp, so the parser is checked against the RFC layout.
    body = struct.pack("!IQIII", 0x11111111, (3900000000 << 32) | 0x80000000, 160000, 500, 80000)
    block = struct.pack("!IB", 0x22222222, 25) + (-3 & 0xFFFFFF).to_bytes(3, "big")
    block += struct.pack("!IIII", 70000, 12, 0xAABBCCDD, 0x10000)
    raw = struct.pack("!BBH", 0x81, 200, (len(body) + len(block)) // 4) + body + block
    [sr] = parse_rtcp(raw)
    assert isinstance(sr, SenderReport)
    assert sr.ssrc == 0x11111111 and sr.rtp_timestamp == 160000
    assert sr.packet_count == 500 and sr.octet_count == 80000
    assert sr.ntp_seconds == pytest.approx(3900000000.5)
    [b] = sr.reports
    assert (b.ssrc, b.fraction_lost, b.cumulative_lost, b.highest_sequence, b.jitter) == (0x22222222, 25, -3, 70000, 12)
    assert b.fraction_lost_ratio == pytest.approx(25 / 256)
    assert (b.last_sr, b.delay_since_last_sr) == (0xAABBCCDD, 0x10000)


def test_compound_rr_sdes_bye_round_trip() -> None:
    packets = [
        ReceiverReport(0x1234, (BLOCK, ReportBlock(1, 0, 0, 2, 3, 4, 5))),
        SourceDescription((SdesChunk(0x1234, ((1, b"rec@example.com"), (2, b"Recorder"))),
                           SdesChunk(0x99, ((1, b"x"),)))),
        Bye((0x1234, 0x99), "call ended"),
    ]
    raw = serialize_rtcp(packets)
    assert len(raw) % 4 == 0
    parsed = parse_rtcp(raw)
    assert parsed == packets
    assert parsed[1].chunks[0].cname == "rec@example.com"


def test_sender_report_round_trip_and_empty_rr() -> None:
    packets = [SenderReport(5, 2**63, 2**32 - 1, 1, 2, (BLOCK,)), ReceiverReport(6)]
    assert parse_rtcp(serialize_rtcp(packets)) == packets


def test_unknown_types_are_kept_not_rejected() -> None:
    app = struct.pack("!BBH", 0x81, 204, 2) + b"\0\0\0\x01NAME"
    raw = serialize_rtcp([ReceiverReport(1)]) + app
    rr, unknown = parse_rtcp(raw)
    assert isinstance(unknown, RtcpUnknown) and unknown.packet_type == 204 and unknown.count == 1


def test_padding_on_last_packet() -> None:
    raw = bytearray(serialize_rtcp([Bye((7,))]) + b"\0\0\0\x04")
    raw[0] |= 0x20
    raw[3] += 1  # length covers the padding
    assert parse_rtcp(bytes(raw)) == [Bye((7,))]


def _reason(raw: bytes) -> RtcpErrorReason:
    with pytest.raises(RtcpError) as info:
        parse_rtcp(raw)
    return info.value.reason


def test_errors() -> None:
    good = serialize_rtcp([ReceiverReport(1, (BLOCK,))])
    assert _reason(good[:3]) is RtcpErrorReason.TRUNCATED
    assert _reason(b"\x40" + good[1:]) is RtcpErrorReason.BAD_VERSION
    assert _reason(good[:-4]) is RtcpErrorReason.BAD_LENGTH
    assert _reason(good + b"\x80\xc9") is RtcpErrorReason.TRUNCATED
    bad_count = bytearray(good)
    bad_count[0] |= 2  # claims 3 report blocks
    bad_count[3] += 0
    assert _reason(bytes(bad_count)) is RtcpErrorReason.BAD_REPORT
    sdes = bytearray(serialize_rtcp([SourceDescription((SdesChunk(1, ((1, b"abc"),)),))]))
    sdes[9] = 200  # item length overruns
    assert _reason(bytes(sdes)) is RtcpErrorReason.BAD_SDES
    bye = bytearray(serialize_rtcp([Bye((1,), "x")]))
    bye[8] = 50
    assert _reason(bytes(bye)) is RtcpErrorReason.BAD_BYE
    padded = bytearray(good)
    padded[0] |= 0x20  # padding bit with a zero last byte
    assert _reason(bytes(padded)) is RtcpErrorReason.BAD_PADDING


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_parse_or_rtcp_error(data: bytes) -> None:
    with contextlib.suppress(RtcpError):
        parse_rtcp(data)


@settings(max_examples=1000, deadline=None)
@given(ptype=st.integers(200, 204), count=st.integers(0, 31), body=st.binary(max_size=80))
def test_plausible_headers_with_random_bodies(ptype: int, count: int, body: bytes) -> None:
    body += b"\0" * (-len(body) % 4)
    raw = struct.pack("!BBH", 0x80 | count, ptype, len(body) // 4) + body
    with contextlib.suppress(RtcpError):
        parse_rtcp(raw)
