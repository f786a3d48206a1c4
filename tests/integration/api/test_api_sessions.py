"""/api/sessions, /api/sessions/stats and pause/resume against a running server with real SIPREC calls; auth by
X-API-Key header, ?api_key=, JWT HS256 and RS256 (keys generated here)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from siprec.events.types import RecordingReady, SessionPaused, SessionResumed
from siprec.recording.wav import read_wav
from tests.integration.api.conftest import Api, api_server, wait_for
from tests.integration.src_client import rtp_packets, rtp_socket, send_paced

pytestmark = pytest.mark.integration

KEY = {"X-API-Key": "admin-key"}
AUTH = {"auth": {"api_keys": ["admin-key"]}}
PAUSE_STATUS_KEYS = {"session_id", "is_paused", "recording_paused", "transcription_paused", "paused_at",
                     "pause_duration", "auto_resume_at", "reasons"}  # fmt: skip


async def get(api: Api, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with api.http.get(api.url(path), headers=headers or {}) as r:
        return r.status, await r.json()


async def post(
    api: Api, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with api.http.post(api.url(path), json=body, headers=headers or {}) as r:
        return r.status, await r.json()


async def test_sessions_list_one_and_stats(tmp_path: Path) -> None:
    async with api_server(tmp_path, AUTH) as api:
        assert await get(api, "/api/sessions") == (200, {"count": 0, "sessions": []})
        first, second = await api.call(), await api.call(("Carol", "Dave"))
        status, listing = await get(api, "/api/sessions")
        assert status == 200 and listing["count"] == 2
        session = listing["sessions"][0]
        assert session["call_id"] == first.call_id and session["state"] == "active"
        assert session["participants"] == ["sip:alice@example.com", "sip:bob@example.com"]
        assert session["participant_details"][0] == {
            "id": "p0",
            "aor": "sip:alice@example.com",
            "name": "Alice",
        }
        assert session["recording_path"].endswith("/combined.wav")
        assert Path(session["recording_path"]).parent == Path(session["folder"])
        assert Path(session["folder"]).is_dir() and session["created_at"].endswith("Z")
        assert [(leg["index"], leg["codec"], leg["participant"]["name"]) for leg in session["legs"]] == [
            (0, "PCMU", "Alice"), (1, "PCMU", "Bob")]  # fmt: skip
        assert session["analytics"]["rtp"]["packets_received"] == 0
        assert set(session["pause"]) == PAUSE_STATUS_KEYS and session["pause"]["is_paused"] is False
        status, one = await get(api, f"/api/sessions?id={quote(second.call_id)}")
        assert status == 200 and one["count"] == 1 and one["sessions"][0]["call_id"] == second.call_id
        status, missing = await get(api, "/api/sessions?id=nope@nowhere")
        assert status == 404 and missing["error"]["code"] == "SESSION_NOT_FOUND"
        status, paused = await post(
            api, f"/api/sessions/{quote(first.call_id)}/pause", {"pause_transcription": False}, KEY
        )
        assert status == 200 and paused["recording_paused"] and not paused["transcription_paused"]
        status, listed = await get(api, f"/api/sessions?id={quote(first.call_id)}")
        assert listed["sessions"][0]["state"] == "paused" and listed["sessions"][0]["pause"]["reasons"] == [
            "api"
        ]
        status, stats = await get(api, "/api/sessions/stats")
        assert status == 200
        assert stats["active_sessions"] == 2 and stats["paused_sessions"] == 1 and stats["legs"] == 4
        assert stats["by_codec"] == {"PCMU": 4} and stats["by_state"] == {"paused": 1, "active": 1}
        await api.manifest_after_bye(first)
        await api.manifest_after_bye(second)
        status, stats = await get(api, "/api/sessions/stats")
        assert stats["active_sessions"] == 0 and stats["calls_started"] == 2
        assert stats["calls_by_outcome"] == {"bye": 2}


async def test_combine_legs_off_points_at_the_folder(tmp_path: Path) -> None:
    async with api_server(tmp_path, {"recording": {"combine_legs": False}}) as api:
        call = await api.call()
        _, listing = await get(api, "/api/sessions")
        session = listing["sessions"][0]
        assert session["recording_path"] == session["folder"]
        await api.manifest_after_bye(call)


async def test_pause_recording_silences_every_leg_and_shows_in_the_manifest(tmp_path: Path) -> None:
    async with api_server(tmp_path, AUTH) as api:
        call = await api.call()
        path = f"/api/sessions/{quote(call.call_id)}"
        tone = (np.full(160, 0x10, dtype=np.uint8)).tobytes()  # loud G.711 u-law: never decodes to 0
        packets = rtp_packets([tone] * 250, payload_type=0, samples_per_packet=160)  # 5 s
        with rtp_socket() as sock:
            sending = send_paced(sock, call.rtp_ports[0], [(i * 0.02, p) for i, p in enumerate(packets)])
            sender = asyncio.ensure_future(sending)
            await asyncio.sleep(0.8)
            status, paused = await post(
                api, path + "/pause", {"pause_recording": True, "pause_transcription": False}, KEY
            )
            assert status == 200 and set(paused) == PAUSE_STATUS_KEYS
            assert paused["session_id"] == call.call_id and paused["is_paused"] and paused["recording_paused"]
            assert not paused["transcription_paused"] and paused["reasons"] == ["api"] and paused["paused_at"]
            await asyncio.sleep(1.0)
            status, again = await get(api, path + "/pause-status", KEY)
            assert status == 200 and again["pause_duration"] >= 0.9
            status, resumed = await post(api, path + "/resume", None, KEY)
            assert status == 200 and resumed["is_paused"] is False and resumed["paused_at"] is None
            await sender
        # The RTP counters the media worker reports every half second reach the session view (paused packets
        # are received and counted too).
        deadline = time.monotonic() + 10
        while True:
            _, listed = await get(api, f"/api/sessions?id={quote(call.call_id)}")
            rtp = listed["sessions"][0]["analytics"]["rtp"]
            if rtp["packets_received"] == len(packets) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert rtp["packets_received"] == len(packets) and rtp["packets_lost"] == 0
        assert [(leg["index"], leg["codec"], leg["packets_received"]) for leg in rtp["legs"]] == [
            (0, "PCMU", len(packets)), (1, "PCMU", 0)]  # fmt: skip
        manifest = await api.manifest_after_bye(call)
    pauses = [(p["scope"], p["reason"]) for p in manifest["pauses"]]
    assert pauses == [("session", "api")] and manifest["pauses"][0]["end"] is not None
    ready = next(e for e in api.events if isinstance(e, RecordingReady))
    pcm, rate = read_wav(Path(ready.folder) / manifest["legs"][0]["file"])
    assert rate == 8000
    # The pause is silence in the middle of the tone: as long as the manifest's pause, give or take the jitter
    # buffer and packetisation; tone before and after it.
    pause = manifest["pauses"][0]
    held_s = (datetime.fromisoformat(pause["end"]) - datetime.fromisoformat(pause["start"])).total_seconds()
    silent_s = np.count_nonzero(pcm == 0) / 8000
    assert held_s >= 0.9 and abs(silent_s - held_s) < 0.3, (silent_s, held_s)
    assert pcm[:4000].all() and pcm[-2000:].all()
    paused_events = [e for e in api.events if isinstance(e, SessionPaused)]
    assert [(e.reason, e.recording_paused, e.transcription_paused) for e in paused_events] == [
        ("api", True, False)
    ]


async def test_pause_transcription_only_and_auto_resume(tmp_path: Path) -> None:
    async with api_server(tmp_path, AUTH) as api:
        call = await api.call()
        path = f"/api/sessions/{quote(call.call_id)}"
        body = {"pause_recording": False, "pause_transcription": True, "auto_resume_after": 1.5}
        status, paused = await post(api, path + "/pause", body, KEY)
        assert status == 200 and paused["transcription_paused"] and not paused["recording_paused"]
        assert paused["auto_resume_at"] is not None and paused["is_paused"]
        session = api.server.api.sessions.session(call.call_id)
        assert session is not None and session.transcription_paused  # what the STT pipeline reads
        resumed = await wait_for(lambda: next((e for e in api.events if isinstance(e, SessionResumed)), None),
                                 what="auto-resume")  # fmt: skip
        assert resumed.reason == "api" and not resumed.transcription_paused
        _, status_now = await get(api, path + "/pause-status", KEY)
        assert status_now["is_paused"] is False and status_now["auto_resume_at"] is None
        manifest = await api.manifest_after_bye(call)
    [pause] = manifest["pauses"]
    assert (pause["scope"], pause["reason"]) == ("transcription", "api") and pause["end"] is not None


async def test_pause_all_resume_all_and_status_map(tmp_path: Path) -> None:
    async with api_server(tmp_path, AUTH) as api:
        calls = [await api.call(), await api.call()]
        status, result = await post(api, "/api/sessions/pause-all", None, KEY)  # no body: pause both
        assert status == 200 and result["changed"] == 2 and result["message"] == "All sessions paused"
        assert {c.call_id for c in calls} == set(result["statuses"])
        assert all(s["recording_paused"] and s["transcription_paused"] for s in result["statuses"].values())
        status, statuses = await get(api, "/api/sessions/pause-status", KEY)
        assert status == 200 and set(statuses) == {c.call_id for c in calls}
        status, again = await post(api, "/api/sessions/pause-all", {"pause_recording": True}, KEY)
        assert again["changed"] == 0
        status, result = await post(api, "/api/sessions/resume-all", {"resume_transcription": False}, KEY)
        assert result["changed"] == 2
        assert all(
            not s["recording_paused"] and s["transcription_paused"] for s in result["statuses"].values()
        )
        for call in calls:
            await api.manifest_after_bye(call)


async def test_unknown_session_and_bad_bodies(tmp_path: Path) -> None:
    async with api_server(tmp_path, AUTH) as api:
        for method, path in (("POST", "/pause"), ("POST", "/resume"), ("GET", "/pause-status")):
            async with api.http.request(
                method, api.url("/api/sessions/no%2Fsuch%40call" + path), headers=KEY
            ) as r:
                body = await r.json()
                assert r.status == 404 and body["error"]["code"] == "SESSION_NOT_FOUND"
                assert body["error"]["details"] == {"call_id": "no/such@call"}
        call = await api.call()
        path = f"/api/sessions/{quote(call.call_id)}/pause"
        for bad in ({"auto_resume_after": -1}, {"pause_recording": "maybe"}, [1]):
            status, body = await post(api, path, bad, KEY)
            assert status == 400 and body["error"]["code"] == "VALIDATION_ERROR"
        async with api.http.post(
            api.url(path), data=b"{", headers={**KEY, "Content-Type": "application/json"}
        ) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "INVALID_JSON"
        async with api.http.put(api.url(path), headers=KEY) as r:
            assert r.status == 405 and (await r.json())["error"]["code"] == "METHOD_NOT_ALLOWED"
        await api.manifest_after_bye(call)


async def test_pause_resume_disabled_and_per_session_off(tmp_path: Path) -> None:
    async with api_server(tmp_path / "off", {"pause_resume": {"enabled": False}, **AUTH}) as api:
        call = await api.call()
        for path in (f"/api/sessions/{quote(call.call_id)}/pause", "/api/sessions/pause-all"):
            status, body = await post(api, path, None, KEY)
            assert status == 404 and body["error"]["code"] == "PAUSE_RESUME_DISABLED"
        await api.manifest_after_bye(call)
    async with api_server(tmp_path / "all", {"pause_resume": {"per_session": False}, **AUTH}) as api:
        call = await api.call()
        status, body = await post(api, f"/api/sessions/{quote(call.call_id)}/pause", None, KEY)
        assert status == 403 and body["error"]["code"] == "PER_SESSION_DISABLED"
        assert (await post(api, "/api/sessions/pause-all", None, KEY))[0] == 200
        await api.manifest_after_bye(call)


def rsa_key(tmp: Path) -> tuple[rsa.RSAPrivateKey, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp / "jwt-public.pem"
    path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    return key, path


async def test_auth_paths(tmp_path: Path) -> None:
    secret = "hs256-secret-" + "x" * 20
    key, public = rsa_key(tmp_path)
    config = {
        "auth": {"api_keys": ["admin-key"], "jwt_secret": secret, "jwt_public_key_file": str(public),
                 "require_auth_for_reads": True},
        "pause_resume": {"api_key": "pause-only"},
    }  # fmt: skip
    async with api_server(tmp_path, config) as api:
        hs = jwt.encode({"sub": "ops", "exp": time.time() + 300}, secret, "HS256")
        rs = jwt.encode({"sub": "ops", "exp": time.time() + 300}, key, "RS256")
        expired = jwt.encode({"sub": "ops", "exp": time.time() - 5}, secret, "HS256")
        accepted = [
            ("/api/sessions", {"X-API-Key": "admin-key"}),
            ("/api/sessions?api_key=admin-key", {}),
            ("/api/sessions", {"Authorization": f"Bearer {hs}"}),
            ("/api/sessions", {"Authorization": f"Bearer {rs}"}),
            ("/api/sessions/pause-status", {"X-API-Key": "pause-only"}),
            ("/health", {}),  # probes never ask
            ("/api/openapi.json", {}),
        ]
        for path, headers in accepted:
            async with api.http.get(api.url(path), headers=headers) as r:
                assert r.status == 200, (path, headers, await r.text())
        refused = [
            ("/api/sessions", {}, "AUTH_REQUIRED"),
            ("/status", {}, "AUTH_REQUIRED"),
            ("/metrics", {}, "AUTH_REQUIRED"),
            ("/api/sessions", {"X-API-Key": "wrong"}, "INVALID_API_KEY"),
            (
                "/api/sessions?api_key=pause-only",
                {},
                "INVALID_API_KEY",
            ),  # the pause key is for pause routes only
            ("/api/sessions", {"Authorization": f"Bearer {expired}"}, "INVALID_TOKEN"),
            ("/api/sessions", {"Authorization": "Bearer garbage"}, "INVALID_TOKEN"),
        ]
        for path, headers, code in refused:
            async with api.http.get(api.url(path), headers=headers) as r:
                body = await r.json()
                assert (r.status, body["error"]["code"]) == (401, code), path
                assert r.headers["WWW-Authenticate"].startswith('Bearer realm="siprec"')
        async with api.http.get(api.url("/metrics"), headers={"Authorization": "Bearer admin-key"}) as r:
            assert r.status == 200  # a scraper's bearer_token may be an API key


async def test_pause_needs_a_credential_by_default(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:  # pause_resume.require_auth true and nothing configured
        status, body = await post(api, "/api/sessions/pause-all")
        assert status == 401 and body["error"]["code"] == "AUTH_NOT_CONFIGURED"
    async with api_server(tmp_path / "open", {"pause_resume": {"require_auth": False}}) as api:
        status, body = await post(api, "/api/sessions/pause-all")
        assert status == 200 and body["changed"] == 0
