"""The STT pipeline with the real provider plugins, found through their installed entry points, on real speech.

The first four lines of the fixture call (agent on leg 0, customer on leg 1, 8 kHz) are fed block by block at
real-time pace, as the recording path does. stt.max_concurrent is 1, so the agent's leg is transcribed live (resampled
to the provider's rate) and the customer's leg is queued and transcribed from its WAV after the call: both halves of
the pipeline run against the real engine. Checked as a user sees it: lifecycle events, every final inside a line of
the right speaker (session times, live and post-call), the words, partials from a streaming provider, and
transcript.json holding exactly the published finals.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from bench.wer import normalise, word_edits
from siprec.config import Config
from siprec.events.types import Event, SttQueued, SttStarted, TranscriptEvent
from siprec.stt.pipeline import SttService
from siprec.stt.registry import ProviderRegistry
from tests.support import FIXTURES, require

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CALL = FIXTURES / "audio" / "call"
RATE = 8000
BLOCK = 160  # 20 ms
LINES = 4  # s01..s04: about 18 s of call
SESSION_OFFSET_S = 1.5  # the legs start 1.5 s into the session
WINDOW_SLACK_S = 0.6
# Word error rate the pipeline must keep (engine quality is the plugins' own tests' business; this catches a
# pipeline that garbles audio: wrong rate, dropped blocks, shifted times)
MAX_WER = {"whisper": 0.2, "pocketsphinx": 0.6}


@pytest.fixture(scope="module")
def call_audio() -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    require(CALL.is_dir(), f"fixture call audio at {CALL}")
    script = json.loads((CALL / "script.json").read_text())
    lines = script["utterances"][:LINES]
    end = int((lines[-1]["end"] + 0.6) * RATE)
    audio = {}
    for who in ("agent", "customer"):
        data, rate = soundfile.read(str(CALL / f"{who}.wav"), dtype="int16")
        assert rate == RATE
        audio[who] = data[:end]
    return audio, lines


async def feed_in_real_time(feeds: list[tuple[Any, np.ndarray]]) -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    n = max(len(a) for _, a in feeds)
    for i in range(0, n, BLOCK):
        due = t0 + i / RATE
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        for leg, audio in feeds:
            leg.feed(audio[i : i + BLOCK], SESSION_OFFSET_S + i / RATE)


@pytest.mark.parametrize("provider", ["whisper", "pocketsphinx"])
async def test_live_and_post_call_legs_with_a_real_provider(
    provider: str, call_audio: tuple[dict[str, np.ndarray], list[dict[str, Any]]], tmp_path: Path
) -> None:
    registry = ProviderRegistry()  # real discovery: the installed plugin's entry point
    require(provider in registry.providers(),
            f"STT plugin {provider!r} installed and usable ({registry.broken().get(provider, 'not installed')})")  # fmt: skip
    audio, lines = call_audio
    config = Config.model_validate({"stt": {"provider": provider, "max_concurrent": 1, "partials": True}})
    events: list[Event] = []
    service = SttService(config, events.append, registry)
    await asyncio.wait_for(service.start(), 120)
    try:
        assert service.health()[0] == "ok", service.health()
        legs = {}
        for index, who in enumerate(("agent", "customer")):
            legs[who] = service.open_leg(
                call_id="call-real", session_id="s-real", leg_index=index, stream_label=str(index + 1),
                speaker_label=who.title(), participant_id=f"p-{who}", sample_rate=RATE, paused=lambda: False,
            )  # fmt: skip
        await feed_in_real_time([(legs[w], audio[w]) for w in ("agent", "customer")])
        for leg in legs.values():
            leg.close()
        files = {}
        for index, who in enumerate(("agent", "customer")):
            files[index] = tmp_path / f"leg-{index}.wav"
            soundfile.write(str(files[index]), audio[who], RATE, subtype="PCM_16")
        service.session_ended(call_id="call-real", session_id="s-real", folder=tmp_path, leg_files=files)
        await asyncio.wait_for(service.wait_idle(), 180)
    finally:
        await service.close()

    lifecycle = [(e.leg, e.reason) if isinstance(e, SttQueued) else (e.leg, e.mode, e.provider)
                 for e in events if isinstance(e, SttQueued | SttStarted)]  # fmt: skip
    assert lifecycle == [(1, "capacity"), (0, "live", provider), (1, "post_call", provider)]
    finals = [e for e in events if isinstance(e, TranscriptEvent) and e.is_final]
    stats = service.stats()
    assert stats["lagging_switches"] == 0 and stats["stream_failures"] == 0, stats
    for index, who in enumerate(("agent", "customer")):
        mine = [e for e in finals if e.metadata["leg"] == index]
        assert mine, f"no final for the {who}"
        windows = [
            (u["start"] + SESSION_OFFSET_S, u["end"] + SESSION_OFFSET_S) for u in lines if u["speaker"] == who
        ]
        for e in mine:
            assert (
                e.speaker_label == who.title() and e.stream_label == str(index + 1) and e.provider == provider
            )
            # engines place segment edges loosely (a batch decoder may stretch one over the following silence):
            # the middle of each final must fall inside a line of this speaker
            middle = (e.start + e.end) / 2
            assert any(a - WINDOW_SLACK_S <= middle <= b + WINDOW_SLACK_S for a, b in windows), (
                e.start, e.end, e.text, windows)  # fmt: skip
        reference = [w for u in lines if u["speaker"] == who for w in normalise(u["text"])]
        hypothesis = [w for e in sorted(mine, key=lambda e: e.start) for w in normalise(e.text)]
        assert word_edits(reference, hypothesis) / max(1, len(reference)) <= MAX_WER[provider], (who, " ".join(hypothesis))
    if registry.get(provider).capabilities.partials:
        partials = [e for e in events if isinstance(e, TranscriptEvent) and not e.is_final]
        assert partials and all(e.metadata["leg"] == 0 for e in partials)  # live leg only
    data = json.loads((tmp_path / "transcript.json").read_text())
    assert data["provider"] == provider and data["language"] == "en-US"
    published = sorted((e.metadata["leg"], e.text, e.start) for e in finals)
    assert sorted((s["leg"], s["text"], s["start"]) for s in data["segments"]) == published
    assert [s["start"] for s in data["segments"]] == sorted(s["start"] for s in data["segments"])
