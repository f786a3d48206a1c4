"""Typed model of RFC 7865 recording metadata, normalised across vendors.

Plain dataclasses, no parsing and no I/O: `siprec.srs.metadata` fills them from XML, `MetadataState` merges them.
Timestamps stay the strings the SRC sent (vendors send them with and without a zone; guessing one would be worse
than keeping the text). Unknown child elements are kept as standalone XML strings in `extensions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from siprec.sip.errors import SipError

DataMode = Literal["complete", "partial"]


class MetadataError(SipError):
    """An rs-metadata body that must be refused; the SIP layer answers it as it is (400 + Warning)."""

    def __init__(self, warning: str, status: int = 400) -> None:
        super().__init__(status=status, warning=warning)


@dataclass
class Group:
    id: str
    associate_time: str | None = None
    disassociate_time: str | None = None
    extensions: list[str] = field(default_factory=list)


@dataclass
class Session:
    id: str
    sip_session_ids: list[str] = field(default_factory=list)
    group_ref: str | None = None
    start_time: str | None = None
    stop_time: str | None = None
    # From <sessionrecordingassoc> (RFC) or <associate-time> inside <session> (Oracle/Acme).
    associate_time: str | None = None
    disassociate_time: str | None = None
    extensions: list[str] = field(default_factory=list)


@dataclass
class Participant:
    """One party. `send`/`recv` are stream ids, merged from inline <send>/<recv> and <participantstreamassoc>;
    the times come from <participantsessionassoc> or from inside <participant> (Oracle/Acme)."""

    id: str
    aor: str | None = None  # as sent: a URI, a bare number or user@host:port
    name: str | None = None  # stripped; None when missing or blank
    send: list[str] = field(default_factory=list)
    recv: list[str] = field(default_factory=list)
    associate_time: str | None = None
    disassociate_time: str | None = None
    extensions: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.disassociate_time is None

    def apply_session_assoc(self, assoc: ParticipantSessionAssoc) -> None:
        """Carry a <participantsessionassoc>'s times onto this participant (parser and partial merge)."""
        if assoc.associate_time:
            self.associate_time = assoc.associate_time
        if assoc.disassociate_time:
            self.disassociate_time = assoc.disassociate_time


@dataclass
class Stream:
    id: str
    label: str | None = None
    session_id: str | None = None
    mode: str | None = None  # Oracle/Acme and BroadWorks: "separate" / "mixed"
    associate_time: str | None = None
    disassociate_time: str | None = None
    extensions: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.disassociate_time is None


@dataclass
class ParticipantSessionAssoc:
    participant_id: str
    session_id: str | None = None
    associate_time: str | None = None
    disassociate_time: str | None = None


@dataclass
class ParticipantStreamAssoc:
    participant_id: str
    send: list[str] = field(default_factory=list)
    recv: list[str] = field(default_factory=list)


@dataclass
class RecordingMetadata:
    """One rs-metadata document. Element lists are in document order.

    `participant_session_assocs` / `participant_stream_assocs` are the association elements as sent; their content
    is also folded into the matching `Participant` so consumers need not join them.
    """

    data_mode: DataMode = "complete"
    groups: list[Group] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    participants: list[Participant] = field(default_factory=list)
    streams: list[Stream] = field(default_factory=list)
    participant_session_assocs: list[ParticipantSessionAssoc] = field(default_factory=list)
    participant_stream_assocs: list[ParticipantStreamAssoc] = field(default_factory=list)
    # Unknown top-level elements (e.g. netsapiensExtension).
    extensions: list[str] = field(default_factory=list)
    root: str = "recording"  # local name of the root: "recording" or BroadWorks "recording_metadata"
    namespace: str = ""  # namespace URI of the root as sent ("" when none)

    def participant(self, participant_id: str) -> Participant | None:
        return next((p for p in self.participants if p.id == participant_id), None)

    def stream(self, stream_id: str) -> Stream | None:
        return next((s for s in self.streams if s.id == stream_id), None)


def speaker_name(p: Participant) -> str:
    """Label for a transcript speaker: the display name, else the AoR, else the participant id."""
    return p.name or p.aor or p.id
