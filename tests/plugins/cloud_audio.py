"""What the cloud provider tests (deepgram, google) share: the piper fixture sentences and their audio, feeding a
stream or a pipeline leg, and the checks that do not depend on the provider (post-call file times, the whole STT
pipeline on the provider, found by its entry point)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from siprec.config import Config
from siprec.events.types import Event, TranscriptEvent
from siprec.stt.pipeline import SttService
from siprec.stt.provider import StreamParams, Transcript
from siprec.stt.registry import ProviderRegistry
from tests.support import FIXTURES, require

PIPER = FIXTURES / "audio" / "piper"
SENTENCES = FIXTURES / "audio" / "sentences.json"
RATE = 8000
BLOCK = 160
PAD_S = 0.3  # digital silence at each end of a piper clip
ONSET = 0.06  # the fakes find speech on a 20 ms grid, a frame or two into the clip


def require_audio() -> None:
    require((PIPER / "s01.wav").is_file() and SENTENCES.is_file(), f"audio fixtures in {PIPER}")


def sentence(n: int) -> str:
    return next(s["text"] for s in json.loads(SENTENCES.read_text())["sentences"] if s["id"] == f"s{n:02d}")


def clip(n: int) -> np.ndarray:
    data, rate = soundfile.read(str(PIPER / f"s{n:02d}.wav"), dtype="int16")
    assert rate == RATE
    return data


def params(partials: bool = True) -> StreamParams:
    return StreamParams(sample_rate=RATE, language="en-US", partials=partials, call_id="c1", stream_label="1")


async def feed(stream: Any, pcm: np.ndarray, start: float) -> None:
    """20 ms blocks timestamped from `start`, the loop getting a turn every half second of audio."""
    for i in range(0, len(pcm), BLOCK):
        stream.feed(pcm[i : i + BLOCK], start + i / RATE)
        if i % (BLOCK * 25) == 0:
            await asyncio.sleep(0)
    await asyncio.sleep(0)


async def collect(stream: Any) -> list[Transcript]:
    return [r async for r in stream]


async def check_post_call_file(provider: Any, tmp_path: Path) -> None:
    """Sentences 4 and 5 in one WAV (the fake's script says them): finals timed from the start of the file."""
    path = tmp_path / "leg.wav"
    first = clip(4)
    soundfile.write(str(path), np.concatenate([first, clip(5)]), RATE, subtype="PCM_16")
    try:
        results = await provider.transcribe_file(path, language="en-US")
    finally:
        await provider.close()
    assert [r.text for r in results] == [sentence(4), sentence(5)] and all(r.is_final for r in results)
    assert results[0].start == pytest.approx(PAD_S, abs=ONSET)
    assert results[1].start == pytest.approx(len(first) / RATE + PAD_S, abs=ONSET)


async def check_pipeline(name: str, options: dict[str, Any], tmp_path: Path) -> None:
    """stt.provider `name` with its stt.<name> section, found by its entry point: sentence 1 (the fake's script)
    fed on a leg from 2.0 s comes out as a live final with the leg's speaker, then in transcript.json."""
    config = Config.model_validate({"stt": {"provider": name, "partials": False, name: options}})
    events: list[Event] = []
    service = SttService(config, events.append, ProviderRegistry())
    await service.start()
    try:
        leg = service.open_leg(
            call_id="call-1", session_id="s1", leg_index=0, stream_label="1", speaker_label="Agent",
            participant_id="p1", sample_rate=RATE, paused=lambda: False,
        )  # fmt: skip
        await feed(leg, clip(1), 2.0)
        leg.close()
        service.session_ended(call_id="call-1", session_id="s1", folder=tmp_path, leg_files={})
        await asyncio.wait_for(service.wait_idle(), 20)
    finally:
        await service.close()
    finals = [e for e in events if isinstance(e, TranscriptEvent) and e.is_final]
    assert [(e.text, e.provider, e.speaker_label) for e in finals] == [(sentence(1), name, "Agent")]
    assert finals[0].start == pytest.approx(2.0 + PAD_S, abs=ONSET)
    assert json.loads((tmp_path / "transcript.json").read_text())["segments"][0]["text"] == sentence(1)
