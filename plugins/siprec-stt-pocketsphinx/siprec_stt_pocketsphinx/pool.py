"""`WorkerPool`: the decoder processes of one provider, and the routing of their messages to streams.

Each worker is a child process (worker.py) talking over its stdin/stdout (wire.py): writes are asyncio transport
writes (never block), one reader task per worker hands results, progress and failures to the streams. A new
stream goes to the worker with the fewest streams. A worker that dies fails its streams (the pipeline moves those
legs on) and is started again in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sys
import time
from typing import Any, Protocol

from siprec.stt.provider import SttError, Transcript
from siprec_stt_pocketsphinx import wire
from siprec_stt_pocketsphinx.config import DecoderSettings

log = logging.getLogger("siprec.stt.pocketsphinx")

START_TIMEOUT_S = 120.0  # interpreter start, imports and the first decoder, on a busy machine
STOP_TIMEOUT_S = 10.0  # a worker finishing after its stdin closed, before it is killed
RESPAWN_DELAY_S = 1.0  # before a dead worker is started again; doubled for each death soon after a start ...
MAX_RESPAWN_DELAY_S = 60.0
STABLE_S = (
    60.0  # ... that is, sooner than this (a worker that keeps crashing is not restarted in a tight loop)
)


class StreamSink(Protocol):
    """What a worker tells a stream (PocketsphinxStream implements it)."""

    def on_result(self, result: Transcript) -> None: ...
    def on_done(self, samples: int) -> None: ...
    def on_closed(self, samples: int) -> None: ...
    def on_error(self, message: str) -> None: ...


class Worker:
    def __init__(self, slot: int, process: asyncio.subprocess.Process) -> None:
        self.slot = slot
        self.process = process
        self.pid = process.pid
        self.streams: dict[int, StreamSink] = {}
        self.alive = True
        self.stopping = False
        self.started = time.monotonic()
        self.reader: asyncio.Task[None] | None = None

    def send(self, message: tuple[Any, ...]) -> None:
        stdin = self.process.stdin
        if not self.alive or stdin is None or stdin.is_closing():
            raise SttError(f"pocketsphinx worker {self.pid} is not running")
        stdin.write(wire.encode(message))

    def dispatch(self, message: tuple[Any, ...]) -> None:
        kind, sid = message[0], message[1]
        stream = self.streams.get(sid)
        if stream is None:  # a stream dropped on this side; its last messages were on the way
            return
        if kind == wire.RESULT:
            stream.on_result(message[2])
        elif kind == wire.DONE:
            stream.on_done(message[2])
        elif kind == wire.CLOSED:
            del self.streams[sid]
            stream.on_closed(message[2])
        elif kind == wire.ERROR:
            del self.streams[sid]
            stream.on_error(f"pocketsphinx: {message[2]}")
        else:
            raise wire.WireError(f"unknown message {kind!r}")

    def fail_streams(self, why: str) -> None:
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream.on_error(why)


class WorkerPool:
    def __init__(self, settings: DecoderSettings, *, size: int, nice: int) -> None:
        self.settings = settings
        self.size = size
        self.nice = nice
        self.workers: list[Worker | None] = [None] * size
        self._sids = itertools.count(1)
        self._respawns: set[asyncio.Task[None]] = set()
        self._quick_deaths = [0] * size  # deaths of each slot's worker soon after its start, in a row
        self._closing = False

    async def start(self) -> None:
        """Start every worker; SttError (the first worker's reason) if any cannot build a decoder."""
        results = await asyncio.gather(*(self._spawn(i) for i in range(self.size)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.close()
            first = errors[0]
            raise first if isinstance(first, SttError) else SttError(f"{type(first).__name__}: {first}")

    def open(self, sink: StreamSink, *, partials: bool, language: str) -> tuple[Worker, int]:
        """Register a stream on the least busy worker and tell it; (worker, stream id)."""
        alive = [w for w in self.workers if w is not None and w.alive]
        if self._closing or not alive:
            raise SttError("no pocketsphinx worker is running")
        worker = min(alive, key=lambda w: len(w.streams))
        sid = next(self._sids)
        worker.send((wire.OPEN, sid, partials, language))
        worker.streams[sid] = sink
        return worker, sid

    @property
    def streams(self) -> int:
        return sum(len(w.streams) for w in self.workers if w is not None)

    async def close(self) -> None:
        """Stop the workers (their streams fail if still open) and wait for them; no task or process left."""
        self._closing = True
        for task in list(self._respawns):
            task.cancel()
        await asyncio.gather(*self._respawns, return_exceptions=True)
        workers = [w for w in self.workers if w is not None]
        self.workers = [None] * self.size
        await asyncio.gather(*(self._stop(w) for w in workers))

    # ---------------------------------------------------------------- workers

    async def _spawn(self, slot: int) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "siprec_stt_pocketsphinx.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        worker = Worker(slot, process)
        assert process.stdin is not None and process.stdout is not None
        try:
            worker.send((wire.HELLO, self.settings, self.nice))
            reply = await asyncio.wait_for(wire.read_message_async(process.stdout), START_TIMEOUT_S)
        except BaseException as exc:
            await self._stop(worker)
            if isinstance(exc, TimeoutError):
                raise SttError(f"pocketsphinx worker gave no answer within {START_TIMEOUT_S:.0f} s") from None
            if isinstance(exc, wire.WireError):
                raise SttError(f"pocketsphinx worker: {exc}") from None
            raise
        if reply is None or reply[0] != wire.READY:
            code = await self._stop(worker)
            if reply is not None and reply[0] == wire.FATAL:
                raise SttError(f"pocketsphinx: {reply[1]}")
            raise SttError(f"pocketsphinx worker exited (code {code}) before it was ready")
        if self._closing:
            await self._stop(worker)
            return
        worker.started = time.monotonic()
        worker.reader = asyncio.create_task(self._read(worker), name=f"stt-pocketsphinx-worker-{worker.pid}")
        self.workers[slot] = worker
        log.info("pocketsphinx worker %d ready (pid %d)", slot, worker.pid)

    async def _read(self, worker: Worker) -> None:
        assert worker.process.stdout is not None
        why = "its output ended"
        try:
            while (message := await wire.read_message_async(worker.process.stdout)) is not None:
                worker.dispatch(message)
        except wire.WireError as exc:
            why = str(exc)
        finally:
            worker.alive = False
        if worker.stopping:
            worker.fail_streams("the pocketsphinx provider was closed")
            return
        code = await self._wait(worker)
        log.error(
            "pocketsphinx worker %d (pid %d) stopped: %s (exit code %s)", worker.slot, worker.pid, why, code
        )
        worker.fail_streams(f"pocketsphinx worker {worker.pid} stopped (exit code {code})")
        if self.workers[worker.slot] is not worker or self._closing:
            return
        self.workers[worker.slot] = None
        quick = time.monotonic() - worker.started < STABLE_S
        self._quick_deaths[worker.slot] = self._quick_deaths[worker.slot] + 1 if quick else 0
        delay = min(RESPAWN_DELAY_S * 2 ** self._quick_deaths[worker.slot], MAX_RESPAWN_DELAY_S)
        task = asyncio.create_task(
            self._respawn(worker.slot, delay), name=f"stt-pocketsphinx-respawn-{worker.slot}"
        )
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _respawn(self, slot: int, delay: float) -> None:
        log.info("pocketsphinx worker %d starts again in %.0f s", slot, delay)
        await asyncio.sleep(delay)
        try:
            await self._spawn(slot)
        except SttError as exc:
            log.error("pocketsphinx worker %d could not be restarted: %s", slot, exc)

    async def _stop(self, worker: Worker) -> int | None:
        """Close the worker's stdin (it finishes and exits), kill it after STOP_TIMEOUT_S; its exit code."""
        worker.stopping = True
        stdin = worker.process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
            with contextlib.suppress(ConnectionError):
                await stdin.wait_closed()
        code = await self._wait(worker)
        if worker.reader is not None and worker.reader is not asyncio.current_task():
            await asyncio.gather(worker.reader, return_exceptions=True)
        worker.alive = False
        return code

    @staticmethod
    async def _wait(worker: Worker) -> int | None:
        try:
            return await asyncio.wait_for(worker.process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("pocketsphinx worker %d (pid %d) did not exit; killed", worker.slot, worker.pid)
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
            return await worker.process.wait()
