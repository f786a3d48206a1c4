"""Session timers (RFC 4028), the RTP idle time-out, and the 1,000-call cleanliness check."""

from __future__ import annotations

from pathlib import Path

from siprec.events.types import SessionEnded
from siprec.sip.message import SipRequest
from tests.unit.srs.test_uas import CTYPE, TWO_LEGS, assert_clean
from tests.unit.srs.test_uas_support import RecordingMedia, UasHarness, audio, sdp


def requests(msgs: list[object], method: str) -> list[SipRequest]:
    return [m for m in msgs if isinstance(m, SipRequest) and m.method == method]


def test_session_expires_below_min_se_is_422(tmp_path: Path) -> None:
    h = UasHarness(tmp_path, sip={"min_se": 120, "session_expires": 1800})
    resp = h.invite(CTYPE, TWO_LEGS, extra=["Session-Expires: 90", "Supported: timer"])
    assert (resp.status, resp.headers.get("Min-SE")) == (422, "120")
    assert_clean(h)


def test_timer_answered_with_refresher_uac_and_bye_at_expiry(tmp_path: Path) -> None:
    h = UasHarness(tmp_path, sip={"min_se": 90, "session_expires": 1800})
    d = h.call(CTYPE, TWO_LEGS, extra=["Session-Expires: 300", "Supported: timer"])
    assert d.ok.headers.get("Session-Expires") == "300;refresher=uac"
    assert d.ok.headers.get("Require") == "timer"
    assert "timer" in (d.ok.headers.get("Supported") or "")
    # A refresh (UPDATE without body) at half time re-arms the timer.
    h.advance(150)
    resp = d.send("UPDATE", extra=["Session-Expires: 300;refresher=uac", "Supported: timer"])
    assert resp.status == 200 and resp.headers.get("Session-Expires") == "300;refresher=uac"
    out = h.advance(267.9)  # 300 - min(32, 300/3) = 268 s after the refresh
    assert requests(out, "BYE") == []
    out = h.advance(0.2)
    (bye,) = requests(out, "BYE")
    assert bye.call_id == "call-1"
    ended = h.events[-1]
    assert isinstance(ended, SessionEnded) and ended.reason == "session-expired"
    assert_clean(h, after=60)


def test_long_interval_is_lowered_to_ours_and_timer_offered_when_supported(tmp_path: Path) -> None:
    h = UasHarness(tmp_path, sip={"session_expires": 600})
    d = h.call(CTYPE, TWO_LEGS, extra=["Session-Expires: 7200", "Supported: timer"])
    assert d.ok.headers.get("Session-Expires") == "600;refresher=uac"
    d2 = h.call(CTYPE, TWO_LEGS, call_id="c2", extra=["Supported: timer"])
    assert d2.ok.headers.get("Session-Expires") == "600;refresher=uac"
    d3 = h.call(CTYPE, TWO_LEGS, call_id="c3")  # no timer support, none asked: no timer at all
    assert d3.ok.headers.get("Session-Expires") is None
    out = h.advance(7200)
    assert {b.call_id for b in requests(out, "BYE")} == {"call-1", "c2"}
    assert [c.session.call_id for c in h.uas.calls.values()] == ["c3"]


def test_we_refresh_when_the_uac_asks_us_to(tmp_path: Path) -> None:
    h = UasHarness(tmp_path)
    d = h.call(CTYPE, TWO_LEGS, extra=["Session-Expires: 120;refresher=uas", "Supported: timer"])
    assert d.ok.headers.get("Session-Expires") == "120;refresher=uas"
    assert d.ok.headers.get("Require") is None
    for _ in range(4):  # 240 s: twice the interval, alive because every refresh is answered
        out = h.advance(60)
        assert requests(out, "BYE") == []
        (update,) = requests(out, "UPDATE")
        assert update.headers.get("Session-Expires") == "120;refresher=uas"
        assert update.to.tag == "ft1" and update.from_.tag == d.tag
        assert (update.headers.get("Contact") or "").endswith(";+sip.srs")
        h.feed(answer(update))
    assert h.uas.session("call-1") is not None


def answer(request: SipRequest, status: int = 200) -> bytes:
    fields = "".join(f"{n}: {request.headers.get(n)}\r\n" for n in ("Via", "From", "To", "Call-ID", "CSeq"))
    return f"SIP/2.0 {status} OK\r\n{fields}Content-Length: 0\r\n\r\n".encode()


def test_refresh_timeout_ends_the_session(tmp_path: Path) -> None:
    h = UasHarness(tmp_path)
    h.call(CTYPE, TWO_LEGS, extra=["Session-Expires: 120;refresher=uas", "Supported: timer"])
    out = h.advance(60 + 33)  # our UPDATE times out (timer F, 32 s)
    assert requests(out, "BYE")
    assert h.events[-1].reason in ("session-refresh-failed", "session-expired")  # type: ignore[attr-defined]
    assert h.uas.calls == {}




def test_rtp_timeout_only_when_media_reports_activity(tmp_path: Path) -> None:
    media = RecordingMedia()
    h = UasHarness(tmp_path, media=media, rtp={"rtp_timeout_s": 20})
    d = h.call(CTYPE, TWO_LEGS)
    for _ in range(5):  # media keeps flowing: never timed out
        h.advance(10)
        d.session.touch_media(h.now)
    assert h.uas.session("call-1") is not None
    out = h.advance(20.1)
    assert requests(out, "BYE")
    assert h.events[-1].reason == "rtp-timeout"  # type: ignore[attr-defined]
    assert media.ended == ["call-1"]
    assert ("close", 0, "") in media.log and ("close", 1, "") in media.log


def test_held_call_is_not_idle_and_no_media_means_no_rtp_timer(tmp_path: Path) -> None:
    media = RecordingMedia()
    h = UasHarness(tmp_path / "a", media=media, rtp={"rtp_timeout_s": 20})
    d = h.call(CTYPE, TWO_LEGS)

    d.send("INVITE", "application/sdp", sdp(audio(30000, "1", "inactive"), audio(30002, "2", "inactive")).encode())
    assert requests(h.advance(300), "BYE") == []
    plain = UasHarness(tmp_path / "b", rtp={"rtp_timeout_s": 20})  # NoMediaPlugged: cannot know, never times out
    plain.call(CTYPE, TWO_LEGS)
    assert plain.uas.next_deadline() is None
    assert requests(plain.advance(3600), "BYE") == []


def test_thousand_calls_leave_nothing_behind(tmp_path: Path) -> None:
    media = RecordingMedia()
    h = UasHarness(tmp_path, media=media, sip={"session_expires": 300}, rtp={"rtp_timeout_s": 1000})
    endings = ["bye", "bye", "session-expired", "ack-timeout", "bye"]
    for n in range(1000):
        call_id = f"call-{n}"
        how = endings[n % len(endings)]
        extra = ["Session-Expires: 300", "Supported: timer"] if how == "session-expired" else []
        if how == "ack-timeout":
            assert h.invite(CTYPE, TWO_LEGS, call_id=call_id).status == 200
            h.advance(33)
        else:
            d = h.call(CTYPE, TWO_LEGS, call_id=call_id, extra=extra)
            if how == "bye":
                h.advance(1)
                assert d.send("BYE").status == 200
            else:
                h.advance(300)
        assert h.uas.calls == {}
    ended = [e for e in h.events if isinstance(e, SessionEnded)]
    assert len(ended) == 1000
    assert {e.reason for e in ended} == {"bye", "session-expired", "ack-timeout"}
    assert len(media.ended) == 1000
    assert_clean(h, after=120)
    assert h.uas.next_deadline() is None and h.core.transactions.next_deadline() is None
