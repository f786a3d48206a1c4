"""Speech-to-text over REST (CONTRACT.md): post-call jobs on the SttService's queue, its state and its latency.

- POST /api/stt/submit (WRITE): one body, three forms -
  * application/json `{"call_id", "session_id"?, "leg"?}`: the legs of that recording (or the one leg, by its
    m-line index) as one job each, from the files on disk; a recording still in progress is 409;
  * audio/wav or audio/flac (also audio/x-wav, audio/wave, audio/x-flac): the body is the file;
  * multipart/form-data with a `file` part (a WAV or FLAC file).
  Audio must be one channel; uploads are bounded (MAX_UPLOAD_BYTES, else 413) and deleted when their job is
  over. Jobs go on the queue of the provider in use, FIFO behind the ready jobs already there, and their results
  stay with the job (times in seconds from the start of the file; no transcript.json is written). 202 with the
  jobs; 503 STT_UNAVAILABLE when no STT service is wired or no provider runs.
- GET /api/stt/jobs (paged, newest first, ?state=), GET /api/stt/jobs/{job_id} (404 JOB_NOT_FOUND): state,
  progress, queue position, timings, and the final segments once done. Jobs the live pipeline queued (capacity,
  lagging, failed streams) are listed too; the service keeps the last 1000 finished jobs.
- GET /api/stt/stats: providers installed (and broken), planned and running, live streams, queued legs, counters
  (lagging switches, failovers...), jobs by state.
- GET /api/stt/metrics: end-of-utterance -> final latency of live streams (p50, p95, histogram) and the real-time
  factor of post-call jobs (seconds of work per second of audio; live streams keep up by construction, a leg
  whose provider falls behind is counted in lagging_switches).
- POST /api/stt/queue/purge (WRITE): cancels every job not started yet (running ones finish); a leg's cancelled job
  leaves that leg out of its call's transcript.json.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from siprec.api.context import ApiContext
from siprec.api.errors import ApiError, not_found, unavailable
from siprec.api.recording_index import index_for
from siprec.api.recordings import find_recording
from siprec.api.routing import QUERY, Access, RouteTable, api_context, json_reply
from siprec.api.stt_uploads import AUDIO_TYPES, audio_seconds, multipart_file, save_upload
from siprec.recording.manifest import iso_time
from siprec.stt.jobs import STATES, Job, PostCallQueue, file_job
from siprec.stt.provider import describe

if TYPE_CHECKING:
    from siprec.stt.pipeline import SttService

log = logging.getLogger("siprec.api.stt")

routes = RouteTable("stt", "Speech-to-text: post-call jobs, providers, latency")

_JOB_ID = {"type": "string", "minLength": 1, "maxLength": 64}
_AUDIO = {"type": "string", "format": "binary", "description": "A mono WAV or FLAC file"}
JobState = Literal["queued", "running", "done", "failed", "abandoned", "cancelled"]


# --- shapes ----------------------------------------------------------------------------------------------------


class SttSubmitRequest(BaseModel):
    call_id: str = Field(min_length=1, max_length=1024, description="The recording's SIP Call-ID")
    session_id: str | None = Field(
        None, min_length=1, max_length=256, description="Which recording of that Call-ID"
    )
    leg: int | None = Field(None, ge=0, le=999_999, description="Only this leg (m-line index)")


class SttWord(BaseModel):
    text: str
    start: float
    end: float
    confidence: float | None


class SttSegment(BaseModel):
    text: str
    start: float = Field(
        description="Seconds from the start of the file (session seconds for a call's leg job)"
    )
    end: float
    confidence: float | None
    language: str | None
    words: list[SttWord]


class SttJob(BaseModel):
    """One post-call transcription job."""

    id: str
    state: JobState
    source: Literal["call", "recording", "upload"] = Field(
        description="call: queued by the live pipeline (capacity, lagging, failure); recording / upload: the API"
    )
    reason: str = Field(description="capacity | lagging | failed | gap | api")
    provider: str = Field(description="The provider whose queue it is in (or that ran it)")
    call_id: str | None
    session_id: str | None
    leg: int | None
    stream_label: str | None
    queued_at: str
    started_at: str | None
    finished_at: str | None
    position: int | None = Field(description="Place in its provider's queue, from 1, while queued")
    progress: float = Field(description="0..1")
    audio_s: float = Field(description="Seconds of audio transcribed")
    real_time_factor: float | None = Field(description="Seconds of work per second of audio")
    segment_count: int
    error: str | None


class SttJobDetail(SttJob):
    """One job with its final segments (empty until done)."""

    segments: list[SttSegment]


class SttSubmitted(BaseModel):
    """The jobs queued by a submission."""

    jobs: list[SttJob]


class SttJobsQuery(BaseModel):
    state: JobState | None = Field(None, description="Only jobs in this state")
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=1_000_000)


class SttJobList(BaseModel):
    """Jobs, newest first."""

    total: int = Field(description="Jobs matching the filter")
    offset: int
    limit: int
    jobs: list[SttJob]


class SttProviderInfo(BaseModel):
    name: str
    streaming: bool
    partials: bool
    word_timestamps: bool
    languages: list[str]
    sample_rates: list[int]
    origin: str = Field(description="Entry point and distribution, or 'registered in code'")


class SttProviderState(BaseModel):
    state: str = Field(description="idle | starting | ready | failed | closed")
    error: str | None


class SttStats(BaseModel):
    """The STT service: providers, streams, queues and counters."""

    enabled: bool
    provider: str | None = Field(description="The provider new legs use (null: none running)")
    planned: list[str] = Field(description="stt.provider then stt.fallback")
    providers: dict[str, SttProviderState] = Field(description="State of each planned provider")
    installed: list[SttProviderInfo]
    broken: dict[str, str] = Field(description="Installed providers that cannot be used, and why")
    language: str
    max_concurrent: int
    live_streams: int
    queued_legs: int = Field(description="Jobs waiting in the queues (legs and API jobs)")
    running_jobs: int
    lagging_switches: int = Field(description="Live legs moved to post-call because the provider fell behind")
    counters: dict[str, int]
    jobs: dict[str, int] = Field(description="Jobs kept, by state")


class SttLatency(BaseModel):
    count: int
    sum: float
    p50: float | None
    p95: float | None
    recent: int = Field(description="Samples the percentiles are computed from")
    buckets: list[tuple[float | str, int]] = Field(description="Cumulative [le, count] pairs, le '+Inf' last")


class SttRealTimeFactor(BaseModel):
    jobs: int = Field(description="Finished jobs measured")
    audio_s: float
    busy_s: float
    overall: float | None = Field(description="busy_s / audio_s")
    p50: float | None
    p95: float | None


class SttMetrics(BaseModel):
    """Latency of live finals and speed of post-call jobs."""

    final_latency_s: SttLatency = Field(description="End of utterance -> final result, live streams")
    real_time_factor: SttRealTimeFactor
    finals: int
    partials: int


class SttPurged(BaseModel):
    """Jobs cancelled by a purge."""

    cancelled: int
    job_ids: list[str]


# --- views -----------------------------------------------------------------------------------------------------


def _service(ctx: ApiContext) -> SttService:
    if ctx.stt is None:
        raise unavailable("STT_UNAVAILABLE", "no speech-to-text service is wired in this server")
    return ctx.stt


def _queue(service: SttService) -> PostCallQueue:
    queue = service.jobs
    if queue is None:
        raise unavailable("STT_UNAVAILABLE", "the speech-to-text service has not started")
    return queue


def _rtf(job: Job) -> float | None:
    return round(job.busy_s / job.audio_s, 4) if job.audio_s > 0 else None


def _job_view(queue: PostCallQueue, job: Job) -> dict[str, Any]:
    if job.reason != "api":
        source = "call"
    else:
        source = "recording" if job.call_id else "upload"
    return {
        "id": job.id,
        "state": job.state,
        "source": source,
        "reason": job.reason,
        "provider": job.provider,
        "call_id": job.call_id or None,
        "session_id": job.session_id or None,
        "leg": job.leg if job.call_id else None,
        "stream_label": job.stream_label,
        "queued_at": iso_time(job.queued_at) or "",
        "started_at": iso_time(job.started_at),
        "finished_at": iso_time(job.finished_at),
        "position": queue.position(job),
        "progress": round(job.progress, 4),
        "audio_s": round(job.audio_s, 3),
        "real_time_factor": _rtf(job),
        "segment_count": len(job.results),
        "error": job.error,
    }


def _segments(job: Job) -> list[SttSegment]:
    return [
        SttSegment(
            text=r.text,
            start=round(float(r.start), 3),
            end=round(float(r.end), 3),
            confidence=None if r.confidence is None else float(r.confidence),
            language=r.language,
            words=[
                SttWord(
                    text=w.text,
                    start=round(float(w.start), 3),
                    end=round(float(w.end), 3),
                    confidence=None if w.confidence is None else float(w.confidence),
                )
                for w in r.words
            ],
        )  # fmt: skip
        for r in job.results
    ]


def _active_provider(service: SttService) -> str:
    provider = service.stats()["provider"]
    if not provider:
        raise unavailable(
            "STT_UNAVAILABLE", "no speech-to-text provider is running (stt.provider none, or it failed)"
        )
    return str(provider)


# --- submissions ---------------------------------------------------------------------------------------------


async def _upload_job(request: web.Request, provider: str) -> Job:
    ctype = request.content_type
    if ctype == "multipart/form-data":
        path = await multipart_file(request)
    else:
        path = await save_upload(request.content, AUDIO_TYPES[ctype], request.content_length)
    try:
        seconds = await audio_seconds(path, what="the uploaded file")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return file_job(path, seconds, provider, discard_path=True)


def _submit_request(data: Any) -> SttSubmitRequest:
    """Strict, like every JSON body of the API ("1" is not a leg number), with the same 400 VALIDATION_ERROR."""
    try:
        return SttSubmitRequest.model_validate(data, strict=True)
    except ValidationError as exc:
        errors = [
            {"location": ["body", *map(str, e["loc"])], "message": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ApiError(400, "VALIDATION_ERROR", "invalid body", {"errors": errors}) from None


async def _recording_jobs(ctx: ApiContext, body: SttSubmitRequest, provider: str) -> list[Job]:
    rec = await find_recording(ctx, body.call_id, body.session_id)
    if rec.state == "recording":
        raise ApiError(
            409, "RECORDING_IN_PROGRESS", "the call is still being recorded (it is transcribed live)",
            {"call_id": body.call_id},
        )  # fmt: skip
    legs = [leg for leg in rec.legs if body.leg is None or leg.index == body.leg]
    if not legs:
        if body.leg is not None:
            raise not_found(
                "LEG_NOT_FOUND", "the recording has no such leg", call_id=body.call_id, leg=body.leg
            )
        raise ApiError(409, "NO_LEG_FILES", "the recording has no leg files", {"call_id": body.call_id})
    index = index_for(ctx)
    jobs: list[Job] = []
    for leg in legs:
        path = await asyncio.to_thread(index.audio_path, rec, leg.file)
        if path is None:
            raise not_found(
                "LEG_NOT_FOUND", f"leg file {leg.file} is missing", call_id=body.call_id, leg=leg.index
            )
        seconds = await audio_seconds(path, what=f"leg file {leg.file}")
        jobs.append(
            file_job(
                path,
                seconds,
                provider,
                call_id=rec.call_id or body.call_id,
                session_id=rec.session_id or "",
                leg=leg.index,
                stream_label=leg.label,
            )  # fmt: skip
        )
    return jobs


# --- routes ----------------------------------------------------------------------------------------------------


@routes.post(
    "/api/stt/submit", summary="Queue a post-call transcription: a recording by Call-ID, or an uploaded WAV/FLAC",
    access=Access.WRITE, responses={202: SttSubmitted}, request_types={
        "application/json": SttSubmitRequest,
        "multipart/form-data": {"type": "object", "properties": {"file": _AUDIO}, "required": ["file"]},
        "audio/wav": _AUDIO, "audio/flac": _AUDIO,
    },
)  # fmt: skip
async def submit(request: web.Request) -> web.StreamResponse:
    """Body: application/json {call_id, session_id?, leg?}; or audio/wav | audio/flac (the file itself); or
    multipart/form-data with a `file` part. Mono audio only; uploads up to 64 MiB (siprec.api.stt_uploads)."""
    ctx = api_context(request)
    service = _service(ctx)
    queue = _queue(service)
    ctype = request.content_type
    if ctype not in AUDIO_TYPES and ctype not in ("application/json", "multipart/form-data"):
        raise ApiError(
            415, "UNSUPPORTED_MEDIA_TYPE", f"expected application/json, multipart/form-data or audio, got {ctype}",
            {"accepted": ["application/json", "multipart/form-data", *sorted(AUDIO_TYPES)]},
        )  # fmt: skip
    provider = _active_provider(service)
    if ctype == "application/json":
        raw = await request.read()
        if not raw.strip():
            raise ApiError(400, "BODY_REQUIRED", "a JSON body {call_id, session_id?, leg?} is required")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError(
                400, "INVALID_JSON", "the request body is not valid JSON", {"reason": str(exc)}
            ) from None
        body = _submit_request(data)
        jobs = await _recording_jobs(ctx, body, provider)
    else:
        jobs = [await _upload_job(request, provider)]
    for job in jobs:
        queue.add(job)
        log.info(
            "post-call job %s queued on %s (%s, leg %s)", job.id, job.provider,
            "upload" if not job.call_id else "recording", job.leg, extra={"call_id": job.call_id or None},
        )  # fmt: skip
    return json_reply(SttSubmitted(jobs=[SttJob(**_job_view(queue, j)) for j in jobs]), status=202)


@routes.get(
    "/api/stt/jobs", summary="Post-call jobs, newest first", query=SttJobsQuery, responses={200: SttJobList}
)
async def list_jobs(request: web.Request) -> web.StreamResponse:
    query: SttJobsQuery = request[QUERY]
    queue = _queue(_service(api_context(request)))
    jobs = [j for j in reversed(queue.jobs()) if query.state is None or j.state == query.state]
    page = jobs[query.offset : query.offset + query.limit]
    return json_reply(
        SttJobList(
            total=len(jobs),
            offset=query.offset,
            limit=query.limit,
            jobs=[SttJob(**_job_view(queue, j)) for j in page],
        )  # fmt: skip
    )


@routes.get(
    "/api/stt/jobs/{job_id}", summary="One job: state, progress, and its segments once done",
    responses={200: SttJobDetail}, path_schemas={"job_id": _JOB_ID},
)  # fmt: skip
async def get_job(request: web.Request) -> web.StreamResponse:
    queue = _queue(_service(api_context(request)))
    job_id = request.match_info["job_id"]
    job = queue.job(job_id)
    if job is None:
        raise not_found("JOB_NOT_FOUND", "no job with this id (unknown, or no longer kept)", job_id=job_id)
    return json_reply(SttJobDetail(**_job_view(queue, job), segments=_segments(job)))


@routes.get(
    "/api/stt/stats", summary="Providers, live streams, queues and counters", responses={200: SttStats}
)
async def stt_stats(request: web.Request) -> web.StreamResponse:
    service = _service(api_context(request))
    stats = service.stats()
    registry = service.registry
    installed = [
        SttProviderInfo(
            **{k: v for k, v in describe(cls).items() if k != "config"}, origin=registry.origin(name)
        )
        for name, cls in registry.providers().items()
    ]
    counters = {k: int(v) for k, v in stats.items() if k in _COUNTERS}
    queue = service.jobs
    return json_reply(
        SttStats(
            enabled=stats["enabled"],
            provider=stats["provider"],
            planned=list(service.plan.names) if service.plan is not None else [],
            providers={n: SttProviderState(**s) for n, s in stats["providers"].items()},
            installed=installed,
            broken=registry.broken(),
            language=stats["language"],
            max_concurrent=stats["max_concurrent"],
            live_streams=stats["live_streams"],
            queued_legs=stats["queued_legs"],
            running_jobs=stats["running_jobs"],
            lagging_switches=stats["lagging_switches"],
            counters=counters,
            jobs=queue.by_state() if queue is not None else dict.fromkeys(STATES, 0),
        )  # fmt: skip
    )


_COUNTERS = frozenset(
    {
        "legs_opened", "legs_live", "legs_queued", "legs_promoted", "lagging_switches", "stream_failures", "failovers",
        "failed_to_post_call", "jobs_done", "jobs_failed", "jobs_abandoned", "finals", "partials",
        "transcripts_written",
    }
)  # fmt: skip


@routes.get(
    "/api/stt/metrics", summary="Latency of live finals (p50/p95) and real-time factor of post-call jobs",
    responses={200: SttMetrics},
)  # fmt: skip
async def stt_metrics(request: web.Request) -> web.StreamResponse:
    service = _service(api_context(request))
    latency = service.latency.to_dict()
    queue = service.jobs
    measured = [j for j in (queue.jobs() if queue is not None else []) if j.audio_s > 0 and j.finished_at]
    factors = sorted(j.busy_s / j.audio_s for j in measured)
    audio, busy = sum(j.audio_s for j in measured), sum(j.busy_s for j in measured)
    return json_reply(
        SttMetrics(
            final_latency_s=SttLatency(**latency),
            real_time_factor=SttRealTimeFactor(
                jobs=len(measured),
                audio_s=round(audio, 3),
                busy_s=round(busy, 3),
                overall=round(busy / audio, 4) if audio > 0 else None,
                p50=_quantile(factors, 0.5),
                p95=_quantile(factors, 0.95),
            ),
            finals=service.counters.finals,
            partials=service.counters.partials,
        )  # fmt: skip
    )


def _quantile(ordered: list[float], q: float) -> float | None:
    """Nearest rank, as the latency percentiles (siprec.stt.stats)."""
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 4)


@routes.post(
    "/api/stt/queue/purge", summary="Cancel every queued (not running) post-call job", access=Access.WRITE,
    responses={200: SttPurged},
)  # fmt: skip
async def purge_queue(request: web.Request) -> web.StreamResponse:
    queue = _queue(_service(api_context(request)))
    cancelled = queue.cancel_queued()
    if cancelled:
        log.info("STT queue purged: %d job(s) cancelled", len(cancelled))
    return json_reply(SttPurged(cancelled=len(cancelled), job_ids=[j.id for j in cancelled]))
