"""A small Session Recording Client for tests: SIPREC INVITE / ACK / BYE over UDP and paced RTP senders.

sipp plays the SIP peer in the wire tests; this client exists for what sipp cannot do: per-packet loss, reordering
and duplicates, SRTP, G.722 / Opus payloads encoded in the test, DTMF, and calls against a server in another process.
"""

from __future__ import annotations

import asyncio
import base64
import random
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from rtp.packet import build_rtp
from siprec.srs.sdp import parse_sdp

BOUNDARY = "srcBoundary"


@dataclass
class LegOffer:
    encoding: str = "PCMU"
    payload_type: int = 0
    clock_rate: int = 8000
    label: str = "1"
    participant: str = "Alice"
    srtp_key: bytes | None = None  # 30 bytes: AES_CM_128_HMAC_SHA1_80 with this master key + salt
    telephone_event_pt: int | None = None
    channels: int = 1


def _sdp(legs: Sequence[LegOffer], rtp_base: int) -> str:
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
    for i, leg in enumerate(legs):
        fmts = [str(leg.payload_type)] + ([str(leg.telephone_event_pt)] if leg.telephone_event_pt else [])
        proto = "RTP/SAVP" if leg.srtp_key else "RTP/AVP"
        lines.append(f"m=audio {rtp_base + 2 * i} {proto} {' '.join(fmts)}")
        rtpmap = f"{leg.encoding}/{leg.clock_rate}" + (f"/{leg.channels}" if leg.channels > 1 else "")
        lines.append(f"a=rtpmap:{leg.payload_type} {rtpmap}")
        if leg.telephone_event_pt:
            lines += [f"a=rtpmap:{leg.telephone_event_pt} telephone-event/{leg.clock_rate}",
                      f"a=fmtp:{leg.telephone_event_pt} 0-15"]  # fmt: skip
        if leg.srtp_key:
            lines.append(
                f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(leg.srtp_key).decode()}"
            )
        lines += [f"a=label:{leg.label}", "a=sendonly"]
    return "\r\n".join(lines) + "\r\n"


def _metadata(legs: Sequence[LegOffer]) -> str:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<recording xmlns="urn:ietf:params:xml:ns:recording:1">',
        "<datamode>complete</datamode>",
        '<session session_id="s1"><sipSessionID>cs-1</sipSessionID></session>',
    ]
    for i, leg in enumerate(legs):
        pid = f"p{i}"
        aor = f"sip:{leg.participant.lower()}@example.com"
        parts += [
            f'<participant participant_id="{pid}"><nameID aor="{aor}"><name>{leg.participant}</name></nameID>'
            "</participant>",
            f'<stream stream_id="st{i}" session_id="s1"><label>{leg.label}</label></stream>',
            f'<participantstreamassoc participant_id="{pid}"><send>st{i}</send></participantstreamassoc>',
        ]
    parts.append("</recording>")
    return "\r\n".join(parts) + "\r\n"


@dataclass
class SrcCall:
    """One recording session from the SRC side over a UDP socket of its own."""

    server_port: int
    call_id: str = field(default_factory=lambda: f"{uuid.uuid4()}@src.test")
    local_tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    remote_tag: str | None = None
    cseq: int = 1
    rtp_ports: list[int] = field(default_factory=list)
    sock: socket.socket | None = None
    answer: str = ""

    def _open(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
            self.sock.setblocking(False)
        return self.sock

    @property
    def local_port(self) -> int:
        return int(self._open().getsockname()[1])

    def _request(self, method: str, body: str = "", content_type: str = "") -> bytes:
        to = f"<sip:srs@127.0.0.1:{self.server_port}>" + (
            f";tag={self.remote_tag}" if self.remote_tag else ""
        )
        head = [
            f"{method} sip:srs@127.0.0.1:{self.server_port} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.local_port};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport",
            "Max-Forwards: 70",
            f"From: <sip:src@127.0.0.1>;tag={self.local_tag}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} {method}",
            f"Contact: <sip:src@127.0.0.1:{self.local_port}>;+sip.src",
        ]
        if method == "INVITE":
            head += ["Require: siprec", "Supported: siprec"]
        if content_type:
            head.append(f"Content-Type: {content_type}")
        raw = body.encode()
        head.append(f"Content-Length: {len(raw)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + raw

    async def _transact(self, data: bytes, timeout: float = 5.0) -> str:
        """Send and wait for the final response (retransmitting like a UAC would on UDP)."""
        loop = asyncio.get_running_loop()
        sock = self._open()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            await loop.sock_sendto(sock, data, ("127.0.0.1", self.server_port))
            try:
                while True:
                    raw = await asyncio.wait_for(loop.sock_recv(sock, 65535), 0.5)
                    text = raw.decode(errors="replace")
                    status = int(text.split(" ", 2)[1])
                    if status >= 200:
                        return text
            except TimeoutError:
                continue
        raise TimeoutError("no final response")

    async def invite(self, legs: Sequence[LegOffer]) -> list[int]:
        body = (
            f"--{BOUNDARY}\r\nContent-Type: application/sdp\r\n\r\n{_sdp(legs, 30000)}"
            f"--{BOUNDARY}\r\nContent-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session"
            f"\r\n\r\n{_metadata(legs)}--{BOUNDARY}--\r\n"
        )
        text = await self._transact(self._request("INVITE", body, f"multipart/mixed;boundary={BOUNDARY}"))
        status = int(text.split(" ", 2)[1])
        if status != 200:
            raise AssertionError(f"INVITE answered {status}: {text.splitlines()[0]}")
        head, _, sdp = text.partition("\r\n\r\n")
        for line in head.split("\r\n"):
            if line.lower().startswith(("to:", "t:")) and ";tag=" in line:
                self.remote_tag = line.split(";tag=", 1)[1].split(";")[0].strip()
        self.answer = sdp
        self.rtp_ports = [m.port for m in parse_sdp(sdp).media]
        sock = self._open()
        await asyncio.get_running_loop().sock_sendto(
            sock, self._request("ACK"), ("127.0.0.1", self.server_port)
        )
        return self.rtp_ports

    async def bye(self) -> int:
        self.cseq += 1
        text = await self._transact(self._request("BYE"))
        return int(text.split(" ", 2)[1])

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def rtp_packets(
    payloads: Sequence[bytes],
    *,
    payload_type: int,
    samples_per_packet: int,
    ssrc: int | None = None,
    seq0: int | None = None,
    ts0: int | None = None,
) -> list[bytes]:
    """Consecutive RTP packets (random start sequence/timestamp, as a real sender would)."""
    rnd = random.Random(len(payloads) * 7919 + payload_type)
    ssrc = rnd.getrandbits(32) if ssrc is None else ssrc
    seq = rnd.getrandbits(16) if seq0 is None else seq0
    ts = rnd.getrandbits(32) if ts0 is None else ts0
    return [
        build_rtp(payload_type, seq + i, ts + i * samples_per_packet, ssrc, p, marker=i == 0)
        for i, p in enumerate(payloads)
    ]


async def send_paced(
    sock: socket.socket,
    port: int,
    schedule: Sequence[tuple[float, bytes]],
) -> None:
    """Send each (seconds from now, datagram) at its time, in the given order (out-of-order times allowed)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for at, data in sorted(schedule, key=lambda item: item[0]):
        delay = start + at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sock.sendto(data, ("127.0.0.1", port))


def rtp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock
