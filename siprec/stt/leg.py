"""`LegTranscriber`: one leg's way from the recording path to a provider stream, and from the stream to the bus.

The recording path calls `feed()` with every block of the leg (int16 PCM at the codec rate, session time of its
first sample). `feed()` never waits: it notes the block on the leg clock and, when the leg is live and not paused,
appends a copy to a queue bounded in seconds of audio. One task per live leg (the runner) takes the blocks,
resamples them to the provider's input rate (soxr, `LegResampler`) and feeds its stream; a second task reads the
stream's results and publishes them.

The leg leaves live transcription, keeping every final it already has, when
- its queue plus the stream's own backlog exceeds `max_lag_s` (the provider is slower than real time): the stream
  is closed (it finishes what it was fed) and the rest of the leg becomes a post-call job (stt_queued "lagging");
- its stream fails (feed or results raise, open_stream raises, close fails) and no fallback provider can take
  over: the rest becomes a post-call job (stt_queued "failed"). With a fallback the leg goes on live on it
  (stt_started "live" again) and the audio no stream covered - from the failed stream's last final to the
  fallback's first block - is transcribed after the call (a silent "gap" job).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from siprec.events.types import Event, SttQueued, SttStarted
from siprec.stt.jobs import Job, PostCallQueue
from siprec.stt.legclock import LegClock, Span, subtract
from siprec.stt.provider import StreamParams, SttStream, Transcript, stream_backlog_s
from siprec.stt.providers import ProviderPool
from siprec.stt.resample import LegResampler
from siprec.stt.stats import Counters, LatencyHistogram
from siprec.stt.transcript import LegIdentity, Segment, segment, to_event

__all__ = ["LegTranscriber", "PipelineContext"]

log = logging.getLogger("siprec.stt")

CLOSE_TIMEOUT_S = 60.0  # a stream finishing its last utterance; beyond this it counts as failed
ARRIVALS_KEPT = 4096  # (block end, arrival) pairs kept per leg for the latency measure

OFF, LIVE, QUEUED = "off", "live", "post_call"


@dataclass
class PipelineContext:
    """What every leg of one SttService shares."""

    pool: ProviderPool
    jobs: PostCallQueue
    publish: Callable[[Event], None]
    counters: Counters
    latency: LatencyHistogram
    language: str
    partials: bool
    max_lag_s: float
    drop_paused: bool
    on_live_end: Callable[[LegTranscriber], None]
    on_failure: Callable[[], None]


@dataclass
class _StreamRun:
    """One provider stream of a leg."""

    provider: str
    first_ts: float | None = None  # session time of the first block it was fed
    fed_until: float | None = None  # session time just after the last block it was fed
    covered_until: float | None = None  # end of its last final


class _StreamFailed(Exception):
    pass


class LegTranscriber:
    def __init__(
        self,
        ctx: PipelineContext,
        who: LegIdentity,
        *,
        sample_rate: int,
        paused: Callable[[], bool],
        recording_paused: Callable[[], bool] | None = None,
    ) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive (got {sample_rate})")
        self._ctx = ctx
        self.who = who
        # what the leg opened with: a reload changes them for the legs that open after it
        self.language, self.partials = ctx.language, ctx.partials
        self.sample_rate = sample_rate
        self._paused = paused
        # in drop mode, what the recording cuts out of the leg file (the post-call time map needs it)
        self._cut = (recording_paused or paused) if ctx.drop_paused else None
        self.clock = LegClock()
        self.mode = OFF
        self.provider: str | None = None  # the provider of the live stream (or of the last one)
        self.finals: list[Segment] = []
        self.job: Job | None = None
        self._whole_leg = False  # the job transcribes the whole leg (never live)
        self._untranscribed: list[Span] = []  # closed stretches no stream covered
        self._gap_from: float | None = None  # an open one
        self._fed_until: float | None = None  # end of the last block given to any stream
        self._queue: deque[tuple[np.ndarray, float]] = deque()
        self._queued_samples = 0
        self._arrivals: deque[tuple[float, float]] = deque(maxlen=ARRIVALS_KEPT)
        self._stream: SttStream | None = None
        self._wake = asyncio.Event()
        self._switching = False
        self._closed = False
        self._runner: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- the recording path's side

    @property
    def index(self) -> int:
        return self.who.leg

    @property
    def live(self) -> bool:
        return self.mode == LIVE

    def feed(self, pcm: np.ndarray, timestamp: float) -> None:
        """int16 mono samples at the leg's rate, the first at `timestamp` (seconds from the session start)."""
        if self._closed or self.mode == OFF or not len(pcm):
            return
        paused = bool(self._paused())
        duration = len(pcm) / self.sample_rate
        cut = self._cut is not None and bool(self._cut())
        self.clock.note(timestamp, duration, paused=paused, in_file=not cut)
        if paused or self.mode != LIVE or self._switching:
            return
        # a copy: the caller may reuse its buffer
        self._queue.append((np.array(pcm, dtype=np.int16, copy=True), timestamp))
        self._queued_samples += len(pcm)
        self._arrivals.append((timestamp + duration, time.monotonic()))
        lag = self._queued_samples / self.sample_rate + (
            stream_backlog_s(self._stream) if self._stream else 0.0
        )
        if lag > self._ctx.max_lag_s:
            log.warning(
                "leg %d: STT is %.1f s behind real time; the rest of the leg is transcribed after the call",
                self.index,
                lag,
                extra={"call_id": self.who.call_id},
            )
            self._ctx.counters.lagging_switches += 1
            self._to_post_call("lagging")
            return
        self._wake.set()

    def set_speaker(self, speaker_label: str | None, participant_id: str | None) -> None:
        """Who speaks on this leg from now on (a metadata update)."""
        self.who.speaker_label, self.who.participant_id = speaker_label, participant_id

    def close(self) -> None:
        """No more audio: the live stream finishes its last utterance in the background."""
        if not self._closed:
            self._closed = True
            self._wake.set()

    async def wait_finished(self) -> None:
        """Until the live stream (if any) has delivered its last final and the leg has left live mode."""
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)

    # ---------------------------------------------------------------- the service's side

    def start_live(self, provider: str) -> None:
        self.mode, self.provider = LIVE, provider
        self._runner = asyncio.create_task(
            self._run(provider), name=f"stt-leg-{self.who.call_id}-{self.index}"
        )

    def queue_whole_leg(self, provider: str, reason: str = "capacity") -> Job:
        self._whole_leg = True
        self.mode, self.provider = QUEUED, provider
        return self._queue_job(reason, provider, announce=True)

    @property
    def waiting_for_slot(self) -> bool:
        """Queued for capacity, still open and never live: a live slot that frees may take it."""
        return self._whole_leg and self.mode == QUEUED and not self._closed

    def go_live(self, provider: str) -> None:
        """A live slot freed while this leg waited: transcribe it live from now on. What it said before stays in
        its post-call job, which now covers the leg's start up to the stream's first block."""
        self._whole_leg = False
        self._gap_from = self.clock.start  # closed by the first block the stream gets (None: nothing before)
        self.start_live(provider)

    def spans(self) -> list[Span]:
        """The stretches of the leg no live stream transcribed (session times), paused stretches left out."""
        start, end = self.clock.start, self.clock.end
        if start is None or end is None:
            return []
        if self._whole_leg:
            spans = [(start, end)]
        else:
            spans = list(self._untranscribed)
            if self._gap_from is not None:
                spans.append((self._gap_from, end))
        spans = [(max(a, start), min(b, end)) for a, b in sorted(spans)]
        return [(a, b) for a, b in subtract(spans, self.clock.paused) if b - a > 0]

    # ---------------------------------------------------------------- live transcription

    async def _run(self, provider: str | None) -> None:
        try:
            while provider is not None:
                outcome = await self._run_stream(provider)
                if outcome != "failed" or self._closed:
                    break
                provider = await self._next_provider(provider)
                if self._switching or self._closed:
                    break
                if provider is None:
                    self._ctx.counters.failed_to_post_call += 1
                    self._to_post_call("failed")
                else:
                    self._ctx.counters.failovers += 1
        finally:
            self._queue.clear()
            self._queued_samples = 0
            self._stream = None
            if self.mode == LIVE:
                self.mode = QUEUED if self.job is not None else OFF
            self._ctx.on_live_end(self)
            if self.job is None and (self._untranscribed or self._gap_from is not None):
                self._queue_job("gap", self.provider or "", announce=False)

    async def _next_provider(self, failed: str) -> str | None:
        for name in self._ctx.pool.after(failed):
            if await self._ctx.pool.acquire(name) is not None:
                log.warning(
                    "leg %d goes on with STT provider %s",
                    self.index,
                    name,
                    extra={"call_id": self.who.call_id},
                )
                return name
        return None

    async def _run_stream(self, name: str) -> str:
        """Feed one provider stream until the leg closes ("closed"), lags ("lagging") or the stream fails."""
        run = _StreamRun(name)
        provider = await self._ctx.pool.acquire(name)
        if provider is None:
            self._failed(run, f"provider {name} is not running")
            return "failed"
        if self._switching:
            return "lagging"
        rate = type(provider).capabilities.input_rate(self.sample_rate)
        params = StreamParams(
            sample_rate=rate,
            language=self.language,
            partials=self.partials,
            call_id=self.who.call_id,
            stream_label=self.who.stream_label,
        )
        try:
            stream = provider.open_stream(params)
        except Exception as exc:
            self._failed(run, f"open_stream: {type(exc).__name__}: {exc}")
            return "failed"
        self._stream, self.provider = stream, name
        resampler = LegResampler(self.sample_rate, rate)
        reader = asyncio.create_task(
            self._read(stream, run), name=f"stt-results-{self.who.call_id}-{self.index}"
        )
        reader.add_done_callback(lambda _: self._wake.set())
        w = self.who
        self._ctx.publish(
            SttStarted(
                call_id=w.call_id,
                session_id=w.session_id,
                leg=w.leg,
                stream_label=w.stream_label,
                mode="live",
                provider=name,
            )
        )
        try:
            while True:
                self._pump(stream, resampler, run)
                if reader.done():
                    exc = reader.exception()
                    raise _StreamFailed(
                        f"results: {type(exc).__name__}: {exc}" if exc else "results ended early"
                    )
                if self._closed or self._switching:
                    break
                self._wake.clear()
                await self._wake.wait()
            for block, t in resampler.flush():
                stream.feed(block, t)
            try:
                await asyncio.wait_for(stream.close(), CLOSE_TIMEOUT_S)
                await asyncio.wait_for(reader, CLOSE_TIMEOUT_S)
            except TimeoutError:
                raise _StreamFailed(f"close took more than {CLOSE_TIMEOUT_S:.0f} s") from None
        except asyncio.CancelledError:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            raise
        except Exception as exc:
            self._stream = None  # its backlog no longer counts
            self._failed(run, str(exc) if isinstance(exc, _StreamFailed) else f"{type(exc).__name__}: {exc}")
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stream.close(), 2.0)
            return "failed"
        finally:
            self._stream = None
        return "lagging" if self._switching else "closed"

    def _pump(self, stream: SttStream, resampler: LegResampler, run: _StreamRun) -> None:
        while self._queue and not self._switching:
            pcm, ts = self._queue.popleft()
            self._queued_samples -= len(pcm)
            if run.first_ts is None:
                run.first_ts = ts
                if self._gap_from is not None:  # a stretch no stream covered ends here
                    self._untranscribed.append((self._gap_from, ts))
                    self._gap_from = None
            for block, t in resampler.process(pcm, ts):
                stream.feed(block, t)
            run.fed_until = self._fed_until = ts + len(pcm) / self.sample_rate

    async def _read(self, stream: SttStream, run: _StreamRun) -> None:
        ctx, name = self._ctx, run.provider
        async for result in stream:
            if result.is_final:
                run.covered_until = max(run.covered_until or result.end, result.end)
            if not result.text.strip():
                continue
            if result.is_final:
                self._observe_latency(result.end)
                self.finals.append(segment(result, self.who, name))
                ctx.counters.finals += 1
            elif self.partials:
                ctx.counters.partials += 1
            else:
                continue
            ctx.publish(to_event(result, self.who, name, self.language))

    def _observe_latency(self, end: float) -> None:
        """Time since the block holding the utterance's last sample reached feed()."""
        arrived, before_kept = None, True
        for block_end, at in reversed(self._arrivals):
            if block_end < end - 1e-3:
                before_kept = False
                break
            arrived = at
        if arrived is None or (before_kept and len(self._arrivals) == self._arrivals.maxlen):
            return  # no block reached that far, or the utterance is older than what is kept
        self._ctx.latency.observe(time.monotonic() - arrived)

    def _failed(self, run: _StreamRun, why: str) -> None:
        log.warning(
            "leg %d: STT stream of %s failed: %s",
            self.index,
            run.provider,
            why,
            extra={"call_id": self.who.call_id},
        )
        self._ctx.counters.stream_failures += 1
        self._ctx.on_failure()
        start = run.covered_until if run.covered_until is not None else run.first_ts
        if start is not None:
            self._gap_from = start if self._gap_from is None else min(self._gap_from, start)

    # ---------------------------------------------------------------- post-call

    def _to_post_call(self, reason: str) -> None:
        """Stop live transcription of this leg (the runner closes the stream) and queue a post-call job."""
        self._switching = True
        if self._gap_from is None:  # a stream that closes cleanly has transcribed what it was fed
            self._gap_from = self._fed_until if self._fed_until is not None else self.clock.start
        self._queue.clear()
        self._queued_samples = 0
        self._wake.set()
        self._queue_job(reason, self.provider or "", announce=True)

    def _queue_job(self, reason: str, provider: str, *, announce: bool) -> Job:
        w = self.who
        job = Job(
            call_id=w.call_id,
            session_id=w.session_id,
            leg=w.leg,
            stream_label=w.stream_label,
            provider=provider,
            reason=reason,
            spans=self.spans,
            clock=self.clock,
            on_results=self._post_call_results,
            announce=announce,
            language=self.language,
        )
        self.job = job
        position = self._ctx.jobs.add(job)
        if announce:
            self._ctx.publish(
                SttQueued(
                    call_id=w.call_id,
                    session_id=w.session_id,
                    leg=w.leg,
                    stream_label=w.stream_label,
                    reason=reason,
                    position=position,
                )
            )
        return job

    def _post_call_results(self, results: list[Transcript], provider: str) -> None:
        for result in results:
            self.finals.append(segment(result, self.who, provider))
            self._ctx.counters.finals += 1
            self._ctx.publish(to_event(result, self.who, provider, self.language))
