"""/api/config, /api/config/validate, /api/config/reload and /api/config/reload/status against a real SiprecServer
started from a YAML file (SIP and HTTP on free loopback ports), with the reloader wired as the server would wire it:
a reload really changes the API keys, the log level, the admission limits (a second SIPREC call gets 503), CORS and
pause_resume.per_session; restart-required keys are listed and left alone; a bad file changes nothing."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from siprec.api.context import ApiContext
from siprec.api.server import ApiServer
from siprec.app import SiprecServer
from siprec.appliers import register_components
from siprec.config import config_from_mapping, load_config
from siprec.events.bus import EventBus
from siprec.reload import ConfigReloader
from tests.integration.src_client import LegOffer, SrcCall

pytestmark = pytest.mark.integration

OLD = {"X-API-Key": "old-key"}
NEW = {"X-API-Key": "new-key"}
ORIGIN = "https://ops.example"


def base_config(tmp: Path) -> dict[str, Any]:
    return {
        "sip": {"host": "127.0.0.1", "udp_port": 0, "tcp_port": 0, "advertised_host": "127.0.0.1"},
        "http": {"host": "127.0.0.1", "port": 0},
        "rtp": {"port_min": 48000, "port_max": 48199},
        "recording": {"dir": str(tmp / "recordings")},
        "store": {"url": f"sqlite:///{tmp / 'siprec.db'}"},
        "amqp": {"url": "amqp://guest:hunter2@127.0.0.1:5672/"},
        "auth": {"api_keys": ["old-key"], "jwt_secret": "shh"},
        "log": {"level": "INFO"},
        "limits": {"max_sessions": 0},
        "stt": {"provider": "none"},  # no model to load: these tests are about the config
    }


@dataclass
class Served:
    path: Path
    data: dict[str, Any]
    server: SiprecServer
    reloader: ConfigReloader
    http: aiohttp.ClientSession

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.http_port}{path}"

    def rewrite(self, **sections: dict[str, Any]) -> None:
        for name, values in sections.items():
            self.data.setdefault(name, {}).update(values)
        self.path.write_text(json.dumps(self.data), encoding="utf-8")

    async def call(self) -> SrcCall:
        call = SrcCall(self.server.transport.bound["UDP"])
        await call.invite([LegOffer(label="1", participant="Alice")])
        return call


@pytest.fixture
def root_level() -> Iterator[None]:
    root = logging.getLogger()
    before = root.level
    yield
    root.setLevel(before)


@asynccontextmanager
async def served(tmp: Path) -> AsyncIterator[Served]:
    data = base_config(tmp)
    path = tmp / "siprec.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    config = load_config(path, env={})
    server = SiprecServer(config)
    # as SiprecServer would wire it (see the final report): the file it was loaded from, the shared Config
    reloader = ConfigReloader(config.source, config, env={})
    register_components(reloader, api=server.api, admission=server.admission)
    server.api.reloader = reloader
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Served(path, data, server, reloader, http)
    finally:
        await server.stop()


async def error_of(response: aiohttp.ClientResponse) -> dict[str, Any]:
    body = await response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return body["error"]


async def test_get_config_shows_the_config_in_force_with_secrets_redacted(tmp_path: Path) -> None:
    async with served(tmp_path) as s:
        async with s.http.get(s.url("/api/config")) as r:
            assert r.status == 200
            body = await r.json()
        assert body["auth"]["api_keys"] == ["***"] and body["auth"]["jwt_secret"] == "***"
        assert body["amqp"]["url"] == "amqp://guest:***@127.0.0.1:5672/"
        assert body["rtp"]["port_min"] == 48000 and body["log"]["level"] == "INFO"
        assert "hunter2" not in json.dumps(body) and "old-key" not in json.dumps(body)


async def test_reload_applies_keys_limits_and_log_level_and_leaves_restart_keys(
    tmp_path: Path, root_level: None
) -> None:
    async with served(tmp_path) as s:
        udp_port = s.server.transport.bound["UDP"]
        async with s.http.post(s.url("/api/config/reload"), headers=OLD) as r:
            assert r.status == 200
            assert (await r.json())["result"] == "no_changes"

        s.rewrite(
            auth={"api_keys": ["new-key"]}, log={"level": "DEBUG"}, limits={"max_sessions": 1},
            sip={"udp_port": 5999}, http={"cors_origins": [ORIGIN]}, pause_resume={"per_session": False},
        )  # fmt: skip
        async with s.http.post(s.url("/api/config/reload"), headers=OLD) as r:
            assert r.status == 200  # authorised with the keys in force when it arrived
            report = await r.json()
        assert report["result"] == "applied" and report["trigger"] == "api"
        assert report["applied"] == [
            "auth.api_keys", "http.cors_origins", "limits.max_sessions", "log.level", "pause_resume.per_session"
        ]  # fmt: skip
        assert report["restart_required"] == ["sip.udp_port"]
        assert report["appliers"] == ["logging", "api-auth", "sip-admission"]
        modes = {c["key"]: (c["mode"], c["old"], c["new"]) for c in report["changes"]}
        assert modes["log.level"] == ("applied", "INFO", "DEBUG")
        assert modes["auth.api_keys"] == ("applied", ["***"], ["***"])
        assert modes["sip.udp_port"] == ("restart", 0, 5999)
        assert modes["http.cors_origins"][0] == "live"

        # the old key is refused, the new one accepted
        async with s.http.post(s.url("/api/config/reload"), headers=OLD) as r:
            assert r.status == 401
            assert (await error_of(r))["code"] == "INVALID_API_KEY"
        async with s.http.post(s.url("/api/config/reload"), headers=NEW) as r:
            assert r.status == 200
            again = await r.json()
        assert (again["result"], again["applied"], again["restart_required"]) == (
            "restart_required", [], ["sip.udp_port"]
        )  # fmt: skip

        # log level and CORS in force
        assert logging.getLogger().level == logging.DEBUG
        async with s.http.get(s.url("/api/config"), headers={"Origin": ORIGIN}) as r:
            assert r.headers.get("Access-Control-Allow-Origin") == ORIGIN
            live = await r.json()
        # restart-required: not in force, the socket did not move
        assert live["sip"]["udp_port"] == 0 and s.server.transport.bound["UDP"] == udp_port
        assert live["limits"]["max_sessions"] == 1

        # admission: one session at most now
        first = await s.call()
        second = SrcCall(udp_port)
        with pytest.raises(AssertionError, match="INVITE answered 503"):
            await second.invite([LegOffer(label="1", participant="Bob")])
        second.close()
        # pause_resume.per_session is read live
        async with s.http.post(s.url(f"/api/sessions/{first.call_id}/pause"), headers=NEW) as r:
            assert r.status == 403
            assert (await error_of(r))["code"] == "PER_SESSION_DISABLED"
        assert await first.bye() == 200
        first.close()

        async with s.http.get(s.url("/api/config/reload/status")) as r:
            assert r.status == 200
            status = await r.json()
        assert status["source"] == str(s.path) and status["reloads"] == 3
        assert status["last_attempt"]["result"] == "restart_required"
        assert status["pending_restart"] == ["sip.udp_port"] and status["last_applied_at"]
        assert status["keys"]["sip.udp_port"] == "restart"
        assert status["keys"]["auth.api_keys"] == "applied"
        assert status["keys"]["recording.combine_legs"] == "live"
        assert status["keys"]["webhooks.urls"] == "restart"  # no webhook sender wired here
        assert status["appliers"] == ["logging", "api-auth", "sip-admission"]


async def test_a_bad_file_changes_nothing_and_says_why(tmp_path: Path) -> None:
    async with served(tmp_path) as s:
        before = s.server.config.model_dump()
        s.rewrite(auth={"api_keys": ["new-key"]}, rtp={"port_min": 48001}, log={"level": "LOUD"})
        async with s.http.post(s.url("/api/config/reload"), headers=OLD) as r:
            assert r.status == 422
            err = await error_of(r)
        assert err["code"] == "CONFIG_INVALID" and err["details"]["source"] == str(s.path)
        assert {p["path"] for p in err["details"]["problems"]} == {"rtp.port_min", "log.level"}
        assert s.server.config.model_dump() == before
        async with s.http.get(s.url("/api/config/reload/status"), headers=NEW) as r:
            status = await r.json()
        assert status["last_attempt"]["result"] == "invalid" and status["last_attempt"]["problems"]
        assert status["last_applied_at"] is None and status["pending_restart"] == []
        async with s.http.post(s.url("/api/config/reload"), headers=NEW) as r:
            assert r.status == 401  # the new key was never applied


async def test_validate_checks_a_document_without_applying_it(tmp_path: Path) -> None:
    async with served(tmp_path) as s:
        before = s.server.config.model_dump()
        doc = "\n".join(
            [
                "sip: {host: 127.0.0.1, udp_port: 0, tcp_port: 0, advertised_host: 127.0.0.1}",
                "http: {host: 127.0.0.1, port: 0}",
                "rtp: {port_min: 48000, port_max: 48199}",
                f"recording: {{dir: {tmp_path / 'recordings'}}}",
                f"store: {{url: 'sqlite:///{tmp_path / 'siprec.db'}'}}",
                "amqp: {url: 'amqp://guest:hunter2@127.0.0.1:5672/'}",
                "auth: {api_keys: [old-key], jwt_secret: shh}",
                "limits: {max_sessions: 3}",
                "stt: {max_concurrent: 2, provider: pocketsphinx}",  # the file says none
            ]
        )
        headers = {**OLD, "Content-Type": "application/yaml"}
        async with s.http.post(s.url("/api/config/validate"), data=doc, headers=headers) as r:
            assert r.status == 200
            ok = await r.json()
        assert ok["valid"] is True and ok["problems"] == []
        assert ok["hot"] == ["limits.max_sessions", "stt.max_concurrent"]
        assert ok["restart_required"] == ["stt.provider"]
        assert ok["unchanged"] > 50

        bad = json.dumps({"sip": {"udp_port": 70000}, "limits": {"max_sessions": -1}, "rpt": {}})
        headers = {**OLD, "Content-Type": "application/json"}
        async with s.http.post(s.url("/api/config/validate"), data=bad, headers=headers) as r:
            assert r.status == 200
            checked = await r.json()
        assert checked["valid"] is False and checked["changes"] == []
        problems = {p["path"]: p["message"] for p in checked["problems"]}
        assert set(problems) == {"sip.udp_port", "limits.max_sessions", "rpt"}
        assert "did you mean rtp?" in problems["rpt"]

        async with s.http.post(
            s.url("/api/config/validate"), data="log: [", headers={**OLD, "Content-Type": "text/yaml"}
        ) as r:
            broken = await r.json()
        assert broken["valid"] is False and broken["problems"][0]["path"] == "body"

        for data, ctype, status, code in (
            (b"RIFF....WAVE", "audio/wav", 415, "UNSUPPORTED_MEDIA_TYPE"),
            (b"\xff\xfe", "text/plain", 400, "INVALID_ENCODING"),
        ):
            async with s.http.post(
                s.url("/api/config/validate"), data=data, headers={**OLD, "Content-Type": ctype}
            ) as r:
                assert r.status == status, ctype
                assert (await error_of(r))["code"] == code
        async with s.http.post(s.url("/api/config/validate"), headers=OLD) as r:
            assert r.status == 400 and (await error_of(r))["code"] == "BODY_REQUIRED"
        async with s.http.post(
            s.url("/api/config/validate"), data=b"", headers={**OLD, "Content-Type": "application/yaml"}
        ) as r:
            empty = await r.json()  # an empty document: the defaults, as an empty file
        assert (
            empty["valid"] is True
            and "auth.api_keys" in empty["hot"]
            and "sip.host" in empty["restart_required"]
        )
        async with s.http.post(s.url("/api/config/validate"), data=doc) as r:
            assert r.status == 401
            assert (await error_of(r))["code"] == "AUTH_REQUIRED"
        assert s.server.config.model_dump() == before and s.reloader.reloads == 0


async def test_without_a_reloader_or_credentials() -> None:
    config = config_from_mapping({})
    ctx = ApiContext(config, _NoSessions(), EventBus())  # type: ignore[arg-type]
    api = ApiServer(ctx)
    await api.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{api.port}"
            async with http.get(base + "/api/config") as r:
                assert r.status == 200 and (await r.json())["http"]["port"] == 8080
            async with http.get(base + "/api/config/reload/status") as r:
                assert r.status == 503
                assert (await error_of(r))["code"] == "RELOAD_UNAVAILABLE"
            async with http.post(base + "/api/config/reload") as r:
                assert r.status == 401  # WRITE with no credential configured: refused before anything
                assert (await error_of(r))["code"] == "AUTH_NOT_CONFIGURED"
            ctx.auth = type(ctx.auth)(
                config_from_mapping({"auth": {"api_keys": ["k"]}}).auth, config.pause_resume
            )
            async with http.post(base + "/api/config/reload", headers={"X-API-Key": "k"}) as r:
                assert r.status == 503
                assert (await error_of(r))["code"] == "RELOAD_UNAVAILABLE"
            async with http.post(
                base + "/api/config/validate",
                data="{}",
                headers={"X-API-Key": "k", "Content-Type": "application/json"},
            ) as r:
                body = await r.json()
            assert body["valid"] is True and body["changes"] == []
    finally:
        await api.stop()


class _NoSessions:
    sessions: tuple[()] = ()

    def session(self, call_id: str) -> None:
        return None
