"""SttService with the deterministic tone provider: live results and events, transcript.json, capacity queue,
lagging switch, pauses (silence and drop mode) and the post-call time mapping."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from siprec.events.types import SttQueued, SttStarted, TranscriptEvent
from tests.unit.stt.harness import RATE, THREE_TONES, Factory, play, script
from tests.unit.stt.tone_provider import ToneProvider


def texts(events: list[TranscriptEvent]) -> list[str]:
    return [e.text for e in events]


def approx(value: float) -> Any:
    return pytest.approx(value, abs=0.03)


# --------------------------------------------------------------------------- live


async def test_live_leg_publishes_partials_finals_and_writes_transcript(harness: Factory) -> None:
    h = await harness({"provider": "tone"})
    leg = h.open(0, speaker="Alice")
    assert h.lifecycle() == []  # the stream opens in the leg's task, right after
    audio = script(*THREE_TONES)
    await play([(leg, audio, 5.0)])  # the leg starts 5 s into the session
    leg.close()
    path = await h.end("s1", {0: h.write_leg(0, audio)})

    assert h.lifecycle() == [("started", "s1", 0, "live", "tone")]
    finals = h.finals()
    assert texts(finals) == ["tone 440", "tone 1000", "tone 1500"]  # pitch kept through 8 -> 16 kHz
    assert [(e.start, e.end) for e in finals] == [(approx(5.2), approx(5.7)), (approx(6.2), approx(6.8)),
                                                   (approx(7.3), approx(7.7))]  # fmt: skip
    first = finals[0]
    assert (first.call_id, first.stream_label, first.speaker_label) == ("call-s1", "label-0", "Alice")
    assert (first.provider, first.language, first.confidence) == ("tone", "en", 1.0)
    assert first.metadata == {"session_id": "s1", "leg": 0, "participant_id": "p-0"}
    assert first.words[1] == {"text": "440", "start": first.start, "end": first.end, "confidence": 1.0}
    partials = [e for e in h.of(TranscriptEvent) if not e.is_final]
    assert texts(partials) == ["tone ..."] and partials[0].start == approx(6.2)
    assert partials[0].language == "en-US"  # the provider said none: stt.language
    assert h.events.index(partials[0]) < h.events.index(finals[1])

    stream = ToneProvider.instances[0].streams[0]
    assert stream.params.sample_rate == 16000 and stream.params.partials and stream.closed
    fed = sum(n for n, _ in stream.blocks)
    assert fed == 2 * len(audio)  # every sample, resampled, nothing dropped
    assert stream.blocks[0][1] == pytest.approx(5.0)

    data = json.loads(path.read_text())
    assert set(data) == {"call_id", "session_id", "provider", "language", "segments"}
    assert (data["call_id"], data["session_id"], data["provider"], data["language"]) == (
        "call-s1", "s1", "tone", "en-US")  # fmt: skip
    seg = data["segments"][0]
    assert seg == {"leg": 0, "stream_label": "label-0", "speaker_label": "Alice", "participant_id": "p-0",
                   "text": "tone 440", "start": first.start, "end": first.end, "confidence": 1.0,
                   "words": list(first.words), "provider": "tone"}  # fmt: skip
    assert [s["text"] for s in data["segments"]] == texts(finals)
    assert not list(path.parent.glob(".*tmp"))  # written through a temp file, renamed

    stats = h.service.stats()
    assert (stats["legs_live"], stats["finals"], stats["partials"], stats["transcripts_written"]) == (
        1,
        3,
        1,
        1,
    )
    assert stats["live_streams"] == 0
    latency = stats["final_latency_s"]
    assert latency["count"] == 3 and latency["buckets"][-1] == ["+Inf", 3] and latency["p95"] is not None
    assert h.service.health()[0] == "ok"


async def test_partials_off(harness: Factory) -> None:
    h = await harness({"provider": "tone", "partials": False})
    leg = h.open(0)
    await play([(leg, script(*THREE_TONES), 0.0)])
    leg.close()
    await leg.wait_finished()
    assert texts(h.finals()) == ["tone 440", "tone 1000", "tone 1500"]
    assert all(e.is_final for e in h.of(TranscriptEvent))
    assert ToneProvider.instances[0].streams[0].params.partials is False


async def test_speaker_change_applies_to_later_results(harness: Factory) -> None:
    h = await harness({"provider": "tone"})
    leg = h.open(0, speaker="Alice")

    def switch(t: float) -> None:
        if t == pytest.approx(1.2):  # after the first final, before the second
            leg.set_speaker("Bob", "p-bob")

    await play([(leg, script(*THREE_TONES), 0.0)], on_block=switch)
    leg.close()
    await leg.wait_finished()
    assert [(e.speaker_label, e.metadata["participant_id"]) for e in h.finals()] == [
        ("Alice", "p-0"), ("Bob", "p-bob"), ("Bob", "p-bob")]  # fmt: skip


async def test_sessions_and_legs_stay_apart(harness: Factory) -> None:
    h = await harness({"provider": "tone"})
    a, b = h.open(0, session="s1"), h.open(1, session="s2")
    audio_a, audio_b = script((440, 0.5), (0, 0.5)), script((0, 0.3), (1000, 0.5), (0, 0.5))
    await play([(a, audio_a, 0.0), (b, audio_b, 2.0)])
    a.close()
    b.close()
    p1 = await h.end("s1", {0: h.write_leg(0, audio_a, session="s1")})
    p2 = await h.end("s2", {1: h.write_leg(1, audio_b, session="s2")})
    assert [s["text"] for s in json.loads(p1.read_text())["segments"]] == ["tone 440"]
    seg = json.loads(p2.read_text())["segments"]
    assert [(s["text"], s["leg"]) for s in seg] == [("tone 1000", 1)] and seg[0]["start"] == approx(2.3)


# --------------------------------------------------------------------------- capacity


async def test_capacity_queue_fifo_events_and_post_call_times(harness: Factory) -> None:
    h = await harness({"provider": "tone", "max_concurrent": 1})
    legs = [h.open(i) for i in range(3)]
    # queued legs are told at once, with their place in the queue
    assert [e for e in h.events if isinstance(e, SttQueued)] == [
        SttQueued("call-s1", "s1", 1, "label-1", "capacity", 1),
        SttQueued("call-s1", "s1", 2, "label-2", "capacity", 2),
    ]
    audios = [script((0, 0.1 * i), (300 + 100 * i, 0.5), (0, 0.5)) for i in range(3)]
    starts = [1.0, 1.5, 2.0]
    await play([(leg, audio, start) for leg, audio, start in zip(legs, audios, starts, strict=True)])
    assert h.service.stats()["live_streams"] == 1 and h.service.stats()["queued_legs"] == 2
    assert h.finals(1) == [] and h.finals(2) == []  # nothing before the call ends
    for leg in legs:
        leg.close()
    path = await h.end("s1", {i: h.write_leg(i, a) for i, a in enumerate(audios)})

    assert h.lifecycle() == [
        ("queued", "s1", 1, "capacity", 1),
        ("queued", "s1", 2, "capacity", 2),
        ("started", "s1", 0, "live", "tone"),
        ("started", "s1", 1, "post_call", "tone"),
        ("started", "s1", 2, "post_call", "tone"),
    ]
    started_2 = next(e for e in h.of(SttStarted) if e.leg == 2)
    assert h.events.index(h.finals(1)[0]) < h.events.index(started_2)  # one job at a time, in order
    data = json.loads(path.read_text())
    got = [(s["leg"], s["text"], s["start"], s["provider"]) for s in data["segments"]]
    assert got == [
        (0, "tone 300", approx(1.0), "tone"),
        (1, "tone 400", approx(1.6), "tone"),  # file offset 0.1 s + leg start 1.5 s
        (2, "tone 500", approx(2.2), "tone"),
    ]
    # post-call files were cut at the provider's rate
    assert ToneProvider.instances[0].files == [(16000, approx(1.1)), (16000, approx(1.2))]
    stats = h.service.stats()
    assert (stats["legs_live"], stats["legs_queued"], stats["jobs_done"], stats["queued_legs"]) == (
        1,
        2,
        2,
        0,
    )
    # the live slot is free again: the next leg goes live
    h.open(0, session="s2")
    await asyncio.sleep(0)
    assert h.lifecycle()[-1] == ("started", "s2", 0, "live", "tone")


async def test_a_queued_leg_goes_live_when_a_slot_frees(harness: Factory) -> None:
    """max_concurrent 1: the second call's leg waits; when the first call's stream ends it goes live from then on
    (finals during the call), and what it said while it waited is transcribed after its call."""
    h = await harness({"provider": "tone", "max_concurrent": 1})
    first, second = h.open(0, session="s1"), h.open(0, session="s2")
    before = script((0, 0.1), (400, 0.5), (0, 0.4))  # 1.0 s while it waits
    await play([(first, before, 0.0), (second, before, 0.0)])
    first.close()
    await first.wait_finished()
    assert [x for x in h.lifecycle() if x[1] == "s2"] == [
        ("queued", "s2", 0, "capacity", 1),
        ("started", "s2", 0, "live", "tone"),
    ]
    after = script((700, 0.5), (0, 0.5))
    await play([(second, after, 1.0)])
    second.close()
    await second.wait_finished()
    live = [(e.text, e.start) for e in h.finals() if e.call_id == "call-s2"]
    assert live == [("tone 700", approx(1.0))]  # before the call's end, from the live stream
    path = await h.end("s2", {0: h.write_leg(0, np.concatenate([before, after]), session="s2")})
    assert [x for x in h.lifecycle() if x[1] == "s2"][-1] == ("started", "s2", 0, "post_call", "tone")
    data = json.loads(path.read_text())
    assert [(s["text"], s["start"]) for s in data["segments"]] == [
        ("tone 400", approx(0.1)),
        ("tone 700", approx(1.0)),
    ]
    assert ToneProvider.instances[0].files == [(16000, approx(1.0))]  # only the stretch before it went live
    stats = h.service.stats()
    assert (stats["legs_queued"], stats["legs_promoted"], stats["live_streams"]) == (1, 1, 0)


async def test_new_language_and_partials_apply_to_legs_opened_after_them(harness: Factory) -> None:
    """A reload of stt.language / stt.partials: legs already open keep their stream's settings; legs opened
    afterwards and jobs started afterwards get the new ones."""
    h = await harness({"provider": "tone", "max_concurrent": 2, "partials": True, "language": "en-US"})
    before = h.open(0, session="s1")
    h.service.apply_settings(language="en-GB", partials=False)
    after, queued = h.open(0, session="s2"), h.open(0, session="s3")  # the third waits: post-call
    audio = script((500, 1.2), (0, 0.5))  # long enough for a partial
    await play([(before, audio, 0.0), (after, audio, 0.0), (queued, audio, 0.0)])
    for leg in (before, after, queued):
        leg.close()
    await asyncio.gather(before.wait_finished(), after.wait_finished())
    params = {s.params.call_id: s.params for s in ToneProvider.instances[0].streams}
    assert (params["call-s1"].language, params["call-s1"].partials) == ("en-US", True)
    assert (params["call-s2"].language, params["call-s2"].partials) == ("en-GB", False)
    kinds = {(e.call_id, e.is_final) for e in h.of(TranscriptEvent)}
    assert {("call-s1", False), ("call-s1", True), ("call-s2", True)} <= kinds
    assert ("call-s2", False) not in kinds  # partials off for the leg opened after the reload
    path = await h.end("s3", {0: h.write_leg(0, audio, session="s3")})
    assert json.loads(path.read_text())["language"] == "en-GB"


async def test_a_leg_whose_call_ended_is_not_promoted(harness: Factory) -> None:
    h = await harness({"provider": "tone", "max_concurrent": 1})
    first, second, third = h.open(0, session="s1"), h.open(0, session="s2"), h.open(0, session="s3")
    audio = script((400, 0.5), (0, 0.5))
    await play([(first, audio, 0.0), (second, audio, 0.0), (third, audio, 0.0)])
    second.close()  # its call ended while it waited: the job has the whole leg
    first.close()
    await first.wait_finished()
    assert [x[1] for x in h.lifecycle() if x[0] == "started"] == ["s1", "s3"]
    assert h.service.stats()["legs_promoted"] == 1


async def test_ended_calls_leave_the_capacity_queue(harness: Factory) -> None:
    h = await harness({"provider": "tone", "max_concurrent": 1})
    live = h.open(0, session="s1")
    waiting = [h.open(0, session=f"w{n}") for n in range(3)]
    for n, leg in enumerate(waiting):
        leg.close()
        h.service.session_ended(call_id=f"call-w{n}", session_id=f"w{n}", folder=h.folder / f"w{n}", leg_files={})
    assert len(h.service._waiting) == 0  # nothing holds their transcribers once their calls ended
    live.close()


async def test_a_folder_is_busy_until_its_transcript_is_written(harness: Factory) -> None:
    """busy_folders() (what a GDPR erase waits for) holds the session's folder from the end of the call, while
    its post-call job runs, until transcript.json is written."""
    h = await harness({"provider": "tone", "max_concurrent": 1})
    legs = [h.open(0), h.open(1)]  # leg 1 waits for the call to end (capacity)
    audio = script((600, 0.4), (0, 0.4))
    await play([(legs[0], audio, 0.0), (legs[1], audio, 0.0)])
    for leg in legs:
        leg.close()
    assert h.service.busy_folders() == set()  # live: the recording side says so, not STT
    files = {i: h.write_leg(i, audio) for i in range(2)}
    folder = files[0].parent
    h.service.session_ended(call_id="call-s1", session_id="s1", folder=folder, leg_files=files)
    assert h.service.busy_folders() == {folder.resolve()}
    await asyncio.wait_for(h.service.wait_idle(), 30)
    assert (folder / "transcript.json").is_file()
    assert h.service.busy_folders() == set()


async def test_jobs_wait_for_their_session_then_run_in_queue_order(harness: Factory) -> None:
    h = await harness({"provider": "tone", "max_concurrent": 1})
    live = h.open(0, session="s0")
    a, b = h.open(0, session="sa"), h.open(0, session="sb")
    audio = script((700, 0.4), (0, 0.4))
    await play([(live, audio, 0.0), (a, audio, 0.0), (b, audio, 0.0)])
    for leg in (live, a, b):
        leg.close()
    # sb ends first: its job runs although sa's was queued before it (sa's recording is not complete yet)
    await h.end("sb", {0: h.write_leg(0, audio, session="sb")})
    await h.end("sa", {0: h.write_leg(0, audio, session="sa")})
    assert [x for x in h.lifecycle() if x[3] != "live"] == [
        ("queued", "sa", 0, "capacity", 1),
        ("queued", "sb", 0, "capacity", 2),
        ("started", "sb", 0, "post_call", "tone"),
        ("started", "sa", 0, "post_call", "tone"),
    ]


# --------------------------------------------------------------------------- lagging


async def test_lagging_provider_switches_leg_to_post_call(harness: Factory) -> None:
    h = await harness({"provider": "tone", "tone": {"stall": True}}, max_lag_s=1.0)
    leg = h.open(0)
    audio = script(*THREE_TONES)
    await play([(leg, audio, 10.0)])
    queued = h.of(SttQueued)
    assert queued == [SttQueued("call-s1", "s1", 0, "label-0", "lagging", 1)]
    stream = ToneProvider.instances[0].streams[0]
    fed_s = sum(n for n, _ in stream.blocks) / 16000
    assert 1.0 < fed_s < 1.1  # fed until the backlog passed max_lag_s, then no more
    leg.close()
    await leg.wait_finished()
    assert stream.closed and texts(h.finals()) == ["tone 440"]  # the finals it had are kept
    assert h.service.stats()["lagging_switches"] == 1 and h.service.stats()["live_streams"] == 0

    path = await h.end("s1", {0: h.write_leg(0, audio)})
    assert h.lifecycle() == [
        ("started", "s1", 0, "live", "tone"),
        ("queued", "s1", 0, "lagging", 1),
        ("started", "s1", 0, "post_call", "tone"),
    ]
    # the job transcribed only what the stream had not been given
    ((rate, seconds),) = ToneProvider.instances[0].files
    assert rate == 16000 and seconds == approx(3.2 - fed_s)
    segs = [(s["text"], s["start"], s["end"]) for s in json.loads(path.read_text())["segments"]]
    assert segs == [("tone 440", approx(10.2), approx(10.7)), ("tone 1000", approx(11.2), approx(11.8)),
                    ("tone 1500", approx(12.3), approx(12.7))]  # fmt: skip


async def test_pipeline_queue_overflow_alone_switches(harness: Factory) -> None:
    # a provider that reports no backlog: the pipeline's own queue fills when its task cannot run
    h = await harness({"provider": "tone"}, max_lag_s=0.5)
    leg = h.open(0)
    audio = script((0, 0.2), (440, 0.5), (0, 0.5))
    for i in range(0, len(audio), 160):  # no yield: the loop is busy elsewhere for 1.2 s of audio
        leg.feed(audio[i : i + 160], i / RATE)
    assert [(e.reason, e.position) for e in h.of(SttQueued)] == [("lagging", 1)]
    leg.close()
    path = await h.end("s1", {0: h.write_leg(0, audio)})
    assert not any(e.mode == "live" for e in h.of(SttStarted))  # it never got to open a stream
    ((_, seconds),) = ToneProvider.instances[0].files
    assert seconds == approx(1.2)  # the whole leg, after the call
    assert [s["text"] for s in json.loads(path.read_text())["segments"]] == ["tone 440"]


# --------------------------------------------------------------------------- pauses


async def test_nothing_is_fed_while_paused(harness: Factory) -> None:
    h = await harness({"provider": "tone"})
    paused = False
    leg = h.open(0, paused=lambda: paused)

    def flip(t: float) -> None:
        nonlocal paused
        paused = 1.1 <= t < 1.9  # the 1000 Hz tone is spoken while paused

    audio = script(*THREE_TONES)
    await play([(leg, audio, 0.0)], on_block=flip)
    leg.close()
    await leg.wait_finished()
    assert texts(h.finals()) == ["tone 440", "tone 1500"]
    stream = ToneProvider.instances[0].streams[0]
    assert sum(n for n, _ in stream.blocks) == 2 * (len(audio) - int(0.8 * RATE))
    assert h.finals()[1].start == approx(2.3)  # times stay on the session clock after the pause


@pytest.mark.parametrize(
    ("pause_mode", "recording_too"),
    [("silence", True), ("drop", True), ("silence", False), ("drop", False)],
)
async def test_post_call_leaves_out_pauses_and_maps_times(
    harness: Factory, pause_mode: str, recording_too: bool
) -> None:
    h = await harness({"provider": "tone", "max_concurrent": 1}, recording={"pause_mode": pause_mode})
    slot = h.open(5)  # holds the only live slot for the whole call
    paused = False
    recording_paused = (lambda: paused) if recording_too else (lambda: False)
    leg = h.open(0, paused=lambda: paused, recording_paused=recording_paused)

    def flip(t: float) -> None:
        nonlocal paused
        paused = 1.1 <= t < 1.9

    audio = script(*THREE_TONES)
    await play([(leg, audio, 4.0)], on_block=flip)
    leg.close()
    slot.close()
    if pause_mode == "drop" and recording_too:  # the recording cut the paused stretch out of the file
        recorded = np.concatenate([audio[: int(1.1 * RATE)], audio[int(1.9 * RATE) :]])
    elif recording_too:  # the recording wrote zeros
        recorded = audio.copy()
        recorded[int(1.1 * RATE) : int(1.9 * RATE)] = 0
    else:  # only transcription paused: the file holds the audio, the job must leave it out
        recorded = audio
    path = await h.end("s1", {0: h.write_leg(0, recorded)})
    assert [x[3] for x in h.lifecycle() if x[2] == 0] == ["capacity", "post_call"]  # never live
    segs = [(s["text"], s["start"], s["end"]) for s in json.loads(path.read_text())["segments"]]
    assert segs == [("tone 440", approx(4.2), approx(4.7)), ("tone 1500", approx(6.3), approx(6.7))]
