"""SIP test helpers: a hand driver for SipCore (manual clock, bytes in, bytes out) and a minimal SipApplication
that answers INVITEs with a fixed SDP and records what it saw."""

from __future__ import annotations

from dataclasses import dataclass, field

from siprec.sip.core import Answer, SipCore
from siprec.sip.dialog import Dialog
from siprec.sip.errors import SipError, SipParseError
from siprec.sip.message import SipRequest, SipResponse
from siprec.sip.parser import parse_message
from siprec.sip.transaction import Peer

SRC = Peer("UDP", "192.0.2.9", 5080)

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\na=recvonly\r\n"


@dataclass
class FixedAnswerApp:
    """A minimal application: answers INVITEs with a fixed SDP, records what the core tells it."""

    refuse_with: SipError | None = None
    invites: list[str] = field(default_factory=list)
    in_dialog: list[str] = field(default_factory=list)
    acks: int = 0
    ended: list[tuple[str, str]] = field(default_factory=list)

    def on_invite(self, request: SipRequest, dialog: Dialog, peer: Peer) -> Answer:
        if self.refuse_with is not None:
            raise self.refuse_with
        self.invites.append(request.call_id)
        return Answer(body=SDP, content_type="application/sdp")

    def on_in_dialog(self, request: SipRequest, dialog: Dialog, peer: Peer) -> Answer:
        self.in_dialog.append(request.method)
        if request.method == "INVITE":
            return Answer(body=SDP, content_type="application/sdp")
        return Answer()

    def on_ack(self, request: SipRequest, dialog: Dialog) -> None:
        self.acks += 1

    def on_dialog_ended(self, dialog: Dialog, reason: str) -> None:
        self.ended.append((dialog.call_id, reason))


class CoreDriver:
    """Drives a SipCore by hand: datagrams in through the parser, what the core sends collected in `sent`, and a
    manual clock. Subclasses add their own timers (`deadlines`, `fire`) and clocks (`move_clock`)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sent: list[tuple[Peer, bytes]] = []

    def attach(self, core: SipCore) -> None:
        self.core = core
        core.bind(lambda peer, data: self.sent.append((peer, data)), "192.0.2.1", {"UDP": 5060, "TCP": 5060})

    def deliver(self, raw: bytes, peer: Peer = SRC) -> list[SipRequest | SipResponse]:
        """One datagram in; the messages the core sent because of it out."""
        before = len(self.sent)
        try:
            msg = parse_message(raw)
        except SipParseError as err:
            self.core.on_bad_message(err, peer)
        else:
            self.core.on_message(msg, peer)
        return [parse_message(d) for _, d in self.sent[before:]]

    def deadlines(self) -> list[float]:
        deadline = self.core.transactions.next_deadline()
        return [] if deadline is None else [deadline]

    def fire(self) -> None:
        self.core.fire_timers()

    def move_clock(self, to: float) -> None:
        self.now = to

    def advance(self, seconds: float) -> list[SipRequest | SipResponse]:
        """Move the clock, firing every timer due on the way in deadline order; returns what was sent."""
        before = len(self.sent)
        target = self.now + seconds
        while True:
            due = self.deadlines()
            if not due or min(due) > target:
                break
            self.move_clock(min(due))
            self.fire()
        self.move_clock(target)
        return [parse_message(d) for _, d in self.sent[before:]]
