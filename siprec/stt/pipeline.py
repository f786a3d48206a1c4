"""`SttService`: live transcription of every recorded leg, post-call jobs, transcript.json per session.

The recording path opens one `LegTranscriber` per leg (`open_leg`), feeds it PCM, closes it, and calls
`session_ended` with the session's folder and leg files. The service decides per leg at open time:
- live, on the provider in use (the first of stt.provider, stt.fallback that started), while fewer than
  stt.max_concurrent legs are live (0 = no limit): stt_started (mode "live");
- else post-call: the leg is queued FIFO for transcription from its recording once the call has ended,
  stt_queued (reason "capacity", position from 1) at once, stt_started (mode "post_call") when its job starts.
A live leg can still move to post-call (lagging, failure): see siprec.stt.leg. When the session's live streams
have delivered their finals and its jobs are done, transcript.json is written beside the recording.

Everything runs on the event loop; provider work is the provider's business (threads, sockets) and never blocks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siprec.config import Config
from siprec.events.types import Event
from siprec.stt.jobs import PostCallQueue
from siprec.stt.leg import LegTranscriber, PipelineContext
from siprec.stt.providers import ProviderPool
from siprec.stt.registry import ProviderRegistry, SttPlan
from siprec.stt.stats import Counters, LatencyHistogram
from siprec.stt.transcript import LegIdentity, write_transcript

__all__ = ["MAX_LAG_S", "SttService"]

log = logging.getLogger("siprec.stt")

MAX_LAG_S = 10.0  # seconds of audio a leg may have waiting for its provider before it goes post-call
DEGRADED_AFTER_FAILURE_S = 300.0  # health says "degraded" this long after a stream failed


@dataclass(eq=False)
class _Session:
    call_id: str
    session_id: str
    legs: list[LegTranscriber] = field(default_factory=list)
    ended: bool = False
    folder: Path | None = None
    leg_files: dict[int, Path] = field(default_factory=dict)
    warned_off: bool = False


class SttService:
    def __init__(
        self,
        config: Config,
        publish: Callable[[Event], None],
        registry: ProviderRegistry | None = None,
        *,
        max_lag_s: float = MAX_LAG_S,
    ) -> None:
        self._config = config
        self._publish = publish
        self._registry = registry if registry is not None else ProviderRegistry()
        self._max_lag_s = max_lag_s
        self.counters = Counters()
        self.latency = LatencyHistogram()
        self.plan: SttPlan | None = None
        self._pool: ProviderPool | None = None
        self._jobs: PostCallQueue | None = None
        self._ctx: PipelineContext | None = None
        self._sessions: dict[str, _Session] = {}
        self._live: set[LegTranscriber] = set()
        self._waiting: deque[LegTranscriber] = deque()  # queued for capacity, first come first promoted
        self._finalizers: set[asyncio.Task[None]] = set()
        self._last_failure: float | None = None
        self._state = "new"  # new | running | closing | closed

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Check stt.* against the installed providers (ConfigError if wrong), then start the provider: the main
        one, else the fallbacks in order. A provider that cannot start does not stop the server: calls are then
        recorded without transcription and health() says so."""
        if self._state != "new":
            raise RuntimeError(f"SttService.start() called when {self._state}")
        stt = self._config.stt
        self.plan = plan = self._registry.plan(stt)
        for name, why in self._registry.broken().items():
            log.warning("STT provider %s is installed but unusable: %s", name, why)
        for warning in plan.warnings:
            log.warning("%s", warning)
        self._pool = ProviderPool(plan)
        self._jobs = PostCallQueue(
            self._pool, language=stt.language, publish=self._publish, counters=self.counters
        )
        self._ctx = PipelineContext(
            pool=self._pool, jobs=self._jobs, publish=self._publish, counters=self.counters, latency=self.latency,
            language=stt.language, partials=stt.partials, max_lag_s=self._max_lag_s,
            drop_paused=self._config.recording.pause_mode == "drop",
            on_live_end=self._live_ended, on_failure=self._note_failure,
        )  # fmt: skip
        self._state = "running"
        if plan.enabled:
            await self._pool.start()
        else:
            log.info("STT is off (stt.provider: none)")

    async def close(self, *, jobs_timeout_s: float | None = None) -> None:
        """Close every leg (live streams deliver their last finals), run the post-call jobs of ended sessions (at
        most `jobs_timeout_s` seconds; None = all), write their transcripts, stop the providers. Jobs of sessions
        that never ended are dropped. Leaves no task behind."""
        if self._state in ("closing", "closed"):
            return
        self._state = "closing"
        legs = [leg for s in self._sessions.values() for leg in s.legs]
        for leg in legs:
            leg.close()
        await asyncio.gather(*(leg.wait_finished() for leg in legs))
        if self._jobs is not None:
            for session in self._sessions.values():  # ready now, before close() drops jobs not ready
                if session.ended:
                    self._mark_ready(session)
            await self._jobs.close(jobs_timeout_s)
        await self.wait_idle()
        if self._pool is not None:
            await self._pool.close()
        self._sessions.clear()
        self._state = "closed"

    # ---------------------------------------------------------------- legs

    def open_leg(
        self,
        *,
        call_id: str,
        session_id: str,
        leg_index: int,
        stream_label: str | None,
        speaker_label: str | None,
        participant_id: str | None,
        sample_rate: int,
        paused: Callable[[], bool],
        recording_paused: Callable[[], bool] | None = None,
    ) -> LegTranscriber:
        """A transcriber for one leg; feed it every block of the leg from its first sample on. `paused`: live
        transcription is paused (nothing is fed, and post-call jobs skip the stretch); `recording_paused`: the
        recording is paused (with pause_mode drop the stretch is missing from the leg file; default: `paused`)."""
        if self._state != "running" or self._ctx is None or self._pool is None or self.plan is None:
            raise RuntimeError(f"SttService.open_leg() called when {self._state}")
        session = self._sessions.get(session_id)
        if session is None:
            session = self._sessions[session_id] = _Session(call_id, session_id)
        who = LegIdentity(call_id, session_id, leg_index, stream_label, speaker_label, participant_id)
        leg = LegTranscriber(
            self._ctx, who, sample_rate=sample_rate, paused=paused, recording_paused=recording_paused
        )
        session.legs.append(leg)
        self.counters.legs_opened += 1
        active = self._pool.active
        if not self.plan.enabled:
            return leg
        if active is None or session.ended:
            if not session.warned_off:
                session.warned_off = True
                why = "the session already ended" if session.ended else "no STT provider is running"
                log.warning("call not transcribed: %s", why, extra={"call_id": call_id})
            return leg
        limit = self._config.stt.max_concurrent
        if limit and len(self._live) >= limit:
            self.counters.legs_queued += 1
            leg.queue_whole_leg(active)
            self._waiting.append(leg)
        else:
            self.counters.legs_live += 1
            self._live.add(leg)
            leg.start_live(active)
        return leg

    def apply_settings(self, *, language: str, partials: bool) -> None:
        """A reload of stt.language / stt.partials: legs opened from now on and jobs started from now on use
        them; legs already open keep what they opened with (their streams were opened for it)."""
        if self._ctx is not None:
            self._ctx.language, self._ctx.partials = language, partials
        if self._jobs is not None:
            self._jobs.language = language

    def _live_ended(self, leg: LegTranscriber) -> None:
        """A live stream is over: its slot goes to the leg that has waited longest and is still in its call."""
        self._live.discard(leg)
        limit = self._config.stt.max_concurrent
        active = self._pool.active if self._pool is not None else None
        while self._waiting and active is not None and self._state == "running":
            if limit and len(self._live) >= limit:
                return
            waiting = self._waiting.popleft()
            if not waiting.waiting_for_slot:
                continue  # its call ended: the post-call job has the whole leg
            self.counters.legs_promoted += 1
            self._live.add(waiting)
            log.info(
                "leg %d: a live STT slot is free, transcribing it live from now on",
                waiting.index, extra={"call_id": waiting.who.call_id},
            )  # fmt: skip
            waiting.go_live(active)

    def session_ended(
        self, *, call_id: str, session_id: str, folder: Path, leg_files: dict[int, Path]
    ) -> None:
        """The call is over and its files complete: close its legs; once their live finals are in and their
        post-call jobs done, write <folder>/transcript.json (see wait_idle). Leg files must stay readable until
        then."""
        session = self._sessions.get(session_id)
        if session is None:
            session = self._sessions[session_id] = _Session(call_id, session_id)
        if session.ended:
            return
        session.ended, session.folder, session.leg_files = True, Path(folder), dict(leg_files)
        for leg in session.legs:
            leg.close()
        if self._waiting:  # its legs no longer wait for a live slot (and must not be held by the queue)
            self._waiting = deque(leg for leg in self._waiting if leg.waiting_for_slot)
        never_ran = all(leg.provider is None for leg in session.legs)  # STT off or no provider running
        if self.plan is None or not self.plan.enabled or self._state == "closed" or never_ran:
            self._sessions.pop(session_id, None)
            return
        task = asyncio.create_task(self._finish_session(session), name=f"stt-session-{call_id}")
        self._finalizers.add(task)
        task.add_done_callback(self._finalizers.discard)

    def _mark_ready(self, session: _Session) -> None:
        assert self._jobs is not None
        for leg in session.legs:
            if leg.job is not None and not leg.job.ready:
                self._jobs.mark_ready(leg.job, session.leg_files.get(leg.index))

    def busy_folders(self) -> set[Path]:
        """Recording folders STT still reads or writes (resolved): sessions whose transcript.json is not written
        yet and the files of pending jobs. An erase must wait for them (/api/compliance/gdpr/erase answers 409)."""
        folders = {s.folder for s in self._sessions.values() if s.ended and s.folder is not None}
        if self._jobs is not None:
            folders |= {j.path.parent for j in self._jobs.jobs() if j.pending and j.path is not None}
        return {folder.resolve() for folder in folders}

    async def wait_idle(self) -> None:
        """Until every ended session has its transcript.json written (or given up)."""
        while self._finalizers:
            await asyncio.wait(set(self._finalizers))

    async def _finish_session(self, session: _Session) -> None:
        try:
            await asyncio.gather(*(leg.wait_finished() for leg in session.legs))
            jobs = [leg.job for leg in session.legs if leg.job is not None]
            self._mark_ready(session)
            await asyncio.gather(*(job.finished.wait() for job in jobs))
            segments = [s for leg in session.legs for s in leg.finals]
            providers = {s.provider for s in segments}
            provider = (self._pool.active if self._pool else None) or (
                self.plan.names[0] if self.plan else ""
            )
            if len(providers) == 1:
                provider = providers.pop()
            assert session.folder is not None
            language = session.legs[0].language if session.legs else self._config.stt.language
            path = await asyncio.to_thread(
                write_transcript, session.folder, call_id=session.call_id, session_id=session.session_id,
                provider=provider, language=language, segments=segments,
            )  # fmt: skip
            self.counters.transcripts_written += 1
            unfinished = [j.leg for j in jobs if j.state != "done"]
            log.info(
                "transcript written: %s (%d segments%s)",
                path,
                len(segments),
                f"; legs not transcribed: {unfinished}" if unfinished else "",
                extra={"call_id": session.call_id},
            )
        except OSError as exc:
            log.error(
                "cannot write transcript.json in %s: %s",
                session.folder,
                exc,
                extra={"call_id": session.call_id},
            )
        except Exception:  # a bug: say so with the trace, never leave the task's exception unread
            log.exception("transcript of the session failed", extra={"call_id": session.call_id})
        finally:
            self._sessions.pop(session.session_id, None)

    # ---------------------------------------------------------------- observability

    @property
    def jobs(self) -> PostCallQueue | None:
        """The post-call job queue (None before start()): /api/stt submits, lists and cancels jobs on it."""
        return self._jobs

    @property
    def registry(self) -> ProviderRegistry:
        """The installed providers this service plans from (/api/stt/stats lists them)."""
        return self._registry

    def _note_failure(self) -> None:
        self._last_failure = time.monotonic()

    def stats(self) -> dict[str, Any]:
        """Plain data for /api/stt/stats and /metrics."""
        pool = self._pool
        return {
            "enabled": bool(self.plan and self.plan.enabled),
            "provider": pool.active if pool else None,
            "providers": pool.states() if pool else {},
            "language": self._config.stt.language,
            "max_concurrent": self._config.stt.max_concurrent,
            "live_streams": len(self._live),
            "queued_legs": self._jobs.waiting() if self._jobs else 0,
            "running_jobs": self._jobs.running() if self._jobs else 0,
            "sessions": len(self._sessions),
            **dataclasses.asdict(self.counters),
            "final_latency_s": self.latency.to_dict(),
        }

    def health(self) -> tuple[str, dict[str, Any]]:
        """("ok" | "degraded" | "failed" | "disabled" | "starting" | "closed", details)."""
        details: dict[str, Any] = {
            "provider": self._pool.active if self._pool else None,
            "providers": self._pool.states() if self._pool else {},
            "live_streams": len(self._live),
            "queued_legs": self._jobs.waiting() if self._jobs else 0,
        }
        if self._state == "new":
            return "starting", details
        if self._state in ("closing", "closed"):
            return "closed", details
        assert self.plan is not None and self._pool is not None
        if not self.plan.enabled:
            return "disabled", details
        active = self._pool.active
        if active is None:
            return "failed", details
        reasons = []
        if active != self.plan.names[0]:
            reasons.append(f"running on fallback {active}")
        if (
            self._last_failure is not None
            and time.monotonic() - self._last_failure < DEGRADED_AFTER_FAILURE_S
        ):
            reasons.append("a stream failed in the last 5 minutes")
        if reasons:
            details["reasons"] = reasons
            return "degraded", details
        return "ok", details
