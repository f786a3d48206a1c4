"""`PocketsphinxStream`: one live leg on a decoder process (the SttStream of this provider).

feed() hands the block to the worker's pipe (an asyncio transport write: it never blocks) and counts it; the
worker reports how much it has decoded, so `backlog_s` is the audio fed and not decoded yet. Results arrive
through the worker's reader task into a queue that `async for` drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np

from siprec.stt.provider import StreamParams, SttError, Transcript
from siprec_stt_pocketsphinx import wire
from siprec_stt_pocketsphinx.pool import Worker, WorkerPool

log = logging.getLogger("siprec.stt.pocketsphinx")


class _End:
    """Queue marker: no more results (error None) or the stream failed (error says why)."""

    def __init__(self, error: str | None) -> None:
        self.error = error


class PocketsphinxStream:
    def __init__(self, pool: WorkerPool, params: StreamParams, *, max_backlog_s: float | None) -> None:
        self.params = params
        self._rate = params.sample_rate
        self._max_backlog_s = max_backlog_s
        self._queue: asyncio.Queue[Transcript | _End] = asyncio.Queue()
        self._fed = 0  # samples sent to the worker
        self._done = 0  # samples the worker has decoded
        self._progress = asyncio.Event()
        self._finished = asyncio.Event()  # the worker will say nothing more about this stream
        self._closing = False
        self._error: str | None = None
        self._worker: Worker
        self._worker, self._sid = pool.open(self, partials=params.partials, language=params.language)
        log.debug(
            "stream %d on pocketsphinx worker %d (%s)",
            self._sid,
            self._worker.pid,
            params.stream_label,
            extra={"call_id": params.call_id},
        )

    @property
    def backlog_s(self) -> float:
        """Seconds of audio fed and not decoded yet."""
        return (self._fed - self._done) / self._rate

    def feed(self, pcm: np.ndarray, timestamp: float) -> None:
        if self._error is not None:
            raise SttError(self._error)
        if self._closing:
            raise SttError("feed() after close()")
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError(
                f"feed() takes a 1-D int16 numpy array (got {type(pcm).__name__} "
                f"{getattr(pcm, 'dtype', '')} {getattr(pcm, 'shape', '')})"
            )
        if not len(pcm):
            return
        self._worker.send((wire.AUDIO, self._sid, pcm.astype("<i2", copy=False).tobytes(), float(timestamp)))
        self._fed += len(pcm)
        if self._max_backlog_s is not None and self.backlog_s > self._max_backlog_s:
            backlog = self.backlog_s
            self._drop(f"decoding is {backlog:.1f} s behind (max_backlog_s {self._max_backlog_s:g})")
            raise SttError(self._error or "")

    async def wait_backlog(self, max_s: float) -> None:
        """Until at most `max_s` seconds of fed audio wait to be decoded (or the stream has failed). The worker
        reports progress every 0.1 s of audio, so `max_s` below that may wait for more audio to be fed."""
        while self.backlog_s > max_s and self._error is None and not self._finished.is_set():
            self._progress.clear()
            await self._progress.wait()

    def __aiter__(self) -> PocketsphinxStream:
        return self

    async def __anext__(self) -> Transcript:
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # later calls end the same way
            if item.error is not None:
                raise SttError(item.error)
            raise StopAsyncIteration
        return item

    async def close(self) -> None:
        """Finish the open utterance (its final is the last result) and end the iteration."""
        if not self._closing and self._error is None:
            self._closing = True
            try:
                self._worker.send((wire.CLOSE, self._sid))
            except SttError as exc:
                self.on_error(str(exc))
        await self._finished.wait()
        if self._error is not None:
            raise SttError(self._error)

    # ---------------------------------------------------------------- from the worker (StreamSink)

    def on_result(self, result: Transcript) -> None:
        self._queue.put_nowait(result)

    def on_done(self, samples: int) -> None:
        self._done = samples
        self._progress.set()

    def on_closed(self, samples: int) -> None:
        self.on_done(samples)
        self._queue.put_nowait(_End(None))
        self._finished.set()

    def on_error(self, message: str) -> None:
        if self._error is not None:
            return
        self._error = message
        log.warning("stream %d failed: %s", self._sid, message, extra={"call_id": self.params.call_id})
        self._queue.put_nowait(_End(message))
        self._progress.set()
        self._finished.set()

    def abort(self, why: str = "aborted") -> None:
        """Give up on the stream now, without its last final (a cancelled job): the results end with `why`."""
        if self._error is None and not self._finished.is_set():
            self._drop(why)

    def _drop(self, why: str) -> None:
        """Give up on the stream here: the worker forgets it, its results end with the error."""
        self._worker.streams.pop(self._sid, None)
        with contextlib.suppress(SttError):  # a worker that is gone has nothing to forget
            self._worker.send((wire.DROP, self._sid))
        self.on_error(why)
