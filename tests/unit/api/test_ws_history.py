"""TranscriptHistory: what a late subscriber is replayed, and how the history stays bounded."""

from __future__ import annotations

from siprec.api.ws_frames import EventFrame
from siprec.api.ws_history import Coverage, TranscriptHistory


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def frame(seq: int, kind: str, call_id: str | None = "c1") -> EventFrame:
    return EventFrame(seq, kind, call_id, f"{kind}-{seq}".encode())


def seqs(frames: list[EventFrame]) -> list[int]:
    return [f.seq for f in frames]


def test_replay_is_start_finals_end_in_order_without_partials_or_other_events() -> None:
    history = TranscriptHistory()
    history.record(frame(1, "session_started"))
    history.record(frame(2, "transcript"), is_final=False)
    history.record(frame(3, "transcript"), is_final=True)
    history.record(frame(4, "dtmf"))
    history.record(frame(5, "transcript", "c2"), is_final=True)
    history.record(frame(6, "transcript"), is_final=True)
    history.record(frame(7, "session_ended"))
    history.record(frame(8, "transcript", None), is_final=True)
    assert seqs(history.replay("c1")) == [1, 3, 6, 7]
    assert seqs(history.replay("c2")) == [5]
    assert history.replay("unknown") == []


def test_the_latest_snapshot_is_replayed_in_its_place() -> None:
    history = TranscriptHistory()
    history.record(frame(1, "snapshot"))  # before the call is known: nothing to attach it to
    history.record(frame(2, "session_started"))
    history.record(frame(3, "transcript"), is_final=True)
    history.record(frame(4, "snapshot"))
    history.record(frame(5, "transcript"), is_final=True)
    history.record(frame(6, "snapshot"))
    assert seqs(history.replay("c1")) == [2, 3, 5, 6]  # one snapshot: the latest holds the call so far
    history.record(frame(7, "session_ended"))
    history.record(frame(8, "snapshot"))  # the final one comes after session_ended
    assert seqs(history.replay("c1")) == [2, 3, 5, 7, 8]
    history.record(frame(9, "snapshot", "c9"))
    assert history.replay("c9") == []


def test_finals_per_call_are_bounded_keeping_the_latest() -> None:
    history = TranscriptHistory(per_call=3)
    history.record(frame(0, "session_started"))
    for seq in range(1, 11):
        history.record(frame(seq, "transcript"), is_final=True)
    assert seqs(history.replay("c1")) == [0, 8, 9, 10]


def test_calls_are_bounded_least_recently_active_first() -> None:
    history = TranscriptHistory(max_calls=2)
    history.record(frame(1, "session_started", "a"))
    history.record(frame(2, "session_started", "b"))
    history.record(frame(3, "transcript", "a"), is_final=True)  # a is now the most recent
    history.record(frame(4, "session_started", "c"))
    assert "a" in history and "c" in history and "b" not in history
    assert len(history) == 2


def test_a_call_is_forgotten_some_time_after_it_ended() -> None:
    clock = Clock()
    history = TranscriptHistory(keep_after_end_s=60, clock=clock)
    history.record(frame(1, "session_started"))
    history.record(frame(2, "transcript"), is_final=True)
    clock.now += 3600  # a long call: nothing expires before the end
    assert "c1" in history
    history.record(frame(3, "session_ended"))
    clock.now += 59
    assert seqs(history.replay("c1")) == [1, 2, 3]
    clock.now += 1
    assert "c1" not in history
    assert history.replay("c1") == []


def test_a_call_id_started_again_after_its_end_starts_a_new_history() -> None:
    clock = Clock()
    history = TranscriptHistory(keep_after_end_s=60, clock=clock)
    history.record(frame(1, "session_started"))
    history.record(frame(2, "transcript"), is_final=True)
    history.record(frame(3, "session_ended"))
    clock.now += 30
    history.record(frame(4, "session_started"))
    assert seqs(history.replay("c1")) == [4]
    clock.now += 40  # the first life's deadline passes: the new one stays
    assert seqs(history.replay("c1")) == [4]


def test_coverage_every_call_then_subscriptions() -> None:
    coverage = Coverage()
    coverage.open(None, 10)  # every call from event 10
    assert not coverage.got("a", 9) and coverage.got("a", 10) and coverage.got("b", 500)
    coverage.close(None, 20)  # subscribes to a at 20
    coverage.open("a", 20)
    assert coverage.got("a", 19) and coverage.got("a", 20) and coverage.got("a", 10_000)
    assert coverage.got("b", 19) and not coverage.got("b", 20)
    coverage.close("a", 30)  # unsubscribes a at 30: every call again at 30
    coverage.open(None, 30)
    assert not coverage.got("b", 25) and coverage.got("b", 30)
    coverage.close(None, 40)
    coverage.open("b", 40)
    assert not coverage.got("a", 45) and coverage.got("a", 35) and coverage.got("a", 25)
    assert coverage.got("b", 45) and not coverage.got("b", 25) and not coverage.got("b", 5)


def test_coverage_is_bounded_forgetting_old_closed_spans() -> None:
    coverage = Coverage(limit=4)
    coverage.open("keep", 0)
    for seq in range(1, 20, 2):
        coverage.open("x", seq)
        coverage.close("x", seq + 1)
    assert len(coverage) == 4
    assert coverage.got("keep", 1000)  # the open span is never the one forgotten
    assert coverage.got("x", 17) and not coverage.got("x", 1)
