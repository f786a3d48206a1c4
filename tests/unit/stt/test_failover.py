"""Provider failures: live failover to the next provider, post-call when none is left, start-up failures, failing
post-call jobs, health; and shutdown: close() finishes what it should and leaves no task behind."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from siprec.events.types import SttQueued, TranscriptEvent
from tests.unit.stt.harness import RATE, THREE_TONES, Factory, make_harness, play, script
from tests.unit.stt.tone_provider import NarrowbandProvider, ToneProvider


def approx(value: float) -> Any:
    return pytest.approx(value, abs=0.03)


def segments(path: Path) -> list[tuple[str, Any, str]]:
    return [(s["text"], s["start"], s["provider"]) for s in json.loads(path.read_text())["segments"]]


@pytest.mark.parametrize("fail_in", ["feed", "results"])
async def test_stream_failure_fails_over_live_to_the_next_provider(
    harness: Factory, fail_in: str, caplog: pytest.LogCaptureFixture
) -> None:
    # tone breaks after 1.5 s of audio, inside the 1000 Hz tone [1.2, 1.8)
    h = await harness({"provider": "tone", "fallback": ["narrowband"],
                       "tone": {"fail_after_s": 1.5, "fail_in": fail_in}})  # fmt: skip
    caplog.set_level(logging.WARNING, "siprec.stt")
    leg = h.open(0)
    audio = script(*THREE_TONES)
    await play([(leg, audio, 0.0)])
    leg.close()
    path = await h.end("s1", {0: h.write_leg(0, audio)})

    assert h.lifecycle() == [("started", "s1", 0, "live", "tone"), ("started", "s1", 0, "live", "narrowband")]
    assert h.of(SttQueued) == []  # the leg stayed live
    nb_stream = NarrowbandProvider.instances[0].streams[0]
    assert nb_stream.params.sample_rate == 8000  # the fallback's own rate: no resampling now
    takeover = nb_stream.blocks[0][1]
    assert 1.5 < takeover < 1.7  # the blocks that came while narrowband started waited in the leg's queue
    # every tone is in the transcript; the stretch between tone's last final and the fallback's first block
    # (the start of the 1000 Hz tone) came from the recording after the call
    got = segments(path)
    assert got[0] == ("tone 440", approx(0.2), "tone")
    assert ("tone 1500", approx(2.3), "narrowband") in got
    tone_1000 = [g for g in got if g[0] == "tone 1000"]
    assert tone_1000[0][1] == approx(1.2) and {g[2] for g in tone_1000} == {"narrowband"}
    assert NarrowbandProvider.instances[0].files == [(8000, approx(takeover - 0.7))]
    stats = h.service.stats()
    assert (stats["stream_failures"], stats["failovers"], stats["jobs_done"]) == (1, 1, 1)
    status, details = h.service.health()
    assert status == "degraded" and details["reasons"] == ["a stream failed in the last 5 minutes"]
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].call_id == "call-s1" and not failures[0].exc_info


async def test_failure_without_fallback_goes_post_call(harness: Factory) -> None:
    h = await harness({"provider": "tone", "tone": {"fail_after_s": 1.5}})
    leg = h.open(0)
    audio = script(*THREE_TONES)
    await play([(leg, audio, 3.0)])
    assert [(e.reason, e.position) for e in h.of(SttQueued)] == [("failed", 1)]
    leg.close()
    path = await h.end("s1", {0: h.write_leg(0, audio)})
    assert h.lifecycle()[-1] == ("started", "s1", 0, "post_call", "tone")
    assert segments(path) == [("tone 440", approx(3.2), "tone"), ("tone 1000", approx(4.2), "tone"),
                              ("tone 1500", approx(5.3), "tone")]  # fmt: skip
    ((_, seconds),) = ToneProvider.instances[0].files
    assert seconds == approx(3.2 - 0.7)  # from the last live final on
    assert h.service.stats()["failed_to_post_call"] == 1


async def test_main_provider_failing_at_start_uses_the_fallback(harness: Factory) -> None:
    h = await harness({"provider": "tone", "fallback": ["narrowband"], "tone": {"fail_start": True}})
    status, details = h.service.health()
    assert status == "degraded" and details["reasons"] == ["running on fallback narrowband"]
    assert (
        details["providers"]["tone"]["state"] == "failed"
        and "model missing" in details["providers"]["tone"]["error"]
    )
    leg = h.open(0)
    await play([(leg, script((440, 0.4), (0, 0.4)), 0.0)])
    leg.close()
    await leg.wait_finished()
    assert h.lifecycle() == [("started", "s1", 0, "live", "narrowband")]
    assert [e.text for e in h.of(TranscriptEvent)] == ["tone 440"]


async def test_no_provider_can_start(harness: Factory, tmp_path: Path) -> None:
    h = await harness({"provider": "tone", "tone": {"fail_start": True}})
    assert h.service.health()[0] == "failed"
    leg = h.open(0)
    leg.feed(script((440, 0.4)), 0.0)
    leg.close()
    h.service.session_ended(call_id="call-s1", session_id="s1", folder=tmp_path, leg_files={})
    await h.service.wait_idle()
    assert h.events == [] and not (tmp_path / "transcript.json").exists()  # STT did not run: no transcript


async def test_failing_post_call_job_moves_to_the_next_provider(harness: Factory) -> None:
    h = await harness({"provider": "tone", "fallback": ["narrowband"], "max_concurrent": 1,
                       "tone": {"fail_files": True}})  # fmt: skip
    live = h.open(1)  # holds the only live slot for the whole call
    leg = h.open(0)
    audio = script((0, 0.2), (440, 0.4), (0, 0.4))
    await play([(leg, audio, 0.0)])
    leg.close()
    live.close()
    path = await h.end("s1", {0: h.write_leg(0, audio)})
    assert [x for x in h.lifecycle() if x[3] == "post_call"] == [("started", "s1", 0, "post_call", "tone")]
    assert segments(path) == [("tone 440", approx(0.2), "narrowband")]
    assert NarrowbandProvider.instances[0].files == [(8000, approx(1.0))]
    assert h.service.stats()["jobs_done"] == 1


async def test_job_with_no_provider_left_fails_and_transcript_is_still_written(harness: Factory) -> None:
    h = await harness({"provider": "tone", "max_concurrent": 1, "tone": {"fail_files": True}})
    live = h.open(1)
    leg = h.open(0)
    audio = script((440, 0.4), (0, 0.4))
    await play([(live, audio, 0.0), (leg, audio, 0.0)])
    live.close()
    leg.close()
    path = await h.end("s1", {0: h.write_leg(0, audio), 1: h.write_leg(1, audio)})
    assert [(s["text"], s["leg"]) for s in json.loads(path.read_text())["segments"]] == [("tone 440", 1)]
    assert h.service.stats()["jobs_failed"] == 1


async def test_missing_leg_file_fails_the_job_only(harness: Factory, tmp_path: Path) -> None:
    h = await harness({"provider": "tone", "max_concurrent": 1})
    slot = h.open(1)  # holds the only live slot for the whole call
    leg = h.open(0)
    leg.feed(script((440, 0.4)), 0.0)
    leg.close()
    slot.close()
    path = await h.end("s1", {0: tmp_path / "nope.wav"})
    assert json.loads(path.read_text())["segments"] == []
    assert h.service.stats()["jobs_failed"] == 1


# --------------------------------------------------------------------------- shutdown


async def test_close_flushes_live_legs_abandons_unended_jobs_and_leaks_nothing(tmp_path: Path) -> None:
    ToneProvider.instances.clear()
    before = asyncio.all_tasks()
    h = await make_harness(tmp_path, {"provider": "tone", "fallback": ["narrowband"], "max_concurrent": 2})
    legs = [h.open(i) for i in range(3)]  # two live, one queued; the call never ends
    await play([(leg, script((440, 0.5)), 0.0) for leg in legs])  # the tone is still sounding
    await h.service.close()
    assert asyncio.all_tasks() == before
    provider = ToneProvider.instances[0]
    assert provider.closed and all(s.closed for s in provider.streams) and len(provider.streams) == 2
    # the open utterance was finished by the stream's close: its final was published
    assert [e.text for e in h.of(TranscriptEvent) if e.is_final] == ["tone 440", "tone 440"]
    stats = h.service.stats()
    assert stats["jobs_abandoned"] == 1 and stats["live_streams"] == 0
    assert h.service.health()[0] == "closed"
    with pytest.raises(RuntimeError):
        h.open(4)
    await h.service.close()  # twice is fine


async def test_close_runs_jobs_of_ended_sessions(tmp_path: Path) -> None:
    before = asyncio.all_tasks()
    h = await make_harness(tmp_path, {"provider": "tone", "max_concurrent": 1})
    slot = h.open(1)  # holds the only live slot for the whole call
    leg = h.open(0)
    audio = script((440, 0.4), (0, 0.4))
    await play([(leg, audio, 0.0)])
    leg.close()
    slot.close()
    h.service.session_ended(
        call_id="call-s1", session_id="s1", folder=tmp_path, leg_files={0: h.write_leg(0, audio)}
    )
    await h.service.close()  # no wait_idle: close itself waits for the job and the transcript
    assert json.loads((tmp_path / "transcript.json").read_text())["segments"][0]["text"] == "tone 440"
    assert asyncio.all_tasks() == before


async def test_close_with_jobs_timeout_abandons_the_rest(tmp_path: Path) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    class SlowFiles(ToneProvider):
        name = "slowfiles"
        instances: list[ToneProvider] = []

        async def transcribe_file(self, path: Path, *, language: str) -> list[Any]:
            entered.set()
            await release.wait()  # never set: this job outlives the time limit
            return []

    before = asyncio.all_tasks()
    h = await make_harness(tmp_path, {"provider": "slowfiles", "max_concurrent": 1}, providers=(SlowFiles,))
    slot = h.open(1)  # holds the only live slot for the whole call
    legs = [h.open(0), h.open(2)]
    audio = script((440, 0.4))
    await play([(leg, audio, 0.0) for leg in legs])
    for leg in legs:
        leg.close()
    slot.close()
    h.service.session_ended(call_id="call-s1", session_id="s1", folder=tmp_path,
                            leg_files={0: h.write_leg(0, audio), 2: h.write_leg(2, audio)})  # fmt: skip
    await asyncio.wait_for(entered.wait(), 30)
    assert (h.service.stats()["running_jobs"], h.service.stats()["queued_legs"]) == (1, 1)
    await h.service.close(jobs_timeout_s=0.2)
    assert h.service.stats()["jobs_abandoned"] == 2
    assert (tmp_path / "transcript.json").exists()  # written with what there was
    assert asyncio.all_tasks() == before


async def test_open_leg_before_start_is_refused(tmp_path: Path) -> None:
    from siprec.config import Config
    from siprec.stt.pipeline import SttService
    from siprec.stt.registry import ProviderRegistry

    service = SttService(Config(), lambda e: None, ProviderRegistry(entry_points=False))
    assert service.health()[0] == "starting"
    with pytest.raises(RuntimeError, match="called when new"):
        service.open_leg(call_id="c", session_id="s", leg_index=0, stream_label=None, speaker_label=None,
                         participant_id=None, sample_rate=RATE, paused=lambda: False)  # fmt: skip
    await service.close()


async def test_unknown_provider_refuses_to_start(tmp_path: Path) -> None:
    from siprec.config import ConfigError

    with pytest.raises(
        ConfigError, match=r"stt.provider: no installed provider named 'whisperx' \(installed: "
    ):
        await make_harness(tmp_path, {"provider": "whisperx"})


async def test_stt_off(tmp_path: Path) -> None:
    h = await make_harness(tmp_path, {"provider": "none"})
    assert h.service.health() == (
        "disabled",
        {"provider": None, "providers": {}, "live_streams": 0, "queued_legs": 0},
    )
    leg = h.open(0)
    leg.feed(script((440, 0.4)), 0.0)
    await h.end("s1", {})
    assert h.events == [] and not (tmp_path / "s1" / "transcript.json").exists()
    await h.service.close()
