"""The SIPREC UAS (RFC 7866 SRS side): the `SipApplication` the SIP core hands INVITE, re-INVITE, UPDATE, BYE to.

Every accepted INVITE becomes a `RecordingSession`. Order inside each request is fixed so that a refusal never
leaves anything behind: parse every body part (400 / 488), negotiate the session timer (422), reserve RTP ports
(503) and only then create the folder and the session. In-dialog requests are parsed completely before the
session is touched, so a bad re-INVITE leaves the recording exactly as it was.

Timers (session expiry, RTP idle time-out) live in one `TimerQueue`. With a running event loop the UAS schedules
itself (like SipCore does); driven by hand, call `tick(now)` at `next_deadline()`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

from siprec.config import Config
from siprec.events.bus import EventBus
from siprec.sip.core import Answer, SipCore
from siprec.sip.dialog import Dialog, DialogId
from siprec.sip.errors import SipError
from siprec.sip.headers import parse_name_addr, parse_params
from siprec.sip.message import SipRequest, SipResponse
from siprec.sip.multipart import parse_multipart
from siprec.sip.timers import TimerQueue
from siprec.sip.transaction import Peer
from siprec.sip.validation import UasPolicy
from siprec.srs.metadata import parse_metadata
from siprec.srs.ports import PortPool
from siprec.srs.sdp import NegotiatedStream, SessionDescription, build_answer, parse_sdp, serialize_sdp
from siprec.srs.session import MediaSink, NoMediaPlugged, Offer, RecordingSession, session_folder

log = logging.getLogger("siprec.srs")

SUPPORTED_OPTIONS = ("siprec", "timer")
ACCEPTED_TYPES = ("application/sdp", "multipart/mixed", "application/rs-metadata+xml", "application/rs-metadata")
METADATA_TYPES = frozenset({"application/rs-metadata+xml", "application/rs-metadata"})
FALLBACK_DECODABLE = ("PCMU", "PCMA", "G722", "OPUS", "L16")
# RFC 4028 section 10: the non-refresher sends BYE this long before expiry: min(32 s, interval / 3).
BYE_MARGIN_S = 32.0

_EXPIRES = "session-expires"
_RTP = "rtp-timeout"
_AUTO_RESUME = "auto-resume"


def uas_policy() -> UasPolicy:
    """The UasPolicy the SIP core needs for this application (what OPTIONS advertises)."""
    return UasPolicy(supported=SUPPORTED_OPTIONS, accept=ACCEPTED_TYPES)


def decodable_encodings() -> list[str]:
    """Codecs the media path can decode; the fixed list until rtp.codecs is importable."""
    try:
        from rtp.codecs.registry import decodable_encodings as registry
    except ImportError:
        return list(FALLBACK_DECODABLE)
    return registry()


# --- request bodies ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    sdp: bytes | None = None
    metadata: bytes | None = None


def split_body(req: SipRequest) -> Body:
    """The SDP and rs-metadata of a request: plain SDP, plain metadata (an UPDATE), or multipart/mixed in any part
    order. A part we do not understand is ignored unless it says handling=required (RFC 5621 -> 415)."""
    if not req.body:
        return Body()
    ctype = req.content_type or ""
    kind = ctype.split(";", 1)[0].strip().lower()
    if kind == "application/sdp":
        return Body(sdp=req.body)
    if kind in METADATA_TYPES:
        return Body(metadata=req.body)
    if kind != "multipart/mixed":
        raise SipError(415, f"unsupported Content-Type {kind or '(none)'}", headers=[("Accept", ", ".join(ACCEPTED_TYPES))])
    sdp = metadata = None
    for part in parse_multipart(ctype, req.body):
        if part.content_type == "application/sdp":
            if sdp is not None:
                raise SipError(400, "more than one application/sdp part")
            sdp = part.body
        elif part.content_type in METADATA_TYPES or part.disposition == "recording-session":
            if metadata is not None:
                raise SipError(400, "more than one rs-metadata part")
            metadata = part.body
        elif (part.disposition_params.get("handling") or "").lower() == "required":
            raise SipError(
                415, f"required body part {part.content_type} not understood",
                headers=[("Accept", ", ".join(ACCEPTED_TYPES))],
            )  # fmt: skip
    return Body(sdp=sdp, metadata=metadata)


def is_siprec(req: SipRequest, body: Body) -> bool:
    """A recording session: `Require: siprec`, `+sip.src` on the Contact, or an rs-metadata part.

    RFC 7866 section 6.2 asks for both the option tag and the feature tag; real SRCs send one or the other (or
    only the metadata), so any one of them makes the INVITE a SIPREC one here."""
    if any(tag.lower() == "siprec" for tag in req.headers.get_all("Require")):
        return True
    if body.metadata is not None:
        return True
    for value in req.headers.get_all("Contact"):
        try:
            if "+sip.src" in parse_name_addr(value, what="Contact").params:
                return True
        except SipError:
            continue
    return False


# --- session timer (RFC 4028) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionTimer:
    interval: int  # seconds
    refresher: Literal["uac", "uas"] = "uac"

    @property
    def header(self) -> str:
        return f"{self.interval};refresher={self.refresher}"

    def bye_at(self, now: float) -> float:
        return now + self.interval - min(BYE_MARGIN_S, self.interval / 3)


def _delta(value: str | None, what: str) -> tuple[int, dict[str, str | None]] | None:
    if value is None:
        return None
    number, _, params = value.partition(";")
    number = number.strip()
    if not number.isdigit() or len(number) > 10:
        raise SipError(400, f"bad {what} header")
    return int(number), parse_params(params)


def negotiate_timer(req: SipRequest, *, min_se: int, preferred: int) -> SessionTimer | None:
    """The session timer of a 2xx to this INVITE/UPDATE (RFC 4028 section 9), or None when none applies.

    Session-Expires below our Min-SE -> 422 with Min-SE. A long interval may be lowered to `preferred`, never
    below the request's own Min-SE. Refresher: the one the request names; else the UAC when it supports
    "timer" (our choice: an SRS has nothing else to say to the SRC); else us (the UAC cannot refresh)."""
    expires = _delta(req.headers.get("Session-Expires"), "Session-Expires")
    their_min = _delta(req.headers.get("Min-SE"), "Min-SE")
    floor = max(min_se, their_min[0] if their_min else 0)
    supports = any(t.lower() == "timer" for t in req.headers.get_all("Supported") + req.headers.get_all("Require"))
    if expires is None:
        # No timer asked for: we add one only when the UAC can refresh it (we answer refresher=uac).
        return SessionTimer(max(preferred, floor)) if supports else None
    interval, params = expires
    if interval < min_se:
        raise SipError(
            422, f"Session-Expires {interval} is below our Min-SE {min_se}", headers=[("Min-SE", str(min_se))]
        )
    asked = (params.get("refresher") or "").lower()
    refresher: Literal["uac", "uas"] = "uas" if asked == "uas" or (asked != "uac" and not supports) else "uac"
    return SessionTimer(max(floor, min(interval, preferred)), refresher)


def _timer_headers(timer: SessionTimer | None) -> list[tuple[str, str]]:
    headers = [("Supported", ", ".join(SUPPORTED_OPTIONS))]
    if timer is not None:
        headers.append(("Session-Expires", timer.header))
        if timer.refresher == "uac":
            headers.append(("Require", "timer"))  # RFC 4028 section 9: the UAC must know it has to refresh
    return headers


# --- the application ---------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Call:
    dialog: Dialog
    session: RecordingSession
    sdp_id: int
    sdp_version: int
    answer_sdp: bytes  # our current SDP (sent again as the offer of an SDP-less re-INVITE)
    timer: SessionTimer | None = None


_REFRESH = "session-refresh"


class RecordingUas:
    """SIPREC semantics on top of SipCore; one `RecordingSession` per accepted INVITE dialog."""

    # Read by siprec.app to build the core's UasPolicy (OPTIONS advertises them, validation enforces them).
    supported_options = SUPPORTED_OPTIONS
    accepted_types = ACCEPTED_TYPES

    def __init__(
        self,
        config: Config,
        *,
        bus: EventBus,
        core: SipCore,
        ports: PortPool,
        media: MediaSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.bus = bus
        self.core = core
        self.ports = ports
        self.media: MediaSink = media or NoMediaPlugged()
        self.clock = clock
        self.wall_clock = wall_clock
        self.decodable = decodable_encodings()
        self.calls: dict[DialogId, _Call] = {}
        self.timers = TimerQueue()
        self._handle: asyncio.TimerHandle | None = None
        self._handle_at: float | None = None

    # --- lookups (REST API) ------------------------------------------------------------------------------
    @property
    def sessions(self) -> Iterator[RecordingSession]:
        return (call.session for call in list(self.calls.values()))

    def session(self, call_id: str) -> RecordingSession | None:
        return next((s for s in self.sessions if s.call_id == call_id), None)

    def pause(
        self,
        call_id: str,
        *,
        recording: bool = True,
        transcription: bool = False,
        auto_resume_after: float | None = None,
    ) -> bool:
        """API pause of the session of `call_id` (KeyError when there is none): `recording` on every leg and/or
        live `transcription`; lifted by itself after `auto_resume_after` seconds when given (the timer queue
        runs it). False when nothing changed."""
        call = self._call(call_id)
        now, wall = self.clock(), self.wall_clock()
        at = wall + auto_resume_after if auto_resume_after is not None else None
        changed = call.session.pause(wall, recording=recording, transcription=transcription, auto_resume_at=at)
        self.timers.cancel(call.dialog.id, _AUTO_RESUME)
        if call.session.auto_resume_at is not None and auto_resume_after is not None:
            self.timers.schedule(call.dialog.id, _AUTO_RESUME, now + auto_resume_after)
        self._schedule()
        return changed

    def resume(self, call_id: str, *, recording: bool = True, transcription: bool = True) -> bool:
        """Lift API pauses of the session of `call_id` (KeyError when there is none); False if none was in force."""
        call = self._call(call_id)
        changed = call.session.resume(self.wall_clock(), recording=recording, transcription=transcription)
        if call.session.auto_resume_at is None:
            self.timers.cancel(call.dialog.id, _AUTO_RESUME)
            self._schedule()
        return changed

    def _call(self, call_id: str) -> _Call:
        call = next((c for c in list(self.calls.values()) if c.session.call_id == call_id), None)
        if call is None:
            raise KeyError(call_id)
        return call

    @property
    def address(self) -> str:
        """Our media address for the SDP answer: advertised_host, else a concrete sip.host, else the core's."""
        sip = self.config.sip
        if sip.advertised_host:
            return sip.advertised_host
        if sip.host not in ("", "0.0.0.0", "::", "[::]"):
            return sip.host
        return self.core.advertised_host

    # --- SipApplication ----------------------------------------------------------------------------------
    def on_invite(self, request: SipRequest, dialog: Dialog, peer: Peer) -> Answer:
        """A new recording session. Refusals, all before any state exists: 400 (multipart, SDP, metadata),
        415 (required part we cannot read), 421 (require_siprec and not a SIPREC INVITE), 422 (Session-Expires),
        488 (no SDP offer / no usable audio), 503 (no RTP ports).

        Why 421 for a non-SIPREC INVITE when sip.require_siprec is set: RFC 7866 (section 6.2) has the SRS treat an
        INVITE as a recording session only with the siprec option tag / +sip.src feature tag, and names no
        status for refusing the rest. RFC 3261 section 21.4.16 defines 421 Extension Required with a Require
        header listing the missing extension for exactly this case, which tells a misconfigured SRC what to fix;
        403 would only say "no" and invite an operator to look at trusted_sources instead."""
        body = split_body(request)
        siprec = is_siprec(request, body)
        if not siprec and self.config.sip.require_siprec:
            raise SipError(
                421, "this server records SIPREC (RFC 7866) sessions only", headers=[("Require", "siprec")]
            )
        if body.sdp is None:
            raise SipError(488, "an SDP offer is required")
        offer = parse_sdp(body.sdp)
        doc = parse_metadata(body.metadata) if body.metadata is not None else None
        timer = self._negotiate_timer(request)
        now, wall = self.clock(), self.wall_clock()
        sdp_id = secrets.randbelow(2**31)
        desc, streams = self._answer(offer, (), sdp_id, 1, now)
        session: RecordingSession | None = None
        try:
            folder = session_folder(self.config.recording.dir, request.call_id, wall)
            session = RecordingSession(
                request.call_id, folder=folder, siprec=siprec, started_at=wall, now=now,
                media=self.media, publish=self.bus.publish,
            )  # fmt: skip
            session.start(Offer(streams, doc, body.metadata or b""), wall)
        except Exception:
            if session is not None:
                session.end("setup-failed", wall)
            self.ports.release([s.port for s in streams], now)
            raise
        answer_sdp = serialize_sdp(desc).encode()
        call = _Call(dialog, session, sdp_id, 1, answer_sdp, timer)
        self.calls[dialog.id] = call
        self._arm_session_timer(call, now)
        self._arm_rtp(call)
        self._schedule()
        log.info(
            "recording session %s started: %d leg(s), %d participant(s)%s",
            session.session_id, len(streams), len(session.metadata.active_participants),
            "" if siprec else " (not SIPREC)", extra={"call_id": request.call_id},
        )  # fmt: skip
        return Answer(body=answer_sdp, content_type="application/sdp", headers=_timer_headers(timer))

    def on_in_dialog(self, request: SipRequest, dialog: Dialog, peer: Peer) -> Answer:
        call = self.calls.get(dialog.id)
        if call is None:
            raise SipError(481, "no recording session for this dialog")
        if request.method not in ("INVITE", "UPDATE"):
            return Answer()  # BYE: the core ends the dialog after answering, on_dialog_ended follows
        body = split_body(request)
        offer = parse_sdp(body.sdp) if body.sdp is not None else None
        doc = parse_metadata(body.metadata) if body.metadata is not None else None
        timer = self._negotiate_timer(request)
        now, wall = self.clock(), self.wall_clock()
        session = call.session
        sdp: bytes | None = None
        if offer is not None:
            before = session.ports
            desc, streams = self._answer(offer, session.streams, call.sdp_id, call.sdp_version, now)
            try:
                session.apply(Offer(streams, doc, body.metadata or b""), wall)
            finally:
                # Ports of closed legs, and new ones if applying failed half-way, go back to the pool.
                live = set(session.ports)
                self.ports.release([p for p in {*before, *(s.port for s in streams)} if p not in live], now)
            sdp = self._versioned(call, desc)
        else:
            if doc is not None:
                session.apply(Offer(None, doc, body.metadata or b""), wall)
            if request.method == "INVITE":
                sdp = call.answer_sdp  # an offer-less re-INVITE: our 200 carries the offer, the ACK the answer
        call.timer = timer
        self._arm_session_timer(call, now)
        self._schedule()
        headers = _timer_headers(timer)
        if sdp is None:
            return Answer(headers=headers)  # metadata-only or refresh UPDATE: 200 without a body
        return Answer(body=sdp, content_type="application/sdp", headers=headers)

    def on_ack(self, request: SipRequest, dialog: Dialog) -> None:
        pass  # the dialog layer tracks the ACK; nothing in the recording depends on it

    def on_dialog_ended(self, dialog: Dialog, reason: str) -> None:
        call = self.calls.pop(dialog.id, None)
        if call is None:
            return
        self.timers.cancel_all(dialog.id)
        now, wall = self.clock(), self.wall_clock()
        ports = call.session.ports
        call.session.end(reason, wall)
        self.ports.release(ports, now)
        self._schedule()
        log.info(
            "recording session %s ended (%s) after %.1f s",
            call.session.session_id, reason, call.session.duration(wall), extra={"call_id": dialog.call_id},
        )  # fmt: skip

    # --- lifecycle ---------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """End every session with a BYE (call before the transport stops, so the BYEs go out)."""
        for call in list(self.calls.values()):
            self.core.terminate(call.dialog, "shutdown")
        if self._handle is not None:
            self._handle.cancel()
            self._handle = self._handle_at = None

    def next_deadline(self) -> float | None:
        return self.timers.next_deadline()

    def tick(self, now: float | None = None) -> None:
        """Run every timer due at `now` (default: the clock)."""
        if self._handle is not None:
            self._handle.cancel()  # run by hand while a loop timer is pending: one run is enough
        self._handle = self._handle_at = None
        now = self.clock() if now is None else now
        while (timer := self.timers.pop_due(now)) is not None:
            call = self.calls.get(timer.key)  # type: ignore[call-overload]
            if call is None:
                continue
            if timer.name == _EXPIRES:
                log.warning("session timer expired without refresh: BYE", extra={"call_id": call.dialog.call_id})
                self.core.terminate(call.dialog, "session-expired")
            elif timer.name == _REFRESH:
                self._send_refresh(call)
            elif timer.name == _RTP:
                self._check_rtp(call, now)
            elif timer.name == _AUTO_RESUME:
                log.info("auto-resume after the API pause", extra={"call_id": call.dialog.call_id})
                call.session.resume(self.wall_clock())
        self._schedule()

    # --- internals ---------------------------------------------------------------------------------------
    def _negotiate_timer(self, request: SipRequest) -> SessionTimer | None:
        sip = self.config.sip
        return negotiate_timer(request, min_se=sip.min_se, preferred=sip.session_expires)

    def _answer(
        self,
        offer: SessionDescription,
        previous: tuple[NegotiatedStream, ...] | list[NegotiatedStream],
        sdp_id: int,
        version: int,
        now: float,
    ) -> tuple[SessionDescription, list[NegotiatedStream]]:
        """build_answer with ports from the pool. A dry run with placeholder ports first: SDP errors (400/488)
        come before port exhaustion (503), and only the ports actually needed are reserved."""

        def answer(ports: list[int] | Callable[[int], int]) -> tuple[SessionDescription, list[NegotiatedStream]]:
            return build_answer(
                offer, address=self.address, ports=ports, decodable=self.decodable,
                session_id=sdp_id, session_version=version, previous=previous,
            )  # fmt: skip

        _, probe = answer(lambda index: 1)
        kept = {s.index for s in previous}
        ports = self.ports.allocate(sum(1 for s in probe if s.index not in kept), now)
        return answer(ports)

    @staticmethod
    def _versioned(call: _Call, desc: SessionDescription) -> bytes:
        # RFC 3264 section 8: the o= version goes up exactly when the answer changes.
        text = serialize_sdp(desc).encode()
        if text != call.answer_sdp:
            call.sdp_version += 1
            desc.origin = replace(desc.origin, session_version=str(call.sdp_version))
            text = serialize_sdp(desc).encode()
            call.answer_sdp = text
        return text

    def _arm_session_timer(self, call: _Call, now: float) -> None:
        key = call.dialog.id
        self.timers.cancel(key, _EXPIRES)
        self.timers.cancel(key, _REFRESH)
        if call.timer is None:
            return
        self.timers.schedule(key, _EXPIRES, call.timer.bye_at(now))
        if call.timer.refresher == "uas":
            self.timers.schedule(key, _REFRESH, now + call.timer.interval / 2)

    def _send_refresh(self, call: _Call) -> None:
        """We are the refresher (the request said refresher=uas, or the UAC lacks "timer"): a body-less UPDATE
        (RFC 4028 section 7.4 lets either UPDATE or re-INVITE refresh)."""
        assert call.timer is not None
        dialog = call.dialog
        request = dialog.make_request(
            "UPDATE", headers=[("Session-Expires", call.timer.header), ("Supported", ", ".join(SUPPORTED_OPTIONS))]
        )

        def done(response: SipResponse | None) -> None:
            if self.calls.get(dialog.id) is not call:
                return
            if response is not None:
                dialog.response_received(request, response)
            status = response.status if response is not None else None
            if status is not None and 200 <= status < 300:
                self._arm_session_timer(call, self.clock())
                self._schedule()
            elif status is None or status in (408, 481):
                self.core.terminate(dialog, "session-refresh-failed")
            # Other failures: the expiry timer stays armed and ends the session if nothing refreshes it.

        self.core.send_request(request, dialog.next_hop(), done)

    def _arm_rtp(self, call: _Call) -> None:
        # No media sink means no RTP knowledge: the idle time-out stays off rather than end live calls.
        if not self.media.reports_activity:
            return
        self.timers.schedule(call.dialog.id, _RTP, call.session.last_media + self.config.rtp.rtp_timeout_s)

    def _check_rtp(self, call: _Call, now: float) -> None:
        session = call.session
        if session.fully_held:
            session.touch_media(now)  # a held call sends no RTP by design: hold time is not idle time
        if now - session.last_media >= self.config.rtp.rtp_timeout_s:
            log.warning("no RTP for %.0f s: BYE", now - session.last_media, extra={"call_id": session.call_id})
            self.core.terminate(call.dialog, "rtp-timeout")
            return
        self._arm_rtp(call)

    def _schedule(self) -> None:
        deadline = self.timers.next_deadline()
        if deadline == self._handle_at:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._handle_at = deadline
        if deadline is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # driven by hand: the caller runs tick()
        self._handle = loop.call_later(max(0.0, deadline - self.clock()), self.tick)
