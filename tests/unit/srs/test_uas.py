"""RecordingUas through a SipCore driven by hand: real fixture INVITEs, re-INVITE/UPDATE semantics, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from siprec.events.types import SessionEnded, SessionPaused, SessionResumed, SessionStarted, SessionUpdated
from siprec.sip.message import SipRequest
from siprec.srs.ports import PortPool
from siprec.srs.session import LegState, SessionState
from tests.unit.srs.test_uas_support import (
    INVITES,
    RecordingMedia,
    UasHarness,
    audio,
    final,
    fixture_bodies,
    media_lines,
    multipart,
    participant_doc,
    sdp,
)

# Per fixture, per INVITE body: (SDP label, participant aor, participant name, attribution rule) per leg.
FIXTURE_LEGS: dict[str, list[list[tuple[str | None, str | None, str | None, str]]]] = {
    "acme-siprec-offer.txt": [[
        ("16777227", "sip:9000@192.168.50.102", "9000", "metadata-label"),
        ("16777228", "sip:1002@192.168.50.10", "1002", "metadata-label"),
    ]],
    "avaya-siprec-offer.txt": [[
        ("201835599", "sip:31624895902@10.10.128.62", "31624895902", "metadata-label"),
        ("201835600", "sip:33187164021@sip.webhelpgroupe.lan", "33187164021", "metadata-label"),
    ]],
    "broadworks-offer-2.txt": [[
        ("10", "sip:9878942259@212.188.68.145", None, "metadata-label"),
        ("20", "sip:ASBCE@asbce.com", None, "metadata-label"),
    ]],
    "cisco-siprec-offer.txt": [[
        ("1", "sip:7301@35.162.237.204", None, "metadata-label"),
        ("2", "sip:7300@35.162.237.204", "7300", "metadata-label"),
    ]],
    "connectel-offer.txt": [[
        ("1", "sip:0771121212@52.57.92.239", "test_user;lang=en-US;id=22", "sdp-order"),
        ("2", "sip:0760516936@sip-cust1.connectel.io", None, "sdp-order"),
    ]],
    "connectel-offer2.txt": [[
        ("1", "sip:0771121212@52.57.92.239", "test_user;lang=en-US", "sdp-order"),
        ("2", "sip:0760516936@sip-cust1.connectel.io", None, "sdp-order"),
    ]],
    "connectel-offer3.txt": [[
        ("1", "sip:0771121212@52.57.92.239", "test_user", "sdp-order"),
        ("2", "sip:0760516936@sip-cust1.connectel.io", None, "sdp-order"),
    ]],
    "inactive-sdp-offer.txt": [[
        ("1", "sip:0733165805@192.168.40.34", None, "sdp-order"),
        ("2", "sip:+972546136443@192.168.10.140", None, "sdp-order"),
    ]],
    "intrado-siprec-invite.txt": [[("1", "4058327108@10.105.190.136:5060", None, "metadata-label")]],
    "non-siprec-payload.txt": [[("1", None, None, "unknown")]],
    "procomm-siprec-offer.txt": [[
        ("a_leg", "sip:016190200@87.252.209.116", "016190200", "metadata-label"),
        ("b_leg", "Extension-016190619@speechpath.ie", "Speechpath-Main-Line 016190619", "metadata-label"),
    ]],
    "sample-sdp2.txt": [[("1", None, None, "unknown")], [("2", None, None, "unknown")]],
    "sample-sdp3.txt": [[(None, None, None, "unknown")], [(None, None, None, "unknown")]],
    "sample-sdps.txt": [[("1", None, None, "unknown")], [("2", None, None, "unknown")]],
    "sonus-siprec-offer.txt": [[
        ("1", "2249888012@172.16.195.72", None, "metadata-label"),
        ("2", "2249888500@172.16.198.55", "Extension 8500", "metadata-label"),
    ]],
}  # fmt: skip

CTYPE, TWO_LEGS = multipart(sdp(audio(30000, "1"), audio(30002, "2")), participant_doc(
    ("pA", "sip:alice@example.com", "Alice", "st1"), ("pB", "sip:bob@example.com", "Bob", "st2")))


@pytest.fixture
def h(tmp_path: Path) -> UasHarness:
    return UasHarness(tmp_path)


def test_every_fixture_has_expectations() -> None:
    assert sorted(p.name for p in INVITES.glob("*.txt")) == sorted([*FIXTURE_LEGS, "broadworks-offer.txt"])


@pytest.mark.parametrize("name", sorted(FIXTURE_LEGS))
def test_fixture_invites_are_recorded_with_the_right_people_on_the_right_legs(tmp_path: Path, name: str) -> None:
    for n, fb in enumerate(fixture_bodies(name)):
        h = UasHarness(tmp_path / str(n))
        ok = h.invite(fb.content_type, fb.body, extra=fb.headers)
        assert ok.status == 200, ok.headers.get("Warning")
        assert ok.content_type == "application/sdp"
        expected = FIXTURE_LEGS[name][n]
        lines = media_lines(ok)
        assert [m.split()[1] for m in lines if m.startswith("m=")] == [str(40000 + 2 * i) for i in range(len(expected))]
        assert [m.removeprefix("a=label:") for m in lines if m.startswith("a=label")] == [
            label for label, *_ in expected if label is not None
        ]
        session = h.uas.session("call-1")
        assert session is not None
        got = [(leg.label, leg.participant.aor if leg.participant else None,
                leg.participant.name if leg.participant else None, leg.rule) for leg in session.legs.values()]  # fmt: skip
        assert got == expected
        assert session.siprec == (name not in ("non-siprec-payload.txt",) and not name.startswith("sample-"))
        started = h.events[0]
        assert isinstance(started, SessionStarted) and started.call_id == "call-1"
        assert [leg.participant.aor if leg.participant else None for leg in started.legs] == [e[1] for e in expected]
        if session.siprec:
            assert (session.folder / "metadata-1.xml").is_file()
            assert session.folder.parent.parent == tmp_path / str(n)
            assert session.folder.parent.name == "2023-11-14"


def test_initial_inactive_offer_starts_paused_for_hold(h: UasHarness) -> None:
    (fb,) = fixture_bodies("inactive-sdp-offer.txt")
    d = h.call(fb.content_type, fb.body)
    assert media_lines(d.ok).count("a=inactive") == 2
    assert d.session.state is SessionState.PAUSED
    assert h.types() == ["session_started", "session_paused"]
    assert [(p.scope, p.reason, p.end) for p in d.session.pauses] == [("session", "hold", None)]


def test_corrupted_broadworks_body_is_400_and_leaves_nothing(h: UasHarness) -> None:
    (fb,) = fixture_bodies("broadworks-offer.txt")
    resp = h.invite(fb.content_type, fb.body)
    assert resp.status == 400 and "Content-Type" in (resp.headers.get("Warning") or "")
    assert_clean(h)


def test_metadata_first_and_plain_rs_metadata_type(h: UasHarness) -> None:
    ctype, body = multipart(sdp(audio(30000, "1"), audio(30002, "2")), participant_doc(
        ("pA", "sip:alice@example.com", "Alice", "st1"), ("pB", "sip:bob@example.com", None, "st2")),
        metadata_first=True, mtype="application/rs-metadata")  # fmt: skip
    d = h.call(ctype, body)
    assert [leg.participant.name if leg.participant else None for leg in d.session.legs.values()] == ["Alice", None]
    assert [p.aor for p in h.events[0].participants] == ["sip:alice@example.com", "sip:bob@example.com"]  # type: ignore[attr-defined]


def test_bye_ends_the_session_and_frees_everything(h: UasHarness) -> None:
    d = h.call(CTYPE, TWO_LEGS)
    h.advance(12.5)
    assert d.send("BYE").status == 200
    ended = h.events[-1]
    assert isinstance(ended, SessionEnded)
    assert (ended.reason, ended.duration_s, ended.metadata_versions) == ("bye", 12.5, 1)
    assert [p.name for p in ended.participants] == ["Alice", "Bob"]
    assert_clean(h, after=60)


def test_hold_and_resume_pause_every_leg(tmp_path: Path) -> None:
    media = RecordingMedia()
    h = UasHarness(tmp_path, media=media)
    d = h.call(CTYPE, TWO_LEGS)
    held = d.send("INVITE", "application/sdp", sdp(audio(30000, "1", "inactive"), audio(30002, "2", "inactive")).encode())
    assert held.status == 200 and media_lines(held).count("a=inactive") == 2
    assert d.session.state is SessionState.PAUSED
    assert [leg.state for leg in d.session.legs.values()] == [LegState.HELD, LegState.HELD]
    paused = h.events[-1]
    assert isinstance(paused, SessionPaused) and paused.reason == "hold"
    h.advance(30)
    # Resume the RFC 2543 way round: c=0.0.0.0 is also hold, then a real address again.
    assert d.send("INVITE", "application/sdp", sdp(audio(30000, "1"), audio(30002, "2"), conn="0.0.0.0").encode()).status == 200
    assert d.session.state is SessionState.PAUSED
    resumed = d.send("INVITE", "application/sdp", sdp(audio(30000, "1"), audio(30002, "2")).encode())
    assert media_lines(resumed).count("a=recvonly") == 2
    assert d.session.state is SessionState.ACTIVE
    assert isinstance(h.events[-1], SessionResumed) and h.events[-1].reason == "hold"
    assert [(p.scope, p.reason, p.end is not None and p.end - p.start) for p in d.session.pauses] == [("session", "hold", 30)]
    assert [e for e in media.log if e[0] in ("pause", "resume")] == [
        ("pause", 0, ""), ("pause", 1, ""), ("resume", 0, ""), ("resume", 1, "")]  # fmt: skip
    assert d.session.ports == [40000, 40002]  # held legs keep their ports


def test_one_leg_on_hold_is_a_leg_pause_not_a_session_pause(tmp_path: Path) -> None:
    media = RecordingMedia()
    h = UasHarness(tmp_path, media=media)
    d = h.call(CTYPE, TWO_LEGS)
    d.send("INVITE", "application/sdp", sdp(audio(30000, "1"), audio(30002, "2", "inactive")).encode())
    assert d.session.state is SessionState.ACTIVE
    assert [(p.scope, p.reason) for p in d.session.pauses] == [("leg-1", "hold")]
    assert ("pause", 1, "") in media.log and ("pause", 0, "") not in media.log


def test_api_pause_applies_to_every_leg_and_outlives_a_hold(tmp_path: Path) -> None:
    media = RecordingMedia()
    h = UasHarness(tmp_path, media=media)
    d = h.call(CTYPE, TWO_LEGS)
    assert h.uas.pause("call-1") is True and h.uas.pause("call-1") is False
    assert [e for e in media.log if e[0] == "pause"] == [("pause", 0, ""), ("pause", 1, "")]
    d.send("INVITE", "application/sdp", sdp(audio(30000, "1", "inactive"), audio(30002, "2", "inactive")).encode())
    d.send("INVITE", "application/sdp", sdp(audio(30000, "1"), audio(30002, "2")).encode())
    assert d.session.state is SessionState.PAUSED  # the hold ended, the API pause did not
    assert h.uas.resume("call-1") is True
    assert d.session.state is SessionState.ACTIVE
    assert [type(e).__name__ for e in h.events][1:] == ["SessionPaused", "SessionPaused", "SessionResumed"]
    with pytest.raises(KeyError):
        h.uas.pause("nope")


def test_partial_metadata_reinvite_updates_participants(h: UasHarness) -> None:
    d = h.call(CTYPE, TWO_LEGS)
    ctype, body = multipart(
        sdp(audio(30000, "1"), audio(30002, "2")),
        participant_doc(("pB", "sip:bob@example.com", "Robert", "st2"), ("pC", "sip:carol@example.com", "Carol", "st2"),
                        mode="partial", streams=0))  # fmt: skip
    resp = d.send("INVITE", ctype, body)
    assert resp.status == 200
    update = h.events[-1]
    assert isinstance(update, SessionUpdated)
    assert update.changes == ("participants", "streams")  # Carol now also speaks on leg 1
    assert (update.participants_added, update.participants_changed, update.legs_changed) == (("pC",), ("pB",), (1,))
    assert [p.name for p in update.participants] == ["Alice", "Robert", "Carol"]
    leg1 = d.session.legs[1]
    assert [p.name for p in leg1.attribution.participants] == ["Robert", "Carol"]  # type: ignore[union-attr]
    assert d.session.metadata_files == ["metadata-1.xml", "metadata-2.xml"]
    assert (d.session.folder / "metadata-2.xml").read_bytes().startswith(b"<?xml")
    # Unchanged SDP: the same answer, same o= version (RFC 3264 section 8).
    assert resp.body == d.ok.body


def test_avaya_dummy_participant_then_metadata_only_update(h: UasHarness) -> None:
    dummy = participant_doc(("dummy", "sip:dummy@sbce", None, "st1"), streams=2)
    d = h.call(*multipart(sdp(audio(30000, "1"), audio(30002, "2")), dummy))
    assert [leg.participant.id if leg.participant else None for leg in d.session.legs.values()] == ["dummy", None]
    real = participant_doc(("pA", "sip:alice@example.com", "Alice", "st1"), ("pB", "sip:bob@example.com", "Bob", "st2"))
    resp = d.send("UPDATE", "application/rs-metadata+xml", real.encode())
    assert resp.status == 200 and resp.body == b"" and resp.content_type is None
    assert [leg.participant.name if leg.participant else None for leg in d.session.legs.values()] == ["Alice", "Bob"]
    update = h.events[-1]
    assert isinstance(update, SessionUpdated)
    assert update.participants_removed == ("dummy",) and update.legs_changed == (0, 1)


def test_stream_added_then_removed(tmp_path: Path) -> None:
    media = RecordingMedia()
    h = UasHarness(tmp_path, media=media)
    d = h.call(CTYPE, TWO_LEGS)
    three = sdp(audio(30000, "1"), audio(30002, "2"), audio(30004, "3", codec="8"))
    resp = d.send("INVITE", "application/sdp", three.encode())
    assert [m.split()[1] for m in media_lines(resp) if m.startswith("m=")] == ["40000", "40002", "40004"]
    assert "o=- " in resp.body.decode() and d.session.legs[2].stream.codec.encoding == "PCMA"
    added = h.events[-1]
    assert isinstance(added, SessionUpdated) and added.legs_added == (2,) and added.changes == ("streams",)
    assert ("open", 2, "PCMA") in media.log
    # Remove the middle stream (port 0): its leg closes, its port goes to quarantine, indexes stay stable.
    two = sdp(audio(30000, "1"), "m=audio 0 RTP/AVP 0\na=label:2\n", audio(30004, "3", codec="8"))
    resp = d.send("INVITE", "application/sdp", two.encode())
    assert [m.split()[1] for m in media_lines(resp) if m.startswith("m=")] == ["40000", "0", "40004"]
    assert d.session.legs[1].state is LegState.CLOSED and ("close", 1, "") in media.log
    assert h.events[-1].legs_removed == (1,)  # type: ignore[attr-defined]
    assert d.session.ports == [40000, 40004] and h.ports.quarantined == 1
    # o= version went up with each changed answer.
    assert [line for line in resp.body.decode().splitlines() if line.startswith("o=")][0].split()[2] == "3"


def test_reinvite_codec_change_updates_the_leg(tmp_path: Path) -> None:
    media = RecordingMedia()
    h = UasHarness(tmp_path, media=media)
    d = h.call(CTYPE, TWO_LEGS)
    d.send("INVITE", "application/sdp", sdp(audio(30000, "1", codec="8"), audio(30002, "2")).encode())
    assert ("update", 0, "PCMA") in media.log
    assert h.events[-1].legs_changed == (0,)  # type: ignore[attr-defined]


def test_bad_reinvite_leaves_the_session_as_it_was(h: UasHarness) -> None:
    d = h.call(CTYPE, TWO_LEGS)
    resp = d.send("INVITE", "application/sdp", b"v=0\r\nbogus\r\n")
    assert resp.status == 400 and resp.headers.get("Warning")
    resp = d.send("INVITE", "application/sdp", sdp("m=video 3000 RTP/AVP 96\n").encode())
    assert resp.status == 488
    assert d.session.ports == [40000, 40002] and h.ports.in_use == 2
    assert d.send("BYE").status == 200


def test_xxe_metadata_is_400_with_warning_and_no_state(h: UasHarness) -> None:
    xxe = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           '<recording xmlns="urn:ietf:params:xml:ns:recording:1">&x;</recording>')  # fmt: skip
    resp = h.invite(*multipart(sdp(audio(30000, "1")), xxe))
    assert resp.status == 400 and resp.headers.get("Warning")
    assert_clean(h)


def test_no_usable_audio_is_488(h: UasHarness) -> None:
    resp = h.invite("application/sdp", sdp("m=video 3000 RTP/AVP 96\na=rtpmap:96 H264/90000\n").encode())
    assert resp.status == 488
    assert (resp.headers.get("Warning") or "").startswith("305 ")
    resp = h.invite("application/sdp", sdp(audio(3000, "1", codec="3")).encode(), call_id="c2")  # GSM only
    assert resp.status == 488
    assert_clean(h)


def test_bad_sdp_and_missing_offer(h: UasHarness) -> None:
    assert h.invite("application/sdp", b"v=0\r\nm=audio\r\n").status == 400
    assert h.invite(*multipart(sdp(audio(30000, "1"))), call_id="c2").status == 200
    resp = final(h.feed(h.request("INVITE", call_id="c3", extra=["Require: siprec"])))
    assert resp.status == 488 and "SDP offer" in (resp.headers.get("Warning") or "")


def test_port_exhaustion_is_503_before_any_state(tmp_path: Path) -> None:
    h = UasHarness(tmp_path, ports=PortPool(40000, 40002, quarantine_s=10))  # room for one leg
    resp = h.invite(CTYPE, TWO_LEGS)
    assert resp.status == 503 and resp.headers.get("Retry-After") == "5"
    assert h.ports.available == 1
    assert_clean(h)
    assert list(tmp_path.iterdir()) == []  # not even a folder


def test_require_siprec_refuses_plain_invites_with_421(tmp_path: Path) -> None:
    h = UasHarness(tmp_path, sip={"require_siprec": True})
    resp = h.invite("application/sdp", sdp(audio(30000, "1")).encode())
    assert resp.status == 421 and resp.headers.get("Require") == "siprec"
    assert_clean(h)
    # Any SIPREC marker is enough: Require, +sip.src, or metadata.
    assert h.invite("application/sdp", sdp(audio(30000, "1")).encode(), call_id="c2", extra=["Require: siprec"]).status == 200
    resp = final(h.feed(h.request("INVITE", call_id="c3", ctype="application/sdp", body=sdp(audio(30000, "1")).encode(),
                                  contact_params=";+sip.src")))  # fmt: skip
    assert resp.status == 200
    assert h.invite(CTYPE, TWO_LEGS, call_id="c4").status == 200


def test_plain_invite_is_recorded_without_participants(h: UasHarness) -> None:
    d = h.call("application/sdp", sdp(audio(30000, "1")).encode())
    assert d.session.siprec is False and d.session.metadata_files == []
    assert h.events[0].siprec is False  # type: ignore[attr-defined]


def test_required_unknown_part_is_415(h: UasHarness) -> None:
    body = (b"--BB\r\nContent-Type: application/sdp\r\n\r\n" + sdp(audio(30000, "1")).encode() +
            b"\r\n--BB\r\nContent-Type: application/x-foo\r\nContent-Disposition: foo;handling=required\r\n\r\nx\r\n--BB--\r\n")  # fmt: skip
    assert h.invite("multipart/mixed;boundary=BB", body).status == 415


def test_ack_timeout_ends_the_session(h: UasHarness) -> None:
    ok = h.invite(CTYPE, TWO_LEGS)
    assert ok.status == 200
    out = h.advance(33)
    assert {m.method for m in out if isinstance(m, SipRequest)} == {"BYE"}  # (and its retransmissions)
    assert h.events[-1].reason == "ack-timeout"  # type: ignore[attr-defined]
    assert_clean(h, after=60)


def test_shutdown_sends_bye_for_every_session(h: UasHarness) -> None:
    h.call(CTYPE, TWO_LEGS)
    h.call(CTYPE, TWO_LEGS, call_id="call-2")
    before = len(h.sent)
    h.uas.shutdown()
    assert [d[:3] for _, d in h.sent[before:]] == [b"BYE", b"BYE"]
    assert [e.reason for e in h.events if isinstance(e, SessionEnded)] == ["shutdown", "shutdown"]  # type: ignore[attr-defined]
    assert h.uas.calls == {}


def assert_clean(h: UasHarness, *, after: float = 0) -> None:
    """No session, dialog, port, timer (and, once the transaction timers ran, no transaction) is left."""
    if after:
        h.advance(after)
        assert len(h.core.transactions) == 0
        assert h.ports.quarantined == 0
    assert h.uas.calls == {}
    assert len(h.core.dialogs) == 0
    assert h.core.admission.active_total == 0
    assert h.ports.in_use == 0
    assert len(h.uas.timers) == 0
