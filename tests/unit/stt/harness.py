"""Driving an SttService in tests: a service on the tone providers, audio scripts, leg files, event filters."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import soundfile

from siprec.config import Config
from siprec.events.types import Event, SttQueued, SttStarted, TranscriptEvent
from siprec.stt.leg import LegTranscriber
from siprec.stt.pipeline import MAX_LAG_S, SttService
from siprec.stt.registry import ProviderRegistry
from tests.unit.stt.tone_provider import NarrowbandProvider, ToneProvider, silence, tone

E = TypeVar("E", bound=Event)
RATE = 8000
BLOCK = 160  # 20 ms at 8 kHz, as RTP brings it


def script(*parts: tuple[float, float], rate: int = RATE) -> np.ndarray:
    """Audio from (frequency Hz, seconds) parts; frequency 0 is silence."""
    return np.concatenate([tone(f, s, rate) if f else silence(s, rate) for f, s in parts])


# 440 Hz at [0.2, 0.7), 1000 Hz at [1.2, 1.8), 1500 Hz at [2.3, 2.7) from the leg's first sample; 3.2 s in all
THREE_TONES = ((0, 0.2), (440, 0.5), (0, 0.5), (1000, 0.6), (0, 0.5), (1500, 0.4), (0, 0.5))


@dataclass
class Harness:
    service: SttService
    events: list[Event]
    folder: Path
    legs: list[LegTranscriber] = field(default_factory=list)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def finals(self, leg: int | None = None) -> list[TranscriptEvent]:
        return [
            e for e in self.of(TranscriptEvent) if e.is_final and (leg is None or e.metadata["leg"] == leg)
        ]

    def lifecycle(self) -> list[tuple[Any, ...]]:
        """stt_queued / stt_started events in order, as tuples."""
        out: list[tuple[Any, ...]] = []
        for e in self.events:
            if isinstance(e, SttQueued):
                out.append(("queued", e.session_id, e.leg, e.reason, e.position))
            elif isinstance(e, SttStarted):
                out.append(("started", e.session_id, e.leg, e.mode, e.provider))
        return out

    def open(
        self,
        leg: int,
        *,
        session: str = "s1",
        call: str | None = None,
        rate: int = RATE,
        paused: Callable[[], bool] = lambda: False,
        recording_paused: Callable[[], bool] | None = None,
        speaker: str | None = None,
    ) -> LegTranscriber:
        t = self.service.open_leg(
            call_id=call or f"call-{session}",
            session_id=session,
            leg_index=leg,
            stream_label=f"label-{leg}",
            speaker_label=speaker or f"speaker-{leg}",
            participant_id=f"p-{leg}",
            sample_rate=rate,
            paused=paused,
            recording_paused=recording_paused,
        )
        self.legs.append(t)
        return t

    def write_leg(self, index: int, audio: np.ndarray, rate: int = RATE, session: str = "s1") -> Path:
        folder = self.folder / session
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"leg-{index}.wav"
        soundfile.write(str(path), audio, rate, subtype="PCM_16")
        return path

    async def end(self, session: str, leg_files: dict[int, Path]) -> Path:
        folder = self.folder / session
        folder.mkdir(parents=True, exist_ok=True)
        self.service.session_ended(
            call_id=f"call-{session}", session_id=session, folder=folder, leg_files=leg_files
        )
        await asyncio.wait_for(self.service.wait_idle(), 30)
        return folder / "transcript.json"


async def play(
    feeds: Sequence[tuple[LegTranscriber, np.ndarray, float]],
    *,
    rate: int = RATE,
    block: int = BLOCK,
    on_block: Callable[[float], None] | None = None,
) -> None:
    """Feed each (leg, audio, session time of its first sample) block by block, the legs in lockstep, yielding to
    the event loop after every round as the recording path does between packets. `on_block(t)` runs before each
    round with the time from the start of the audio (to flip pauses)."""
    longest = max(len(a) for _, a, _ in feeds)
    for i in range(0, longest, block):
        if on_block is not None:
            on_block(i / rate)
        for leg, audio, start in feeds:
            if i < len(audio):
                leg.feed(audio[i : i + block], start + i / rate)
        await asyncio.sleep(0)


async def make_harness(
    tmp_path: Path,
    stt: dict[str, Any],
    *,
    recording: dict[str, Any] | None = None,
    max_lag_s: float = MAX_LAG_S,
    providers: Sequence[type] = (ToneProvider, NarrowbandProvider),
) -> Harness:
    registry = ProviderRegistry(entry_points=False)
    for cls in providers:
        registry.register(cls)
    config = Config.model_validate({"stt": stt, "recording": recording or {}})
    events: list[Event] = []
    service = SttService(config, events.append, registry, max_lag_s=max_lag_s)
    await service.start()
    return Harness(service, events, tmp_path)


Factory = Callable[..., Awaitable[Harness]]  # the `harness` fixture (conftest.py): builds harnesses
