"""Media end to end: sipp plays two different speech clips on the two legs of a SIPREC call; the recording must hold
exactly that audio.

The capture is built here from the shared call fixtures (agent.ulaw on leg 0, customer.ulaw on leg 1, the same
window of both so they stay time-aligned) with RTP streams on consecutive even ports; sipp replays it to the
server's answer ports p and p+2 (tests/sipp/siprec_media.xml says how). Then the files are checked against the
source: each leg WAV is the G.711 decode of its clip sample for sample, combined.wav's channel n is leg n at the
manifest's combined_offset, and the manifest counts every packet sent.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import socket
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rtp.codecs.g711 import ulaw_decode
from tests.integration.pcap import RtpStream, build_rtp_pcap
from tests.integration.sip_server import SIPP_DIR, run_sipp, running_server
from tests.support import FIXTURES, require

pytestmark = pytest.mark.integration

CALL = FIXTURES / "audio" / "call"
RATE = 8000
PTIME_MS = 20
SAMPLES_PER_PACKET = RATE * PTIME_MS // 1000
RTP_RANGE = (24000, 24999)  # below the ephemeral range (32768-60999): no socket of the run (the server's SIP port
# is port 0) can sit in it and break the contiguous ports sipp's replay assumes (first answer port + 2)
SSRCS = (0x5EED0001, 0x5EED0002)  # agent, customer
CAPTURE_PORT = 40000  # any even port: sipp keeps only the offsets (0 and 2) from the lowest one
MARGIN_MS = 600  # after the last packet leaves sipp, before the BYE
MANIFEST_WAIT_S = 10.0

MANIFEST_KEYS = {
    "call_id", "session_id", "state", "started_at", "ended_at", "duration_s", "participants", "legs", "combined",
    "pauses", "metadata_versions", "transcript_file",
}  # fmt: skip
LEG_KEYS = {
    "index", "label", "file", "codec", "payload_type", "sample_rate", "participant", "ssrc", "packets_received",
    "packets_lost", "packets_late", "duration_s", "started_at", "combined_offset",
}  # fmt: skip


def window() -> tuple[int, int]:
    """[start, end) in samples: the last 2 s of the agent's first utterance to the end of the customer's reply,
    on whole packets, so both legs carry speech and each is digital silence while the other speaks."""
    script = json.loads((CALL / "script.json").read_text())
    first, second = script["utterances"][:2]
    assert (first["speaker"], second["speaker"], script["sample_rate"]) == ("agent", "customer", RATE)
    start = (first["end_sample"] - 2 * RATE) // SAMPLES_PER_PACKET * SAMPLES_PER_PACKET
    end = -(-second["end_sample"] // SAMPLES_PER_PACKET) * SAMPLES_PER_PACKET
    return start, end


def raw_sockets_allowed() -> bool:
    """sipp's play_pcap_audio sends through a raw socket: root or CAP_NET_RAW."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP).close()
    except PermissionError:
        return False
    return True


def free_even_pair(exclude: tuple[int, int]) -> int:
    """An even port M with M and M+2 free on loopback UDP (sipp's -mp binds both), outside `exclude`."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 60000, 2)
        if exclude[0] - 2 <= port <= exclude[1]:
            continue
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        try:
            for s, p in zip(socks, (port, port + 2), strict=True):
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return port
    raise RuntimeError("no free even UDP port pair for sipp's media")


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """PCM16 samples (frames x channels) and rate, checking the RIFF and data sizes match the file (a finalised
    header, not a streaming placeholder). Written out here so the test does not trust the server's own reader."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", f"{path.name}: not a RIFF/WAVE file"
    assert struct.unpack_from("<I", data, 4)[0] == len(data) - 8, (
        f"{path.name}: RIFF size is not the file size"
    )
    offset, fmt, pcm = 12, None, None
    while offset + 8 <= len(data):
        cid, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        body = data[offset + 8 : offset + 8 + size]
        if cid == b"fmt ":
            fmt = struct.unpack_from("<HHIIHH", body, 0)
        elif cid == b"data":
            assert len(body) == size, f"{path.name}: data chunk says {size} bytes, file holds {len(body)}"
            pcm = body
        offset += 8 + size + (size & 1)
    assert fmt is not None and pcm is not None, f"{path.name}: missing fmt or data chunk"
    tag, channels, rate, _byte_rate, _align, bits = fmt
    assert tag in (1, 0xFFFE) and bits == 16, f"{path.name}: format tag {tag}, {bits} bits; want PCM 16-bit"
    return np.frombuffer(pcm, dtype="<i2").reshape(-1, channels), rate


def first_difference(got: np.ndarray, want: np.ndarray) -> str:
    """Where two sample arrays part, for a failure message that says what differs instead of just 'not equal'."""
    n = min(len(got), len(want))
    diff = np.flatnonzero(got[:n] != want[:n])
    if not len(diff):
        return f"equal over {n} samples; lengths {len(got)} vs {len(want)}"
    i = int(diff[0])
    return (
        f"first difference at sample {i} ({i / RATE:.3f} s): got {got[i : i + 5].tolist()} want "
        f"{want[i : i + 5].tolist()}; {len(diff)} of {n} samples differ; lengths {len(got)} vs {len(want)}"
    )


def onset(pcm: np.ndarray) -> int:
    nonzero = np.flatnonzero(pcm)
    return int(nonzero[0]) if len(nonzero) else -1


def check_leg(name: str, got: np.ndarray, want: np.ndarray) -> None:
    """The leg WAV starts at the leg's first RTP packet, so it equals the source from sample 0; the recorder may
    pad the end with silence, nothing else."""
    offset = onset(got) - onset(want)
    assert offset == 0, (
        f"{name}: speech starts {offset} samples ({offset / RATE:+.3f} s) away from the source "
        f"(first non-zero sample {onset(got)} vs {onset(want)}); {first_difference(got, want)}; "
        f"at that offset: {first_difference(got[max(offset, 0) :], want[max(-offset, 0) :])}"
    )
    assert len(got) >= len(want), (
        f"{name}: {len(got)} samples, source has {len(want)}; {first_difference(got, want)}"
    )
    assert np.array_equal(got[: len(want)], want), f"{name}: {first_difference(got, want)}"
    tail = got[len(want) :]
    assert not tail.any(), (
        f"{name}: {len(tail)} samples after the source end may only be padding silence; "
        f"first non-zero at +{onset(tail)}"
    )


def as_int(value: int | str) -> int:
    """An SSRC as a number, whether the manifest writes it as one or as a decimal/0x string."""
    return value if isinstance(value, int) else int(value, 0)


def participant_name(manifest: dict[str, Any], leg: dict[str, Any]) -> str | None:
    """A leg's participant, given as an id from `participants`, an object, or a name."""
    ref = leg["participant"]
    if isinstance(ref, dict):
        return ref.get("name")
    for p in manifest["participants"]:
        if ref == p["id"]:
            return p["name"]
    return ref


async def wait_for_manifest(root: Path) -> tuple[Path, dict[str, Any]]:
    """The one session folder's manifest, once its state is "completed" (the BYE finalises the recording)."""
    deadline = time.monotonic() + MANIFEST_WAIT_S
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        found = sorted(root.glob("*/*/manifest.json"))
        assert len(found) <= 1, f"one call, several session folders: {found}"
        if found:
            try:
                seen = json.loads(found[0].read_text())
            except json.JSONDecodeError:
                seen = {}  # caught mid-write; the next poll reads the finished file
            if seen.get("state") == "completed":
                return found[0].parent, seen
        await asyncio.sleep(0.05)
    folders = (
        sorted(str(p.relative_to(root)) for p in root.glob("**/*")) if root.exists() else "no recording dir"
    )
    pytest.fail(
        f"no completed manifest under {root} after {MANIFEST_WAIT_S} s; last read {seen}; files {folders}"
    )


async def test_two_speech_clips_recorded_sample_exact(tmp_path: Path) -> None:
    require(CALL.is_dir(), f"shared call fixtures at {CALL}")
    require(shutil.which("sipp") is not None, "sipp (Debian package sip-tester)")
    require(raw_sockets_allowed(), "raw sockets (root or CAP_NET_RAW) for sipp play_pcap_audio")

    start, end = window()
    clips = [(CALL / f"{who}.ulaw").read_bytes()[start:end] for who in ("agent", "customer")]
    sources = [ulaw_decode(clip) for clip in clips]
    assert all(s.any() for s in sources), "the window must hold speech on both legs"
    assert not np.array_equal(sources[0], sources[1]), "the two legs must carry different audio"

    streams = [RtpStream(clip, CAPTURE_PORT + 2 * n, SSRCS[n], 0) for n, clip in enumerate(clips)]
    counts = build_rtp_pcap(tmp_path / "siprec_media.pcap", streams, ptime_ms=PTIME_MS)
    packets = (end - start) // SAMPLES_PER_PACKET
    assert counts == [packets, packets]
    # sipp finds the capture next to the scenario: both go in the test's directory, which is also sipp's cwd.
    scenario = shutil.copy(SIPP_DIR / "siprec_media.xml", tmp_path / "siprec_media.xml")
    media_port = free_even_pair(RTP_RANGE)
    sipp_args = [
        "-mi", "127.0.0.1", "-mp", str(media_port), "-key", "media_port_leg1", str(media_port + 2),
        "-set", "pcap_ms", str(packets * PTIME_MS + MARGIN_MS),
    ]  # fmt: skip

    overrides = {"rtp": {"port_min": RTP_RANGE[0], "port_max": RTP_RANGE[1]}}
    async with running_server(overrides, tmp=tmp_path) as server:
        port = server.transport.bound["UDP"]
        result = await run_sipp(scenario, port, extra=sipp_args, timeout_s=20, workdir=tmp_path)
        assert result.returncode == 0 and not result.errors.strip(), (
            f"sipp exited {result.returncode}\n{result.errors[-3000:]}\n{result.stdout[-2000:]}"
        )
        folder, manifest = await wait_for_manifest(tmp_path / "recordings")

    assert manifest.keys() >= MANIFEST_KEYS, f"manifest lacks {sorted(MANIFEST_KEYS - manifest.keys())}"
    assert manifest["state"] == "completed" and manifest["pauses"] == []
    assert manifest["metadata_versions"] == 1
    assert manifest["duration_s"] >= packets * PTIME_MS / 1000, "the call lasted at least the playback"
    assert {(p["name"], p["aor"]) for p in manifest["participants"]} == {
        ("Agent", "sip:agent@example.com"), ("Customer", "sip:customer@example.com")}  # fmt: skip
    legs = manifest["legs"]
    assert [leg["index"] for leg in legs] == [0, 1], legs

    recorded = []
    for n, leg in enumerate(legs):
        assert leg.keys() >= LEG_KEYS, f"leg {n} lacks {sorted(LEG_KEYS - leg.keys())}"
        described = (leg["label"], leg["codec"], leg["payload_type"], leg["sample_rate"])
        assert described == (str(n + 1), "PCMU", 0, RATE), leg
        assert participant_name(manifest, leg) == ("Agent", "Customer")[n], leg
        assert as_int(leg["ssrc"]) == SSRCS[n], leg
        counters = (leg["packets_received"], leg["packets_lost"], leg["packets_late"])
        assert counters == (packets, 0, 0), (
            f"leg {n}: received/lost/late {counters}, sipp sent {packets} (to the answer's first port + {2 * n})"
        )
        files = sorted(folder.glob(f"leg-{n}-*.wav"))
        assert [f.name for f in files] == [leg["file"]] == [f"leg-{n}-{n + 1}.wav"], (files, leg["file"])
        pcm, rate = read_wav(files[0])
        assert (rate, pcm.shape[1]) == (RATE, 1), f"{files[0].name}: {rate} Hz, {pcm.shape[1]} channels"
        check_leg(files[0].name, pcm[:, 0], sources[n])
        assert leg["duration_s"] == pytest.approx(len(pcm) / RATE, abs=0.02), leg
        recorded.append(pcm[:, 0])

    combined_info = manifest["combined"]
    assert (combined_info["file"], combined_info["channels"], combined_info["sample_rate"]) == (
        "combined.wav", 2, RATE)  # fmt: skip
    combined, rate = read_wav(folder / "combined.wav")
    assert (rate, combined.shape[1]) == (RATE, 2)
    for n, leg in enumerate(legs):
        offset, pcm, channel = leg["combined_offset"], recorded[n], combined[:, n]
        assert offset >= 0 and offset + len(pcm) <= len(channel), (
            f"channel {n}: leg of {len(pcm)} samples at offset {offset} does not fit {len(channel)} frames"
        )
        placed = channel[offset : offset + len(pcm)]
        assert np.array_equal(placed, pcm), (
            f"combined channel {n} at offset {offset}: {first_difference(placed, pcm)}"
        )
        outside = np.concatenate([channel[:offset], channel[offset + len(pcm) :]])
        assert not outside.any(), f"combined channel {n}: non-zero samples outside the leg at offset {offset}"
    # Both legs start with the same capture instant, so they start (within scheduling noise) together.
    assert abs(legs[0]["combined_offset"] - legs[1]["combined_offset"]) <= RATE // 10, legs
