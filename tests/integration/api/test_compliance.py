"""/api/compliance against a running SiprecServer over real sockets: status totals, the streamed GDPR ZIP export
(opened with zipfile and compared byte for byte, memory bounded), erasure (dry run, confirmation, files gone, event,
audit line, 409 while a real call is live), auth and the JWT subject in the audit line."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from siprec.events.types import RecordingErased, RecordingReady
from tests.integration.api.conftest import Api, api_server, wait_for
from tests.integration.api.test_recordings import AGENT, CUSTOMER, DAY, DAY1, HOUR, rec_root, write_recording

pytestmark = pytest.mark.integration

KEY = "dpo-key"
HEADERS = {"X-API-Key": KEY}
SECRET = "jwt-secret-for-tests-0123456789abcdef"
AUTH = {"auth": {"api_keys": [KEY], "jwt_secret": SECRET}}
OTHER = ("Other Person", "sip:other@elsewhere.example")


def disk_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


async def post(api: Api, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with api.http.post(api.url(path), json=body, headers=HEADERS if headers is None else headers) as r:
        return r.status, await r.json()


async def export(api: Api, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    url = api.url("/api/compliance/gdpr/export")
    async with api.http.post(url, json=body, headers=HEADERS if headers is None else headers) as r:
        return r.status, r.headers, await r.read()


def archive_of(root: Path) -> dict[str, Path]:
    return {
        "both": write_recording(root, "both@src", DAY1, people=(AGENT, CUSTOMER), transcript=True),
        "agent": write_recording(root, "agent@src", DAY1 + HOUR, people=(AGENT, OTHER)),
        "other": write_recording(root, "other@src", DAY1 + DAY, people=(OTHER, AGENT)),
        "customer": write_recording(root, "customer@src", DAY1 + DAY + HOUR, people=(CUSTOMER, OTHER)),
    }


async def test_status_reports_what_is_held(tmp_path: Path) -> None:
    async with api_server(tmp_path, AUTH) as api:
        root = rec_root(api)
        folders = archive_of(root)
        async with api.http.get(api.url("/api/compliance/status")) as r:
            assert r.status == 200
            status = await r.json()
        held = status["recordings"]
        on_disk = sum(p.stat().st_size for f in folders.values() for p in f.iterdir())
        assert (held["count"], held["days"], held["total_bytes"], held["in_progress"]) == (4, 2, on_disk, 0)
        assert held["oldest_started_at"] == "2026-03-01T09:00:00.000Z"
        assert held["newest_started_at"] == "2026-03-02T10:00:00.000Z"
        assert status["retention"] == {
            "enabled": False,
            "days": None,
            "policy": status["retention"]["policy"],
        }
        assert status["encryption"]["at_rest"] is False and status["encryption"]["sip_tls"] is False
        assert status["gdpr"]["access"] == "write"

        call = await api.call()
        async with api.http.get(api.url("/api/compliance/status")) as r:
            assert (await r.json())["recordings"]["in_progress"] == 1
        await api.manifest_after_bye(call)
        assert (await post(api, "/api/compliance/gdpr/erase", {"call_id": "other@src", "confirm": True}))[
            0
        ] == 200
        async with api.http.get(api.url("/api/compliance/status")) as r:
            held = (await r.json())["recordings"]
        assert (held["count"], held["in_progress"]) == (4, 0)  # one erased, the real call's recording added


async def test_export_is_a_zip_of_every_file_of_every_match(tmp_path: Path) -> None:
    async with api_server(tmp_path, AUTH) as api:
        folders = archive_of(rec_root(api))

        status, headers, data = await export(api, {"call_id": "both@src"})
        assert status == 200 and headers["Content-Type"] == "application/zip"
        assert headers["Content-Disposition"].startswith('attachment; filename="gdpr-export-')
        assert "Content-Length" not in headers and headers["Transfer-Encoding"] == "chunked"  # streamed
        archive = zipfile.ZipFile(io.BytesIO(data))
        assert archive.testzip() is None
        prefix = "recordings/2026-03-01/both@src/"
        expected = disk_files(folders["both"])
        assert set(expected) == {"leg-0-1.wav", "leg-1-2.wav", "combined.wav", "manifest.json", "metadata-1.xml",
                                 "transcript.json"}  # fmt: skip
        assert sorted(archive.namelist()) == sorted([prefix + name for name in expected] + ["index.json"])
        for name, content in expected.items():
            assert archive.read(prefix + name) == content, name
        stored = {i.filename: i.compress_type for i in archive.infolist()}
        assert stored[prefix + "leg-0-1.wav"] == zipfile.ZIP_STORED
        assert stored[prefix + "manifest.json"] == zipfile.ZIP_DEFLATED
        index = json.loads(archive.read("index.json"))
        assert index["subject"] == {"call_id": "both@src"} and index["missing"] == []
        [entry] = index["recordings"]
        assert (entry["call_id"], entry["folder"], entry["state"]) == (
            "both@src",
            "2026-03-01/both@src",
            "completed",
        )
        assert {f["name"]: f["sha256"] for f in entry["files"]} == {
            prefix + name: hashlib.sha256(content).hexdigest() for name, content in expected.items()
        }

        # A participant by phone number, however it is written: every recording with that AOR, no other
        status, _, data = await export(api, {"participant": "+1 (555) 010-9999"})
        assert status == 200
        index = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("index.json"))
        assert [r["call_id"] for r in index["recordings"]] == ["customer@src", "both@src"]
        status, _, data = await export(api, {"participant": "sip:Agent@PBX.example;transport=tcp"})
        names = {
            r["call_id"]
            for r in json.loads(zipfile.ZipFile(io.BytesIO(data)).read("index.json"))["recordings"]
        }
        assert status == 200 and names == {"both@src", "agent@src", "other@src"}
        status, _, data = await export(api, {"participant": "sip:agent@pbx.example", "call_id": "agent@src"})
        assert [r["call_id"] for r in json.loads(zipfile.ZipFile(io.BytesIO(data)).read("index.json"))["recordings"]] == [
            "agent@src"]  # fmt: skip

        status, _, body = await export(api, {"participant": "agent"})  # no substring matching here
        assert status == 404 and json.loads(body)["error"]["code"] == "RECORDING_NOT_FOUND"
        status, _, body = await export(api, {"call_id": "both@src", "participant": "sip:nobody@x"})
        assert status == 404
        for status, _, body in (await export(api, {}), await export(api, {"participant": None})):
            assert status == 400 and json.loads(body)["error"]["code"] == "VALIDATION_ERROR"
        status, _, body = await export(api, {"call_id": "both@src"}, headers={})
        assert status == 401 and json.loads(body)["error"]["code"] == "AUTH_REQUIRED"


async def test_a_long_call_is_exported_without_holding_it_in_memory(tmp_path: Path) -> None:
    async with api_server(tmp_path, AUTH) as api:
        folder = write_recording(rec_root(api), "long@src", DAY1, seconds=240.0)  # 4 min: ~15 MB on disk
        expected = disk_files(folder)
        total = sum(len(v) for v in expected.values())
        assert total > 14_000_000
        out = tmp_path / "export.zip"
        tracemalloc.start()
        try:
            async with api.http.post(
                api.url("/api/compliance/gdpr/export"), json={"call_id": "long@src"}, headers=HEADERS
            ) as r:
                assert r.status == 200
                with out.open("wb") as f:
                    async for chunk in r.content.iter_chunked(64 * 1024):
                        f.write(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < total / 3, f"peak {peak} bytes for a {total}-byte export"
        with zipfile.ZipFile(out) as archive:
            for name, content in expected.items():
                assert archive.read(f"recordings/2026-03-01/long@src/{name}") == content


async def test_erase(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="siprec.audit")
    async with api_server(tmp_path, AUTH) as api:
        folders = archive_of(rec_root(api))
        before = {k: disk_files(f) for k, f in folders.items()}

        status, body = await post(
            api, "/api/compliance/gdpr/erase", {"participant": "sip:+15550109999@carrier.example"}
        )
        assert status == 400 and body["error"]["code"] == "CONFIRMATION_REQUIRED"
        status, dry = await post(
            api, "/api/compliance/gdpr/erase", {"participant": "tel:+15550109999", "dry_run": True}
        )
        assert status == 200 and (dry["erased"], dry["dry_run"]) == (False, True)
        assert [r["call_id"] for r in dry["recordings"]] == ["customer@src", "both@src"]
        assert all(f.is_dir() for f in folders.values())  # a dry run touches nothing
        assert not [e for e in api.events if isinstance(e, RecordingErased)]

        status, done = await post(
            api, "/api/compliance/gdpr/erase", {"participant": "+15550109999", "confirm": True}
        )
        assert status == 200 and (done["erased"], done["dry_run"]) == (True, False)
        by_id = {r["call_id"]: r for r in done["recordings"]}
        assert set(by_id) == {"customer@src", "both@src"}
        for key in ("customer", "both"):
            entry = by_id[f"{key}@src"]
            assert sorted(entry["files"]) == sorted(before[key]) and entry["bytes"] == sum(
                map(len, before[key].values())
            )
            assert not folders[key].exists()
        assert done["files"] == sum(len(r["files"]) for r in done["recordings"])
        assert done == {**dry, "erased": True, "dry_run": False}  # the dry run said exactly this
        assert folders["agent"].is_dir() and disk_files(folders["other"]) == before["other"]

        erased = [e for e in api.events if isinstance(e, RecordingErased)]
        assert sorted((e.call_id, e.folder, e.size_bytes) for e in erased) == sorted(
            (r["call_id"], r["folder"], r["bytes"]) for r in done["recordings"])  # fmt: skip
        assert {e.reason for e in erased} == {"gdpr"} and erased[0].to_dict()["type"] == "recording_erased"
        audit = [
            r.getMessage() for r in caplog.records if r.name == "siprec.audit" and "erased" in r.getMessage()
        ]
        assert len(audit) == 2 and all("by api-key from 127.0.0.1" in line for line in audit)
        assert KEY not in caplog.text

        async with api.http.get(api.url("/api/recordings")) as r:
            assert [x["call_id"] for x in (await r.json())["recordings"]] == ["other@src", "agent@src"]
        async with api.http.get(api.url("/api/recordings/both%40src")) as r:
            assert r.status == 404
        status, body = await post(api, "/api/compliance/gdpr/erase", {"call_id": "both@src", "confirm": True})
        assert (status, body["error"]["code"]) == (404, "RECORDING_NOT_FOUND")

        # A JWT's subject is named in the audit line; no credential at all is refused
        token = jwt.encode(
            {"sub": "dpo@example.com", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"
        )
        status, _ = await post(api, "/api/compliance/gdpr/erase", {"call_id": "agent@src", "confirm": True},
                               headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert status == 200 and "by jwt:dpo@example.com" in caplog.text
        status, body = await post(
            api, "/api/compliance/gdpr/erase", {"call_id": "other@src", "confirm": True}, {}
        )
        assert (status, body["error"]["code"]) == (401, "AUTH_REQUIRED") and folders["other"].is_dir()
        status, body = await post(api, "/api/compliance/gdpr/erase", {"confirm": True})
        assert status == 400 and body["error"]["code"] == "VALIDATION_ERROR"


async def test_erase_is_refused_while_the_call_is_live(tmp_path: Path) -> None:
    async with api_server(tmp_path, AUTH) as api:
        finished = write_recording(
            rec_root(api), "old@src", DAY1, people=(("Alice", "sip:alice@example.com"),)
        )
        call = await api.call()  # Alice and Bob, sip:alice@example.com among them
        await wait_for(lambda: list(rec_root(api).glob(".inprogress/*")), what="the in-progress marker")
        live_folder = next(rec_root(api).glob(f"*/{call.call_id}"))

        status, body = await post(
            api, "/api/compliance/gdpr/erase", {"call_id": call.call_id, "confirm": True}
        )
        assert (status, body["error"]["code"]) == (409, "SESSION_ACTIVE")
        assert body["error"]["details"]["call_ids"] == [call.call_id]
        status, body = await post(api, "/api/compliance/gdpr/erase", {"participant": "sip:alice@example.com",
                                                                       "confirm": True})  # fmt: skip
        assert (
            status == 409 and finished.is_dir() and live_folder.is_dir()
        )  # nothing erased, not even the old one

        await api.manifest_after_bye(call)
        assert any(isinstance(e, RecordingReady) and e.call_id == call.call_id for e in api.events)
        status, body = await post(api, "/api/compliance/gdpr/erase", {"participant": "sip:alice@example.com",
                                                                       "confirm": True})  # fmt: skip
        assert status == 200 and {r["call_id"] for r in body["recordings"]} == {call.call_id, "old@src"}
        assert not live_folder.exists() and not finished.exists()
        assert list(rec_root(api).glob(".inprogress/*")) == []


async def test_without_any_credential_configured_export_and_erase_are_refused(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        folder = write_recording(rec_root(api), "nokey@src", DAY1)
        async with api.http.get(api.url("/api/compliance/status")) as r:
            assert r.status == 200  # reads stay open (auth.require_auth_for_reads false)
        status, _, body = await export(api, {"call_id": "nokey@src"}, headers={})
        assert status == 401 and json.loads(body)["error"]["code"] == "AUTH_NOT_CONFIGURED"
        status, body = await post(
            api, "/api/compliance/gdpr/erase", {"call_id": "nokey@src", "confirm": True}, {}
        )
        assert (status, body["error"]["code"]) == (401, "AUTH_NOT_CONFIGURED") and folder.is_dir()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_clients_that_go_away_mid_download_leak_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with api_server(tmp_path, AUTH) as api:
        folder = write_recording(rec_root(api), "gone@src", DAY1, seconds=240.0)
        await wait_for(lambda: True)
        before = open_fds()
        for _ in range(3):
            async with aiohttp.ClientSession() as http:  # its own connection, closed under the server's feet
                async with http.post(
                    api.url("/api/compliance/gdpr/export"), json={"call_id": "gone@src"}, headers=HEADERS
                ) as r:
                    assert r.status == 200
                    await r.content.readexactly(256 * 1024)
                async with http.get(api.url("/api/recordings/gone%40src/audio/combined")) as r:
                    assert r.status == 200
                    await r.content.readexactly(256 * 1024)
        await wait_for(lambda: open_fds() <= before, what="the server to close every file it opened")
        # The server is fine and the files untouched
        status, _, data = await export(api, {"call_id": "gone@src"})
        assert status == 200
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert (
                archive.read("recordings/2026-03-01/gone@src/combined.wav")
                == (folder / "combined.wav").read_bytes()
            )
        assert "Traceback" not in caplog.text and "internal error" not in caplog.text
