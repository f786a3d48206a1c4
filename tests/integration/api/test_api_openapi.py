"""/api/openapi.json matches the routes, checked by schemathesis (every check, bounded examples) against a running
server with a live call, over real sockets."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.integration.api.conftest import Api, api_server
from tests.support import require

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ST = Path(sys.executable).parent / "st"
KEY = "schemathesis-key"
# The operations of this module's routes (health, metrics, sessions, the document itself). Route modules written
# by others (recordings, compliance, config) add their tag here once their routes are complete.
TAGS = ("health", "metrics", "sessions", "meta")


async def test_the_document_lists_exactly_the_routes(api: Api) -> None:
    async with api.http.get(api.url("/api/openapi.json")) as r:
        assert r.status == 200
        doc = await r.json()
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    app = api.server.http.app
    assert app is not None
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and not route.resource.canonical.startswith("/ws/")  # WebSockets: docs/api.md
    }
    assert documented == served
    assert {"/health", "/metrics", "/api/sessions", "/api/sessions/{id}/pause", "/api/openapi.json"} <= set(
        doc["paths"]
    )


async def run_schemathesis(api: Api, workdir: Path, call_id: str, *extra: str) -> str:
    require(ST.exists(), "schemathesis CLI (st) in the virtualenv")
    config = workdir / "schemathesis.toml"
    config.write_text(f'[parameters]\n"path.id" = "{call_id}"\n')  # a live session for the {id} routes
    proc = await asyncio.create_subprocess_exec(
        str(ST), "--config-file", str(config), "run", api.url("/api/openapi.json"),
        "--checks", "all", "--max-examples", "15", "--seed", "7", "--no-shrink", "--workers", "1",
        "--request-timeout", "10", "--include-tag-regex", f"^({'|'.join(TAGS)})$", *extra,
        cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    return text


async def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    config = {
        "auth": {"api_keys": [KEY], "require_auth_for_reads": True},
        "http": {"cors_origins": ["*"]},
        "rtp": {"rtp_timeout_s": 600},  # the call sends no RTP; it must outlive the run
    }
    async with api_server(tmp_path, config) as api:
        call = await api.call()
        text = await run_schemathesis(api, tmp_path, call.call_id, "-H", f"X-API-Key: {KEY}")
        assert "No issues found" in text
        manifest = await api.manifest_after_bye(call)
    # The pause routes were really exercised on the live session, and the recording still finished cleanly.
    assert manifest["state"] == "completed" and manifest["pauses"]
