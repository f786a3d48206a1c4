"""RTP packet parsing (RFC 3550 5.1), building, and RTP/RTCP/STUN/DTLS demultiplexing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtp.packet import (
    MAX_PACKET_SIZE,
    PacketKind,
    RtpError,
    RtpErrorReason,
    RtpPacket,
    build_rtp,
    classify,
    is_rtcp,
    parse_rtp,
)


def test_minimal_packet_round_trip() -> None:
    raw = build_rtp(0, 1234, 0xDEADBEEF, 0x11223344, b"\xff" * 160, marker=True)
    p = parse_rtp(raw)
    assert p == RtpPacket(0, True, 1234, 0xDEADBEEF, 0x11223344, b"\xff" * 160)
    assert len(raw) == 172


def test_all_header_features_round_trip() -> None:
    raw = build_rtp(96, 65535, 2**32 - 1, 1, b"abc", csrcs=(7, 8), extension_profile=0xBEDE,
                    extension=b"\x10\xaa", padding=5)
    p = parse_rtp(raw)
    assert (p.payload_type, p.sequence, p.timestamp, p.ssrc) == (96, 65535, 2**32 - 1, 1)
    assert p.csrcs == (7, 8)
    assert p.extension_profile == 0xBEDE and p.extension == b"\x10\xaa\0\0"
    assert p.payload == b"abc" and p.padding == 5


def test_memoryview_payload_is_a_view() -> None:
    raw = bytearray(build_rtp(8, 1, 2, 3, b"\x01\x02"))
    p = parse_rtp(memoryview(raw))
    assert isinstance(p.payload, memoryview) and bytes(p.payload) == b"\x01\x02"


def test_empty_payload_and_padding_equal_to_rest_are_valid() -> None:
    assert parse_rtp(build_rtp(0, 1, 2, 3, b"")).payload == b""
    p = parse_rtp(build_rtp(0, 1, 2, 3, b"", padding=4))
    assert p.payload == b"" and p.padding == 4


def _reason(data: bytes) -> RtpErrorReason:
    with pytest.raises(RtpError) as info:
        parse_rtp(data)
    return info.value.reason


@pytest.mark.parametrize("size", [0, 1, 11])
def test_truncated(size: int) -> None:
    assert _reason(build_rtp(0, 1, 2, 3, b"")[:size]) is RtpErrorReason.TRUNCATED


@pytest.mark.parametrize("version", [0, 1, 3])
def test_bad_version(version: int) -> None:
    raw = bytearray(build_rtp(0, 1, 2, 3, b"x"))
    raw[0] = (raw[0] & 0x3F) | (version << 6)
    assert _reason(bytes(raw)) is RtpErrorReason.BAD_VERSION


def test_too_large() -> None:
    assert _reason(build_rtp(0, 1, 2, 3, b"\0" * MAX_PACKET_SIZE)) is RtpErrorReason.TOO_LARGE
    assert parse_rtp(build_rtp(0, 1, 2, 3, b"\0" * 100), max_size=112).payload == b"\0" * 100


def test_csrc_count_must_fit() -> None:
    raw = bytearray(build_rtp(0, 1, 2, 3, b"\0" * 8))
    raw[0] |= 3  # claims 3 CSRCs = 12 bytes, only 8 follow
    assert _reason(bytes(raw)) is RtpErrorReason.BAD_CSRC


def test_extension_header_and_length_must_fit() -> None:
    raw = bytearray(build_rtp(0, 1, 2, 3, b"\0\0"))
    raw[0] |= 0x10
    assert _reason(bytes(raw)) is RtpErrorReason.BAD_EXTENSION  # not even the 4-byte header
    raw = bytearray(build_rtp(0, 1, 2, 3, b"")) + struct.pack("!HH", 0xBEDE, 2) + b"\0" * 4
    raw[0] |= 0x10
    assert _reason(bytes(raw)) is RtpErrorReason.BAD_EXTENSION  # 2 words announced, 1 present


@pytest.mark.parametrize("count", [0, 6, 255])
def test_padding_count_must_not_lie(count: int) -> None:
    raw = bytearray(build_rtp(0, 1, 2, 3, b"\0\0\0\0" + bytes([count])))
    raw[0] |= 0x20  # 5 bytes after the header; count 0 or > 5 is a lie
    assert _reason(bytes(raw)) is RtpErrorReason.BAD_PADDING


def test_padding_cannot_reach_into_extension() -> None:
    raw = bytearray(build_rtp(0, 1, 2, 3, b"", extension=b"\0\0\0\x04"))
    raw[0] |= 0x20
    assert _reason(bytes(raw)) is RtpErrorReason.BAD_PADDING


def test_error_reasons_are_strings_for_counters() -> None:
    err = RtpError(RtpErrorReason.TRUNCATED, "3 bytes")
    assert err.reason == "truncated" and isinstance(err, ValueError)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_rtp_error(data: bytes) -> None:
    try:
        p = parse_rtp(data)
    except RtpError as e:
        assert isinstance(e.reason, RtpErrorReason)
        return
    assert 0 <= p.payload_type < 128 and 0 <= p.sequence < 65536 and 0 <= p.timestamp < 2**32
    assert 12 + 4 * len(p.csrcs) + len(p.payload) + p.padding <= len(data)


@settings(max_examples=1000, deadline=None)
@given(st.binary(min_size=12, max_size=120).map(lambda b: bytes([0x80 | (b[0] & 0x3F)]) + b[1:]))
def test_version_2_headers_with_random_flags(data: bytes) -> None:
    # Version 2 forced, so the padding, extension and CSRC checks are reached far more often.
    try:
        p = parse_rtp(data)
    except RtpError:
        return
    assert bytes(p.payload) in data


@settings(max_examples=300, deadline=None)
@given(pt=st.integers(0, 127), seq=st.integers(0, 65535), ts=st.integers(0, 2**32 - 1),
       ssrc=st.integers(0, 2**32 - 1), payload=st.binary(max_size=64), marker=st.booleans(),
       csrcs=st.lists(st.integers(0, 2**32 - 1), max_size=15), padding=st.integers(0, 255))
def test_build_parse_round_trip(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool,
                                csrcs: list[int], padding: int) -> None:
    p = parse_rtp(build_rtp(pt, seq, ts, ssrc, payload, marker=marker, csrcs=csrcs, padding=padding))
    assert (p.payload_type, p.marker, p.sequence, p.timestamp, p.ssrc, p.payload, p.csrcs, p.padding) == (
        pt, marker, seq, ts, ssrc, payload, tuple(csrcs), padding)


def test_demux_rtp_rtcp_rfc5761() -> None:
    assert not is_rtcp(build_rtp(0, 1, 2, 3, b"x"))
    assert not is_rtcp(build_rtp(127, 1, 2, 3, b"x", marker=True))  # 0xFF: outside 192-223
    assert is_rtcp(b"\x80\xc8\x00\x06")  # SR
    assert is_rtcp(b"\x81\xc9\x00\x07")  # RR
    assert is_rtcp(b"\x81\xcb\x00\x01")  # BYE
    assert not is_rtcp(b"\x80")


def test_classify_rfc7983() -> None:
    assert classify(build_rtp(0, 1, 2, 3, b"x")) is PacketKind.RTP
    assert classify(b"\x80\xc9\x00\x01\0\0\0\0") is PacketKind.RTCP
    assert classify(b"\x00\x01\x00\x00") is PacketKind.STUN
    assert classify(b"\x16\xfe\xfd") is PacketKind.DTLS
    assert classify(b"") is PacketKind.UNKNOWN
    assert classify(b"\xff") is PacketKind.UNKNOWN
