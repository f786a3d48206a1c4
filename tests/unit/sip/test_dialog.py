"""RFC 3261 section 12 dialogs (UAS side): creation, in-dialog checks, requests we send and their next hop."""

from __future__ import annotations

import pytest

from siprec.sip.dialog import Dialog, DialogState, DialogTable, is_loose_route
from siprec.sip.errors import SipError
from siprec.sip.message import Headers, SipRequest, make_response
from siprec.sip.transaction import Peer, SendRequest, TransactionLayer

RR = [
    ("Record-Route", "<sip:p1.example.com;lr>"),
    ("Record-Route", "<sip:p2.example.com:5070;lr;transport=tcp>, <sip:p3.example.com;lr>"),
]


def invite(
    *,
    method: str = "INVITE",
    cseq: int = 10,
    to_tag: str | None = None,
    from_tag: str | None = "ft1",
    contact: str | None = "<sip:src@10.0.0.1:5080;transport=udp>",
    extra: list[tuple[str, str]] | None = None,
    uri: str = "sip:srs@192.0.2.1",
    call_id: str = "call-1",
) -> SipRequest:
    fields = [
        ("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx"),
        ("Max-Forwards", "70"),
        ("From", '"Src" <sip:src@example.com>' + (f";tag={from_tag}" if from_tag else "")),
        ("To", "<sip:srs@example.net>" + (f";tag={to_tag}" if to_tag else "")),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
    ]
    if contact:
        fields.append(("Contact", contact))
    fields += extra or []
    return SipRequest(headers=Headers(fields), method=method, uri=uri)


def in_dialog(method: str, cseq: int, **kw: object) -> SipRequest:
    return invite(method=method, cseq=cseq, to_tag="lt", **kw)  # type: ignore[arg-type]


def confirmed(**kw: object) -> Dialog:
    d = Dialog.from_invite(invite(**kw), "lt")  # type: ignore[arg-type]
    inv = invite()
    d.response_sent(inv, 200)
    d.on_ack(in_dialog("ACK", 10))
    return d


# --- creation and lookup ----------------------------------------------------------------------------------------


def test_from_invite_fills_the_dialog_state() -> None:
    d = Dialog.from_invite(invite(extra=RR), "lt")
    assert d.id == ("call-1", "lt", "ft1")
    assert d.local_uri == "sip:srs@example.net" and d.remote_uri == "sip:src@example.com"
    assert d.remote_target == "sip:src@10.0.0.1:5080;transport=udp"
    # UAS keeps the Record-Route order as received (12.1.1), comma lists split.
    assert d.route_set == [
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com:5070;lr;transport=tcp>",
        "<sip:p3.example.com;lr>",
    ]
    assert d.remote_cseq == 10 and d.local_cseq == 0
    assert d.state is DialogState.EARLY and d.invite_in_progress and not d.secure
    assert Dialog.from_invite(invite(uri="sips:srs@192.0.2.1"), "lt").secure


def test_from_invite_without_contact_targets_the_from_uri() -> None:
    # RFC 2543 style (RFC 4475 section 3.4.1): no Contact, in-dialog requests go to the From URI.
    d = Dialog.from_invite(invite(contact=None), "lt")
    assert d.remote_target == d.remote_uri


def test_rfc2543_peer_without_from_tag() -> None:
    d = Dialog.from_invite(invite(from_tag=None), "lt")
    table = DialogTable()
    table.add(d)
    assert d.remote_tag == "" and table.find(in_dialog("BYE", 11, from_tag=None)) is d


def test_response_sent_confirms_and_ack_clears() -> None:
    inv = invite()
    d = Dialog.from_invite(inv, "lt")
    d.response_sent(inv, 180)
    assert d.state is DialogState.EARLY and d.invite_in_progress
    d.response_sent(inv, 200)
    assert d.confirmed and d.pending_ack == 10 and not d.invite_in_progress
    assert d.on_ack(in_dialog("ACK", 10)) and d.pending_ack is None
    assert not d.on_ack(in_dialog("ACK", 10))  # retransmitted ACK


def test_failed_initial_invite_terminates_early_dialog() -> None:
    inv = invite()
    d = Dialog.from_invite(inv, "lt")
    d.response_sent(inv, 486)
    assert d.state is DialogState.TERMINATED


def test_table_find_match_and_481() -> None:
    table = DialogTable()
    d = table.create_uas(invite(), "lt")
    assert len(table) == 1 and table.get(("call-1", "lt", "ft1")) is d
    assert table.find(in_dialog("BYE", 11)) is d
    assert table.match_in_dialog(in_dialog("BYE", 11)) is d
    assert table.find(invite()) is None  # no To tag: not in a dialog
    assert table.for_call("call-1") == [d] and table.for_call("x") == []
    for req in (
        invite(method="BYE", cseq=11, to_tag="unknown"),
        in_dialog("BYE", 11, call_id="other"),
        in_dialog("BYE", 11, from_tag="zz"),
    ):
        with pytest.raises(SipError) as err:
            table.match_in_dialog(req)
        assert err.value.status == 481
    d.terminate()
    with pytest.raises(SipError):
        table.match_in_dialog(in_dialog("BYE", 11))
    assert table.remove(d) is d and table.remove(d) is None and len(table) == 0
    with pytest.raises(ValueError):
        table.add(d)
        table.add(d)


# --- in-dialog request checks -----------------------------------------------------------------------------------


def test_cseq_order() -> None:
    d = confirmed()
    for seq in (9, 10):
        with pytest.raises(SipError) as err:
            d.check_request(in_dialog("INFO", seq))
        assert err.value.status == 500 and "CSeq" in err.value.warning
    d.check_request(in_dialog("INFO", 11))
    assert d.remote_cseq == 11
    with pytest.raises(SipError):
        d.check_request(in_dialog("INFO", 11))
    d.check_request(in_dialog("INFO", 50))  # gaps are fine
    assert d.remote_cseq == 50
    # ACK and CANCEL carry their INVITE's CSeq.
    d.check_request(in_dialog("ACK", 10))
    d.check_request(in_dialog("CANCEL", 10))
    assert d.remote_cseq == 50


def test_reinvite_while_theirs_in_progress_is_500_with_retry_after() -> None:
    d = confirmed()
    d.check_request(in_dialog("INVITE", 11))
    assert d.incoming_invite_cseq == 11
    with pytest.raises(SipError) as err:
        d.check_request(in_dialog("INVITE", 12))
    assert err.value.status == 500
    (name, value), *_ = err.value.headers
    assert name == "Retry-After" and 0 <= int(value) <= 10
    assert d.remote_cseq == 12  # in order, even though refused
    d.response_sent(in_dialog("INVITE", 11), 200)
    d.check_request(in_dialog("INVITE", 13))


def test_reinvite_while_ours_in_progress_is_491() -> None:
    d = confirmed()
    ours = d.make_request("INVITE")
    assert d.outgoing_invite_cseq == ours.cseq.seq and d.invite_in_progress
    with pytest.raises(SipError) as err:
        d.check_request(in_dialog("INVITE", 11))
    assert err.value.status == 491
    d.response_received(ours, make_response(ours, 200))
    d.check_request(in_dialog("INVITE", 12))


def test_ack_of_reinvite_ends_it_even_without_response_sent() -> None:
    d = confirmed()
    d.check_request(in_dialog("INVITE", 11))
    d.on_ack(in_dialog("ACK", 11))
    d.check_request(in_dialog("INVITE", 12))


def test_target_refresh() -> None:
    d = confirmed()
    d.check_request(in_dialog("INVITE", 11, contact="<sip:src@10.0.0.9:5099>"))
    assert d.remote_target == "sip:src@10.0.0.9:5099"
    d.response_sent(in_dialog("INVITE", 11), 200)
    d.check_request(in_dialog("UPDATE", 12, contact="<sip:src@10.0.0.10>"))
    assert d.remote_target == "sip:src@10.0.0.10"
    d.check_request(in_dialog("INFO", 13, contact="<sip:elsewhere@10.9.9.9>"))
    assert d.remote_target == "sip:src@10.0.0.10"  # not a target refresh request
    # A refused re-INVITE does not change the target.
    d.check_request(in_dialog("INVITE", 14))
    with pytest.raises(SipError):
        d.check_request(in_dialog("INVITE", 15, contact="<sip:bad@10.6.6.6>"))
    assert d.remote_target == "sip:src@10.0.0.1:5080;transport=udp"  # the one of CSeq 14


def test_481_or_408_to_our_request_terminates() -> None:
    d = confirmed()
    bye = d.make_request("INFO")
    d.response_received(bye, make_response(bye, 481))
    assert d.state is DialogState.TERMINATED
    with pytest.raises(ValueError):
        d.make_request("BYE")


# --- requests we send -------------------------------------------------------------------------------------------


def test_bye_without_route_set() -> None:
    d = confirmed()
    bye = d.make_request("BYE")
    assert bye.method == "BYE" and bye.uri == "sip:src@10.0.0.1:5080;transport=udp"
    assert bye.headers.get_all("Route") == [] and bye.headers.get("Via") is None
    assert bye.from_.uri == "sip:srs@example.net" and bye.from_.tag == "lt"
    assert bye.to.uri == "sip:src@example.com" and bye.to.tag == "ft1"
    assert bye.call_id == "call-1" and bye.max_forwards == 70
    assert str(bye.cseq) == "1 BYE" and str(d.make_request("INFO").cseq) == "2 INFO"
    assert d.next_hop() == Peer("UDP", "10.0.0.1", 5080)


def test_bye_with_loose_route_set() -> None:
    d = confirmed(extra=RR)
    bye = d.make_request("BYE")
    assert bye.uri == d.remote_target
    assert bye.headers.get_all("Route") == d.route_set
    assert d.next_hop() == Peer("UDP", "p1.example.com", 5060)


def test_bye_with_strict_first_route() -> None:
    rr = [
        (
            "Record-Route",
            "<sip:strict.example.com:5070;transport=tcp;method=INVITE?x=y>, <sip:p2.example.com;lr>",
        )
    ]
    d = confirmed(extra=rr)
    assert not is_loose_route(d.route_set[0]) and is_loose_route(d.route_set[1])
    bye = d.make_request("BYE")
    assert bye.uri == "sip:strict.example.com:5070;transport=tcp"
    assert bye.headers.get_all("Route") == ["<sip:p2.example.com;lr>", f"<{d.remote_target}>"]
    assert d.next_hop() == Peer("TCP", "strict.example.com", 5070)


def test_next_hop_defaults() -> None:
    assert confirmed(contact="<sips:src@[2001:db8::1]>").next_hop() == Peer("TLS", "2001:db8::1", 5061)
    assert confirmed(contact="<sip:src@h.example.com;transport=TCP>").next_hop() == Peer(
        "TCP", "h.example.com", 5060
    )
    assert confirmed(contact="sip:src@10.0.0.3:7000").next_hop() == Peer("UDP", "10.0.0.3", 7000)
    hop = confirmed(contact="<sip:src@h.example.com;maddr=10.1.2.3>").next_hop()
    assert hop == Peer("UDP", "10.1.2.3", 5060)


def test_target_refresh_request_carries_our_contact() -> None:
    d = confirmed()
    d.local_contact = "sip:srs@192.0.2.1:5060"
    assert d.make_request("UPDATE").headers.get("Contact") == "<sip:srs@192.0.2.1:5060>"
    assert d.make_request("BYE").headers.get("Contact") is None
    with pytest.raises(ValueError):
        d.make_request("ACK")


def test_body_and_extra_headers() -> None:
    d = confirmed()
    req = d.make_request("INFO", headers=[("Reason", "SIP;cause=200")], body=b"x", content_type="text/plain")
    assert (
        req.headers.get("Reason") == "SIP;cause=200" and req.content_type == "text/plain" and req.body == b"x"
    )


def test_bye_through_the_transaction_layer() -> None:
    d = confirmed(extra=RR)
    layer = TransactionLayer(sent_by="192.0.2.1:5060")
    bye = d.make_request("BYE")
    acts = layer.send_request(bye, d.next_hop(), 0.0)
    assert acts == [SendRequest(Peer("UDP", "p1.example.com", 5060), bye)]
    assert bye.top_via.branch.startswith("z9hG4bK")  # type: ignore[union-attr]
    assert bye.serialize().startswith(
        b"BYE sip:src@10.0.0.1:5080;transport=udp SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1"
    )


def test_local_contact_name_addr_is_kept_with_its_feature_tags() -> None:
    d = Dialog.from_invite(invite(), "lt", local_contact="<sip:srs@192.0.2.1:5060;transport=udp>;+sip.srs")
    assert d.make_request("UPDATE").headers.get("Contact") == "<sip:srs@192.0.2.1:5060;transport=udp>;+sip.srs"
