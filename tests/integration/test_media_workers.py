"""The media integration tests again, with RTP received and recorded by worker processes (rtp.media_workers 2).

The test functions are the ones of the single-process modules (imported, so one test serves both modes); an
autouse fixture makes every server they start run two media workers. On top: the workers die with a SIGKILLed
SIP process, a killed worker is replaced and logged, and a clean stop leaves no process, descriptor or task.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.integration.sip_server as sip_server
import tests.integration.test_media_crash as media_crash
import tests.integration.test_stt_call as stt_call
from siprec.events.types import SessionEnded
from siprec.recording.workers import MediaWorkers
from tests.integration.sip_server import running_server
from tests.integration.src_client import LegOffer, SrcCall, rtp_packets, rtp_socket, send_paced
from tests.integration.test_media_codecs import test_g722_and_pcmu_legs_in_one_call, test_srtp_call
from tests.integration.test_media_formats import (
    test_drop_mode_cuts_the_pause_from_every_file,
    test_flac_files_hold_the_same_samples,
)
from tests.integration.test_media_rtp import (
    clip,
    finished_manifest,
    server,
    sip_port,
    test_pause_silences_every_leg_and_dtmf_is_an_event,
    test_two_legs_sample_exact_with_loss_reorder_and_duplicates,
    wait_for,
)
from tests.integration.test_media_sipp import test_two_speech_clips_recorded_sample_exact

pytestmark = pytest.mark.integration

WORKERS = 2
REPO = Path(__file__).resolve().parents[2]

__all__ = [  # the single-process tests collected here again, run with workers
    "server",
    "test_drop_mode_cuts_the_pause_from_every_file",
    "test_flac_files_hold_the_same_samples",
    "test_g722_and_pcmu_legs_in_one_call",
    "test_pause_silences_every_leg_and_dtmf_is_an_event",
    "test_srtp_call",
    "test_two_legs_sample_exact_with_loss_reorder_and_duplicates",
    "test_two_speech_clips_recorded_sample_exact",
]


@pytest.fixture(autouse=True)
def media_workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    plain = sip_server.test_config

    def with_workers(overrides: Any = None, tmp: Path | None = None) -> Any:
        merged = {**(overrides or {})}
        merged["rtp"] = {**merged.get("rtp", {}), "media_workers": WORKERS}
        return plain(merged, tmp)

    monkeypatch.setattr(sip_server, "test_config", with_workers)
    # `siprec serve` subprocesses (crash test): workers on, and this checkout's code, not an installed one.
    monkeypatch.setenv("SIPREC__RTP__MEDIA_WORKERS", str(WORKERS))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    )
    yield


@pytest.mark.slow
async def test_live_transcription_of_a_call_recorded_in_a_worker(tmp_path: Path) -> None:
    # The decoded audio comes back from the worker to the STT service in the SIP process: same assertions.
    await stt_call.test_two_speaker_call_transcribed_live_with_speakers(tmp_path)


async def test_rtp_seen_by_a_worker_keeps_the_call_up_and_its_absence_times_it_out(tmp_path: Path) -> None:
    overrides = {"rtp": {"port_min": 48000, "port_max": 48999, "rtp_timeout_s": 1.5}}
    async with running_server(overrides, tmp=tmp_path) as srv:
        events: list[Any] = []
        srv.bus.subscribe(events.append)
        call = SrcCall(sip_port(srv))
        (port,) = await call.invite([LegOffer(label="1")])
        sock = rtp_socket()
        audio = clip("agent", 0, 4.0)
        packets = rtp_packets([audio[i : i + 160] for i in range(0, len(audio), 160)], payload_type=0,
                              samples_per_packet=160)  # fmt: skip
        try:
            # 4 s of RTP, longer than the 1.5 s time-out: the worker's activity reports keep the call up.
            await send_paced(sock, port, [(i * 0.02, p) for i, p in enumerate(packets)])

            def ended() -> SessionEnded | None:
                return next(
                    (e for e in events if isinstance(e, SessionEnded) and e.call_id == call.call_id), None
                )

            assert ended() is None
            event = await wait_for(ended, timeout=10, what="the RTP time-out")
            assert event.reason == "rtp-timeout"
            _folder, manifest = await finished_manifest(events, call.call_id)
            assert manifest["end_reason"] == "rtp-timeout"
            assert manifest["legs"][0]["packets_received"] == len(packets)
        finally:
            sock.close()
            call.close()


async def test_a_worker_that_cannot_start_fails_the_start_and_is_not_respawned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        sys, "executable", "/bin/false"
    )  # exits 1 at once, as a worker with a broken import does
    media = MediaWorkers(sip_server.test_config({}, tmp_path), lambda event: None, WORKERS)
    with pytest.raises(RuntimeError, match="exited before it was ready"):
        await media.wait_started(timeout=10)
    await media.close()
    assert media.workers == []
    assert caplog.text.count("exited before it was ready") == WORKERS


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(c) for c in text)
    return found


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def open_fds() -> dict[str, str]:
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor is gone already
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return found


async def test_kill_9_of_the_sip_process_takes_the_workers_and_restart_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[asyncio.subprocess.Process] = []
    workers: set[int] = set()
    plain_start = media_crash.start_server

    async def start_server(tmp: Path, port: int) -> asyncio.subprocess.Process:
        proc = await plain_start(tmp, port)
        started.append(proc)
        # The server that is killed: its workers run before it logs "started".
        if len(started) == 1:
            workers.update(children(proc.pid))
        return proc

    monkeypatch.setattr(media_crash, "start_server", start_server)
    await media_crash.test_kill_9_mid_call_then_restart_recovers(tmp_path)
    assert len(workers) == WORKERS, (
        workers,
        [(p.pid, children(p.pid) if running(p.pid) else None) for p in started],
    )
    deadline = time.monotonic() + 10
    while any(running(pid) for pid in workers) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not any(running(pid) for pid in workers), "media workers outlived the SIGKILLed SIP process"


async def test_a_killed_worker_is_logged_and_replaced_and_stop_leaks_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fds_before = open_fds()
    tasks_before = len(asyncio.all_tasks())
    async with running_server({"rtp": {"port_min": 47000, "port_max": 47999}}, tmp=tmp_path) as srv:
        media = srv.app.media  # type: ignore[attr-defined]
        assert isinstance(media, MediaWorkers)
        pids = {w.proc.pid for w in media.workers}
        assert len(pids) == WORKERS and children(os.getpid()) >= pids
        events: list[Any] = []
        srv.bus.subscribe(events.append)

        # A call recorded in one worker; that worker is killed mid-call.
        call = SrcCall(sip_port(srv))
        (port,) = await call.invite([LegOffer(label="1")])
        sock = rtp_socket()
        audio = clip("agent", 0, 1.0)
        packets = rtp_packets([audio[i : i + 160] for i in range(0, len(audio), 160)], payload_type=0,
                              samples_per_packet=160)  # fmt: skip
        await send_paced(sock, port, [(i * 0.02, p) for i, p in enumerate(packets)])
        session = srv.app.session(call.call_id)  # type: ignore[attr-defined]
        assert session is not None
        victim = media.links[session.session_id].worker
        await wait_for(lambda: victim.live_legs == 1, what="the worker's first report")
        victim.proc.send_signal(signal.SIGKILL)
        await wait_for(
            lambda: victim not in media.workers and len(media.workers) == WORKERS, what="replacement"
        )
        await wait_for(lambda: victim.proc.returncode is not None, what="reaped")
        assert f"exited with code {-signal.SIGKILL}" in caplog.text
        assert "sessions are no longer recorded" in caplog.text
        assert await call.bye() == 200
        call.close()

        # A new call goes to a live worker and is recorded completely.
        call = SrcCall(sip_port(srv))
        (port,) = await call.invite([LegOffer(label="1")])
        await send_paced(sock, port, [(i * 0.02, p) for i, p in enumerate(packets)])
        await asyncio.sleep(0.1)
        assert await call.bye() == 200
        call.close()
        sock.close()
        _folder, manifest = await finished_manifest(events, call.call_id)
        assert manifest["state"] == "completed"
        assert manifest["legs"][0]["packets_received"] == len(packets)
        assert media.stats()["PCMU"]["packets"] >= len(packets)
        pids = {w.proc.pid for w in media.workers}
    assert not any(running(pid) for pid in pids)
    assert not children(os.getpid()) & pids
    assert len(asyncio.all_tasks()) == tasks_before
    # The loop closes transports on its next iterations: wait for the descriptors to come back, with a deadline.
    await wait_for(lambda: open_fds() == fds_before, timeout=5, what=f"descriptors back to {fds_before}")


async def test_a_set_up_failing_after_the_metadata_leaves_no_session_behind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The metadata goes to the worker before the legs are opened; when opening a leg fails, the INVITE gets a
    500 and the worker link is dropped with the session (a stop must not wait for its recording_ready)."""
    async with running_server({"rtp": {"port_min": 47000, "port_max": 47999}}, tmp=tmp_path) as srv:
        media = srv.app.media  # type: ignore[attr-defined]
        assert isinstance(media, MediaWorkers)

        def refuse(port: int) -> Any:
            raise OSError("RTP socket lost")

        monkeypatch.setattr(media.sockets, "take", refuse)
        call = SrcCall(sip_port(srv))
        with pytest.raises(AssertionError, match="INVITE answered 500"):
            await call.invite([LegOffer(label="1")])
        call.close()
        assert media.links == {}
        monkeypatch.undo()
        started = time.monotonic()
    assert time.monotonic() - started < 10
    assert "had no recording_ready" not in caplog.text
