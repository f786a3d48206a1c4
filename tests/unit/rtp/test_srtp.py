"""rtp.srtp: both SDES suites through libsrtp, and the reasons a receiver counts."""

from __future__ import annotations

import os

import pytest

from rtp.packet import build_rtp
from rtp.rtcp import SenderReport, serialize_rtcp
from rtp.srtp import SUITES, SrtpError, SrtpErrorReason, SrtpReceiver, SrtpSender

KEY = bytes(range(30))


@pytest.mark.parametrize(("suite", "tag"), [("AES_CM_128_HMAC_SHA1_80", 10), ("AES_CM_128_HMAC_SHA1_32", 4)])
def test_round_trip_and_tag_length(suite: str, tag: int) -> None:
    sender, receiver = SrtpSender(suite, KEY), SrtpReceiver(suite, KEY)
    for seq in range(5):
        packet = build_rtp(0, seq, seq * 160, 0xABC, bytes([seq]) * 160)
        protected = sender.protect(packet)
        assert len(protected) == len(packet) + tag
        assert protected[12:] != packet[12:]  # the payload is encrypted
        assert receiver.unprotect(protected) == packet
    rtcp = serialize_rtcp([SenderReport(0xABC, 1 << 32, 800, 5, 800)])
    assert receiver.unprotect_rtcp(sender.protect_rtcp(rtcp)) == rtcp


def test_failures_have_reasons() -> None:
    suite = "AES_CM_128_HMAC_SHA1_80"
    sender, receiver = SrtpSender(suite, KEY), SrtpReceiver(suite, KEY)
    first = sender.protect(build_rtp(0, 1, 160, 7, b"\xff" * 160))
    receiver.unprotect(first)
    with pytest.raises(SrtpError) as replay:
        receiver.unprotect(first)
    assert replay.value.reason is SrtpErrorReason.REPLAY
    forged = SrtpSender(suite, os.urandom(30)).protect(build_rtp(0, 2, 320, 7, b"\xff" * 160))
    with pytest.raises(SrtpError) as auth:
        receiver.unprotect(forged)
    assert auth.value.reason is SrtpErrorReason.AUTH
    with pytest.raises(SrtpError):
        receiver.unprotect(b"\x80\x00" + bytes(3000))  # longer than libsrtp accepts: an error, not a crash


def test_bad_parameters_are_refused_at_set_up() -> None:
    assert set(SUITES) == {"AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"}
    with pytest.raises(ValueError, match="30 bytes"):
        SrtpReceiver("AES_CM_128_HMAC_SHA1_80", KEY[:16])
    with pytest.raises(ValueError, match="unsupported"):
        SrtpReceiver("F8_128_HMAC_SHA1_80", KEY)
