"""Live transcription end to end (issue 5 acceptance): sipp plays the whole two-speaker fixture call (agent on leg 0,
customer on leg 1, 50 s of real speech) into the server running the default offline Whisper provider.

Checked as a user sees it: the final `transcript` events on the bus carry each line's words with the right speaker
(the metadata participant's name) and stream label, the word error rate against script.json is at most 0.10, the
first final arrives within 1.5 s of the end of the first utterance, and transcript.json beside the recording holds
the same finals sorted by time.

Analytics on the same call, as a dashboard on /ws/analytics receives it: every final carries its sentiment and the
configured keywords it holds, `keyword_detected` for "refund" and "card number" on the lines that say them,
`sentiment_update` (the customer's thanks at the end is positive), `snapshot` frames during the call and a final one
with both speakers' talk time.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.wer import normalise, word_edits
from siprec.events.types import Event, KeywordDetected, SentimentUpdate, TranscriptEvent
from tests.integration.pcap import RtpStream, build_rtp_pcap
from tests.integration.sip_server import SIPP_DIR, run_sipp, running_server
from tests.integration.test_media_sipp import free_even_pair, raw_sockets_allowed, wait_for_manifest
from tests.support import FIXTURES, require

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CALL = FIXTURES / "audio" / "call"
RATE = 8000
PTIME_MS = 20
SAMPLES_PER_PACKET = RATE * PTIME_MS // 1000
RTP_RANGE = (25000, 25999)  # below the ephemeral range, as in test_media_sipp.py
CAPTURE_PORT = 40000
MARGIN_MS = (
    1500  # after the last packet, before the BYE: the last utterance's final comes at its end of speech
)
SPEAKERS = {"agent": ("Agent", "1"), "customer": ("Customer", "2")}  # name and a=label in siprec_media.xml
MAX_WER = 0.10
FIRST_FINAL_WITHIN_S = 1.5
TRANSCRIPT_WAIT_S = 60.0



async def test_two_speaker_call_transcribed_live_with_speakers(tmp_path: Path) -> None:
    require(CALL.is_dir(), f"shared call fixtures at {CALL}")
    require(shutil.which("sipp") is not None, "sipp (Debian package sip-tester)")
    require(raw_sockets_allowed(), "raw sockets (root or CAP_NET_RAW) for sipp play_pcap_audio")
    script = json.loads((CALL / "script.json").read_text())
    utterances = script["utterances"]

    length = len((CALL / "agent.ulaw").read_bytes()) // SAMPLES_PER_PACKET * SAMPLES_PER_PACKET
    clips = [(CALL / f"{who}.ulaw").read_bytes()[:length] for who in ("agent", "customer")]
    streams = [RtpStream(clip, CAPTURE_PORT + 2 * n, 0x5EED0101 + n, 0) for n, clip in enumerate(clips)]
    build_rtp_pcap(tmp_path / "siprec_media.pcap", streams, ptime_ms=PTIME_MS)
    scenario = shutil.copy(SIPP_DIR / "siprec_media.xml", tmp_path / "siprec_media.xml")
    media_port = free_even_pair(RTP_RANGE)
    packets = length // SAMPLES_PER_PACKET
    sipp_args = [
        "-mi", "127.0.0.1", "-mp", str(media_port), "-key", "media_port_leg1", str(media_port + 2),
        "-set", "pcap_ms", str(packets * PTIME_MS + MARGIN_MS),
    ]  # fmt: skip

    finals: list[tuple[float, TranscriptEvent]] = []  # (arrival, event)
    partials = 0

    def on_event(event: Event) -> None:
        nonlocal partials
        if isinstance(event, TranscriptEvent):
            if event.is_final:
                finals.append((time.time(), event))
            else:
                partials += 1

    overrides = {
        "rtp": {"port_min": RTP_RANGE[0], "port_max": RTP_RANGE[1]},
        "stt": {"provider": "whisper", "partials": False},
        "analytics": {"keywords": ["refund", "card number"], "snapshot_interval_s": 2},
    }
    analytics: list[Event] = []
    async with running_server(overrides, tmp=tmp_path) as server, aiohttp.ClientSession() as http:
        server.bus.subscribe(on_event)
        server.bus.subscribe(analytics.append, types=("keyword_detected", "sentiment_update"))
        dashboard = asyncio.create_task(_read_analytics(http, f"ws://127.0.0.1:{server.http_port}/ws/analytics"))
        port = server.transport.bound["UDP"]
        result = await run_sipp(scenario, port, extra=sipp_args, timeout_s=90, workdir=tmp_path)
        assert result.returncode == 0 and not result.errors.strip(), (
            f"sipp exited {result.returncode}\n{result.errors[-3000:]}\n{result.stdout[-2000:]}"
        )
        folder, manifest = await wait_for_manifest(tmp_path / "recordings")
        transcript_path = folder / "transcript.json"
        assert server.stt is not None, "the server runs no STT service"
        await asyncio.wait_for(server.stt.wait_idle(), TRANSCRIPT_WAIT_S)  # transcript.json written
        frames = await asyncio.wait_for(dashboard, 30)  # until the call's final snapshot
    assert manifest["transcript_file"] == "transcript.json"
    assert transcript_path.exists(), (
        f"no transcript.json in {folder}: {sorted(p.name for p in folder.iterdir())}"
    )

    # The leg's sample 0 is the first packet sipp sent: the script's times are relative to it.
    origin = min(_unix(leg["started_at"]) for leg in manifest["legs"])
    report = _report(finals, utterances)
    assert finals, "no final transcript event"

    for _, event in finals:
        assert event.provider == "whisper" and event.call_id == manifest["call_id"]
    # Every line: the right speaker and stream label, the words of the script.
    by_speaker: dict[str, list[str]] = {"agent": [], "customer": []}
    for who, (name, label) in SPEAKERS.items():
        mine = [e for _, e in finals if e.stream_label == label]
        assert mine, f"no finals on the {who} leg (label {label})\n{report}"
        assert {e.speaker_label for e in mine} == {name}, f"{who} leg speakers {report}"
        by_speaker[who] = [e.text for e in sorted(mine, key=lambda e: e.start)]
    # Scored as the fixtures' README scores its ASR check: edits summed over the call / reference words (161).
    edits = words_total = 0
    per_leg = {}
    for who in SPEAKERS:
        ref = normalise(" ".join(u["text"] for u in utterances if u["speaker"] == who))
        got = normalise(" ".join(by_speaker[who]))
        n = word_edits(ref, got)
        edits, words_total = edits + n, words_total + len(ref)
        per_leg[who] = f"{n}/{len(ref)}"
    rate = edits / words_total
    assert rate <= MAX_WER, f"WER {rate:.3f} > {MAX_WER} (edits per leg {per_leg})\n{report}"

    # Each final sits on its utterance in time (seconds from the session start ~ from the first packet).
    offset = origin - _unix(manifest["started_at"])
    for _, event in finals:
        mid = (event.start + event.end) / 2 - offset
        assert any(u["start"] - 0.5 <= mid <= u["end"] + 0.5 for u in utterances), (
            f"final {event.text!r} at {event.start:.2f}-{event.end:.2f} s matches no utterance\n{report}"
        )

    # Latency: the first final arrives within 1.5 s of the end of the first utterance's audio.
    first_end = origin + utterances[0]["end"]
    first_arrival = min(t for t, e in finals if e.stream_label == SPEAKERS[utterances[0]["speaker"]][1])
    assert first_arrival - first_end <= FIRST_FINAL_WITHIN_S, (
        f"first final {first_arrival - first_end:.2f} s after the end of the first utterance\n{report}"
    )

    saved = json.loads(transcript_path.read_text())
    segments = saved["segments"]
    assert [s["text"] for s in segments] == [e.text for _, e in sorted(finals, key=lambda f: f[1].start)]
    assert [s["start"] for s in segments] == sorted(s["start"] for s in segments)
    assert {s["speaker_label"] for s in segments} == {"Agent", "Customer"}
    assert partials == 0, "partials were switched off"

    # Analytics: the finals are scored and tagged; the events follow them; the dashboard got the snapshots.
    for _, event in finals:
        assert event.sentiment is not None and -1 <= event.sentiment["score"] <= 1, event
        words = f" {' '.join(normalise(event.text))} "
        assert set(event.keywords) == {k for k in ("refund", "card number") if f" {k} " in words}, event
    hits = {(e.keyword, e.speaker_label) for e in analytics if isinstance(e, KeywordDetected)}
    assert {("refund", "Customer"), ("refund", "Agent"), ("card number", "Customer")} <= hits, f"{hits}\n{report}"
    updates = [e for e in analytics if isinstance(e, SentimentUpdate)]
    assert len(updates) == len(finals)
    thanks = max((e for e in updates if e.speaker_label == "Customer"), key=lambda e: e.start)
    assert thanks.label == "positive", f"the customer's last line scored {thanks.score}\n{report}"
    kinds = [f["type"] for f in frames]
    assert {"session_started", "keyword_detected", "sentiment_update", "snapshot", "session_ended"} <= set(kinds)
    assert all(f["payload"]["call_id"] == manifest["call_id"] for f in frames)
    snapshots = [f["payload"] for f in frames if f["type"] == "snapshot"]
    assert sum(not s["final"] for s in snapshots) >= 10, "a snapshot every 2 s of a 50 s call"
    final = snapshots[-1]
    assert final["final"] and final["keywords"]["refund"] >= 2 and final["keywords"]["card number"] >= 1
    talk = {s["speaker_label"]: s["talk_time_s"] for s in final["speakers"]}
    assert set(talk) == {"Agent", "Customer"} and all(t > 5 for t in talk.values()), talk


async def _read_analytics(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    """A dashboard: every frame of /ws/analytics (one JSON object each) until a final snapshot."""
    frames: list[dict[str, Any]] = []
    async with http.ws_connect(url) as ws:
        async for message in ws:
            assert message.type == aiohttp.WSMsgType.TEXT, message
            frame = json.loads(message.data)
            frames.append(frame)
            if frame["type"] == "snapshot" and frame["payload"]["final"]:
                break
    return frames


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _report(finals: list[tuple[float, TranscriptEvent]], utterances: list[dict[str, Any]]) -> str:
    lines = [f"{e.start:6.2f}-{e.end:6.2f} [{e.stream_label}/{e.speaker_label}] {e.text}" for _, e in finals]
    return "finals:\n" + "\n".join(lines)
