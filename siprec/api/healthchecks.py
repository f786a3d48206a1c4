"""Health checks of the subsystems, registered by name and run concurrently for /health and /health/ready.

    ctx.health.add("amqp", amqp_check, critical=False)

    async def amqp_check() -> tuple[HealthStatus | str, dict[str, object]]:
        return ("healthy", {"outbox_depth": 0})

A check returns (status, details) with status healthy | degraded | unhealthy | disabled and JSON-ready details.
A check that raises or takes longer than its timeout counts as unhealthy. Aggregation: unhealthy when a critical
check is unhealthy; degraded when any other check is unhealthy or any check is degraded; else healthy. Disabled
checks (a subsystem switched off in the config) never lower the result. /health/ready fails while a critical
check is unhealthy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

log = logging.getLogger("siprec.api.health")

DEFAULT_TIMEOUT_S = 2.0


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    DISABLED = "disabled"


CheckResult = tuple[HealthStatus | str, Mapping[str, Any]]
HealthCheck = Callable[[], Awaitable[CheckResult]]


@dataclass(frozen=True)
class _Registered:
    name: str
    check: HealthCheck
    critical: bool
    timeout_s: float


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    status: HealthStatus
    critical: bool
    details: dict[str, Any]
    duration_ms: float


@dataclass(frozen=True)
class HealthReport:
    status: HealthStatus
    checks: list[CheckOutcome] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not any(c.critical and c.status is HealthStatus.UNHEALTHY for c in self.checks)


class HealthRegistry:
    def __init__(self) -> None:
        self._checks: dict[str, _Registered] = {}
        self._failing: set[str] = set()  # names whose last run failed (log once per failure, not per poll)

    def add(
        self, name: str, check: HealthCheck, *, critical: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        """Register (or replace) the check `name`. `critical`: the server is not ready while it is unhealthy."""
        self._checks[name] = _Registered(name, check, critical, timeout_s)

    def remove(self, name: str) -> None:
        self._checks.pop(name, None)

    @property
    def names(self) -> list[str]:
        return sorted(self._checks)

    async def run(self) -> HealthReport:
        entries = [self._checks[n] for n in self.names]
        outcomes = list(await asyncio.gather(*(self._run_one(e) for e in entries)))
        return HealthReport(aggregate(outcomes), outcomes)

    async def _run_one(self, entry: _Registered) -> CheckOutcome:
        started = time.perf_counter()
        try:
            raw_status, raw_details = await asyncio.wait_for(entry.check(), entry.timeout_s)
            status = HealthStatus(raw_status)
            details = dict(raw_details)
        except TimeoutError:
            status, details = (
                HealthStatus.UNHEALTHY,
                {"error": f"check timed out after {entry.timeout_s:g} s"},
            )
        except Exception as exc:
            status, details = HealthStatus.UNHEALTHY, {"error": f"check failed: {type(exc).__name__}: {exc}"}
            if entry.name not in self._failing:
                log.exception("health check %s failed", entry.name)
        if status is HealthStatus.UNHEALTHY:
            if entry.name not in self._failing:
                log.warning("health check %s: unhealthy %s", entry.name, details)
                self._failing.add(entry.name)
        elif entry.name in self._failing:
            self._failing.discard(entry.name)
            log.info("health check %s: %s again", entry.name, status.value)
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        return CheckOutcome(entry.name, status, entry.critical, details, duration_ms)


def aggregate(outcomes: list[CheckOutcome]) -> HealthStatus:
    if any(c.critical and c.status is HealthStatus.UNHEALTHY for c in outcomes):
        return HealthStatus.UNHEALTHY
    if any(c.status in (HealthStatus.UNHEALTHY, HealthStatus.DEGRADED) for c in outcomes):
        return HealthStatus.DEGRADED
    return HealthStatus.HEALTHY


def disabled(reason: str) -> HealthCheck:
    """A check for a subsystem the configuration switches off."""

    async def check() -> CheckResult:
        return HealthStatus.DISABLED, {"reason": reason}

    return check
