"""GET /metrics (Prometheus text, when http.enable_metrics) and /metrics/simple (JSON, always), plus the metric
sources of the core (sessions, calls, SIP, RTP, WebSocket hub) that SiprecServer registers.

Families (names as exposed):
  siprec_sessions_active, siprec_sessions_recording_paused, siprec_sessions_transcription_paused  (gauges)
  siprec_calls_started_total, siprec_calls_ended_total{outcome}
  siprec_sip_requests_total{method}, siprec_sip_responses_total{method,code}, siprec_sip_bad_messages_total,
  siprec_sip_transport_messages_total{kind}
  siprec_rtp_packets_received_total{codec}, siprec_rtp_packets_lost_total{codec}, siprec_rtp_packets_late_total{codec},
  siprec_rtp_ports_free, siprec_rtp_ports_in_use  (gauges)
  siprec_websocket_<key> for every numeric key of WebSocketHub.stats() (gauges)
  siprec_process_* and python_* (process and platform collectors)
Later components add theirs with ctx.metrics.add_source (siprec.api.metric_sources explains the shape).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import Metric

from siprec.api.context import ApiContext
from siprec.api.errors import ApiError
from siprec.api.metric_sources import counter, gauge
from siprec.api.routing import Reply, RouteTable, api_context

routes = RouteTable("metrics", "Prometheus and JSON metrics")


@routes.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    responses={200: Reply("Prometheus text format", "text/plain", {"type": "string"})},
)
async def prometheus_metrics(request: web.Request) -> web.StreamResponse:
    ctx = api_context(request)
    if not ctx.config.http.enable_metrics:
        raise ApiError(404, "METRICS_DISABLED", "Prometheus metrics are disabled (http.enable_metrics)")
    return web.Response(
        body=generate_latest(ctx.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


@routes.get(
    "/metrics/simple",
    summary="The registered metrics as JSON",
    responses={200: Reply("{metric: value} or {metric: [{labels, value}]}", schema={"type": "object"})},
)
async def simple_metrics(request: web.Request) -> web.StreamResponse:
    ctx = api_context(request)
    return web.json_response(ctx.metrics.simple())


# --- sources of the core ---------------------------------------------------------------------------------------


def session_source(ctx: ApiContext) -> Callable[[], Iterable[Metric]]:
    def collect() -> Iterable[Metric]:
        live = [s for s in ctx.sessions.sessions if not s.ended]
        calls = ctx.calls
        return [
            gauge("siprec_sessions_active", "Live recording sessions", len(live)),
            gauge(
                "siprec_sessions_recording_paused",
                "Live sessions whose recording is paused",
                sum(1 for s in live if s.recording_paused),
            ),  # fmt: skip
            gauge(
                "siprec_sessions_transcription_paused",
                "Live sessions whose transcription is paused",
                sum(1 for s in live if s.transcription_paused),
            ),  # fmt: skip
            counter("siprec_calls_started", "Recording sessions started", calls.started),
            counter(
                "siprec_calls_ended",
                "Recording sessions ended, by outcome",
                {(reason,): n for reason, n in sorted(calls.ended.items())},
                labels=("outcome",),
            ),  # fmt: skip
        ]

    return collect


class _CoreStats(Protocol):
    requests: dict[str, int]
    responses_by_method: dict[tuple[str, int], int]
    bad_messages: int


def sip_source(stats: _CoreStats, transport_stats: dict[str, int]) -> Callable[[], Iterable[Metric]]:
    """SipCore.stats and SipTransport.stats."""

    def collect() -> Iterable[Metric]:
        return [
            counter(
                "siprec_sip_requests",
                "SIP requests received, by method",
                {(m,): n for m, n in sorted(stats.requests.items())},
                labels=("method",),
            ),  # fmt: skip
            counter(
                "siprec_sip_responses",
                "SIP responses sent, by CSeq method and status code",
                {(m, str(code)): n for (m, code), n in sorted(stats.responses_by_method.items())},
                labels=("method", "code"),
            ),  # fmt: skip
            counter("siprec_sip_bad_messages", "Unparseable SIP messages received", stats.bad_messages),
            counter(
                "siprec_sip_transport_messages",
                "SIP messages through the transports (received, sent, bad, oversize)",
                {(k,): n for k, n in sorted(transport_stats.items())},
                labels=("kind",),
            ),  # fmt: skip
        ]

    return collect


class _Media(Protocol):
    def stats(self) -> dict[str, dict[str, int]]: ...


class _Ports(Protocol):
    @property
    def available(self) -> int: ...

    @property
    def in_use(self) -> int: ...


def rtp_source(media: _Media | None, ports: _Ports | None) -> Callable[[], Iterable[Metric]]:
    """RecordingMedia.stats() by codec and the PortPool's free / used pairs."""

    def collect() -> Iterable[Metric]:
        out: list[Metric] = []
        if media is not None:
            rows = media.stats()
            for key, name, text in (
                ("packets", "siprec_rtp_packets_received", "RTP packets received, by codec"),
                (
                    "lost",
                    "siprec_rtp_packets_lost",
                    "RTP packets lost (sequence gaps never filled), by codec",
                ),
                (
                    "late",
                    "siprec_rtp_packets_late",
                    "RTP packets that arrived after their play-out time, by codec",
                ),
            ):
                values = {(codec,): row[key] for codec, row in rows.items()}
                out.append(counter(name, text, values, labels=("codec",)))
        if ports is not None:
            out.append(gauge("siprec_rtp_ports_free", "RTP/RTCP port pairs free now", ports.available))
            out.append(gauge("siprec_rtp_ports_in_use", "RTP/RTCP port pairs in use", ports.in_use))
        return out

    return collect


def websocket_source(stats: Callable[[], dict[str, Any]]) -> Callable[[], Iterable[Metric]]:
    """WebSocketHub.stats() as gauges: a number -> siprec_websocket_<key>; a {name: number} mapping ->
    siprec_websocket_<key>{name=...} (e.g. clients by path); anything else is left out."""

    def collect() -> Iterable[Metric]:
        out: list[Metric] = []
        for key, value in sorted(stats().items()):
            name, text = f"siprec_websocket_{key}", f"WebSocket hub: {key.replace('_', ' ')}"
            if _number(value):
                out.append(gauge(name, text, value))
            elif isinstance(value, dict) and all(_number(v) for v in value.values()):
                out.append(
                    gauge(name, text, {(str(k),): v for k, v in sorted(value.items())}, labels=("name",))
                )
        return out

    return collect


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
