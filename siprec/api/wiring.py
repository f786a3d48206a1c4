"""The core's health checks, metric sources and session analytics, registered on an ApiContext by SiprecServer.

sip (critical): the SIP transports are bound. rtp_ports: free RTP port pairs (degraded under 10 % free,
unhealthy when none is left: new calls get 503, live ones go on, so not critical). amqp / redis: "disabled"
while the config switches them off (the component that implements them replaces the check when it is wired).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from siprec.api.context import ApiContext
from siprec.api.healthchecks import CheckResult, HealthStatus, disabled
from siprec.api.metrics import rtp_source, session_source, sip_source
from siprec.srs.session import RecordingSession

LOW_PORTS_FRACTION = 0.1


class _Transport(Protocol):
    bound: dict[str, int]
    stats: dict[str, int]

    @property
    def connection_count(self) -> int: ...


class _Ports(Protocol):
    slots: int

    @property
    def available(self) -> int: ...

    @property
    def in_use(self) -> int: ...

    @property
    def quarantined(self) -> int: ...


class _CoreStats(Protocol):
    requests: dict[str, int]
    responses_by_method: dict[tuple[str, int], int]
    bad_messages: int


class _Media(Protocol):
    def stats(self) -> dict[str, dict[str, int]]: ...

    def session_stats(self, session_id: str) -> list[dict[str, Any]]: ...


def register_core(
    ctx: ApiContext,
    *,
    core_stats: _CoreStats,
    transport: _Transport,
    ports: _Ports | None = None,
    media: _Media | None = None,
) -> None:
    ctx.health.add("sip", sip_check(transport), critical=True)
    if ports is not None:
        ctx.health.add("rtp_ports", rtp_ports_check(ports))
    if not ctx.config.amqp.enabled:
        ctx.health.add("amqp", disabled("amqp.enabled is false"))
    if not ctx.config.redis.url:
        ctx.health.add("redis", disabled("redis.url is empty: state is in-process"))
    ctx.metrics.add_source("sessions", session_source(ctx))
    ctx.metrics.add_source("sip", sip_source(core_stats, transport.stats))
    ctx.metrics.add_source("rtp", rtp_source(media, ports))
    if media is not None:
        ctx.session_analytics["rtp"] = rtp_analytics(media)


def sip_check(transport: _Transport) -> Callable[[], Awaitable[CheckResult]]:
    async def check() -> CheckResult:
        details = {"bound": dict(transport.bound), "connections": transport.connection_count}
        if not transport.bound:
            return HealthStatus.UNHEALTHY, {**details, "error": "no SIP transport is listening"}
        return HealthStatus.HEALTHY, details

    return check


def rtp_ports_check(ports: _Ports) -> Callable[[], Awaitable[CheckResult]]:
    async def check() -> CheckResult:
        free = ports.available
        details = {
            "free": free,
            "in_use": ports.in_use,
            "quarantined": ports.quarantined,
            "total": ports.slots,
        }
        if free == 0:
            return HealthStatus.UNHEALTHY, {
                **details,
                "error": "no free RTP ports: new calls are refused (503)",
            }
        if free < ports.slots * LOW_PORTS_FRACTION:
            return HealthStatus.DEGRADED, details
        return HealthStatus.HEALTHY, details

    return check


def rtp_analytics(media: _Media) -> Callable[[RecordingSession], Mapping[str, Any]]:
    def provider(session: RecordingSession) -> Mapping[str, Any]:
        legs = media.session_stats(session.session_id)
        return {
            "packets_received": sum(leg["packets_received"] for leg in legs),
            "packets_lost": sum(leg["packets_lost"] for leg in legs),
            "packets_late": sum(leg["packets_late"] for leg in legs),
            "legs": legs,
        }

    return provider
