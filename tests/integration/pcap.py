"""A small libpcap writer for RTP that sipp replays with `play_pcap_audio`.

Why build captures instead of keeping binary ones in the repo: the test owns every byte that goes on the wire
(payload, SSRC, sequence and timestamp starts, ports), so it can compare the recording with its source exactly.

Format: classic pcap (magic 0xa1b2c3d4, microsecond timestamps), LINKTYPE_ETHERNET, each frame Ethernet + IPv4 +
UDP with correct lengths and checksums. sipp reads only the UDP part: it keeps each packet's destination port
OFFSET from the lowest destination port in the capture and adds it to the media port of the SDP answer (and to
its own `-mp` port for the source), so streams on B and B+2 reach the answerer's p and p+2.
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from rtp.packet import build_rtp

__all__ = [
    "LINKTYPE_ETHERNET",
    "RtpStream",
    "build_rtp_pcap",
    "internet_checksum",
    "rtp_starts",
    "udp_frame",
    "write_pcap",
]

LINKTYPE_ETHERNET = 1
PCAP_MAGIC = 0xA1B2C3D4
_GLOBAL_HEADER = struct.Struct("<IHHiIII")  # magic, major, minor, thiszone, sigfigs, snaplen, network
_RECORD_HEADER = struct.Struct("<IIII")  # ts_sec, ts_usec, incl_len, orig_len
_ETHERNET = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_SNAPLEN = 65535

# Locally administered MACs: nothing reads them, but the frames stay valid Ethernet.
_SRC_MAC = bytes.fromhex("020000000001")
_DST_MAC = bytes.fromhex("020000000002")


class RtpStream(NamedTuple):
    """One RTP stream of a capture: G.711-style audio (one byte per sample) sent to `dst_port`."""

    audio: bytes
    dst_port: int
    ssrc: int
    payload_type: int = 0


def internet_checksum(data: bytes) -> int:
    """RFC 1071 one's complement sum, as used by the IPv4 and UDP headers."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(
    payload: bytes, *, src: tuple[str, int], dst: tuple[str, int], identification: int = 0
) -> bytes:
    """An Ethernet frame carrying one IPv4/UDP datagram (DF set, TTL 64, both checksums computed)."""
    src_ip, dst_ip = socket.inet_aton(src[0]), socket.inet_aton(dst[0])
    udp_len = _UDP.size + len(payload)
    pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, socket.IPPROTO_UDP, udp_len)
    udp_sum = internet_checksum(pseudo + _UDP.pack(src[1], dst[1], udp_len, 0) + payload) or 0xFFFF
    udp = _UDP.pack(src[1], dst[1], udp_len, udp_sum)
    total = _IPV4.size + udp_len
    fields = (0x45, 0, total, identification & 0xFFFF, 0x4000, 64, socket.IPPROTO_UDP)
    header = _IPV4.pack(*fields, 0, src_ip, dst_ip)
    ip = _IPV4.pack(*fields, internet_checksum(header), src_ip, dst_ip)
    return _ETHERNET.pack(_DST_MAC, _SRC_MAC, 0x0800) + ip + udp + payload


def write_pcap(
    path: Path, records: Iterable[tuple[int, bytes]], *, linktype: int = LINKTYPE_ETHERNET
) -> None:
    """Write (timestamp in microseconds since the epoch, frame) records as a classic little-endian pcap."""
    with path.open("wb") as f:
        f.write(_GLOBAL_HEADER.pack(PCAP_MAGIC, 2, 4, 0, 0, _SNAPLEN, linktype))
        for ts_us, frame in records:
            if len(frame) > _SNAPLEN:
                raise ValueError(f"frame of {len(frame)} bytes exceeds the snaplen {_SNAPLEN}")
            sec, usec = divmod(ts_us, 1_000_000)
            f.write(_RECORD_HEADER.pack(sec, usec, len(frame), len(frame)))
            f.write(frame)


def rtp_starts(ssrc: int) -> tuple[int, int]:
    """Starts that look random (RFC 3550 5.1) but are fixed per SSRC, so a failing run can be replayed."""
    rng = random.Random(ssrc)
    return rng.randrange(1 << 16), rng.randrange(1 << 32)


def build_rtp_pcap(
    path: Path,
    streams: Sequence[RtpStream | tuple[bytes, int, int, int]],
    *,
    ptime_ms: int = 20,
    clock_rate: int = 8000,
    start: float = 1_700_000_000.0,
    src_ip: str = "10.0.0.1",
    dst_ip: str = "10.0.0.2",
    src_port: int = 30000,
) -> list[int]:
    """Write `streams` as RTP in one capture, packets of all streams interleaved in time order.

    Each stream starts at `start` (seconds since the epoch) and sends one packet every `ptime_ms` carrying
    `clock_rate * ptime_ms / 1000` bytes of its audio (the last packet carries what is left); the sequence number
    goes up by 1 and the RTP timestamp by the samples of the previous packet, from a start derived from the SSRC;
    the first packet has the marker bit. Stream k is sent from `src_port + 2k`. Returns the packet count per
    stream.
    """
    samples = clock_rate * ptime_ms // 1000
    if samples <= 0:
        raise ValueError(f"ptime {ptime_ms} ms at {clock_rate} Hz gives no samples")
    events: list[tuple[int, int, bytes]] = []  # (time in us, stream index, frame)
    counts: list[int] = []
    ident = 0
    for index, raw in enumerate(streams):
        stream = RtpStream(*raw)
        seq, ts = rtp_starts(stream.ssrc)
        chunks = [stream.audio[i : i + samples] for i in range(0, len(stream.audio), samples)]
        counts.append(len(chunks))
        for n, chunk in enumerate(chunks):
            rtp = build_rtp(stream.payload_type, seq + n, ts + n * samples, stream.ssrc, chunk, marker=n == 0)
            frame = udp_frame(
                rtp, src=(src_ip, src_port + 2 * index), dst=(dst_ip, stream.dst_port), identification=ident
            )
            ident += 1
            events.append((round(start * 1_000_000) + n * ptime_ms * 1000, index, frame))
    events.sort(key=lambda e: (e[0], e[1]))
    write_pcap(path, ((t, frame) for t, _, frame in events))
    return counts
