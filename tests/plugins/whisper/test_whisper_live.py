"""The whisper provider with the real bundled model on real speech: the two-party call fixture
(../shared/fixtures/audio/call, 8 kHz, resampled to 16 kHz with soxr) fed in 20 ms blocks on the session clock.

Word error rate as in wer.py (the fixture README's normalisation: digits become one word each, so "58317",
"5-8-3-1-7" and "five eight three one seven" compare equal)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.wer import normalise, wer, word_edits
from tests.plugins.whisper.conftest import BLOCK, CALL, RATE, require_plugin

require_plugin()

from siprec_stt_whisper import provider as provider_module  # noqa: E402

from siprec.stt.provider import StreamParams, SttError, Transcript  # noqa: E402

pytestmark = pytest.mark.slow

MAX_WER = 0.10  # issue 5 acceptance
ALIGN_S = 0.5  # a final's start/end against the script's utterance
FIRST_FINAL_WITHIN_S = 1.5  # issue 5 acceptance: end of the first utterance -> its final, fed in real time
BLOCK_S = BLOCK / RATE


def params(call_id: str, *, partials: bool = False) -> StreamParams:
    return StreamParams(sample_rate=RATE, language="en-US", partials=partials, call_id=call_id)


async def feed(
    stream: Any, audio: np.ndarray, start_s: float, end_s: float, *, real_time: bool = False
) -> float:
    """Feed audio[start_s:end_s] in 20 ms blocks stamped with their track time; real time: paced by the wall clock
    (a deadline per block, so a late wake-up does not accumulate). Returns the wall time of the first block."""
    first, last = int(start_s / BLOCK_S), int(end_s / BLOCK_S)
    t0 = time.perf_counter()
    for k in range(first, last):
        if real_time:
            delay = t0 + (k - first) * BLOCK_S - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        elif (k - first) % 50 == 0:
            await asyncio.sleep(0)  # let results flow while feeding faster than real time
        stream.feed(audio[k * BLOCK : (k + 1) * BLOCK], k * BLOCK_S)
    return t0


async def collect(stream: Any, into: list[tuple[float, Transcript]]) -> None:
    async for result in stream:
        into.append((time.perf_counter(), result))


def utterances(script: dict[str, Any], who: str) -> list[dict[str, Any]]:
    return [u for u in script["utterances"] if u["speaker"] == who]


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


async def test_call_is_transcribed_per_leg_with_low_wer_and_times_on_the_session_clock(
    start_provider: Any, tracks: dict[str, np.ndarray], script: dict[str, Any]
) -> None:
    provider = await start_provider()
    streams = {who: provider.open_stream(params(who)) for who in ("agent", "customer")}
    results: dict[str, list[tuple[float, Transcript]]] = {who: [] for who in streams}
    readers = [asyncio.create_task(collect(s, results[who])) for who, s in streams.items()]
    duration = len(tracks["agent"]) / RATE
    await asyncio.gather(*(feed(s, tracks[who], 0.0, duration) for who, s in streams.items()))
    await asyncio.gather(*(s.close() for s in streams.values()))
    await asyncio.gather(*readers)

    edits = words = 0
    report = []
    for who, stream in streams.items():
        assert stream.backlog_s == 0.0
        finals = [r for _, r in results[who] if r.is_final and r.text]
        assert [r for _, r in results[who] if not r.is_final] == []  # partials off
        expected = utterances(script, who)
        # one final per line of this speaker, none of the other's, in order, aligned with the script
        assert len(finals) == len(expected), [r.text for r in finals]
        for final, line in zip(finals, expected, strict=True):
            assert abs(final.start - line["start"]) <= ALIGN_S, (line["id"], final.start, line["start"])
            assert abs(final.end - line["end"]) <= ALIGN_S, (line["id"], final.end, line["end"])
            assert final.words and 0.0 < (final.confidence or 0) <= 1.0
            starts = [w.start for w in final.words]
            assert starts == sorted(starts)
            assert all(final.start - ALIGN_S <= w.start <= w.end <= final.end + ALIGN_S for w in final.words)
            assert "".join(w.text for w in final.words) == final.text.replace(" ", "")  # pieces of the text
            e = word_edits(normalise(line["text"]), normalise(final.text))
            edits, words = edits + e, words + len(normalise(line["text"]))
            report.append(f"{line['id']} {e} edits | {final.text}")
    total = edits / words
    print(f"\nWER {edits}/{words} = {total:.3f}\n" + "\n".join(report))
    assert total <= MAX_WER, report


async def test_first_final_within_a_second_and_a_half_of_the_end_of_speech_in_real_time(
    start_provider: Any, tracks: dict[str, np.ndarray], script: dict[str, Any]
) -> None:
    provider = await start_provider()
    first_line = script["utterances"][0]
    stream = provider.open_stream(params("latency"))
    results: list[tuple[float, Transcript]] = []
    reader = asyncio.create_task(collect(stream, results))
    # real time from 0 s until the final is in or 3 s after the end of the line (then it is late: the assert says)
    t0 = time.perf_counter()
    for k in range(int((first_line["end"] + 3.0) / BLOCK_S)):
        delay = t0 + k * BLOCK_S - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if results:
            break
        stream.feed(tracks["agent"][k * BLOCK : (k + 1) * BLOCK], k * BLOCK_S)
    await stream.close()
    await reader
    arrived, final = results[0]
    latency = arrived - t0 - first_line["end"]
    print(f"\nfirst final {latency:.2f} s after the end of {first_line['id']}: {final.text}")
    assert final.is_final and wer(first_line["text"], final.text) <= 0.1
    assert latency <= FIRST_FINAL_WITHIN_S


async def test_partials_arrive_while_a_long_utterance_is_spoken(
    start_provider: Any, tracks: dict[str, np.ndarray], script: dict[str, Any]
) -> None:
    provider = await start_provider()
    line = next(u for u in script["utterances"] if u["id"] == "s10")  # 6.2 s: the card number
    stream = provider.open_stream(params("partials", partials=True))
    results: list[tuple[float, Transcript]] = []
    reader = asyncio.create_task(collect(stream, results))
    t0 = await feed(stream, tracks["customer"], line["start"] - 0.6, line["end"] + 1.0, real_time=True)
    await stream.close()
    await reader
    spoken_until = t0 + (line["end"] - (line["start"] - 0.6))  # wall time the end of the line was fed
    partials = [(t, r) for t, r in results if not r.is_final]
    finals = [r for _, r in results if r.is_final]
    assert len(finals) == 1 and finals[0].text
    during = [(t, r) for t, r in partials if t < spoken_until]
    print(
        "\n" + "\n".join(f"{t - t0:5.2f} s partial {r.start:.2f}-{r.end:.2f}: {r.text}" for t, r in partials)
    )
    assert len(during) >= 2, partials  # several, while the speech flows
    assert all(r.text and r.start == pytest.approx(finals[0].start) for _, r in partials)
    assert [r.end for _, r in partials] == sorted(r.end for _, r in partials)  # each covers more of the line
    assert results[-1][1] is finals[0]  # no partial after the final
    assert normalise(during[-1][1].text)[:3] == ["just", "in", "case"]


async def test_close_flushes_the_open_utterance_and_ends_the_iteration(
    start_provider: Any, tracks: dict[str, np.ndarray]
) -> None:
    provider = await start_provider()
    stream = provider.open_stream(params("flush"))
    await feed(stream, tracks["agent"], 0.0, 3.0)  # s01 runs to 4.6 s: cut mid-sentence, no silence after
    await stream.close()
    results = [r async for r in stream]
    assert [r.is_final for r in results] == [True]
    assert results[0].end <= 3.0 + 0.04
    assert normalise(results[0].text)[:4] == ["thank", "you", "for", "calling"]
    assert [r async for r in stream] == []  # iteration stays ended
    with pytest.raises(SttError, match="closed"):
        stream.feed(np.zeros(BLOCK, np.int16), 3.0)
    await stream.close()  # idempotent


async def test_streams_share_one_model_and_nothing_is_left_after_close(
    start_provider: Any,
    tracks: dict[str, np.ndarray],
    script: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads = []

    class CountingEngine(provider_module.WhisperEngine):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            loads.append(threading.current_thread().name)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(provider_module, "WhisperEngine", CountingEngine)
    # a first start/close cycle: imports start process-wide threads of their own (onnxruntime, tokenizers)
    await (await start_provider(workers=2)).close()
    loads.clear()
    threads_before, os_threads_before = set(threading.enumerate()), os_threads()

    provider = provider_module.WhisperProvider(provider_module.WhisperConfig(workers=2))
    await asyncio.gather(provider.start(), provider.start(), provider.start())
    # four legs at once, each on its own stretch of the call
    legs = [("agent", 0.0, 10.0), ("customer", 4.6, 13.9), ("agent", 17.2, 21.9), ("customer", 28.4, 31.6)]
    streams = [provider.open_stream(params(f"leg{i}")) for i in range(len(legs))]
    results: list[list[tuple[float, Transcript]]] = [[] for _ in legs]
    readers = [asyncio.create_task(collect(s, r)) for s, r in zip(streams, results, strict=True)]
    await asyncio.gather(*(feed(s, tracks[who], a, b) for s, (who, a, b) in zip(streams, legs, strict=True)))
    await asyncio.gather(*(s.close() for s in streams))
    await asyncio.gather(*readers)

    assert len(loads) == 1 and loads[0].startswith("whisper-decode")  # one model, loaded off the event loop
    assert provider.stats()["model_loads"] == 1
    for (who, a, b), got in zip(legs, results, strict=True):
        ref = " ".join(u["text"] for u in utterances(script, who) if a <= u["start"] and u["end"] <= b)
        hyp = " ".join(r.text for _, r in got if r.is_final)
        assert ref and wer(ref, hyp) <= 0.2, (ref, hyp)
    stats = provider.stats()
    assert stats["streams"] == 0 and stats["jobs_done"]["final"] >= 4 + 1  # a final per leg, and the load

    await provider.close()
    assert set(threading.enumerate()) == threads_before
    assert os_threads() <= os_threads_before  # CTranslate2's and the pool's threads are gone
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_transcribe_file_resamples_a_recording_and_times_it_from_the_start(
    start_provider: Any, script: dict[str, Any], tmp_path: Path
) -> None:
    import soundfile

    provider = await start_provider()
    audio, rate = soundfile.read(CALL / "agent.wav", dtype="int16")
    path = tmp_path / "leg.wav"
    soundfile.write(path, audio[: int(14.0 * rate)], rate, subtype="PCM_16")  # 8 kHz, as a leg file
    results = await provider.transcribe_file(path, language="en-US")
    lines = [u for u in utterances(script, "agent") if u["end"] <= 14.0]
    texts = [r.text for r in results if r.text]
    assert len(texts) == len(lines) == 2 and all(r.is_final for r in results)
    for result, line in zip([r for r in results if r.text], lines, strict=True):
        assert abs(result.start - line["start"]) <= ALIGN_S and abs(result.end - line["end"]) <= ALIGN_S
        assert wer(line["text"], result.text) <= 0.1
    with pytest.raises(SttError, match="cannot read"):
        await provider.transcribe_file(tmp_path / "missing.wav", language="en-US")


async def test_nothing_is_downloaded_start_and_decode_work_with_every_connection_refused(
    start_provider: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import soundfile

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network access during the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    provider = await start_provider()
    audio, rate = soundfile.read(CALL / "agent.wav", dtype="int16")
    soundfile.write(tmp_path / "s01.wav", audio[: int(5.2 * rate)], rate, subtype="PCM_16")
    (result,) = await provider.transcribe_file(tmp_path / "s01.wav", language="en-US")
    assert normalise(result.text)[:4] == ["thank", "you", "for", "calling"]


async def test_bad_input_is_refused_with_a_reason_and_costs_the_stream_nothing(start_provider: Any) -> None:
    provider = await start_provider(vad="energy")
    with pytest.raises(SttError, match="16000 Hz"):
        provider.open_stream(StreamParams(sample_rate=8000, language="en-US", partials=False))
    stream = provider.open_stream(params("bad"))
    with pytest.raises(SttError, match="int16"):
        stream.feed(np.zeros(BLOCK, np.float32), 0.0)
    with pytest.raises(SttError, match="int16"):
        stream.feed(np.zeros((BLOCK, 2), np.int16), 0.0)
    stream.feed(np.zeros(BLOCK, np.int16), 0.0)  # still usable
    await stream.close()
    assert [r async for r in stream] == []  # silence: no result at all


async def test_a_failed_decode_fails_the_stream_once_with_the_reason(
    start_provider: Any, tracks: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failure injection (CTranslate2 raising, as on a corrupt model or out of memory): the iteration raises SttError
    with the cause, feed() refuses more audio, close() still returns and the provider serves other streams."""
    provider = await start_provider()
    engine = provider._engine
    real_decode = engine.decode

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(engine, "decode", broken)
    stream = provider.open_stream(params("broken"))
    await feed(stream, tracks["agent"], 0.0, 5.5)  # the first line and its closing silence: a final is due
    with pytest.raises(SttError, match="out of memory"):
        async for _ in stream:
            pass
    with pytest.raises(SttError, match="failed"):
        stream.feed(np.zeros(BLOCK, np.int16), 5.5)
    await stream.close()
    monkeypatch.setattr(engine, "decode", real_decode)
    healthy = provider.open_stream(params("healthy"))
    await feed(healthy, tracks["agent"], 0.0, 5.5)
    await healthy.close()
    assert [r.is_final async for r in healthy] == [True]


def test_both_vads_cut_the_call_at_the_script_lines(
    tracks: dict[str, np.ndarray], script: dict[str, Any]
) -> None:
    """The segmentation alone (no decoding), with each VAD: one utterance per line, on its times."""
    from siprec_stt_whisper.segmenter import FrameAssembler, UtteranceSegmenter
    from siprec_stt_whisper.vad import EnergyVad, SileroModel, SileroVad

    silero = SileroModel()
    for make_vad in (lambda: SileroVad(silero), EnergyVad):
        for who in ("agent", "customer"):
            seg = UtteranceSegmenter(
                make_vad(), min_silence_s=0.5, max_utterance_s=15, partial_interval_s=None
            )
            asm = FrameAssembler()
            audio = tracks[who].astype(np.float32) / 32768
            found = []
            for k in range(0, len(audio), BLOCK):
                for frame, t in asm.push(audio[k : k + BLOCK], k / RATE):
                    found += seg.push(frame, t)
            found += seg.flush()
            expected = [(u["start"], u["end"]) for u in utterances(script, who)]
            got = [(round(u.speech_start, 2), round(u.speech_end, 2)) for u in found]
            assert len(got) == len(expected), (make_vad, who, got)
            for (s, e), (gs, ge) in zip(expected, got, strict=True):
                assert abs(gs - s) <= 0.3 and abs(ge - e) <= 0.3, (make_vad, who, got)  # pre-roll: 0.3 s


def test_fixture_script_is_the_reference(script: dict[str, Any]) -> None:
    """The reference text: 12 lines, 161 words once normalised (numbers spoken digit by digit)."""
    assert len(script["utterances"]) == 12
    assert sum(len(normalise(u["text"])) for u in script["utterances"]) == 161  # as the fixture README counts
