"""Who may talk to us, and how much: sip.trusted_sources and limits.* (sans-I/O, time passed in).

The SIP form of the per-IP limits of the seed's session middleware: a CIDR allow list (others get 403), a global
cap on live sessions, and per source address a cap on concurrent dialogs and on new dialogs per sliding hour and
day. Over a limit -> 503 with a Retry-After that says when a slot frees up.
"""

from __future__ import annotations

import ipaddress
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from siprec.sip.errors import SipError

HOUR = 3600.0
DAY = 86400.0
# Retry-After for caps that free up when some call ends: we cannot know when, so a short, honest hint.
CONCURRENT_RETRY_AFTER_S = 5

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class SourceLimits:
    concurrent: int = 0  # 0 = unlimited
    hourly: int = 0
    daily: int = 0


@dataclass
class _SourceState:
    active: int = 0
    # Start times of recent dialogs; bounded by the hourly/daily limits (no limit -> nothing kept).
    hour: deque[float] = field(default_factory=deque)
    day: deque[float] = field(default_factory=deque)


def parse_networks(sources: Iterable[str]) -> list[IpNetwork]:
    return [ipaddress.ip_network(s.strip(), strict=False) for s in sources if s.strip()]


class AdmissionControl:
    """Decides whether a source may send requests and open new dialogs."""

    def __init__(
        self,
        trusted_sources: Iterable[str] = (),
        per_source: SourceLimits = SourceLimits(),
        max_sessions: int = 0,
    ) -> None:
        self.trusted = parse_networks(trusted_sources)
        self.per_source = per_source
        self.max_sessions = max_sessions
        self.active_total = 0
        self._sources: dict[str, _SourceState] = {}

    def update_limits(
        self,
        *,
        trusted_sources: Iterable[str] | None = None,
        per_source: SourceLimits | None = None,
        max_sessions: int | None = None,
    ) -> None:
        """New limits for the dialogs to come (config reload); None keeps one. Dialogs already admitted stay and
        still count, so a lower cap refuses new ones until enough have ended. A source's hourly/daily history is
        kept only while that window is limited: a window switched on counts from now."""
        if trusted_sources is not None:
            self.trusted = parse_networks(trusted_sources)
        if max_sessions is not None:
            self.max_sessions = max_sessions
        if per_source is None:
            return
        self.per_source = per_source
        for host, state in list(self._sources.items()):
            if not per_source.hourly:
                state.hour.clear()
            if not per_source.daily:
                state.day.clear()
            if state.active == 0 and not state.hour and not state.day:
                del self._sources[host]

    def is_trusted(self, host: str) -> bool:
        if not self.trusted:
            return True
        try:
            addr = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.trusted)

    def check_source(self, host: str) -> None:
        """Every request from an untrusted source -> 403 (the caller still answers it)."""
        if not self.is_trusted(host):
            raise SipError(403, f"source {host} is not in sip.trusted_sources")

    def admit(self, host: str, now: float) -> None:
        """A new dialog from `host`: count it or raise SipError(503, Retry-After). Pair with `release`."""
        if self.max_sessions and self.active_total >= self.max_sessions:
            raise _unavailable(f"server at limits.max_sessions ({self.max_sessions})", CONCURRENT_RETRY_AFTER_S)
        limits = self.per_source
        state = self._sources.get(host)
        if state is None:
            state = self._sources[host] = _SourceState()
        if limits.concurrent and state.active >= limits.concurrent:
            raise _unavailable(
                f"source {host} at limits.per_source.concurrent ({limits.concurrent})", CONCURRENT_RETRY_AFTER_S
            )
        for window, span, cap, name in ((state.hour, HOUR, limits.hourly, "hourly"), (state.day, DAY, limits.daily, "daily")):
            if not cap:
                continue
            while window and window[0] <= now - span:
                window.popleft()
            if len(window) >= cap:
                retry = max(1, math.ceil(window[0] + span - now))
                raise _unavailable(f"source {host} at limits.per_source.{name} ({cap})", retry)
        if limits.hourly:
            state.hour.append(now)
        if limits.daily:
            state.day.append(now)
        state.active += 1
        self.active_total += 1

    def release(self, host: str) -> None:
        state = self._sources.get(host)
        if state is None or state.active == 0:
            return
        state.active -= 1
        self.active_total -= 1
        if state.active == 0 and not state.hour and not state.day:
            del self._sources[host]  # keep memory bounded by live sources

    def active_for(self, host: str) -> int:
        state = self._sources.get(host)
        return state.active if state else 0


def _unavailable(warning: str, retry_after: int) -> SipError:
    return SipError(503, warning, headers=[("Retry-After", str(retry_after))])
