"""`PocketsphinxProvider`: offline streaming speech to text with native partials (entry point `pocketsphinx`).

One pocketsphinx Decoder per stream, hosted by `workers` decoder processes (pool.py, worker.py); the en-us model
in the pocketsphinx wheel unless hmm / lm / dictionary point elsewhere. Input is 16 kHz (the pipeline resamples).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import soundfile
import soxr

from siprec.stt.provider import Capabilities, StreamParams, SttError, Transcript
from siprec_stt_pocketsphinx.config import SAMPLE_RATE, PocketsphinxConfig
from siprec_stt_pocketsphinx.pool import WorkerPool
from siprec_stt_pocketsphinx.stream import PocketsphinxStream

FILE_BLOCK_S = 1.0  # transcribe_file feeds blocks of this length ...
FILE_AHEAD_S = 10.0  # ... and keeps at most this much audio waiting in the decoder process


class PocketsphinxProvider:
    name: ClassVar[str] = "pocketsphinx"
    capabilities: ClassVar[Capabilities] = Capabilities(
        streaming=True,
        partials=True,
        word_timestamps=True,
        languages=("en",),  # the wheel's model; a model of another language needs its own provider entry
        sample_rates=(SAMPLE_RATE,),
    )
    config_model: ClassVar[type[PocketsphinxConfig]] = PocketsphinxConfig

    def __init__(self, config: PocketsphinxConfig | None = None) -> None:
        self.config = config if config is not None else PocketsphinxConfig()
        self._pool: WorkerPool | None = None

    @property
    def workers(self) -> int:
        return self.config.workers or os.cpu_count() or 1

    async def start(self) -> None:
        """Start the decoder processes; SttError naming the problem if the model or options are unusable."""
        if self._pool is not None:
            return
        pool = WorkerPool(self.config.decoder_settings(), size=self.workers, nice=self.config.worker_nice)
        await pool.start()
        self._pool = pool

    def open_stream(self, params: StreamParams) -> PocketsphinxStream:
        return self._open(params, max_backlog_s=self.config.max_backlog_s)

    async def transcribe_file(self, path: Path, *, language: str) -> Sequence[Transcript]:
        """Finals for an audio file (any rate soundfile reads, channels mixed), times from its start."""
        pcm = await asyncio.to_thread(read_16k, Path(path))
        stream = self._open(
            StreamParams(
                sample_rate=SAMPLE_RATE, language=language, partials=False, stream_label=Path(path).name
            ),
            max_backlog_s=None,
        )
        block = int(FILE_BLOCK_S * SAMPLE_RATE)
        try:
            for i in range(0, len(pcm), block):
                stream.feed(pcm[i : i + block], i / SAMPLE_RATE)
                await stream.wait_backlog(FILE_AHEAD_S)
            await stream.close()
        except BaseException:  # cancelled, or the stream failed: the decoder process drops what is left
            stream.abort("transcribe_file did not finish")
            raise
        return [result async for result in stream if result.is_final]

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _open(self, params: StreamParams, *, max_backlog_s: float | None) -> PocketsphinxStream:
        if self._pool is None:
            raise SttError("the pocketsphinx provider is not started")
        if params.sample_rate not in self.capabilities.sample_rates:
            raise SttError(f"pocketsphinx takes {SAMPLE_RATE} Hz audio (got {params.sample_rate})")
        if not self.capabilities.supports_language(params.language):
            raise SttError(f"the pocketsphinx model is English (en); {params.language!r} was asked")
        return PocketsphinxStream(self._pool, params, max_backlog_s=max_backlog_s)


def read_16k(path: Path) -> np.ndarray:
    """The file as 16 kHz int16 mono (channels averaged, soxr high quality resampling)."""
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as exc:  # soundfile.LibsndfileError is a RuntimeError
        raise SttError(f"cannot read {path}: {exc}") from None
    mono = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    return np.clip(np.round(mono * 32768.0), -32768, 32767).astype(np.int16)
