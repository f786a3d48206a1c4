"""Recording and transcription paused independently on RecordingSession, and auto-resume through the UAS timers."""

from __future__ import annotations

from pathlib import Path

from siprec.events.types import Event, SessionPaused, SessionResumed
from siprec.srs.sdp import Codec, Direction, NegotiatedStream
from siprec.srs.session import Offer, RecordingSession, SessionState
from tests.unit.srs.test_uas_support import RecordingMedia, UasHarness, audio, multipart, participant_doc, sdp

CTYPE, TWO_LEGS = multipart(sdp(audio(30000, "1"), audio(30002, "2")), participant_doc(
    ("pA", "sip:alice@example.com", "Alice", "st1"), ("pB", "sip:bob@example.com", "Bob", "st2")))  # fmt: skip


def stream(index: int, *, hold: bool = False) -> NegotiatedStream:
    return NegotiatedStream(
        index, str(index + 1), Codec(0, "PCMU", 8000), 40000 + 2 * index, "192.0.2.9", 30000 + 2 * index,
        30001 + 2 * index, Direction.INACTIVE if hold else Direction.RECVONLY,
    )  # fmt: skip


def new_session(tmp: Path) -> tuple[RecordingSession, RecordingMedia, list[Event]]:
    media = RecordingMedia()
    events: list[Event] = []
    s = RecordingSession(
        "c", folder=tmp, siprec=True, started_at=100.0, now=0.0, media=media, publish=events.append
    )
    s.start(Offer([stream(0), stream(1)]), 100.0)
    return s, media, events


def test_transcription_pause_keeps_recording(tmp_path: Path) -> None:
    s, media, events = new_session(tmp_path)
    assert s.pause(110.0, recording=False, transcription=True)
    assert s.transcription_paused and not s.recording_paused and s.state is SessionState.ACTIVE
    assert not [e for e in media.log if e[0] == "pause"]  # no leg was told to stop writing
    assert s.paused_since == 110.0
    paused = events[-1]
    assert isinstance(paused, SessionPaused) and paused.reason == "api"
    assert (paused.recording_paused, paused.transcription_paused) == (False, True)
    assert not s.pause(111.0, recording=False, transcription=True)  # nothing new
    assert s.resume(120.0, recording=False, transcription=True)
    resumed = events[-1]
    assert isinstance(resumed, SessionResumed) and not resumed.transcription_paused
    assert [(p.start, p.end, p.scope, p.reason) for p in s.pauses] == [(110.0, 120.0, "transcription", "api")]
    assert s.paused_since is None


def test_recording_and_transcription_lifted_separately(tmp_path: Path) -> None:
    s, media, events = new_session(tmp_path)
    assert s.pause(110.0, recording=True, transcription=True, auto_resume_at=170.0)
    assert s.recording_paused and s.transcription_paused and s.auto_resume_at == 170.0
    assert [e.type for e in events].count("session_paused") == 1  # one event says both
    assert (events[-1].recording_paused, events[-1].transcription_paused) == (True, True)  # type: ignore[attr-defined]
    assert [e for e in media.log if e[0] == "pause"] == [("pause", 0, ""), ("pause", 1, "")]
    assert s.resume(115.0, recording=True, transcription=False)
    assert not s.recording_paused and s.transcription_paused and s.auto_resume_at == 170.0
    last = events[-1]
    assert isinstance(last, SessionResumed) and (last.recording_paused, last.transcription_paused) == (
        False,
        True,
    )
    assert s.resume(118.0)
    assert s.auto_resume_at is None and not s.transcription_paused
    assert sorted((p.scope, p.start, p.end) for p in s.pauses) == [
        ("session", 110.0, 115.0), ("transcription", 110.0, 118.0)]  # fmt: skip


def test_pause_of_nothing_and_after_end_changes_nothing(tmp_path: Path) -> None:
    s, _, events = new_session(tmp_path)
    assert not s.pause(110.0, recording=False, transcription=False)
    assert not s.resume(111.0)
    s.end("bye", 120.0)
    assert not s.pause(121.0) and not s.resume(122.0)
    assert [e.type for e in events] == ["session_started", "session_ended"]


def test_hold_under_a_transcription_pause_is_reported_as_recording_paused(tmp_path: Path) -> None:
    s, _, events = new_session(tmp_path)
    s.pause(110.0, recording=False, transcription=True)
    s.apply(Offer([stream(0, hold=True), stream(1, hold=True)]), 112.0)
    assert s.recording_paused and s.pause_reasons == ("hold",)
    held = events[-1]
    assert isinstance(held, SessionPaused) and held.reason == "hold" and held.transcription_paused


def test_uas_auto_resume_fires_from_the_timer_queue(tmp_path: Path) -> None:
    h = UasHarness(tmp_path, media=RecordingMedia())
    d = h.call(CTYPE, TWO_LEGS)
    assert h.uas.pause("call-1", recording=True, transcription=True, auto_resume_after=30)
    assert d.session.auto_resume_at == h.wall + 30
    h.advance(29)
    assert d.session.recording_paused
    h.advance(2)
    assert not d.session.recording_paused and not d.session.transcription_paused
    assert d.session.auto_resume_at is None
    assert h.types()[-2:] == ["session_paused", "session_resumed"]


def test_uas_resume_cancels_auto_resume_and_a_new_pause_replaces_it(tmp_path: Path) -> None:
    h = UasHarness(tmp_path, media=RecordingMedia(), rtp={"rtp_timeout_s": 1000})
    d = h.call(CTYPE, TWO_LEGS)
    h.uas.pause("call-1", auto_resume_after=10)
    h.uas.pause("call-1", auto_resume_after=100)  # the last request wins
    h.advance(20)
    assert d.session.recording_paused
    assert h.uas.resume("call-1")
    h.uas.pause("call-1")  # no auto-resume this time
    h.advance(200)
    assert d.session.recording_paused and d.session.auto_resume_at is None
