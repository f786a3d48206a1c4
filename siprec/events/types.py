"""Typed events, with ONE wire schema for every sink (WebSocket, AMQP, webhooks): `{"type": ..., "payload": {...}}`.

An event is a frozen dataclass; its fields are the payload. `type` is the WebSocket frame type, `routing_key` the
AMQP routing key (dots for underscores unless a class says otherwise). Events carry plain data only (no session
objects), so a sink can serialise them at any later time and nothing downstream can mutate the session.
New events are added here the same way: subclass `Event`, set `type`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    type: ClassVar[str] = "event"

    @property
    def routing_key(self) -> str:
        return self.type.replace("_", ".")

    def payload(self) -> dict[str, Any]:
        return asdict(self)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "payload": self.payload()}

    def to_json(self) -> str:
        """The frame every sink sends: one JSON object, UTF-8 kept as is, no trailing newline."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


# --- shared shapes ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParticipantInfo:
    """A participant as the manifest and events show it (CONTRACT.md: {id, aor, name})."""

    id: str
    aor: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class LegInfo:
    """One recorded stream (SDP m-line) and who speaks on it."""

    index: int
    label: str | None
    state: str  # open | held | closed
    codec: str
    payload_type: int
    sample_rate: int
    port: int
    participant: ParticipantInfo | None = None
    participants: tuple[ParticipantInfo, ...] = ()  # every sender of a mixed stream
    rule: str = "unknown"  # which attribution rule decided (metadata-label, metadata-stream, sdp-order, unknown)


# --- session lifecycle -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionStarted(Event):
    type: ClassVar[str] = "session_started"

    call_id: str
    session_id: str
    started_at: float  # Unix time
    siprec: bool  # False: a plain INVITE recorded without metadata
    participants: tuple[ParticipantInfo, ...] = ()
    legs: tuple[LegInfo, ...] = ()
    state: str = "active"


@dataclass(frozen=True)
class SessionUpdated(Event):
    """Participants or streams changed. `changes` names what ("participants", "streams"); the id lists say how."""

    type: ClassVar[str] = "session_updated"

    call_id: str
    session_id: str
    changes: tuple[str, ...]
    participants: tuple[ParticipantInfo, ...] = ()
    legs: tuple[LegInfo, ...] = ()
    participants_added: tuple[str, ...] = ()
    participants_removed: tuple[str, ...] = ()
    participants_changed: tuple[str, ...] = ()
    legs_added: tuple[int, ...] = ()
    legs_removed: tuple[int, ...] = ()
    legs_changed: tuple[int, ...] = ()  # codec/remote address changed, or another participant now speaks
    metadata_version: int = 0


@dataclass(frozen=True)
class SessionPaused(Event):
    type: ClassVar[str] = "session_paused"

    call_id: str
    session_id: str
    reason: str  # hold | api
    at: float
    reasons: tuple[str, ...] = field(default=())  # every reason in force after this change
    # What is paused after this change: audio on every leg / live transcription (an API pause may stop either).
    recording_paused: bool = True
    transcription_paused: bool = False
    auto_resume_at: float | None = None  # Unix time an API pause lifts itself


@dataclass(frozen=True)
class SessionResumed(Event):
    type: ClassVar[str] = "session_resumed"

    call_id: str
    session_id: str
    reason: str  # the reason that was lifted
    at: float
    recording_paused: bool = False  # still paused after this change (e.g. transcription resumed, audio not)
    transcription_paused: bool = False


@dataclass(frozen=True)
class SessionEnded(Event):
    type: ClassVar[str] = "session_ended"

    call_id: str
    session_id: str
    reason: str  # bye | cancel | ack-timeout | session-expired | rtp-timeout | shutdown | refused ...
    started_at: float
    ended_at: float
    duration_s: float
    participants: tuple[ParticipantInfo, ...] = ()
    metadata_versions: int = 0


# --- media ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DtmfDetected(Event):
    """An RFC 4733 key press on one leg (never written as audio). `start` is seconds from the session start."""

    type: ClassVar[str] = "dtmf"

    call_id: str
    session_id: str
    leg: int
    digit: str | None  # 0-9 * # A-D, "flash"; None for a non-DTMF tone event
    event: int
    start: float
    duration_s: float
    ended: bool  # False when every end packet was lost and the press was closed by the next one / call end


@dataclass(frozen=True)
class RecordingReady(Event):
    """A session's files are final (closed, headers exact, transcoded when FLAC): safe to copy or archive."""

    type: ClassVar[str] = "recording_ready"

    call_id: str
    session_id: str
    folder: str
    manifest: str
    legs: tuple[str, ...] = ()
    combined: str | None = None
    state: str = "completed"


# --- transcription -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TranscriptEvent(Event):
    """A partial or final result for one leg (CONTRACT.md "transcript" payload). `start`/`end` are seconds from
    the session start; `words` are {text, start, end, confidence} on the same clock."""

    type: ClassVar[str] = "transcript"

    call_id: str
    stream_label: str | None
    speaker_label: str | None  # the metadata participant's name, else its aor
    text: str
    is_final: bool
    start: float
    end: float
    confidence: float | None = None
    words: tuple[dict[str, Any], ...] = ()
    provider: str = ""
    language: str = ""
    sentiment: dict[str, Any] | None = None
    keywords: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)  # session_id, leg index, participant_id

    @property
    def routing_key(self) -> str:
        return "transcript.final" if self.is_final else "transcript.partial"


@dataclass(frozen=True)
class SttQueued(Event):
    """A leg is not transcribed live: beyond stt.max_concurrent (reason "capacity", `position` in the FIFO from 1)
    or its provider fell behind (reason "lagging"); it will be transcribed from the recording after the call."""

    type: ClassVar[str] = "stt_queued"

    call_id: str
    session_id: str
    leg: int
    stream_label: str | None
    reason: str  # capacity | lagging
    position: int


@dataclass(frozen=True)
class SttStarted(Event):
    """Transcription of a leg began: live, or (mode "post_call") from its recording once the call ended."""

    type: ClassVar[str] = "stt_started"

    call_id: str
    session_id: str
    leg: int
    stream_label: str | None
    mode: str  # live | post_call
    provider: str


# --- analytics (siprec.analytics; on /ws/analytics) -------------------------------------------------------------


@dataclass(frozen=True)
class KeywordDetected(Event):
    """A final transcript holds a configured keyword or phrase (analytics.keywords): one event per keyword."""

    type: ClassVar[str] = "keyword_detected"

    call_id: str
    session_id: str
    leg: int | None
    stream_label: str | None
    speaker_label: str | None
    keyword: str  # as configured
    text: str  # the utterance
    start: float  # seconds from the session start
    end: float


@dataclass(frozen=True)
class SentimentUpdate(Event):
    """The sentiment of a final utterance, and the speaker's and the call's so far (word-weighted averages).
    Scores are -1..1, labels positive | neutral | negative."""

    type: ClassVar[str] = "sentiment_update"

    call_id: str
    session_id: str
    leg: int | None
    stream_label: str | None
    speaker_label: str | None
    start: float
    end: float
    score: float
    label: str
    speaker: dict[str, Any] | None  # {score, label} of the speaker so far
    call: dict[str, Any] | None  # {score, label} of the call so far


@dataclass(frozen=True)
class AnalyticsSnapshot(Event):
    """Every analytics.snapshot_interval_s for each live call with transcripts, and once more (final) when it ends:
    talk time, words and sentiment per speaker, the call's sentiment and keyword counts."""

    type: ClassVar[str] = "snapshot"

    call_id: str
    session_id: str
    at: float  # Unix time
    elapsed_s: float | None  # since the session start
    final: bool
    utterances: int
    talk_time_s: float
    speakers: tuple[dict[str, Any], ...]
    sentiment: dict[str, Any] | None
    keywords: dict[str, int]

    @property
    def routing_key(self) -> str:
        return "analytics.snapshot"


# --- compliance ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordingErased(Event):
    """A recording folder and every file in it were erased (GDPR erasure through the API). `folder` is
    <date>/<folder> relative to recording.dir, `files` the names relative to the folder, `reason` why (gdpr)."""

    type: ClassVar[str] = "recording_erased"

    call_id: str | None
    session_id: str | None
    folder: str
    files: tuple[str, ...] = ()
    size_bytes: int = 0
    reason: str = "gdpr"
