"""Fixtures of the whisper provider's tests: the two-party call at 16 kHz, its script, started providers."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from tests.support import FIXTURES, require

CALL = FIXTURES / "audio" / "call"
RATE = 16000
BLOCK = 320  # 20 ms at 16 kHz, as the pipeline feeds


def require_plugin() -> None:
    require(importlib.util.find_spec("siprec_stt_whisper") is not None,
            "the whisper plugin (pip install -e plugins/siprec-stt-whisper)")  # fmt: skip


@pytest.fixture(scope="session")
def script() -> dict[str, Any]:
    require((CALL / "script.json").is_file(), f"the call fixture in {CALL}")
    return json.loads((CALL / "script.json").read_text())


@pytest.fixture(scope="session")
def tracks(script: dict[str, Any]) -> dict[str, np.ndarray]:
    """agent and customer tracks, 8 kHz fixture resampled to 16 kHz int16 with soxr (as the pipeline does)."""
    import soundfile
    import soxr

    out = {}
    for who in ("agent", "customer"):
        audio, rate = soundfile.read(CALL / f"{who}.wav", dtype="float32")
        assert rate == script["sample_rate"]
        out[who] = np.clip(np.round(soxr.resample(audio, rate, RATE) * 32768), -32768, 32767).astype(np.int16)
    return out


@pytest.fixture
async def start_provider() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """start_provider(**options) -> a started WhisperProvider; every one is closed after the test."""
    require_plugin()
    from siprec_stt_whisper import WhisperConfig, WhisperProvider

    started: list[WhisperProvider] = []

    async def start(**options: Any) -> WhisperProvider:
        provider = WhisperProvider(WhisperConfig(**options))
        started.append(provider)
        await provider.start()
        return provider

    yield start
    for provider in started:
        await provider.close()
