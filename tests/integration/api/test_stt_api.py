"""/api/stt/* against a real SiprecServer (SIP and HTTP on loopback) with an SttService on a small provider
registered in code: "energy" finds the utterances of a file by their loudness (20 ms frames) and says where they
are, so the jobs do real work on real speech (the piper fixtures: 300 ms of digital silence at each end) without a
speech model. Uploads (raw and multipart), a recorded SIPREC call transcribed by Call-ID, queue positions and
purge, stats and metrics, auth and the error envelope on every route."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import numpy as np
import pytest
import soundfile

from siprec.api import stt_uploads
from siprec.config import config_from_mapping
from siprec.events.types import RecordingReady
from siprec.stt.pipeline import SttService
from siprec.stt.provider import Capabilities, ProviderConfig, StreamParams, SttError, Transcript, Word
from siprec.stt.registry import ProviderRegistry
from tests.integration.api.conftest import Api, api_server
from tests.integration.src_client import rtp_packets, rtp_socket, send_paced
from tests.support import FIXTURES, require

pytestmark = pytest.mark.integration

KEY = {"X-API-Key": "stt-admin"}
PIPER = FIXTURES / "audio" / "piper"
PAD_S = 0.3  # digital silence at each end of every piper file
FRAME_S = 0.02
LOUD_RMS = 200.0
MAX_GAP_S = 0.6


def utterances(samples: np.ndarray, rate: int) -> list[Transcript]:
    """Loud 20 ms frames, joined across quiet stretches shorter than MAX_GAP_S."""
    frame = int(rate * FRAME_S)
    n = len(samples) // frame
    rms = np.sqrt(np.mean(samples[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1))
    spans: list[list[float]] = []
    for i in np.flatnonzero(rms > LOUD_RMS):
        start, end = i * FRAME_S, (i + 1) * FRAME_S
        if spans and start - spans[-1][1] < MAX_GAP_S:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [
        Transcript(f"utterance {k + 1}", True, s, e, 0.9, (Word(f"u{k + 1}", s, e, 0.9),), "en")
        for k, (s, e) in enumerate(spans)
    ]


class EnergyConfig(ProviderConfig):
    pass


class EnergyProvider:
    """File jobs only. `gate` (when set) holds every transcribe_file until opened; `fail` makes them raise."""

    name: ClassVar[str] = "energy"
    capabilities: ClassVar[Capabilities] = Capabilities(
        streaming=False, partials=False, word_timestamps=True, languages=("*",), sample_rates=(16000,)
    )
    config_model: ClassVar[type[ProviderConfig]] = EnergyConfig
    gate: ClassVar[asyncio.Event | None] = None
    fail: ClassVar[bool] = False
    files: ClassVar[list[tuple[int, float]]] = []  # (rate, seconds) of each file it got

    def __init__(self, config: EnergyConfig) -> None:
        self.config = config

    async def start(self) -> None:
        return None

    def open_stream(self, params: StreamParams) -> Any:
        raise SttError("energy transcribes files only")

    async def transcribe_file(self, path: Path, *, language: str) -> Sequence[Transcript]:
        if type(self).gate is not None:
            await type(self).gate.wait()
        if type(self).fail:
            raise SttError("energy refuses on purpose")
        data, rate = await asyncio.to_thread(soundfile.read, str(path), dtype="int16")
        type(self).files.append((rate, len(data) / rate))
        return utterances(data, rate)

    async def close(self) -> None:
        return None


@dataclass
class Stt:
    api: Api
    service: SttService

    def url(self, path: str) -> str:
        return self.api.url(path)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.api.http.get(self.url(path), headers=headers or {}) as r:
            return r.status, await r.json()

    async def submit(
        self, data: Any, content_type: str | None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        hdrs = {**KEY, **(headers or {})}
        if content_type:
            hdrs["Content-Type"] = content_type
        async with self.api.http.post(self.url("/api/stt/submit"), data=data, headers=hdrs) as r:
            return r.status, await r.json()

    async def job_when(self, job_id: str, *states: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, job = await self.get(f"/api/stt/jobs/{job_id}")
            assert status == 200, job
            if job["state"] in states:
                return job
            await asyncio.sleep(0.05)
        raise AssertionError(f"job {job_id} never reached {states}")


@pytest.fixture
async def stt(tmp_path: Path) -> AsyncIterator[Stt]:
    require((PIPER / "s01.wav").is_file(), f"audio fixtures in {PIPER}")
    EnergyProvider.gate, EnergyProvider.fail, EnergyProvider.files = None, False, []
    registry = ProviderRegistry(entry_points=False)
    registry.register(EnergyProvider)
    async with api_server(tmp_path, {"auth": {"api_keys": ["stt-admin"]}}) as api:
        # its own stt.* (the server's may name another provider); the server's bus
        service = SttService(
            config_from_mapping({"stt": {"provider": "energy"}}), api.server.bus.publish, registry
        )
        await service.start()
        api.server.api.stt = service
        try:
            yield Stt(api, service)
        finally:
            if EnergyProvider.gate is not None:
                EnergyProvider.gate.set()
            await service.close(jobs_timeout_s=10)


def piper(n: int) -> bytes:
    return (PIPER / f"s{n:02d}.wav").read_bytes()


def assert_speech_found(
    job: dict[str, Any], source: np.ndarray, rate: int, *, tolerance: float = 0.06
) -> None:
    """The job found the speech where the provider finds it in the original file (so cutting, resampling and
    putting the times back lost nothing), and that is right after the fixture's leading silence."""
    expected = utterances(source, rate)
    segments = job["segments"]
    assert segments and job["segment_count"] == len(segments)
    assert segments[0]["start"] == pytest.approx(expected[0].start, abs=tolerance)
    assert segments[-1]["end"] == pytest.approx(expected[-1].end, abs=tolerance)
    assert segments[0]["start"] == pytest.approx(PAD_S, abs=0.1)
    assert all(s["text"].startswith("utterance ") and s["words"] for s in segments)


def fixture_pcm(n: int) -> tuple[np.ndarray, int]:
    data, rate = soundfile.read(str(PIPER / f"s{n:02d}.wav"), dtype="int16")
    return data, rate


# --- uploads ---------------------------------------------------------------------------------------------------


async def test_upload_raw_wav_is_transcribed_and_the_upload_deleted(stt: Stt) -> None:
    pcm, rate = fixture_pcm(1)
    seconds = len(pcm) / rate
    status, body = await stt.submit(piper(1), "audio/wav")
    assert status == 202, body
    (queued,) = body["jobs"]
    assert queued["source"] == "upload" and queued["provider"] == "energy" and queued["reason"] == "api"
    assert queued["state"] in ("queued", "running") and queued["call_id"] is None
    job = await stt.job_when(queued["id"], "done")
    assert_speech_found(job, pcm, rate)
    assert job["progress"] == 1.0 and job["audio_s"] == pytest.approx(seconds, abs=0.01)
    assert job["real_time_factor"] is not None and job["real_time_factor"] > 0
    assert job["started_at"] and job["finished_at"] and job["error"] is None and job["position"] is None
    assert EnergyProvider.files == [(16000, pytest.approx(seconds, abs=0.01))]  # resampled for the provider
    kept = stt.service.jobs.job(queued["id"])  # type: ignore[union-attr]
    assert kept is not None and kept.path is not None and not kept.path.exists()


async def test_multipart_upload_and_flac(stt: Stt) -> None:
    form = aiohttp.FormData()
    form.add_field("note", "ignored")
    form.add_field("file", piper(2), filename="s02.wav", content_type="audio/wav")
    status, body = await stt.submit(form, None)
    assert status == 202, body
    job = await stt.job_when(body["jobs"][0]["id"], "done")
    assert_speech_found(job, *fixture_pcm(2))

    data, rate = fixture_pcm(3)
    flac = io.BytesIO()
    soundfile.write(flac, data, rate, format="FLAC")
    status, body = await stt.submit(flac.getvalue(), "audio/flac")
    assert status == 202, body
    assert_speech_found(await stt.job_when(body["jobs"][0]["id"], "done"), data, rate)


async def test_bad_uploads_get_the_envelope(stt: Stt, monkeypatch: pytest.MonkeyPatch) -> None:
    stereo = io.BytesIO()
    soundfile.write(stereo, np.zeros((800, 2), np.int16), 8000, format="WAV", subtype="PCM_16")
    ogg = io.BytesIO()
    soundfile.write(ogg, np.zeros(8000, np.float32), 8000, format="OGG", subtype="VORBIS")
    cases = [
        (b"RIFF not really", "audio/wav", 400, "INVALID_AUDIO"),
        (stereo.getvalue(), "audio/wav", 400, "MONO_REQUIRED"),
        (ogg.getvalue(), "audio/wav", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b"hello", "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b"", "application/json", 400, "BODY_REQUIRED"),
        (b"{nope", "application/json", 400, "INVALID_JSON"),
        (b'{"call_id": 5}', "application/json", 400, "VALIDATION_ERROR"),
        (b'{"call_id": "x", "leg": "1"}', "application/json", 400, "VALIDATION_ERROR"),
        (b'{"call_id": "no-such-call"}', "application/json", 404, "RECORDING_NOT_FOUND"),
    ]
    for data, ctype, code, error in cases:
        status, body = await stt.submit(data, ctype)
        assert (status, body["error"]["code"]) == (code, error), (ctype, data[:20], body)
        assert set(body["error"]) == {"code", "message", "details"}
    form = aiohttp.FormData()
    form.add_field("other", b"x", filename="x.wav", content_type="audio/wav")
    status, body = await stt.submit(form, None)
    assert (status, body["error"]["code"]) == (400, "FILE_REQUIRED")

    broken = (
        b'--b\r\nContent-Disposition: form-data; name="\x02"\r\n\r\nx\r\n--b--\r\n'  # found by schemathesis
    )
    status, body = await stt.submit(broken, "multipart/form-data; boundary=b")
    assert (status, body["error"]["code"]) == (400, "INVALID_MULTIPART")
    status, body = await stt.submit(b"x", "multipart/form-data")  # no boundary
    assert (status, body["error"]["code"]) == (400, "INVALID_MULTIPART")

    monkeypatch.setattr(stt_uploads, "MAX_UPLOAD_BYTES", 20_000)
    status, body = await stt.submit(piper(1), "audio/wav")  # Content-Length says it at once
    assert (status, body["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while streaming
        data = piper(1)
        for i in range(0, len(data), 8192):
            yield data[i : i + 8192]

    status, body = await stt.submit(chunks(), "audio/wav")
    assert (status, body["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
    status, listing = await stt.get("/api/stt/jobs")
    assert listing["total"] == 0  # nothing was queued by any of these


# --- a recorded call -------------------------------------------------------------------------------------------


async def test_a_recorded_call_is_transcribed_by_call_id(stt: Stt) -> None:
    api = stt.api
    call = await api.call(("Alice", "Bob"))
    lines = [(PIPER / "s01.ulaw").read_bytes(), (PIPER / "s02.ulaw").read_bytes()]
    status, body = await stt.submit(b'{"call_id": "%s"}' % call.call_id.encode(), "application/json")
    assert (status, body["error"]["code"]) == (409, "RECORDING_IN_PROGRESS")
    with rtp_socket() as a, rtp_socket() as b:
        sends = []
        for sock, port, audio in ((a, call.rtp_ports[0], lines[0]), (b, call.rtp_ports[1], lines[1])):
            payloads = [audio[i : i + 160] for i in range(0, len(audio) - 159, 160)]
            packets = rtp_packets(payloads, payload_type=0, samples_per_packet=160)
            sends.append(send_paced(sock, port, [(i * 0.02, p) for i, p in enumerate(packets)]))
        await asyncio.gather(*sends)
    manifest = await api.manifest_after_bye(call)

    status, body = await stt.submit(
        b'{"call_id": "%s", "leg": 7}' % call.call_id.encode(), "application/json"
    )
    assert (status, body["error"]["code"]) == (404, "LEG_NOT_FOUND")
    status, body = await stt.submit(b'{"call_id": "%s"}' % call.call_id.encode(), "application/json")
    assert status == 202, body
    jobs = body["jobs"]
    assert [(j["leg"], j["source"], j["call_id"]) for j in jobs] == [
        (0, "recording", call.call_id), (1, "recording", call.call_id)
    ]  # fmt: skip
    assert jobs[0]["session_id"] == manifest["session_id"]
    for job in jobs:
        done = await stt.job_when(job["id"], "done")
        # the leg file starts with the first packet: the speech sits where the fixture has it
        assert_speech_found(done, *fixture_pcm(job["leg"] + 1), tolerance=0.1)
    ready = next(e for e in api.events if isinstance(e, RecordingReady) and e.call_id == call.call_id)
    assert all((Path(ready.folder) / leg["file"]).is_file() for leg in manifest["legs"])  # left in place


async def test_a_recording_stt_is_working_on_cannot_be_erased(stt: Stt) -> None:
    """GDPR erase waits for the transcription of the recording: 409 SESSION_ACTIVE while its job runs, then
    erased (a job reading a file that is gone, or a transcript written into a folder erased, is what it avoids)."""
    api = stt.api
    call = await api.call(("Alice", "Bob"))
    audio = (PIPER / "s01.ulaw").read_bytes()[: 160 * 50]
    with rtp_socket() as sock:
        packets = rtp_packets([audio[i : i + 160] for i in range(0, len(audio), 160)], payload_type=0,
                              samples_per_packet=160)  # fmt: skip
        await send_paced(sock, call.rtp_ports[0], [(i * 0.02, p) for i, p in enumerate(packets)])
    manifest = await api.manifest_after_bye(call)
    EnergyProvider.gate = asyncio.Event()
    status, body = await stt.submit(
        b'{"call_id": "%s", "leg": 0}' % call.call_id.encode(), "application/json"
    )
    assert status == 202, body
    job_id = body["jobs"][0]["id"]
    await stt.job_when(job_id, "running")
    erase = {"call_id": call.call_id, "confirm": True}
    async with api.http.post(api.url("/api/compliance/gdpr/erase"), json=erase, headers=KEY) as r:
        status, refused = r.status, await r.json()
    assert status == 409 and refused["error"]["code"] == "SESSION_ACTIVE"
    assert refused["error"]["details"]["call_ids"] == [call.call_id]
    ready = next(e for e in api.events if isinstance(e, RecordingReady) and e.call_id == call.call_id)
    assert (Path(ready.folder) / manifest["legs"][0]["file"]).is_file()
    EnergyProvider.gate.set()
    await stt.job_when(job_id, "done")
    async with api.http.post(api.url("/api/compliance/gdpr/erase"), json=erase, headers=KEY) as r:
        status, erased = r.status, await r.json()
    assert status == 200 and erased["erased"] is True and not Path(ready.folder).exists()


# --- queue, purge, stats, metrics ------------------------------------------------------------------------------


async def test_queue_positions_purge_and_listing(stt: Stt) -> None:
    EnergyProvider.gate = asyncio.Event()
    ids = []
    for n in (1, 2, 3):
        status, body = await stt.submit(piper(n), "audio/wav")
        assert status == 202
        ids.append(body["jobs"][0]["id"])
    first = await stt.job_when(ids[0], "running")
    assert first["position"] is None
    positions = [(await stt.get(f"/api/stt/jobs/{i}"))[1]["position"] for i in ids[1:]]
    assert positions == [1, 2]
    status, queued = await stt.get("/api/stt/jobs?state=queued")
    assert status == 200 and [j["id"] for j in queued["jobs"]] == [ids[2], ids[1]]  # newest first
    status, stats = await stt.get("/api/stt/stats")
    assert stats["queued_legs"] == 2 and stats["running_jobs"] == 1
    assert stats["jobs"]["queued"] == 2 and stats["jobs"]["running"] == 1

    async with stt.api.http.post(stt.url("/api/stt/queue/purge")) as r:
        assert r.status == 401 and (await r.json())["error"]["code"] == "AUTH_REQUIRED"
    async with stt.api.http.post(stt.url("/api/stt/queue/purge"), headers=KEY) as r:
        assert r.status == 200
        purged = await r.json()
    assert purged == {"cancelled": 2, "job_ids": [ids[1], ids[2]]}
    EnergyProvider.gate.set()
    assert (await stt.job_when(ids[0], "done"))["segments"]
    for job_id in ids[1:]:
        cancelled = await stt.job_when(job_id, "cancelled")
        assert cancelled["segments"] == [] and cancelled["error"] == "cancelled through the API"
        kept = stt.service.jobs.job(job_id)  # type: ignore[union-attr]
        assert kept is not None and kept.path is not None and not kept.path.exists()
    status, page = await stt.get("/api/stt/jobs?limit=1&offset=1")
    assert (page["total"], page["limit"], page["offset"], [j["id"] for j in page["jobs"]]) == (
        3,
        1,
        1,
        [ids[1]],
    )
    status, body = await stt.get("/api/stt/jobs?state=sleeping")
    assert (status, body["error"]["code"]) == (400, "VALIDATION_ERROR")
    async with stt.api.http.post(stt.url("/api/stt/queue/purge"), headers=KEY) as r:
        assert (await r.json()) == {"cancelled": 0, "job_ids": []}


async def test_a_failing_provider_fails_the_job(stt: Stt) -> None:
    EnergyProvider.fail = True
    status, body = await stt.submit(piper(4), "audio/wav")
    assert status == 202
    job = await stt.job_when(body["jobs"][0]["id"], "failed")
    assert "energy refuses on purpose" in job["error"] and job["segments"] == []


async def test_stats_and_metrics(stt: Stt) -> None:
    status, body = await stt.submit(piper(5), "audio/wav")
    await stt.job_when(body["jobs"][0]["id"], "done")
    status, stats = await stt.get("/api/stt/stats")
    assert status == 200
    assert stats["enabled"] is True and stats["provider"] == "energy" and stats["planned"] == ["energy"]
    assert stats["providers"] == {"energy": {"state": "ready", "error": None}}
    assert [(p["name"], p["origin"], p["sample_rates"]) for p in stats["installed"]] == [
        ("energy", "registered in code", [16000])
    ]  # fmt: skip
    assert stats["live_streams"] == 0 and stats["lagging_switches"] == 0
    assert stats["counters"]["jobs_done"] == 1 and stats["jobs"]["done"] == 1
    status, metrics = await stt.get("/api/stt/metrics")
    assert status == 200
    rtf = metrics["real_time_factor"]
    assert rtf["jobs"] == 1 and rtf["audio_s"] > 4 and rtf["overall"] == rtf["p50"] == rtf["p95"] > 0
    assert metrics["final_latency_s"]["count"] == 0 and metrics["final_latency_s"]["p50"] is None
    assert metrics["final_latency_s"]["buckets"][-1] == ["+Inf", 0]


# --- auth and absence ------------------------------------------------------------------------------------------


async def test_auth_and_unknown_job(stt: Stt) -> None:
    async with stt.api.http.post(
        stt.url("/api/stt/submit"), data=piper(1), headers={"Content-Type": "audio/wav", "X-API-Key": "wrong"}
    ) as r:
        assert r.status == 401 and (await r.json())["error"]["code"] == "INVALID_API_KEY"
    status, body = await stt.get("/api/stt/jobs/0123456789abcdef")
    assert (status, body["error"]["code"]) == (404, "JOB_NOT_FOUND")
    assert body["error"]["details"] == {"job_id": "0123456789abcdef"}
    for path in ("/api/stt/jobs", "/api/stt/stats", "/api/stt/metrics"):
        assert (await stt.get(path))[0] == 200  # reads need no credential unless auth.require_auth_for_reads


async def test_every_route_says_when_no_stt_service_is_wired(tmp_path: Path) -> None:
    async with api_server(tmp_path, {"auth": {"api_keys": ["stt-admin"]}}) as api:
        api.server.api.stt = None
        for method, path in (
            ("GET", "/api/stt/jobs"), ("GET", "/api/stt/jobs/abc"), ("GET", "/api/stt/stats"),
            ("GET", "/api/stt/metrics"), ("POST", "/api/stt/queue/purge"), ("POST", "/api/stt/submit"),
        ):  # fmt: skip
            async with api.http.request(method, api.url(path), headers=KEY) as r:
                assert r.status == 503, path
                assert (await r.json())["error"]["code"] == "STT_UNAVAILABLE"
        # STT configured off: the service runs, but no provider does
        off = SttService(
            config_from_mapping({"stt": {"provider": "none"}}), api.server.bus.publish,
            ProviderRegistry(entry_points=False),
        )  # fmt: skip
        await off.start()
        api.server.api.stt = off
        try:
            async with api.http.post(
                api.url("/api/stt/submit"), data=piper(1), headers={**KEY, "Content-Type": "audio/wav"}
            ) as r:
                assert r.status == 503 and (await r.json())["error"]["code"] == "STT_UNAVAILABLE"
            async with api.http.get(api.url("/api/stt/stats")) as r:
                stats = await r.json()
            assert stats["enabled"] is False and stats["provider"] is None
        finally:
            await off.close()
