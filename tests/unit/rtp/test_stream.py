"""ReceiveStream: datagrams with explicit arrival times in, leg-timeline PCM blocks, notices and drop counters out.
No sockets, no sleeps: every arrival and pull time is passed in."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtp.codecs.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from rtp.codecs.telephone_event import build_event
from rtp.packet import build_rtp
from rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    SdesChunk,
    SenderReport,
    SourceDescription,
    serialize_rtcp,
)
from rtp.srtp import SrtpSender
from rtp.stream import (
    DtmfNotice,
    PcmBlock,
    ReceiveStream,
    SourceLatched,
    SsrcChanged,
    StreamParams,
)

ADDR = ("192.0.2.10", 40000)
OTHER = ("198.51.100.7", 40002)
SSRC = 0x1234ABCD
T0 = 1_700_000_000.0
SUITE = "AES_CM_128_HMAC_SHA1_80"
KEY = bytes(range(1, 31))  # 16-byte master key + 14-byte salt
FRAME = 160  # 20 ms of G.711


def _params(**kw: object) -> StreamParams:
    base: dict[str, object] = {
        "payload_type": 0,
        "encoding": "PCMU",
        "clock_rate": 8000,
        "telephone_event_pt": 101,
    }
    base.update(kw)
    return StreamParams(**base)  # type: ignore[arg-type]


def _speech(frames: int, seed: int = 0) -> list[bytes]:
    """`frames` PCMU payloads of 20 ms of noise."""
    pcm = np.random.default_rng(seed).integers(-20000, 20000, frames * FRAME).astype(np.int16)
    return [ulaw_encode(pcm[i * FRAME : (i + 1) * FRAME]) for i in range(frames)]


def _packets(
    payloads: list[bytes], *, pt: int = 0, seq: int = 1000, ts: int = 50_000, ssrc: int = SSRC
) -> list[bytes]:
    return [build_rtp(pt, seq + i, ts + FRAME * i, ssrc, p) for i, p in enumerate(payloads)]


def _run(
    stream: ReceiveStream, packets: list[bytes], *, start: int = 0, addr: tuple[str, int] = ADDR
) -> list[PcmBlock]:
    """Deliver packets 20 ms apart (packet i of the call arrives at T0 + 20 ms * (start + i)), pulling every 5."""
    blocks: list[PcmBlock] = []
    for i, data in enumerate(packets):
        now = T0 + 0.02 * (start + i)
        stream.receive(data, addr, now)
        if i % 5 == 4:
            block = stream.pull(now)
            if block is not None:
                blocks.append(block)
    return blocks


def _joined(blocks: list[PcmBlock]) -> np.ndarray:
    """The concatenated timeline, checking that the blocks are contiguous from sample 0."""
    position = 0
    for block in blocks:
        assert block.position == position
        assert block.pcm.dtype == np.int16
        position += len(block.pcm)
    return np.concatenate([b.pcm for b in blocks]) if blocks else np.zeros(0, np.int16)


def _finish(stream: ReceiveStream, blocks: list[PcmBlock]) -> np.ndarray:
    last = stream.finish()
    return _joined(blocks + ([last] if last is not None else []))


def _accounted(stream: ReceiveStream) -> int:
    """Datagrams dropped under a reason (the jitter buffer counts late and duplicate audio itself)."""
    return sum(stream.counters.dropped.values()) + stream.jitter.late + stream.jitter.duplicates


# --- audio ----------------------------------------------------------------------------------------------


def test_in_order_g711_pulls_contiguous_blocks_equal_to_the_decoded_source() -> None:
    payloads = _speech(50)
    s = ReceiveStream(_params())
    blocks = _run(s, _packets(payloads, seq=65_520))  # crosses the sequence number wrap
    assert len(blocks) >= 5  # in-order audio is released at once, not held for the jitter delay
    assert np.array_equal(_finish(s, blocks), ulaw_decode(b"".join(payloads)))
    assert (s.counters.packets, s.counters.octets, s.ssrc) == (50, 50 * FRAME, SSRC)
    assert s.start_time is not None and abs(s.start_time - T0) < 0.001
    assert not s.counters.dropped


def test_first_source_is_latched_and_other_sources_are_dropped() -> None:
    payloads = _speech(10)
    s = ReceiveStream(_params())
    good = _packets(payloads)
    intruder = _packets(_speech(10, seed=9), ssrc=0x999)
    blocks: list[PcmBlock] = []
    for i in range(10):
        assert s.receive(good[i], ADDR, T0 + 0.02 * i)
        assert not s.receive(intruder[i], OTHER, T0 + 0.02 * i + 0.001)
    blocks.append(s.pull(T0 + 0.2))  # type: ignore[arg-type]
    assert np.array_equal(_finish(s, blocks), ulaw_decode(b"".join(payloads)))
    assert s.counters.dropped == {"unexpected_source": 10}
    assert s.notices == [SourceLatched(ADDR)]
    assert s.counters.ssrc_changes == 0


def test_without_latching_a_source_moving_to_a_new_address_is_kept() -> None:
    payloads = _speech(20)
    packets = _packets(payloads)
    s = ReceiveStream(_params(latch=False))
    blocks = _run(s, packets[:10])
    blocks += _run(s, packets[10:], start=10, addr=OTHER)  # NAT rebinding mid-call
    assert np.array_equal(_finish(s, blocks), ulaw_decode(b"".join(payloads)))
    assert s.counters.packets == 20 and not s.counters.dropped


def test_ssrc_change_continues_the_leg_with_a_notice_and_a_count() -> None:
    first, second = _speech(10, 1), _speech(10, 2)
    s = ReceiveStream(_params())
    blocks = _run(s, _packets(first))
    # The SRC restarts its RTP stack: new SSRC, unrelated sequence and timestamp, same 20 ms cadence.
    blocks += _run(s, _packets(second, seq=7, ts=123_456_789, ssrc=0xBEEF), start=10)
    pcm = _finish(s, blocks)
    assert s.counters.ssrc_changes == 1
    assert SsrcChanged(SSRC, 0xBEEF) in s.notices
    assert s.ssrc == 0xBEEF
    assert np.array_equal(pcm[: 10 * FRAME], ulaw_decode(b"".join(first)))
    assert np.array_equal(pcm[-10 * FRAME :], ulaw_decode(b"".join(second)))
    assert len(pcm) == 20 * FRAME  # placed by wall clock: no invented gap between the two sources
    assert s.counters.packets == 20 and not s.counters.dropped


def test_telephone_event_is_a_dtmf_notice_and_never_audio() -> None:
    payloads = _speech(12)
    audio = _packets(payloads)
    event_ts = 50_000 + 4 * FRAME
    # Key '5' for 60 ms: three growing updates, then the end packet three times (RFC 4733).
    updates = [(160, False), (320, False), (480, False), (480, True), (480, True), (480, True)]
    dtmf = [
        build_rtp(101, 5000 + i, event_ts, SSRC, build_event(5, d, end=e)) for i, (d, e) in enumerate(updates)
    ]
    s = ReceiveStream(_params())
    for i in range(12):
        s.receive(audio[i], ADDR, T0 + 0.02 * i)
        if 4 <= i < 10:
            assert s.receive(dtmf[i - 4], ADDR, T0 + 0.02 * i + 0.001)
    pcm = _finish(s, [s.pull(T0 + 0.24)])  # type: ignore[list-item]
    assert np.array_equal(pcm, ulaw_decode(b"".join(payloads)))
    notices = [n for n in s.notices if isinstance(n, DtmfNotice)]
    assert len(notices) == 1  # one key press, however many packets and end retransmissions
    (notice,) = notices
    assert (notice.event.digit, notice.event.duration_samples, notice.event.ended) == ("5", 480, True)
    assert notice.clock_rate == 8000
    # It started when the closing packet arrived less its 60 ms duration.
    assert notice.at - T0 == pytest.approx(0.02 * 7 + 0.001 - 480 / 8000, abs=1e-6)
    assert (s.counters.dtmf_packets, s.counters.packets) == (6, 12)


def test_dtmf_without_an_end_packet_is_reported_at_finish() -> None:
    s = ReceiveStream(_params())
    s.receive(build_rtp(101, 1, 800, SSRC, build_event(11, 320)), ADDR, T0)
    assert not s.notices[1:]
    s.finish()
    (notice,) = [n for n in s.notices if isinstance(n, DtmfNotice)]
    assert (notice.event.digit, notice.event.ended, notice.at) == ("#", False, 0.0)


@pytest.mark.parametrize(
    ("pt", "params", "reason"),
    [
        (18, _params(), "unknown_payload_type"),  # G.729 was not negotiated
        (101, _params(telephone_event_pt=None), "unknown_payload_type"),
        (13, _params(), "comfort_noise"),
    ],
)
def test_payload_types_that_are_not_the_legs_audio_are_counted(
    pt: int, params: StreamParams, reason: str
) -> None:
    s = ReceiveStream(params)
    for i in range(3):
        assert not s.receive(build_rtp(pt, i, i * FRAME, SSRC, b"\x01" * 10), ADDR, T0 + 0.02 * i)
    assert s.counters.dropped == {reason: 3}
    assert s.counters.packets == 0
    assert s.pull(T0 + 10) is None and s.finish() is None


def test_after_finish_packets_count_as_closed_leg() -> None:
    s = ReceiveStream(_params())
    packets = _packets(_speech(3))
    _run(s, packets[:2])
    s.finish()
    assert not s.receive(packets[2], ADDR, T0 + 1)
    assert not s.receive(serialize_rtcp([ReceiverReport(SSRC)]), ADDR, T0 + 1)
    assert s.counters.dropped == {"closed_leg": 2}
    assert s.pull(T0 + 10) is None


# --- hostile datagrams ----------------------------------------------------------------------------------

_VALID = build_rtp(0, 1, 0, SSRC, b"\xff" * FRAME)


def _with_byte0(data: bytes, b0: int) -> bytes:
    return bytes([b0]) + data[1:]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x80", "truncated"),
        (_VALID[:11], "truncated"),
        (_with_byte0(_VALID, 0x40), "bad_version"),  # version 1
        (_with_byte0(_VALID, 0xC0), "bad_version"),  # version 3
        (_with_byte0(_VALID[:20], 0x8F), "bad_csrc"),  # says 15 CSRCs (60 bytes) in a 20-byte datagram
        (
            _with_byte0(_VALID[:-1] + b"\xf0", 0xA0),
            "bad_padding",
        ),  # 240 bytes of padding in a 160-byte payload
        (_with_byte0(_VALID[:-1] + b"\x00", 0xA0), "bad_padding"),  # padding count 0
        (_with_byte0(_VALID[:12] + b"\xbe\xde\x00\xff", 0x90), "bad_extension"),  # 255-word extension
        (build_rtp(0, 1, 0, SSRC, bytes(16_385)), "too_large"),
        (b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12), "not_rtp"),  # STUN binding request
        (b"\x16\xfe\xfd" + bytes(20), "not_rtp"),  # DTLS handshake
    ],
)
def test_hostile_datagrams_are_counted_by_reason_and_do_not_latch(data: bytes, reason: str) -> None:
    s = ReceiveStream(_params())
    assert not s.receive(data, OTHER, T0)
    assert s.counters.dropped == {reason: 1}
    assert s.source is None and s.counters.packets == 0
    assert s.receive(_VALID, ADDR, T0 + 0.001)  # the real source still latches
    assert s.source == ADDR


def _rtp_like(data: bytes) -> bytes:
    return bytes([0x80 | data[0] & 0x3F]) + data[1:] if data else data


_datagrams = st.lists(
    st.one_of(
        st.binary(max_size=64),
        st.binary(min_size=1, max_size=400).map(_rtp_like),  # version 2: reaches the parsers
        st.builds(
            lambda pt, seq, payload: build_rtp(pt, seq, seq * FRAME, SSRC, payload),
            st.sampled_from([0, 8, 13, 101, 127]),
            st.integers(0, 40),
            st.binary(max_size=200),
        ),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(_datagrams, st.booleans())
def test_random_datagrams_never_raise_and_each_is_accepted_or_counted(
    datagrams: list[bytes], latch: bool
) -> None:
    s = ReceiveStream(_params(latch=latch))
    for i, data in enumerate(datagrams):
        before = _accounted(s)
        accepted = s.receive(data, ADDR if i % 3 else OTHER, T0 + 0.01 * i)
        assert accepted + (_accounted(s) - before) == 1  # accepted, or dropped under exactly one reason
        s.receive_rtcp(data, ADDR, T0 + 0.01 * i)
        s.pull(T0 + 0.01 * i)
    s.finish()


@settings(max_examples=60, deadline=None)
@given(_datagrams)
def test_random_datagrams_to_an_srtp_leg_never_raise_and_each_is_counted(datagrams: list[bytes]) -> None:
    s = ReceiveStream(_params(srtp_suite=SUITE, srtp_key=KEY))
    for i, data in enumerate(datagrams):
        before = sum(s.counters.dropped.values())
        assert not s.receive(data, ADDR, T0 + 0.01 * i)  # forged or clear packets never authenticate
        assert sum(s.counters.dropped.values()) == before + 1
        assert not s.receive_rtcp(data, ADDR, T0 + 0.01 * i)
    assert s.counters.packets == 0 and s.counters.rtcp_packets == 0


@pytest.mark.parametrize("second_byte", [0x00, 200])  # SRTP, and SRTCP muxed on the RTP port
def test_oversized_datagram_to_an_srtp_leg_is_counted_not_raised(second_byte: int) -> None:
    s = ReceiveStream(_params(srtp_suite=SUITE, srtp_key=KEY))
    assert not s.receive(bytes([0x80, second_byte]) + bytes(1600), ADDR, T0)
    assert sum(s.counters.dropped.values()) == 1


# --- RTCP -----------------------------------------------------------------------------------------------

_BLOCK = ReportBlock(
    SSRC,
    fraction_lost=64,
    cumulative_lost=3,
    highest_sequence=1010,
    jitter=80,
    last_sr=0,
    delay_since_last_sr=0,
)


def test_sender_report_on_the_rtcp_port_is_counted_and_remembered() -> None:
    s = ReceiveStream(_params())
    _run(s, _packets(_speech(5)))
    sr = SenderReport(
        SSRC,
        ntp_timestamp=3_900_000_000 << 32,
        rtp_timestamp=50_800,
        packet_count=5,
        octet_count=800,
        reports=(_BLOCK,),
    )
    sdes = SourceDescription((SdesChunk(SSRC, ((1, b"src@example"),)),))
    assert s.receive_rtcp(serialize_rtcp([sr, sdes]), ADDR, T0)
    c = s.counters
    assert (c.rtcp_packets, c.rtcp_sender_reports, c.rtcp_receiver_reports) == (1, 1, 0)
    assert c.rtcp_sender_packets == 5
    assert c.rtcp_fraction_lost == 0.25
    assert c.rtcp_jitter_ms == 10.0  # 80 ticks at 8 kHz
    # A report from some other source says nothing about what this leg's sender sent.
    s.receive_rtcp(serialize_rtcp([SenderReport(0x777, 0, 0, 999, 0)]), ADDR, T0)
    assert c.rtcp_sender_packets == 5 and c.rtcp_sender_reports == 2


def test_rtcp_muxed_on_the_rtp_port_is_counted_never_recorded() -> None:
    s = ReceiveStream(_params())
    sr = serialize_rtcp([SenderReport(SSRC, 0, 0, 42, 0)])
    rr = serialize_rtcp([ReceiverReport(SSRC, (_BLOCK,)), Bye((SSRC,), "bye")])
    assert (sr[1], rr[1]) == (200, 201)
    assert s.receive(sr, ADDR, T0) and s.receive(rr, ADDR, T0 + 0.01)
    c = s.counters
    assert (c.rtcp_packets, c.rtcp_sender_reports, c.rtcp_receiver_reports) == (2, 1, 1)
    assert c.rtcp_sender_packets == 42
    assert c.packets == 0 and not c.dropped
    assert s.pull(T0 + 10) is None and s.finish() is None


def test_malformed_rtcp_is_counted_by_reason() -> None:
    s = ReceiveStream(_params())
    overrun = bytes([0x80, 200, 0, 20]) + bytes(8)  # says 84 bytes, has 12
    assert not s.receive(overrun, ADDR, T0)
    assert not s.receive_rtcp(b"\x81\xc9\x00", ADDR, T0)
    assert s.counters.rtcp_errors == 2
    assert s.counters.dropped == {"rtcp_bad_length": 1, "rtcp_truncated": 1}


def test_report_blocks_about_other_streams_do_not_overwrite_this_streams_loss() -> None:
    s = ReceiveStream(_params())
    _run(s, _packets(_speech(5)))
    other = ReportBlock(0x5555, 128, 0, 0, 800, 0, 0)
    s.receive_rtcp(serialize_rtcp([ReceiverReport(0x42, (_BLOCK, other))]), ADDR, T0)
    assert (s.counters.rtcp_fraction_lost, s.counters.rtcp_jitter_ms) == (0.25, 10.0)


# --- SRTP -----------------------------------------------------------------------------------------------


def test_srtp_decodes_to_the_same_pcm_as_plain_rtp() -> None:
    payloads = _speech(20, 3)
    plain = _packets(payloads)
    sender = SrtpSender(SUITE, KEY)
    protected = [sender.protect(p) for p in plain]
    assert all(p != q for p, q in zip(plain, protected, strict=True))
    clear, secure = ReceiveStream(_params()), ReceiveStream(_params(srtp_suite=SUITE, srtp_key=KEY))
    pcm_clear = _finish(clear, _run(clear, plain))
    blocks = _run(secure, protected)
    # SRTCP muxed on the RTP port is decrypted and counted too.
    assert secure.receive(
        sender.protect_rtcp(serialize_rtcp([SenderReport(SSRC, 0, 0, 20, 3200)])), ADDR, T0 + 1
    )
    assert secure.counters.rtcp_sender_packets == 20
    pcm_secure = _finish(secure, blocks)
    assert np.array_equal(pcm_secure, pcm_clear)
    assert np.array_equal(pcm_secure, ulaw_decode(b"".join(payloads)))
    assert secure.counters.packets == 20 and not secure.counters.dropped


def test_srtp_with_the_wrong_key_counts_auth_failures_and_records_nothing() -> None:
    sender = SrtpSender(SUITE, bytes(30))
    s = ReceiveStream(_params(srtp_suite=SUITE, srtp_key=KEY))
    blocks = _run(s, [sender.protect(p) for p in _packets(_speech(5))])
    assert blocks == [] and s.finish() is None
    assert s.counters.dropped == {"srtp_auth": 5}
    assert s.source is None  # nothing authenticated: nothing latched


def test_replayed_srtp_packet_counts_as_replay() -> None:
    sender = SrtpSender(SUITE, KEY)
    packets = [sender.protect(p) for p in _packets(_speech(3))]
    s = ReceiveStream(_params(srtp_suite=SUITE, srtp_key=KEY))
    assert s.receive(packets[0], ADDR, T0)
    assert s.receive(packets[1], ADDR, T0 + 0.02)
    assert not s.receive(packets[0], ADDR, T0 + 0.03)
    assert s.counters.dropped == {"srtp_replay": 1}
    assert s.counters.packets == 2


# --- reconfigure (re-INVITE) ----------------------------------------------------------------------------


def _alaw_speech(frames: int, seed: int) -> list[bytes]:
    pcm = np.random.default_rng(seed).integers(-20000, 20000, frames * FRAME).astype(np.int16)
    return [alaw_encode(pcm[i * FRAME : (i + 1) * FRAME]) for i in range(frames)]


def test_reconfigure_pcmu_to_pcma_keeps_the_timeline() -> None:
    ulaw, alaw = _speech(10, 4), _alaw_speech(10, 5)
    s = ReceiveStream(_params())
    blocks = _run(s, _packets(ulaw))
    s.reconfigure(_params(payload_type=8, encoding="PCMA"))
    blocks += _run(s, _packets(alaw, pt=8, seq=1010, ts=50_000 + 10 * FRAME), start=10, addr=OTHER)
    pcm = _finish(s, blocks)
    assert np.array_equal(pcm, np.concatenate([ulaw_decode(b"".join(ulaw)), alaw_decode(b"".join(alaw))]))
    assert s.notices[-1] == SourceLatched(OTHER)  # the source is learned again after a re-INVITE
    assert s.counters.packets == 20 and not s.counters.dropped


def test_reconfigure_decodes_audio_received_before_it_with_the_old_codec() -> None:
    ulaw, alaw = _speech(3, 6), _alaw_speech(3, 7)
    s = ReceiveStream(_params())
    for i, data in enumerate(_packets(ulaw)):
        s.receive(data, ADDR, T0 + 0.02 * i)
    released = s.reconfigure(_params(payload_type=8, encoding="PCMA"))  # the PCMU still buffered, decoded as PCMU
    assert released is not None
    for i, data in enumerate(_packets(alaw, pt=8, seq=1003, ts=50_000 + 3 * FRAME)):
        s.receive(data, ADDR, T0 + 0.02 * (3 + i))
    pcm = _finish(s, [released, s.pull(T0 + 0.12)])  # type: ignore[list-item]
    assert np.array_equal(pcm, np.concatenate([ulaw_decode(b"".join(ulaw)), alaw_decode(b"".join(alaw))]))


def test_reconfigure_refuses_a_sample_rate_change() -> None:
    s = ReceiveStream(_params())
    with pytest.raises(ValueError, match="sample rates"):
        s.reconfigure(_params(payload_type=96, encoding="L16", clock_rate=16000))
