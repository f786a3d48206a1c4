"""L16 (RFC 3551 4.5.11): linear 16-bit PCM in network byte order, any clock rate, downmixed to mono."""

from __future__ import annotations

import numpy as np

from rtp.codecs.base import silence

__all__ = ["L16Decoder", "l16_encode"]

_BE16 = np.dtype(">i2")


class L16Decoder:
    concatenable = True

    def __init__(self, clock_rate: int, channels: int = 1) -> None:
        self.clock_rate = clock_rate
        self.sample_rate = clock_rate
        self.channels = channels
        self._frame = 2 * channels

    def decode(self, payload: bytes | bytearray | memoryview) -> np.ndarray:
        usable = len(payload) - len(payload) % self._frame  # a torn trailing sample is dropped, not misread
        pcm = np.frombuffer(payload, dtype=_BE16, count=usable // 2)
        if self.channels == 1:
            return pcm.astype(np.int16)
        return pcm.reshape(-1, self.channels).mean(axis=1).astype(np.int16)

    def conceal(self, samples: int) -> np.ndarray:
        return silence(samples)

    def duration(self, payload: bytes | bytearray | memoryview) -> int:
        return len(payload) // self._frame


def l16_encode(pcm: np.ndarray) -> bytes:
    """Interleaved int16 samples to network byte order."""
    return np.asarray(pcm, dtype=np.int16).astype(_BE16).tobytes()
