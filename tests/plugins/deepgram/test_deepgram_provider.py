"""The Deepgram provider against a local fake of Deepgram's API (fake_deepgram.py: Deepgram's cloud cannot be reached
from here; the fake speaks its documented wire protocol - WebSocket streaming with KeepAlive/CloseStream/Results/
Metadata and close codes, the pre-recorded REST call, Token auth). Real speech from the piper fixtures is fed; the
fake finds the utterances by loudness and says the fixtures' sentences, so the test checks what the provider does
with the protocol: the query it sends, times mapped back to feed() timestamps across gaps, partials, KeepAlive on a
paused leg, failures surfacing as SttError, post-call uploads, and the whole STT pipeline on top."""

from __future__ import annotations

import asyncio
import importlib.util
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

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
from tests.plugins.deepgram.fake_deepgram import FakeDeepgram
from tests.support import require

if importlib.util.find_spec("siprec_stt_deepgram") is not None:
    from siprec_stt_deepgram import DeepgramConfig, DeepgramProvider


@pytest.fixture(autouse=True)
def _plugin() -> None:
    require(importlib.util.find_spec("siprec_stt_deepgram") is not None,
            "the deepgram plugin (pip install -e plugins/siprec-stt-deepgram)")  # fmt: skip
    require_audio()


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeDeepgram, str]]:
    server = FakeDeepgram()
    runner = web.AppRunner(server.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def started(url: str, **options: Any) -> DeepgramProvider:
    provider = DeepgramProvider(DeepgramConfig(url=url, api_key=options.pop("api_key", "dg-test-key"), **options))
    await provider.start()
    return provider


async def test_start_checks_the_key(fake: tuple[FakeDeepgram, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _, url = fake
    with pytest.raises(SttError, match=r"refused the API key \(HTTP 401\)"):
        await started(url, api_key="wrong")
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    with pytest.raises(SttError, match="no Deepgram API key"):
        await started(url, api_key="")
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-test-key")
    provider = await started(url, api_key="")
    await provider.close()
    with pytest.raises(SttError, match="cannot reach Deepgram"):
        await started("http://127.0.0.1:9")  # nothing listens on the discard port


async def test_live_finals_and_partials_land_on_the_feed_clock(fake: tuple[FakeDeepgram, str]) -> None:
    server, url = fake
    server.texts = deque([sentence(1), sentence(2)])
    provider = await started(url, endpointing_ms=600)
    try:
        stream = provider.open_stream(params())
        reader = asyncio.create_task(collect(stream))
        await feed(stream, clip(1), 10.0)
        await feed(stream, clip(2), 30.0)  # a gap: a dropped pause, or audio that came late
        await stream.close()
        results = await asyncio.wait_for(reader, 10)
    finally:
        await provider.close()
    query = server.streams[0]["query"]
    assert (query["encoding"], query["sample_rate"], query["channels"], query["language"], query["model"]) == (
        "linear16", "8000", "1", "en-US", "nova-2")  # fmt: skip
    assert query["interim_results"] == "true" and query["endpointing"] == "600"
    finals = [r for r in results if r.is_final]
    assert [r.text for r in finals] == [sentence(1), sentence(2)]
    assert finals[0].start == pytest.approx(10.0 + PAD_S, abs=ONSET)
    assert finals[0].end == pytest.approx(10.0 + len(clip(1)) / RATE - PAD_S, abs=ONSET)
    assert finals[1].start == pytest.approx(30.0 + PAD_S, abs=ONSET)
    assert all(f.start <= w.start <= w.end <= f.end + 1e-6 for f in finals for w in f.words)
    assert [w.text for w in finals[1].words] == sentence(2).split()
    partials = [r for r in results if not r.is_final]
    assert partials and all(10.0 <= p.start < 11.0 or 30.0 <= p.start < 31.0 for p in partials)
    assert server.streams[0]["closed_by"] == "CloseStream"


async def test_no_partials_asked_none_sent(fake: tuple[FakeDeepgram, str]) -> None:
    server, url = fake
    provider = await started(url)
    try:
        stream = provider.open_stream(params(partials=False))
        reader = asyncio.create_task(collect(stream))
        await feed(stream, clip(3), 0.0)
        await stream.close()
        results = await asyncio.wait_for(reader, 10)
    finally:
        await provider.close()
    assert server.streams[0]["query"]["interim_results"] == "false"
    assert results and all(r.is_final for r in results)


async def test_a_paused_leg_is_kept_open_with_keepalive(fake: tuple[FakeDeepgram, str]) -> None:
    server, url = fake
    server.idle_timeout_s = 0.5
    server.texts = deque([sentence(1), sentence(2)])
    provider = await started(url, keepalive_s=0.15, endpointing_ms=600)
    try:
        stream = provider.open_stream(params(partials=False))
        reader = asyncio.create_task(collect(stream))
        await feed(stream, clip(1), 0.0)
        await asyncio.sleep(1.2)  # transcription paused: nothing fed for more than the idle time-out
        await feed(stream, clip(2), 5.0)
        await stream.close()
        results = await asyncio.wait_for(reader, 10)
    finally:
        await provider.close()
    assert [r.text for r in results] == [sentence(1), sentence(2)]
    assert server.streams[0]["keepalives"] >= 3 and server.streams[0]["closed_by"] == "CloseStream"


async def test_the_server_closing_the_stream_is_an_error_the_pipeline_sees(fake: tuple[FakeDeepgram, str]) -> None:
    server, url = fake
    server.idle_timeout_s = 0.3
    provider = await started(url, keepalive_s=5.0)  # no KeepAlive in time: Deepgram's NET-0001
    try:
        stream = provider.open_stream(params())
        reader = asyncio.create_task(collect(stream))
        await feed(stream, clip(1)[:800], 0.0)
        with pytest.raises(SttError, match="code 1011"):
            await asyncio.wait_for(reader, 10)
        with pytest.raises(SttError):
            stream.feed(clip(1)[:160], 1.0)
        await stream.close()  # closing a failed stream returns
        server.fail_after_s = 1.0  # a connection that breaks mid-call
        stream = provider.open_stream(params())
        reader = asyncio.create_task(collect(stream))
        await feed(stream, clip(2), 0.0)
        with pytest.raises(SttError, match="code 1011"):
            await asyncio.wait_for(reader, 10)
    finally:
        await provider.close()
    assert [s["closed_by"] for s in server.streams] == ["NET-0001", "failure"]


async def test_a_refused_stream_fails_with_the_status(fake: tuple[FakeDeepgram, str]) -> None:
    server, url = fake
    provider = await started(url)
    server.api_key = "rotated"  # the key was revoked after the start
    try:
        stream = provider.open_stream(params())
        stream.feed(clip(1)[:160], 0.0)
        with pytest.raises(SttError, match="refused the stream: HTTP 401"):
            await asyncio.wait_for(collect(stream), 10)
    finally:
        await provider.close()


async def test_post_call_file(fake: tuple[FakeDeepgram, str], tmp_path: Path) -> None:
    server, url = fake
    server.texts = deque([sentence(4), sentence(5)])
    await check_post_call_file(await started(url), tmp_path)
    assert server.uploads[0]["query"]["utterances"] == "true" and server.uploads[0]["rate"] == RATE


async def test_the_stt_pipeline_on_deepgram(fake: tuple[FakeDeepgram, str], tmp_path: Path) -> None:
    server, url = fake
    server.texts = deque([sentence(1)])
    await check_pipeline("deepgram", {"url": url, "api_key": "dg-test-key", "endpointing_ms": 1000}, tmp_path)
