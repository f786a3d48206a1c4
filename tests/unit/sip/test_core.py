"""SipCore driven by hand: bytes in through the parser, bytes out through a recording `send`, a manual clock."""

from __future__ import annotations

import pytest

from siprec.sip.admission import AdmissionControl, SourceLimits
from siprec.sip.core import SipCore
from siprec.sip.errors import SipError, SipParseError
from siprec.sip.message import SipRequest, SipResponse
from siprec.sip.transaction import Peer
from siprec.sip.validation import UasPolicy
from tests.sip_helpers import SDP, SRC, CoreDriver, FixedAnswerApp


class Harness(CoreDriver):
    def __init__(self, app: FixedAnswerApp | None = None, **core_kw: object) -> None:
        super().__init__()
        self.app = app or FixedAnswerApp()
        policy = UasPolicy(supported=("siprec",), accept=("application/sdp", "multipart/mixed"))
        self.attach(SipCore(self.app, policy=policy, clock=lambda: self.now, **core_kw))  # type: ignore[arg-type]

    def feed(self, text: str, peer: Peer = SRC, body: bytes = b"") -> list[SipResponse | SipRequest]:
        return self.deliver(text.replace("\n", "\r\n").encode() + body, peer)


def req(method: str, *, call_id: str = "c1", cseq: int = 1, to_tag: str | None = None, branch: str = "z9hG4bK1",
        extra: str = "", body_len: int = 0, ctype: str | None = None) -> str:
    to = "<sip:srs@192.0.2.1>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} sip:srs@192.0.2.1:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.9:5080;branch={branch};rport",
        "Max-Forwards: 70",
        "From: <sip:src@192.0.2.9>;tag=ft1",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method if method != 'ACK' else 'ACK'}",
        "Contact: <sip:src@192.0.2.9:5080>",
    ]
    if ctype:
        lines.append(f"Content-Type: {ctype}")
    if extra:
        lines.extend(extra.strip().splitlines())
    lines.append(f"Content-Length: {body_len}")
    return "\n".join(lines) + "\n\n"


def only_final(msgs: list[SipResponse | SipRequest]) -> SipResponse:
    finals = [m for m in msgs if isinstance(m, SipResponse) and m.status >= 200]
    assert len(finals) == 1, msgs
    return finals[0]


def warning(resp: SipResponse) -> str:
    return resp.headers.get("Warning") or ""


def test_options_advertises_capabilities() -> None:
    h = Harness()
    resp = only_final(h.feed(req("OPTIONS")))
    assert resp.status == 200
    assert resp.headers.get("Allow") == "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE"
    assert resp.headers.get("Accept") == "application/sdp, multipart/mixed"
    assert resp.headers.get("Supported") == "siprec"
    assert resp.headers.get("Server", "").startswith("siprec/")
    assert resp.to.tag  # a final response carries our To tag
    # The response went where rport says: the source port, not the Via port.
    assert h.sent[-1][0] == Peer("UDP", "192.0.2.9", 5080)
    # RFC 3581: with rport, the response's Via carries both the source port and address.
    assert (resp.headers.get("Via") or "").endswith(";rport=5080;received=192.0.2.9")


def test_retransmitted_options_gets_the_same_response_without_reprocessing() -> None:
    h = Harness()
    first = h.feed(req("OPTIONS"))
    again = h.feed(req("OPTIONS"))
    assert [m.serialize() for m in again] == [m.serialize() for m in first]


def test_unknown_method_405_with_allow_and_warning() -> None:
    h = Harness()
    resp = only_final(h.feed(req("NOTIFY")))
    assert resp.status == 405
    assert resp.headers.get("Allow") == "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE"
    assert warning(resp) == '399 siprec "method NOTIFY is not allowed here"'


def test_require_unknown_420_and_max_forwards_483() -> None:
    h = Harness()
    resp = only_final(h.feed(req("INVITE", extra="Require: siprec, foo")))
    assert (resp.status, resp.headers.get("Unsupported")) == (420, "foo")
    resp = only_final(h.feed(req("OPTIONS", branch="z9hG4bK2", extra="Max-Forwards: 0").replace("Max-Forwards: 70\n", "")))
    assert resp.status == 483


def test_untrusted_source_gets_403_and_no_state() -> None:
    h = Harness(admission=AdmissionControl(["10.0.0.0/8"]))
    resp = only_final(h.feed(req("INVITE", ctype="application/sdp", body_len=len(SDP)), body=SDP))
    assert resp.status == 403
    assert "192.0.2.9" in warning(resp)
    assert len(h.core.transactions) == 0
    assert h.app.invites == []


def test_invite_ack_bye_lifecycle() -> None:
    h = Harness()
    out = h.feed(req("INVITE", ctype="application/sdp", body_len=len(SDP)), body=SDP)
    assert [m.status for m in out if isinstance(m, SipResponse)] == [100, 200]
    ok = out[-1]
    assert isinstance(ok, SipResponse)
    assert ok.body == SDP and ok.content_type == "application/sdp"
    assert "+sip.srs" in (ok.headers.get("Contact") or "")
    tag = ok.to.tag
    assert tag
    assert len(h.core.dialogs) == 1
    h.feed(req("ACK", to_tag=tag, branch="z9hG4bKack"))
    assert h.app.acks == 1
    # The ACK stopped the 2xx retransmissions: nothing more is sent within 40 s.
    assert h.advance(40) == []
    resp = only_final(h.feed(req("BYE", cseq=2, to_tag=tag, branch="z9hG4bKbye")))
    assert resp.status == 200
    assert h.app.ended == [("c1", "bye")]
    assert len(h.core.dialogs) == 0
    assert h.core.admission.active_total == 0


def test_2xx_retransmitted_until_ack_then_bye_on_ack_timeout() -> None:
    h = Harness()
    h.feed(req("INVITE", ctype="application/sdp", body_len=len(SDP)), body=SDP)
    out = h.advance(31.9)
    assert [m.status for m in out if isinstance(m, SipResponse)] == [200] * len(out) and len(out) >= 6
    out = h.advance(0.2)  # timer H fires at 32 s (64*T1); the BYE's own retransmission would follow at +0.5 s
    byes = [m for m in out if isinstance(m, SipRequest)]
    assert [b.method for b in byes] == ["BYE"]
    bye = byes[0]
    assert bye.uri == "sip:src@192.0.2.9:5080"  # the remote target
    assert bye.to.tag == "ft1"
    assert bye.top_via.sent_by == "192.0.2.1:5060"
    assert h.app.ended == [("c1", "ack-timeout")]


def test_in_dialog_request_for_unknown_dialog_is_481() -> None:
    h = Harness()
    resp = only_final(h.feed(req("BYE", to_tag="nope")))
    assert resp.status == 481
    resp = only_final(h.feed(req("BYE", branch="z9hG4bK9")))
    assert resp.status == 481  # BYE without To tag


def test_lower_cseq_in_dialog_is_500() -> None:
    h = Harness()
    out = h.feed(req("INVITE", cseq=5, ctype="application/sdp", body_len=len(SDP)), body=SDP)
    tag = out[-1].to.tag  # type: ignore[union-attr]
    h.feed(req("ACK", cseq=5, to_tag=tag, branch="z9hG4bKa"))
    resp = only_final(h.feed(req("UPDATE", cseq=4, to_tag=tag, branch="z9hG4bKu")))
    assert resp.status == 500
    assert "CSeq" in warning(resp)
    resp = only_final(h.feed(req("UPDATE", cseq=6, to_tag=tag, branch="z9hG4bKu2")))
    assert resp.status == 200


def test_capacity_503_with_retry_after_and_release_after_bye() -> None:
    h = Harness(admission=AdmissionControl(max_sessions=1, per_source=SourceLimits()))
    out = h.feed(req("INVITE", ctype="application/sdp", body_len=len(SDP)), body=SDP)
    tag = out[-1].to.tag  # type: ignore[union-attr]
    resp = only_final(h.feed(req("INVITE", call_id="c2", branch="z9hG4bKc2", ctype="application/sdp", body_len=len(SDP)), body=SDP))
    assert resp.status == 503
    assert resp.headers.get("Retry-After") == "5"
    h.feed(req("ACK", to_tag=tag, branch="z9hG4bKa"))
    h.feed(req("BYE", cseq=2, to_tag=tag, branch="z9hG4bKb"))
    resp = only_final(h.feed(req("INVITE", call_id="c3", branch="z9hG4bKc3", ctype="application/sdp", body_len=len(SDP)), body=SDP))
    assert resp.status == 200


def test_application_refusal_releases_admission() -> None:
    h = Harness(app=FixedAnswerApp(refuse_with=SipError(488, "no usable audio stream")))
    resp = only_final(h.feed(req("INVITE", ctype="application/sdp", body_len=len(SDP)), body=SDP))
    assert resp.status == 488
    assert warning(resp) == '399 siprec "no usable audio stream"'
    assert h.core.admission.active_total == 0
    assert len(h.core.dialogs) == 0


def test_unsupported_body_type_is_415() -> None:
    h = Harness()
    resp = only_final(h.feed(req("INVITE", ctype="text/plain", body_len=2), body=b"hi"))
    assert resp.status == 415
    assert resp.headers.get("Accept") == "application/sdp, multipart/mixed"


def test_malformed_request_gets_400_with_warning_naming_the_problem() -> None:
    h = Harness()
    text = req("OPTIONS").replace("Content-Length: 0", "Content-Length: 50")
    out = h.feed(text)
    resp = only_final(out)
    assert resp.status == 400
    assert "Content-Length" in warning(resp)
    assert h.core.stats.bad_messages == 1


def test_garbage_gets_no_response_and_no_exception() -> None:
    h = Harness()
    h.core.on_bad_message(SipParseError("not SIP"), SRC)
    assert h.sent == []


@pytest.mark.parametrize("method", ["ACK"])
def test_stray_ack_is_never_answered(method: str) -> None:
    h = Harness()
    assert h.feed(req(method, to_tag="x")) == []
