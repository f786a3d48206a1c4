"""The Google provider against a local fake of Cloud Speech-to-Text v1 (fake_google.py: the cloud cannot be reached
from here; the fake serves the real gRPC method with the google-cloud-speech messages and Google's documented
behaviour: config first, interim and final results, the stream duration limit). Real speech from the piper fixtures
is fed: the test checks the config sent, times mapped back to feed() timestamps across gaps and across the new
streams the provider opens before Google's limit, a paused leg, failures as SttError, post-call files, and the STT
pipeline on top."""

from __future__ import annotations

import asyncio
import importlib.util
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from siprec.stt.provider import SttError
from tests.plugins.cloud_audio import (
    ONSET,
    PAD_S,
    RATE,
    check_pipeline,
    check_post_call_file,
    clip,
    collect,
    feed,
    params,
    require_audio,
    sentence,
)
from tests.support import require

if importlib.util.find_spec("siprec_stt_google") is not None:
    from siprec_stt_google import GoogleConfig, GoogleProvider

    from tests.plugins.google.fake_google import FakeGoogleSpeech


@pytest.fixture(autouse=True)
def _plugin() -> None:
    require(importlib.util.find_spec("siprec_stt_google") is not None,
            "the google plugin (pip install -e plugins/siprec-stt-google)")  # fmt: skip
    require_audio()


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeGoogleSpeech, str]]:
    server = FakeGoogleSpeech()
    endpoint = await server.start()
    try:
        yield server, endpoint
    finally:
        await server.stop()


async def started(endpoint: str, **options: Any) -> GoogleProvider:
    provider = GoogleProvider(GoogleConfig(endpoint=endpoint, insecure=True, **options))
    await provider.start()
    return provider


async def test_bad_credentials_fail_the_start(tmp_path: Path) -> None:
    with pytest.raises(SttError, match="no usable Google credentials"):
        await GoogleProvider(GoogleConfig(credentials_file=str(tmp_path / "missing.json"))).start()
    (tmp_path / "bad.json").write_text('{"type": "service_account"}')
    with pytest.raises(SttError, match="no usable Google credentials"):
        await GoogleProvider(GoogleConfig(credentials_file=str(tmp_path / "bad.json"))).start()


async def test_live_finals_and_partials_land_on_the_feed_clock(fake: tuple[FakeGoogleSpeech, str]) -> None:
    server, endpoint = fake
    server.texts = deque([sentence(1), sentence(2)])
    provider = await started(endpoint)
    try:
        stream = provider.open_stream(params())
        reader = asyncio.create_task(collect(stream))
        await feed(stream, clip(1), 10.0)
        await feed(stream, clip(2), 30.0)  # a gap: a dropped pause, or audio that came late
        await stream.close()
        results = await asyncio.wait_for(reader, 20)
    finally:
        await provider.close()
    setup = server.streams[0]["config"]
    assert (setup.config.sample_rate_hertz, setup.config.language_code, setup.config.model) == (8000, "en-US", "phone_call")
    assert setup.interim_results and setup.config.enable_word_time_offsets and setup.config.audio_channel_count == 1
    finals = [r for r in results if r.is_final]
    assert [r.text for r in finals] == [sentence(1), sentence(2)]
    assert finals[0].start == pytest.approx(10.0 + PAD_S, abs=ONSET)
    assert finals[1].start == pytest.approx(30.0 + PAD_S, abs=ONSET)
    assert [w.text for w in finals[1].words] == sentence(2).split()
    assert any(not r.is_final for r in results)
    assert len(server.streams) == 1 and server.streams[0]["ended_by"] == "half-close"


async def test_new_streams_before_the_limit_keep_the_times(fake: tuple[FakeGoogleSpeech, str]) -> None:
    """Google ends a stream after 305 s of audio; the fake after 4 s here: the provider opens a new stream every 3 s
    of audio, and every final keeps its place on the leg's clock."""
    server, endpoint = fake
    server.max_stream_s = 4.0
    server.texts = deque([sentence(n) for n in (1, 2, 3)])
    provider = await started(endpoint, stream_limit_s=3.0)
    audio = np.concatenate([clip(1), clip(2), clip(3)])
    try:
        stream = provider.open_stream(params(partials=False))
        reader = asyncio.create_task(collect(stream))
        await feed(stream, audio, 100.0)
        await stream.close()
        results = await asyncio.wait_for(reader, 20)
    finally:
        await provider.close()
    assert len(server.streams) >= 3 and all(s["ended_by"] == "half-close" for s in server.streams)
    assert all(s["audio_s"] <= 3.1 for s in server.streams)
    starts = [100.0 + PAD_S, 100.0 + len(clip(1)) / RATE + PAD_S, 100.0 + (len(clip(1)) + len(clip(2))) / RATE + PAD_S]
    # an utterance across a change of stream is cut in two: each sentence begins one final, in its place
    for expected in starts:
        assert any(r.start == pytest.approx(expected, abs=ONSET) for r in results), (expected, results)
    assert all(100.0 <= r.start <= r.end <= 100.0 + len(audio) / RATE + 0.01 for r in results)


async def test_a_paused_leg_closes_its_stream_and_the_next_audio_opens_one(fake: tuple[FakeGoogleSpeech, str]) -> None:
    server, endpoint = fake
    server.texts = deque([sentence(1), sentence(2)])
    provider = await started(endpoint, idle_s=0.3)
    try:
        stream = provider.open_stream(params(partials=False))
        reader = asyncio.create_task(collect(stream))
        await feed(stream, clip(1), 0.0)
        await asyncio.sleep(1.0)  # transcription paused: nothing fed
        await feed(stream, clip(2), 20.0)
        await stream.close()
        results = await asyncio.wait_for(reader, 20)
    finally:
        await provider.close()
    assert [r.text for r in results] == [sentence(1), sentence(2)]
    assert results[1].start == pytest.approx(20.0 + PAD_S, abs=ONSET)
    assert len(server.streams) == 2  # one per stretch of audio, none while paused


async def test_a_broken_stream_is_an_error_the_pipeline_sees(fake: tuple[FakeGoogleSpeech, str]) -> None:
    server, endpoint = fake
    server.fail_after_s = 1.0
    provider = await started(endpoint)
    try:
        stream = provider.open_stream(params())
        reader = asyncio.create_task(collect(stream))
        await feed(stream, clip(1), 0.0)
        with pytest.raises(SttError, match="Google Speech"):
            await asyncio.wait_for(reader, 20)
        with pytest.raises(SttError):
            stream.feed(clip(1)[:160], 5.0)
        await stream.close()
    finally:
        await provider.close()


async def test_post_call_file(fake: tuple[FakeGoogleSpeech, str], tmp_path: Path) -> None:
    server, endpoint = fake
    server.texts = deque([sentence(4), sentence(5)])
    await check_post_call_file(await started(endpoint), tmp_path)
    assert not server.streams[0]["config"].interim_results


async def test_the_stt_pipeline_on_google(fake: tuple[FakeGoogleSpeech, str], tmp_path: Path) -> None:
    server, endpoint = fake
    server.texts = deque([sentence(1)])
    await check_pipeline("google", {"endpoint": endpoint, "insecure": True}, tmp_path)
