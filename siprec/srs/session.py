"""One recording session (RFC 7866 RS): who speaks on which stream, pauses, metadata versions, and the media seam.

`RecordingSession` holds explicit state (active / paused / ended, legs open / held / closed) and is changed only
through `apply()` (an offer and/or a metadata document), `pause()` / `resume()`, `touch_media()` and `end()`.
It publishes its own session_* events, so a pause from the REST API and a hold from SIP look the same downstream.

The media path plugs in through `MediaSink` / `LegHandle`: the session opens one leg per accepted SDP m-line and
tells the handle when its stream changes, pauses, resumes or closes. `NoMediaPlugged` is the default until the
RTP receivers exist; it records nothing and, knowing nothing about RTP, disables the RTP idle time-out.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from siprec.events.types import (
    Event,
    LegInfo,
    ParticipantInfo,
    SessionEnded,
    SessionPaused,
    SessionResumed,
    SessionStarted,
    SessionUpdated,
)
from siprec.srs.metadata_model import Participant, RecordingMetadata
from siprec.srs.metadata_state import LegAttribution, MetadataChange, MetadataState, resolve_labels
from siprec.srs.sdp import NegotiatedStream, diff_streams


class SessionState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    ENDED = "ended"


class LegState(StrEnum):
    OPEN = "open"
    HELD = "held"  # the SRC put this stream on hold (a=inactive / c=0.0.0.0): no RTP expected
    CLOSED = "closed"  # removed by a re-offer (port 0 / missing) or the session ended


HOLD = "hold"
API = "api"
SESSION_SCOPE = "session"
# An API pause of the live transcription only: the audio goes on being recorded; the STT pipeline reads
# `RecordingSession.transcription_paused`. Listed in the manifest's pauses so the transcript gap is explained.
TRANSCRIPTION_SCOPE = "transcription"


# --- the media seam ----------------------------------------------------------------------------------------


class LegHandle(Protocol):
    """What the media path returns for one opened leg; every call is made from the event loop, never blocks."""

    def update(self, stream: NegotiatedStream) -> None:
        """The stream was re-negotiated (codec, remote address/port or SRTP key changed)."""
        ...

    def pause(self) -> None:
        """Stop writing (silence or drop per recording.pause_mode) but keep receiving and keep reporting RTP
        activity: a paused call is not an idle one."""
        ...

    def resume(self) -> None: ...

    def close(self) -> None:
        """No more RTP for this leg: release the socket, finish the file."""
        ...


class MediaSink(Protocol):
    # True when the sink reports RTP arrivals through `session.touch_media(now)`: only then does the UAS run
    # the RTP idle time-out (a sink that cannot see RTP must never make a live call look dead).
    reports_activity: bool

    def open_leg(self, session: RecordingSession, leg: Leg) -> LegHandle: ...

    def save_metadata(self, session: RecordingSession, name: str, raw: bytes) -> None:
        """Keep a metadata version, as received, in the session's folder (which exists). The sink writes it
        where it writes the session's other files: with media workers that is off the SIP event loop."""
        ...

    def session_ended(self, session: RecordingSession) -> None:
        """Every leg is closed and the session's fields are final (the manifest can be written)."""
        ...


class _NoLeg:
    def update(self, stream: NegotiatedStream) -> None:
        pass

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def close(self) -> None:
        pass


class NoMediaPlugged:
    """The default MediaSink while no RTP receiver is wired in: legs exist in the model, nothing is recorded."""

    reports_activity = False

    def open_leg(self, session: RecordingSession, leg: Leg) -> LegHandle:
        return _NoLeg()

    def save_metadata(self, session: RecordingSession, name: str, raw: bytes) -> None:
        (session.folder / name).write_bytes(raw)

    def session_ended(self, session: RecordingSession) -> None:
        pass


# --- model -------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Leg:
    """One accepted SDP m-line (kept after it closes: the manifest lists every leg that was recorded)."""

    index: int
    stream: NegotiatedStream
    opened_at: float  # Unix time
    state: LegState = LegState.OPEN
    attribution: LegAttribution | None = None
    closed_at: float | None = None
    handle: LegHandle = field(default_factory=_NoLeg, repr=False)
    media_paused: bool = False  # what the handle was last told

    @property
    def label(self) -> str | None:
        return self.stream.label

    @property
    def participant(self) -> Participant | None:
        return self.attribution.participant if self.attribution else None

    @property
    def rule(self) -> str:
        return self.attribution.rule if self.attribution else "unknown"


@dataclass
class Pause:
    start: float  # Unix time
    end: float | None
    scope: str  # "session", "leg-<index>" or "transcription"
    reason: str  # hold | api


@dataclass(frozen=True)
class Offer:
    """What one INVITE / re-INVITE / UPDATE brought: new streams (None = no SDP) and/or a metadata document."""

    streams: list[NegotiatedStream] | None = None
    metadata: RecordingMetadata | None = None
    metadata_raw: bytes = b""


# --- folder names ------------------------------------------------------------------------------------------

MAX_NAME = 96
_SAFE = re.compile(r"[^A-Za-z0-9._@+-]")


def safe_name(text: str, max_len: int = MAX_NAME) -> str:
    """A single path component from untrusted text (a Call-ID): only [A-Za-z0-9._@+-], no "..", no leading dot
    or dash, at most `max_len` characters. When anything had to change, a hash of the original is appended so
    two different Call-IDs never collapse to one name."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    name = _SAFE.sub("_", ascii_text)
    name = re.sub(r"\.{2,}", "_", name).lstrip(".-")
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    if name == text and 0 < len(name) <= max_len:
        return name
    keep = max(0, max_len - len(digest) - 1)
    base = name[:keep].rstrip(".")
    return f"{base}-{digest}" if base else f"call-{digest}"


def session_folder(root: Path, call_id: str, wall: float) -> Path:
    """Create `<root>/<YYYY-MM-DD (UTC)>/<safe call-id>/`; a re-used Call-ID the same day gets `-2`, `-3`...
    instead of overwriting the earlier recording. Never returns a path outside `root`."""
    root = root.resolve()
    day = datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%d")
    base = safe_name(call_id)
    parent = root / day
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        folder = parent / (base if n == 1 else f"{base}-{n}")
        if not folder.resolve().is_relative_to(root):
            raise ValueError(f"recording folder escapes {root}")  # cannot happen with safe_name: belt and braces
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"too many recordings of call {base} on {day}")


# --- the session -------------------------------------------------------------------------------------------


class RecordingSession:
    def __init__(
        self,
        call_id: str,
        *,
        folder: Path,
        siprec: bool,
        started_at: float,
        now: float,
        media: MediaSink | None = None,
        publish: Callable[[Event], None] = lambda event: None,
        session_id: str | None = None,
    ) -> None:
        self.call_id = call_id
        self.session_id = session_id or str(uuid.uuid4())
        self.folder = folder
        self.siprec = siprec
        self.started_at = started_at
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.state = SessionState.ACTIVE
        self.metadata = MetadataState()
        self.metadata_files: list[str] = []  # metadata-<k>.xml names, k from 1
        self.legs: dict[int, Leg] = {}  # the current leg of each m-line index
        self.retired_legs: list[Leg] = []  # closed legs whose index was later re-offered
        self.pauses: list[Pause] = []
        self.last_media = now  # monotonic time of the last RTP the media path reported
        self.media: MediaSink = media or NoMediaPlugged()
        self._publish = publish
        self._open_pauses: dict[tuple[str, str], Pause] = {}
        self._api_paused = False
        self._transcription_paused = False
        self.auto_resume_at: float | None = None  # Unix time an API pause lifts itself (the UAS times it)

    # --- queries ---------------------------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return self.state is SessionState.ENDED

    @property
    def pause_reasons(self) -> tuple[str, ...]:
        return tuple(sorted(reason for scope, reason in self._open_pauses if scope == SESSION_SCOPE))

    @property
    def recording_paused(self) -> bool:
        """No audio is written on any leg (an API pause or every stream on hold)."""
        return self.state is SessionState.PAUSED

    @property
    def api_recording_paused(self) -> bool:
        return self._api_paused

    @property
    def transcription_paused(self) -> bool:
        """Live transcription must skip this session's audio (read by the STT pipeline)."""
        return self._transcription_paused

    @property
    def paused_since(self) -> float | None:
        """Unix time the oldest session-wide or transcription pause in force began (None when none is)."""
        starts = [p.start for (scope, _), p in self._open_pauses.items() if scope in (SESSION_SCOPE, TRANSCRIPTION_SCOPE)]
        return min(starts) if starts else None

    @property
    def live_legs(self) -> list[Leg]:
        return [leg for _, leg in sorted(self.legs.items()) if leg.state is not LegState.CLOSED]

    @property
    def streams(self) -> list[NegotiatedStream]:
        """The streams of our current answer (what a re-offer is compared with)."""
        return [leg.stream for leg in self.live_legs]

    @property
    def ports(self) -> list[int]:
        return [leg.stream.port for leg in self.live_legs]

    @property
    def fully_held(self) -> bool:
        live = self.live_legs
        return bool(live) and all(leg.state is LegState.HELD for leg in live)

    def duration(self, wall: float) -> float:
        return max(0.0, (self.ended_at if self.ended_at is not None else wall) - self.started_at)

    def participant_infos(self) -> tuple[ParticipantInfo, ...]:
        return tuple(_info(p) for p in self.metadata.active_participants)

    def leg_infos(self) -> tuple[LegInfo, ...]:
        return tuple(_leg_info(leg) for _, leg in sorted(self.legs.items()))

    # --- changes ---------------------------------------------------------------------------------------
    def start(self, offer: Offer, wall: float) -> None:
        """Apply the initial INVITE and announce the session (session_started, then session_paused when the
        SRC starts on hold)."""
        if offer.metadata is not None:
            self._apply_metadata(offer.metadata, offer.metadata_raw)
        self._apply_streams(offer.streams or [], wall)
        self._publish(
            SessionStarted(
                self.call_id,
                self.session_id,
                self.started_at,
                self.siprec,
                self.participant_infos(),
                self.leg_infos(),
            )
        )
        self._sync_pauses(wall)

    def apply(self, offer: Offer, wall: float) -> SessionUpdated | None:
        """A re-INVITE / UPDATE: metadata first (it names who is on the streams), then streams. Publishes one
        session_updated when participants or legs changed, and session_paused/resumed on hold changes."""
        if self.ended:
            return None
        before = {i: _who(leg) for i, leg in self.legs.items()}
        change = self._apply_metadata(offer.metadata, offer.metadata_raw) if offer.metadata else None
        added: list[int] = []
        removed: list[int] = []
        reconfigured: list[int] = []
        if offer.streams is not None:
            added, removed, reconfigured = self._apply_streams(offer.streams, wall)
        self._reattribute()
        moved = [i for i, leg in self.legs.items() if i not in added and i in before and before[i] != _who(leg)]
        legs_changed = sorted(set(reconfigured) | set(moved))
        changes: list[str] = []
        if change is not None and change.changed:
            changes.append("participants")
        if added or removed or legs_changed:
            changes.append("streams")
        event = None
        if changes:
            event = SessionUpdated(
                self.call_id,
                self.session_id,
                tuple(changes),
                self.participant_infos(),
                self.leg_infos(),
                participants_added=_ids(change.participants_added) if change else (),
                participants_removed=_ids(change.participants_removed) if change else (),
                participants_changed=_ids(change.participants_changed) if change else (),
                legs_added=tuple(added),
                legs_removed=tuple(removed),
                legs_changed=tuple(legs_changed),
                metadata_version=self.metadata.version,
            )
            self._publish(event)
        self._sync_pauses(wall)
        return event

    def pause(
        self, wall: float, *, recording: bool = True, transcription: bool = False, auto_resume_at: float | None = None
    ) -> bool:
        """An API pause: `recording` stops writing on every leg (PCI: card numbers are spoken), `transcription`
        stops live transcription only. Each stays until resumed; one already in force is kept. `auto_resume_at`
        (Unix time, None = never) replaces any earlier one while an API pause is in force. True when this call
        changed something."""
        if self.ended:
            return False
        before = (self._api_paused, self._transcription_paused, self.auto_resume_at)
        self._api_paused |= recording
        self._transcription_paused |= transcription
        self.auto_resume_at = auto_resume_at if (self._api_paused or self._transcription_paused) else None
        if (self._api_paused, self._transcription_paused, self.auto_resume_at) == before:
            return False
        self._sync_pauses(wall)
        return True

    def resume(self, wall: float, *, recording: bool = True, transcription: bool = True) -> bool:
        """Lift API pauses (both by default); the session stays paused while the SRC holds every stream."""
        if self.ended:
            return False
        before = (self._api_paused, self._transcription_paused)
        self._api_paused &= not recording
        self._transcription_paused &= not transcription
        if (self._api_paused, self._transcription_paused) == before:
            return False
        if not (self._api_paused or self._transcription_paused):
            self.auto_resume_at = None
        self._sync_pauses(wall)
        return True

    def touch_media(self, now: float) -> None:
        """The media path saw RTP (call it per received block, not per packet)."""
        if now > self.last_media:
            self.last_media = now

    def end(self, reason: str, wall: float) -> bool:
        """Close every leg and pause record, tell the media sink, publish session_ended. Idempotent."""
        if self.ended:
            return False
        for leg in self.live_legs:
            self._close_leg(leg, wall)
        for pause in self._open_pauses.values():
            pause.end = wall
        self._open_pauses.clear()
        self.state = SessionState.ENDED
        self.ended_at = wall
        self.end_reason = reason
        self._publish(
            SessionEnded(
                self.call_id,
                self.session_id,
                reason,
                self.started_at,
                wall,
                round(self.duration(wall), 3),
                self.participant_infos(),
                self.metadata.version,
            )
        )
        self.media.session_ended(self)  # after session_ended, so recording_ready follows it on the bus
        return True

    # --- internals -------------------------------------------------------------------------------------
    def _apply_metadata(self, doc: RecordingMetadata, raw: bytes) -> MetadataChange:
        change = self.metadata.apply(doc)
        name = f"metadata-{self.metadata.version}.xml"
        self.media.save_metadata(self, name, raw)
        self.metadata_files.append(name)
        return change

    def _apply_streams(
        self, streams: Sequence[NegotiatedStream], wall: float
    ) -> tuple[list[int], list[int], list[int]]:
        diff = diff_streams(self.streams, streams)
        by_index = {s.index: s for s in streams}
        for index in diff.removed:
            self._close_leg(self.legs[index], wall)
        for index in diff.kept:
            leg = self.legs[index]
            leg.stream = by_index[index]
            leg.state = LegState.HELD if leg.stream.on_hold else LegState.OPEN
            if index in diff.reconfigured:
                leg.handle.update(leg.stream)
        new_legs = []
        for index in diff.added:
            stream = by_index[index]
            # An index that was closed before and is offered again is a new leg (new port, new file); the old
            # one stays in `retired_legs` for the manifest.
            if index in self.legs:
                self.retired_legs.append(self.legs[index])
            leg = Leg(index, stream, wall, LegState.HELD if stream.on_hold else LegState.OPEN)
            self.legs[index] = leg
            new_legs.append(leg)
        self._reattribute()  # before open_leg, so the media path knows who speaks on the new legs
        for leg in new_legs:
            leg.handle = self.media.open_leg(self, leg)
        return list(diff.added), list(diff.removed), list(diff.reconfigured)

    def _close_leg(self, leg: Leg, wall: float) -> None:
        if leg.state is LegState.CLOSED:
            return
        leg.state = LegState.CLOSED
        leg.closed_at = wall
        leg.handle.close()

    def _reattribute(self) -> None:
        # Positions in resolve_labels are the live audio legs in m-line order (a rejected video m-line must not
        # shift "the i-th participant" of SDP-order attribution); closed legs keep their last attribution.
        live = self.live_legs
        for leg, found in zip(live, resolve_labels(self.metadata, [leg.label for leg in live]), strict=True):
            found.index = leg.index
            leg.attribution = found

    def _sync_pauses(self, wall: float) -> None:
        """Bring pause records, leg handles, state and events in line with the hold/API facts."""
        wanted: set[tuple[str, str]] = set()
        if self._api_paused:
            wanted.add((SESSION_SCOPE, API))
        if self._transcription_paused:
            wanted.add((TRANSCRIPTION_SCOPE, API))
        if self.fully_held:
            wanted.add((SESSION_SCOPE, HOLD))
        else:
            wanted |= {(f"leg-{leg.index}", HOLD) for leg in self.live_legs if leg.state is LegState.HELD}
        lifted = [key for key in self._open_pauses if key not in wanted]
        for key in lifted:
            self._open_pauses.pop(key).end = wall
        added = [key for key in sorted(wanted) if key not in self._open_pauses]
        for scope, reason in added:
            pause = Pause(wall, None, scope, reason)
            self._open_pauses[(scope, reason)] = pause
            self.pauses.append(pause)
        session_paused = any(scope == SESSION_SCOPE for scope, _ in wanted)
        for leg in self.live_legs:
            paused = session_paused or leg.state is LegState.HELD
            if paused != leg.media_paused:
                leg.media_paused = paused
                (leg.handle.pause if paused else leg.handle.resume)()
        was = self.state
        self.state = SessionState.PAUSED if session_paused else SessionState.ACTIVE
        paused = [reason for scope, reason in added if scope == SESSION_SCOPE]
        if (TRANSCRIPTION_SCOPE, API) in added and API not in paused:
            paused.append(API)  # a transcription-only pause is announced like a recording one, flags say which
        for reason in paused:
            self._publish(
                SessionPaused(
                    self.call_id, self.session_id, reason, wall, self.pause_reasons,
                    self.recording_paused, self._transcription_paused, self.auto_resume_at,
                )
            )  # fmt: skip
        resumed: str | None = None
        if was is SessionState.PAUSED and self.state is SessionState.ACTIVE:
            resumed = next((r for s, r in lifted if s == SESSION_SCOPE), HOLD)
        elif (TRANSCRIPTION_SCOPE, API) in lifted:
            resumed = API
        if resumed is not None:
            self._publish(
                SessionResumed(
                    self.call_id, self.session_id, resumed, wall, self.recording_paused, self._transcription_paused
                )
            )


def _info(p: Participant) -> ParticipantInfo:
    return ParticipantInfo(p.id, p.aor, p.name)


def _ids(items: list[Participant]) -> tuple[str, ...]:
    return tuple(p.id for p in items)


def _who(leg: Leg) -> tuple[str, ...]:
    return tuple(p.id for p in leg.attribution.participants) if leg.attribution else ()


def _leg_info(leg: Leg) -> LegInfo:
    s = leg.stream
    who = leg.attribution.participants if leg.attribution else []
    return LegInfo(
        index=leg.index,
        label=leg.label,
        state=leg.state.value,
        codec=s.codec.encoding,
        payload_type=s.codec.payload_type,
        sample_rate=s.codec.sample_rate,
        port=s.port,
        participant=_info(leg.participant) if leg.participant else None,
        participants=tuple(_info(p) for p in who),
        rule=leg.rule,
    )
