"""The services around the SIP core: live transcription, the WebSocket hub, event delivery (store, AMQP outbox,
webhooks) and hot reload. `Services` builds them from Config, registers each one's health check and metrics on
the API context, starts them before SIP accepts calls and stops them after the last session ended.

Order matters and is kept here in one place:
start: STT (models load before the first call can ask for them) -> store -> AMQP -> webhooks; the WebSocket hub
exists from construction (it replays only what it has seen on the bus).
stop (after the UAS ended every session and the media closed): STT (finals of the last calls, their
transcript.json) -> webhooks -> AMQP (confirms of the last events) -> store.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client.core import Metric

from siprec.analytics.service import AnalyticsService
from siprec.api.context import ApiContext
from siprec.api.healthchecks import CheckResult, HealthStatus, disabled
from siprec.api.metric_sources import counter, gauge, histogram
from siprec.api.ws import WebSocketHub
from siprec.config import Config
from siprec.events.amqp import AmqpPublisher
from siprec.events.bus import EventBus
from siprec.events.webhooks import WebhookSender
from siprec.store.db import Store
from siprec.stt.pipeline import SttService

log = logging.getLogger("siprec.app")

# Post-call jobs still queued at shutdown get this long; the rest are logged as dropped.
STT_SHUTDOWN_JOBS_S = 30.0
# AMQP confirms and webhook attempts in flight at shutdown (the outbox keeps what is unconfirmed).
DELIVERY_STOP_S = 5.0

_STT_HEALTH = {
    "ok": HealthStatus.HEALTHY,
    "degraded": HealthStatus.DEGRADED,
    "starting": HealthStatus.DEGRADED,
    "disabled": HealthStatus.DISABLED,
    "failed": HealthStatus.UNHEALTHY,
    "closed": HealthStatus.UNHEALTHY,
}


class Services:
    def __init__(self, config: Config, bus: EventBus, api: ApiContext, *, media: Any = None) -> None:
        self.config = config
        self.bus = bus
        self.api = api
        self.media = media  # RecordingMedia (None with another SIP application): where STT taps the audio
        # Transcripts go through analytics (sentiment and keywords filled in) on their way to the bus.
        self.analytics = AnalyticsService(config.analytics, bus)
        api.metrics.add_source("analytics", _analytics_metrics(self.analytics))
        api.session_analytics["speech"] = lambda session: self.analytics.session_view(session.session_id)
        self.stt: SttService | None = SttService(config, self.analytics.publish) if media is not None else None
        self.ws_hub = WebSocketHub(
            bus,
            verify_token=api.auth.verify_token if config.auth.require_auth_for_reads else None,
            session_exists=lambda call_id: api.sessions.session(call_id) is not None,
        )
        api.ws_hub = self.ws_hub
        self.store: Store | None = None  # opened at start when a component needs it (the AMQP outbox)
        self.amqp: AmqpPublisher | None = None
        if not config.amqp.enabled:
            api.health.add("store", disabled("opened only for the AMQP outbox (amqp.enabled is false)"))
        self.webhooks = WebhookSender(config.webhooks, bus=bus) if config.webhooks.urls else None
        if self.webhooks is not None:
            api.health.add("webhooks", self.webhooks.health_check)
            api.components["webhooks"] = self.webhooks
        if self.stt is not None:
            api.components["stt"] = self.stt
            api.stt = self.stt
            api.health.add("stt", _stt_check(self.stt))
            api.metrics.add_source("stt", _stt_metrics(self.stt))

    async def start(self) -> None:
        self.analytics.start()
        if self.stt is not None:
            await (
                self.stt.start()
            )  # a bad stt section raises ConfigError; a provider failing to load does not
            if self.stt.stats()["provider"] is not None:
                self.media.stt = self.stt
        if self.config.amqp.enabled:
            # The outbox lives in the store: an event is committed before it is published (nothing lost).
            self.store = await Store.open(self.config.store.url)
            self.api.health.add("store", self.store.health_check, critical=True)
            self.api.components["store"] = self.store
            self.amqp = AmqpPublisher(self.config.amqp, self.store, bus=self.bus, origin=self.config.amqp.instance_id)
            await self.amqp.start()
            self.api.health.add("amqp", self.amqp.health_check)
            self.api.metrics.add_source("amqp", _amqp_metrics(self.amqp))
            self.api.components["amqp"] = self.amqp
        if self.webhooks is not None:
            await self.webhooks.start()

    async def stop(self) -> None:
        if self.stt is not None:
            if self.media is not None:
                self.media.stt = None
            await self.stt.close(jobs_timeout_s=STT_SHUTDOWN_JOBS_S)
        await self.analytics.stop()  # after STT: the last finals are enriched and counted
        if self.webhooks is not None:
            await self.webhooks.stop(timeout=DELIVERY_STOP_S)
        if self.amqp is not None:
            await self.amqp.stop(timeout=DELIVERY_STOP_S)
            self.amqp = None
        if self.store is not None:
            await self.store.close()
            self.store = None


def _amqp_metrics(amqp: AmqpPublisher) -> Callable[[], Iterable[Metric]]:
    def collect() -> Iterable[Metric]:
        s = amqp.stats()
        return [
            counter(
                "siprec_amqp_published", "Events published to RabbitMQ (re-sends included)", s["published"]
            ),
            counter("siprec_amqp_confirmed", "Events confirmed by RabbitMQ", s["confirmed"]),
            counter("siprec_amqp_nacked", "Events refused by RabbitMQ (sent again)", s["nacked"]),
            counter("siprec_amqp_reconnects", "Connections re-opened", s["reconnects"]),
            gauge("siprec_amqp_connected", "1 while connected to the broker", int(bool(s["connected"]))),
            gauge("siprec_amqp_outbox_depth", "Events stored but not yet confirmed", s["outbox_depth"]),
        ]

    return collect


def _analytics_metrics(analytics: AnalyticsService) -> Callable[[], Iterable[Metric]]:
    def collect() -> Iterable[Metric]:
        s = analytics.stats()
        return [
            counter("siprec_analytics_finals", "Final transcripts scored for sentiment and keywords", s["finals"]),
            counter("siprec_analytics_keywords", "Keyword detections (analytics.keywords)", s["keywords"]),
            counter("siprec_analytics_snapshots", "Call snapshots published", s["snapshots"]),
        ]

    return collect


def _stt_check(stt: SttService) -> Callable[[], Awaitable[CheckResult]]:
    async def check() -> CheckResult:
        state, details = stt.health()
        return _STT_HEALTH.get(state, HealthStatus.DEGRADED), {"state": state, **details}

    return check


def _stt_metrics(stt: SttService) -> Callable[[], Iterable[Metric]]:
    def collect() -> Iterable[Metric]:
        s = stt.stats()
        lat = s["final_latency_s"]
        bounds = [b for b, _ in lat["buckets"] if b != "+Inf"]
        counts = [n for _, n in lat["buckets"]][: len(bounds)]
        return [
            gauge("siprec_stt_live_streams", "Legs transcribed live now", s["live_streams"]),
            gauge("siprec_stt_queued_legs", "Legs waiting for post-call transcription", s["queued_legs"]),
            counter("siprec_stt_finals", "Final transcript results", s["finals"]),
            counter("siprec_stt_partials", "Partial transcript results", s["partials"]),
            counter("siprec_stt_lagging_switches", "Live legs switched to post-call (fell behind)", s["lagging_switches"]),
            counter("siprec_stt_stream_failures", "Live STT streams that failed", s["stream_failures"]),
            counter("siprec_stt_failovers", "Failed live legs continued on a fallback provider", s["failovers"]),
            counter("siprec_stt_jobs", "Post-call jobs by outcome",
                    {("done",): s["jobs_done"], ("failed",): s["jobs_failed"], ("abandoned",): s["jobs_abandoned"]},
                    labels=("outcome",)),
            histogram("siprec_stt_final_latency_seconds", "End of utterance (last audio fed) to its final result",
                      {(): (bounds, counts, lat["sum"])}),
        ]  # fmt: skip

    return collect
