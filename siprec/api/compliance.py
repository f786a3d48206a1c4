"""GDPR over REST: what the server holds, and export or erasure of a data subject's recordings.

- GET /api/compliance/status (READ): recordings held (count, in progress, bytes, oldest and newest), retention
  and encryption state, the GDPR routes. The totals come from a walk of recording.dir, kept up to 30 s.
- POST /api/compliance/gdpr/export (WRITE, body {call_id | participant}): a ZIP, streamed, of every file of every
  matching recording (manifest, metadata XML, transcript.json, audio) under recordings/<date>/<folder>/, plus
  index.json (what was matched, each member's size and SHA-256, files that vanished meanwhile).
- POST /api/compliance/gdpr/erase (WRITE, body {call_id | participant, confirm: true}, or dry_run: true to see
  what would go): removes the matching recording folders entirely, refuses with 409 SESSION_ACTIVE while any of
  them is live or being finalised (its .inprogress marker exists: recording, or FLAC transcoding after the call; or
  STT still reads its legs or has to write its transcript.json),
  publishes `recording_erased` per folder and writes one audit line per folder (logger siprec.audit).

Selecting a data subject: `call_id` (every recording of that Call-ID, re-used ones included) and/or `participant`,
an AOR or phone number matched exactly against the participants' AORs (recording_index.participant_key: scheme,
URI parameters and case ignored; phone numbers compared by their digits). Both given: recordings matching both.
Substring matching is only for browsing (/api/recordings?participant=); an erasure never goes by substring.

Export is READ-level data, but all of a person's calls in one archive: it asks for WRITE-level credentials, like
erasure. Seed compatibility: the seed's POST {"call_id"} works for both routes (its export wrote to a server-side
directory and answered the path; this one streams the archive to the caller).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from siprec.api.context import ApiContext
from siprec.api.errors import ApiError
from siprec.api.recording_index import index_for
from siprec.api.recording_model import ErasedFolder, LiveSession, Recording
from siprec.api.recordings import live_sessions
from siprec.api.routing import BODY, Access, Reply, RouteTable, api_context, json_reply
from siprec.api.zip_stream import ZipStream
from siprec.events.types import RecordingErased
from siprec.recording.manifest import iso_time

__all__ = ["routes"]

log = logging.getLogger("siprec.api.compliance")
audit = logging.getLogger("siprec.audit")

routes = RouteTable("compliance", "GDPR: what is held, export and erasure of a data subject's recordings")

USAGE_MAX_AGE_S = 30.0


# --- shapes ----------------------------------------------------------------------------------------------------


# "At least one of", for the OpenAPI document (the model validator enforces it): a property present and not null.
_GIVEN = {
    name: {"required": [name], "properties": {name: {"type": "string"}}}
    for name in ("call_id", "participant")
}
_TRUE = {name: {"required": [name], "properties": {name: {"const": True}}} for name in ("confirm", "dry_run")}


class GdprSubject(BaseModel):
    """Whose recordings: a Call-ID, a participant (AOR or phone number, matched exactly), or both."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [_GIVEN["call_id"], _GIVEN["participant"]]})

    call_id: str | None = Field(None, min_length=1, max_length=1024, description="A SIP Call-ID")
    participant: str | None = Field(
        None, min_length=1, max_length=256,
        description="An AOR (sip:alice@example.com) or a phone number (+1 555 010 9999), matched exactly",
    )  # fmt: skip

    @model_validator(mode="after")
    def _one_given(self) -> GdprSubject:
        if self.call_id is None and self.participant is None:
            raise ValueError("give call_id and/or participant")
        return self


class GdprEraseRequest(GdprSubject):
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {"anyOf": [_GIVEN["call_id"], _GIVEN["participant"]]},
                {"anyOf": [_TRUE["confirm"], _TRUE["dry_run"]]},
            ]
        }
    )

    confirm: bool = Field(False, description="Must be true to erase")
    dry_run: bool = Field(False, description="Only report what would be erased")


class ComplianceRecordings(BaseModel):
    count: int = Field(description="Recording folders held")
    in_progress: int = Field(description="Sessions recording or being finalised")
    days: int = Field(description="Date folders")
    total_bytes: int
    oldest_started_at: str | None
    newest_started_at: str | None
    computed_at: str = Field(description="When these totals were computed (kept up to 30 s)")


class ComplianceRetention(BaseModel):
    enabled: bool
    days: int | None
    policy: str


class ComplianceEncryption(BaseModel):
    at_rest: bool = Field(description="Recordings encrypted on disk (recording.encryption)")
    at_rest_note: str
    srtp: str
    sip_tls: bool


class ComplianceGdpr(BaseModel):
    export: str
    erase: str
    access: str = Field(description="Credentials the export and erase routes ask for")
    participant_matching: str
    audit_logger: str


class ComplianceStatus(BaseModel):
    """What the server holds and how it is protected."""

    recordings: ComplianceRecordings
    retention: ComplianceRetention
    encryption: ComplianceEncryption
    gdpr: ComplianceGdpr


class ErasedRecording(BaseModel):
    call_id: str | None
    session_id: str | None
    folder: str = Field(description="<date>/<folder>, relative to recording.dir")
    files: list[str]
    bytes: int


class GdprEraseResult(BaseModel):
    """What was erased (or, with dry_run, would be)."""

    erased: bool = Field(description="False for a dry run")
    dry_run: bool
    recordings: list[ErasedRecording]
    files: int
    bytes: int


# --- helpers ---------------------------------------------------------------------------------------------------


def actor(request: web.Request) -> str:
    """Who asked, for the audit line: the JWT subject, "api-key", or "anonymous" (never the key itself)."""
    ctx = api_context(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token.count(".") == 2 and ctx.auth.jwt_enabled:
        claims = ctx.auth.decode_jwt(token)
        if claims is not None:
            return f"jwt:{claims.get('sub', '?')}"
    if request.headers.get("X-API-Key") or request.query.get("api_key") or token:
        return "api-key"
    return "anonymous"


async def _select(ctx: ApiContext, subject: GdprSubject, live: dict[Path, LiveSession]) -> list[Recording]:
    index = index_for(ctx)
    found = await asyncio.to_thread(
        index.select, live, call_id=subject.call_id, participant=subject.participant
    )
    if not found:
        details = subject.model_dump(include={"call_id", "participant"}, exclude_none=True)
        raise ApiError(404, "RECORDING_NOT_FOUND", "no recording matches", details)
    return found


def _subject_text(subject: GdprSubject) -> str:
    parts = [
        f"{k}={v!r}" for k, v in (("call_id", subject.call_id), ("participant", subject.participant)) if v
    ]
    return " ".join(parts)


# --- routes ----------------------------------------------------------------------------------------------------


@routes.get(
    "/api/compliance/status", summary="What recordings are held, retention and encryption", access=Access.READ,
    responses={200: ComplianceStatus},
)  # fmt: skip
async def compliance_status(request: web.Request) -> web.StreamResponse:
    ctx = api_context(request)
    config = ctx.config
    index = index_for(ctx)
    live = live_sessions(ctx)
    stt_busy = ctx.stt.busy_folders() if ctx.stt is not None else set()

    def gather() -> tuple[Any, int]:
        # live sessions count at once (a media worker writes the marker just after the 200 OK); the markers add
        # the sessions being finalised (FLAC), STT the ones it still transcribes
        busy = index.marked_folders() | {folder.resolve() for folder in live} | stt_busy
        return index.usage(live, max_age_s=USAGE_MAX_AGE_S), len(busy)

    usage, in_progress = await asyncio.to_thread(gather)
    return json_reply(
        ComplianceStatus(
            recordings=ComplianceRecordings(
                count=usage.recordings,
                in_progress=in_progress,
                days=usage.days,
                total_bytes=usage.bytes,
                oldest_started_at=iso_time(usage.oldest_started_at),
                newest_started_at=iso_time(usage.newest_started_at),
                computed_at=iso_time(usage.computed_at) or "",
            ),
            retention=ComplianceRetention(
                enabled=False,
                days=None,
                policy="no automatic retention: recordings are kept until erased (POST /api/compliance/gdpr/erase)",
            ),
            encryption=ComplianceEncryption(
                at_rest=config.recording.encryption.enabled,
                at_rest_note="encryption at rest is not implemented; recording.encryption.enabled is refused at start",
                srtp="SRTP (SDES) is used when the SRC offers it",
                sip_tls=bool(config.sip.tls_port),
            ),
            gdpr=ComplianceGdpr(
                export="/api/compliance/gdpr/export",
                erase="/api/compliance/gdpr/erase",
                access="write",
                participant_matching="exact AOR (scheme, parameters and case ignored) or phone number digits",
                audit_logger=audit.name,
            ),
        )  # fmt: skip
    )


_ZIP = {200: Reply("A ZIP archive (streamed): recordings/<date>/<folder>/<file> and index.json", "application/zip",
                   {"type": "string", "format": "binary"}, {"Content-Disposition": "attachment; filename=..."})}  # fmt: skip


@routes.post(
    "/api/compliance/gdpr/export", summary="Export a data subject's recordings as a ZIP",
    access=Access.WRITE, body=GdprSubject, responses=_ZIP,
)  # fmt: skip
async def gdpr_export(request: web.Request) -> web.StreamResponse:
    """Streams the archive; 404 RECORDING_NOT_FOUND when nothing matches (checked before the first byte)."""
    subject: GdprSubject = request[BODY]
    ctx = api_context(request)
    index = index_for(ctx)
    live = live_sessions(ctx)
    found = await _select(ctx, subject, live)
    listing = await asyncio.to_thread(lambda: [(rec, index.files(rec)) for rec in found])
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    audit.info(
        "GDPR export %s: %d recording(s), %d file(s) by %s from %s", _subject_text(subject), len(found),
        sum(len(files) for _, files in listing), actor(request), request.remote,
    )  # fmt: skip
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="gdpr-export-{stamp}.zip"',
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)
    archive = ZipStream(response)
    try:
        await _write_archive(archive, listing, subject)
    except ConnectionResetError:
        log.info("GDPR export stopped after %d bytes: the client went away", archive.bytes_out)
        return response  # aiohttp finishes it quietly on the closed connection
    log.info("GDPR export sent: %d member(s), %d bytes", len(archive.members), archive.bytes_out)
    return response


async def _write_archive(
    archive: ZipStream, listing: list[tuple[Recording, list[tuple[str, int]]]], subject: GdprSubject
) -> None:
    """Every listed file under recordings/<date>/<folder>/, then index.json, then the central directory."""
    recordings: list[dict[str, Any]] = []
    missing: list[str] = []
    for rec, files in listing:
        members = []
        for name, _ in files:
            arcname = f"recordings/{rec.relative}/{name}"
            member = await archive.add_file(arcname, rec.folder / name)
            if member is None:
                missing.append(arcname)
            else:
                members.append({"name": member.name, "size": member.size, "sha256": member.sha256})
        recordings.append({
            "call_id": rec.call_id, "session_id": rec.session_id, "state": rec.state, "started_at": rec.started_at,
            "folder": rec.relative, "participants": [vars(p) for p in rec.participants], "files": members,
        })  # fmt: skip
    index_doc = {
        "generated_at": iso_time(time.time()),
        "subject": subject.model_dump(include={"call_id", "participant"}, exclude_none=True),
        "recordings": recordings,
        "missing": missing,
    }
    await archive.add_bytes("index.json", json.dumps(index_doc, indent=2, ensure_ascii=False).encode("utf-8"))
    await archive.finish()


@routes.post(
    "/api/compliance/gdpr/erase", summary="Erase a data subject's recordings", access=Access.WRITE,
    body=GdprEraseRequest, responses={200: GdprEraseResult},
)  # fmt: skip
async def gdpr_erase(request: web.Request) -> web.StreamResponse:
    """Removes every matching recording folder with all its files. 400 CONFIRMATION_REQUIRED without
    confirm: true (unless dry_run), 404 RECORDING_NOT_FOUND when nothing matches, 409 SESSION_ACTIVE (nothing
    erased) while any match is still recording or being finalised."""
    ctx = api_context(request)
    body: GdprEraseRequest = request[BODY]
    if not body.confirm and not body.dry_run:
        raise ApiError(400, "CONFIRMATION_REQUIRED", 'erasure needs "confirm": true (or "dry_run": true)')
    index = index_for(ctx)
    live = live_sessions(ctx)
    found = await _select(ctx, body, live)
    marked = await asyncio.to_thread(index.marked_folders)
    if ctx.stt is not None:  # post-call transcription still reading the legs or writing transcript.json
        marked |= ctx.stt.busy_folders()
    busy = [r for r in found if r.folder in live or r.folder.resolve() in marked]
    if busy:
        raise ApiError(
            409, "SESSION_ACTIVE", "a matching recording is still recording or being finalised; nothing was erased",
            {"call_ids": sorted({r.call_id or "" for r in busy}), "folders": [r.relative for r in busy]},
        )  # fmt: skip
    if body.dry_run:
        listing = await asyncio.to_thread(lambda: [(rec, index.files(rec, hidden=True)) for rec in found])
        views = [
            _erased_view(rec, tuple(n for n, _ in files), sum(s for _, s in files)) for rec, files in listing
        ]
        return json_reply(_result(views, erased=False))
    who, remote = actor(request), request.remote
    views = []
    for rec in found:
        try:
            done: ErasedFolder = await asyncio.to_thread(index.erase, rec)
        except OSError as exc:
            log.error("GDPR erase of %s failed: %s", rec.relative, exc, extra={"call_id": rec.call_id})
            raise ApiError(
                500, "ERASE_FAILED", "a recording folder could not be removed entirely",
                {"folder": rec.relative, "erased": [v.folder for v in views]},
            ) from None  # fmt: skip
        views.append(_erased_view(rec, done.files, done.bytes))
        audit.info(
            "GDPR erase %s: erased %s (session %s): %d file(s), %d bytes, by %s from %s", _subject_text(body),
            rec.relative, rec.session_id, len(done.files), done.bytes, who, remote, extra={"call_id": rec.call_id},
        )  # fmt: skip
        ctx.bus.publish(
            RecordingErased(rec.call_id, rec.session_id, rec.relative, done.files, done.bytes, reason="gdpr")
        )
    return json_reply(_result(views, erased=True))


def _erased_view(rec: Recording, files: tuple[str, ...], size: int) -> ErasedRecording:
    return ErasedRecording(
        call_id=rec.call_id, session_id=rec.session_id, folder=rec.relative, files=list(files), bytes=size
    )


def _result(views: list[ErasedRecording], *, erased: bool) -> GdprEraseResult:
    return GdprEraseResult(
        erased=erased, dry_run=not erased, recordings=views, files=sum(len(v.files) for v in views),
        bytes=sum(v.bytes for v in views),
    )  # fmt: skip
