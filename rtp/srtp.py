"""SRTP/SRTCP for a receive-only leg (RFC 3711), keyed by SDES (RFC 4568), through libsrtp (pylibsrtp).

One `SrtpReceiver` per leg: it unprotects every inbound SSRC with the key the SRC announced in its a=crypto, so an
SSRC change mid-call keeps decrypting. libsrtp keeps the replay window and the rollover counter per SSRC.
Failures raise `SrtpError` with a reason the receiver counts: `auth` (tag mismatch: wrong key, tampering),
`replay` (a packet seen before or too old for the window), `other` (anything else libsrtp refuses).
`SrtpSender` is the sending side, for tests and load generators.
"""

from __future__ import annotations

import enum

import pylibsrtp

__all__ = ["SUITES", "SrtpError", "SrtpErrorReason", "SrtpReceiver", "SrtpSender"]

# RFC 4568 suite name -> libsrtp profile; both use a 16-byte master key and a 14-byte salt.
SUITES: dict[str, int] = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
KEY_SALT_LEN = 30
# Large enough for reordering within any sane jitter window (libsrtp's default is 128).
REPLAY_WINDOW = 1024


class SrtpErrorReason(enum.StrEnum):
    AUTH = "auth"
    REPLAY = "replay"
    OTHER = "other"


class SrtpError(ValueError):
    def __init__(self, reason: SrtpErrorReason, detail: str = "") -> None:
        super().__init__(f"srtp {reason.value}: {detail}" if detail else f"srtp {reason.value}")
        self.reason = reason


def _policy(suite: str, key_salt: bytes, ssrc_type: int) -> pylibsrtp.Policy:
    profile = SUITES.get(suite)
    if profile is None:
        raise ValueError(f"unsupported SRTP suite {suite!r}")
    if len(key_salt) != KEY_SALT_LEN:
        raise ValueError(f"SRTP master key + salt must be {KEY_SALT_LEN} bytes, got {len(key_salt)}")
    policy = pylibsrtp.Policy(key=key_salt, ssrc_type=ssrc_type, srtp_profile=profile)
    policy.window_size = REPLAY_WINDOW
    return policy


def _reason(exc: Exception) -> SrtpErrorReason:
    text = str(exc).lower()
    if "auth" in text:
        return SrtpErrorReason.AUTH
    if "replay" in text:
        return SrtpErrorReason.REPLAY
    return SrtpErrorReason.OTHER


class SrtpReceiver:
    def __init__(self, suite: str, key_salt: bytes) -> None:
        self.suite = suite
        self._session = pylibsrtp.Session(_policy(suite, key_salt, pylibsrtp.Policy.SSRC_ANY_INBOUND))

    def unprotect(self, data: bytes) -> bytes:
        try:
            return self._session.unprotect(data)
        except (pylibsrtp.Error, ValueError) as exc:  # ValueError: longer than libsrtp's 1500-byte buffer
            raise SrtpError(_reason(exc), str(exc)) from None

    def unprotect_rtcp(self, data: bytes) -> bytes:
        try:
            return self._session.unprotect_rtcp(data)
        except (pylibsrtp.Error, ValueError) as exc:
            raise SrtpError(_reason(exc), str(exc)) from None


class SrtpSender:
    def __init__(self, suite: str, key_salt: bytes) -> None:
        self._session = pylibsrtp.Session(_policy(suite, key_salt, pylibsrtp.Policy.SSRC_ANY_OUTBOUND))

    def protect(self, packet: bytes) -> bytes:
        return self._session.protect(packet)

    def protect_rtcp(self, packet: bytes) -> bytes:
        return self._session.protect_rtcp(packet)
