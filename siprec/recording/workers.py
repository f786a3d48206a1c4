"""`MediaWorkers`: the MediaSink that spreads RTP intake over worker processes (`rtp.media_workers` > 0).

The SIP process keeps what must answer before the 200 OK: the port pool binds the RTP/RTCP sockets here
(`reserve`, as RecordingMedia does). `open_leg` then passes the bound pair to the worker that records the session
(every leg of a session in one worker; a new session goes to the worker with the fewest live legs) with a
`SessionMirror` snapshot, and closes its own copies: from then on RTP never wakes the SIP process. Every LegHandle
call and the end of the session send a fresh snapshot; the worker writes the files exactly as RecordingMedia does.

Back from the workers, batched once per media sweep: sessions that had RTP (-> `session.touch_media`, the idle
time-out), RTP counters (/metrics, /api/sessions); and as they happen: dtmf and recording_ready events for the bus,
decoded blocks of the legs transcribed live (the STT service and its TranscriptionTaps stay in this process).

A worker that dies is logged with its exit code; its sessions go on unrecorded (their files stay playable, the
next start recovers them) and a new worker takes new sessions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import siprec
from siprec.config import Config
from siprec.events.types import Event, RecordingReady
from siprec.recording.channel import Channel
from siprec.recording.media import LegCounters, PortSockets, counters_entry, recover_sessions
from siprec.recording.mirror import snapshot
from siprec.recording.transcription import Transcription, TranscriptionTap
from siprec.srs.sdp import NegotiatedStream
from siprec.srs.session import Leg, LegHandle, RecordingSession

__all__ = ["MediaWorkers", "WorkerLeg"]

log = logging.getLogger("siprec.recording")

READY_WAIT_S = 60.0  # at shutdown, for the last sessions' recording_ready (FLAC of long calls included)
EXIT_WAIT_S = 5.0
START_WAIT_S = 30.0  # for a worker to exit once told to, before it is killed


@dataclass(eq=False)
class WorkerProcess:
    number: int
    proc: subprocess.Popen[bytes]
    channel: Channel | None = None
    alive: bool = True
    live_legs: int = 0  # as last reported
    opened_legs: int = 0  # legs sent since the last report (load of a fresh worker before it reports)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    sent_config: tuple[Any, Any] | None = None
    ready: bool = False  # said hello: imports done, listening

    @property
    def load(self) -> int:
        return self.live_legs + self.opened_legs

    def send(self, message: Any, fds: list[int] | tuple[int, ...] = ()) -> bool:
        if not self.alive or self.channel is None or self.channel.closed:
            for fd in fds:
                os.close(fd)
            return False
        self.channel.send(message, fds)
        return True


@dataclass(eq=False)
class SessionLink:
    session: RecordingSession
    worker: WorkerProcess
    keys: dict[Leg, int] = field(default_factory=dict)
    taps: dict[int, TranscriptionTap] = field(default_factory=dict)
    counters: tuple[LegCounters, ...] = ()  # as last reported by the worker
    ended: bool = False
    opened: int = 0  # legs handed to the worker (keys also number legs a snapshot saw before they opened)

    def send(self, kind: str, *args: Any, fds: list[int] | tuple[int, ...] = ()) -> None:
        self.worker.send((kind, snapshot(self.session, self.keys), *args), fds)

    def leg(self, key: int) -> Leg | None:
        return next((leg for leg, k in self.keys.items() if k == key), None)


class WorkerLeg:
    """The LegHandle of a leg recorded in a worker: every call sends the session's snapshot along."""

    def __init__(self, link: SessionLink, key: int) -> None:
        self.link = link
        self.key = key

    def update(self, stream: NegotiatedStream) -> None:
        self.link.send("update", self.key)

    def pause(self) -> None:
        self.link.send("pause", self.key)

    def resume(self) -> None:
        self.link.send("resume", self.key)

    def close(self) -> None:
        self.link.send("close", self.key)


class MediaWorkers:
    reports_activity = True

    def __init__(
        self, config: Config, publish: Callable[[Event], None], workers: int, *, host: str | None = None
    ) -> None:
        if workers < 1:
            raise ValueError("MediaWorkers needs at least one worker (rtp.media_workers 0 is RecordingMedia)")
        self.config = config
        self.publish = publish
        self.count = workers
        self.host = host or config.sip.host or "0.0.0.0"
        self.sockets = PortSockets(self.host)
        self.workers: list[WorkerProcess] = []
        self.links: dict[str, SessionLink] = {}  # by session_id, until its recording_ready
        self.retired_stats: dict[str, Counter[str]] = {}  # counters of workers that exited
        self._stt: Transcription | None = None
        self._numbers = 0
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ready_waiters: list[asyncio.Future[None]] = []

    # --- the STT service (set by Services once a provider runs) --------------------------------------------
    @property
    def stt(self) -> Transcription | None:
        return self._stt

    @stt.setter
    def stt(self, value: Transcription | None) -> None:
        self._stt = value
        for worker in self.workers:
            worker.send(("stt", value is not None))

    # --- ports (PortPool hooks) ------------------------------------------------------------------------------
    def reserve(self, port: int) -> bool:
        return self.sockets.reserve(port)

    def unreserve(self, port: int) -> None:
        self.sockets.unreserve(port)

    # --- processes -------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the workers (idempotent; open_leg starts them too when the app did not)."""
        for _ in range(self.count - len(self.workers)):
            self._add_worker()

    def _add_worker(self) -> None:
        worker = self._spawn()
        # One that died at once (its init could not be sent) was reported and dropped by _on_closed already.
        if worker.alive:
            self.workers.append(worker)

    def _spawn(self) -> WorkerProcess:
        self._numbers += 1
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        # The worker imports this very siprec package, wherever the SIP process was started from.
        package_root = str(Path(siprec.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "siprec.recording.worker", "--fd", str(theirs.fileno()), "--parent", str(os.getpid())],
                pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            theirs.close()
        worker = WorkerProcess(self._numbers, proc)
        worker.channel = Channel(
            ours, lambda message, fds: self._on_message(worker, message, fds), lambda: self._on_closed(worker),
            name=f"media worker {self._numbers} (pid {proc.pid})",
        )  # fmt: skip
        worker.send(("init", self.config, self._stt is not None, self.host))
        worker.sent_config = (self.config.rtp, self.config.recording)
        log.info("media worker %d spawned (pid %d)", worker.number, proc.pid)
        return worker

    def _pick(self) -> WorkerProcess:
        self.start()
        return min((w for w in self.workers if w.alive), key=lambda w: (w.load, w.number))

    def _on_closed(self, worker: WorkerProcess) -> None:
        worker.alive = False
        if worker in self.workers:
            self.workers.remove(worker)
        self._retire_stats(worker)
        lost = [link for link in self.links.values() if link.worker is worker]
        for link in lost:
            for tap in link.taps.values():
                tap.close()
            del self.links[link.session.session_id]
        self._spawn_task(self._reap(worker, expected=self._closing and not lost))
        if lost:
            log.error(
                "media worker %d (pid %d) is gone: %d sessions are no longer recorded (their files are kept and "
                "recovered at the next start)", worker.number, worker.proc.pid, len(lost),
            )  # fmt: skip
        # Died during start-up (a broken install?): no tight respawn loop; the next call tries a new one.
        if not worker.ready:
            log.error("media worker %d (pid %d) exited before it was ready", worker.number, worker.proc.pid)
        elif not self._closing:
            self._add_worker()
        self._wake_ready()

    async def _reap(self, worker: WorkerProcess, *, expected: bool) -> None:
        deadline = time.monotonic() + EXIT_WAIT_S
        while worker.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if worker.proc.poll() is None:
            log.error("media worker %d (pid %d) did not exit: killed", worker.number, worker.proc.pid)
            worker.proc.kill()
            await asyncio.get_running_loop().run_in_executor(None, worker.proc.wait)
        code = worker.proc.returncode
        if expected and code == 0:
            log.info("media worker %d (pid %d) exited", worker.number, worker.proc.pid)
        else:
            log.error("media worker %d (pid %d) exited with code %s", worker.number, worker.proc.pid, code)

    def _retire_stats(self, worker: WorkerProcess) -> None:
        for codec, row in worker.stats.items():
            self.retired_stats.setdefault(codec, Counter()).update(row)
        worker.stats = {}

    # --- MediaSink -------------------------------------------------------------------------------------------
    def _link(self, session: RecordingSession) -> SessionLink:
        link = self.links.get(session.session_id)
        if link is None:
            link = SessionLink(session, self._pick())
            self.links[session.session_id] = link
        return link

    def save_metadata(self, session: RecordingSession, name: str, raw: bytes) -> None:
        # The worker writes it, as it writes the session's marker, manifest and WAVs: file creation costs 0.02
        # to 1 ms on a busy disk and the SIP process answers INVITEs meanwhile (docs/recording.md).
        self._link(session).send("metadata", name, raw)

    def open_leg(self, session: RecordingSession, leg: Leg) -> LegHandle:
        link = self._link(session)
        worker = link.worker
        config = (self.config.rtp, self.config.recording)
        if worker.sent_config != config:  # a reload replaced a section: new legs use it, as in one process
            worker.send(("config", self.config))
            worker.sent_config = config
        rtp, rtcp = self.sockets.take(leg.stream.port)
        fds = [rtp.detach()] + ([rtcp.detach()] if rtcp is not None else [])
        key = link.keys.setdefault(leg, len(link.keys) + 1)  # the numbering snapshot() uses for new legs
        link.send("open", key, fds=fds)  # the channel closes our copies once they are sent
        link.opened += 1
        worker.opened_legs += 1
        return WorkerLeg(link, key)

    def session_ended(self, session: RecordingSession) -> None:
        link = self.links.get(session.session_id)
        if link is None:
            return
        link.ended = True
        link.send("end")
        if not link.opened:  # no leg was opened (set-up failed after the metadata): no recording_ready will come
            del self.links[session.session_id]

    def recover(self) -> list[Path]:
        """Repair sessions a crash interrupted (at start-up, before any new session), then start the workers."""
        found = recover_sessions(self.config, self.publish)
        self.start()
        return found

    async def wait_started(self, timeout: float = START_WAIT_S) -> None:
        """Until every worker listens (the app waits before SIP takes calls: RTP of a first call must not queue
        behind a worker's imports). Raises RuntimeError when one does not start."""
        self.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            # checked first too: a worker can die before the first wait (its init could not even be sent)
            if len(self.workers) < self.count:
                raise RuntimeError("a media worker exited before it was ready (see the log)")
            if all(w.ready for w in self.workers):
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._ready_waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise RuntimeError(f"media workers were not up within {timeout:.0f} s") from None

    async def close(self) -> None:
        """After the UAS ended every session: wait for their recording_ready, then stop the workers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_WAIT_S
        while self.links and loop.time() < deadline:
            waiter: asyncio.Future[None] = loop.create_future()
            self._ready_waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, deadline - loop.time())
            except TimeoutError:
                break
        if self.links:
            log.error("media workers: %d sessions had no recording_ready at shutdown", len(self.links))
        self._closing = True
        for worker in list(self.workers):
            worker.send(("exit",))
        exit_deadline = loop.time() + EXIT_WAIT_S + 1
        while self.workers and loop.time() < exit_deadline:
            await asyncio.sleep(0.02)  # a worker's channel closes when it exits (_on_closed removes it)
        for worker in list(self.workers):
            if worker.channel is not None:
                worker.channel.close()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self.sockets.close()

    # --- messages from the workers -----------------------------------------------------------------------------
    def _on_message(self, worker: WorkerProcess, message: tuple[Any, ...], fds: list[int]) -> None:
        for fd in fds:  # workers never send descriptors
            os.close(fd)
        kind = message[0]
        if kind == "hello":
            worker.ready = True
            self._wake_ready()
        elif kind == "report":
            _, active, stats, sessions, live_legs = message
            now = time.monotonic()
            for sid in active:
                link = self.links.get(sid)
                if link is not None:
                    link.session.touch_media(now)
            for sid, counters in sessions.items():
                link = self.links.get(sid)
                if link is not None:
                    link.counters = counters
            worker.stats, worker.live_legs, worker.opened_legs = stats, live_legs, 0
        elif kind == "pcm":
            _, sid, key, origin, rate, position, pcm = message
            link = self.links.get(sid)
            if link is None or self._stt is None:
                return
            tap = link.taps.get(key)
            if tap is None:
                leg = link.leg(key)
                if leg is None:
                    return
                tap = link.taps[key] = TranscriptionTap(self._stt, link.session, leg, rate, origin)
            tap.feed(position, pcm)
        elif kind == "pcm_end":
            link = self.links.get(message[1])
            tap = link.taps.pop(message[2], None) if link is not None else None
            if tap is not None:
                tap.close()
        elif kind == "event":
            self.publish(message[1])
        elif kind == "ready":
            self._ready(worker, message[1], message[2], message[3])
        else:
            log.error("media worker %d: unknown message %r", worker.number, kind)

    def _ready(
        self, worker: WorkerProcess, sid: str, event: RecordingReady, leg_files: dict[int, str]
    ) -> None:
        link = self.links.pop(sid, None)
        if link is not None:
            for tap in link.taps.values():  # normally closed by pcm_end already
                tap.close()
        self.publish(event)
        if self._stt is not None and link is not None:  # after FLAC: post-call jobs read the final leg files
            session = link.session
            self._stt.session_ended(
                call_id=session.call_id, session_id=session.session_id, folder=Path(event.folder),
                leg_files={index: Path(path) for index, path in leg_files.items()},
            )  # fmt: skip
        self._wake_ready()

    def _wake_ready(self) -> None:
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # --- statistics ----------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, dict[str, int]]:
        """RTP packets received, lost and late by codec since start, as last reported by the workers."""
        out: dict[str, Counter[str]] = {codec: Counter(row) for codec, row in self.retired_stats.items()}
        for worker in self.workers:
            for codec, row in worker.stats.items():
                out.setdefault(codec, Counter()).update(row)
        return {codec: {k: row[k] for k in ("packets", "lost", "late")} for codec, row in sorted(out.items())}

    def session_stats(self, session_id: str) -> list[dict[str, Any]]:
        link = self.links.get(session_id)
        return [counters_entry(c) for c in link.counters] if link is not None and not link.ended else []

    @property
    def live_legs(self) -> int:
        return sum(worker.live_legs for worker in self.workers)

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
