"""Final segments of a session, the TranscriptEvent built from a provider result, and transcript.json.

transcript.json (beside the recording, written atomically once the session's live streams and post-call jobs are
done): {call_id, session_id, provider, language, segments: [{leg, stream_label, speaker_label, participant_id,
text, start, end, confidence, words, provider}]} with segments sorted by start (then leg); times in seconds from
the session start, words as {text, start, end, confidence}.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siprec.events.types import TranscriptEvent
from siprec.stt.provider import Transcript, Word

__all__ = ["TRANSCRIPT_FILE", "LegIdentity", "Segment", "shift", "to_event", "write_transcript"]

TRANSCRIPT_FILE = "transcript.json"


@dataclass
class LegIdentity:
    """Who a leg's words belong to; the speaker can change mid-call (set_speaker)."""

    call_id: str
    session_id: str
    leg: int
    stream_label: str | None
    speaker_label: str | None
    participant_id: str | None


@dataclass(frozen=True)
class Segment:
    leg: int
    stream_label: str | None
    speaker_label: str | None
    participant_id: str | None
    text: str
    start: float
    end: float
    confidence: float | None
    words: tuple[dict[str, Any], ...]
    provider: str

    def to_json(self) -> dict[str, Any]:
        return {
            "leg": self.leg,
            "stream_label": self.stream_label,
            "speaker_label": self.speaker_label,
            "participant_id": self.participant_id,
            "text": self.text,
            "start": _time(self.start),
            "end": _time(self.end),
            "confidence": self.confidence,
            "words": list(self.words),
            "provider": self.provider,
        }


def _time(t: float) -> float:
    return round(float(t), 3)  # plain floats: engines hand out numpy scalars, which JSON does not take


def _confidence(c: float | None) -> float | None:
    return None if c is None else round(float(c), 4)


def _word(w: Word) -> dict[str, Any]:
    return {
        "text": str(w.text).strip(),
        "start": _time(w.start),
        "end": _time(w.end),
        "confidence": _confidence(w.confidence),
    }


def segment(result: Transcript, who: LegIdentity, provider: str) -> Segment:
    return Segment(
        leg=who.leg,
        stream_label=who.stream_label,
        speaker_label=who.speaker_label,
        participant_id=who.participant_id,
        text=result.text.strip(),
        start=float(result.start),
        end=float(result.end),
        confidence=_confidence(result.confidence),
        words=tuple(_word(w) for w in result.words),
        provider=provider,
    )


def to_event(result: Transcript, who: LegIdentity, provider: str, language: str) -> TranscriptEvent:
    return TranscriptEvent(
        call_id=who.call_id,
        stream_label=who.stream_label,
        speaker_label=who.speaker_label,
        text=result.text.strip(),
        is_final=result.is_final,
        start=_time(result.start),
        end=_time(result.end),
        confidence=_confidence(result.confidence),
        words=tuple(_word(w) for w in result.words),
        provider=provider,
        language=result.language or language,
        metadata={"session_id": who.session_id, "leg": who.leg, "participant_id": who.participant_id},
    )


def shift(result: Transcript, to_session: Callable[[float], float]) -> Transcript:
    """A result with every time mapped through `to_session` (file time -> session time)."""
    return Transcript(
        text=result.text,
        is_final=result.is_final,
        start=to_session(result.start),
        end=to_session(result.end),
        confidence=result.confidence,
        words=tuple(Word(w.text, to_session(w.start), to_session(w.end), w.confidence) for w in result.words),
        language=result.language,
    )


def write_transcript(
    folder: Path, *, call_id: str, session_id: str, provider: str, language: str, segments: Iterable[Segment]
) -> Path:
    """Replace <folder>/transcript.json atomically (temp file + rename): a reader never sees half a file."""
    ordered = sorted(segments, key=lambda s: (round(s.start, 3), s.leg, round(s.end, 3)))
    data = {
        "call_id": call_id,
        "session_id": session_id,
        "provider": provider,
        "language": language,
        "segments": [s.to_json() for s in ordered],
    }
    path = folder / TRANSCRIPT_FILE
    tmp = folder / f".{TRANSCRIPT_FILE}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
