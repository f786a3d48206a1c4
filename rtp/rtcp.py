"""RTCP (RFC 3550 section 6): parse compound packets into SR, RR, SDES and BYE; build them for tests and reports.

Sans-I/O. `parse_rtcp` raises only `RtcpError` (with a reason, like `RtpError`). Packet types it does not know
(APP, RTPFB, PSFB, XR ...) come back as `RtcpUnknown` so a compound packet is never rejected for them.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

__all__ = [
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpError",
    "RtcpErrorReason",
    "RtcpPacket",
    "RtcpUnknown",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "parse_rtcp",
    "serialize_rtcp",
]

SR, RR, SDES, BYE = 200, 201, 202, 203
SDES_CNAME = 1

_HEADER = struct.Struct("!BBH")
_SR_INFO = struct.Struct("!IQIII")  # sender SSRC, NTP timestamp, RTP timestamp, packet count, octet count
_BLOCK = struct.Struct("!IB3sIIII")

Buffer = bytes | bytearray | memoryview


class RtcpErrorReason(enum.StrEnum):
    TRUNCATED = "truncated"
    BAD_VERSION = "bad_version"
    BAD_LENGTH = "bad_length"
    BAD_PADDING = "bad_padding"
    BAD_REPORT = "bad_report"
    BAD_SDES = "bad_sdes"
    BAD_BYE = "bad_bye"


class RtcpError(ValueError):
    def __init__(self, reason: RtcpErrorReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int  # fixed point /256, as on the wire
    cumulative_lost: int  # signed 24-bit (duplicates can make it negative)
    highest_sequence: int  # extended highest sequence number received
    jitter: int  # interarrival jitter in timestamp units
    last_sr: int  # middle 32 bits of the NTP timestamp of the last SR
    delay_since_last_sr: int  # 1/65536 s

    @property
    def fraction_lost_ratio(self) -> float:
        return self.fraction_lost / 256.0


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int  # 64-bit NTP format: seconds since 1900 << 32 | fraction
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    @property
    def ntp_seconds(self) -> float:
        """NTP time as seconds since 1900 (subtract 2208988800 for the Unix epoch)."""
        return self.ntp_timestamp / 2**32


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class SdesChunk:
    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()  # (item type, value): CNAME=1, NAME=2, EMAIL=3 ...

    @property
    def cname(self) -> str | None:
        for kind, value in self.items:
            if kind == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None


@dataclass(frozen=True, slots=True)
class SourceDescription:
    chunks: tuple[SdesChunk, ...] = ()


@dataclass(frozen=True, slots=True)
class Bye:
    ssrcs: tuple[int, ...] = ()
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RtcpUnknown:
    packet_type: int
    count: int  # the 5-bit field after the padding bit (RC / SC / FMT / subtype)
    body: bytes = field(repr=False, default=b"")


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | RtcpUnknown


def parse_rtcp(data: Buffer) -> list[RtcpPacket]:
    """Parse a (compound) RTCP datagram into its packets, in order."""
    data = bytes(data)
    if len(data) < 4:
        raise RtcpError(RtcpErrorReason.TRUNCATED, f"{len(data)} bytes")
    packets: list[RtcpPacket] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise RtcpError(RtcpErrorReason.TRUNCATED, "trailing bytes shorter than a header")
        b0, ptype, words = _HEADER.unpack_from(data, pos)
        if b0 >> 6 != 2:
            raise RtcpError(RtcpErrorReason.BAD_VERSION, f"version {b0 >> 6}")
        end = pos + 4 + 4 * words
        if end > len(data):
            raise RtcpError(RtcpErrorReason.BAD_LENGTH, f"length {words} words overruns the datagram")
        body = data[pos + 4 : end]
        if b0 & 0x20:
            # RFC 3550 6.4.1: only the last packet of a compound may be padded.
            pad = body[-1] if body else 0
            if end != len(data) or pad == 0 or pad > len(body):
                raise RtcpError(RtcpErrorReason.BAD_PADDING, f"padding {pad}")
            body = body[:-pad]
        packets.append(_parse_one(ptype, b0 & 0x1F, body))
        pos = end
    return packets


def _parse_one(ptype: int, count: int, body: bytes) -> RtcpPacket:
    if ptype == SR:
        if len(body) < _SR_INFO.size + count * _BLOCK.size:
            raise RtcpError(RtcpErrorReason.BAD_REPORT, f"SR with {count} blocks in {len(body)} bytes")
        ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(body, 0)
        return SenderReport(ssrc, ntp, rtp_ts, packets, octets, _blocks(body, _SR_INFO.size, count))
    if ptype == RR:
        if len(body) < 4 + count * _BLOCK.size:
            raise RtcpError(RtcpErrorReason.BAD_REPORT, f"RR with {count} blocks in {len(body)} bytes")
        return ReceiverReport(struct.unpack_from("!I", body, 0)[0], _blocks(body, 4, count))
    if ptype == SDES:
        return SourceDescription(_sdes_chunks(body, count))
    if ptype == BYE:
        if len(body) < 4 * count:
            raise RtcpError(RtcpErrorReason.BAD_BYE, f"{count} SSRCs in {len(body)} bytes")
        ssrcs = struct.unpack_from(f"!{count}I", body, 0)
        reason = None
        pos = 4 * count
        if pos < len(body):
            n = body[pos]
            if pos + 1 + n > len(body):
                raise RtcpError(RtcpErrorReason.BAD_BYE, "reason overruns the packet")
            reason = body[pos + 1 : pos + 1 + n].decode("utf-8", "replace")
        return Bye(ssrcs, reason)
    return RtcpUnknown(ptype, count, body)


def _blocks(body: bytes, offset: int, count: int) -> tuple[ReportBlock, ...]:
    blocks = []
    for i in range(count):
        ssrc, fraction, lost3, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(body, offset + i * _BLOCK.size)
        lost = int.from_bytes(lost3, "big", signed=True)
        blocks.append(ReportBlock(ssrc, fraction, lost, highest, jitter, lsr, dlsr))
    return tuple(blocks)


def _sdes_chunks(body: bytes, count: int) -> tuple[SdesChunk, ...]:
    chunks = []
    pos = 0
    for _ in range(count):
        if pos + 4 > len(body):
            raise RtcpError(RtcpErrorReason.BAD_SDES, "chunk truncated")
        ssrc = struct.unpack_from("!I", body, pos)[0]
        pos += 4
        items = []
        while True:
            if pos >= len(body):
                raise RtcpError(RtcpErrorReason.BAD_SDES, "item list not terminated")
            kind = body[pos]
            if kind == 0:
                # The END item, then null padding to the next 32-bit boundary.
                pos = (pos + 4) & ~3
                break
            if pos + 2 > len(body) or pos + 2 + body[pos + 1] > len(body):
                raise RtcpError(RtcpErrorReason.BAD_SDES, "item overruns the packet")
            n = body[pos + 1]
            items.append((kind, body[pos + 2 : pos + 2 + n]))
            pos += 2 + n
        chunks.append(SdesChunk(ssrc, tuple(items)))
    return tuple(chunks)


def serialize_rtcp(packets: list[RtcpPacket] | tuple[RtcpPacket, ...]) -> bytes:
    """Build a compound RTCP datagram (the receiver's reports; tests)."""
    return b"".join(_serialize_one(p) for p in packets)


def _wrap(ptype: int, count: int, body: bytes) -> bytes:
    if count > 31:
        raise ValueError("at most 31 items per RTCP packet")
    body += b"\0" * (-len(body) % 4)
    return _HEADER.pack(0x80 | count, ptype, len(body) // 4) + body


def _block_bytes(b: ReportBlock) -> bytes:
    lost = (b.cumulative_lost & 0xFFFFFF).to_bytes(3, "big")
    return _BLOCK.pack(b.ssrc, b.fraction_lost, lost, b.highest_sequence, b.jitter, b.last_sr, b.delay_since_last_sr)


def _serialize_one(p: RtcpPacket) -> bytes:
    if isinstance(p, SenderReport):
        info = _SR_INFO.pack(p.ssrc, p.ntp_timestamp, p.rtp_timestamp, p.packet_count, p.octet_count)
        return _wrap(SR, len(p.reports), info + b"".join(_block_bytes(b) for b in p.reports))
    if isinstance(p, ReceiverReport):
        return _wrap(RR, len(p.reports), struct.pack("!I", p.ssrc) + b"".join(_block_bytes(b) for b in p.reports))
    if isinstance(p, SourceDescription):
        body = b""
        for chunk in p.chunks:
            items = b"".join(bytes([k, len(v)]) + v for k, v in chunk.items) + b"\0"
            body += struct.pack("!I", chunk.ssrc) + items + b"\0" * (-len(items) % 4)
        return _wrap(SDES, len(p.chunks), body)
    if isinstance(p, Bye):
        body = struct.pack(f"!{len(p.ssrcs)}I", *p.ssrcs)
        if p.reason is not None:
            raw = p.reason.encode()[:255]
            body += bytes([len(raw)]) + raw
        return _wrap(BYE, len(p.ssrcs), body)
    return _wrap(p.packet_type, p.count, p.body)
