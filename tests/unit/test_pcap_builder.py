"""The pcap writer that feeds sipp's play_pcap_audio (tests/integration/pcap.py), read back with struct alone.

The media test compares recordings with the audio put into the capture, so the capture itself must be right:
valid pcap/Ethernet/IPv4/UDP framing (sipp takes the UDP length as the packet length), one RTP packet per
20 ms per stream, sequence and timestamp steps, marker on the first packet, and time-ordered interleaving.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import pytest

from rtp.packet import RtpPacket, parse_rtp
from tests.integration.pcap import RtpStream, build_rtp_pcap, internet_checksum, rtp_starts, udp_frame

START = 1_700_000_000.25


class Frame(NamedTuple):
    ts_us: int
    src: tuple[str, int]
    dst: tuple[str, int]
    rtp: RtpPacket


def _ip(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)


def read_capture(path: Path) -> list[Frame]:
    """Parse a classic little-endian Ethernet pcap of IPv4/UDP frames, checking every header on the way."""
    data = path.read_bytes()
    magic, major, minor, zone, sigfigs, snaplen, linktype = struct.unpack_from("<IHHiIII", data, 0)
    assert (magic, major, minor, zone, sigfigs, linktype) == (0xA1B2C3D4, 2, 4, 0, 0, 1)
    frames: list[Frame] = []
    offset = 24
    while offset < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, offset)
        assert incl == orig <= snaplen and usec < 1_000_000
        frame = data[offset + 16 : offset + 16 + incl]
        assert len(frame) == incl, "record truncated"
        offset += 16 + incl
        _dst_mac, _src_mac, ethertype = struct.unpack_from("!6s6sH", frame, 0)
        assert ethertype == 0x0800
        ip = frame[14:34]
        vihl, _tos, total, _ident, flags, ttl, proto, _csum, src, dst = struct.unpack("!BBHHHBBH4s4s", ip)
        assert (vihl, proto, flags, ttl) == (0x45, 17, 0x4000, 64)
        assert total == len(frame) - 14, "IPv4 total length"
        assert internet_checksum(ip) == 0, "IPv4 header checksum"
        sport, dport, ulen, usum = struct.unpack_from("!HHHH", frame, 34)
        assert ulen == total - 20, "UDP length"
        pseudo = src + dst + struct.pack("!BBH", 0, 17, ulen)
        assert usum != 0 and internet_checksum(pseudo + frame[34:]) == 0, "UDP checksum"
        rtp = parse_rtp(frame[42:])
        frames.append(Frame(sec * 1_000_000 + usec, (_ip(src), sport), (_ip(dst), dport), rtp))
    return frames


def test_two_streams_round_trip(tmp_path: Path) -> None:
    agent = bytes(range(256)) * 25  # 6400 bytes: 40 packets of 160
    customer = bytes(255 - b for b in agent)
    path = tmp_path / "call.pcap"
    counts = build_rtp_pcap(path, [RtpStream(agent, 7000, 0xA1, 0), (customer, 7002, 0xC2, 8)], start=START)
    assert counts == [40, 40]
    frames = read_capture(path)
    assert len(frames) == 80
    assert [f.ts_us for f in frames] == sorted(f.ts_us for f in frames), "time order"
    assert [f.rtp.ssrc for f in frames[:4]] == [0xA1, 0xC2, 0xA1, 0xC2], "streams interleaved"

    by_ssrc: dict[int, list[Frame]] = defaultdict(list)
    for f in frames:
        by_ssrc[f.rtp.ssrc].append(f)
    for ssrc, audio, port, pt, src_port in ((0xA1, agent, 7000, 0, 30000), (0xC2, customer, 7002, 8, 30002)):
        stream = by_ssrc[ssrc]
        assert {f.dst[1] for f in stream} == {port} and {f.src[1] for f in stream} == {src_port}
        assert {f.rtp.payload_type for f in stream} == {pt}
        assert b"".join(bytes(f.rtp.payload) for f in stream) == audio
        assert all(len(f.rtp.payload) == 160 for f in stream)
        assert [f.rtp.marker for f in stream] == [True] + [False] * 39
        first = stream[0].rtp
        assert [f.rtp.sequence for f in stream] == [(first.sequence + n) & 0xFFFF for n in range(40)]
        timestamps = [(first.timestamp + 160 * n) & 0xFFFFFFFF for n in range(40)]
        assert [f.rtp.timestamp for f in stream] == timestamps
        assert [f.ts_us for f in stream] == [round(START * 1e6) + 20_000 * n for n in range(40)]
    # Starts look random but are fixed: two streams differ, and a rebuild is byte-identical.
    assert by_ssrc[0xA1][0].rtp.sequence != by_ssrc[0xC2][0].rtp.sequence
    assert (by_ssrc[0xA1][0].rtp.sequence, by_ssrc[0xA1][0].rtp.timestamp) == rtp_starts(0xA1)
    again = tmp_path / "again.pcap"
    build_rtp_pcap(again, [(agent, 7000, 0xA1, 0), (customer, 7002, 0xC2, 8)], start=START)
    assert again.read_bytes() == path.read_bytes()


def test_ptime_and_short_last_packet(tmp_path: Path) -> None:
    path = tmp_path / "short.pcap"
    assert build_rtp_pcap(path, [(b"\x55" * 500, 9000, 7, 0)], ptime_ms=30, start=START) == [3]
    frames = read_capture(path)
    assert [len(f.rtp.payload) for f in frames] == [240, 240, 20]
    assert [f.rtp.timestamp - frames[0].rtp.timestamp for f in frames] == [0, 240, 480]
    assert [f.ts_us - frames[0].ts_us for f in frames] == [0, 30_000, 60_000]
    assert {f.dst for f in frames} == {("10.0.0.2", 9000)}
    assert {f.src for f in frames} == {("10.0.0.1", 30000)}


def test_sequence_and_timestamp_wrap(tmp_path: Path) -> None:
    """Whatever the start, the fields wrap modulo 2^16 and 2^32 instead of overflowing the header."""
    ssrc = next(s for s in range(1, 100_000) if rtp_starts(s)[0] > 65530)
    path = tmp_path / "wrap.pcap"
    build_rtp_pcap(path, [(b"\0" * 160 * 10, 9000, ssrc, 0)], start=START)
    seqs = [f.rtp.sequence for f in read_capture(path)]
    assert 0 in seqs and seqs[0] > 65530
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))


def test_udp_frame_fields() -> None:
    frame = udp_frame(b"abc", src=("192.0.2.1", 1234), dst=("198.51.100.7", 5678), identification=0x1_0005)
    assert len(frame) == 14 + 20 + 8 + 3
    assert struct.unpack_from("!HHH", frame, 34) == (1234, 5678, 11)
    assert struct.unpack_from("!H", frame, 18)[0] == 5  # identification wraps to 16 bits
    assert internet_checksum(frame[14:34]) == 0


def test_rejects_a_ptime_without_samples(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no samples"):
        build_rtp_pcap(tmp_path / "x.pcap", [(b"\0", 9000, 1, 0)], ptime_ms=0)
