"""Live sessions over REST: GET /api/sessions (?id=), /api/sessions/stats, and pause/resume (CONTRACT.md).

`{id}` in the paths is the SIP Call-ID; `session_id` in PauseStatus is that Call-ID too (the seed API's shape),
while `session_id` in a Session is the recording session's own UUID (the manifest's).

pause_resume.enabled false: every pause route answers 404 PAUSE_RESUME_DISABLED (as a server without the
feature would, but saying why). pause_resume.per_session false: the per-session pause/resume answer 403
PER_SESSION_DISABLED; pause-all, resume-all and the status routes stay available.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, RootModel

from siprec.api.context import ApiContext
from siprec.api.errors import ApiError, not_found
from siprec.api.routing import BODY, QUERY, Access, RouteTable, api_context, json_reply
from siprec.recording.manifest import iso_time
from siprec.srs.session import RecordingSession

log = logging.getLogger("siprec.api.sessions")

routes = RouteTable("sessions", "Live recording sessions, pause and resume")

MAX_AUTO_RESUME_S = 24 * 3600.0
_CALL_ID = {"type": "string", "minLength": 1, "maxLength": 1024}


# --- shapes ----------------------------------------------------------------------------------------------------


class SessionsQuery(BaseModel):
    id: str | None = Field(None, min_length=1, max_length=1024, description="A Call-ID: only that session")


class Participant(BaseModel):
    id: str
    aor: str | None = None
    name: str | None = None


class SessionLeg(BaseModel):
    index: int = Field(description="SDP m-line index")
    label: str | None = None
    state: str = Field(description="open | held | closed")
    codec: str
    sample_rate: int
    participant: Participant | None = None


class PauseStatus(BaseModel):
    """Pause state of one session."""

    session_id: str = Field(description="The SIP Call-ID (the {id} of the pause routes)")
    is_paused: bool = Field(description="recording_paused or transcription_paused")
    recording_paused: bool = Field(
        description="No audio is being written (API pause, or every stream on hold)"
    )
    transcription_paused: bool = Field(description="Live transcription skips this session")
    paused_at: str | None = Field(description="RFC 3339 UTC time the pause in force began")
    pause_duration: float = Field(description="Seconds since paused_at (0 when not paused)")
    auto_resume_at: str | None = Field(description="RFC 3339 UTC time the API pause lifts itself")
    reasons: list[str] = Field(description="Session-wide pause reasons in force: api, hold")


class Session(BaseModel):
    """One live recording session."""

    call_id: str
    session_id: str = Field(description="The recording session's UUID (as in manifest.json)")
    state: str = Field(description="active | paused")
    created_at: str = Field(description="RFC 3339 UTC")
    duration_s: float
    siprec: bool = Field(description="False for a plain INVITE recorded without metadata")
    participants: list[str] = Field(
        description="Participant AORs (else names or ids), as the seed API lists them"
    )
    participant_details: list[Participant]
    recording_path: str = Field(
        description="combined.wav when recording.combine_legs, else the session folder"
    )
    folder: str
    legs: list[SessionLeg]
    pause: PauseStatus
    analytics: dict[str, Any] = Field(description="Per-provider live analytics (rtp counters, sentiment...)")


class SessionList(BaseModel):
    """Live sessions."""

    count: int
    sessions: list[Session]


class SessionStats(BaseModel):
    """Aggregate counters of the live sessions and of the calls since start."""

    active_sessions: int = Field(description="Live sessions")
    paused_sessions: int = Field(description="Live sessions whose recording is paused")
    transcription_paused_sessions: int
    siprec_sessions: int
    legs: int = Field(description="Open or held legs of the live sessions")
    by_state: dict[str, int]
    by_codec: dict[str, int] = Field(description="Live legs by codec")
    calls_started: int = Field(description="Sessions started since the server started")
    calls_ended: int
    calls_by_outcome: dict[str, int] = Field(
        description="Ended sessions by reason (bye, cancel, rtp-timeout...)"
    )
    uptime_s: float


class PauseRequest(BaseModel):
    pause_recording: bool = Field(True, description="Stop writing audio on every leg")
    pause_transcription: bool = Field(True, description="Stop live transcription")
    auto_resume_after: float | None = Field(
        None, gt=0, le=MAX_AUTO_RESUME_S, description="Seconds after which the pause lifts itself"
    )


class ResumeRequest(BaseModel):
    resume_recording: bool = Field(True, description="Lift the API recording pause")
    resume_transcription: bool = Field(True, description="Lift the transcription pause")


class PauseStatusMap(RootModel[dict[str, PauseStatus]]):
    """Pause state of every live session, by Call-ID."""


class PauseAllResult(BaseModel):
    """The outcome of pause-all / resume-all."""

    message: str
    changed: int = Field(description="Sessions this request changed")
    statuses: dict[str, PauseStatus]


# --- views -----------------------------------------------------------------------------------------------------


def pause_status(session: RecordingSession, wall: float) -> PauseStatus:
    since = session.paused_since
    return PauseStatus(
        session_id=session.call_id,
        is_paused=session.recording_paused or session.transcription_paused,
        recording_paused=session.recording_paused,
        transcription_paused=session.transcription_paused,
        paused_at=iso_time(since),
        pause_duration=round(max(0.0, wall - since), 3) if since is not None else 0.0,
        auto_resume_at=iso_time(session.auto_resume_at),
        reasons=list(session.pause_reasons),
    )


def session_view(ctx: ApiContext, session: RecordingSession, wall: float) -> Session:
    participants = [Participant(id=p.id, aor=p.aor, name=p.name) for p in session.participant_infos()]
    legs = [
        SessionLeg(
            index=leg.index,
            label=leg.label,
            state=leg.state.value,
            codec=leg.stream.codec.encoding,
            sample_rate=leg.stream.codec.sample_rate,
            participant=Participant(id=leg.participant.id, aor=leg.participant.aor, name=leg.participant.name)
            if leg.participant
            else None,
        )
        for leg in session.live_legs
    ]
    folder = session.folder
    path = folder / "combined.wav" if ctx.config.recording.combine_legs else folder
    return Session(
        call_id=session.call_id,
        session_id=session.session_id,
        state=session.state.value,
        created_at=iso_time(session.started_at) or "",
        duration_s=round(session.duration(wall), 3),
        siprec=session.siprec,
        participants=[p.aor or p.name or p.id for p in participants],
        participant_details=participants,
        recording_path=str(path),
        folder=str(folder),
        legs=legs,
        pause=pause_status(session, wall),
        analytics=_analytics(ctx, session),
    )


def _analytics(ctx: ApiContext, session: RecordingSession) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, provider in sorted(ctx.session_analytics.items()):
        try:
            out[name] = dict(provider(session))
        except Exception:
            log.exception("session analytics provider %s failed", name, extra={"call_id": session.call_id})
    return out


def _live(ctx: ApiContext) -> list[RecordingSession]:
    return [s for s in ctx.sessions.sessions if not s.ended]


def _session(ctx: ApiContext, call_id: str) -> RecordingSession:
    session = ctx.sessions.session(call_id)
    if session is None or session.ended:
        raise not_found("SESSION_NOT_FOUND", "no live session with this Call-ID", call_id=call_id)
    return session


def _pause_enabled(ctx: ApiContext, *, per_session: bool = False) -> None:
    config = ctx.config.pause_resume
    if not config.enabled:
        raise ApiError(
            404, "PAUSE_RESUME_DISABLED", "the pause/resume API is disabled (pause_resume.enabled)"
        )
    if per_session and not config.per_session:
        raise ApiError(
            403, "PER_SESSION_DISABLED", "pausing single sessions is disabled (pause_resume.per_session); "
            "use pause-all / resume-all",
        )  # fmt: skip


# --- routes ----------------------------------------------------------------------------------------------------


@routes.get(
    "/api/sessions", summary="Live sessions (?id=<Call-ID> for one)", query=SessionsQuery,
    responses={200: SessionList},
)  # fmt: skip
async def list_sessions(request: web.Request) -> web.StreamResponse:
    ctx = api_context(request)
    query: SessionsQuery = request[QUERY]
    wall = ctx.wall_clock()
    sessions = [_session(ctx, query.id)] if query.id is not None else _live(ctx)
    views = [session_view(ctx, s, wall) for s in sorted(sessions, key=lambda s: s.started_at)]
    return json_reply(SessionList(count=len(views), sessions=views))


@routes.get("/api/sessions/stats", summary="Aggregate session counters", responses={200: SessionStats})
async def session_stats(request: web.Request) -> web.StreamResponse:
    ctx = api_context(request)
    live = _live(ctx)
    legs = [leg for s in live for leg in s.live_legs]
    calls = ctx.calls
    return json_reply(
        SessionStats(
            active_sessions=len(live),
            paused_sessions=sum(1 for s in live if s.recording_paused),
            transcription_paused_sessions=sum(1 for s in live if s.transcription_paused),
            siprec_sessions=sum(1 for s in live if s.siprec),
            legs=len(legs),
            by_state=dict(Counter(s.state.value for s in live)),
            by_codec=dict(Counter(leg.stream.codec.encoding for leg in legs)),
            calls_started=calls.started,
            calls_ended=calls.ended_total,
            calls_by_outcome=dict(calls.ended),
            uptime_s=round(max(0.0, ctx.wall_clock() - ctx.started_at), 3),
        )
    )


@routes.get(
    "/api/sessions/pause-status", summary="Pause state of every live session", access=Access.PAUSE,
    responses={200: PauseStatusMap},
)  # fmt: skip
async def all_pause_status(request: web.Request) -> web.StreamResponse:
    ctx = api_context(request)
    _pause_enabled(ctx)
    wall = ctx.wall_clock()
    return json_reply(PauseStatusMap({s.call_id: pause_status(s, wall) for s in _live(ctx)}))


@routes.post(
    "/api/sessions/pause-all", summary="Pause every live session", access=Access.PAUSE, body=PauseRequest,
    body_required=False, responses={200: PauseAllResult},
)  # fmt: skip
async def pause_all(request: web.Request) -> web.StreamResponse:
    ctx = api_context(request)
    _pause_enabled(ctx)
    body: PauseRequest = request[BODY]
    changed = sum(_pause(ctx, session, body) for session in _live(ctx))
    log.info("pause-all: %d session(s) changed (recording=%s, transcription=%s)", changed,
             body.pause_recording, body.pause_transcription)  # fmt: skip
    return _all_result(ctx, "All sessions paused", changed)


@routes.post(
    "/api/sessions/resume-all", summary="Resume every live session", access=Access.PAUSE, body=ResumeRequest,
    body_required=False, responses={200: PauseAllResult},
)  # fmt: skip
async def resume_all(request: web.Request) -> web.StreamResponse:
    ctx = api_context(request)
    _pause_enabled(ctx)
    body: ResumeRequest = request[BODY]
    changed = sum(_resume(ctx, session, body) for session in _live(ctx))
    log.info("resume-all: %d session(s) changed", changed)
    return _all_result(ctx, "All sessions resumed", changed)


@routes.post(
    "/api/sessions/{id}/pause", summary="Pause one session's recording and/or transcription",
    access=Access.PAUSE, body=PauseRequest, body_required=False, responses={200: PauseStatus},
    path_schemas={"id": _CALL_ID},
)  # fmt: skip
async def pause_session(request: web.Request) -> web.StreamResponse:
    ctx = api_context(request)
    _pause_enabled(ctx, per_session=True)
    session = _session(ctx, request.match_info["id"])
    body: PauseRequest = request[BODY]
    if _pause(ctx, session, body):
        log.info(
            "paused via API (recording=%s, transcription=%s, auto_resume_after=%s)",
            body.pause_recording, body.pause_transcription, body.auto_resume_after,
            extra={"call_id": session.call_id},
        )  # fmt: skip
    return json_reply(pause_status(session, ctx.wall_clock()))


@routes.post(
    "/api/sessions/{id}/resume", summary="Resume one session", access=Access.PAUSE, body=ResumeRequest,
    body_required=False, responses={200: PauseStatus}, path_schemas={"id": _CALL_ID},
)  # fmt: skip
async def resume_session(request: web.Request) -> web.StreamResponse:
    ctx = api_context(request)
    _pause_enabled(ctx, per_session=True)
    session = _session(ctx, request.match_info["id"])
    if _resume(ctx, session, request[BODY]):
        log.info("resumed via API", extra={"call_id": session.call_id})
    return json_reply(pause_status(session, ctx.wall_clock()))


@routes.get(
    "/api/sessions/{id}/pause-status", summary="Pause state of one session", access=Access.PAUSE,
    responses={200: PauseStatus}, path_schemas={"id": _CALL_ID},
)  # fmt: skip
async def session_pause_status(request: web.Request) -> web.StreamResponse:
    ctx = api_context(request)
    _pause_enabled(ctx)
    session = _session(ctx, request.match_info["id"])
    return json_reply(pause_status(session, ctx.wall_clock()))


def _pause(ctx: ApiContext, session: RecordingSession, body: PauseRequest) -> bool:
    try:
        return ctx.sessions.pause(
            session.call_id, recording=body.pause_recording, transcription=body.pause_transcription,
            auto_resume_after=body.auto_resume_after,
        )  # fmt: skip
    except KeyError:
        raise not_found(
            "SESSION_NOT_FOUND", "no live session with this Call-ID", call_id=session.call_id
        ) from None


def _resume(ctx: ApiContext, session: RecordingSession, body: ResumeRequest) -> bool:
    try:
        return ctx.sessions.resume(
            session.call_id, recording=body.resume_recording, transcription=body.resume_transcription
        )
    except KeyError:
        raise not_found(
            "SESSION_NOT_FOUND", "no live session with this Call-ID", call_id=session.call_id
        ) from None


def _all_result(ctx: ApiContext, message: str, changed: int) -> web.Response:
    wall = ctx.wall_clock()
    statuses = {s.call_id: pause_status(s, wall) for s in _live(ctx)}
    return json_reply(PauseAllResult(message=message, changed=changed, statuses=statuses))
