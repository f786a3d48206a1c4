"""WhisperProvider: the `whisper` entry point of `siprec.stt`. One model per process, shared by every stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from siprec.stt.provider import Capabilities, ProviderConfig, StreamParams, SttError, Transcript

from .audio_file import FileUtterances
from .config import WhisperConfig
from .model import (
    BUNDLED_DISTRIBUTION,
    BUNDLED_NAME,
    WhisperEngine,
    bundled_model_dir,
    check_model_dir,
    verify_bundled_model,
)
from .pool import DecodePool, Priority
from .stream import WhisperStream, make_segmenter, to_transcript
from .vad import EnergyVad, FrameVad, SileroModel, SileroVad

log = logging.getLogger(__name__)


class WhisperProvider:
    name: ClassVar[str] = "whisper"
    capabilities: ClassVar[Capabilities] = Capabilities(
        streaming=True,
        partials=True,
        word_timestamps=True,
        languages=("en",),  # the bundled model is English-only
        sample_rates=(16000,),
    )
    config_model: ClassVar[type[ProviderConfig]] = WhisperConfig

    def __init__(self, config: WhisperConfig | None = None) -> None:
        self.config = config if config is not None else WhisperConfig()
        self._engine: WhisperEngine | None = None
        self._silero: SileroModel | None = None
        self._pool: DecodePool | None = None
        self._streams: set[WhisperStream] = set()
        self._starting: asyncio.Future[None] | None = None
        self.model_loads = 0
        self.model_description = ""

    async def start(self) -> None:
        """Check and load the model in a worker thread (about a second). Concurrent and repeated calls share it."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        self._pool = DecodePool(self.config.workers)
        try:
            self._engine, self._silero = await self._pool.submit(self._load, Priority.FINAL)
        except BaseException:
            await self._pool.close()
            self._pool = None
            self._starting = None  # a later start() tries again
            raise

    def _load(self) -> tuple[WhisperEngine, SileroModel | None]:
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every decode at INFO
        if self.config.model_path:
            model_dir = Path(self.config.model_path).expanduser()
            check_model_dir(model_dir)
            self.model_description = str(model_dir)
        else:
            model_dir = bundled_model_dir()
            verify_bundled_model(model_dir)
            self.model_description = f"{BUNDLED_NAME} ({BUNDLED_DISTRIBUTION}, sha256 verified)"
        engine = WhisperEngine(model_dir, self.config)
        silero = SileroModel() if self.config.vad == "silero" else None
        self.model_loads += 1
        log.info(
            "whisper: model %s loaded (%s, beam %d, %d worker(s) x %d thread(s), vad %s)",
            self.model_description, self.config.compute_type, self.config.beam_size,
            self.config.workers, self.config.threads, self.config.vad,
        )  # fmt: skip
        return engine, silero

    def _new_vad(self) -> FrameVad:
        return SileroVad(self._silero) if self._silero is not None else EnergyVad()

    def _running(self) -> tuple[WhisperEngine, DecodePool]:
        if self._engine is None or self._pool is None:
            raise SttError("the whisper provider is not started")
        return self._engine, self._pool

    def open_stream(self, params: StreamParams) -> WhisperStream:
        engine, pool = self._running()
        if params.sample_rate not in self.capabilities.sample_rates:
            raise SttError(f"whisper takes 16000 Hz audio, not {params.sample_rate} Hz")
        stream = WhisperStream(
            engine=engine,
            pool=pool,
            vad=self._new_vad(),
            config=self.config,
            params=params,
            on_closed=self._streams.discard,
        )
        self._streams.add(stream)
        return stream

    async def transcribe_file(self, path: Path, *, language: str) -> Sequence[Transcript]:
        """Final results for a WAV (or any libsndfile format) at any rate, times from the start of the file.
        Decoded at the lowest priority: live legs come first."""
        engine, pool = self._running()
        segmenter = make_segmenter(self._new_vad(), self.config, partials=False)
        reader = await pool.submit(lambda: FileUtterances(Path(path), segmenter), Priority.FILE)
        results: list[Transcript] = []
        try:
            while not reader.done:
                for utterance in await pool.submit(reader.read, Priority.FILE):
                    decoded = await pool.submit(
                        lambda u=utterance: engine.decode(u.samples, final=True, language=language),
                        Priority.FILE,
                    )
                    results.append(to_transcript(utterance, decoded))
        finally:
            if not reader.done:
                reader.close()
        return results

    def stats(self) -> dict[str, Any]:
        """For /api/stt/stats: the model, how often it was loaded (once per process), the decode pool."""
        pool = self._pool
        return {
            "model": self.model_description,
            "model_loads": self.model_loads,
            "streams": len(self._streams),
            "workers": self.config.workers,
            "jobs_running": pool.running if pool else 0,
            "jobs_queued": pool.queued if pool else 0,
            # by priority: final (the model load counts as one), partial, file
            "jobs_done": dict(pool.done) if pool else {},
            "backlog_s": round(sum(s.backlog_s for s in self._streams), 3),
        }

    async def close(self) -> None:
        """Stop streams still open (without flushing), the decode threads, and free the model."""
        for stream in list(self._streams):
            await stream.abort()
        if self._starting is not None and not self._starting.done():
            await asyncio.wait((self._starting,))
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self._silero = None
        self._starting = None
