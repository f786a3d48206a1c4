"""What the REST API knows of a recording folder: `Recording` (summarised from manifest.json, or from the live
session while there is none yet), the listing filter, and `participant_key` for exact (GDPR) matching.

A manifest is the recorder's own file, but it is read defensively: a field of the wrong type is treated as
missing, and a file name that is not a plain name inside the folder (a slash, a leading dot) is dropped, so nothing
a damaged or tampered manifest says can make the API open a file elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from siprec.events.types import ParticipantInfo
from siprec.recording.manifest import iso_time

__all__ = [
    "AUDIO_TYPES",
    "ArchiveUsage",
    "CombinedFile",
    "ErasedFolder",
    "LegFile",
    "LiveSession",
    "Recording",
    "RecordingFilter",
    "is_plain_name",
    "participant_key",
    "summary_from_manifest",
    "summary_without_manifest",
]

LEG_SELECTOR = re.compile(r"^leg-(\d{1,6})$")
COMBINED = "combined"
INCOMPLETE = "incomplete"
RECORDING = "recording"
AUDIO_TYPES = {".wav": "audio/wav", ".flac": "audio/flac"}
_PHONE_SEPARATORS = re.compile(r"[\s().\-]")
_PHONE = re.compile(r"^\+?\d{3,}$")


# --- what a folder holds --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LegFile:
    index: int
    label: str | None
    file: str
    codec: str | None
    duration_s: float | None


@dataclass(frozen=True)
class CombinedFile:
    file: str
    channels: int | None
    sample_rate: int | None
    duration_s: float | None


@dataclass(frozen=True)
class LiveSession:
    """A session still recording (from the session directory), by the folder it writes into."""

    call_id: str
    session_id: str
    started_at: float
    participants: tuple[ParticipantInfo, ...] = ()


@dataclass(frozen=True)
class Recording:
    """One recording folder, summarised from its manifest (or from its live session while it has none)."""

    folder: Path  # absolute, inside the index root
    day: str  # YYYY-MM-DD (UTC), the date folder
    call_id: str | None
    session_id: str | None
    state: str
    started_at: str | None
    started_at_unix: float | None
    ended_at: str | None
    duration_s: float | None
    format: str | None
    participants: tuple[ParticipantInfo, ...]
    legs: tuple[LegFile, ...]
    combined: CombinedFile | None
    has_manifest: bool

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def relative(self) -> str:
        return f"{self.day}/{self.folder.name}"

    @property
    def sort_key(self) -> tuple[float, str]:
        return (self.started_at_unix or 0.0, self.folder.name)

    def audio(self, selector: str) -> LegFile | CombinedFile | None:
        """The file behind `leg-<n>` (the first leg of m-line n) or `combined`; None when there is none."""
        if selector == COMBINED:
            return self.combined
        match = LEG_SELECTOR.match(selector)
        if match is None:
            return None
        index = int(match.group(1))
        return next((leg for leg in self.legs if leg.index == index), None)


@dataclass(frozen=True)
class RecordingFilter:
    """Which recordings a listing shows. `since`/`until` are inclusive and timezone-aware."""

    since: datetime | None = None
    until: datetime | None = None
    participant: str | None = None  # case-insensitive substring of a participant's id, aor or name
    state: str | None = None

    def day_bounds(self) -> tuple[str | None, str | None]:
        first = self.since.astimezone(UTC).strftime("%Y-%m-%d") if self.since else None
        last = self.until.astimezone(UTC).strftime("%Y-%m-%d") if self.until else None
        return first, last

    @property
    def needs_summary(self) -> bool:
        """Whether deciding needs the manifest (participant or state), not just the start time."""
        return self.participant is not None or self.state is not None

    def covers_day(self, day: str) -> bool:
        """True when every folder of `day` is selected whatever its manifest says (so a day can be counted)."""
        if self.needs_summary:
            return False
        start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
        end = start + timedelta(days=1) - timedelta(microseconds=1)
        return not (self.since is not None and self.since > start) and not (
            self.until is not None and self.until < end
        )

    def selects_time(self, started_at_unix: float | None) -> bool:
        """The time bounds (a folder with no known start time is decided by its date folder alone)."""
        if started_at_unix is None:
            return True
        if self.since is not None and started_at_unix < self.since.timestamp():
            return False
        return not (self.until is not None and started_at_unix > self.until.timestamp())

    def selects(self, rec: Recording) -> bool:
        if not self.selects_time(rec.started_at_unix):
            return False
        if self.state is not None and rec.state != self.state:
            return False
        if self.participant is not None:
            needle = self.participant.casefold()
            return any(
                needle in value.casefold()
                for p in rec.participants
                for value in (p.id, p.aor, p.name)
                if value
            )
        return True


@dataclass(frozen=True)
class ErasedFolder:
    recording: Recording
    files: tuple[str, ...]  # paths relative to the folder
    bytes: int


@dataclass(frozen=True)
class ArchiveUsage:
    recordings: int
    bytes: int
    days: int
    oldest_started_at: float | None
    newest_started_at: float | None
    computed_at: float  # Unix time


# --- matching a data subject ----------------------------------------------------------------------------------


def participant_key(text: str) -> str | None:
    """The identity an AOR or phone number denotes, for exact (GDPR) matching.

    A phone number, bare or as the user part of a sip:/sips:/tel: URI, becomes `tel:<digits>` (separators and
    "+" dropped, so "+1 (555) 010-9999" equals "sip:+15550109999@carrier.example"); anything else becomes
    `user@host` in lower case without scheme, URI parameters or angle brackets. Empty text gives None."""
    value = text.strip().strip("<>").strip()
    lowered = value.casefold()
    for scheme in ("sips:", "sip:", "tel:"):
        if lowered.startswith(scheme):
            value = value[len(scheme) :]
            break
    value = value.split(";", 1)[0].split("?", 1)[0].split(">", 1)[0].strip()
    if not value:
        return None
    user, _, host = value.partition("@")
    phone = _PHONE_SEPARATORS.sub("", user)
    if _PHONE.match(phone):
        return "tel:" + phone.lstrip("+")
    return f"{user}@{host}".casefold() if host else user.casefold()


def is_plain_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and bool(name)
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
        and not name.startswith(".")
    )


# --- manifest summaries ---------------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _participants(items: Any) -> tuple[ParticipantInfo, ...]:
    out = []
    for p in items if isinstance(items, list) else []:
        if isinstance(p, dict) and isinstance(p.get("id"), str):
            out.append(ParticipantInfo(p["id"], _text(p.get("aor")), _text(p.get("name"))))
    return tuple(out)


def summary_from_manifest(folder: Path, day: str, data: dict[str, Any]) -> Recording:
    legs = []
    for entry in data.get("legs") if isinstance(data.get("legs"), list) else []:
        if (
            isinstance(entry, dict)
            and _integer(entry.get("index")) is not None
            and is_plain_name(entry.get("file"))
        ):
            legs.append(
                LegFile(entry["index"], _text(entry.get("label")), entry["file"], _text(entry.get("codec")),
                        _number(entry.get("duration_s")))
            )  # fmt: skip
    raw = data.get("combined")
    combined = (
        CombinedFile(raw["file"], _integer(raw.get("channels")), _integer(raw.get("sample_rate")),
                     _number(raw.get("duration_s")))
        if isinstance(raw, dict) and is_plain_name(raw.get("file"))
        else None
    )  # fmt: skip
    return Recording(
        folder=folder,
        day=day,
        call_id=_text(data.get("call_id")),
        session_id=_text(data.get("session_id")),
        state=_text(data.get("state")) or INCOMPLETE,
        started_at=_text(data.get("started_at")),
        started_at_unix=_number(data.get("started_at_unix")),
        ended_at=_text(data.get("ended_at")),
        duration_s=_number(data.get("duration_s")),
        format=_text(data.get("format")),
        participants=_participants(data.get("participants")),
        legs=tuple(legs),
        combined=combined,
        has_manifest=True,
    )


def summary_without_manifest(folder: Path, day: str, live: LiveSession | None) -> Recording:
    return Recording(
        folder=folder, day=day, call_id=live.call_id if live else None, session_id=live.session_id if live else None,
        state=RECORDING if live else INCOMPLETE, started_at=iso_time(live.started_at) if live else None,
        started_at_unix=live.started_at if live else None, ended_at=None, duration_s=None, format=None,
        participants=live.participants if live else (), legs=(), combined=None, has_manifest=False,
    )  # fmt: skip
