"""Deepgram's wire format, without I/O: the query strings, the messages of the streaming API and the pre-recorded
response, turned into `Transcript`s.

Streaming (GET /v1/listen upgraded to a WebSocket, `Authorization: Token <key>`): the client sends binary frames of
raw audio (`encoding=linear16`, little-endian 16-bit, at `sample_rate`, one channel) and the text frames
`{"type": "KeepAlive"}` (while it has no audio to send) and `{"type": "CloseStream"}` (no more audio: the server
sends what it still has, then closes). The server sends text frames: `Results` (one alternative per channel, with
`is_final` and `speech_final`, times in seconds of the audio received on this connection), `Metadata`, and, when
asked for, `UtteranceEnd` and `SpeechStarted`. Errors end the connection with a close code and a reason (e.g. 1011
NET-0001: no audio and no KeepAlive for 10 s).

Pre-recorded (POST /v1/listen with the file as the body): `results.utterances` (with `utterances=true`) holds one
entry per utterance with its transcript, start, end and words.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from siprec.stt.provider import Transcript, Word

__all__ = [
    "KEEPALIVE",
    "CLOSE_STREAM",
    "ServerMessage",
    "WireError",
    "batch_query",
    "file_transcripts",
    "listen_query",
    "parse_server_message",
    "stream_url",
]

KEEPALIVE = json.dumps({"type": "KeepAlive"})
CLOSE_STREAM = json.dumps({"type": "CloseStream"})


class WireError(ValueError):
    """A message that is not what Deepgram sends."""


def _flag(value: bool) -> str:
    return "true" if value else "false"


def stream_url(base: str) -> str:
    scheme, rest = base.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/v1/listen"


def listen_query(
    *, model: str, language: str, sample_rate: int, partials: bool, punctuate: bool, smart_format: bool,
    endpointing_ms: int,
) -> dict[str, str]:  # fmt: skip
    return {
        "model": model,
        "language": language,
        "encoding": "linear16",
        "sample_rate": str(sample_rate),
        "channels": "1",
        "interim_results": _flag(partials),
        "punctuate": _flag(punctuate),
        "smart_format": _flag(smart_format),
        "endpointing": str(endpointing_ms),
    }


def batch_query(*, model: str, language: str, punctuate: bool, smart_format: bool) -> dict[str, str]:
    return {
        "model": model,
        "language": language,
        "punctuate": _flag(punctuate),
        "smart_format": _flag(smart_format),
        "utterances": "true",
    }


@dataclass(frozen=True)
class ServerMessage:
    kind: str  # Results | Metadata | UtteranceEnd | SpeechStarted | any other type Deepgram adds
    transcript: Transcript | None = None  # for Results
    request_id: str | None = None  # for Metadata


def _words(items: Any, to_time: Callable[[float], float]) -> tuple[Word, ...]:
    words = []
    for w in items or ():
        text = w.get("punctuated_word") or w.get("word") or ""
        words.append(Word(str(text), to_time(float(w["start"])), to_time(float(w["end"])), _confidence(w)))
    return tuple(words)


def _confidence(item: Mapping[str, Any]) -> float | None:
    value = item.get("confidence")
    return float(value) if isinstance(value, int | float) else None


def parse_server_message(text: str, to_time: Callable[[float], float]) -> ServerMessage:
    """One text frame of the stream. `to_time` maps seconds of audio on this connection to feed() timestamps."""
    try:
        data = json.loads(text)
        kind = str(data["type"])
        if kind == "Metadata":
            return ServerMessage(kind, request_id=str(data.get("request_id") or "") or None)
        if kind != "Results":
            return ServerMessage(kind)
        alternative = data["channel"]["alternatives"][0] if data["channel"]["alternatives"] else {}
        start, duration = float(data["start"]), float(data["duration"])
        words = _words(alternative.get("words"), to_time)
        transcript = Transcript(
            text=str(alternative.get("transcript") or ""),
            is_final=bool(data.get("is_final")),
            # the words' span when there are words: a final's start/duration also cover the silence around them
            start=words[0].start if words else to_time(start),
            end=words[-1].end if words else to_time(start + duration),
            confidence=_confidence(alternative),
            words=words,
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise WireError(f"not a Deepgram message ({type(exc).__name__}: {exc}): {text[:200]!r}") from None
    return ServerMessage(kind, transcript=transcript)


def file_transcripts(body: Mapping[str, Any]) -> list[Transcript]:
    """Finals of a pre-recorded response (`utterances=true`), times from the start of the file."""
    try:
        results = body["results"]
        utterances = results.get("utterances")
        if utterances is None:  # without utterances: the whole file as one result per channel
            utterances = [
                {**alt, "start": alt["words"][0]["start"], "end": alt["words"][-1]["end"]}
                for channel in results["channels"]
                for alt in channel["alternatives"][:1]
                if alt.get("words")
            ]
        out = [
            Transcript(
                text=str(u.get("transcript") or ""), is_final=True, start=float(u["start"]), end=float(u["end"]),
                confidence=_confidence(u), words=_words(u.get("words"), float),
            )  # fmt: skip
            for u in utterances
        ]
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise WireError(f"not a Deepgram transcription ({type(exc).__name__}: {exc})") from None
    return sorted(out, key=lambda t: t.start)
