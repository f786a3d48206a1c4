"""GET /health, /health/live, /health/ready and /status.

/health runs every registered check (siprec.api.healthchecks) and answers 200 with the report while the server
is healthy or degraded; 503 only when unhealthy, with the same report in the error envelope's details.
/health/ready answers 503 NOT_READY while a critical check is unhealthy. /health/live runs nothing.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import threading
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel, Field

from siprec.api.context import ApiContext
from siprec.api.errors import ApiError
from siprec.api.healthchecks import HealthReport
from siprec.api.routing import Access, RouteTable, api_context, json_reply
from siprec.recording.manifest import iso_time

routes = RouteTable("health", "Liveness, readiness, health and status")


class CheckView(BaseModel):
    status: str = Field(description="healthy | degraded | unhealthy | disabled")
    critical: bool = Field(description="The server is not ready while this check is unhealthy")
    duration_ms: float
    details: dict[str, Any]


class HealthView(BaseModel):
    """Aggregated health (also the details of the 503 answer when unhealthy)."""

    status: str = Field(description="healthy | degraded | unhealthy")
    timestamp: str
    uptime_s: float
    version: str
    checks: dict[str, CheckView]
    system: dict[str, Any]


class Liveness(BaseModel):
    """The process runs and answers."""

    status: str


class Readiness(BaseModel):
    """Every critical dependency is up."""

    status: str
    checks: dict[str, str] = Field(description="Status of every check")


class ProcessStats(BaseModel):
    pid: int
    rss_bytes: int | None
    cpu_user_s: float
    cpu_system_s: float
    open_fds: int | None
    threads: int


class StatusView(BaseModel):
    """Version, build, uptime and process statistics."""

    version: str
    build: dict[str, str]
    started_at: str
    uptime_s: float
    active_sessions: int
    process: ProcessStats


def health_view(ctx: ApiContext, report: HealthReport) -> HealthView:
    wall = ctx.wall_clock()
    return HealthView(
        status=report.status.value,
        timestamp=iso_time(wall) or "",
        uptime_s=round(max(0.0, wall - ctx.started_at), 3),
        version=ctx.version,
        checks={
            c.name: CheckView(
                status=c.status.value, critical=c.critical, duration_ms=c.duration_ms, details=c.details
            )
            for c in report.checks
        },
        system={"active_sessions": _active_sessions(ctx), "cpu_count": os.cpu_count() or 1},
    )


@routes.get("/health", summary="Aggregated health of every subsystem", access=Access.PUBLIC,
            responses={200: HealthView})  # fmt: skip
async def health(request: web.Request) -> web.StreamResponse:
    ctx = api_context(request)
    report = await ctx.health.run()
    view = health_view(ctx, report)
    if report.status.value == "unhealthy":
        details = view.model_dump(mode="json")
        raise ApiError(503, "UNHEALTHY", "a critical subsystem is unhealthy", details, quiet=True)
    return json_reply(view)


@routes.get("/health/live", summary="Liveness probe", access=Access.PUBLIC, responses={200: Liveness})
async def live(request: web.Request) -> web.StreamResponse:
    return json_reply(Liveness(status="alive"))


@routes.get("/health/ready", summary="Readiness probe", access=Access.PUBLIC, responses={200: Readiness})
async def ready(request: web.Request) -> web.StreamResponse:
    ctx = api_context(request)
    report = await ctx.health.run()
    statuses = {c.name: c.status.value for c in report.checks}
    if not report.ready:
        failing = sorted(c.name for c in report.checks if c.critical and c.status.value == "unhealthy")
        message = f"critical dependency down: {', '.join(failing)}"
        raise ApiError(503, "NOT_READY", message, {"checks": statuses}, quiet=True)
    return json_reply(Readiness(status="ready", checks=statuses))


@routes.get("/status", summary="Version, build, uptime and process statistics", responses={200: StatusView})
async def status(request: web.Request) -> web.StreamResponse:
    ctx = api_context(request)
    wall = ctx.wall_clock()
    build = {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "aiohttp": aiohttp.__version__,
        "platform": platform.platform(terse=True),
        **ctx.build,
    }
    return json_reply(
        StatusView(
            version=ctx.version,
            build=build,
            started_at=iso_time(ctx.started_at) or "",
            uptime_s=round(max(0.0, wall - ctx.started_at), 3),
            active_sessions=_active_sessions(ctx),
            process=process_stats(),
        )
    )


def _active_sessions(ctx: ApiContext) -> int:
    return sum(1 for s in ctx.sessions.sessions if not s.ended)


def process_stats() -> ProcessStats:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return ProcessStats(
        pid=os.getpid(),
        rss_bytes=_rss_bytes(),
        cpu_user_s=round(usage.ru_utime, 3),
        cpu_system_s=round(usage.ru_stime, 3),
        open_fds=_open_fds(),
        threads=_threads(),
    )


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def _threads() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return threading.active_count()
