"""Metric sources, read at scrape time for /metrics (Prometheus text) and /metrics/simple (JSON).

A source is a callable with no argument returning an iterable of prometheus_client metric families (the objects a
Prometheus collector's collect() yields). Register it with one line:

    ctx.metrics.add_source("amqp", lambda: [
        counter("siprec_amqp_published", "Events published to RabbitMQ", publisher.published),
        counter("siprec_amqp_confirmed", "Events confirmed by RabbitMQ", publisher.confirmed),
        gauge("siprec_amqp_outbox_depth", "Events stored but not yet confirmed", outbox.depth),
    ])

Labelled values: counter("siprec_x", "help", {("PCMU",): 12, ("PCMA",): 3}, labels=("codec",)).
Histograms: histogram("siprec_stt_latency_seconds", "help", bounds, counts, total, labels=(...)) with cumulative
bucket counts, or keep a prometheus_client Histogram in a private CollectorRegistry and register its `collect`:
    ctx.metrics.add_source("stt", stt_registry.collect)
Names start with `siprec_`; a counter's family name has no `_total` (the exposition adds it). A source must be
cheap (it runs on every scrape, on the event loop) and must not block. A source that raises is skipped for that
scrape and logged once until it works again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

log = logging.getLogger("siprec.api.metrics")

MetricSource = Callable[[], Iterable[Metric]]
Values = float | int | Mapping[tuple[str, ...], float | int]


def counter(name: str, documentation: str, values: Values, *, labels: Sequence[str] = ()) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=list(labels) if labels else None)
    _fill(family, values, labels)
    return family


def gauge(name: str, documentation: str, values: Values, *, labels: Sequence[str] = ()) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=list(labels) if labels else None)
    _fill(family, values, labels)
    return family


def histogram(
    name: str,
    documentation: str,
    series: Mapping[tuple[str, ...], tuple[Sequence[float], Sequence[int], float]],
    *,
    labels: Sequence[str] = (),
) -> Metric:
    """series: label values -> (upper bounds, cumulative counts per bound, sum); +Inf is added when missing."""
    family = HistogramMetricFamily(name, documentation, labels=list(labels) if labels else None)
    for label_values, (bounds, counts, total) in series.items():
        buckets = [(_bound(b), float(c)) for b, c in zip(bounds, counts, strict=True)]
        if not buckets or buckets[-1][0] != "+Inf":
            buckets.append(("+Inf", float(counts[-1]) if counts else 0.0))
        family.add_metric(list(label_values), buckets, float(total))
    return family


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(float(value))


def _fill(family: Metric, values: Values, labels: Sequence[str]) -> None:
    if isinstance(values, Mapping):
        for label_values, value in values.items():
            family.add_metric(list(label_values), float(value))  # type: ignore[attr-defined]
    else:
        if labels:
            raise ValueError(f"{family.name}: labelled metric needs a mapping of label values")
        family.add_metric([], float(values))  # type: ignore[attr-defined]


class MetricsRegistry:
    """Named sources plus the process collectors; `registry` is what the Prometheus exposition reads."""

    def __init__(self) -> None:
        self._sources: dict[str, MetricSource] = {}
        self._failing: set[str] = set()
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(namespace="siprec", registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(self)  # type: ignore[arg-type]  # a collector: anything with collect()

    def add_source(self, name: str, source: MetricSource) -> None:
        """Register (or replace) the source `name`."""
        self._sources[name] = source

    def remove_source(self, name: str) -> None:
        self._sources.pop(name, None)

    @property
    def names(self) -> list[str]:
        return sorted(self._sources)

    def collect(self) -> Iterable[Metric]:
        """Every family of every source (a failing source is skipped); the Prometheus collector protocol."""
        for name in self.names:
            try:
                families = list(self._sources[name]())
            except Exception:
                if name not in self._failing:
                    log.exception("metric source %s failed", name)
                    self._failing.add(name)
                continue
            self._failing.discard(name)
            yield from families

    def simple(self) -> dict[str, Any]:
        """The registered sources as JSON: {name: value} for unlabelled samples, {name: [{labels, value}]}
        for labelled ones (process collectors left out; /metrics has them)."""
        out: dict[str, Any] = {}
        for family in self.collect():
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                value = sample.value if math.isfinite(sample.value) else str(sample.value)
                if sample.labels:
                    out.setdefault(sample.name, []).append({"labels": dict(sample.labels), "value": value})
                else:
                    out[sample.name] = value
        return out
