"""SIPREC call flows played by sipp (a real SIP peer) against a server started in-process on 127.0.0.1.

sipp checks the wire (status codes, headers, SDP lines with check_it ereg); the test then checks the session model
through the events the server published on its bus.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from siprec.app import SiprecServer
from siprec.config import Config
from siprec.events.types import Event, SessionEnded, SessionStarted, SessionUpdated
from tests.support import REPO, require

pytestmark = pytest.mark.integration

SCENARIOS = REPO / "tests" / "sipp"
SIPP = shutil.which("sipp")


class Server:
    def __init__(self, server: SiprecServer, events: list[Event]) -> None:
        self.server = server
        self.events = events

    @property
    def port(self) -> int:
        return self.server.transport.bound["UDP"]

    def types(self) -> list[str]:
        """The session lifecycle (media events such as recording_ready are checked where they matter)."""
        return [e.type for e in self.events if e.type.startswith("session_")]


@pytest.fixture
async def srs(tmp_path: Path) -> AsyncIterator[Server]:
    config = Config.model_validate({
        "sip": {"host": "127.0.0.1", "udp_port": 0, "tcp_port": 0, "min_se": 90, "session_expires": 1800},
        "rtp": {"port_min": 41000, "port_max": 41999},
        "recording": {"dir": str(tmp_path / "rec")},
    })  # fmt: skip
    server = SiprecServer(config)
    events: list[Event] = []
    server.bus.subscribe(events.append)
    await server.start()
    try:
        yield Server(server, events)
    finally:
        await server.stop()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_sipp(scenario: str, srs: Server, workdir: Path) -> None:
    require(SIPP is not None, "sipp")
    assert SIPP is not None
    proc = await asyncio.create_subprocess_exec(
        SIPP, "-sf", str(SCENARIOS / scenario), "-m", "1", "-timeout", "20s", "-timeout_error",
        "-max_recv_loops", "1000", "-nostdin", "-trace_err", "-t", "u1",
        "-i", "127.0.0.1", "-p", str(free_udp_port()), f"127.0.0.1:{srs.port}",
        cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    if proc.returncode != 0:
        errors = "".join(p.read_text(errors="replace")[-3000:] for p in workdir.glob("*_errors.log"))
        pytest.fail(f"sipp {scenario} exited {proc.returncode}\n{errors}\n{out.decode(errors='replace')[-3000:]}")
    # Let the server finish what the last message started (the BYE's 200 is sent before on_dialog_ended).
    for _ in range(50):
        if not srs.server.app.calls:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.02)


def ended(srs: Server) -> SessionEnded:
    last = [e for e in srs.events if e.type.startswith("session_")][-1]
    assert isinstance(last, SessionEnded), srs.types()
    return last


async def test_basic(srs: Server, tmp_path: Path) -> None:
    await run_sipp("siprec_basic.xml", srs, tmp_path)
    assert srs.types() == ["session_started", "session_ended"]
    # The files are final after the session ends (recording_ready comes from a media worker: wait for it).
    for _ in range(250):
        if srs.events[-1].type == "recording_ready":
            break
        await asyncio.sleep(0.02)
    assert srs.events[-1].type == "recording_ready"
    started = srs.events[0]
    assert isinstance(started, SessionStarted) and started.siprec
    assert [(leg.label, leg.codec, leg.participant.name if leg.participant else None) for leg in started.legs] == [
        ("1", "PCMU", "Alice"), ("2", "PCMA", "Bob")]  # fmt: skip
    assert ended(srs).reason == "bye" and ended(srs).duration_s >= 0.2
    assert srs.server.app.calls == {}  # type: ignore[attr-defined]


def names_on_legs(event: SessionStarted | SessionUpdated) -> list[list[str | None]]:
    return [[p.name for p in leg.participants] for leg in event.legs]


async def test_metadata_first(srs: Server, tmp_path: Path) -> None:
    await run_sipp("siprec_metadata_first.xml", srs, tmp_path)
    assert srs.types() == ["session_started", "session_ended"]
    assert names_on_legs(srs.events[0]) == [["Alice"], ["Bob"]]  # type: ignore[arg-type]


async def test_hold_resume(srs: Server, tmp_path: Path) -> None:
    await run_sipp("siprec_hold_resume.xml", srs, tmp_path)
    assert srs.types() == ["session_started", "session_paused", "session_resumed", "session_ended"]
    paused, resumed = srs.events[1], srs.events[2]
    assert paused.reason == "hold" and resumed.reason == "hold"  # type: ignore[attr-defined]
    assert resumed.at - paused.at >= 0.2  # type: ignore[attr-defined]


async def test_partial_update(srs: Server, tmp_path: Path) -> None:
    await run_sipp("siprec_partial_update.xml", srs, tmp_path)
    assert srs.types() == ["session_started", "session_updated", "session_ended"]
    update = srs.events[1]
    assert isinstance(update, SessionUpdated)
    assert (update.participants_added, update.participants_changed) == (("pC",), ("pB",))
    assert names_on_legs(update) == [["Alice"], ["Robert", "Carol"]]
    assert update.metadata_version == 2 and ended(srs).metadata_versions == 2


async def test_avaya_update(srs: Server, tmp_path: Path) -> None:
    await run_sipp("siprec_avaya_update.xml", srs, tmp_path)
    assert srs.types() == ["session_started", "session_updated", "session_ended"]
    assert names_on_legs(srs.events[0]) == [[None], []]  # type: ignore[arg-type]
    update = srs.events[1]
    assert isinstance(update, SessionUpdated) and update.participants_removed == ("dummy",)
    assert names_on_legs(update) == [["Alice"], ["Bob"]]


async def test_add_stream(srs: Server, tmp_path: Path) -> None:
    await run_sipp("siprec_add_stream.xml", srs, tmp_path)
    assert srs.types() == ["session_started", "session_updated", "session_ended"]
    update = srs.events[1]
    assert isinstance(update, SessionUpdated) and update.legs_added == (2,)
    ports = [leg.port for leg in update.legs]
    assert len(set(ports)) == 3 and all(p % 2 == 0 and 41000 <= p <= 41999 for p in ports)


async def test_cancel_after_answer(srs: Server, tmp_path: Path) -> None:
    await run_sipp("siprec_cancel.xml", srs, tmp_path)
    assert srs.types() == ["session_started", "session_ended"]
    assert ended(srs).reason == "bye"


async def test_session_timer(srs: Server, tmp_path: Path) -> None:
    await run_sipp("siprec_session_timer.xml", srs, tmp_path)
    assert srs.types() == ["session_started", "session_ended"]  # the 422 created nothing
    assert srs.server.app.calls == {}  # type: ignore[attr-defined]
    assert srs.server.app.timers.next_deadline() is None  # type: ignore[attr-defined]
