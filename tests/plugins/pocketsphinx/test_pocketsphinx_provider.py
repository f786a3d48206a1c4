"""siprec-stt-pocketsphinx end to end: the provider with its real decoder processes on the fixture call.

The two-party call (../shared/fixtures/audio/call, 8 kHz, resampled to 16 kHz with soxr) goes through three
concurrent live streams in 20 ms (agent, customer) and 30 ms (a second agent stream) blocks: the agent, the
customer, and the agent again on another clock (t0 = 100 s, and a 5 s jump in the timestamps at 30 s, in a pause).
Audio is fed as fast as the decoder processes keep up (at most ~0.2 s of audio waiting), so "a partial arrived
while the utterance was still being fed" means what it says. Checked: partials during every utterance, finals
lined up with script.json, the word error rate, and the second agent stream giving the same words on its own clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
import soundfile
import soxr

from bench.wer import normalise, word_edits
from siprec.stt.provider import StreamParams, SttError, Transcript
from tests.support import FIXTURES, require

if find_spec("siprec_stt_pocketsphinx") is not None:
    from siprec_stt_pocketsphinx import PocketsphinxConfig, PocketsphinxProvider

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

CALL = FIXTURES / "audio" / "call"
RATE = 16000
ALIGN_S = 0.7  # a final's start/end against the script's utterance
# Measured 0.39 (63 edits / 161 words) with the defaults: pocketsphinx's generic en-us model on 8 kHz synthetic
# speech. Decoding is deterministic (the endpointer frames the audio the same way whatever the block sizes), so
# the margin covers platform arithmetic, not luck.
MAX_WER = 0.45
DEADLINE_S = 120.0
AGENT2_S = 36  # the second agent stream stops in the agent's pause after s09 (five lines, the jump at 30 s)


@dataclass
class Received:
    result: Transcript
    fed_s: float  # seconds of the stream's audio fed when the result reached the reader


@dataclass
class StreamRun:
    stream: Any
    received: list[Received]

    @property
    def finals(self) -> list[Transcript]:
        return [r.result for r in self.received if r.result.is_final]

    @property
    def partials(self) -> list[Received]:
        return [r for r in self.received if not r.result.is_final]


@pytest.fixture(scope="module")
def call() -> dict[str, Any]:
    require(find_spec("siprec_stt_pocketsphinx") is not None,
            "the siprec-stt-pocketsphinx plugin (.venv/bin/pip install -e plugins/siprec-stt-pocketsphinx)")  # fmt: skip
    require(CALL.is_dir(), f"fixture call audio at {CALL}")
    script = json.loads((CALL / "script.json").read_text())
    audio = {}
    for who in ("agent", "customer"):
        data, rate = soundfile.read(str(CALL / f"{who}.wav"), dtype="int16")
        audio[who] = soxr.resample(data, rate, RATE).astype(np.int16)
    return {"audio": audio, "utterances": script["utterances"]}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def provider(call: dict[str, Any]) -> AsyncIterator[PocketsphinxProvider]:
    provider = PocketsphinxProvider(PocketsphinxConfig(workers=2, worker_nice=0, max_backlog_s=5.0))
    await asyncio.wait_for(provider.start(), DEADLINE_S)
    yield provider
    await provider.close()


def params(label: str, *, partials: bool = True) -> StreamParams:
    return StreamParams(
        sample_rate=RATE, language="en-US", partials=partials, call_id="call-ps", stream_label=label
    )


async def run_stream(
    stream: Any, pcm: np.ndarray, *, t0: float, block: int, jump_at: float, jump: float
) -> StreamRun:
    run = StreamRun(stream, [])
    fed = 0

    async def read() -> None:
        async for result in stream:
            run.received.append(Received(result, fed / RATE))

    reader = asyncio.create_task(read())
    for i in range(0, len(pcm), block):
        t = t0 + i / RATE + (jump if i / RATE >= jump_at else 0.0)
        stream.feed(pcm[i : i + block], t)
        fed = i + len(pcm[i : i + block])
        if stream.backlog_s > 0.2:
            await asyncio.wait_for(stream.wait_backlog(0.1), DEADLINE_S)
        elif i // block % 10 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(stream.close(), DEADLINE_S)
    await asyncio.wait_for(reader, DEADLINE_S)
    return run


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def call_run(provider: PocketsphinxProvider, call: dict[str, Any]) -> dict[str, StreamRun]:
    audio = call["audio"]
    # opened in this order, the agent and the customer share a decoder process, the second agent stream has the other
    streams = {name: provider.open_stream(params(name)) for name in ("agent", "agent2", "customer")}
    runs = await asyncio.gather(
        run_stream(streams["agent"], audio["agent"], t0=0.0, block=320, jump_at=1e9, jump=0.0),
        run_stream(
            streams["agent2"], audio["agent"][: AGENT2_S * RATE], t0=100.0, block=480, jump_at=30.0, jump=5.0
        ),
        run_stream(streams["customer"], audio["customer"], t0=0.0, block=320, jump_at=1e9, jump=0.0),
    )
    return dict(zip(streams, runs, strict=True))


def lines_of(call: dict[str, Any], who: str) -> list[dict[str, Any]]:
    return [u for u in call["utterances"] if u["speaker"] == who]


def finals_of(run: StreamRun, u: dict[str, Any]) -> list[Transcript]:
    return [f for f in run.finals if u["start"] - ALIGN_S <= (f.start + f.end) / 2 <= u["end"] + ALIGN_S]


@pytest.mark.parametrize("who", ["agent", "customer"])
async def test_partials_arrive_while_each_utterance_is_fed(
    call: dict[str, Any], call_run: dict[str, StreamRun], who: str
) -> None:
    run = call_run[who]
    for u in lines_of(call, who):
        early = [
            p
            for p in run.partials
            if u["start"] - ALIGN_S <= p.result.start <= u["end"] and p.fed_s < u["end"]
        ]
        assert early, f"no partial for {u['id']} before its last sample was fed: {run.partials}"
    partials = [p.result for p in run.partials]
    assert all(p.text and p.language == "en-US" and not p.words for p in partials)
    for a, b in zip(partials, partials[1:], strict=False):
        if a.start == b.start:  # the same utterance: throttled, and only when the text changed
            assert b.end - a.end >= 0.4 - 0.031 and a.text != b.text, (a, b)


@pytest.mark.parametrize("who", ["agent", "customer"])
async def test_finals_line_up_with_the_script(
    call: dict[str, Any], call_run: dict[str, StreamRun], who: str
) -> None:
    run = call_run[who]
    lines = lines_of(call, who)
    claimed = [f for u in lines for f in finals_of(run, u)]
    assert sorted(claimed, key=lambda f: f.start) == run.finals, "a final outside every line of this speaker"
    for u in lines:
        mine = finals_of(run, u)
        assert mine, f"no final for {u['id']}"
        assert abs(mine[0].start - u["start"]) <= ALIGN_S and abs(mine[-1].end - u["end"]) <= ALIGN_S, (
            u, [(f.start, f.end) for f in mine])  # fmt: skip
    for f in run.finals:
        assert f.text and f.language == "en-US" and 0.0 < (f.confidence or 0.0) <= 1.0
        assert [w.text for w in f.words] == f.text.split()
        assert all(f.start - 1e-6 <= w.start < w.end <= f.end + 1e-6 for w in f.words)
        assert all(a.end <= b.start + 1e-6 for a, b in zip(f.words, f.words[1:], strict=False))


async def test_word_error_rate_against_the_script(
    call: dict[str, Any], call_run: dict[str, StreamRun]
) -> None:
    total_edits = total_words = 0
    for u in call["utterances"]:
        reference = normalise(u["text"])
        hypothesis = normalise(" ".join(f.text for f in finals_of(call_run[u["speaker"]], u)))
        total_edits += word_edits(reference, hypothesis)
        total_words += len(reference)
    wer = total_edits / total_words
    print(f"pocketsphinx WER on the call: {wer:.3f} ({total_edits}/{total_words})")
    assert wer <= MAX_WER


async def test_concurrent_streams_are_independent(call_run: dict[str, StreamRun]) -> None:
    """The agent's stream shared its decoder process with the customer's; the second agent stream (its own
    process, another clock, other block sizes, the first 36 s) yields the same words, each on its own clock:
    +100 s, and +105 s after the jump at 30 s."""
    first, second = call_run["agent"], call_run["agent2"]
    assert call_run["agent"].stream._worker is call_run["customer"].stream._worker
    assert call_run["agent2"].stream._worker is not call_run["agent"].stream._worker

    def shifted(t: float) -> float:
        return t + 100.0 + (5.0 if t >= 30.0 else 0.0)

    assert len(second.finals) == 5
    assert [f.text for f in second.finals] == [f.text for f in first.finals[:5]]
    for a, b in zip(first.finals, second.finals, strict=False):
        assert b.start == pytest.approx(shifted(a.start)) and b.end == pytest.approx(shifted(a.end))
        assert [(w.text, w.start, w.end) for w in b.words] == [
            (w.text, pytest.approx(shifted(w.start)), pytest.approx(shifted(w.end))) for w in a.words
        ]
    partials = [p.result.text for p in first.partials if p.result.end <= AGENT2_S]
    assert [p.result.text for p in second.partials] == partials
    customer = {f.text for f in call_run["customer"].finals}
    assert not customer & {f.text for f in first.finals}


async def test_close_flushes_the_open_utterance(provider: PocketsphinxProvider, call: dict[str, Any]) -> None:
    """Audio ends in the middle of the first line (0.6 .. 4.6 s): close() yields its final and ends the results.
    A SIGTERM to the decoder process first (systemd stops the whole service that way) changes nothing: the
    server's graceful stop still gets its finals."""
    stream = provider.open_stream(params("flush", partials=False))
    pcm = call["audio"]["agent"][: 3 * RATE]
    for i in range(0, len(pcm), 320):
        stream.feed(pcm[i : i + 320], 10.0 + i / RATE)
    os.kill(stream._worker.pid, signal.SIGTERM)
    await asyncio.wait_for(stream.close(), DEADLINE_S)
    results = [r async for r in stream]
    assert len(results) == 1 and results[0].is_final and results[0].text
    assert abs(results[0].start - 10.6) < 0.1 and abs(results[0].end - 13.0) < 0.05
    assert [r async for r in stream] == []  # ended for good
    await stream.close()  # twice is harmless
    with pytest.raises(SttError, match="after close"):
        stream.feed(pcm[:320], 13.0)


async def test_backlog_beyond_max_backlog_s_fails_the_stream(
    provider: PocketsphinxProvider, call: dict[str, Any]
) -> None:
    """Ten seconds fed at once to a provider with max_backlog_s 5: feed() raises, the results end with the error."""
    stream = provider.open_stream(params("flood"))
    pcm = call["audio"]["agent"][: 10 * RATE]
    with pytest.raises(SttError, match="behind"):
        for i in range(0, len(pcm), 320):
            stream.feed(pcm[i : i + 320], i / RATE)
    assert stream.backlog_s > 5.0
    with pytest.raises(SttError, match="behind"):
        async for _ in stream:
            pass
    with pytest.raises(SttError, match="behind"):
        stream.feed(pcm[:320], 20.0)


async def test_transcribe_file(provider: PocketsphinxProvider) -> None:
    """A post-call job's file: 8 kHz WAV (resampled inside), finals only, times from the start of the file."""
    path = (
        FIXTURES / "audio" / "piper" / "s03.wav"
    )  # "I'm sorry to hear that. Could you give me your order ..."
    require(path.is_file(), f"fixture {path}")
    results = await asyncio.wait_for(provider.transcribe_file(path, language="en-US"), DEADLINE_S)
    assert results and all(r.is_final for r in results)
    assert abs(results[0].start - 0.3) < 0.2 and results[-1].end <= soundfile.info(str(path)).duration + 0.05
    said = normalise(" ".join(r.text for r in results))
    assert "order" in said and "number" in said, said
    with pytest.raises(SttError, match="cannot read"):
        await provider.transcribe_file(FIXTURES / "nonexistent.wav", language="en-US")


async def test_a_cancelled_transcribe_file_drops_its_stream(provider: PocketsphinxProvider) -> None:
    """A post-call job cancelled (server shutting down) does not leave the decoder process working for it."""
    task = asyncio.create_task(provider.transcribe_file(CALL / "agent.wav", language="en-US"))
    await wait_for(lambda: provider._pool.streams > 0, "the file's stream to open")  # type: ignore[union-attr]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert provider._pool.streams == 0  # type: ignore[union-attr]
    stream = provider.open_stream(params("next", partials=False))  # the process serves the next stream
    await asyncio.wait_for(stream.close(), DEADLINE_S)


async def test_bad_input_is_refused(provider: PocketsphinxProvider) -> None:
    with pytest.raises(SttError, match="16000 Hz"):
        provider.open_stream(StreamParams(sample_rate=8000, language="en-US", partials=True))
    with pytest.raises(SttError, match="English"):
        provider.open_stream(StreamParams(sample_rate=RATE, language="fr-FR", partials=True))
    stream = provider.open_stream(params("bad"))
    with pytest.raises(ValueError, match="int16"):
        stream.feed(np.zeros(320, dtype=np.float32), 0.0)
    with pytest.raises(ValueError, match="1-D"):
        stream.feed(np.zeros((320, 2), dtype=np.int16), 0.0)
    stream.feed(np.zeros(0, dtype=np.int16), 0.0)  # nothing: accepted
    await asyncio.wait_for(stream.close(), DEADLINE_S)
    assert [r async for r in stream] == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"hmm": "/nonexistent/model"}, "no mdef file"),
        ({"lm": "/nonexistent.lm.bin"}, "lm '/nonexistent.lm.bin' is not a file"),
        ({"options": {"bogus": 1}}, r"unknown pocketsphinx option\(s\): bogus"),
    ],
)
async def test_start_refuses_an_unusable_model(config: dict[str, Any], message: str) -> None:
    provider = PocketsphinxProvider(PocketsphinxConfig.model_validate({**config, "workers": 1}))
    with pytest.raises(SttError, match=message):
        await asyncio.wait_for(provider.start(), DEADLINE_S)
    with pytest.raises(SttError, match="not started"):
        provider.open_stream(params("x"))


async def wait_for(condition: Any, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_nothing_left_after_close(call: dict[str, Any]) -> None:
    """Streams leave no task behind; the provider's close() leaves no task, thread or process."""
    threads_before = set(threading.enumerate())
    tasks_before = asyncio.all_tasks()
    provider = PocketsphinxProvider(PocketsphinxConfig(workers=1, worker_nice=0))
    await asyncio.wait_for(provider.start(), DEADLINE_S)
    tasks_started = asyncio.all_tasks()
    stream = provider.open_stream(params("tidy", partials=False))
    pcm = call["audio"]["agent"][: 5 * RATE]
    for i in range(0, len(pcm), 320):
        stream.feed(pcm[i : i + 320], i / RATE)
    await asyncio.wait_for(stream.close(), DEADLINE_S)
    assert [r.is_final async for r in stream] == [True]
    assert asyncio.all_tasks() == tasks_started
    pids = [w.pid for w in provider._pool.workers if w is not None]  # type: ignore[union-attr]
    await asyncio.wait_for(provider.close(), DEADLINE_S)
    assert asyncio.all_tasks() == tasks_before
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # exited and reaped
    await wait_for(lambda: set(threading.enumerate()) <= threads_before, "threads to end")


async def test_a_killed_decoder_process_fails_its_streams_and_is_restarted(call: dict[str, Any]) -> None:
    provider = PocketsphinxProvider(PocketsphinxConfig(workers=1, worker_nice=0))
    await asyncio.wait_for(provider.start(), DEADLINE_S)
    try:
        stream = provider.open_stream(params("victim"))
        pcm = call["audio"]["agent"][: 5 * RATE]
        stream.feed(pcm[:RATE], 0.0)
        pid = stream._worker.pid
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(SttError, match=f"worker {pid} stopped"):
            async for _ in stream:
                pass
        with pytest.raises(SttError, match="stopped"):
            stream.feed(pcm[RATE : 2 * RATE], 1.0)
        with pytest.raises(SttError, match="stopped"):
            await stream.close()

        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_S
        while True:  # the pool starts a new process in the background
            try:
                again = provider.open_stream(params("after", partials=False))
                break
            except SttError:
                assert loop.time() < deadline, "the decoder process was not restarted"
                await asyncio.sleep(0.1)
        for i in range(0, len(pcm), 320):
            again.feed(pcm[i : i + 320], i / RATE)
        await asyncio.wait_for(again.close(), DEADLINE_S)
        assert [r.is_final async for r in again] == [True]
        assert again._worker.pid != pid
    finally:
        await provider.close()
