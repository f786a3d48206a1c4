"""Builds every component from Config, starts them in order and stops them in reverse (graceful on SIGTERM)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from siprec import __version__
from siprec.api.context import ApiContext
from siprec.api.server import ApiServer
from siprec.api.wiring import register_core
from siprec.appliers import register_components
from siprec.config import Config
from siprec.events.bus import EventBus
from siprec.heap import freeze_startup_heap
from siprec.reload import ConfigReloader, install_sighup
from siprec.services import Services
from siprec.sip.admission import AdmissionControl, SourceLimits
from siprec.sip.core import SipApplication, SipCore
from siprec.sip.transport import SipTransport, TransportLimits, make_server_ssl_context
from siprec.sip.validation import UasPolicy
from siprec.stt.pipeline import SttService

log = logging.getLogger("siprec.app")

# How often the application's own timers (session timers, RTP idle) are looked at.
TICK_S = 1.0


@dataclass
class Components:
    """What an application factory gets to build the SIP application with."""

    config: Config
    core: SipCore
    bus: EventBus


ApplicationFactory = Callable[[Components], SipApplication]


def advertised_host(config: Config) -> str:
    """The address we put in Contact, Via and SDP: configured, else the bound host, else our outbound address."""
    if config.sip.advertised_host:
        return config.sip.advertised_host
    if config.sip.host not in ("0.0.0.0", "::", ""):
        return config.sip.host
    try:
        # No packet is sent: connecting a UDP socket only selects the source address the kernel would use.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def _default_application(parts: Components) -> SipApplication:
    # The SIPREC layer, imported here so that app.py stays importable with another application (tests).
    from siprec.recording.media import RecordingMedia
    from siprec.recording.workers import MediaWorkers
    from siprec.srs.ports import PortPool
    from siprec.srs.uas import RecordingUas

    rtp = parts.config.rtp
    media: RecordingMedia | MediaWorkers
    if rtp.media_workers:
        media = MediaWorkers(parts.config, parts.bus.publish, rtp.media_workers)
    else:
        media = RecordingMedia(parts.config, parts.bus.publish)
    ports = PortPool(rtp.port_min, rtp.port_max, reserve=media.reserve, unreserve=media.unreserve)
    return RecordingUas(parts.config, bus=parts.bus, core=parts.core, ports=ports, media=media)


class _NoSessions:
    """The session directory of an application without recording sessions (tests with another application)."""

    sessions: tuple[()] = ()

    def session(self, call_id: str) -> None:
        return None

    def pause(self, call_id: str, **kw: object) -> bool:
        raise KeyError(call_id)

    def resume(self, call_id: str, **kw: object) -> bool:
        raise KeyError(call_id)


class SiprecServer:
    """One running server. `start()` then `stop()`; ports 0 in the config pick free ports (tests).

    `api` is the HTTP API's context, ready before `start()`: components register health checks, metric sources,
    session analytics and the WebSocket hub on it (siprec.api.context). `http_port` is the bound HTTP port."""

    def __init__(self, config: Config, *, application: ApplicationFactory | None = None) -> None:
        self.config = config
        sip = config.sip
        limits = config.limits
        self.admission = AdmissionControl(
            [str(n) for n in sip.trusted_sources],
            SourceLimits(limits.per_source.concurrent, limits.per_source.hourly, limits.per_source.daily),
            limits.max_sessions,
        )
        # The core needs the application and the application the core: the policy is filled once both exist.
        self.bus = EventBus()
        self.core = SipCore(_NoApplicationYet(), policy=UasPolicy(), admission=self.admission, clock=time.monotonic)
        self.app = (application or _default_application)(Components(config, self.core, self.bus))
        self.core.app = self.app
        self.core.policy = UasPolicy(
            supported=tuple(getattr(self.app, "supported_options", ())),
            accept=tuple(getattr(self.app, "accepted_types", ("application/sdp",))),
        )
        ssl_context = make_server_ssl_context(sip.tls_cert, sip.tls_key) if sip.tls_port else None
        self.transport = SipTransport(
            self.core,
            host=sip.host,
            udp_port=sip.udp_port,
            tcp_port=sip.tcp_port,
            tls_port=sip.tls_port or None,
            ssl_context=ssl_context,
            limits=TransportLimits(max_message_size=sip.max_message_size),
        )
        self._ticker: asyncio.Task[None] | None = None
        self.started_at: float | None = None
        directory = self.app if hasattr(self.app, "session") and hasattr(self.app, "sessions") else _NoSessions()
        self.api = ApiContext(config, directory, self.bus)  # type: ignore[arg-type]
        media = getattr(self.app, "media", None)
        register_core(
            self.api, core_stats=self.core.stats, transport=self.transport,
            ports=getattr(self.app, "ports", None), media=media if hasattr(media, "stats") else None,
        )  # fmt: skip
        self.services = Services(config, self.bus, self.api, media=media if hasattr(media, "stt") else None)
        # Hot reload (API and SIGHUP): sections swapped on the shared Config, copied values handed over by appliers.
        self.reloader = ConfigReloader(config.source, config)
        register_components(self.reloader, api=self.api, admission=self.admission)
        self.api.reloader = self.reloader
        self.http = ApiServer(self.api)
        self.http_port: int | None = None

    @property
    def stt(self) -> SttService | None:
        return self.services.stt

    async def start(self) -> None:
        await self.services.start()  # STT models loaded, event delivery connected: before the first call
        register_components(
            self.reloader, amqp_publisher=self.services.amqp, webhook_sender=self.services.webhooks,
            analytics=self.services.analytics, stt=self.services.stt,
        )  # fmt: skip
        if self.services.stt is not None:
            stt = self.services.stt
            self.reloader.add_check(lambda c: stt.registry.plan(c.stt))  # a reload may not name a missing provider
        recover = getattr(getattr(self.app, "media", None), "recover", None)
        if recover is not None:
            recover()  # sessions a crash interrupted, before any new one starts
        media_started = getattr(getattr(self.app, "media", None), "wait_started", None)
        if media_started is not None:
            await media_started()  # media worker processes listen before SIP takes a call
        try:
            await self.transport.start()
        except BaseException:
            await self.services.stop()
            raise
        self.core.bind(self.transport.send, advertised_host(self.config), self.transport.bound)
        self._ticker = asyncio.create_task(self._tick(), name="siprec-app-ticker")
        self.started_at = self.api.started_at = time.time()
        try:
            await self.http.start(self.config.http.host, self.config.http.port)
        except BaseException:
            await self._stop_sip()  # e.g. the HTTP port is taken: nothing may stay bound
            await self.services.stop()
            raise
        self.http_port = self.http.port
        log.info("siprec %s started: SIP %s, HTTP %s", __version__, self.transport.bound, self.http_port)

    async def stop(self) -> None:
        await self.http.stop()  # first: no API call may act on sessions being torn down
        await self._stop_sip()
        await self.services.stop()  # after the last session ended: its finals, transcript and events go out
        log.info("siprec stopped")

    async def _stop_sip(self) -> None:
        shutdown = getattr(self.app, "shutdown", None)
        if shutdown is not None:
            shutdown()  # ends live sessions with BYE while the transport can still send it
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        close_media = getattr(getattr(self.app, "media", None), "close", None)
        if close_media is not None:
            await close_media()  # files final, FLAC jobs done, sockets closed
        await self.transport.stop()

    async def _tick(self) -> None:
        on_tick = getattr(self.app, "tick", None)
        while True:
            await asyncio.sleep(TICK_S)
            if on_tick is not None:
                try:
                    on_tick(time.monotonic())
                except Exception:
                    log.exception("application timer failed")


class _NoApplicationYet:
    """Stands in the core only while the application is being constructed, before any socket is open."""

    def __getattr__(self, name: str) -> object:
        raise RuntimeError("SIP application not attached yet")


async def serve_forever(config: Config) -> int:
    server = SiprecServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Handlers first: a SIGTERM while models load or ports bind still ends in a clean stop (exit 0).
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    freeze_startup_heap("siprec")
    remove_sighup = install_sighup(loop, server.reloader)  # SIGHUP: reload the config file, as the API does
    try:
        await stop.wait()
        log.info("signal received: draining")
    finally:
        remove_sighup()
        await server.stop()
    return 0


def run(config: Config) -> int:
    """Blocking entry point of `siprec serve`: runs until SIGTERM/SIGINT, returns the exit code."""
    try:
        import uvloop  # measured in DESIGN.md: 4x less CPU per datagram than the default loop
    except ImportError:
        return asyncio.run(serve_forever(config))
    return uvloop.run(serve_forever(config))
