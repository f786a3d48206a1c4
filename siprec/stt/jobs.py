"""Post-call transcription: legs (or stretches of legs) transcribed from their recording once the call ended.

A job is queued when its leg could not be transcribed live (capacity, lagging, a provider failure with no live
fallback left) or when a live leg has a stretch no stream covered (the audio between a failed stream's last final
and its fallback's first block). Each provider has one FIFO queue and one worker, so jobs never compete with each
other for a provider: one `transcribe_file` at a time per provider. A job waits in its queue until its session has
ended (the leg file is complete); among ready jobs the first queued runs first. A job whose provider fails moves
to the end of the next provider's queue (stt.fallback order); with none left it is counted as failed.

The stretches to transcribe are session times; `LegClock` maps them to the leg file, they are cut out at the
provider's input rate (soxr) into temporary WAV files, and the results are put back on the session clock.

For the API (/api/stt): every job has an `id` and is kept, with its results, among the last `history` jobs
(`job()`, `jobs()`); `file_job()` makes a job for any mono WAV/FLAC file (a recording's leg, an upload), whose
results are on the file's own clock; `cancel_queued()` drops the jobs not started yet (state "cancelled").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
import soxr

from siprec.events.types import Event, SttStarted
from siprec.stt.legclock import LegClock, Span
from siprec.stt.provider import SttProvider, Transcript
from siprec.stt.providers import ProviderPool
from siprec.stt.stats import Counters
from siprec.stt.transcript import shift

__all__ = ["Job", "PostCallQueue", "cut_wav", "file_job"]

log = logging.getLogger("siprec.stt")

MIN_SPAN_S = 0.1  # shorter stretches hold no word
READ_BLOCK = 65536
HISTORY = 1000  # finished jobs kept for the API (queued and running ones are always kept)

QUEUED, RUNNING, DONE, FAILED, ABANDONED, CANCELLED = "queued", "running", "done", "failed", "abandoned", "cancelled"
STATES = (QUEUED, RUNNING, DONE, FAILED, ABANDONED, CANCELLED)


@dataclass(eq=False)
class Job:
    call_id: str
    session_id: str
    leg: int
    stream_label: str | None
    provider: str  # the queue it waits in
    reason: str  # capacity | lagging | failed | gap
    spans: Callable[[], list[Span]]  # session-time stretches to transcribe, asked when the job starts
    clock: LegClock
    on_results: Callable[[list[Transcript], str], None]  # final results on the session clock, provider name
    announce: bool = True  # publish stt_started (post_call) when it starts
    path: Path | None = None  # the leg file, set when the session ended
    ready: bool = False
    state: str = QUEUED
    tried: list[str] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    queued_at: float = field(default_factory=time.time)  # Unix times
    started_at: float | None = None
    finished_at: float | None = None
    progress: float = 0.0  # share of its stretches transcribed (of the last provider that ran it)
    results: list[Transcript] = field(default_factory=list)  # the finals, once done
    audio_s: float = 0.0  # audio given to transcribe_file, and the seconds it took (real-time factor)
    busy_s: float = 0.0
    error: str | None = None  # why it failed or was abandoned
    discard_path: bool = False  # delete `path` when the job is over (an upload)
    language: str | None = None  # None: the queue's (stt.language when the job runs)

    @property
    def pending(self) -> bool:
        return self.state in (QUEUED, RUNNING)


class _FileProblem(Exception):
    """The leg file cannot be read: no other provider would do better."""


class PostCallQueue:
    def __init__(
        self, pool: ProviderPool, *, language: str, publish: Callable[[Event], None], counters: Counters
    ) -> None:
        self._pool = pool
        self.language = language  # a reload of stt.language changes it for the jobs that start after it
        self._publish = publish
        self._counters = counters
        self._queues: dict[str, list[Job]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._closing = False
        self._known: OrderedDict[str, Job] = OrderedDict()  # by id, first queued first
        self.history = HISTORY

    # ---------------------------------------------------------------- queue

    def add(self, job: Job) -> int:
        """Queue a job on its provider; its position among the jobs not started there, from 1."""
        if job.id not in self._known:
            self._known[job.id] = job
            self._forget_old()
        if self._closing:
            self._finish(job, ABANDONED)
            return 0
        queue = self._queues.setdefault(job.provider, [])
        queue.append(job)
        self._ensure_worker(job.provider)
        return sum(1 for j in queue if j.state == QUEUED)

    def mark_ready(self, job: Job, path: Path | None) -> None:
        """The session ended: the job may run (path None: the leg has no file, the job ends empty)."""
        job.path, job.ready = path, True
        worker = self._workers.get(job.provider)
        # without a worker (the service is closing) no one would run it
        if job.state == QUEUED and (worker is None or worker.done()):
            self._queues.get(job.provider, []).remove(job)
            self._finish(job, ABANDONED)
            return
        self._wake_worker(job.provider)

    def job(self, job_id: str) -> Job | None:
        return self._known.get(job_id)

    def jobs(self) -> list[Job]:
        """Every job kept, first queued first."""
        return list(self._known.values())

    def by_state(self) -> dict[str, int]:
        counts = Counter(job.state for job in self._known.values())
        return {state: counts.get(state, 0) for state in STATES}

    def position(self, job: Job) -> int | None:
        """Place among the queued jobs of its provider, from 1 (None when not queued)."""
        if job.state != QUEUED:
            return None
        queued = [j for j in self._queues.get(job.provider, []) if j.state == QUEUED]
        return queued.index(job) + 1 if job in queued else None

    def cancel_queued(self) -> list[Job]:
        """Cancel every job not started yet (running ones finish); a leg's cancelled job leaves it untranscribed."""
        cancelled: list[Job] = []
        for queue in self._queues.values():
            for job in [j for j in queue if j.state == QUEUED]:
                queue.remove(job)
                self._finish(job, CANCELLED, "cancelled through the API")
                cancelled.append(job)
        return cancelled

    def _forget_old(self) -> None:
        extra = len(self._known) - self.history
        if extra <= 0:
            return
        for job_id in [i for i, j in self._known.items() if not j.pending][:extra]:
            del self._known[job_id]

    def waiting(self) -> int:
        return sum(1 for q in self._queues.values() for j in q if j.state == QUEUED)

    def running(self) -> int:
        return sum(1 for q in self._queues.values() for j in q if j.state == RUNNING)

    def _ensure_worker(self, name: str) -> None:
        self._wake.setdefault(name, asyncio.Event())
        worker = self._workers.get(name)
        if worker is None or worker.done():
            self._workers[name] = asyncio.create_task(self._work(name), name=f"stt-jobs-{name}")
        self._wake[name].set()

    def _wake_worker(self, name: str) -> None:
        if name in self._wake:
            self._wake[name].set()

    # ---------------------------------------------------------------- worker

    async def _work(self, name: str) -> None:
        queue, wake = self._queues[name], self._wake[name]
        while True:
            job = next((j for j in queue if j.state == QUEUED and j.ready), None)
            if job is None:
                if self._closing:
                    return
                wake.clear()
                await wake.wait()
                continue
            provider = await self._pool.acquire(name)
            if job.state != QUEUED:  # cancelled while the provider started
                continue
            if provider is None:
                queue.remove(job)
                self._move_on(job, name, "provider not running")
                continue
            job.state = RUNNING
            job.started_at = job.started_at or time.time()
            job.tried.append(name)
            if job.announce:
                job.announce = False
                self._publish(
                    SttStarted(
                        call_id=job.call_id,
                        session_id=job.session_id,
                        leg=job.leg,
                        stream_label=job.stream_label,
                        mode="post_call",
                        provider=name,
                    )
                )
            try:
                results = await self._run(job, provider)
            except asyncio.CancelledError:
                queue.remove(job)
                self._finish(job, ABANDONED)
                raise
            except _FileProblem as exc:
                queue.remove(job)
                log.warning(
                    "post-call transcription of leg %d failed: %s",
                    job.leg,
                    exc,
                    extra={"call_id": job.call_id},
                )
                self._finish(job, FAILED, str(exc))
                continue
            except Exception as exc:
                queue.remove(job)
                log.warning(
                    "post-call transcription of leg %d with %s failed: %s: %s",
                    job.leg,
                    name,
                    type(exc).__name__,
                    exc,
                    extra={"call_id": job.call_id},
                )
                job.state = QUEUED
                self._move_on(job, name, f"{type(exc).__name__}: {exc}")
                continue
            queue.remove(job)
            job.results = results
            job.on_results(results, name)
            self._finish(job, DONE)

    def _move_on(self, job: Job, failed: str, why: str) -> None:
        nxt = next((n for n in self._pool.after(failed) if n not in job.tried), None)
        if nxt is None or self._closing:
            log.warning(
                "leg %d is not transcribed: no provider left (%s: %s)",
                job.leg,
                failed,
                why,
                extra={"call_id": job.call_id},
            )
            self._finish(job, FAILED if nxt is None else ABANDONED, f"{failed}: {why}")
            return
        job.provider = nxt
        self.add(job)

    def _finish(self, job: Job, state: str, error: str | None = None) -> None:
        job.state, job.finished_at = state, time.time()
        if state != DONE:
            job.error = error or job.error
        if job.discard_path and job.path is not None:
            job.path.unlink(missing_ok=True)
        if state == DONE:
            self._counters.jobs_done += 1
        elif state == FAILED:
            self._counters.jobs_failed += 1
        elif state == ABANDONED:
            self._counters.jobs_abandoned += 1
        job.finished.set()

    async def _run(self, job: Job, provider: SttProvider) -> list[Transcript]:
        spans = job.spans()
        if not spans or job.path is None:
            return []
        try:
            file_rate = (await asyncio.to_thread(soundfile.info, str(job.path))).samplerate
        except (OSError, RuntimeError) as exc:  # soundfile: RuntimeError subclasses
            raise _FileProblem(f"cannot read {job.path}: {exc}") from None
        rate = type(provider).capabilities.input_rate(file_rate)
        out: list[Transcript] = []
        job.progress = 0.0
        with tempfile.TemporaryDirectory(prefix="siprec-stt-") as tmp:
            for i, (start, end) in enumerate(spans):
                file_start, file_end = job.clock.file_time(start), job.clock.file_time(end)
                if file_end - file_start < MIN_SPAN_S:
                    continue
                piece = Path(tmp) / f"leg-{job.leg}-{i}.wav"
                try:
                    seconds = await asyncio.to_thread(cut_wav, job.path, piece, file_start, file_end, rate)
                except (OSError, RuntimeError) as exc:
                    raise _FileProblem(f"cannot cut {job.path}: {exc}") from None
                if seconds < MIN_SPAN_S:  # the file is shorter than the leg's clock says
                    continue
                began = time.monotonic()
                results = await provider.transcribe_file(piece, language=job.language or self.language)
                job.busy_s += time.monotonic() - began
                job.audio_s += seconds
                job.progress = (i + 1) / len(spans)

                def to_session(t: float, offset: float = file_start) -> float:
                    return job.clock.session_time(offset + t)

                out += [shift(r, to_session) for r in results if r.is_final and r.text.strip()]
        job.progress = 1.0
        return out

    # ---------------------------------------------------------------- shutdown

    async def close(self, timeout: float | None = None) -> None:
        """Run the jobs that are ready (up to `timeout` seconds), abandon the others; no task left behind."""
        self._closing = True
        for queue in self._queues.values():
            for job in list(queue):
                if job.state == QUEUED and not job.ready:
                    queue.remove(job)
                    self._finish(job, ABANDONED)
        for wake in self._wake.values():
            wake.set()
        workers = [w for w in self._workers.values() if not w.done()]
        if workers:
            _, late = await asyncio.wait(workers, timeout=timeout)
            for worker in late:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        for queue in self._queues.values():
            for job in queue:
                if job.pending:
                    self._finish(job, ABANDONED)
            queue.clear()


def file_job(
    path: Path,
    duration_s: float,
    provider: str,
    *,
    call_id: str = "",
    session_id: str = "",
    leg: int = 0,
    stream_label: str | None = None,
    discard_path: bool = False,
) -> Job:
    """A ready job transcribing the whole mono file `path` (`duration_s` long); results on the file's clock, kept
    in `job.results`. No stt_started event (no live call is waiting for it)."""
    clock = LegClock(drop_paused=False)
    clock.note(0.0, duration_s, paused=False)
    return Job(
        call_id=call_id, session_id=session_id, leg=leg, stream_label=stream_label, provider=provider,
        reason="api", spans=lambda: [(0.0, duration_s)], clock=clock, on_results=lambda results, name: None,
        announce=False, path=path, ready=True, discard_path=discard_path,
    )  # fmt: skip


def cut_wav(src: Path, dst: Path, start_s: float, end_s: float, out_rate: int) -> float:
    """Write [start_s, end_s) of the mono file `src` to `dst` as 16-bit WAV at `out_rate` (soxr), in blocks;
    returns the seconds written (less than asked when the file ends first)."""
    with soundfile.SoundFile(str(src)) as f:
        in_rate = f.samplerate
        first = max(0, int(round(start_s * in_rate)))
        remaining = max(0, min(f.frames, int(round(end_s * in_rate))) - first)
        f.seek(min(first, f.frames))
        stream = None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16")
        with soundfile.SoundFile(
            str(dst), "w", samplerate=out_rate, channels=1, subtype="PCM_16", format="WAV"
        ) as out:
            while remaining > 0:
                block = f.read(min(READ_BLOCK, remaining), dtype="int16", always_2d=True)[:, 0]
                if not len(block):
                    break
                remaining -= len(block)
                out.write(block if stream is None else stream.resample_chunk(np.ascontiguousarray(block)))
            if stream is not None:
                with contextlib.suppress(ValueError):
                    out.write(stream.resample_chunk(np.zeros(0, np.int16), last=True))
            return out.frames / out_rate
