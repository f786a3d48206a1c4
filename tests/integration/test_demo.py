"""`make demo` against a running server: one SIPREC call, and the folder it reports holds the call's metadata."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.integration.sip_server import running_server
from tests.support import REPO

pytestmark = pytest.mark.integration


async def test_demo_places_a_call_and_prints_its_recording_folder(tmp_path: Path) -> None:
    rec = tmp_path / "recordings"
    async with running_server({"recording": {"dir": str(rec)}}, tmp=None) as server:
        env = {
            **os.environ,
            "SIPREC__SIP__HOST": "127.0.0.1",
            "SIPREC__SIP__UDP_PORT": str(server.transport.bound["UDP"]),
            "SIPREC__RECORDING__DIR": str(rec),
            "TMPDIR": str(tmp_path),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.demo", cwd=REPO, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    folder = Path(text.split(" is in ", 1)[1].splitlines()[0])
    assert folder.parent.parent == rec.resolve()
    assert (folder / "metadata-1.xml").read_bytes().startswith(b"<?xml")
    assert "metadata-1.xml" in text
