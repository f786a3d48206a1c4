"""The SIP core: drives the sans-I/O transaction and dialog layers from the transport and a clock.

It owns the checks every request goes through (trusted source, RFC 3261 section 8.2 validation, dialog matching,
admission limits), answers OPTIONS itself, and hands the rest to a `SipApplication` (the SIPREC UAS). Anything
any layer rejects with `SipError` is answered here, with a Warning header, and logged once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from siprec import __version__
from siprec.sip import transaction as txn
from siprec.sip.admission import AdmissionControl
from siprec.sip.dialog import Dialog, DialogTable
from siprec.sip.errors import SipError, SipParseError
from siprec.sip.headers import quote
from siprec.sip.message import SipRequest, SipResponse, make_response, new_tag
from siprec.sip.transaction import Peer, ServerTransaction, TransactionLayer
from siprec.sip.validation import UasPolicy, check_accepts, check_body_type, validate_request

log = logging.getLogger("siprec.sip")

SERVER_HEADER = f"siprec/{__version__}"


@dataclass
class Answer:
    """What the application answers to a request it accepts."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


class SipApplication(Protocol):
    """The method semantics above the core (the SIPREC UAS implements this)."""

    def on_invite(self, request: SipRequest, dialog: Dialog, peer: Peer) -> Answer:
        """A new dialog. Raise SipError to refuse; the dialog is then discarded."""
        ...

    def on_in_dialog(self, request: SipRequest, dialog: Dialog, peer: Peer) -> Answer:
        """re-INVITE, UPDATE, BYE, INFO... within `dialog` (CSeq order already checked)."""
        ...

    def on_ack(self, request: SipRequest, dialog: Dialog) -> None: ...

    def on_dialog_ended(self, dialog: Dialog, reason: str) -> None:
        """The dialog is gone (BYE, CANCEL, ACK time-out, refused INVITE after creation, shutdown)."""
        ...


@dataclass
class CoreStats:
    requests: dict[str, int] = field(default_factory=dict)
    responses: dict[int, int] = field(default_factory=dict)
    responses_by_method: dict[tuple[str, int], int] = field(default_factory=dict)  # (CSeq method, status)
    bad_messages: int = 0

    def count_request(self, method: str) -> None:
        self.requests[method] = self.requests.get(method, 0) + 1

    def count_response(self, status: int, method: str = "") -> None:
        self.responses[status] = self.responses.get(status, 0) + 1
        key = (method, status)
        self.responses_by_method[key] = self.responses_by_method.get(key, 0) + 1


class SipCore:
    """Receives messages from `SipTransport` (it is its MessageHandler) and sends through `send`."""

    def __init__(
        self,
        app: SipApplication,
        *,
        policy: UasPolicy,
        admission: AdmissionControl | None = None,
        warn_agent: str = "siprec",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.policy = policy
        self.admission = admission or AdmissionControl()
        self.warn_agent = warn_agent
        self.clock = clock
        self.transactions = TransactionLayer()
        self.dialogs = DialogTable()
        self.stats = CoreStats()
        self.send: Callable[[Peer, bytes], None] = _unbound_send
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._client_callbacks: dict[object, Callable[[SipResponse | None], None]] = {}
        self._admitted: dict[tuple[str, str, str], str] = {}  # dialog id -> source host counted in admission
        self.advertised_host = "127.0.0.1"
        self.local_ports: dict[str, int] = {}

    # --- MessageHandler ---------------------------------------------------------------------------------
    def on_message(self, message: SipRequest | SipResponse, peer: Peer) -> None:
        now = self.clock()
        if isinstance(message, SipResponse):
            self._run(self.transactions.receive_response(message, now))
            return
        self.stats.count_request(message.method)
        if not self.admission.is_trusted(peer.host):
            # Stateless 403: an untrusted source gets no transaction state from us.
            self._reply_stateless(message, peer, SipError(403, f"source {peer.host} is not in sip.trusted_sources"))
            return
        try:
            actions = self.transactions.receive_request(message, peer, now)
        except SipError as err:
            self._reply_stateless(message, peer, err)
            return
        self._run(actions)

    def on_bad_message(self, error: SipParseError, peer: Peer) -> None:
        self.stats.bad_messages += 1
        partial = error.partial
        call_id = _safe_call_id(partial)
        log.warning("bad SIP message from %s:%s: %s", peer.host, peer.port, error.warning, extra={"call_id": call_id})
        if isinstance(partial, SipRequest) and partial.method != "ACK":
            self._reply_stateless(partial, peer, error, logged=True)

    # --- actions ----------------------------------------------------------------------------------------
    def _run(self, actions: list[object]) -> None:
        for action in actions:
            if isinstance(action, txn.SendResponse):
                self.stats.count_response(action.response.status, _cseq_method(action.response))
                self.send(action.peer, action.response.serialize())
            elif isinstance(action, txn.SendRequest):
                self.send(action.peer, action.request.serialize())
            elif isinstance(action, txn.NewRequest):
                self._on_new_request(action.tx)
            elif isinstance(action, txn.AckReceived):
                self._on_ack(action.request)
            elif isinstance(action, txn.InviteCancelled):
                self._on_cancelled(action.tx)
            elif isinstance(action, txn.AckTimeout):
                self._on_ack_timeout(action)
            elif isinstance(action, txn.ResponseReceived):
                self._on_client_response(action.tx, action.response)
            elif isinstance(action, txn.ClientTimeout):
                self._on_client_response(action.tx, None)
        self._schedule()

    def _schedule(self) -> None:
        deadline = self.transactions.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # driven by hand (tests call fire_timers)
        delay = max(0.0, deadline - self.clock())
        self._timer = loop.call_later(delay, self.fire_timers)

    def fire_timers(self) -> None:
        self._timer = None
        self._timer_at = None
        self._run(self.transactions.on_timer(self.clock()))

    # --- requests ---------------------------------------------------------------------------------------
    def _on_new_request(self, tx: ServerTransaction) -> None:
        req = tx.request
        try:
            validate_request(req, self.policy)
            if req.method == "OPTIONS":
                self.respond(tx, Answer(headers=self._capabilities()))
            elif req.to.tag is not None:
                self._in_dialog(tx)
            elif req.method == "INVITE":
                self._new_dialog(tx)
            elif req.method in ("BYE", "UPDATE", "ACK"):
                raise SipError(481, f"{req.method} outside of a dialog")
            else:
                self.respond(tx, self.app_in_dialog_less(req))
        except SipError as err:
            self.reject(tx, err)

    def app_in_dialog_less(self, req: SipRequest) -> Answer:
        raise SipError(405, f"method {req.method} is not allowed outside a dialog", headers=[("Allow", self.policy.allow_header)])

    def _new_dialog(self, tx: ServerTransaction) -> None:
        req = tx.request
        check_body_type(req, self.policy)
        check_accepts(req)
        host = tx.peer.host
        self.admission.admit(host, self.clock())
        dialog = Dialog.from_invite(req, new_tag(), local_contact=self.contact_for(tx.peer))
        try:
            answer = self.app.on_invite(req, dialog, tx.peer)
        except SipError:
            self.admission.release(host)
            raise
        except Exception:
            self.admission.release(host)
            log.exception("application failed on INVITE", extra={"call_id": req.call_id})
            raise SipError(500, "internal error while setting up the recording") from None
        self.dialogs.add(dialog)
        self._admitted[dialog.id] = host
        self.respond(tx, answer, to_tag=dialog.local_tag, contact=True)
        dialog.response_sent(req, answer.status)
        if answer.status >= 300:
            self._end_dialog(dialog, f"refused {answer.status}")

    def _in_dialog(self, tx: ServerTransaction) -> None:
        req = tx.request
        dialog = self.dialogs.match_in_dialog(req)  # 481
        dialog.check_request(req)  # 500 (CSeq order) / 491 (overlapping re-INVITE)
        if req.method in ("INVITE", "UPDATE"):
            check_body_type(req, self.policy)
            check_accepts(req)
        try:
            answer = self.app.on_in_dialog(req, dialog, tx.peer)
        except SipError as err:
            dialog.response_sent(req, err.status)
            raise
        self.respond(tx, answer, to_tag=dialog.local_tag, contact=req.method in ("INVITE", "UPDATE"))
        dialog.response_sent(req, answer.status)
        if req.method == "BYE":
            self._end_dialog(dialog, "bye")

    def _on_ack(self, request: SipRequest) -> None:
        dialog = self.dialogs.find(request)
        if dialog is None:
            return  # ACK for a dialog we no longer have: nothing to answer (ACK has no response)
        dialog.on_ack(request)
        self.app.on_ack(request, dialog)

    def _on_cancelled(self, tx: ServerTransaction) -> None:
        # The transaction layer answered 200 to the CANCEL and 487 to the INVITE; the early dialog is void.
        req = tx.request
        log.info("INVITE cancelled", extra={"call_id": _safe_call_id(req)})
        for dialog in self.dialogs.for_call(req.call_id):
            if not dialog.confirmed:
                self._end_dialog(dialog, "cancel")

    def _on_ack_timeout(self, action: txn.AckTimeout) -> None:
        dialog = self.dialogs.get(action.dialog_id)
        if dialog is None:
            return
        log.warning("no ACK for 2xx: ending the dialog with BYE", extra={"call_id": dialog.call_id})
        self.terminate(dialog, "ack-timeout")

    # --- responses and requests we send -----------------------------------------------------------------
    def respond(
        self, tx: ServerTransaction, answer: Answer, *, to_tag: str | None = None, contact: bool = False
    ) -> None:
        req = tx.request
        headers = [("Server", SERVER_HEADER), *answer.headers]
        if contact and answer.status < 300:
            headers.append(("Contact", self.contact_for(tx.peer)))
        resp = make_response(
            req,
            answer.status,
            to_tag=to_tag or new_tag(),
            headers=headers,
            body=answer.body,
            content_type=answer.content_type,
        )
        self._run(self.transactions.send_response(tx, resp, self.clock()))

    def reject(self, tx: ServerTransaction, err: SipError) -> None:
        req = tx.request
        log.info(
            "%s refused with %d: %s",
            req.method,
            err.status,
            err.warning,
            extra={"call_id": _safe_call_id(req)},
        )
        resp = self._error_response(req, err)
        self._run(self.transactions.send_response(tx, resp, self.clock()))

    def _error_response(self, req: SipRequest, err: SipError) -> SipResponse:
        headers: list[tuple[str, str]] = [("Server", SERVER_HEADER), *err.headers]
        if err.warning:
            headers.append(("Warning", f"{err.warn_code} {self.warn_agent} {quote(err.warning)}"))
        return make_response(req, err.status, err.reason, to_tag=new_tag(), headers=headers)

    def _reply_stateless(self, req: SipRequest, peer: Peer, err: SipError, *, logged: bool = False) -> None:
        if req.method == "ACK":
            return
        if not logged:
            log.info("%s refused with %d: %s", req.method, err.status, err.warning, extra={"call_id": _safe_call_id(req)})
        resp = self._error_response(req, err)
        try:
            dest = txn.response_destination(req, peer)
        except SipError:
            # The Via itself is what is broken: the only address left is the one the request came from.
            dest = peer
        self.stats.count_response(err.status, req.method)
        self.send(dest, resp.serialize())

    def send_request(
        self, request: SipRequest, peer: Peer, on_response: Callable[[SipResponse | None], None] | None = None
    ) -> None:
        actions = self.transactions.send_request(request, peer, self.clock())
        if on_response is not None:
            for action in actions:
                if isinstance(action, txn.SendRequest):
                    self._client_callbacks[_client_key(action.request)] = on_response
        self._run(actions)

    def _on_client_response(self, tx: object, response: SipResponse | None) -> None:
        request = getattr(tx, "request", None)
        if request is None:
            return
        key = _client_key(request)
        callback = self._client_callbacks.get(key)
        if callback is None:
            return
        if response is None or response.status >= 200:
            del self._client_callbacks[key]
        callback(response)

    def terminate(self, dialog: Dialog, reason: str) -> None:
        """End a confirmed dialog from our side: BYE to the peer, then forget it."""
        request = dialog.make_request("BYE", headers=[("User-Agent", SERVER_HEADER)])
        self.send_request(request, dialog.next_hop())
        self._end_dialog(dialog, reason)

    def _end_dialog(self, dialog: Dialog, reason: str) -> None:
        if self.dialogs.remove(dialog) is None:
            return
        if dialog.pending_ack is not None:
            self.transactions.stop_2xx_retransmission(
                dialog.call_id, dialog.local_tag, dialog.remote_tag, dialog.pending_ack
            )
        dialog.terminate()
        host = self._admitted.pop(dialog.id, None)
        if host is not None:
            self.admission.release(host)
        self.app.on_dialog_ended(dialog, reason)

    def bind(self, send: Callable[[Peer, bytes], None], advertised_host: str, ports: dict[str, int]) -> None:
        """Attach to a started transport: where to send, and the address we put in Via and Contact."""
        self.send = send
        self.advertised_host = advertised_host
        self.local_ports = dict(ports)
        udp = ports.get("UDP") or ports.get("TCP") or 5060
        self.transactions.sent_by = f"{_host_for_uri(advertised_host)}:{udp}"

    def contact_for(self, peer: Peer) -> str:
        """Our Contact, with the +sip.srs feature tag RFC 7866 section 6.1.1 asks of an SRS."""
        port = self.local_ports.get(peer.transport, self.local_ports.get("UDP", 5060))
        scheme = "sips" if peer.transport == "TLS" else "sip"
        return f"<{scheme}:srs@{_host_for_uri(self.advertised_host)}:{port};transport={peer.transport.lower()}>;+sip.srs"

    def _capabilities(self) -> list[tuple[str, str]]:
        headers = [("Allow", self.policy.allow_header), ("Accept", self.policy.accept_header)]
        if self.policy.supported:
            headers.append(("Supported", self.policy.supported_header))
        return headers


def _client_key(request: SipRequest) -> tuple[str, str]:
    return (request.top_via.branch or "", request.cseq.method)


def _cseq_method(response: SipResponse) -> str:
    try:
        return response.cseq.method
    except SipParseError:
        return ""  # our own responses copy a parsed CSeq: not expected, but a counter must not raise


def _safe_call_id(message: object) -> str | None:
    if isinstance(message, (SipRequest, SipResponse)):
        value = message.headers.get("Call-ID")
        return value.strip() if value else None
    return None


def _host_for_uri(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _unbound_send(peer: Peer, data: bytes) -> None:
    raise RuntimeError("SipCore.send is not bound to a transport")
