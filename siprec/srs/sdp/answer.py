"""The SIPREC answer (RFC 7866 on RFC 3264 offer/answer) and what a re-offer changed.

`build_answer` turns an offer into our receive-only answer plus the streams the media layer must open;
`diff_streams` compares the streams of two answers so the session layer can add/remove legs and pause on hold.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from siprec.sip.errors import WARN_INCOMPATIBLE_MEDIA
from siprec.srs.sdp.model import (
    Codec,
    Connection,
    CryptoAttribute,
    Direction,
    MediaDescription,
    Origin,
    SdpError,
    SessionDescription,
    warning_text,
)

# ---------------------------------------------------------------------------------------------------- answering

# SDES suites we can decrypt (pylibsrtp), with their master key + salt length in bytes.
SRTP_SUITES: dict[str, int] = {"AES_CM_128_HMAC_SHA1_80": 30, "AES_CM_128_HMAC_SHA1_32": 30}
_PLAIN_PROTOS = frozenset({"RTP/AVP", "RTP/AVPF"})  # AVPF only adds RTCP feedback: RTP itself is the same
_SECURE_PROTOS = frozenset({"RTP/SAVP", "RTP/SAVPF"})
# Clock rates a decoder can expect; a "PCMU/16000" is a broken offer, not a codec we know.
_EXPECTED_RATE = {"PCMU": 8000, "PCMA": 8000, "G722": 8000, "G729": 8000, "GSM": 8000, "OPUS": 48000}


@dataclass(frozen=True)
class SrtpParams:
    suite: str
    tag: int
    remote_key: bytes  # master key + salt the SRC encrypts with (from its a=crypto)
    local_key: bytes  # ours, announced in the answer (unused while we never send, but required by RFC 4568)


@dataclass(frozen=True)
class NegotiatedStream:
    """One accepted m-line: what the RTP layer opens and decodes."""

    index: int
    label: str | None
    codec: Codec
    port: int  # our RTP port (RTCP on port + 1)
    remote_address: str | None  # None when the offer has no c= at all (we learn the source from RTP)
    remote_port: int
    remote_rtcp_port: int
    direction: Direction  # the answered direction: RECVONLY while receiving, INACTIVE when held
    telephone_event_pt: int | None = None
    ptime: int | None = None
    srtp: SrtpParams | None = None
    rtcp_mux: bool = False
    proto: str = "RTP/AVP"
    remote_hold_address: bool = False  # the offer had c=0.0.0.0 (RFC 2543 hold)

    @property
    def on_hold(self) -> bool:
        return self.direction is Direction.INACTIVE or self.remote_hold_address


def default_srtp_key() -> bytes:
    return secrets.token_bytes(30)


@dataclass(frozen=True)
class _Plan:
    codec: Codec
    telephone_event: Codec | None
    crypto: CryptoAttribute | None


def _supported_crypto(c: CryptoAttribute) -> bool:
    if c.suite not in SRTP_SUITES or c.mki is not None or c.session_params:
        return False  # MKI and session parameters (KDR, UNENCRYPTED_*) are not configured on our receiver
    try:
        return len(c.key_salt) == SRTP_SUITES[c.suite]
    except (binascii.Error, ValueError):
        return False


def _describe(c: Codec) -> str:
    return warning_text(f"{c.encoding}/{c.clock_rate}" if c.encoding else f"pt {c.payload_type}", 24)


def _plan(m: MediaDescription, wanted: frozenset[str]) -> _Plan | str:
    """Decide how to answer one m-line; a string is the reason it is rejected."""
    if m.port == 0:
        return "disabled by the offer (port 0)"
    if m.media != "audio":
        return f"{warning_text(m.media, 16)} not supported"
    proto = m.proto.upper()
    if proto not in _PLAIN_PROTOS and proto not in _SECURE_PROTOS:
        return f"transport {warning_text(m.proto, 24)} not supported"
    crypto = None
    if proto in _SECURE_PROTOS:
        crypto = next((c for c in m.crypto if _supported_crypto(c)), None)
        if crypto is None:
            return "no supported a=crypto (SDES AES_CM_128_HMAC_SHA1_80/32)"
    codec = next((c for c in m.formats if c.encoding in wanted and _sensible_rate(c)), None)
    if codec is None:
        offered = ", ".join(_describe(c) for c in m.formats[:6]) or "none"
        return f"no decodable codec (offered {offered})"
    # RFC 4733 events are only usable at the clock rate of the audio codec they accompany.
    events = (c for c in m.formats if c.encoding == "TELEPHONE-EVENT" and c.clock_rate == codec.clock_rate)
    return _Plan(codec, next(events, None), crypto)


def _sensible_rate(c: Codec) -> bool:
    return c.clock_rate > 0 and _EXPECTED_RATE.get(c.encoding, c.clock_rate) == c.clock_rate


def _answer_direction(offered: Direction) -> Direction:
    # RFC 3264 6.1: sendonly may be answered recvonly or inactive, sendrecv with anything, recvonly only with
    # sendonly or inactive, inactive only with inactive. We never send, so: recvonly where the SRC sends, else inactive.
    return Direction.RECVONLY if offered in (Direction.SENDONLY, Direction.SENDRECV) else Direction.INACTIVE


def _rejected(m: MediaDescription, conn: Connection) -> MediaDescription:
    # RFC 3264 6: a rejected stream keeps its m-line with port 0 and at least one (ignored) format.
    formats = m.formats[:1]
    other = m.other_formats[:1] if not formats else []
    if not formats and not other:
        is_rtp = "RTP/" in m.proto.upper()
        formats, other = ([Codec(0, "PCMU", 8000)], []) if is_rtp else ([], ["*"])
    return MediaDescription(
        index=m.index,
        media=m.media,
        port=0,
        proto=m.proto,
        formats=formats,
        other_formats=other,
        connection=conn,
        direction=Direction.INACTIVE,
    )


PortSource = Sequence[int] | Callable[[int], int]


def _port_picker(ports: PortSource) -> Callable[[int], int]:
    if callable(ports):
        return ports
    remaining = iter(list(ports))

    def pick(index: int) -> int:
        try:
            return next(remaining)
        except StopIteration:
            raise ValueError(f"build_answer: no port left for m-line {index}") from None

    return pick


def build_answer(
    offer: SessionDescription,
    *,
    address: str,
    ports: PortSource,
    decodable: Sequence[str],
    session_id: int,
    session_version: int,
    srtp_key_factory: Callable[[], bytes] = default_srtp_key,
    previous: Sequence[NegotiatedStream] = (),
    accept_rtcp_mux: bool = False,
) -> tuple[SessionDescription, list[NegotiatedStream]]:
    """Answer a SIPREC offer: one m-line per offered m-line, in order, receive-only.

    `ports` gives our RTP port for each *accepted* stream without one in `previous`: a list consumed in m-line
    order, or a callable taking the m-line index. `previous` (the streams of the current answer, on a re-offer)
    keeps the port and our SRTP key of every stream that stays at the same index.
    Raises `SdpError` 488 (warn-code 305) when no m-line can be accepted.
    """
    wanted = frozenset(d.upper() for d in decodable)
    before: Mapping[int, NegotiatedStream] = {s.index: s for s in previous}
    conn = Connection(address, "IP6" if ":" in address else "IP4")
    answer = SessionDescription(
        origin=Origin("-", str(session_id), str(session_version), conn), session_name="-", connection=conn
    )
    pick = _port_picker(ports)
    streams: list[NegotiatedStream] = []
    reasons: list[str] = []
    for m in offer.media:
        plan = _plan(m, wanted)
        if isinstance(plan, str):
            reasons.append(f"m{m.index} {plan}")
            answer.media.append(_rejected(m, conn))
            continue
        old = before.get(m.index)
        port = old.port if old is not None else pick(m.index)
        if not 0 < port <= 65535:
            raise ValueError(f"build_answer: bad port {port} for m-line {m.index}")
        srtp, our_crypto = None, []
        if plan.crypto is not None:
            reuse = old is not None and old.srtp is not None and old.srtp.suite == plan.crypto.suite
            local = old.srtp.local_key if reuse and old.srtp else srtp_key_factory()
            if len(local) != SRTP_SUITES[plan.crypto.suite]:
                raise ValueError("srtp_key_factory must return 30 bytes (master key + salt)")
            srtp = SrtpParams(plan.crypto.suite, plan.crypto.tag, plan.crypto.key_salt, local)
            our_crypto = [
                CryptoAttribute(plan.crypto.tag, plan.crypto.suite, base64.b64encode(local).decode())
            ]
        mux = accept_rtcp_mux and m.rtcp_mux
        direction = _answer_direction(m.direction)
        formats = [plan.codec] + ([plan.telephone_event] if plan.telephone_event else [])
        answer.media.append(
            MediaDescription(
                index=m.index,
                media="audio",
                port=port,
                proto=m.proto,
                formats=formats,
                connection=conn,
                direction=direction,
                label=m.label,
                crypto=our_crypto,
                ptime=m.ptime,
                rtcp_mux=mux,
            )
        )
        remote = m.connection
        rtcp_port = m.port if mux else (m.rtcp.port if m.rtcp else m.port + 1)
        streams.append(
            NegotiatedStream(
                index=m.index,
                label=m.label,
                codec=plan.codec,
                port=port,
                remote_address=remote.address if remote else None,
                remote_port=m.port,
                remote_rtcp_port=rtcp_port,
                direction=direction,
                telephone_event_pt=plan.telephone_event.payload_type if plan.telephone_event else None,
                ptime=m.ptime,
                srtp=srtp,
                rtcp_mux=mux,
                proto=m.proto,
                remote_hold_address=bool(remote and remote.is_hold),
            )
        )
    # An offer whose every m-line is disabled (port 0) is legal (RFC 3264 8.2): answer it, the caller decides.
    if not streams and any(m.port != 0 for m in offer.media):
        warning = "no usable audio stream: " + "; ".join(reasons)
        raise SdpError(status=488, warning=warning[:300], warn_code=WARN_INCOMPATIBLE_MEDIA)
    return answer, streams


# ---------------------------------------------------------------------------------------------------- re-offers


@dataclass(frozen=True)
class OfferChange:
    """What a new offer/answer changed, by m-line index (the session layer's to-do list)."""

    kept: tuple[int, ...] = ()
    added: tuple[int, ...] = ()  # new index, or an index that was rejected/disabled before
    removed: tuple[int, ...] = ()  # disabled (port 0), now rejected, or missing from the new offer
    held: tuple[int, ...] = ()  # now on hold (a=inactive, a=recvonly, c=0.0.0.0), was not (or is new)
    resumed: tuple[int, ...] = ()  # was on hold, now receiving
    reconfigured: tuple[int, ...] = ()  # kept, but codec, remote address/port or SRTP key changed

    @property
    def changed(self) -> bool:
        return any((self.added, self.removed, self.held, self.resumed, self.reconfigured))


def _media_key(s: NegotiatedStream) -> tuple[object, ...]:
    return (
        s.codec,
        s.telephone_event_pt,
        s.remote_address,
        s.remote_port,
        s.remote_rtcp_port,
        s.srtp,
        s.port,
    )


def diff_streams(old: Sequence[NegotiatedStream], new: Sequence[NegotiatedStream]) -> OfferChange:
    """Compare the streams of the previous answer with those of the answer to a re-offer (or [] at the start).

    m-lines keep their index across offers (RFC 3264 8): an index present in both is the same stream, whatever
    its label says.
    """
    before = {s.index: s for s in old}
    after = {s.index: s for s in new}
    kept = tuple(i for i in after if i in before)
    return OfferChange(
        kept=kept,
        added=tuple(i for i in after if i not in before),
        removed=tuple(i for i in before if i not in after),
        held=tuple(i for i, s in after.items() if s.on_hold and not (i in before and before[i].on_hold)),
        resumed=tuple(i for i in kept if before[i].on_hold and not after[i].on_hold),
        reconfigured=tuple(i for i in kept if _media_key(before[i]) != _media_key(after[i])),
    )
