"""One received RTP stream (a recorded leg), sans-I/O: datagrams and arrival times in, PCM blocks and notices out.

`ReceiveStream.receive(data, addr, arrival)` is the per-packet hot path: drop what does not belong (a closed leg,
a source other than the latched one, SRTP that fails authentication, malformed RTP, payload types not negotiated),
hand DTMF to the RFC 4733 receiver and audio to the jitter buffer. It never raises for bad input; every drop is
counted under a reason. `pull(now)` returns the audio the jitter buffer released, decoded in one block and placed on
the leg timeline (sample 0 = the leg's first packet, wall-clock aligned by the jitter buffer). Work per packet is a
struct unpack and a heap push; decoding happens per block.

Notices (`SsrcChanged`, `SourceLatched`, `DtmfNotice`) are appended to `notices` for the owner to log and publish.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from rtp.codecs import Decoder, decode_frames, decoder_for
from rtp.codecs.telephone_event import DtmfEvent, DtmfReceiver
from rtp.jitter import Audio, Frame, JitterBuffer
from rtp.packet import MAX_PACKET_SIZE, RtpError, RtpErrorReason, parse_rtp
from rtp.rtcp import ReceiverReport, RtcpError, SenderReport, parse_rtcp
from rtp.srtp import SrtpError, SrtpReceiver

__all__ = [
    "DropReason",
    "DtmfNotice",
    "Notice",
    "PcmBlock",
    "ReceiveStream",
    "SourceLatched",
    "SsrcChanged",
    "StreamCounters",
    "StreamParams",
]

log = logging.getLogger("rtp.stream")

Address = tuple[str, int]

# Comfort noise (RFC 3389) and the payload types RFC 5761 leaves to RTCP are not audio we decode; the jitter buffer
# fills their time with silence from the timestamps of the next audio packet.
COMFORT_NOISE_PT = 13


class DropReason:
    """Counter keys for datagrams that were not recorded (RtpError reasons are used as they are)."""

    CLOSED = "closed_leg"  # the leg ended: SRCs keep sending for seconds after BYE
    SOURCE = "unexpected_source"  # not the latched source address
    UNKNOWN_PT = "unknown_payload_type"
    COMFORT_NOISE = "comfort_noise"
    NOT_RTP = "not_rtp"  # STUN, DTLS, anything with a first byte outside RTP's range
    SRTP_PREFIX = "srtp_"  # + auth | replay | other
    LATE = "late"  # arrived after its slot was written
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class StreamParams:
    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None
    telephone_event_pt: int | None = None
    jitter_ms: float = 60
    latch: bool = True  # accept only the first source address that sent a valid packet
    srtp_suite: str | None = None
    srtp_key: bytes | None = None  # the SRC's master key + salt (its a=crypto)
    ptime_ms: int | None = None


@dataclass
class StreamCounters:
    packets: int = 0  # audio packets accepted (into the jitter buffer)
    octets: int = 0
    dtmf_packets: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    ssrc_changes: int = 0
    decode_errors: int = 0
    rtcp_packets: int = 0
    rtcp_sender_reports: int = 0
    rtcp_receiver_reports: int = 0
    rtcp_errors: int = 0
    rtcp_fraction_lost: float | None = None  # from the SRC's latest report block about this stream, if any
    rtcp_jitter_ms: float | None = None
    rtcp_sender_packets: int | None = None  # what the SRC says it sent (latest SR)


class PcmBlock(NamedTuple):
    position: int  # sample index on the leg timeline, at the stream's sample rate
    pcm: np.ndarray  # int16, mono


@dataclass(frozen=True)
class SsrcChanged:
    old: int
    new: int


@dataclass(frozen=True)
class SourceLatched:
    address: Address


@dataclass(frozen=True)
class DtmfNotice:
    event: DtmfEvent
    at: float  # wall-clock start (arrival of the closing packet less its duration); 0.0 when closed at call end
    clock_rate: int


Notice = SsrcChanged | SourceLatched | DtmfNotice


class ReceiveStream:
    def __init__(self, params: StreamParams, *, decoder: Decoder | None = None) -> None:
        self.params = params
        self.decoder = decoder or decoder_for(
            params.encoding, params.clock_rate, params.channels, params.fmtp
        )
        self.clock_rate = params.clock_rate
        self.sample_rate = self.decoder.sample_rate
        self.counters = StreamCounters()
        self.notices: list[Notice] = []
        self.source: Address | None = None
        self.ssrc: int | None = None
        self.closed = False
        self.pending = 0  # packets pushed since the last pull
        self._srtp = (
            SrtpReceiver(params.srtp_suite, params.srtp_key)
            if params.srtp_suite is not None and params.srtp_key is not None
            else None
        )
        samples = params.ptime_ms * params.clock_rate // 1000 if params.ptime_ms else None
        self.jitter = JitterBuffer(
            params.clock_rate, samples, params.jitter_ms, duration_of=self.decoder.duration
        )
        self._dtmf = DtmfReceiver() if params.telephone_event_pt is not None else None
        self._pt = params.payload_type
        self._dtmf_pt = params.telephone_event_pt
        self._latch = params.latch

    # --- intake (hot path) -----------------------------------------------------------------------------
    def receive(self, data: bytes, addr: Address, arrival: float) -> bool:
        """One datagram from the RTP port. True when it was accepted as audio or DTMF."""
        dropped = self.counters.dropped
        if self.closed:
            dropped[DropReason.CLOSED] += 1
            return False
        if self.source is not None and addr != self.source and self._latch:
            dropped[DropReason.SOURCE] += 1
            return False
        if len(data) < 2:
            dropped[RtpErrorReason.TRUNCATED.value] += 1
            return False
        if data[0] & 0xC0 != 0x80:
            # Version 0 is where STUN and DTLS live (RFC 7983): not RTP at all; versions 1 and 3 are broken RTP.
            dropped[DropReason.NOT_RTP if data[0] < 64 else RtpErrorReason.BAD_VERSION.value] += 1
            return False
        if 192 <= data[1] <= 223:  # RFC 5761: RTCP multiplexed on the RTP port
            return self.receive_rtcp(data, addr, arrival)
        if self._srtp is not None:
            try:
                data = self._srtp.unprotect(data)
            except SrtpError as exc:
                dropped[DropReason.SRTP_PREFIX + exc.reason.value] += 1
                return False
        try:
            packet = parse_rtp(data, MAX_PACKET_SIZE)
        except RtpError as exc:
            dropped[exc.reason.value] += 1
            return False
        if self.source is None:
            self.source = addr
            self.notices.append(SourceLatched(addr))
        pt = packet.payload_type
        if pt == self._pt:
            ssrc = packet.ssrc
            if ssrc != self.ssrc:
                if self.ssrc is not None:
                    self.counters.ssrc_changes += 1
                    self.notices.append(SsrcChanged(self.ssrc, ssrc))
                self.ssrc = ssrc
            if not self.jitter.push(packet.sequence, packet.timestamp, packet.payload, arrival, ssrc):
                return False  # counted by the jitter buffer (late / duplicate)
            counters = self.counters
            counters.packets += 1
            counters.octets += len(packet.payload)
            self.pending += 1
            return True
        if pt == self._dtmf_pt and self._dtmf is not None:
            self.counters.dtmf_packets += 1
            for event in self._dtmf.push(packet.timestamp, packet.payload):
                self.notices.append(
                    DtmfNotice(event, arrival - event.duration_samples / self.clock_rate, self.clock_rate)
                )
            return True
        dropped[DropReason.COMFORT_NOISE if pt == COMFORT_NOISE_PT else DropReason.UNKNOWN_PT] += 1
        return False

    def receive_rtcp(self, data: bytes, addr: Address, arrival: float) -> bool:
        """One datagram from the RTCP port (or muxed on the RTP port): counted and remembered, never recorded."""
        c = self.counters
        if self._srtp is not None:
            try:
                data = self._srtp.unprotect_rtcp(data)
            except SrtpError as exc:
                c.dropped[DropReason.SRTP_PREFIX + "rtcp_" + exc.reason.value] += 1
                return False
        try:
            packets = parse_rtcp(data)
        except RtcpError as exc:
            c.rtcp_errors += 1
            c.dropped["rtcp_" + exc.reason.value] += 1
            return False
        c.rtcp_packets += 1
        for p in packets:
            if isinstance(p, SenderReport):
                c.rtcp_sender_reports += 1
                if p.ssrc == self.ssrc or self.ssrc is None:
                    c.rtcp_sender_packets = p.packet_count
            elif isinstance(p, ReceiverReport):
                c.rtcp_receiver_reports += 1
            else:
                continue
            # An SRC relaying the far end's reports tells us what the network did to this stream upstream.
            for block in p.reports:
                if block.ssrc != self.ssrc:
                    continue
                c.rtcp_fraction_lost = block.fraction_lost_ratio
                c.rtcp_jitter_ms = block.jitter * 1000 / self.clock_rate
        return True

    def reconfigure(self, params: StreamParams) -> PcmBlock | None:
        """A re-INVITE changed the stream: new payload types, codec (at the same sample rate), SRTP key or remote
        address. The timeline and counters continue; the source is learned again from the next packet. On a codec
        change the audio still buffered is released and decoded with the old codec first (returned)."""
        old = self.params
        released = None
        new_codec = (params.encoding, params.clock_rate, params.channels, params.fmtp)
        if new_codec != (old.encoding, old.clock_rate, old.channels, old.fmtp):
            decoder = decoder_for(params.encoding, params.clock_rate, params.channels, params.fmtp)
            if decoder.sample_rate != self.sample_rate or params.clock_rate != self.clock_rate:
                raise ValueError("a codec change must keep the clock and sample rates")
            frames = self.jitter.flush()
            released = self._decode(frames) if frames else None
            self.pending = 0
            self.decoder = decoder
            self.jitter.duration_of = decoder.duration
        self.params = params
        if (params.srtp_suite, params.srtp_key) != (old.srtp_suite, old.srtp_key):
            self._srtp = (
                SrtpReceiver(params.srtp_suite, params.srtp_key)
                if params.srtp_suite is not None and params.srtp_key is not None
                else None
            )
        if params.telephone_event_pt is not None and self._dtmf is None:
            self._dtmf = DtmfReceiver()
        self._pt = params.payload_type
        self._dtmf_pt = params.telephone_event_pt
        self._latch = params.latch
        self.source = None
        return released

    # --- output ------------------------------------------------------------------------------------------
    def pull(self, now: float) -> PcmBlock | None:
        """Decode what the jitter buffer releases by wall-clock time `now`."""
        self.pending = 0
        frames = self.jitter.pop_ready(now)
        return self._decode(frames) if frames else None

    def finish(self) -> PcmBlock | None:
        """End of the leg: release everything buffered and close any DTMF event whose end never came."""
        self.closed = True
        self.pending = 0
        if self._dtmf is not None:
            for event in self._dtmf.flush():
                self.notices.append(DtmfNotice(event, 0.0, self.clock_rate))
        frames = self.jitter.flush()
        return self._decode(frames) if frames else None

    @property
    def start_time(self) -> float | None:
        """Wall-clock time of timeline sample 0 (None before the first packet)."""
        return self.jitter.start_time

    def _decode(self, frames: list[Frame]) -> PcmBlock:
        num, den = self.sample_rate, self.clock_rate
        position = frames[0].position * num // den
        expected = sum(f.samples for f in frames) * num // den
        try:
            if self.decoder.concatenable:
                pcm = decode_frames(self.decoder, frames)
            else:
                pcm = np.concatenate([self._decode_one(f, num, den) for f in frames])
        except Exception as exc:  # a decoder must never take the event loop down: the block becomes silence
            self.counters.decode_errors += 1
            log.debug("decode failed (%s): %d samples of silence", exc, expected)
            pcm = np.zeros(expected, np.int16)
        if len(pcm) != expected:
            pcm = _fit(pcm, expected)
        return PcmBlock(position, pcm)

    def _decode_one(self, frame: Frame, num: int, den: int) -> np.ndarray:
        # Frame-by-frame codecs (Opus, G.729): one bad payload costs its own duration, not the block's.
        want = frame.samples * num // den
        if not isinstance(frame, Audio):
            return self.decoder.conceal(want)
        try:
            pcm = self.decoder.decode(bytes(frame.payload))
        except Exception:
            self.counters.decode_errors += 1
            return np.zeros(want, np.int16)
        return pcm if len(pcm) == want else _fit(pcm, want)


def _fit(pcm: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad to the length the timeline expects (keeps the leg aligned whatever a decoder returns)."""
    if len(pcm) >= length:
        return pcm[:length]
    return np.concatenate([pcm, np.zeros(length - len(pcm), np.int16)])
