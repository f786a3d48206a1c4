"""The speech-to-text plugin API (entry-point group `siprec.stt`).

A provider distribution registers its provider class under the group, the entry-point name being the provider
name used in `stt.provider` / `stt.fallback`:

    [options.entry_points]
    siprec.stt =
        whisper = siprec_stt_whisper:WhisperProvider

The server builds one provider object per process (`provider_class(config)`, config being an instance of its
`config_model` filled from the `stt.<name>` section), awaits `start()` once (load models there, off the event
loop), then opens one `SttStream` per live leg. Streams are fed 16-bit mono PCM at one of the provider's input
rates (the pipeline resamples) and yield `Transcript` results; `close()` on the stream flushes the open utterance.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict

ENTRY_POINT_GROUP = "siprec.stt"


class SttError(Exception):
    """A provider could not do what was asked (model missing, service refused); the message says why."""


class ProviderConfig(BaseModel):
    """Base of every provider's config model (`stt.<name>` in the YAML): unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Capabilities:
    streaming: bool  # results arrive while audio is still being fed (not only at close)
    partials: bool  # can yield non-final results for the open utterance
    word_timestamps: bool
    languages: tuple[str, ...]  # BCP-47 tags or prefixes it understands ("en" covers "en-US"); ("*",) = any
    sample_rates: tuple[int, ...]  # input rates accepted by feed(); the first is preferred

    def supports_language(self, language: str) -> bool:
        lang = language.lower()
        return any(c == "*" or lang == c.lower() or lang.startswith(c.lower() + "-") for c in self.languages)

    def input_rate(self, source_rate: int) -> int:
        """The rate the pipeline should feed: the source rate when accepted, else the preferred one."""
        return source_rate if source_rate in self.sample_rates else self.sample_rates[0]


@dataclass(frozen=True)
class StreamParams:
    sample_rate: int  # of the PCM given to feed(); always one of capabilities.sample_rates
    language: str  # e.g. "en-US"
    partials: bool  # the user wants partial results (a provider without partials ignores it)
    call_id: str = ""  # for the provider's own logging only
    stream_label: str | None = None


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float
    confidence: float | None = None


@dataclass(frozen=True)
class Transcript:
    """One result. Times are on the clock of the `timestamp`s given to feed() (seconds from session start):
    a provider maps sample offsets to the timestamp of the block they came from, so gaps between blocks
    (dropped pauses, late legs) never shift the words."""

    text: str
    is_final: bool
    start: float
    end: float
    confidence: float | None = None
    words: tuple[Word, ...] = field(default=())
    language: str | None = None


@runtime_checkable
class SttStream(Protocol):
    """One live leg. Optional: a `backlog_s` attribute or property (float) saying how many seconds of fed audio
    the stream has not processed yet; the pipeline adds it to its own queue to see a provider falling behind
    real time (read with `stream_backlog_s`). Without it only the pipeline's queue is measured."""

    def feed(self, pcm: np.ndarray, timestamp: float) -> None:
        """Queue int16 mono samples whose first sample is at `timestamp`. Never blocks, never awaits: a stream
        does its work in tasks or worker threads. Raises SttError once the stream has failed."""
        ...

    def __aiter__(self) -> AsyncIterator[Transcript]:
        """Results in order; iteration ends after close() once the last final has been yielded."""
        ...

    async def close(self) -> None:
        """No more audio: finish the open utterance (a final result) and end the iteration."""
        ...


@runtime_checkable
class SttProvider(Protocol):
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    config_model: ClassVar[type[ProviderConfig]]

    async def start(self) -> None:
        """Load models / check credentials. Called once before the first stream; may take seconds."""
        ...

    def open_stream(self, params: StreamParams) -> SttStream: ...

    async def transcribe_file(self, path: Path, *, language: str) -> Sequence[Transcript]:
        """Batch work (post-call jobs): final results for a WAV file, times from the start of the file."""
        ...

    async def close(self) -> None:
        """Release models, threads and connections; every stream is closed before this is called."""
        ...


def stream_backlog_s(stream: SttStream) -> float:
    """The stream's optional `backlog_s` (seconds of audio fed and not processed yet); 0 when it has none."""
    try:
        value = float(getattr(stream, "backlog_s", 0.0))
    except (TypeError, ValueError):
        return 0.0
    return value if value > 0 else 0.0


def describe(provider_class: type[Any]) -> dict[str, Any]:
    """What `siprec stt list` and /api/stt/stats show about an installed provider."""
    caps: Capabilities = provider_class.capabilities
    return {
        "name": provider_class.name,
        "streaming": caps.streaming,
        "partials": caps.partials,
        "word_timestamps": caps.word_timestamps,
        "languages": list(caps.languages),
        "sample_rates": list(caps.sample_rates),
        "config": sorted(provider_class.config_model.model_fields),
    }
