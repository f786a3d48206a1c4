"""`SessionMirror`: what the recorder reads of a `RecordingSession` and its `Leg`s, as plain picklable data.

The SIP process owns the sessions; a media worker records them from a mirror. The SIP process sends a fresh
snapshot (`snapshot()`) with every leg command and at the session's end; the worker applies it onto the mirror
it already holds (`SessionMirror.apply`), in place, so `LegRecorder.leg` and `SessionRecorder.session` keep
pointing at live objects. The final snapshot carries the end reason, the closed pauses and every leg's
closed_at, so the final manifest is the one the SIP process would have written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from siprec.events.types import ParticipantInfo
from siprec.srs.metadata_model import Participant
from siprec.srs.metadata_state import LegAttribution
from siprec.srs.sdp import NegotiatedStream
from siprec.srs.session import Leg, Pause, RecordingSession

__all__ = ["LegMirror", "SessionMirror", "snapshot"]


@dataclass(eq=False)
class LegMirror:
    key: int  # unique within the session (an m-line re-opened after closing is a new leg with a new key)
    index: int
    stream: NegotiatedStream
    opened_at: float
    closed_at: float | None = None
    attribution: LegAttribution | None = None

    @property
    def label(self) -> str | None:
        return self.stream.label

    @property
    def participant(self) -> Participant | None:
        return self.attribution.participant if self.attribution else None

    @property
    def rule(self) -> str:
        return self.attribution.rule if self.attribution else "unknown"


@dataclass(eq=False)
class SessionMirror:
    call_id: str
    session_id: str
    folder: Path
    siprec: bool
    started_at: float
    ended_at: float | None = None
    end_reason: str | None = None
    is_ended: bool = False
    recording_paused: bool = False
    transcription_paused: bool = False
    pauses: list[Pause] = field(default_factory=list)
    participants: tuple[ParticipantInfo, ...] = ()
    metadata_files: list[str] = field(default_factory=list)
    legs_by_key: dict[int, LegMirror] = field(default_factory=dict)
    current: dict[int, int] = field(default_factory=dict)  # m-line index -> key of its current leg
    # Set by the worker: called (at most per decoded block) when RTP arrived; never pickled with a value.
    on_media: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    # --- what the recorder reads (the RecordingSession interface it uses) --------------------------------------
    @property
    def ended(self) -> bool:
        return self.is_ended

    @property
    def legs(self) -> dict[int, LegMirror]:
        return {index: self.legs_by_key[key] for index, key in self.current.items()}

    def duration(self, wall: float) -> float:
        return max(0.0, (self.ended_at if self.ended_at is not None else wall) - self.started_at)

    def participant_infos(self) -> tuple[ParticipantInfo, ...]:
        return self.participants

    def touch_media(self, now: float) -> None:
        if self.on_media is not None:
            self.on_media(self.session_id)

    # --- updates -------------------------------------------------------------------------------------------
    def apply(self, new: SessionMirror) -> None:
        """Take the state of a newer snapshot of the same session, keeping leg objects the recorder holds."""
        for name in (
            "ended_at", "end_reason", "is_ended", "recording_paused", "transcription_paused", "pauses",
            "participants", "metadata_files", "current",
        ):  # fmt: skip
            setattr(self, name, getattr(new, name))
        for key, leg in new.legs_by_key.items():
            mine = self.legs_by_key.get(key)
            if mine is None:
                self.legs_by_key[key] = leg
            else:
                mine.stream, mine.closed_at, mine.attribution = leg.stream, leg.closed_at, leg.attribution

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["on_media"] = None
        return state


def snapshot(session: RecordingSession, keys: dict[Leg, int]) -> SessionMirror:
    """The mirror of `session` now. `keys` numbers its Leg objects (kept by the caller for the session's life;
    new legs get the next number)."""
    by_key: dict[int, LegMirror] = {}
    current: dict[int, int] = {}
    for leg in [*session.retired_legs, *session.legs.values()]:
        key = keys.get(leg)
        if key is None:
            key = keys[leg] = len(keys) + 1
        by_key[key] = LegMirror(key, leg.index, leg.stream, leg.opened_at, leg.closed_at, leg.attribution)
    for index, leg in session.legs.items():
        current[index] = keys[leg]
    return SessionMirror(
        call_id=session.call_id,
        session_id=session.session_id,
        folder=session.folder,
        siprec=session.siprec,
        started_at=session.started_at,
        ended_at=session.ended_at,
        end_reason=session.end_reason,
        is_ended=session.ended,
        recording_paused=session.recording_paused,
        transcription_paused=session.transcription_paused,
        pauses=[Pause(p.start, p.end, p.scope, p.reason) for p in session.pauses],
        participants=session.participant_infos(),
        metadata_files=list(session.metadata_files),
        legs_by_key=by_key,
        current=current,
    )
