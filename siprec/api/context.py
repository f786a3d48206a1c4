"""`ApiContext`: everything the HTTP routes may read, built once by SiprecServer (or a test) before the app starts.

Route modules get it with `api_context(request)` (siprec.api.routing). Components started after the API
(STT, AMQP, store, WebSocket hub) plug in by registering on it:

    ctx.health.add("store", store_check, critical=True)      # siprec.api.healthchecks
    ctx.metrics.add_source("stt", stt_metrics)                # siprec.api.metric_sources
    ctx.ws_hub = hub                                          # WebSocketHub: add_routes(app), close(), stats(), health()
    ctx.session_analytics["sentiment"] = lambda session: {...}  # merged into each session's "analytics"
    ctx.components["store"] = store                           # anything else a route module needs, by name
    ctx.reloader = reloader                                   # siprec.reload.ConfigReloader: /api/config/reload
    ctx.stt = stt_service                                     # siprec.stt.pipeline.SttService: /api/stt/*

Set `ws_hub` before the HTTP server starts (its routes are mounted then); health checks, metric sources and
analytics providers can be added at any time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from siprec import __version__
from siprec.api.auth import Authenticator
from siprec.api.call_counters import CallCounters
from siprec.api.healthchecks import HealthRegistry
from siprec.api.metric_sources import MetricsRegistry
from siprec.config import Config
from siprec.events.bus import EventBus
from siprec.srs.session import RecordingSession

if TYPE_CHECKING:
    from siprec.reload import ConfigReloader
    from siprec.stt.pipeline import SttService


class SessionDirectory(Protocol):
    """The live sessions (siprec.srs.uas.RecordingUas)."""

    @property
    def sessions(self) -> Iterable[RecordingSession]: ...

    def session(self, call_id: str) -> RecordingSession | None: ...

    def pause(
        self, call_id: str, *, recording: bool, transcription: bool, auto_resume_after: float | None
    ) -> bool: ...

    def resume(self, call_id: str, *, recording: bool, transcription: bool) -> bool: ...


class WebSocketHub(Protocol):
    """What the API needs of the WebSocket hub (siprec.api.ws)."""

    def add_routes(self, app: Any) -> None: ...

    async def close(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    async def health(self) -> Any: ...


@dataclass(eq=False)
class ApiContext:
    config: Config
    sessions: SessionDirectory
    bus: EventBus
    started_at: float = field(default_factory=time.time)  # Unix time the server started
    version: str = __version__
    build: dict[str, str] = field(default_factory=dict)  # e.g. {"commit": ..., "date": ...}, shown by /status
    health: HealthRegistry = field(default_factory=HealthRegistry)
    metrics: MetricsRegistry = field(default_factory=MetricsRegistry)
    ws_hub: WebSocketHub | None = None
    # name -> provider(session) -> JSON-ready mapping, shown under analytics.<name> of each live session
    session_analytics: dict[str, Callable[[RecordingSession], Mapping[str, Any]]] = field(
        default_factory=dict
    )
    components: dict[str, Any] = field(default_factory=dict)
    wall_clock: Callable[[], float] = time.time
    reloader: ConfigReloader | None = None  # None: /api/config/reload and reload/status answer 503
    stt: SttService | None = None  # None: the /api/stt routes answer 503
    auth: Authenticator = field(init=False)
    calls: CallCounters = field(init=False)  # started / ended by outcome, counted from the bus

    def __post_init__(self) -> None:
        self.auth = Authenticator(self.config.auth, self.config.pause_resume)
        self.calls = CallCounters()
        self.calls.attach(self.bus)
