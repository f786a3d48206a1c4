"""SIP test helpers: a minimal SipApplication that answers INVITEs with a fixed SDP and records what it saw."""

from __future__ import annotations

from dataclasses import dataclass, field

from siprec.sip.core import Answer
from siprec.sip.dialog import Dialog
from siprec.sip.errors import SipError
from siprec.sip.message import SipRequest
from siprec.sip.transaction import Peer

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
