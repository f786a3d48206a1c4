"""RFC 3261 section 17 transactions: state machines, timers, matching, CANCEL, merged requests, routing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siprec.sip.message import Headers, SipRequest, SipResponse, make_response
from siprec.sip.transaction import (
    AckReceived,
    AckTimeout,
    ClientTimeout,
    InviteCancelled,
    NewRequest,
    Peer,
    ResponseReceived,
    SendRequest,
    SendResponse,
    TransactionLayer,
    TransactionTerminated,
    TxState,
    response_destination,
    stamp_received,
)

UDP = Peer("UDP", "10.0.0.1", 5060)
TCP_CONN = object()
TCP = Peer("TCP", "10.0.0.1", 40000, TCP_CONN)


def request(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bKaaa",
    cseq: int = 1,
    cseq_method: str | None = None,
    call_id: str = "call-1",
    from_tag: str | None = "ft1",
    to_tag: str | None = None,
    via: str = "10.0.0.1:5060",
    transport: str = "UDP",
    via_params: str = "",
    uri: str = "sip:srs@192.0.2.1",
) -> SipRequest:
    v = f"SIP/2.0/{transport} {via}"
    if branch is not None:
        v += f";branch={branch}"
    v += via_params
    frm = "<sip:src@10.0.0.1>" + (f";tag={from_tag}" if from_tag else "")
    to = "<sip:srs@192.0.2.1>" + (f";tag={to_tag}" if to_tag else "")
    headers = Headers(
        [
            ("Via", v),
            ("Max-Forwards", "70"),
            ("From", frm),
            ("To", to),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {cseq_method or method}"),
            ("Contact", "<sip:src@10.0.0.1:5060>"),
        ]
    )
    return SipRequest(headers=headers, method=method, uri=uri)


def ack_for(resp: SipResponse, *, branch: str | None = "z9hG4bKaaa", **kw: object) -> SipRequest:
    return request("ACK", branch=branch, to_tag=resp.to.tag, **kw)  # type: ignore[arg-type]


def sends(actions: list[object]) -> list[SendResponse]:
    return [a for a in actions if isinstance(a, SendResponse)]


def new_tx(layer: TransactionLayer, req: SipRequest, peer: Peer = UDP, now: float = 0.0):
    actions = layer.receive_request(req, peer, now)
    news = [a for a in actions if isinstance(a, NewRequest)]
    assert len(news) == 1
    return news[0].tx, actions


def run_timers(layer: TransactionLayer, until: float) -> list[tuple[float, object]]:
    """Fire every timer up to `until` at its exact deadline; returns (time, action)."""
    out: list[tuple[float, object]] = []
    while (d := layer.next_deadline()) is not None and d <= until:
        out += [(d, a) for a in layer.on_timer(d)]
    return out


# --- INVITE server transaction ----------------------------------------------------------------------------------


def test_invite_sends_100_at_once_and_new_request() -> None:
    layer = TransactionLayer()
    tx, actions = new_tx(layer, request())
    assert isinstance(actions[0], SendResponse) and actions[0].response.status == 100
    assert actions[0].response.to.tag is None
    assert isinstance(actions[1], NewRequest)
    assert tx.state is TxState.PROCEEDING and len(layer) == 1
    assert tx.request.method == "INVITE" and tx.peer == UDP and tx.id


def test_invite_retransmission_gets_last_provisional_identically() -> None:
    layer = TransactionLayer()
    tx, actions = new_tx(layer, request())
    trying = actions[0].response
    again = layer.receive_request(request(), UDP, 0.3)
    assert len(again) == 1 and again[0].response is trying and again[0].retransmission
    ringing = make_response(tx.request, 180, to_tag="lt")
    assert sends(layer.send_response(tx, ringing, 0.4))[0].response is ringing
    again = layer.receive_request(request(), UDP, 0.6)
    assert [a.response for a in sends(again)] == [ringing] and again[0].response is ringing


def test_no_auto_trying_then_retransmission_sends_100() -> None:
    layer = TransactionLayer(auto_trying=False)
    _, actions = new_tx(layer, request())
    assert sends(actions) == []
    again = layer.receive_request(request(), UDP, 1.0)
    assert [a.response.status for a in sends(again)] == [100]


def test_2xx_retransmission_schedule_until_ack() -> None:
    layer = TransactionLayer()
    tx, _ = new_tx(layer, request())
    ok = make_response(tx.request, 200, to_tag="lt")
    assert sends(layer.send_response(tx, ok, 0.0))[0].response is ok
    assert tx.state is TxState.ACCEPTED and layer.pending_acks == 1
    fired = run_timers(layer, 10.0)
    times = [t for t, a in fired if isinstance(a, SendResponse)]
    assert times == [0.5, 1.5, 3.5, 7.5]
    assert all(a.response is ok and a.retransmission for _, a in fired if isinstance(a, SendResponse))
    # INVITE retransmissions are absorbed in Accepted (RFC 6026).
    assert layer.receive_request(request(), UDP, 10.5) == []
    acts = layer.receive_request(ack_for(ok, branch="z9hG4bKack1"), UDP, 11.0)
    assert len(acts) == 1 and isinstance(acts[0], AckReceived) and acts[0].peer == UDP
    assert layer.pending_acks == 0
    later = run_timers(layer, 100.0)
    assert [a for _, a in later if isinstance(a, SendResponse)] == []
    assert [(t, a) for t, a in later] == [(32.0, TransactionTerminated(tx.id))]
    assert len(layer) == 0 and layer.next_deadline() is None


def test_2xx_without_ack_gives_ack_timeout_at_64_t1() -> None:
    layer = TransactionLayer()
    tx, _ = new_tx(layer, request())
    ok = make_response(tx.request, 200, to_tag="lt")
    layer.send_response(tx, ok, 0.0)
    fired = run_timers(layer, 100.0)
    times = [t for t, a in fired if isinstance(a, SendResponse)]
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    timeouts = [(t, a) for t, a in fired if isinstance(a, AckTimeout)]
    assert timeouts == [(32.0, AckTimeout("call-1", "lt", "ft1", 1))]
    assert timeouts[0][1].dialog_id == ("call-1", "lt", "ft1")
    assert len(layer) == 0 and layer.pending_acks == 0 and layer.next_deadline() is None


def test_retransmission_interval_follows_t1_t2() -> None:
    layer = TransactionLayer(t1=0.1, t2=0.4, t4=1.0)
    tx, _ = new_tx(layer, request())
    layer.send_response(tx, make_response(tx.request, 200, to_tag="lt"), 0.0)
    times = [round(t, 6) for t, a in run_timers(layer, 2.0) if isinstance(a, SendResponse)]
    assert times == [0.1, 0.3, 0.7, 1.1, 1.5, 1.9]


def test_ack_received_for_unknown_2xx_still_reported() -> None:
    layer = TransactionLayer()
    acts = layer.receive_request(request("ACK", to_tag="x", branch="z9hG4bKzz"), UDP, 0.0)
    assert isinstance(acts[0], AckReceived) and len(layer) == 0


def test_stop_2xx_retransmission() -> None:
    layer = TransactionLayer()
    tx, _ = new_tx(layer, request())
    layer.send_response(tx, make_response(tx.request, 200, to_tag="lt"), 0.0)
    layer.stop_2xx_retransmission("call-1", "lt", "ft1", 1)
    assert layer.pending_acks == 0
    assert [a for _, a in run_timers(layer, 100) if not isinstance(a, TransactionTerminated)] == []


def test_non_2xx_final_timer_g_then_h_without_ack() -> None:
    layer = TransactionLayer()
    tx, _ = new_tx(layer, request())
    busy = make_response(tx.request, 486, to_tag="lt")
    layer.send_response(tx, busy, 0.0)
    assert tx.state is TxState.COMPLETED and layer.pending_acks == 0
    fired = run_timers(layer, 100.0)
    times = [t for t, a in fired if isinstance(a, SendResponse)]
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(a.response is busy for _, a in fired if isinstance(a, SendResponse))
    assert fired[-1] == (32.0, TransactionTerminated(tx.id))
    assert tx.state is TxState.TERMINATED and len(layer) == 0


def test_invite_retransmission_in_completed_gets_final() -> None:
    layer = TransactionLayer()
    tx, _ = new_tx(layer, request())
    busy = make_response(tx.request, 486, to_tag="lt")
    layer.send_response(tx, busy, 0.0)
    again = layer.receive_request(request(), UDP, 0.2)
    assert again == [SendResponse(UDP, busy, retransmission=True)]


def test_ack_for_non_2xx_is_absorbed_and_timer_i() -> None:
    layer = TransactionLayer()
    tx, _ = new_tx(layer, request())
    busy = make_response(tx.request, 486, to_tag="lt")
    layer.send_response(tx, busy, 0.0)
    run_timers(layer, 0.6)  # one G retransmission
    assert layer.receive_request(ack_for(busy), UDP, 1.0) == []
    assert tx.state is TxState.CONFIRMED
    # Confirmed absorbs ACK and INVITE retransmissions; G is stopped.
    assert layer.receive_request(ack_for(busy), UDP, 2.0) == []
    assert layer.receive_request(request(), UDP, 2.0) == []
    fired = run_timers(layer, 100.0)
    assert fired == [(6.0, TransactionTerminated(tx.id))]  # timer I = T4 after the ACK
    assert len(layer) == 0


def test_invite_over_tcp_no_retransmissions_and_i_zero() -> None:
    layer = TransactionLayer()
    tx, _ = new_tx(layer, request(transport="TCP"), TCP)
    busy = make_response(tx.request, 486, to_tag="lt")
    out = layer.send_response(tx, busy, 0.0)
    assert out[0].peer is TCP
    assert layer.next_deadline() == 32.0  # timer H only, no G
    assert layer.receive_request(ack_for(busy, transport="TCP"), TCP, 1.0) == [TransactionTerminated(tx.id)]
    assert len(layer) == 0 and layer.next_deadline() is None


def test_responses_after_final_are_dropped() -> None:
    layer = TransactionLayer()
    tx, _ = new_tx(layer, request())
    layer.send_response(tx, make_response(tx.request, 486, to_tag="lt"), 0.0)
    assert layer.send_response(tx, make_response(tx.request, 200, to_tag="lt"), 0.1) == []
    ok_tx, _ = new_tx(layer, request(branch="z9hG4bKbbb", call_id="c2"))
    ok = make_response(ok_tx.request, 200, to_tag="lt")
    layer.send_response(ok_tx, ok, 0.0)
    # A further 2xx from the core is passed through in Accepted (RFC 6026), other statuses are not.
    assert len(layer.send_response(ok_tx, ok, 0.2)) == 1
    assert layer.send_response(ok_tx, make_response(ok_tx.request, 500), 0.2) == []


def test_unanswered_invite_gets_500_after_guard() -> None:
    layer = TransactionLayer(invite_answer_timeout=10.0)
    tx, _ = new_tx(layer, request())
    fired = run_timers(layer, 10.0)
    assert [(t, a.response.status) for t, a in fired if isinstance(a, SendResponse)] == [(10.0, 500)]
    assert tx.state is TxState.COMPLETED


# --- non-INVITE server transaction ------------------------------------------------------------------------------


def test_non_invite_states_and_timer_j() -> None:
    layer = TransactionLayer()
    bye = request("BYE", branch="z9hG4bKbye", cseq=2, to_tag="lt")
    tx, actions = new_tx(layer, bye)
    assert sends(actions) == [] and tx.state is TxState.TRYING
    assert layer.receive_request(request("BYE", branch="z9hG4bKbye", cseq=2, to_tag="lt"), UDP, 0.1) == []
    trying = make_response(tx.request, 100)
    layer.send_response(tx, trying, 0.2)
    assert tx.state is TxState.PROCEEDING
    assert (
        sends(layer.receive_request(request("BYE", branch="z9hG4bKbye", cseq=2, to_tag="lt"), UDP, 0.3))[
            0
        ].response
        is trying
    )
    ok = make_response(tx.request, 200)
    layer.send_response(tx, ok, 1.0)
    assert tx.state is TxState.COMPLETED
    again = layer.receive_request(request("BYE", branch="z9hG4bKbye", cseq=2, to_tag="lt"), UDP, 5.0)
    assert again == [SendResponse(UDP, ok, retransmission=True)]
    assert run_timers(layer, 100.0) == [(33.0, TransactionTerminated(tx.id))]  # J = 64*T1 on UDP
    assert len(layer) == 0


def test_non_invite_over_tcp_terminates_at_once() -> None:
    layer = TransactionLayer()
    tx, _ = new_tx(layer, request("OPTIONS", transport="TCP"), TCP)
    out = layer.send_response(tx, make_response(tx.request, 200), 0.0)
    assert isinstance(out[0], SendResponse) and out[0].peer is TCP
    assert out[1:] == [TransactionTerminated(tx.id)]
    assert len(layer) == 0 and layer.next_deadline() is None


def test_unanswered_non_invite_is_dropped_after_64_t1() -> None:
    layer = TransactionLayer()
    tx, _ = new_tx(layer, request("OPTIONS"))
    assert run_timers(layer, 100) == [(32.0, TransactionTerminated(tx.id))]


# --- matching ---------------------------------------------------------------------------------------------------


def test_same_branch_other_sent_by_or_method_is_a_new_transaction() -> None:
    layer = TransactionLayer()
    new_tx(layer, request())
    new_tx(layer, request(via="10.0.0.2:5060", call_id="c2"), Peer("UDP", "10.0.0.2", 5060))
    new_tx(layer, request("OPTIONS"))
    assert len(layer) == 3


def test_default_port_equals_explicit_5060_in_sent_by() -> None:
    layer = TransactionLayer()
    new_tx(layer, request(via="10.0.0.1"))
    assert len(sends(layer.receive_request(request(via="10.0.0.1:5060"), UDP, 0.1))) == 1
    assert len(layer) == 1


def test_rfc2543_matching_without_magic_cookie() -> None:
    layer = TransactionLayer()
    tx, _ = new_tx(layer, request(branch=None))
    again = layer.receive_request(request(branch=None), UDP, 0.1)
    assert [a.response.status for a in sends(again)] == [100] and len(layer) == 1
    # Other CSeq or other Request-URI: other transaction.
    new_tx(layer, request(branch=None, cseq=2, call_id="c2"))
    busy = make_response(tx.request, 486, to_tag="lt")
    layer.send_response(tx, busy, 0.2)
    # ACK with a To tag that is not ours does not match; the right one does.
    assert isinstance(
        layer.receive_request(request("ACK", branch=None, to_tag="other"), UDP, 0.3)[0], AckReceived
    )
    assert tx.state is TxState.COMPLETED
    assert layer.receive_request(request("ACK", branch=None, to_tag="lt"), UDP, 0.4) == []
    assert tx.state is TxState.CONFIRMED


def test_rfc2543_branch_without_cookie_is_part_of_the_via_match() -> None:
    layer = TransactionLayer()
    tx, _ = new_tx(layer, request(branch="oldstyle1"))
    assert len(sends(layer.receive_request(request(branch="oldstyle1"), UDP, 0.1))) == 1
    assert len(layer) == 1
    acts = layer.receive_request(request("CANCEL", branch="oldstyle1"), UDP, 0.2)
    assert any(isinstance(a, InviteCancelled) and a.tx is tx for a in acts)


# --- CANCEL -----------------------------------------------------------------------------------------------------


def test_cancel_before_final() -> None:
    layer = TransactionLayer()
    tx, _ = new_tx(layer, request())
    layer.send_response(tx, make_response(tx.request, 180, to_tag="lt"), 0.1)
    cancel = request("CANCEL")
    acts = layer.receive_request(cancel, UDP, 0.2)
    statuses = [(a.response.cseq.method, a.response.status) for a in sends(acts)]
    assert statuses == [("CANCEL", 200), ("INVITE", 487)]
    assert all(a.response.to.tag == "lt" for a in sends(acts))
    assert [a for a in acts if isinstance(a, InviteCancelled)] == [InviteCancelled(tx, cancel)]
    assert not any(isinstance(a, NewRequest) for a in acts)
    assert tx.state is TxState.COMPLETED
    # Retransmitted CANCEL gets the same 200; the core's late 200 to the INVITE is dropped.
    again = layer.receive_request(request("CANCEL"), UDP, 0.3)
    assert [a.response.status for a in sends(again)] == [200] and again[0].retransmission
    assert layer.send_response(tx, make_response(tx.request, 200, to_tag="lt"), 0.4) == []
    r487 = sends(acts)[1].response
    assert layer.receive_request(ack_for(r487), UDP, 0.5) == []
    assert tx.state is TxState.CONFIRMED
    run_timers(layer, 100)
    assert len(layer) == 0


def test_cancel_after_final_gets_200_only() -> None:
    layer = TransactionLayer()
    tx, _ = new_tx(layer, request())
    layer.send_response(tx, make_response(tx.request, 200, to_tag="lt"), 0.0)
    acts = layer.receive_request(request("CANCEL"), UDP, 0.1)
    assert [a.response.status for a in sends(acts)] == [200]
    assert not any(isinstance(a, InviteCancelled) for a in acts)
    assert tx.state is TxState.ACCEPTED


def test_cancel_for_unknown_transaction_gets_481() -> None:
    layer = TransactionLayer()
    acts = layer.receive_request(request("CANCEL", branch="z9hG4bKnope"), UDP, 0.0)
    assert [a.response.status for a in sends(acts)] == [481]
    assert not any(isinstance(a, NewRequest) for a in acts)
    # A CANCEL from another sent-by does not match either.
    new_tx(layer, request())
    acts = layer.receive_request(request("CANCEL", via="10.9.9.9:5060"), Peer("UDP", "10.9.9.9", 5060), 0.1)
    assert [a.response.status for a in sends(acts)] == [481]


# --- merged requests --------------------------------------------------------------------------------------------


def test_merged_request_gets_482() -> None:
    layer = TransactionLayer()
    new_tx(layer, request())
    acts = layer.receive_request(
        request(branch="z9hG4bKfork2", via="10.0.0.7:5060"), Peer("UDP", "10.0.0.7", 5060), 0.1
    )
    assert [a.response.status for a in sends(acts)] == [482]
    assert not any(isinstance(a, NewRequest) for a in acts)
    # Its retransmission gets the same 482 (it has its own transaction), the original is untouched.
    again = layer.receive_request(
        request(branch="z9hG4bKfork2", via="10.0.0.7:5060"), Peer("UDP", "10.0.0.7", 5060), 0.2
    )
    assert [a.response.status for a in sends(again)] == [482]
    # Another CSeq is not a merge; a request with a To tag is never checked.
    new_tx(layer, request(branch="z9hG4bKother", cseq=2))
    new_tx(layer, request("BYE", branch="z9hG4bKbye", to_tag="x"))


# --- Via received / rport and response routing -----------------------------------------------------------------


def test_received_added_when_sent_by_differs_and_rport_filled() -> None:
    req = request(via="pbx.example.com:5060", via_params=";rport")
    src = Peer("UDP", "198.51.100.7", 34567)
    assert stamp_received(req, src)
    via = req.top_via
    assert via.params["received"] == "198.51.100.7" and via.params["rport"] == "34567"
    assert response_destination(req, src) == Peer("UDP", "198.51.100.7", 34567)


def test_received_not_added_when_host_matches() -> None:
    req = request()
    assert not stamp_received(req, UDP)
    assert "received" not in req.top_via.params
    # RFC 3581: with rport, received is set even when equal.
    req = request(via_params=";rport")
    assert stamp_received(req, UDP)
    assert req.top_via.params["received"] == "10.0.0.1" and req.top_via.params["rport"] == "5060"


def test_response_destination_without_rport_uses_sent_by_port() -> None:
    req = request(via="pbx.example.com:5070")
    assert response_destination(req, Peer("UDP", "198.51.100.7", 34567)) == Peer("UDP", "198.51.100.7", 5070)
    req = request(via="pbx.example.com")
    assert response_destination(req, Peer("UDP", "198.51.100.7", 34567)).port == 5060
    req = request(via="pbx.example.com", via_params=";maddr=239.1.1.1")
    assert response_destination(req, Peer("UDP", "198.51.100.7", 1)) == Peer("UDP", "239.1.1.1", 5060)


def test_response_destination_on_tcp_is_the_same_connection() -> None:
    req = request(transport="TCP", via="pbx.example.com:5060")
    assert response_destination(req, TCP) is TCP


def test_layer_stamps_via_and_responses_follow_it() -> None:
    layer = TransactionLayer()
    src = Peer("UDP", "198.51.100.7", 34567)
    tx, actions = new_tx(layer, request(via="10.1.1.1:5060", via_params=";rport"), src)
    assert tx.request.top_via.params["received"] == "198.51.100.7"
    trying = actions[0]
    assert trying.peer == src
    assert "rport=34567" in trying.response.headers.get("Via")
    # A retransmission (same branch, same original sent-by) still matches after the stamp.
    assert len(sends(layer.receive_request(request(via="10.1.1.1:5060", via_params=";rport"), src, 0.1))) == 1
    assert len(layer) == 1


def test_multiple_via_values_only_top_is_stamped() -> None:
    req = request(via="10.1.1.1:5060")
    fields = [
        (n, v + ", SIP/2.0/UDP 10.2.2.2;branch=z9hG4bKlower") if n == "Via" else (n, v)
        for n, v in req.headers
    ]
    req.headers = Headers(fields)
    stamp_received(req, Peer("UDP", "198.51.100.7", 5060))
    vias = req.vias
    assert vias[0].params["received"] == "198.51.100.7"
    assert vias[1].host == "10.2.2.2" and "received" not in vias[1].params


# --- client transactions ----------------------------------------------------------------------------------------


def bye_out() -> SipRequest:
    headers = Headers(
        [
            ("Max-Forwards", "70"),
            ("From", "<sip:srs@192.0.2.1>;tag=lt"),
            ("To", "<sip:src@10.0.0.1>;tag=ft1"),
            ("Call-ID", "call-1"),
            ("CSeq", "1 BYE"),
        ]
    )
    return SipRequest(headers=headers, method="BYE", uri="sip:src@10.0.0.1:5060")


def response_to(req: SipRequest, status: int) -> SipResponse:
    return make_response(req, status)


def test_client_adds_via_and_retransmits_until_timer_f() -> None:
    layer = TransactionLayer(sent_by="192.0.2.1:5060")
    req = bye_out()
    acts = layer.send_request(req, UDP, 0.0)
    assert acts == [SendRequest(UDP, req)]
    via = req.top_via
    assert via.branch and via.branch.startswith("z9hG4bK") and via.sent_by == "192.0.2.1:5060"
    assert via.transport == "UDP" and "rport" in via.params
    fired = run_timers(layer, 100.0)
    times = [t for t, a in fired if isinstance(a, SendRequest)]
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    tail = [a for t, a in fired if t == 32.0]
    assert isinstance(tail[0], ClientTimeout) and isinstance(tail[1], TransactionTerminated)
    assert len(layer) == 0 and layer.next_deadline() is None


def test_client_provisional_switches_to_t2_and_final_completes() -> None:
    layer = TransactionLayer()
    req = bye_out()
    layer.send_request(req, UDP, 0.0, sent_by="192.0.2.1")
    run_timers(layer, 1.0)  # retransmission at 0.5, next at 1.5
    acts = layer.receive_response(response_to(req, 100), 1.0)
    assert isinstance(acts[0], ResponseReceived) and acts[0].tx.state is TxState.PROCEEDING
    times = [t for t, a in run_timers(layer, 14.0) if isinstance(a, SendRequest)]
    assert times == [1.5, 5.5, 9.5, 13.5]  # already scheduled at 1.5, then T2 flat
    ok = response_to(req, 200)
    acts = layer.receive_response(ok, 14.0)
    assert acts == [ResponseReceived(acts[0].tx, ok)] and acts[0].tx.state is TxState.COMPLETED
    assert layer.receive_response(ok, 14.5) == []  # retransmitted final absorbed
    assert run_timers(layer, 100.0) == [(19.0, TransactionTerminated(acts[0].tx.id))]  # timer K = T4


def test_client_response_matching() -> None:
    layer = TransactionLayer()
    req = bye_out()
    layer.send_request(req, UDP, 0.0, sent_by="192.0.2.1")
    wrong_branch = response_to(req, 200)
    wrong_branch.headers.set("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKother")
    assert layer.receive_response(wrong_branch, 0.1) == []
    wrong_method = response_to(req, 200)
    wrong_method.headers.set("CSeq", "1 INVITE")
    assert layer.receive_response(wrong_method, 0.1) == []
    assert len(layer.receive_response(response_to(req, 200), 0.2)) == 1


def test_client_over_tcp_no_retransmission_and_k_zero() -> None:
    layer = TransactionLayer()
    req = bye_out()
    layer.send_request(req, TCP, 0.0, sent_by="192.0.2.1")
    assert req.top_via.transport == "TCP"
    assert layer.next_deadline() == 32.0
    acts = layer.receive_response(response_to(req, 200), 0.1)
    assert isinstance(acts[0], ResponseReceived) and isinstance(acts[1], TransactionTerminated)
    assert len(layer) == 0


def test_client_keeps_existing_via_and_adds_missing_branch() -> None:
    layer = TransactionLayer()
    req = bye_out()
    req.headers.prepend("Via", "SIP/2.0/UDP 192.0.2.1:5070")
    layer.send_request(req, UDP, 0.0)
    via = req.top_via
    assert via.sent_by == "192.0.2.1:5070" and via.branch and via.branch.startswith("z9hG4bK")


def test_client_transport_error_times_out() -> None:
    layer = TransactionLayer()
    acts = layer.send_request(bye_out(), UDP, 0.0, sent_by="192.0.2.1")
    tx = next(iter(layer._by_id.values()))
    out = layer.transport_error(tx.id, 0.1)
    assert isinstance(out[0], ClientTimeout) and out[1] == TransactionTerminated(tx.id)
    assert acts and len(layer) == 0


def test_client_invite_is_refused() -> None:
    with pytest.raises(ValueError):
        TransactionLayer().send_request(request(), UDP, 0.0)


# --- memory bound -----------------------------------------------------------------------------------------------


def test_all_state_is_freed_after_terminal_timers() -> None:
    layer = TransactionLayer()
    for i in range(200):
        kind = i % 5
        req = request("INVITE" if kind < 3 else "OPTIONS", branch=f"z9hG4bK{i}", call_id=f"c{i}")
        tx, _ = new_tx(layer, req, now=i * 0.01)
        if kind == 0:
            layer.send_response(tx, make_response(req, 200, to_tag=f"t{i}"), i * 0.01)
        elif kind == 1:
            layer.send_response(tx, make_response(req, 488, to_tag=f"t{i}"), i * 0.01)
        elif kind == 2:
            layer.receive_request(request("CANCEL", branch=f"z9hG4bK{i}", call_id=f"c{i}"), UDP, i * 0.01)
        elif kind == 3:
            layer.send_response(tx, make_response(req, 200), i * 0.01)
        # kind 4: never answered
        layer.send_request(bye_out(), UDP, i * 0.01, sent_by="192.0.2.1")
    assert len(layer) > 0 and layer.pending_acks > 0
    run_timers(layer, 1000.0)
    layer.on_timer(1000.0)
    assert len(layer) == 0 and layer.pending_acks == 0 and layer.next_deadline() is None
    assert layer._server == {} and layer._merge == {} and layer._client == {} and len(layer._queue) == 0


# --- property: retransmissions never create a second transaction ------------------------------------------------

events = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=4),  # which request
        st.sampled_from(["retransmit", "provisional", "final", "tick"]),
        st.floats(min_value=0.0, max_value=0.4),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(events=events)
def test_any_interleaving_yields_one_new_request_per_transaction(
    events: list[tuple[int, str, float]],
) -> None:
    layer = TransactionLayer()
    now = 0.0
    txs: dict[int, object] = {}
    news: dict[int, int] = {}

    def req_for(i: int) -> SipRequest:
        method = "INVITE" if i % 2 == 0 else "OPTIONS"
        return request(method, branch=f"z9hG4bK{i}", call_id=f"c{i}")

    for i, kind, dt in events:
        now += dt  # total stays far below 64*T1, so no transaction ends and every repeat is a retransmission
        if kind == "tick":
            layer.on_timer(now)
            continue
        if i not in txs or kind == "retransmit":
            for a in layer.receive_request(req_for(i), UDP, now):
                if isinstance(a, NewRequest):
                    news[i] = news.get(i, 0) + 1
                    txs[i] = a.tx
            continue
        tx = txs[i]
        status = 180 if kind == "provisional" else (200 if i % 4 == 0 else 404)
        layer.send_response(tx, make_response(tx.request, status, to_tag=f"t{i}"), now)  # type: ignore[attr-defined]
    assert all(n == 1 for n in news.values())
    assert set(news) == set(txs)


# --- from the wire (uses the parser when it is there) -----------------------------------------------------------

WIRE_INVITE = (
    b"INVITE sip:srs@192.0.2.1 SIP/2.0\r\n"
    b"v: SIP/2.0/UDP pbx.example.com:5060;branch=z9hG4bKwire1;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"f: <sip:src@example.com>;tag=abc\r\n"
    b"t: <sip:srs@example.net>\r\n"
    b"i: wire-call@pbx\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"m: <sip:src@203.0.113.5:5060>\r\n"
    b"Timestamp: 54\r\n"
    b"l: 0\r\n\r\n"
)


def test_parsed_invite_gets_100_with_received_rport_and_timestamp() -> None:
    parser = pytest.importorskip("siprec.sip.parser")
    src = Peer("UDP", "203.0.113.5", 61000)
    layer = TransactionLayer()
    actions = layer.receive_request(parser.parse_message(WIRE_INVITE), src, 0.0)
    trying = actions[0]
    assert isinstance(trying, SendResponse) and trying.peer == Peer("UDP", "203.0.113.5", 61000)
    wire = trying.response.serialize()
    assert wire.startswith(b"SIP/2.0 100 Trying\r\n")
    assert b"received=203.0.113.5" in wire and b"rport=61000" in wire and b"Timestamp: 54" in wire
    again = layer.receive_request(parser.parse_message(WIRE_INVITE), src, 0.1)
    assert again[0].response is trying.response and len(layer) == 1
