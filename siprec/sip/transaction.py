"""RFC 3261 section 17 transactions for a UAS, sans-I/O: messages and `now` in, actions and deadlines out.

One `TransactionLayer` holds every server transaction (INVITE: 17.2.1 with the RFC 6026 "Accepted" state;
non-INVITE: 17.2.2), the non-INVITE client transactions the server needs for its own BYEs (17.1.2), and the 2xx
retransmission of section 13.3.1.4, which belongs to the UAS core but lives here so the core only sees actions.
The core feeds it requests, responses and timer ticks and executes the returned actions in order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeAlias

from siprec.sip.errors import SipError
from siprec.sip.headers import Via
from siprec.sip.message import SipRequest, SipResponse, make_response, new_branch, new_tag
from siprec.sip.peer import (
    Peer,
    default_port,
    response_destination,
    stamp_received,
    uri_destination,
)
from siprec.sip.timers import TimerQueue, TimerSettings

__all__ = [
    "MAGIC_COOKIE",
    "AckReceived",
    "AckTimeout",
    "Action",
    "ClientTimeout",
    "ClientTransaction",
    "InviteCancelled",
    "NewRequest",
    "Peer",
    "ResponseReceived",
    "SendRequest",
    "SendResponse",
    "ServerTransaction",
    "TransactionLayer",
    "TransactionTerminated",
    "TxState",
    "response_destination",
    "stamp_received",
    "uri_destination",
]

MAGIC_COOKIE = "z9hG4bK"


class TxState(Enum):
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"  # INVITE server: ACK for a non-2xx received
    ACCEPTED = "accepted"  # INVITE server: 2xx sent (RFC 6026)
    TERMINATED = "terminated"


@dataclass(eq=False)
class ServerTransaction:
    id: str
    request: SipRequest
    peer: Peer  # where the request came from
    response_peer: Peer  # where responses go (RFC 3261 18.2.2 / RFC 3581)
    state: TxState
    # To-tag for responses the layer builds itself (487, 200 to CANCEL); follows the tag the core uses.
    local_tag: str = field(default_factory=new_tag)
    last_response: SipResponse | None = None
    key: tuple[object, ...] = ()
    merge_key: tuple[object, ...] | None = None
    retransmit_interval: float = 0.0  # timer G

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def is_invite(self) -> bool:
        return self.request.method == "INVITE"


@dataclass(eq=False)
class ClientTransaction:
    id: str
    request: SipRequest
    peer: Peer
    branch: str
    state: TxState = TxState.TRYING
    last_response: SipResponse | None = None
    retransmit_interval: float = 0.0  # timer E

    @property
    def method(self) -> str:
        return self.request.method


# --- actions --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResponse:
    peer: Peer
    response: SipResponse
    retransmission: bool = False


@dataclass(frozen=True)
class SendRequest:
    peer: Peer
    request: SipRequest
    retransmission: bool = False


@dataclass(frozen=True)
class NewRequest:
    """A request the core must answer through `send_response(tx, ...)`."""

    tx: ServerTransaction


@dataclass(frozen=True)
class AckReceived:
    """An ACK that is not a transaction's (ACK for a 2xx, RFC 3261 13.3.1.4): it belongs to the dialog.
    Emitted for every such ACK, retransmitted ones too, so the core must treat it idempotently."""

    request: SipRequest
    peer: Peer


@dataclass(frozen=True)
class InviteCancelled:
    """A CANCEL hit an INVITE still in progress: the layer already sent 200 to the CANCEL and 487 to the INVITE."""

    tx: ServerTransaction
    cancel: SipRequest


@dataclass(frozen=True)
class AckTimeout:
    """No ACK for our 2xx after 64*T1 (RFC 3261 13.3.1.4): the core should end the dialog with a BYE."""

    call_id: str
    local_tag: str
    remote_tag: str
    cseq: int

    @property
    def dialog_id(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)


@dataclass(frozen=True)
class ResponseReceived:
    tx: ClientTransaction
    response: SipResponse


@dataclass(frozen=True)
class ClientTimeout:
    """Timer F fired (or the transport failed): the request got no final response."""

    tx: ClientTransaction


@dataclass(frozen=True)
class TransactionTerminated:
    """The transaction is gone; ids the core never saw (CANCEL, merged requests) may appear too."""

    tx_id: str


Action: TypeAlias = (
    SendResponse
    | SendRequest
    | NewRequest
    | AckReceived
    | InviteCancelled
    | AckTimeout
    | ResponseReceived
    | ClientTimeout
    | TransactionTerminated
)


# --- matching keys --------------------------------------------------------------------------------------------


def _bare(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _sent_by(via: Via) -> tuple[str, int]:
    return (_bare(via.host).lower(), via.port if via.port is not None else default_port(via.transport))


def _server_key(req: SipRequest, method: str) -> tuple[object, ...]:
    """RFC 3261 17.2.3: branch + sent-by + method when the branch has the magic cookie; otherwise the RFC 2543
    rule (Request-URI, From tag, Call-ID, CSeq, top Via; the To tag is checked separately)."""
    via = req.top_via
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return ("3261", branch, _sent_by(via), method)
    return (
        "2543",
        req.uri.strip(),
        req.from_.tag,
        req.call_id,
        req.cseq.seq,
        method,
        via.transport,
        _sent_by(via),
        branch,
    )


def _is_2543(key: tuple[object, ...]) -> bool:
    return key[0] == "2543"


_PendingKey: TypeAlias = tuple[str, str, str, int]  # call-id, local tag, remote tag, CSeq number


@dataclass(eq=False)
class _Pending2xx:
    key: _PendingKey
    response: SipResponse
    peer: Peer
    interval: float


# --- the layer ------------------------------------------------------------------------------------------------


class TransactionLayer:
    """All transactions of one SIP endpoint. Not thread-safe; drive it from one task.

    `auto_trying`: INVITE server transactions answer 100 Trying at once. `sent_by`: default Via sent-by
    ("host:port") for requests we send. `invite_answer_timeout`: an INVITE the core never answers gets a 500 after
    that many seconds (a guard so a core bug cannot pin memory; the core normally answers in milliseconds).
    """

    def __init__(
        self,
        t1: float = 0.5,
        t2: float = 4.0,
        t4: float = 5.0,
        *,
        auto_trying: bool = True,
        sent_by: str | None = None,
        invite_answer_timeout: float = 120.0,
    ) -> None:
        self.timers = TimerSettings(t1, t2, t4)
        self.auto_trying = auto_trying
        self.sent_by = sent_by
        self.invite_answer_timeout = invite_answer_timeout
        self._server: dict[tuple[object, ...], ServerTransaction] = {}
        self._merge: dict[tuple[object, ...], ServerTransaction] = {}
        self._client: dict[tuple[str, str], ClientTransaction] = {}
        self._by_id: dict[str, ServerTransaction | ClientTransaction] = {}
        self._pending: dict[_PendingKey, _Pending2xx] = {}
        self._queue = TimerQueue()
        self._ids = itertools.count(1)

    # --- observability ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Live transactions (server and client)."""
        return len(self._by_id)

    @property
    def pending_acks(self) -> int:
        """2xx responses still retransmitted while waiting for their ACK."""
        return len(self._pending)

    def get(self, tx_id: str) -> ServerTransaction | ClientTransaction | None:
        return self._by_id.get(tx_id)

    def next_deadline(self) -> float | None:
        return self._queue.next_deadline()

    # --- requests in --------------------------------------------------------------------------------------------
    def receive_request(self, req: SipRequest, source: Peer, now: float) -> list[Action]:
        """A request from the transport. Raises SipError (400) when Via/From/To/Call-ID/CSeq are unusable; the
        caller answers that statelessly if it can."""
        cseq = req.cseq
        if cseq.method.upper() != req.method.upper():
            raise SipError(400, "CSeq method does not match the request method")
        stamp_received(req, source)
        if req.method == "ACK":
            return self._on_ack(req, source, now)
        key = _server_key(req, req.method)
        tx = self._server.get(key)
        if tx is not None and (not _is_2543(key) or req.to.tag == tx.request.to.tag):
            return self._on_retransmission(tx)
        if req.method == "CANCEL":
            return self._on_cancel(req, source, key, now)
        to_tag = req.to.tag
        merge_key = (req.from_.tag, req.call_id, cseq.seq, cseq.method) if to_tag is None else None
        if merge_key is not None and merge_key in self._merge:
            # RFC 3261 8.2.2.2: same request arriving by another path (forking proxy) -> 482, never to the core.
            tx = self._new_server_tx(req, source, key, None, now)
            return self._respond(tx, make_response(req, 482, to_tag=tx.local_tag), now)
        tx = self._new_server_tx(req, source, key, merge_key, now)
        actions: list[Action] = []
        if tx.is_invite and self.auto_trying:
            actions += self._respond(tx, make_response(req, 100), now)
        actions.append(NewRequest(tx))
        return actions

    def _new_server_tx(
        self,
        req: SipRequest,
        source: Peer,
        key: tuple[object, ...],
        merge_key: tuple[object, ...] | None,
        now: float,
    ) -> ServerTransaction:
        invite = req.method == "INVITE"
        tx = ServerTransaction(
            id=f"s{next(self._ids)}-{req.method}",
            request=req,
            peer=source,
            response_peer=response_destination(req, source),
            state=TxState.PROCEEDING if invite else TxState.TRYING,
            key=key,
            merge_key=merge_key,
        )
        self._server[key] = tx
        if merge_key is not None:
            self._merge[merge_key] = tx
        self._by_id[tx.id] = tx
        # Guard against a core that never answers; a non-INVITE UAC gives up after timer F anyway.
        guard = self.invite_answer_timeout if invite else self.timers.timeout
        self._queue.schedule(tx.id, "guard", now + guard)
        return tx

    def _on_retransmission(self, tx: ServerTransaction) -> list[Action]:
        if tx.state in (TxState.CONFIRMED, TxState.ACCEPTED, TxState.TERMINATED):
            return []  # absorbed (RFC 6026: INVITE retransmissions in Accepted are not passed up)
        if tx.last_response is None:
            if not tx.is_invite:
                return []  # Trying: absorb until the core answers
            tx.last_response = make_response(tx.request, 100)
            return [SendResponse(tx.response_peer, tx.last_response)]
        return [SendResponse(tx.response_peer, tx.last_response, retransmission=True)]

    def _on_ack(self, req: SipRequest, source: Peer, now: float) -> list[Action]:
        key = _server_key(req, "INVITE")
        tx = self._server.get(key)
        if tx is not None and _is_2543(key):
            # RFC 2543 ACK matching: its To tag is the one of the response we sent.
            sent_tag = tx.last_response.to.tag if tx.last_response is not None else None
            if req.to.tag != sent_tag:
                tx = None
        if tx is not None and tx.state is not TxState.ACCEPTED:
            if tx.state is TxState.COMPLETED:
                tx.state = TxState.CONFIRMED
                self._queue.cancel(tx.id, "G")
                self._queue.cancel(tx.id, "H")
                return self._start_terminal(tx, "I", self.timers.t4, now)
            return []  # Confirmed: absorb; Proceeding: a stray ACK
        # ACK for a 2xx (its own transaction at the UAC, RFC 3261 17.1.1.3): stop our 2xx retransmission.
        pkey = (req.call_id, req.to.tag or "", req.from_.tag or "", req.cseq.seq)
        pending = self._pending.pop(pkey, None)
        if pending is not None:
            self._queue.cancel_all(("2xx", *pkey))
        return [AckReceived(req, source)]

    def _on_cancel(self, req: SipRequest, source: Peer, key: tuple[object, ...], now: float) -> list[Action]:
        """RFC 3261 9.2: find the INVITE with the 17.2.3 rules; 200 to the CANCEL and 487 to a pending INVITE."""
        invite_key = (*key[:-1], "INVITE") if not _is_2543(key) else (*key[:5], "INVITE", *key[6:])
        invite_tx = self._server.get(invite_key)
        if invite_tx is not None and _is_2543(key) and invite_tx.request.to.tag != req.to.tag:
            invite_tx = None
        cancel_tx = self._new_server_tx(req, source, key, None, now)
        if invite_tx is None:
            return self._respond(cancel_tx, make_response(req, 481), now)
        actions = self._respond(cancel_tx, make_response(req, 200, to_tag=invite_tx.local_tag), now)
        if invite_tx.state is TxState.PROCEEDING:
            resp = make_response(invite_tx.request, 487, to_tag=invite_tx.local_tag)
            actions += self._respond(invite_tx, resp, now)
            actions.append(InviteCancelled(invite_tx, req))
        return actions

    # --- responses out ------------------------------------------------------------------------------------------
    def send_response(self, tx: ServerTransaction, resp: SipResponse, now: float) -> list[Action]:
        """The core answers `tx`. Responses after the final one are dropped (returns []), except further 2xx to
        an INVITE, which are passed through (RFC 6026 7.1)."""
        if not 100 <= resp.status <= 699:
            raise ValueError(f"bad status {resp.status}")
        if self._by_id.get(tx.id) is not tx:
            return []
        return self._respond(tx, resp, now)

    def _respond(self, tx: ServerTransaction, resp: SipResponse, now: float) -> list[Action]:
        if resp.status > 100:
            try:
                tag = resp.to.tag
            except SipError:
                tag = None
            if tag:
                tx.local_tag = tag
        send = SendResponse(tx.response_peer, resp)
        if tx.state is TxState.ACCEPTED:
            return [send] if 200 <= resp.status < 300 else []
        if tx.state not in (TxState.TRYING, TxState.PROCEEDING):
            return []
        tx.last_response = resp
        if resp.status < 200:
            tx.state = TxState.PROCEEDING
            return [send]
        self._queue.cancel(tx.id, "guard")
        if not tx.is_invite:
            tx.state = TxState.COMPLETED
            return [send, *self._start_terminal(tx, "J", self.timers.timeout, now)]
        if resp.status < 300:
            tx.state = TxState.ACCEPTED
            self._queue.schedule(tx.id, "L", now + self.timers.timeout)
            self._start_2xx_retransmission(tx, resp, now)
            return [send]
        tx.state = TxState.COMPLETED
        if not tx.response_peer.reliable:
            tx.retransmit_interval = self.timers.t1
            self._queue.schedule(tx.id, "G", now + self.timers.t1)
        self._queue.schedule(tx.id, "H", now + self.timers.timeout)
        return [send]

    def _start_terminal(
        self, tx: ServerTransaction | ClientTransaction, name: str, wait: float, now: float
    ) -> list[Action]:
        """Timers I, J, K: wait on unreliable transports, zero (terminate now) on reliable ones."""
        if tx.peer.reliable or wait <= 0:
            return self._terminate(tx)
        self._queue.schedule(tx.id, name, now + wait)
        return []

    def _start_2xx_retransmission(self, tx: ServerTransaction, resp: SipResponse, now: float) -> None:
        # Retransmitted on every transport: a proxy on the path may forward over UDP (RFC 3261 13.3.1.4).
        try:
            pkey: _PendingKey = (resp.call_id, resp.to.tag or "", resp.from_.tag or "", resp.cseq.seq)
        except SipError:
            return
        if pkey in self._pending:
            return
        self._pending[pkey] = _Pending2xx(pkey, resp, tx.response_peer, self.timers.t1)
        tkey = ("2xx", *pkey)
        self._queue.schedule(tkey, "retransmit", now + self.timers.t1)
        self._queue.schedule(tkey, "H", now + self.timers.timeout)

    def stop_2xx_retransmission(self, call_id: str, local_tag: str, remote_tag: str, cseq: int) -> None:
        """For a core that ends a dialog before its ACK came (the retransmission would otherwise run to timer H)."""
        pkey = (call_id, local_tag, remote_tag, cseq)
        if self._pending.pop(pkey, None) is not None:
            self._queue.cancel_all(("2xx", *pkey))

    # --- client transactions --------------------------------------------------------------------------------------
    def send_request(
        self, req: SipRequest, peer: Peer, now: float, *, sent_by: str | None = None
    ) -> list[Action]:
        """Start a non-INVITE client transaction (RFC 3261 17.1.2). Adds a Via with a fresh branch when the
        request has none (sent-by from `sent_by` or the layer's default), or a branch to a Via without one."""
        if req.method in ("INVITE", "ACK"):
            raise ValueError(f"{req.method} client transactions are not supported by this UAS")
        vias = req.headers.get_all("Via")
        branch: str
        if not vias:
            host = sent_by or self.sent_by
            if not host:
                raise ValueError("request has no Via and no sent_by was given")
            branch = new_branch()
            req.headers.prepend("Via", f"SIP/2.0/{peer.transport.upper()} {host};branch={branch};rport")
        else:
            via = req.top_via
            if via.branch is None or not via.branch.startswith(MAGIC_COOKIE):
                via.params["branch"] = new_branch()
                rest = vias[1:]
                req.headers.remove("Via")
                for value in reversed([str(via), *rest]):
                    req.headers.prepend("Via", value)
            branch = req.top_via.branch or ""
        tx = ClientTransaction(id=f"c{next(self._ids)}-{req.method}", request=req, peer=peer, branch=branch)
        self._client[(branch, req.method)] = tx
        self._by_id[tx.id] = tx
        if not peer.reliable:
            tx.retransmit_interval = self.timers.t1
            self._queue.schedule(tx.id, "E", now + self.timers.t1)
        self._queue.schedule(tx.id, "F", now + self.timers.timeout)
        return [SendRequest(peer, req)]

    def receive_response(self, resp: SipResponse, now: float) -> list[Action]:
        """RFC 3261 17.1.3: match on the top Via branch and the CSeq method; strays are dropped."""
        try:
            branch = resp.top_via.branch
            method = resp.cseq.method
        except SipError:
            return []
        tx = self._client.get((branch or "", method))
        if tx is None or tx.state not in (TxState.TRYING, TxState.PROCEEDING):
            return []  # unknown, or a retransmitted final absorbed in Completed
        tx.last_response = resp
        if resp.status < 200:
            tx.state = TxState.PROCEEDING
            return [ResponseReceived(tx, resp)]
        tx.state = TxState.COMPLETED
        self._queue.cancel(tx.id, "E")
        self._queue.cancel(tx.id, "F")
        return [ResponseReceived(tx, resp), *self._start_terminal(tx, "K", self.timers.t4, now)]

    def transport_error(self, tx_id: str, now: float) -> list[Action]:
        """The transport could not send for this transaction (RFC 3261 17.1.4, 17.2.4): give up on it."""
        tx = self._by_id.get(tx_id)
        if tx is None:
            return []
        actions: list[Action] = []
        if isinstance(tx, ClientTransaction) and tx.state in (TxState.TRYING, TxState.PROCEEDING):
            actions.append(ClientTimeout(tx))
        return actions + self._terminate(tx)

    # --- timers ---------------------------------------------------------------------------------------------------
    def on_timer(self, now: float) -> list[Action]:
        """Fire every timer due at `now`, earliest first."""
        actions: list[Action] = []
        while (timer := self._queue.pop_due(now)) is not None:
            if isinstance(timer.key, tuple):
                actions += self._on_2xx_timer(timer.key[1:], timer.name, timer.deadline, now)
                continue
            tx = self._by_id.get(str(timer.key))
            if tx is None:
                continue
            if isinstance(tx, ServerTransaction):
                actions += self._on_server_timer(tx, timer.name, timer.deadline, now)
            else:
                actions += self._on_client_timer(tx, timer.name, timer.deadline, now)
        return actions

    def _next(self, deadline: float, interval: float, now: float) -> float:
        # Keep the exact schedule when called on time; after a stall, restart from now rather than burst.
        nxt = deadline + interval
        return nxt if nxt > now else now + interval

    def _on_server_timer(self, tx: ServerTransaction, name: str, deadline: float, now: float) -> list[Action]:
        if name == "G" and tx.state is TxState.COMPLETED and tx.last_response is not None:
            tx.retransmit_interval = min(2 * tx.retransmit_interval, self.timers.t2)
            self._queue.schedule(tx.id, "G", self._next(deadline, tx.retransmit_interval, now))
            return [SendResponse(tx.response_peer, tx.last_response, retransmission=True)]
        if name == "guard" and tx.state in (TxState.TRYING, TxState.PROCEEDING):
            if tx.is_invite:
                return self._respond(tx, make_response(tx.request, 500, to_tag=tx.local_tag), now)
            return self._terminate(tx)
        if name in ("H", "I", "J", "L"):
            return self._terminate(tx)
        return []

    def _on_client_timer(self, tx: ClientTransaction, name: str, deadline: float, now: float) -> list[Action]:
        if name == "E" and tx.state in (TxState.TRYING, TxState.PROCEEDING):
            # 17.1.2.2: doubling up to T2 in Trying, T2 flat once a provisional came.
            if tx.state is TxState.TRYING:
                tx.retransmit_interval = min(2 * tx.retransmit_interval, self.timers.t2)
            else:
                tx.retransmit_interval = self.timers.t2
            self._queue.schedule(tx.id, "E", self._next(deadline, tx.retransmit_interval, now))
            return [SendRequest(tx.peer, tx.request, retransmission=True)]
        if name == "F" and tx.state in (TxState.TRYING, TxState.PROCEEDING):
            return [ClientTimeout(tx), *self._terminate(tx)]
        if name == "K":
            return self._terminate(tx)
        return []

    def _on_2xx_timer(self, pkey: tuple[object, ...], name: str, deadline: float, now: float) -> list[Action]:
        pending = self._pending.get(pkey)  # type: ignore[arg-type]
        if pending is None:
            return []
        if name == "retransmit":
            pending.interval = min(2 * pending.interval, self.timers.t2)
            self._queue.schedule(("2xx", *pkey), "retransmit", self._next(deadline, pending.interval, now))
            return [SendResponse(pending.peer, pending.response, retransmission=True)]
        # Timer H of 13.3.1.4: the ACK never came.
        del self._pending[pending.key]
        self._queue.cancel_all(("2xx", *pkey))
        call_id, local_tag, remote_tag, cseq = pending.key
        return [AckTimeout(call_id, local_tag, remote_tag, cseq)]

    def _terminate(self, tx: ServerTransaction | ClientTransaction) -> list[Action]:
        if self._by_id.pop(tx.id, None) is None:
            return []
        tx.state = TxState.TERMINATED
        self._queue.cancel_all(tx.id)
        if isinstance(tx, ServerTransaction):
            if self._server.get(tx.key) is tx:
                del self._server[tx.key]
            if tx.merge_key is not None and self._merge.get(tx.merge_key) is tx:
                del self._merge[tx.merge_key]
        else:
            ckey = (tx.branch, tx.method)
            if self._client.get(ckey) is tx:
                del self._client[ckey]
        return [TransactionTerminated(tx.id)]
