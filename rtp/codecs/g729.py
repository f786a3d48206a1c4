"""G.729 / G.729A (RFC 3551 4.5.6) through FFmpeg's decoder in PyAV, when the local FFmpeg has one.

A payload is N 10-byte frames (80 samples each) optionally followed by one 2-byte Annex B SID frame.
FFmpeg does not decode SID frames, so they (and anything it rejects) become comfort silence of the right length.
"""

from __future__ import annotations

import functools

import numpy as np

from rtp.codecs._av import AvDecoder, codec_available
from rtp.codecs.base import silence

__all__ = ["G729Decoder", "available"]


@functools.cache
def available() -> bool:
    return codec_available("g729")


class G729Decoder:
    sample_rate = 8000
    clock_rate = 8000
    concatenable = False  # the SID tail makes joined payloads ambiguous

    def __init__(self) -> None:
        self._dec = AvDecoder("g729", 8000)

    def decode(self, payload: bytes | bytearray | memoryview) -> np.ndarray:
        voiced = len(payload) - len(payload) % 10
        parts = []
        if voiced:
            pcm = self._dec.decode(payload[:voiced])
            parts.append(pcm if pcm is not None else self.conceal(voiced * 8))
        if len(payload) % 10:
            parts.append(self.conceal(80))
        if not parts:
            return silence(0)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def conceal(self, samples: int) -> np.ndarray:
        return silence(samples)

    def duration(self, payload: bytes | bytearray | memoryview) -> int:
        return len(payload) // 10 * 80 + (80 if len(payload) % 10 else 0)
