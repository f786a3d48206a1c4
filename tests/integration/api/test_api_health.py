"""/health, /health/live, /health/ready, /status, /metrics and /metrics/simple of a running SiprecServer."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from siprec import __version__
from siprec.api.healthchecks import CheckResult
from tests.integration.api.conftest import Api, api_server, wait_for
from tests.integration.src_client import rtp_packets, rtp_socket, send_paced

pytestmark = pytest.mark.integration


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_health_live_ready_status(api: Api) -> None:
    async with api.http.get(api.url("/health")) as r:
        assert r.status == 200 and r.headers["Server"] == f"siprec/{__version__}"
        health = await r.json()
    assert health["status"] == "healthy" and health["version"] == __version__
    checks = health["checks"]
    assert checks["sip"]["status"] == "healthy" and checks["sip"]["critical"] is True
    assert checks["sip"]["details"]["bound"]["UDP"] == api.sip_port
    assert checks["rtp_ports"]["status"] == "healthy" and checks["rtp_ports"]["details"]["total"] == 500
    assert checks["amqp"]["status"] == "disabled" and checks["redis"]["status"] == "disabled"
    assert checks["websocket"]["status"] == "healthy" and checks["websocket"]["details"]["clients"] == 0
    assert checks["stt"]["status"] == "disabled" and checks["stt"]["details"]["state"] == "disabled"
    assert checks["store"]["status"] == "disabled"
    async with api.http.get(api.url("/health/live")) as r:
        assert r.status == 200 and await r.json() == {"status": "alive"}
    async with api.http.get(api.url("/health/ready")) as r:
        assert r.status == 200 and (await r.json())["status"] == "ready"
    call = await api.call()
    async with api.http.get(api.url("/status")) as r:
        status = await r.json()
    assert status["version"] == __version__ and status["active_sessions"] == 1
    assert status["build"]["python"] and status["uptime_s"] >= 0
    process = status["process"]
    assert process["rss_bytes"] > 10_000_000 and process["open_fds"] > 5 and process["threads"] >= 1
    assert process["cpu_user_s"] > 0
    await api.manifest_after_bye(call)


async def test_a_critical_check_down_is_503_and_not_ready(api: Api) -> None:
    state = {"store": "healthy"}

    async def store_check() -> CheckResult:
        return state["store"], {"url": "sqlite:///x"}

    async def amqp_check() -> CheckResult:
        return "unhealthy", {"error": "connection refused"}

    api.server.api.health.add("amqp", amqp_check)  # not critical: the server is degraded, still ready
    api.server.api.health.add("store", store_check, critical=True)
    async with api.http.get(api.url("/health")) as r:
        assert r.status == 200 and (await r.json())["status"] == "degraded"
    async with api.http.get(api.url("/health/ready")) as r:
        assert r.status == 200
    state["store"] = "unhealthy"
    async with api.http.get(api.url("/health")) as r:
        assert r.status == 503
        error = (await r.json())["error"]
    assert error["code"] == "UNHEALTHY" and error["details"]["checks"]["store"]["status"] == "unhealthy"
    async with api.http.get(api.url("/health/ready")) as r:
        assert r.status == 503
        error = (await r.json())["error"]
    assert error["code"] == "NOT_READY" and "store" in error["message"]
    async with api.http.get(api.url("/health/live")) as r:
        assert r.status == 200  # alive all the same: restarting would not bring the store back


async def test_metrics_after_a_call(api: Api) -> None:
    call = await api.call()
    # 50 packets on leg 0, two of them never sent: 48 received, 2 lost.
    packets = rtp_packets([b"\xff" * 160] * 50, payload_type=0, samples_per_packet=160)
    sent = [p for i, p in enumerate(packets) if i not in (20, 21)]
    with rtp_socket() as sock:
        await send_paced(sock, call.rtp_ports[0], [(i * 0.02, p) for i, p in enumerate(sent)])
    async with api.http.get(api.url("/metrics")) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=")
        during = samples(await r.text())
    assert during[("siprec_sessions_active", ())] == 1
    assert during[("siprec_rtp_ports_in_use", ())] == 2
    await api.manifest_after_bye(call)
    async with api.http.get(api.url("/metrics")) as r:
        after = samples(await r.text())
    assert after[("siprec_sessions_active", ())] == 0
    assert after[("siprec_calls_started_total", ())] == 1
    assert after[("siprec_calls_ended_total", (("outcome", "bye"),))] == 1
    assert after[("siprec_sip_requests_total", (("method", "INVITE"),))] == 1
    assert after[("siprec_sip_requests_total", (("method", "BYE"),))] == 1
    assert after[("siprec_sip_responses_total", (("code", "200"), ("method", "INVITE")))] == 1
    assert after[("siprec_sip_responses_total", (("code", "200"), ("method", "BYE")))] == 1
    assert after[("siprec_sip_responses_total", (("code", "100"), ("method", "INVITE")))] == 1
    assert after[("siprec_rtp_packets_received_total", (("codec", "PCMU"),))] == 48
    assert after[("siprec_rtp_packets_lost_total", (("codec", "PCMU"),))] == 2
    assert after[("siprec_rtp_packets_late_total", (("codec", "PCMU"),))] == 0
    assert after[("siprec_process_open_fds", ())] > 0
    async with api.http.get(api.url("/metrics/simple")) as r:
        simple = await r.json()
    assert simple["siprec_calls_started_total"] == 1
    assert {"labels": {"outcome": "bye"}, "value": 1} in simple["siprec_calls_ended_total"]


async def test_metrics_switched_off(tmp_path: Path) -> None:
    async with api_server(tmp_path, {"http": {"enable_metrics": False}}) as api:
        async with api.http.get(api.url("/metrics")) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "METRICS_DISABLED"
        async with api.http.get(api.url("/metrics/simple")) as r:
            assert r.status == 200 and "siprec_sessions_active" in await r.json()


async def test_http_stops_first_and_a_taken_port_fails_the_start(tmp_path: Path) -> None:
    async with api_server(tmp_path / "a") as first:
        port = first.server.http_port
        with pytest.raises(OSError):
            async with api_server(tmp_path / "b", {"http": {"port": port}}):
                pass
        async with first.http.get(first.url("/health/live")) as r:
            assert r.status == 200
    # Both servers stopped: the HTTP port is free again.
    async with api_server(tmp_path / "c", {"http": {"port": port}}) as again:
        await wait_for(lambda: again.server.http_port == port, what="same port")
