"""RTP packets (RFC 3550 section 5.1): parse, build, and tell RTP from RTCP (RFC 5761) and other muxed traffic.

Sans-I/O: bytes in, a `RtpPacket` (a NamedTuple: cheap to create on the hot path) or a typed `RtpError` out.
Parsing never raises anything but `RtpError`, whatever the input; callers count errors per `reason`.

The fixed header is read with one precompiled `struct` call. The payload is a slice of the input, so a
`memoryview` input gives a zero-copy payload and `bytes` input gives `bytes`.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

__all__ = [
    "MAX_PACKET_SIZE",
    "PacketKind",
    "RtpError",
    "RtpErrorReason",
    "RtpPacket",
    "build_rtp",
    "classify",
    "is_rtcp",
    "parse_rtp",
]

# Larger than any sane audio packet (L16 48 kHz stereo 40 ms is 7,680 bytes) yet small enough to bound memory.
MAX_PACKET_SIZE = 16384

_HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")
_unpack_header = _HEADER.unpack_from
_unpack_ext = _EXT_HEADER.unpack_from

Buffer = bytes | bytearray | memoryview


class RtpErrorReason(enum.StrEnum):
    TRUNCATED = "truncated"
    BAD_VERSION = "bad_version"
    BAD_PADDING = "bad_padding"
    BAD_EXTENSION = "bad_extension"
    BAD_CSRC = "bad_csrc"
    TOO_LARGE = "too_large"


class RtpError(ValueError):
    """A datagram that is not a valid RTP packet; `reason` is what a metrics counter is keyed by."""

    def __init__(self, reason: RtpErrorReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason


class RtpPacket(NamedTuple):
    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    payload: Buffer
    csrcs: tuple[int, ...] = ()
    extension_profile: int | None = None
    extension: bytes = b""
    padding: int = 0  # padding bytes that followed the payload (already removed from it)


def parse_rtp(data: Buffer, max_size: int = MAX_PACKET_SIZE) -> RtpPacket:
    """Parse one RTP packet; raise `RtpError` (and nothing else) if it is malformed."""
    size = len(data)
    if size < 12:
        raise RtpError(RtpErrorReason.TRUNCATED, f"{size} bytes, header needs 12")
    if size > max_size:
        raise RtpError(RtpErrorReason.TOO_LARGE, f"{size} bytes > {max_size}")
    b0, b1, seq, ts, ssrc = _unpack_header(data, 0)
    if b0 & 0xC0 != 0x80:
        raise RtpError(RtpErrorReason.BAD_VERSION, f"version {b0 >> 6}")
    if b0 & 0x3F == 0:
        # The common case (no padding, extension or CSRC) stays a single branch.
        return RtpPacket(b1 & 0x7F, b1 > 0x7F, seq, ts, ssrc, data[12:])
    offset = 12
    csrcs: tuple[int, ...] = ()
    cc = b0 & 0x0F
    if cc:
        offset += 4 * cc
        if offset > size:
            raise RtpError(RtpErrorReason.BAD_CSRC, f"{cc} CSRCs do not fit in {size} bytes")
        csrcs = struct.unpack_from(f"!{cc}I", data, 12)
    profile: int | None = None
    extension = b""
    if b0 & 0x10:
        if offset + 4 > size:
            raise RtpError(RtpErrorReason.BAD_EXTENSION, "extension header truncated")
        profile, words = _unpack_ext(data, offset)
        start = offset + 4
        offset = start + 4 * words
        if offset > size:
            raise RtpError(RtpErrorReason.BAD_EXTENSION, f"extension of {words} words does not fit")
        extension = bytes(data[start:offset])
    end = size
    padding = 0
    if b0 & 0x20:
        padding = data[-1]
        # A zero count or one reaching into the headers is a lie (RFC 3550 5.1: the count includes itself).
        if padding == 0 or padding > size - offset:
            raise RtpError(RtpErrorReason.BAD_PADDING, f"padding count {padding}, {size - offset} bytes after headers")
        end = size - padding
    return RtpPacket(b1 & 0x7F, b1 > 0x7F, seq, ts, ssrc, data[offset:end], csrcs, profile, extension, padding)


def build_rtp(
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    *,
    marker: bool = False,
    csrcs: tuple[int, ...] | list[int] = (),
    extension_profile: int | None = None,
    extension: bytes = b"",
    padding: int = 0,
) -> bytes:
    """Serialise an RTP packet (for tests and the load generator). `extension` is padded to 32-bit words."""
    if not 0 <= payload_type <= 127:
        raise ValueError(f"payload type {payload_type} out of range")
    if len(csrcs) > 15:
        raise ValueError("at most 15 CSRCs")
    if not 0 <= padding <= 255:
        raise ValueError("padding is 0..255 bytes")
    b0 = 0x80 | len(csrcs)
    parts = []
    if extension_profile is not None or extension:
        b0 |= 0x10
        ext = extension + b"\0" * (-len(extension) % 4)
        parts.append(_EXT_HEADER.pack(extension_profile or 0, len(ext) // 4) + ext)
    if padding:
        b0 |= 0x20
    header = _HEADER.pack(b0, (0x80 if marker else 0) | payload_type, sequence & 0xFFFF,
                          timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)
    if csrcs:
        header += struct.pack(f"!{len(csrcs)}I", *csrcs)
    tail = b"\0" * (padding - 1) + bytes([padding]) if padding else b""
    return header + b"".join(parts) + bytes(payload) + tail


class PacketKind(enum.Enum):
    """What arrived on a media port (RFC 7983 first-byte ranges, then RFC 5761 for RTP vs RTCP)."""

    RTP = "rtp"
    RTCP = "rtcp"
    STUN = "stun"
    DTLS = "dtls"
    UNKNOWN = "unknown"


def is_rtcp(data: Buffer) -> bool:
    """RFC 5761 section 4: with RTP and RTCP on one port, RTCP packet types 192-223 occupy the byte where
    RTP has marker + payload type 64-95, which RTP must therefore not use."""
    return len(data) >= 2 and data[0] & 0xC0 == 0x80 and 192 <= data[1] <= 223


def classify(data: Buffer) -> PacketKind:
    if not data:
        return PacketKind.UNKNOWN
    first = data[0]
    if first < 4:
        return PacketKind.STUN
    if 20 <= first <= 63:
        return PacketKind.DTLS
    if 128 <= first <= 191:
        return PacketKind.RTCP if is_rtcp(data) else PacketKind.RTP
    return PacketKind.UNKNOWN
