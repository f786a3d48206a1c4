"""Recordings on disk over REST (CONTRACT.md "HTTP side server", docs/recording.md for the folder and manifest):

- GET /api/recordings: newest first, `limit`/`offset` paging, filters `from`/`to` (a UTC date, or an RFC 3339
  date-time), `participant` (case-insensitive substring of a participant's id, AOR or name) and `state`.
- GET /api/recordings/{call_id}: the manifest.json of the call's recording.
- GET and HEAD /api/recordings/{call_id}/audio/{leg-n|combined}: the audio file (audio/wav, or audio/flac when the
  manifest names FLAC files), single byte ranges, ETag / Last-Modified and conditional requests (byte_ranges).

{call_id} is the SIP Call-ID, any characters ("/" percent-encoded as %2F). It never becomes a path: it is looked up
through the recorder's own folder-name sanitising and the manifest's call_id must equal it (recording_index). A
Call-ID re-used on one day has several recordings: the newest is served unless `?session_id=` names one; every
link in a listing carries its session_id. Sessions still recording are listed with state "recording"; their audio
can be fetched while it grows (each download is a consistent prefix; the ETag changes as the file grows).

Paging by offset over a directory tree is not a snapshot: recordings that start or are erased between two requests
shift the pages. `has_more`/`next_offset` say whether to ask again.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from siprec.api.byte_ranges import send_file
from siprec.api.context import ApiContext
from siprec.api.errors import ApiError, bad_request, not_found
from siprec.api.recording_index import index_for
from siprec.api.recording_model import (
    AUDIO_TYPES,
    CombinedFile,
    LegFile,
    LiveSession,
    Recording,
    RecordingFilter,
)
from siprec.api.routing import QUERY, Access, Reply, RouteTable, api_context, json_reply

__all__ = ["live_sessions", "routes"]

routes = RouteTable("recordings", "Recorded calls on disk: listing, manifests and audio downloads")

MAX_PAGE = 500
MAX_OFFSET = 1_000_000
MAX_CALL_ID = 1024
_CALL_ID = {"type": "string", "minLength": 1, "maxLength": MAX_CALL_ID}
_LEG = {"type": "string", "pattern": "^(leg-[0-9]+|combined)$"}
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
STATES = Literal["recording", "completed", "interrupted", "incomplete"]


def _when(value: Any) -> Any:
    """A query date: YYYY-MM-DD is a whole UTC day, anything else must be an RFC 3339 / ISO 8601 date-time."""
    if isinstance(value, str):
        text = value.strip()
        if _DAY.match(text):
            return date.fromisoformat(text)
        return datetime.fromisoformat(text)  # ValueError -> 400 VALIDATION_ERROR
    return value


When = Annotated[date | datetime, BeforeValidator(_when)]


# --- shapes ----------------------------------------------------------------------------------------------------


class RecordingsQuery(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    limit: int = Field(50, ge=1, le=MAX_PAGE, description="Recordings per page")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Recordings to skip (newest first)")
    from_: When | None = Field(
        None, alias="from",
        description="Started on or after: a UTC date (YYYY-MM-DD, from its start) or an RFC 3339 date-time",
    )  # fmt: skip
    to: When | None = Field(
        None, description="Started on or before: a UTC date (YYYY-MM-DD, to its end) or an RFC 3339 date-time"
    )
    participant: str | None = Field(
        None, min_length=1, max_length=256,
        description="Case-insensitive substring of a participant's id, AOR or name",
    )  # fmt: skip
    state: STATES | None = Field(None, description="Only recordings in this state")


class RecordingSelector(BaseModel):
    session_id: str | None = Field(
        None, min_length=1, max_length=128,
        description="Which recording of a re-used Call-ID (default: the newest)",
    )  # fmt: skip


class RecordingParticipant(BaseModel):
    id: str
    aor: str | None = None
    name: str | None = None


class RecordingLeg(BaseModel):
    index: int = Field(description="SDP m-line index (leg-<index> in the audio URL)")
    label: str | None
    file: str
    codec: str | None
    duration_s: float | None
    url: str | None = Field(description="The audio download (relative URL)")


class RecordingCombined(BaseModel):
    file: str
    channels: int | None
    sample_rate: int | None
    duration_s: float | None
    url: str | None


class RecordingSummary(BaseModel):
    """One recording folder."""

    call_id: str | None = Field(description="None only for an incomplete folder without manifest")
    session_id: str | None
    state: str = Field(description="recording | completed | interrupted | incomplete")
    started_at: str | None = Field(description="RFC 3339 UTC")
    ended_at: str | None
    duration_s: float | None
    format: str | None = Field(description="wav | flac")
    date: str = Field(description="The date folder (UTC)")
    folder: str = Field(description="<date>/<folder>, relative to recording.dir")
    participants: list[RecordingParticipant]
    legs: list[RecordingLeg]
    combined: RecordingCombined | None
    url: str | None = Field(description="The manifest (relative URL)")


class RecordingList(BaseModel):
    """A page of recordings, newest first."""

    count: int = Field(description="Recordings on this page")
    limit: int
    offset: int
    has_more: bool
    next_offset: int | None = Field(description="The offset of the next page, None on the last")
    recordings: list[RecordingSummary]


class RecordingManifest(BaseModel):
    """A recording's manifest.json as written by the recorder (docs/recording.md); unknown fields are kept."""

    model_config = ConfigDict(extra="allow")

    call_id: str
    session_id: str | None = None
    state: str
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    format: str | None = None
    participants: list[dict[str, Any]] = Field(default_factory=list)
    legs: list[dict[str, Any]] = Field(default_factory=list)
    combined: dict[str, Any] | None = None
    pauses: list[dict[str, Any]] = Field(default_factory=list)
    metadata_versions: int | None = None
    transcript_file: str | None = None


# --- views -----------------------------------------------------------------------------------------------------


def live_sessions(ctx: ApiContext) -> dict[Path, LiveSession]:
    """The live sessions by the folder they record into (read on the event loop's thread)."""
    return {
        Path(s.folder): LiveSession(s.call_id, s.session_id, s.started_at, s.participant_infos())
        for s in ctx.sessions.sessions
        if not s.ended
    }


def recording_url(rec: Recording, suffix: str = "") -> str | None:
    if rec.call_id is None:
        return None
    url = f"/api/recordings/{quote(rec.call_id, safe='')}{suffix}"
    return url + (f"?session_id={quote(rec.session_id, safe='')}" if rec.session_id else "")


def summary_view(rec: Recording) -> RecordingSummary:
    def leg_url(entry: LegFile | CombinedFile, selector: str) -> str | None:
        return recording_url(rec, f"/audio/{selector}") if rec.audio(selector) is entry else None

    combined = rec.combined
    return RecordingSummary(
        call_id=rec.call_id, session_id=rec.session_id, state=rec.state, started_at=rec.started_at,
        ended_at=rec.ended_at, duration_s=rec.duration_s, format=rec.format, date=rec.day, folder=rec.relative,
        participants=[RecordingParticipant(id=p.id, aor=p.aor, name=p.name) for p in rec.participants],
        legs=[
            RecordingLeg(index=leg.index, label=leg.label, file=leg.file, codec=leg.codec,
                         duration_s=leg.duration_s, url=leg_url(leg, f"leg-{leg.index}"))
            for leg in rec.legs
        ],
        combined=None if combined is None else RecordingCombined(
            file=combined.file, channels=combined.channels, sample_rate=combined.sample_rate,
            duration_s=combined.duration_s, url=leg_url(combined, "combined"),
        ),
        url=recording_url(rec),
    )  # fmt: skip


def _since(value: date | datetime | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(value, time.min, UTC)


def _until(value: date | datetime | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(value, time.min, UTC) + timedelta(days=1) - timedelta(microseconds=1)


def request_call_id(request: web.Request) -> str:
    call_id = request.match_info["call_id"]
    if len(call_id) > MAX_CALL_ID:
        raise bad_request("INVALID_CALL_ID", f"a Call-ID is at most {MAX_CALL_ID} characters")
    return call_id


async def find_recording(ctx: ApiContext, call_id: str, session_id: str | None) -> Recording:
    index = index_for(ctx)
    found = await asyncio.to_thread(index.find, call_id, live_sessions(ctx), session_id=session_id)
    if not found:
        details = {"call_id": call_id, **({"session_id": session_id} if session_id else {})}
        raise ApiError(404, "RECORDING_NOT_FOUND", "no recording of this Call-ID", details)
    return found[0]


# --- routes ----------------------------------------------------------------------------------------------------


@routes.get(
    "/api/recordings", summary="Recordings on disk, newest first (paged, filtered)", access=Access.READ,
    query=RecordingsQuery, responses={200: RecordingList},
)  # fmt: skip
async def list_recordings(request: web.Request) -> web.StreamResponse:
    ctx = api_context(request)
    query: RecordingsQuery = request[QUERY]
    flt = RecordingFilter(
        since=_since(query.from_), until=_until(query.to), participant=query.participant, state=query.state
    )
    index = index_for(ctx)
    found, more = await asyncio.to_thread(index.page, flt, query.offset, query.limit, live_sessions(ctx))
    return json_reply(
        RecordingList(
            count=len(found),
            limit=query.limit,
            offset=query.offset,
            has_more=more,
            next_offset=query.offset + len(found) if more else None,
            recordings=[summary_view(r) for r in found],
        )  # fmt: skip
    )


@routes.get(
    "/api/recordings/{call_id}", summary="One recording's manifest", access=Access.READ,
    query=RecordingSelector, responses={200: RecordingManifest}, path_schemas={"call_id": _CALL_ID},
)  # fmt: skip
async def get_recording(request: web.Request) -> web.StreamResponse:
    """The manifest.json of the newest recording of this Call-ID (or of ?session_id=). 404 RECORDING_NOT_FOUND
    also while a session has just started and its first manifest is not written yet (within half a second)."""
    ctx = api_context(request)
    query: RecordingSelector = request[QUERY]
    call_id = request_call_id(request)
    rec = await find_recording(ctx, call_id, query.session_id)
    manifest = await asyncio.to_thread(index_for(ctx).manifest, rec)
    if manifest is None:
        raise not_found("RECORDING_NOT_FOUND", "the recording has no manifest (yet)", call_id=call_id,
                        state=rec.state)  # fmt: skip
    try:
        return json_reply(RecordingManifest.model_validate(manifest))
    except ValidationError:
        raise ApiError(500, "MANIFEST_INVALID", "the recording's manifest.json is damaged",
                       {"folder": rec.relative}) from None  # fmt: skip


_AUDIO_HEADERS = {
    "Accept-Ranges": "bytes",
    "ETag": "Entity tag of the file (changes while a live recording grows)",
    "Last-Modified": "The file's modification time",
    "Content-Disposition": "inline; filename=<folder>-<file>",
}
_AUDIO_RESPONSES: dict[int, Reply] = {
    200: Reply("The whole file: audio/wav, or audio/flac when recording.format is flac", "audio/*",
               {"type": "string", "format": "binary"}, _AUDIO_HEADERS),
    206: Reply("One byte range of the file (Range: bytes=...)", "audio/*", {"type": "string", "format": "binary"},
               {**_AUDIO_HEADERS, "Content-Range": "bytes <first>-<last>/<size>"}),
}  # fmt: skip


async def recording_audio(request: web.Request) -> web.StreamResponse:
    """The leg's (leg-<n>: the first file of m-line n) or the combined file's audio. Single byte ranges (206;
    416 with Content-Range bytes */size when none is satisfiable), If-Range, If-None-Match / If-Modified-Since
    (304) and If-Match / If-Unmodified-Since (412). 404 LEG_NOT_FOUND for a leg the recording does not have."""
    ctx = api_context(request)
    query: RecordingSelector = request[QUERY]
    call_id = request_call_id(request)
    selector = request.match_info["leg"]
    rec = await find_recording(ctx, call_id, query.session_id)
    entry = rec.audio(selector)
    if entry is None:
        available = [f"leg-{i}" for i in sorted({leg.index for leg in rec.legs})]
        available += ["combined"] if rec.combined else []
        raise not_found("LEG_NOT_FOUND", "the recording has no such leg", leg=selector, available=available)
    path = await asyncio.to_thread(index_for(ctx).audio_path, rec, entry.file)
    if path is None:
        raise not_found(
            "AUDIO_NOT_FOUND", "the file is listed but not on disk", leg=selector, file=entry.file
        )
    return await send_file(
        request, path, content_type=AUDIO_TYPES.get(path.suffix, "application/octet-stream"),
        filename=f"{rec.name}-{entry.file}", extra_headers={"Cache-Control": "private, no-cache"},
    )  # fmt: skip


_AUDIO_PATH = "/api/recordings/{call_id}/audio/{leg}"
routes.get(
    _AUDIO_PATH, summary="A recording's audio (Range supported)", access=Access.READ, query=RecordingSelector,
    responses=_AUDIO_RESPONSES, path_schemas={"call_id": _CALL_ID, "leg": _LEG}, operation_id="recording_audio",
)(recording_audio)  # fmt: skip
routes.route(
    "HEAD", _AUDIO_PATH, summary="Headers of a recording's audio download", access=Access.READ,
    query=RecordingSelector, responses={200: Reply("As GET, without the body", "audio/*", {}, _AUDIO_HEADERS)},
    path_schemas={"call_id": _CALL_ID, "leg": _LEG}, operation_id="recording_audio_head",
)(recording_audio)  # fmt: skip
