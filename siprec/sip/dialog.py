"""RFC 3261 section 12 dialogs, UAS side, sans-I/O.

A `Dialog` is the state a UAS keeps after answering an INVITE with a To tag: identifiers, route set, remote
target and the two CSeq spaces. It checks in-dialog requests (12.2.2, 14.2) and builds the requests we send
ourselves (12.2.1.1, typically BYE). `DialogTable` finds dialogs by (Call-ID, local tag, remote tag).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeAlias

from siprec.sip.errors import SipError
from siprec.sip.headers import NameAddr, parse_name_addr
from siprec.sip.message import Headers, SipMessage, SipRequest, SipResponse
from siprec.sip.peer import Peer, parse_hop_uri, uri_destination

DialogId: TypeAlias = tuple[str, str, str]  # Call-ID, local tag, remote tag ("" when the peer sent none)

# Requests that replace the remote target (RFC 3261 12.2, RFC 3311, RFC 6665, RFC 3515).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})

_rng = random.SystemRandom()


class DialogState(Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


def _first_contact_uri(msg: SipMessage) -> str | None:
    values = msg.headers.get_all("Contact")
    if not values:
        return None
    uri = parse_name_addr(values[0], what="Contact").uri
    return None if uri == "*" else uri


def is_loose_route(route: str) -> bool:
    """Whether a Route/Record-Route value names a loose router (`;lr` among the URI parameters)."""
    return parse_hop_uri(parse_name_addr(route, what="Route").uri).loose_route


def _request_uri_from_route(uri: str) -> str:
    # 12.2.1.1: a strict router's URI becomes the Request-URI without what a Request-URI may not carry
    # (URI headers and the method parameter, RFC 3261 table 19.1.1).
    base = uri.split("?", 1)[0]
    parts = base.split(";")
    return ";".join([parts[0], *(p for p in parts[1:] if p.split("=", 1)[0].strip().lower() != "method")])


@dataclass(eq=False)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # the To URI of the INVITE
    remote_uri: str  # the From URI of the INVITE
    remote_target: str  # Contact URI of the peer, replaced by target refresh requests
    route_set: list[str] = field(default_factory=list)  # Record-Route values of the INVITE, in order (12.1.1)
    remote_cseq: int | None = None
    local_cseq: int = 0  # the next request we send uses local_cseq + 1
    secure: bool = False
    state: DialogState = DialogState.EARLY
    local_contact: str | None = None  # our Contact header value (name-addr), put on target refresh requests we send
    incoming_invite_cseq: int | None = None  # an INVITE of theirs we have not answered finally yet
    outgoing_invite_cseq: int | None = None  # an INVITE of ours without a final response yet
    pending_ack: int | None = None  # CSeq of the INVITE whose 2xx still waits for its ACK

    @classmethod
    def from_invite(
        cls,
        invite: SipRequest,
        local_tag: str,
        *,
        secure: bool | None = None,
        local_contact: str | None = None,
        local_cseq: int = 0,
    ) -> Dialog:
        """The UAS dialog of `invite` answered with To tag `local_tag` (RFC 3261 12.1.1). `secure` defaults to
        "the Request-URI is sips:" (the caller should also require that it came over TLS)."""
        target = _first_contact_uri(invite)
        if target is None:
            # RFC 2543 peers may omit Contact (RFC 4475 section 3.4.1 asks us to accept them): their From URI is
            # where in-dialog requests went before RFC 3261.
            target = invite.from_.uri
        route_set = [v.strip() for v in invite.headers.get_all("Record-Route")]
        for route in route_set:
            parse_name_addr(route, what="Record-Route")  # reject garbage now, not when we send BYE
        seq = invite.cseq.seq
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=invite.from_.tag or "",
            local_uri=invite.to.uri,
            remote_uri=invite.from_.uri,
            remote_target=target,
            route_set=route_set,
            remote_cseq=seq,
            local_cseq=local_cseq,
            secure=invite.uri.strip().lower().startswith("sips:") if secure is None else secure,
            local_contact=local_contact,
            incoming_invite_cseq=seq,
        )

    @property
    def id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    @property
    def confirmed(self) -> bool:
        return self.state is DialogState.CONFIRMED

    @property
    def invite_in_progress(self) -> bool:
        return self.incoming_invite_cseq is not None or self.outgoing_invite_cseq is not None

    # --- requests from the peer ------------------------------------------------------------------------------
    def check_request(self, req: SipRequest) -> None:
        """Check an in-dialog request before the core acts on it (RFC 3261 12.2.2 and 14.2). Raises SipError:
        500 for an out-of-order CSeq, 491 when our own INVITE is pending, 500 + Retry-After when theirs is.
        ACK and CANCEL carry the CSeq of their INVITE and are not ordered."""
        seq = req.cseq.seq
        method = req.method
        if method == "ACK":
            self.on_ack(req)
            return
        if method == "CANCEL":
            return
        if self.remote_cseq is not None and seq <= self.remote_cseq:
            raise SipError(500, "CSeq out of order")
        self.remote_cseq = seq
        if method == "INVITE":
            if self.outgoing_invite_cseq is not None:
                raise SipError(491, "an INVITE of ours is pending on this dialog")
            if self.incoming_invite_cseq is not None:
                retry = _rng.randint(0, 10)
                raise SipError(
                    500, "previous INVITE still in progress", headers=[("Retry-After", str(retry))]
                )
            self.incoming_invite_cseq = seq
        if method in TARGET_REFRESH:
            target = _first_contact_uri(req)
            if target is not None:
                self.remote_target = target

    def response_sent(self, req: SipRequest, status: int) -> None:
        """Tell the dialog we answered one of its requests with `status` (final statuses matter)."""
        if req.method != "INVITE" or status < 200:
            return
        seq = req.cseq.seq
        if self.incoming_invite_cseq == seq:
            self.incoming_invite_cseq = None
        if status < 300:
            self.pending_ack = seq
            if self.state is DialogState.EARLY:
                self.state = DialogState.CONFIRMED
        elif self.state is DialogState.EARLY:
            self.state = DialogState.TERMINATED  # the initial INVITE failed: no dialog (12.3)

    def on_ack(self, ack: SipRequest) -> bool:
        """An ACK for our 2xx; True when it acknowledged the pending one (retransmitted ACKs return False)."""
        seq = ack.cseq.seq
        if self.incoming_invite_cseq == seq:
            self.incoming_invite_cseq = None  # an ACK proves the final response went out
        if self.pending_ack is not None and seq == self.pending_ack:
            self.pending_ack = None
            if self.state is DialogState.EARLY:
                self.state = DialogState.CONFIRMED
            return True
        return False

    # --- requests we send --------------------------------------------------------------------------------------
    def make_request(
        self,
        method: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipRequest:
        """A request within the dialog (RFC 3261 12.2.1.1) without Via: `TransactionLayer.send_request` adds it.
        Loose first route: Request-URI = remote target, Route = route set. Strict first route: Request-URI = that
        route, Route = the rest plus the remote target. Send it to `next_hop()`."""
        if self.state is DialogState.TERMINATED:
            raise ValueError("dialog is terminated")
        method = method.upper()
        if method in ("ACK", "CANCEL"):
            raise ValueError(f"{method} is not built by make_request")
        self.local_cseq += 1
        ruri = self.remote_target
        routes = list(self.route_set)
        if routes and not is_loose_route(routes[0]):
            ruri = _request_uri_from_route(parse_name_addr(routes[0], what="Route").uri)
            routes = [*routes[1:], f"<{self.remote_target}>"]
        fields: list[tuple[str, str]] = [("Route", r) for r in routes]
        fields += [
            ("Max-Forwards", "70"),
            ("From", str(NameAddr(self.local_uri, params={"tag": self.local_tag}))),
            (
                "To",
                str(NameAddr(self.remote_uri, params={"tag": self.remote_tag} if self.remote_tag else {})),
            ),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.local_cseq} {method}"),
        ]
        if self.local_contact and method in TARGET_REFRESH:
            contact = self.local_contact
            fields.append(("Contact", contact if contact.lstrip().startswith("<") else f"<{contact}>"))
        hdrs = Headers(fields)
        for name, value in headers:
            hdrs.add(name, value)
        if content_type is not None:
            hdrs.set("Content-Type", content_type)
        if method == "INVITE":
            self.outgoing_invite_cseq = self.local_cseq
        return SipRequest(headers=hdrs, body=body, method=method, uri=ruri)

    def next_hop(self) -> Peer:
        """Where a request built by `make_request` goes: the first route if any (its URI is also the Request-URI
        of a strict router), else the remote target. sips: and `transport=` pick TLS/TCP; default ports."""
        if self.route_set:
            return uri_destination(parse_name_addr(self.route_set[0], what="Route").uri)
        return uri_destination(self.remote_target)

    def response_received(self, req: SipRequest, resp: SipResponse) -> None:
        """A final response to a request we sent in this dialog (12.2.1.2)."""
        if resp.status < 200:
            return
        if req.method == "INVITE" and self.outgoing_invite_cseq == req.cseq.seq:
            self.outgoing_invite_cseq = None
        if resp.status in (481, 408):
            self.state = DialogState.TERMINATED
        elif 200 <= resp.status < 300 and req.method in TARGET_REFRESH:
            target = _first_contact_uri(resp)
            if target is not None:
                self.remote_target = target

    def terminate(self) -> None:
        self.state = DialogState.TERMINATED


class DialogTable:
    """Dialogs by (Call-ID, local tag, remote tag)."""

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))

    def add(self, dialog: Dialog) -> Dialog:
        if dialog.id in self._dialogs:
            raise ValueError(f"dialog {dialog.id} exists")
        self._dialogs[dialog.id] = dialog
        return dialog

    def create_uas(self, invite: SipRequest, local_tag: str, **kwargs: object) -> Dialog:
        """`Dialog.from_invite(...)` added to the table (keyword arguments passed on)."""
        return self.add(Dialog.from_invite(invite, local_tag, **kwargs))  # type: ignore[arg-type]

    def get(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.get(dialog_id)

    def for_call(self, call_id: str) -> list[Dialog]:
        """Every dialog of a Call-ID (a CANCEL names the call, not the dialog)."""
        return [d for d in self._dialogs.values() if d.call_id == call_id]

    def find(self, req: SipRequest) -> Dialog | None:
        """The dialog of a request from the peer (our tag is in To, theirs in From); None without a To tag."""
        local = req.to.tag
        if local is None:
            return None
        return self._dialogs.get((req.call_id, local, req.from_.tag or ""))

    def find_for_response(self, resp: SipResponse) -> Dialog | None:
        """The dialog of a response to a request we sent (our tag is in From)."""
        local = resp.from_.tag
        if local is None:
            return None
        return self._dialogs.get((resp.call_id, local, resp.to.tag or ""))

    def match_in_dialog(self, req: SipRequest) -> Dialog:
        """The dialog of an in-dialog request, or SipError(481) (RFC 3261 12.2.2)."""
        dialog = self.find(req)
        if dialog is None or dialog.state is DialogState.TERMINATED:
            raise SipError(481, "no such dialog")
        return dialog

    def remove(self, dialog: Dialog | DialogId) -> Dialog | None:
        key = dialog.id if isinstance(dialog, Dialog) else dialog
        return self._dialogs.pop(key, None)
