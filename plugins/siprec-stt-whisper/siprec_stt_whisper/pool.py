"""The bounded decode pool shared by every stream: `workers` threads, finals before partials before file jobs.

A ThreadPoolExecutor runs the decodes (CTranslate2 releases the GIL, so the event loop keeps running). Jobs wait
in a priority queue on the event loop rather than in the executor's FIFO, so a final is never stuck behind a
queue of partials, and a partial that waited too long can be dropped (its future cancelled) before it costs CPU.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from enum import IntEnum
from typing import Any, TypeVar

T = TypeVar("T")


class Priority(IntEnum):
    FINAL = 0  # live finals: what the pipeline waits for
    PARTIAL = 1
    FILE = 2  # post-call jobs: they have no deadline, live legs do


class DecodePool:
    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="whisper-decode")
        self._queue: list[tuple[int, int, Callable[[], Any], asyncio.Future[Any]]] = []
        self._order = itertools.count()
        self._running: set[asyncio.Future[Any]] = set()
        self._closed = False
        self.done = {p.name.lower(): 0 for p in Priority}

    @property
    def queued(self) -> int:
        return sum(1 for *_, f in self._queue if not f.done())

    @property
    def running(self) -> int:
        return len(self._running)

    def submit(self, fn: Callable[[], T], priority: Priority) -> asyncio.Future[T]:
        """Queue `fn` (blocking, run in a worker thread); the future has its result. Cancel the future to drop a
        job that has not started."""
        if self._closed:
            raise RuntimeError("decode pool closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._queue, (int(priority), next(self._order), fn, future))
        self._dispatch()
        return future

    def _dispatch(self) -> None:
        while len(self._running) < self._workers and self._queue:
            priority, _, fn, future = heapq.heappop(self._queue)
            if future.done():  # cancelled while queued
                continue
            job = asyncio.wrap_future(self._executor.submit(fn))
            self._running.add(job)
            job.add_done_callback(lambda j, f=future, p=priority: self._finished(j, f, p))

    def _finished(self, job: asyncio.Future[Any], future: asyncio.Future[Any], priority: int) -> None:
        self._running.discard(job)
        self.done[Priority(priority).name.lower()] += 1
        if not future.done():
            if job.cancelled():
                future.cancel()
            elif (exc := job.exception()) is not None:
                future.set_exception(exc)
            else:
                future.set_result(job.result())
        if not self._closed:
            self._dispatch()

    async def close(self) -> None:
        """Drop what is queued, wait for what runs, stop the threads."""
        self._closed = True
        for *_, future in self._queue:
            future.cancel()
        self._queue.clear()
        if self._running:
            await asyncio.wait(set(self._running))
        self._executor.shutdown(wait=True)  # the threads are idle now: this only joins them
