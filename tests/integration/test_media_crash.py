"""kill -9 in the middle of a call: the WAVs on disk are playable at once, and the next start recovers the session
(headers exact, manifest "interrupted", recording_ready published). `siprec serve` runs as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rtp.codecs.g711 import ulaw_decode
from siprec.recording.wav import read_wav, wav_info
from tests.integration.sip_server import free_port
from tests.integration.src_client import LegOffer, SrcCall, rtp_packets, rtp_socket, send_paced
from tests.integration.test_media_rtp import clip
from tests.support import REPO

pytestmark = pytest.mark.integration

SIPREC = Path(sys.executable).parent / "siprec"


async def start_server(tmp_path: Path, port: int) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "SIPREC__SIP__HOST": "127.0.0.1",
        "SIPREC__SIP__UDP_PORT": str(port),
        "SIPREC__SIP__TCP_PORT": str(port),
        "SIPREC__HTTP__PORT": str(free_port(socket.SOCK_STREAM)),
        "SIPREC__RTP__PORT_MIN": "45000",
        "SIPREC__RTP__PORT_MAX": "45999",
        "SIPREC__RECORDING__DIR": str(tmp_path / "recordings"),
        "SIPREC__STORE__URL": f"sqlite:///{tmp_path / 'siprec.db'}",
        "SIPREC__STT__PROVIDER": "none",  # a recording test: no model to load
    }
    proc = await asyncio.create_subprocess_exec(
        str(SIPREC), "serve", "--config", str(REPO / "etc" / "siprec.yaml"),
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    seen: list[bytes] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(proc.stderr.readline(), 20)
        if not line:
            break
        seen.append(line)
        if b"started" in line:
            return proc
    raise AssertionError("siprec serve did not start:\n" + b"".join(seen).decode(errors="replace"))


def free_sip_port() -> int:
    """A port free for both UDP and TCP (the server binds both), outside the RTP range used here."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            if 45000 <= port <= 46001:
                continue
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free UDP+TCP port")


async def poll(predicate: object, timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()  # type: ignore[operator]
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_kill_9_mid_call_then_restart_recovers(tmp_path: Path) -> None:
    assert SIPREC.exists(), "the console script is installed by make install"
    port = free_sip_port()
    proc = await start_server(tmp_path, port)
    audio = clip("agent", 4800, 4.0)
    packets = rtp_packets([audio[i : i + 160] for i in range(0, len(audio), 160)], payload_type=0,
                          samples_per_packet=160)  # fmt: skip
    call = SrcCall(port)
    sock = rtp_socket()
    try:
        (rtp_port,) = await call.invite([LegOffer(label="1")])
        sender = asyncio.create_task(
            send_paced(sock, rtp_port, [(i * 0.02, p) for i, p in enumerate(packets)])
        )
        leg_file = await poll(
            lambda: next((tmp_path / "recordings").glob("*/*/leg-0-*.wav"), None), 5, "leg file"
        )
        assert isinstance(leg_file, Path)
        folder = leg_file.parent
        # Once the header says 2 s, kill -9 without warning (the sender is still streaming).
        await poll(lambda: wav_info(leg_file).frames >= 2 * 8000, 10, "2 s in the leg header")
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        await sender
    finally:
        sock.close()
        call.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    # Playable right after the kill, without any repair: the header covers whole frames already on disk.
    pcm, rate = read_wav(leg_file)
    assert rate == 8000 and len(pcm) >= 2 * 8000
    np.testing.assert_array_equal(pcm, ulaw_decode(audio[: len(pcm)]))
    combined, _ = read_wav(folder / "combined.wav")
    assert combined.ndim == 1 or combined.shape[1] == 1
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["state"] == "recording"
    marker_dir = tmp_path / "recordings" / ".inprogress"
    assert [p.name for p in marker_dir.iterdir()] == [manifest["session_id"]]

    # Restart: the interrupted session is repaired before the server takes calls.
    size_before = leg_file.stat().st_size
    proc = await start_server(tmp_path, port)
    try:
        recovered = json.loads((folder / "manifest.json").read_text())
        assert recovered["state"] == "interrupted"
        assert list(marker_dir.iterdir()) == []
        pcm2, _ = read_wav(leg_file)
        frames = (size_before - 44) // 2
        assert len(pcm2) == frames  # every whole frame on disk counts, header or not
        np.testing.assert_array_equal(pcm2, ulaw_decode(audio[:frames]))
        assert recovered["legs"][0]["duration_s"] == pytest.approx(frames / 8000, abs=0.001)
        assert recovered["ended_at"] is not None and recovered["duration_s"] > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
