"""Segments and transcript events from provider results; transcript.json written atomically and sorted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from siprec.stt.provider import Transcript, Word
from siprec.stt.transcript import LegIdentity, segment, shift, to_event, write_transcript

WHO = LegIdentity("call-1", "sess-1", 1, "2", "Bob", "p-bob")


def numpy_result(start: float, text: str = " hello  world ") -> Transcript:
    # engines hand out numpy scalars: they must come out as plain JSON numbers
    words = (Word("hello", np.float64(start), np.float64(start + 0.4), np.float32(0.9)),)
    return Transcript(text, True, np.float64(start), np.float64(start + 1.23456), np.float32(0.87654), words)


def test_event_from_numpy_result_is_json() -> None:
    event = to_event(numpy_result(2.0), WHO, "whisper", "en-US")
    payload = json.loads(event.to_json())["payload"]
    assert payload["text"] == "hello  world" and payload["start"] == 2.0 and payload["end"] == 3.235
    assert payload["confidence"] == 0.8765 and payload["language"] == "en-US"
    assert payload["words"] == [{"text": "hello", "start": 2.0, "end": 2.4, "confidence": 0.9}]
    assert payload["metadata"] == {"session_id": "sess-1", "leg": 1, "participant_id": "p-bob"}
    assert event.routing_key == "transcript.final"


def test_shift_maps_every_time() -> None:
    moved = shift(Transcript("x", True, 1.0, 2.0, None, (Word("x", 1.0, 1.5),)), lambda t: t + 10)
    assert (moved.start, moved.end, moved.words[0].start, moved.words[0].end) == (11.0, 12.0, 11.0, 11.5)


def test_write_transcript_sorted_and_atomic(tmp_path: Path) -> None:
    segs = [segment(numpy_result(t), WHO, "whisper") for t in (5.0, 1.0, 3.0)]
    other = segment(
        Transcript("same time", True, 1.0, 1.1), LegIdentity("call-1", "sess-1", 0, "1", "Al", "p"), "x"
    )
    (tmp_path / ".transcript.json.tmp").write_text("left over by a crash")
    path = write_transcript(tmp_path, call_id="call-1", session_id="sess-1", provider="whisper", language="en-US",
                            segments=[*segs, other])  # fmt: skip
    data = json.loads(path.read_text())
    assert [(s["start"], s["leg"]) for s in data["segments"]] == [(1.0, 0), (1.0, 1), (3.0, 1), (5.0, 1)]
    assert list(data) == ["call_id", "session_id", "provider", "language", "segments"]
    assert [p.name for p in tmp_path.iterdir()] == ["transcript.json"]  # the temp file became the transcript
