"""A media worker process: records the legs the SIP process hands it, with the same RecordingMedia machinery.

Started by `MediaWorkers` as `python -m siprec.recording.worker --fd <n> --parent <pid>` with one end of a Unix
socketpair. It receives the bound RTP/RTCP sockets of each leg with an `open` command and a `SessionMirror` of
the session with every command; it sends back, batched once per media sweep, which sessions had RTP and the
RTP counters, plus dtmf / recording_ready events and, for live transcription, the decoded blocks.

It dies with the SIP process: PR_SET_PDEATHSIG (Linux) and, everywhere, the end of its socket. Then it exits
without finishing its sessions: their files are playable and the next start recovers them ("interrupted").
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from siprec.config import Config
from siprec.events.types import Event
from siprec.heap import freeze_startup_heap
from siprec.logsetup import configure_logging
from siprec.recording.channel import Channel
from siprec.recording.manifest import clear_marker
from siprec.recording.media import RecordingMedia, ready_event
from siprec.recording.mirror import SessionMirror
from siprec.recording.recorder import LegRecorder, SessionRecorder
from siprec.recording.transcription import AudioTap

__all__ = ["PcmForwarder", "WorkerMedia", "main"]

log = logging.getLogger("siprec.recording")

PR_SET_PDEATHSIG = 1
# While legs are live the loop waits this long between polls, so one poll returns the datagrams of many sockets
# instead of waking once per packet (a recorder does not care about 2 ms; the CPU per packet does). Idle: no pacing.
# Measured at 1,000 calls / 2 workers: 1.80 CPU s per 100,000 packets without, 1.52-1.56 with 2 ms (5 ms: 1.59).
POLL_PACING_S = 0.002
# Workers yield the CPU to the SIP process when both want it: signalling is bursty and latency-bound, RTP intake has
# seconds of socket buffer to catch up from. Measured at 1,000 calls (2 runs each, 160 probe calls during media):
# INVITE -> 200 p99 73 / 56 ms at nice 5, 193 / 353 ms at nice 0.
WORKER_NICE = 5
IDLE_CHECK_S = 0.1


def pace_polls(media: WorkerMedia, loop: asyncio.AbstractEventLoop) -> None:
    """One pacing step per loop iteration while the worker records (see POLL_PACING_S)."""
    if media.recorders:
        time.sleep(POLL_PACING_S)
        loop.call_soon(pace_polls, media, loop)
    else:
        loop.call_later(IDLE_CHECK_S, pace_polls, media, loop)


class PcmForwarder:
    """The AudioTap of a leg in a worker: sends its decoded blocks to the SIP process, where the STT service
    runs (one message per decoded block, i.e. per 8 packets, never per packet)."""

    def __init__(
        self, send: Callable[[Any], None], session_id: str, key: int, sample_rate: int, origin: float
    ) -> None:
        self.send = send
        self.head = (session_id, key, origin, sample_rate)

    def feed(self, position: int, pcm: np.ndarray) -> None:
        self.send(("pcm", *self.head, position, pcm))

    def close(self) -> None:
        self.send(("pcm_end", self.head[0], self.head[1]))


class WorkerMedia(RecordingMedia):
    """RecordingMedia whose sessions are mirrors and whose events, activity and counters go to the SIP process."""

    def __init__(
        self, config: Config, send: Callable[[Any], None], *, host: str | None, transcribes: bool
    ) -> None:
        super().__init__(config, self._publish, host=host)
        self.send = send
        self.forward_pcm = transcribes
        self.mirrors: dict[str, SessionMirror] = {}
        self.handles: dict[tuple[str, int], LegRecorder] = {}
        self._active: set[str] = set()

    def _publish(self, event: Event) -> None:
        self.send(("event", event))

    @property
    def transcribes(self) -> bool:
        return self.forward_pcm

    def open_tap(self, session: Any, leg: Any, sample_rate: int, origin: float) -> AudioTap | None:
        if not self.forward_pcm:
            return None
        return PcmForwarder(self.send, session.session_id, leg.key, sample_rate, origin)

    def _ready(self, recorder: SessionRecorder, data: dict[str, Any]) -> None:
        session = recorder.session
        clear_marker(self.root, session.session_id)
        leg_files = {leg["index"]: str(recorder.folder / leg["file"]) for leg in data["legs"]}
        self.send(("ready", session.session_id, ready_event(recorder.folder, data), leg_files))

    def sweep(self, now_wall: float, now_mono: float) -> None:
        super().sweep(now_wall, now_mono)
        self.report()

    def report(self) -> None:
        sessions = {sid: self.leg_counters(sid) for sid in self.recorders}
        self.send(("report", sorted(self._active), self.stats(), sessions, self.live_legs))
        self._active.clear()

    # --- commands from the SIP process ---------------------------------------------------------------------
    def mirror(self, new: SessionMirror) -> SessionMirror:
        mine = self.mirrors.get(new.session_id)
        if mine is None:
            mine = self.mirrors[new.session_id] = new
            mine.on_media = self._active.add
        else:
            mine.apply(new)
        return mine

    def command(self, message: tuple[Any, ...], fds: list[int]) -> None:
        kind = message[0]
        if kind == "open":
            _, snap, key = message
            session = self.mirror(snap)
            leg = session.legs_by_key[key]
            rtp = socket.socket(fileno=fds[0])
            rtcp = socket.socket(fileno=fds[1]) if len(fds) > 1 else None
            self.sockets.give(leg.stream.port, (rtp, rtcp))
            self.handles[(session.session_id, key)] = self.open_leg(session, leg)  # type: ignore[arg-type]
        elif kind in ("update", "pause", "resume", "close"):
            _, snap, key = message[:3]
            session = self.mirror(snap)
            handle = self.handles.get((session.session_id, key))
            if handle is None:
                return
            if kind == "update":
                handle.update(session.legs_by_key[key].stream)
            else:
                getattr(handle, kind)()
            if kind == "close":
                del self.handles[(session.session_id, key)]
        elif kind == "metadata":
            _, snap, name, raw = message
            session = self.mirror(snap)
            try:
                self.save_metadata(session, name, raw)  # type: ignore[arg-type]
            except OSError as exc:
                log.error("%s not saved in %s: %s", name, session.folder, exc, extra={"call_id": session.call_id})
        elif kind == "end":
            session = self.mirror(message[1])
            self.mirrors.pop(session.session_id, None)
            for hkey in [k for k in self.handles if k[0] == session.session_id]:
                del self.handles[hkey]
            self.session_ended(session)  # type: ignore[arg-type]
            self.report()
        elif kind == "config":
            self.config = message[1]
        elif kind == "stt":
            self.forward_pcm = bool(message[1])
        else:
            log.error("media worker: unknown command %r", kind)
        for fd in fds if kind != "open" else ():
            os.close(fd)


async def serve(sock: socket.socket) -> int:
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[int] = loop.create_future()
    media: WorkerMedia | None = None
    channel: Channel

    def on_message(message: Any, fds: list[int]) -> None:
        nonlocal media
        kind = message[0]
        if kind == "init":
            _, config, transcribes, host = message
            configure_logging(config.log)
            media = WorkerMedia(config, channel.send, host=host, transcribes=transcribes)
            if POLL_PACING_S > 0:
                loop.call_soon(pace_polls, media, loop)
            freeze_startup_heap(f"media worker {os.getpid()}")
            channel.send(("hello", os.getpid()))
            log.info("media worker %d ready", os.getpid())
        elif kind == "exit":
            if not stopped.done():
                stopped.set_result(0)
        elif media is not None:
            media.command(message, fds)

    def on_closed() -> None:
        if not stopped.done():
            stopped.set_result(1)

    channel = Channel(sock, on_message, on_closed, name=f"media worker {os.getpid()}")
    code = await stopped
    if media is not None:
        if code == 0:
            await media.close()
            await channel.drain(5.0)
        else:
            live = len(media.recorders)
            log.error(
                "media worker %d: SIP process gone, exiting; %d live sessions left for recovery",
                os.getpid(),
                live,
            )
    channel.close()
    return code


def die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="siprec.recording.worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    os.nice(WORKER_NICE)
    # The SIP process decides when to stop (it ends sessions first); a terminal's Ctrl-C reaches the whole group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=args.fd)
    started = time.monotonic()
    try:
        import uvloop
    except ImportError:
        code = asyncio.run(serve(sock))
    else:
        code = uvloop.run(serve(sock))
    log.info("media worker %d exits (%d) after %.0f s", os.getpid(), code, time.monotonic() - started)
    return code


if __name__ == "__main__":
    sys.exit(main())
