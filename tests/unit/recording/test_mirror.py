"""SessionMirror: a picklable snapshot of what the recorder reads of a RecordingSession, applied in place."""

from __future__ import annotations

import pickle
from pathlib import Path

from siprec.recording.mirror import SessionMirror, snapshot
from siprec.srs.session import Leg, NoMediaPlugged, Offer, RecordingSession
from tests.unit.srs.test_session import stream


def session(tmp_path: Path) -> RecordingSession:
    s = RecordingSession(
        "call-1", folder=tmp_path, siprec=True, started_at=100.0, now=0.0, media=NoMediaPlugged()
    )
    s.start(Offer([stream(0), stream(1)]), 100.0)
    return s


def roundtrip(s: RecordingSession, keys: dict[Leg, int]) -> SessionMirror:
    return pickle.loads(pickle.dumps(snapshot(s, keys)))


def test_the_snapshot_holds_what_the_recorder_reads(tmp_path: Path) -> None:
    s = session(tmp_path)
    keys: dict[Leg, int] = {}
    m = roundtrip(s, keys)
    assert (m.call_id, m.session_id, m.folder, m.siprec, m.started_at) == (
        "call-1",
        s.session_id,
        tmp_path,
        True,
        100.0,
    )
    assert not m.ended and m.ended_at is None and m.end_reason is None
    assert sorted(m.legs) == [0, 1]
    for index, leg in m.legs.items():
        real = s.legs[index]
        assert (leg.index, leg.label, leg.stream, leg.opened_at) == (
            index,
            real.label,
            real.stream,
            real.opened_at,
        )
        assert leg.rule == real.rule and leg.participant == real.participant
        assert leg.key == keys[real]
    assert m.participant_infos() == s.participant_infos()
    assert m.duration(130.0) == s.duration(130.0) == 30.0


def test_apply_keeps_the_leg_objects_and_takes_pauses_and_the_end(tmp_path: Path) -> None:
    s = session(tmp_path)
    keys: dict[Leg, int] = {}
    mine = roundtrip(s, keys)
    leg0 = mine.legs[0]
    s.pause(110.0)
    mine.apply(roundtrip(s, keys))
    assert mine.recording_paused and [(p.start, p.end, p.scope) for p in mine.pauses] == [
        (110.0, None, "session")
    ]
    s.resume(115.0)
    s.end("bye", 130.0)
    mine.apply(roundtrip(s, keys))
    assert mine.legs[0] is leg0  # the recorder's reference stays live
    assert leg0.closed_at == 130.0
    assert mine.ended and mine.ended_at == 130.0 and mine.end_reason == "bye" and not mine.recording_paused
    assert [(p.start, p.end) for p in mine.pauses] == [(110.0, 115.0)]
    assert mine.duration(999.0) == 30.0


def test_a_reopened_m_line_is_a_new_leg_with_its_own_key(tmp_path: Path) -> None:
    s = session(tmp_path)
    keys: dict[Leg, int] = {}
    mine = roundtrip(s, keys)
    first = mine.legs[1]
    s.apply(Offer([stream(0)]), 110.0)  # m-line 1 removed
    s.apply(Offer([stream(0), stream(1, port=41000)]), 120.0)  # and offered again
    mine.apply(roundtrip(s, keys))
    assert mine.legs[1] is not first and mine.legs[1].key != first.key
    assert first.closed_at == 110.0 and mine.legs_by_key[first.key] is first
    assert len(keys) == 3


def test_activity_reaches_the_worker_hook_and_is_never_pickled(tmp_path: Path) -> None:
    mine = snapshot(session(tmp_path), {})
    seen: list[str] = []
    mine.on_media = seen.append
    mine.touch_media(1.0)
    assert seen == [mine.session_id]
    assert pickle.loads(pickle.dumps(mine)).on_media is None
