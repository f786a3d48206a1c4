"""`siprec serve` as a real process, configured the way `make run` does plus env overrides: it answers sipp, and
SIGTERM stops it cleanly with exit code 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from tests.integration.sip_server import free_port, run_sipp
from tests.support import REPO

pytestmark = pytest.mark.integration

SIPREC = Path(sys.executable).parent / "siprec"


async def _wait_for_line(stream: asyncio.StreamReader, needle: str, timeout: float) -> list[str]:
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        line = await asyncio.wait_for(stream.readline(), max(0.1, deadline - loop.time()))
        if not line:
            break
        seen.append(line.decode(errors="replace").rstrip())
        if needle in seen[-1]:
            return seen
    raise AssertionError(f"server never logged {needle!r}; output:\n" + "\n".join(seen))


async def test_serve_answers_sipp_and_stops_on_sigterm(tmp_path: Path) -> None:
    assert SIPREC.exists(), "the console script is installed by make install"
    port = free_port(socket.SOCK_DGRAM)
    env = {
        **os.environ,
        "SIPREC__SIP__HOST": "127.0.0.1",
        "SIPREC__SIP__UDP_PORT": str(port),
        "SIPREC__SIP__TCP_PORT": str(port),
        "SIPREC__HTTP__PORT": str(free_port(socket.SOCK_STREAM)),
        "SIPREC__RECORDING__DIR": str(tmp_path / "recordings"),
        "SIPREC__STORE__URL": f"sqlite:///{tmp_path / 'siprec.db'}",
    }
    proc = await asyncio.create_subprocess_exec(
        str(SIPREC), "serve", "--config", str(REPO / "etc" / "siprec.yaml"),
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        await _wait_for_line(proc.stderr, "started", 20)
        for transport in ("u1", "t1"):
            result = await run_sipp("options.xml", port, transport=transport, workdir=tmp_path)
            assert result.returncode == 0, result.stderr + result.errors
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
