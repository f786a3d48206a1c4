"""HealthRegistry aggregation (timeouts, failures, critical checks) and MetricsRegistry sources."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from siprec.api.healthchecks import CheckResult, HealthRegistry, HealthStatus, disabled
from siprec.api.metric_sources import MetricsRegistry, counter, gauge, histogram


def fixed(status: str, **details: object):  # noqa: ANN201
    async def check() -> CheckResult:
        return status, details

    return check


async def test_aggregation_rules() -> None:
    reg = HealthRegistry()
    reg.add("sip", fixed("healthy"), critical=True)
    reg.add("amqp", disabled("off"))
    report = await reg.run()
    assert report.status is HealthStatus.HEALTHY and report.ready
    reg.add("store", fixed("degraded", lag=3))
    assert (await reg.run()).status is HealthStatus.DEGRADED
    reg.add("redis", fixed("unhealthy"))  # not critical: degraded, still ready
    report = await reg.run()
    assert report.status is HealthStatus.DEGRADED and report.ready
    reg.add("sip", fixed("unhealthy"), critical=True)  # replaces the first sip check
    report = await reg.run()
    assert report.status is HealthStatus.UNHEALTHY and not report.ready
    assert [c.name for c in report.checks] == ["amqp", "redis", "sip", "store"]
    reg.remove("sip")
    assert (await reg.run()).ready


async def test_a_check_that_hangs_raises_or_lies_is_unhealthy(caplog: pytest.LogCaptureFixture) -> None:
    async def hangs() -> CheckResult:
        await asyncio.sleep(30)
        return "healthy", {}

    async def raises() -> CheckResult:
        raise RuntimeError("broker gone")

    reg = HealthRegistry()
    reg.add("slow", hangs, timeout_s=0.1, critical=True)
    reg.add("boom", raises)
    reg.add("odd", fixed("fine"))
    with caplog.at_level(logging.WARNING, "siprec.api.health"):
        report = await reg.run()
        await reg.run()  # still failing: logged once, not per poll
    by_name = {c.name: c for c in report.checks}
    assert (
        by_name["slow"].status is HealthStatus.UNHEALTHY and "timed out" in by_name["slow"].details["error"]
    )
    assert "broker gone" in by_name["boom"].details["error"]
    assert by_name["odd"].status is HealthStatus.UNHEALTHY
    assert sum("health check boom failed" in r.getMessage() for r in caplog.records) == 1


def test_metric_sources_are_read_at_scrape_time() -> None:
    reg = MetricsRegistry()
    state = {"n": 1}
    reg.add_source("x", lambda: [
        gauge("siprec_x_live", "live things", state["n"]),
        counter("siprec_x_events", "events by kind", {("a",): 2, ("b",): 5}, labels=("kind",)),
        histogram("siprec_x_latency_seconds", "latency", {("p",): ([0.1, 1.0], [3, 4], 1.5)}, labels=("provider",)),
    ])  # fmt: skip
    state["n"] = 7
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(reg.registry).decode())}
    assert families["siprec_x_live"].samples[0].value == 7
    assert {s.labels["kind"]: s.value for s in families["siprec_x_events"].samples if s.name.endswith("_total")} == {
        "a": 2, "b": 5}  # fmt: skip
    buckets = [s for s in families["siprec_x_latency_seconds"].samples if s.name.endswith("_bucket")]
    assert [(s.labels["le"], s.value) for s in buckets] == [("0.1", 3), ("1.0", 4), ("+Inf", 4)]
    assert "siprec_process_resident_memory_bytes" in families
    simple = reg.simple()
    assert simple["siprec_x_live"] == 7
    assert {"labels": {"kind": "b"}, "value": 5} in simple["siprec_x_events_total"]


def test_a_failing_source_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    reg = MetricsRegistry()

    def broken() -> list[object]:
        raise ValueError("no")

    reg.add_source("broken", broken)  # type: ignore[arg-type]
    reg.add_source("ok", lambda: [gauge("siprec_ok", "ok", 1)])
    with caplog.at_level(logging.ERROR, "siprec.api.metrics"):
        text = generate_latest(reg.registry).decode()
        reg.simple()
    assert "siprec_ok 1.0" in text
    assert sum("metric source broken failed" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(ValueError, match="needs a mapping"):
        gauge("siprec_bad", "labelled without labels", 3, labels=("x",))
