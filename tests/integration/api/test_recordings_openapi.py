"""The recordings and compliance operations of /api/openapi.json, checked by schemathesis (every check, bounded
examples) against a running server holding recordings, over real sockets."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.integration.api.conftest import api_server
from tests.integration.api.test_recordings import DAY1, HOUR, rec_root, write_recording
from tests.support import require

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ST = Path(sys.executable).parent / "st"
KEY = "schemathesis-key"
CALL_ID = "schema@src.example"


@pytest.mark.parametrize("reads_need_auth", [True, False])
async def test_schemathesis_finds_nothing_in_recordings_and_compliance(
    tmp_path: Path, reads_need_auth: bool
) -> None:
    require(ST.exists(), "schemathesis CLI (st) in the virtualenv")
    config = {"auth": {"api_keys": [KEY], "require_auth_for_reads": reads_need_auth}}
    async with api_server(tmp_path, config) as api:
        for n in range(3):
            write_recording(rec_root(api), CALL_ID if n == 0 else f"other-{n}@src", DAY1 + n * HOUR)
        (tmp_path / "schemathesis.toml").write_text(f'[parameters]\n"path.call_id" = "{CALL_ID}"\n')
        proc = await asyncio.create_subprocess_exec(
            str(ST), "--config-file", str(tmp_path / "schemathesis.toml"), "run", api.url("/api/openapi.json"),
            "--checks", "all", "--max-examples", "15", "--seed", "11", "--no-shrink", "--workers", "1",
            "--request-timeout", "10", "--include-tag-regex", "^(recordings|compliance)$",
            "-H", f"X-API-Key: {KEY}",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 300)
        text = out.decode(errors="replace")
        assert proc.returncode == 0, text[-6000:]
        assert "Failures:" not in text and " passed" in text, text[
            -6000:
        ]  # warnings (404s on export) are fine
