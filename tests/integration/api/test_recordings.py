"""/api/recordings against a running SiprecServer over real sockets: paging and filters over an archive written with
the recorder's own folder naming, manifest writer and WAV writer (speech from the shared fixtures), manifest lookup,
path traversal attempts, audio downloads with ranges and conditional requests, auth, and a real SIPREC call."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from yarl import URL

from siprec.recording.manifest import iso_time, write_manifest
from siprec.recording.wav import WavWriter, read_wav, transcode_to_flac
from siprec.srs.session import session_folder
from tests.integration.api.conftest import Api, api_server, wait_for
from tests.integration.src_client import rtp_packets, rtp_socket, send_paced
from tests.support import FIXTURES, require

pytestmark = pytest.mark.integration

SPEECH = FIXTURES / "audio" / "call"
KEY = "rec-key"
HEADERS = {"X-API-Key": KEY}
DAY1 = datetime(2026, 3, 1, 9, tzinfo=UTC).timestamp()
HOUR, DAY = 3600.0, 86400.0
AGENT = ("Agent Smith", "sip:agent@pbx.example")
CUSTOMER = ("Customer", "sip:+15550109999@carrier.example")


# --- an archive written the way the recorder writes it ---------------------------------------------------------


def speech(track: str, seconds: float) -> np.ndarray:
    path = SPEECH / f"{track}.wav"
    require(path.exists(), f"speech fixture {path}")
    samples, rate = read_wav(path)
    assert rate == 8000
    return np.resize(np.asarray(samples, dtype=np.int16), int(seconds * rate))  # repeated past its 50 s


def _metadata(people: tuple[tuple[str, str], ...]) -> str:
    parts = ['<?xml version="1.0" encoding="UTF-8"?>', '<recording xmlns="urn:ietf:params:xml:ns:recording:1">',
             "<datamode>complete</datamode>"]  # fmt: skip
    for i, (name, aor) in enumerate(people):
        parts.append(f'<participant participant_id="p{i}"><nameID aor="{aor}"><name>{name}</name></nameID>'
                     "</participant>")  # fmt: skip
    return "\n".join([*parts, "</recording>"]) + "\n"


def write_recording(
    root: Path,
    call_id: str,
    started: float,
    *,
    people: tuple[tuple[str, str], ...] = (AGENT, CUSTOMER),
    seconds: float = 2.0,
    state: str = "completed",
    flac: bool = False,
    transcript: bool = False,
) -> Path:
    """A recording folder as RecordingMedia leaves it: leg WAVs, combined.wav, metadata-1.xml, manifest.json."""
    folder = session_folder(root, call_id, started)
    tracks = [speech("agent", seconds), speech("customer", seconds)]
    legs: list[dict[str, Any]] = []
    participants = [{"id": f"p{i}", "aor": aor, "name": name} for i, (name, aor) in enumerate(people)]
    for i, who in enumerate(participants):
        name = f"leg-{i}-{i + 1}.wav"
        writer = WavWriter(folder / name, 8000)
        writer.write(tracks[i % 2])
        writer.close()
        legs.append({
            "index": i, "label": str(i + 1), "file": name, "codec": "PCMU", "payload_type": 0, "sample_rate": 8000,
            "participant": who, "participants": [who], "attribution": "metadata-label", "ssrc": 305419896 + i,
            "packets_received": int(seconds * 50), "packets_lost": 0, "packets_late": 0, "packets_duplicate": 0,
            "duration_s": seconds, "started_at": iso_time(started), "combined_offset": 0,
        })  # fmt: skip
    combined = WavWriter(folder / "combined.wav", 8000, channels=len(people))
    channels = np.stack([tracks[i % 2] for i in range(len(people))], axis=1)
    combined.write(channels if len(people) > 1 else channels[:, 0])
    combined.close()
    (folder / "metadata-1.xml").write_text(_metadata(people), encoding="utf-8")
    entries = [
        *legs,
        {"file": "combined.wav", "channels": len(people), "sample_rate": 8000, "duration_s": seconds},
    ]
    if flac:
        for entry in entries:
            entry["file"] = transcode_to_flac(folder / entry["file"]).name
    if transcript:
        (folder / "transcript.json").write_text(
            json.dumps({"call_id": call_id, "segments": []}), encoding="utf-8"
        )
    write_manifest(folder, {
        "call_id": call_id, "session_id": f"session-{int(started)}", "state": state, "started_at": iso_time(started),
        "ended_at": iso_time(started + seconds), "duration_s": seconds, "started_at_unix": started,
        "ended_at_unix": started + seconds, "end_reason": "bye", "siprec": True, "format": "flac" if flac else "wav",
        "participants": participants, "legs": legs, "combined": entries[-1], "pauses": [], "dtmf": [],
        "metadata_versions": 1, "metadata_files": ["metadata-1.xml"],
        "transcript_file": "transcript.json" if transcript else None,
    })  # fmt: skip
    return folder


def rec_root(api: Api) -> Path:
    return Path(api.server.config.recording.dir)


async def get_json(api: Api, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with api.http.get(api.url(path), headers=headers or {}) as r:
        return r.status, await r.json()


def rid(call_id: str) -> str:
    return quote(call_id, safe="")


# --- listing ---------------------------------------------------------------------------------------------------


async def test_listing_pages_newest_first_and_filters(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        root = rec_root(api)
        calls = []  # oldest first
        for d in range(3):
            for h in range(3 if d < 2 else 1):
                people = (AGENT, CUSTOMER) if (d, h) != (1, 1) else (("Zoë", "sip:zoe@example.org"), CUSTOMER)
                state = "interrupted" if (d, h) == (0, 2) else "completed"
                call_id = f"call-{d}{h}@src.example"
                write_recording(root, call_id, DAY1 + d * DAY + h * HOUR, people=people, state=state)
                calls.append(call_id)
        newest = calls[::-1]

        status, first = await get_json(api, "/api/recordings?limit=3")
        assert status == 200
        assert [r["call_id"] for r in first["recordings"]] == newest[:3]
        assert (first["count"], first["limit"], first["offset"], first["has_more"], first["next_offset"]) == (
            3, 3, 0, True, 3)  # fmt: skip
        pages, offset = [], 0
        while offset is not None:
            _, page = await get_json(api, f"/api/recordings?limit=3&offset={offset}")
            pages += [r["call_id"] for r in page["recordings"]]
            offset = page["next_offset"]
        assert pages == newest
        assert (await get_json(api, "/api/recordings?offset=7"))[1]["recordings"] == []

        item = first["recordings"][0]
        assert item["folder"] == f"2026-03-03/{newest[0]}" and item["date"] == "2026-03-03"
        assert item["participants"] == [{"id": "p0", "aor": AGENT[1], "name": AGENT[0]},
                                        {"id": "p1", "aor": CUSTOMER[1], "name": CUSTOMER[0]}]  # fmt: skip
        assert [(leg["index"], leg["file"], leg["codec"], leg["duration_s"]) for leg in item["legs"]] == [
            (0, "leg-0-1.wav", "PCMU", 2.0), (1, "leg-1-2.wav", "PCMU", 2.0)]  # fmt: skip
        assert item["combined"]["channels"] == 2 and item["state"] == "completed" and item["format"] == "wav"
        # The links work as given
        async with api.http.get(api.url(item["url"])) as r:
            assert r.status == 200 and (await r.json())["call_id"] == newest[0]
        for url in [leg["url"] for leg in item["legs"]] + [item["combined"]["url"]]:
            async with api.http.get(api.url(url)) as r:
                assert r.status == 200 and r.content_type == "audio/wav"

        async def ids(query: str) -> list[str]:
            status, body = await get_json(api, f"/api/recordings?{query}")
            assert status == 200, body
            return [r["call_id"] for r in body["recordings"]]

        assert await ids("from=2026-03-02&to=2026-03-02") == newest[1:4]
        assert await ids("from=2026-03-02") == newest[:4]
        assert await ids("to=2026-03-01") == newest[4:]
        at = quote("2026-03-02T09:30:00+00:00")
        assert await ids(f"from={at}&to=2026-03-02T10:30:00Z") == ["call-11@src.example"]
        assert await ids("participant=zo%C3%AB") == ["call-11@src.example"]
        assert await ids("participant=SIP:ZOE@") == ["call-11@src.example"]
        assert len(await ids("participant=%2B1555")) == 7
        assert await ids("state=interrupted") == ["call-02@src.example"]
        assert await ids("participant=agent&state=completed&from=2026-03-01&limit=2") == newest[:2]

        for bad in ("limit=0", "limit=501", "offset=-1", "from=yesterday", "to=2026-13-01", "state=lost",
                    "participant="):  # fmt: skip
            status, body = await get_json(api, f"/api/recordings?{bad}")
            assert status == 400 and body["error"]["code"] == "VALIDATION_ERROR", bad


async def test_listing_shows_live_sessions_and_a_real_call_end_to_end(tmp_path: Path) -> None:
    ulaw = SPEECH / "agent.ulaw"
    require(ulaw.exists(), f"speech fixture {ulaw}")
    payload = ulaw.read_bytes()[8000 * 1 : 8000 * 3]  # two seconds of speech
    async with api_server(tmp_path) as api:
        call = await api.call()
        status, listing = await get_json(api, "/api/recordings")
        assert status == 200
        live = listing["recordings"][0]
        assert (live["call_id"], live["state"]) == (call.call_id, "recording")
        packets = rtp_packets([payload[i : i + 160] for i in range(0, len(payload), 160)], payload_type=0,
                              samples_per_packet=160)  # fmt: skip
        sock = rtp_socket()
        try:
            await send_paced(sock, call.rtp_ports[0], [(i * 0.02, p) for i, p in enumerate(packets)])
        finally:
            sock.close()
        await wait_for(lambda: _manifest_on_disk(api, call.call_id), what="the first manifest")
        _, listing = await get_json(api, "/api/recordings?state=recording")
        assert [r["call_id"] for r in listing["recordings"]] == [call.call_id]
        assert listing["recordings"][0]["legs"][0]["codec"] == "PCMU"  # now from the live manifest
        manifest = await api.manifest_after_bye(call)
        status, served = await get_json(api, f"/api/recordings/{rid(call.call_id)}")
        assert status == 200 and served == manifest and served["state"] == "completed"
        folder = rec_root(api).resolve() / datetime.fromtimestamp(manifest["started_at_unix"], UTC).strftime(
            "%Y-%m-%d") / call.call_id  # fmt: skip
        async with api.http.get(api.url(f"/api/recordings/{rid(call.call_id)}/audio/leg-0")) as r:
            body = await r.read()
            assert r.status == 200 and body == (folder / manifest["legs"][0]["file"]).read_bytes()
        assert manifest["legs"][0]["duration_s"] > 1.0  # the speech really was recorded and is what we got
        status, listing = await get_json(api, "/api/recordings")
        assert [(r["call_id"], r["state"]) for r in listing["recordings"]] == [(call.call_id, "completed")]


def _manifest_on_disk(api: Api, call_id: str) -> bool:
    return any(p.parent.name == call_id for p in rec_root(api).glob("*/*/manifest.json"))


# --- one recording -----------------------------------------------------------------------------------------------


async def test_manifest_lookup_reused_and_odd_call_ids(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        root = rec_root(api)
        first = write_recording(root, "reused@src", DAY1)
        second = write_recording(root, "reused@src", DAY1 + HOUR)
        odd_id = "weird/../id with spaces;%00&?#ü"
        odd = write_recording(root, odd_id, DAY1 + 2 * HOUR)

        status, body = await get_json(api, f"/api/recordings/{rid('reused@src')}")
        assert status == 200 and body == json.loads((second / "manifest.json").read_text())
        status, body = await get_json(
            api, f"/api/recordings/{rid('reused@src')}?session_id=session-{int(DAY1)}"
        )
        assert status == 200 and body == json.loads((first / "manifest.json").read_text())
        status, body = await get_json(api, f"/api/recordings/{rid(odd_id)}")
        assert status == 200 and body["call_id"] == odd_id and odd.parent.parent == root.resolve()
        _, listing = await get_json(api, "/api/recordings")
        odd_item = next(r for r in listing["recordings"] if r["call_id"] == odd_id)
        async with api.http.get(api.url(odd_item["combined"]["url"])) as r:
            assert r.status == 200 and await r.read() == (odd / "combined.wav").read_bytes()

        status, body = await get_json(api, "/api/recordings/nobody@nowhere")
        assert (status, body["error"]["code"]) == (404, "RECORDING_NOT_FOUND")
        assert body["error"]["details"] == {"call_id": "nobody@nowhere"}
        status, body = await get_json(api, f"/api/recordings/{rid('reused@src')}?session_id=other")
        assert (status, body["error"]["code"]) == (404, "RECORDING_NOT_FOUND")
        status, body = await get_json(api, "/api/recordings/" + "x" * 1025)
        assert (status, body["error"]["code"]) == (400, "INVALID_CALL_ID")


async def test_traversal_attempts_read_nothing_outside(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    async with api_server(tmp_path) as api:
        root = rec_root(api)
        folder = write_recording(root, "victim@src", DAY1)
        # A manifest that names files outside its folder, and a leg file that is a symlink out of it
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["legs"][0]["file"] = "../../../secret.txt"
        manifest["combined"]["file"] = "/etc/passwd"
        write_manifest(folder, manifest)
        (folder / "leg-1-2.wav").unlink()
        (folder / "leg-1-2.wav").symlink_to(secret)

        attempts = [
            "/api/recordings/..%2F..%2Fsecret.txt", "/api/recordings/%2e%2e", "/api/recordings/..",
            "/api/recordings/%2e%2e%2f%2e%2e%2fsecret.txt/audio/leg-0", "/api/recordings/a%00b",
            "/api/recordings/victim%40src%00/audio/leg-0", "/api/recordings/..%2F2026-03-01%2Fvictim%40src",
            "/api/recordings/2026-03-01%2Fvictim%40src", "/api/recordings/victim@src/audio/..%2F..%2Fsecret.txt",
            "/api/recordings/victim@src/audio/leg-0%00", "/api/recordings/../../secret.txt",
            "/api/recordings/victim@src/audio/leg-0", "/api/recordings/victim@src/audio/leg-1",
            "/api/recordings/victim@src/audio/combined", "/api/recordings/victim@src/../../../secret.txt",
        ]  # fmt: skip
        for path in attempts:
            async with api.http.get(URL(api.url(path), encoded=True), headers=HEADERS) as r:
                body = await r.read()
                assert r.status in (400, 404), (path, r.status)
                assert b"TOP-SECRET" not in body and b"root:" not in body, path
                assert json.loads(body)["error"]["code"], path
        codes = {}
        for leg in ("leg-0", "leg-1", "combined", "leg-7", "nonsense"):
            _, body = await get_json(api, f"/api/recordings/victim@src/audio/{leg}")
            codes[leg] = body["error"]["code"]
        assert codes == {"leg-0": "LEG_NOT_FOUND", "leg-1": "AUDIO_NOT_FOUND", "combined": "LEG_NOT_FOUND",
                         "leg-7": "LEG_NOT_FOUND", "nonsense": "LEG_NOT_FOUND"}  # fmt: skip
        assert secret.read_text() == "TOP-SECRET"


# --- audio -------------------------------------------------------------------------------------------------------


async def test_audio_ranges_and_conditional_requests(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        folder = write_recording(rec_root(api), "audio@src", DAY1, seconds=3.0)
        data = (folder / "leg-0-1.wav").read_bytes()
        size = len(data)
        url = api.url("/api/recordings/audio%40src/audio/leg-0")

        async def fetch(headers: dict[str, str], method: str = "GET") -> tuple[int, Any, bytes]:
            async with api.http.request(method, url, headers=headers) as r:
                return r.status, r.headers, await r.read()

        status, headers, body = await fetch({})
        assert status == 200 and body == data
        assert headers["Content-Type"] == "audio/wav" and headers["Accept-Ranges"] == "bytes"
        assert int(headers["Content-Length"]) == size and headers["Last-Modified"].endswith("GMT")
        assert 'filename="audio@src-leg-0-1.wav"' in headers["Content-Disposition"]
        etag = headers["ETag"]

        cases = {
            "bytes=0-43": (0, 44),  # the WAV header
            "bytes=-100": (size - 100, 100),
            "bytes=1000-": (1000, size - 1000),
            f"bytes=10-{size * 2}": (10, size - 10),
        }
        for spec, (start, length) in cases.items():
            status, headers, body = await fetch({"Range": spec})
            assert status == 206, spec
            assert body == data[start : start + length], spec
            assert headers["Content-Range"] == f"bytes {start}-{start + length - 1}/{size}"
            assert int(headers["Content-Length"]) == length
        assert (await fetch({"Range": "bytes=0-43"}))[2][:4] == b"RIFF"

        status, headers, body = await fetch({"Range": f"bytes={size}-"})
        assert status == 416 and headers["Content-Range"] == f"bytes */{size}"
        assert json.loads(body)["error"]["code"] == "RANGE_NOT_SATISFIABLE"
        assert (await fetch({"Range": "bytes=0-1,4-5"}))[:3:2] == (
            200,
            data,
        )  # several ranges: the whole file

        status, headers, body = await fetch({}, method="HEAD")
        assert (status, body, int(headers["Content-Length"]), headers["ETag"]) == (200, b"", size, etag)
        assert headers["Accept-Ranges"] == "bytes"

        status, headers, body = await fetch({"If-None-Match": etag})
        assert (status, body, headers["ETag"]) == (304, b"", etag)
        assert (await fetch({"If-Modified-Since": headers["Last-Modified"]}))[0] == 304
        assert (await fetch({"If-Range": etag, "Range": "bytes=0-9"}))[:3:2] == (206, data[:10])
        assert (await fetch({"If-Range": '"stale"', "Range": "bytes=0-9"}))[:3:2] == (200, data)
        status, _, body = await fetch({"If-Match": '"stale"'})
        assert status == 412 and json.loads(body)["error"]["code"] == "PRECONDITION_FAILED"

        async with api.http.get(api.url("/api/recordings/audio%40src/audio/combined")) as r:
            combined = await r.read()
        stereo, rate = read_wav_bytes(tmp_path, combined)
        assert rate == 8000 and stereo.shape == (24000, 2)
        assert np.array_equal(stereo[:, 0], speech("agent", 3.0))
        status, _, body = await fetch({}, method="POST")
        assert status == 405 and json.loads(body)["error"]["code"] == "METHOD_NOT_ALLOWED"


def read_wav_bytes(tmp: Path, data: bytes) -> tuple[np.ndarray, int]:
    path = tmp / f"download-{hashlib.sha256(data).hexdigest()[:8]}.wav"
    path.write_bytes(data)
    return read_wav(path)


async def test_flac_recordings_are_served_as_flac(tmp_path: Path) -> None:
    async with api_server(tmp_path) as api:
        folder = write_recording(rec_root(api), "flac@src", DAY1, flac=True)
        _, listing = await get_json(api, "/api/recordings")
        assert listing["recordings"][0]["format"] == "flac"
        assert listing["recordings"][0]["legs"][0]["file"] == "leg-0-1.flac"
        async with api.http.get(api.url("/api/recordings/flac%40src/audio/leg-0")) as r:
            assert r.status == 200 and r.content_type == "audio/flac"
            assert await r.read() == (folder / "leg-0-1.flac").read_bytes()
        async with api.http.get(api.url("/api/recordings/flac%40src/audio/combined"),
                                headers={"Range": "bytes=0-3"}) as r:  # fmt: skip
            assert r.status == 206 and await r.read() == b"fLaC"


# --- auth --------------------------------------------------------------------------------------------------------


async def test_every_route_asks_for_credentials_when_reads_are_protected(tmp_path: Path) -> None:
    config = {"auth": {"api_keys": [KEY], "require_auth_for_reads": True}}
    async with api_server(tmp_path, config) as api:
        write_recording(rec_root(api), "auth@src", DAY1)
        routes = [("GET", "/api/recordings"), ("GET", "/api/recordings/auth%40src"),
                  ("GET", "/api/recordings/auth%40src/audio/leg-0"), ("HEAD", "/api/recordings/auth%40src/audio/leg-0"),
                  ("GET", "/api/compliance/status")]  # fmt: skip
        for method, path in routes:
            async with api.http.request(method, api.url(path)) as r:
                assert r.status == 401, path
                assert "WWW-Authenticate" in r.headers
                if method == "GET":
                    assert (await r.json())["error"]["code"] == "AUTH_REQUIRED"
            async with api.http.request(method, api.url(path), headers={"X-API-Key": "wrong"}) as r:
                assert r.status == 401, path
            async with api.http.request(method, api.url(path), headers=HEADERS) as r:
                assert r.status == 200, path
            async with api.http.request(
                method, api.url(path + ("&" if "?" in path else "?") + f"api_key={KEY}")
            ) as r:
                assert r.status == 200, path
