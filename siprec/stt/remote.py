"""`RemoteStream`: the SttStream half every provider backed by a network service shares (deepgram, google).

feed() never waits: the block goes on a SampleClock (the service counts time in seconds of audio it received) and
its bytes (16-bit little-endian) on a queue. One task runs the provider's `_session()`, which takes the audio with
`_take_audio()`, talks to the service and hands each result to `_emit()`. The session raising SttError (a refused
connection, a close code, an RPC error) - or anything else, or a cancellation - ends the iteration with that
SttError and makes later feed() calls raise it: the pipeline's cue to hand the leg to a fallback provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from siprec.stt.provider import StreamParams, SttError, Transcript
from siprec.stt.sampleclock import SampleClock

__all__ = ["RemoteStream"]

log = logging.getLogger("siprec.stt")

_END = object()


class RemoteStream:
    service = "speech service"  # named in errors and logs

    def __init__(self, params: StreamParams) -> None:
        self.params = params
        self.rate = params.sample_rate
        self.clock = SampleClock(self.rate)
        self._audio: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued_samples = 0
        self._results: asyncio.Queue[Any] = asyncio.Queue()
        self._failed: SttError | None = None
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"{self.service}-{params.call_id}-{params.stream_label}"
        )

    # --- the pipeline's side ----------------------------------------------------------------------------------
    @property
    def backlog_s(self) -> float:
        """Audio fed and not sent yet (connecting, or a connection slower than real time)."""
        return self._queued_samples / self.rate

    def feed(self, pcm: np.ndarray, timestamp: float) -> None:
        if self._failed is not None:
            raise self._failed
        if self._closing or not len(pcm):
            return
        self.clock.note(timestamp, len(pcm))
        self._audio.put_nowait(np.asarray(pcm, dtype="<i2").tobytes())
        self._queued_samples += len(pcm)

    async def __aiter__(self) -> AsyncIterator[Transcript]:
        while True:
            item = await self._results.get()
            if item is _END:
                return
            if isinstance(item, SttError):
                raise item
            yield item

    async def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._audio.put_nowait(None)
        with contextlib.suppress(Exception):  # a failure reaches the reader of the results
            await asyncio.shield(self._task)

    def abort(self) -> None:
        """Drop the connection without waiting for the last results (cancellation)."""
        self._task.cancel()

    # --- for the provider's session ---------------------------------------------------------------------------
    async def _session(self) -> None:
        raise NotImplementedError

    async def _take_audio(self, timeout: float | None = None) -> bytes | None:
        """The next queued audio, None once the leg closed; TimeoutError when nothing came within `timeout`."""
        chunk = await (asyncio.wait_for(self._audio.get(), timeout) if timeout is not None else self._audio.get())
        if chunk is not None:
            self._queued_samples -= len(chunk) // 2
        return chunk

    def _time(self, seconds: float, base: int = 0) -> float:
        """Seconds of audio counted from sample `base` of the stream, as a feed() timestamp."""
        return self.clock.at(base + round(seconds * self.rate))

    def _emit(self, transcript: Transcript) -> None:
        self._results.put_nowait(transcript)

    # --- internals ---------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            await self._session()
        except SttError as exc:
            self._fail(exc)
        except asyncio.CancelledError:
            self._fail(SttError("stream aborted"))
            raise
        except Exception as exc:  # a library error or a bug: never a silent leg
            self._fail(SttError(f"{self.service}: {type(exc).__name__}: {exc}"))
        else:
            self._results.put_nowait(_END)

    def _fail(self, exc: SttError) -> None:
        if self._failed is None:
            self._failed = exc
            log.warning(
                "%s stream of leg %s failed: %s", self.service, self.params.stream_label, exc,
                extra={"call_id": self.params.call_id},
            )  # fmt: skip
        self._results.put_nowait(exc)
