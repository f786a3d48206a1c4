"""What /api/stt needs of the post-call queue (siprec.stt.jobs), on a real ProviderPool and PostCallQueue with real
files: a job cancelled while its provider is still starting is never run, finished jobs are forgotten beyond the
history bound (queued and running ones never), and a file job's results and timings are kept on the job."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import soundfile

from siprec.events.types import Event
from siprec.stt.jobs import CANCELLED, DONE, QUEUED, PostCallQueue, file_job
from siprec.stt.provider import Capabilities, ProviderConfig, StreamParams, SttError, Transcript
from siprec.stt.providers import ProviderPool
from siprec.stt.registry import ProviderChoice, SttPlan
from siprec.stt.stats import Counters


class SlowConfig(ProviderConfig):
    pass


class SlowStart:
    """Its start waits for `started` to be opened; each file gives one final spanning the file."""

    name: ClassVar[str] = "slow"
    capabilities: ClassVar[Capabilities] = Capabilities(
        streaming=False, partials=False, word_timestamps=False, languages=("*",), sample_rates=(8000,)
    )
    config_model: ClassVar[type[ProviderConfig]] = SlowConfig
    started: ClassVar[asyncio.Event]
    transcribed: ClassVar[list[Path]] = []

    def __init__(self, config: SlowConfig) -> None:
        self.config = config

    async def start(self) -> None:
        await type(self).started.wait()

    def open_stream(self, params: StreamParams) -> Any:
        raise SttError("files only")

    async def transcribe_file(self, path: Path, *, language: str) -> Sequence[Transcript]:
        type(self).transcribed.append(path)
        seconds = soundfile.info(str(path)).duration
        return [Transcript("all of it", True, 0.0, seconds)]

    async def close(self) -> None:
        return None


def wav(path: Path, seconds: float) -> Path:
    soundfile.write(str(path), np.full(int(8000 * seconds), 1000, np.int16), 8000, subtype="PCM_16")
    return path


async def test_cancel_while_the_provider_starts_and_the_history_bound(tmp_path: Path) -> None:
    SlowStart.started, SlowStart.transcribed = asyncio.Event(), []
    pool = ProviderPool(SttPlan((ProviderChoice("slow", SlowStart, SlowConfig()),), "en-US"))
    events: list[Event] = []
    queue = PostCallQueue(pool, language="en-US", publish=events.append, counters=Counters())
    first = file_job(wav(tmp_path / "a.wav", 1.0), 1.0, "slow", discard_path=True)
    assert queue.add(first) == 1
    for _ in range(20):  # the worker takes the job and waits for the provider's start
        await asyncio.sleep(0)
    assert first.state == QUEUED and queue.position(first) == 1
    assert queue.cancel_queued() == [first]
    assert first.state == CANCELLED and first.finished.is_set() and first.finished_at is not None
    assert first.path is not None and not first.path.exists()  # an upload is deleted with its job
    SlowStart.started.set()
    second = file_job(wav(tmp_path / "b.wav", 0.5), 0.5, "slow", call_id="c", session_id="s", leg=1)
    queue.add(second)
    await asyncio.wait_for(second.finished.wait(), 10)
    assert SlowStart.transcribed and first.path not in SlowStart.transcribed  # the cancelled job never ran
    assert second.state == DONE and second.progress == 1.0 and second.started_at is not None
    assert [(r.text, r.start, r.end) for r in second.results] == [("all of it", 0.0, 0.5)]
    assert second.audio_s == 0.5 and second.busy_s >= 0
    assert second.path is not None and second.path.exists()  # a recording's file is not the job's to delete
    assert queue.by_state() == {
        "queued": 0,
        "running": 0,
        "done": 1,
        "failed": 0,
        "abandoned": 0,
        "cancelled": 1,
    }
    third = file_job(wav(tmp_path / "c.wav", 0.5), 0.5, "slow")
    queue.history = 2
    queue.add(third)  # over the bound: the oldest finished job is forgotten, never a pending one
    assert [j.id for j in queue.jobs()] == [second.id, third.id]
    await asyncio.wait_for(third.finished.wait(), 10)
    assert queue.job(first.id) is None and queue.job(third.id) is third
    assert events == []  # API jobs announce nothing on the bus
    await queue.close(5)
    await pool.close()
