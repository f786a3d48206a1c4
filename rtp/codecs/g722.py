"""G.722 (RFC 3551 4.5.2): 16 kHz wideband audio on an 8000 Hz RTP clock, via FFmpeg's decoder in PyAV.

One payload byte carries two 16 kHz samples, i.e. one RTP clock tick. The ADPCM state lives in the FFmpeg
context across packets, so the stream decodes the same packet by packet as in one go; payloads are
concatenable.
"""

from __future__ import annotations

import numpy as np

from rtp.codecs._av import AvDecoder, AvEncoder
from rtp.codecs.base import silence

__all__ = ["G722Decoder", "G722Encoder"]


class G722Decoder:
    sample_rate = 16000
    concatenable = True

    def __init__(self, clock_rate: int = 8000) -> None:
        # Some SDPs wrongly say G722/16000; timestamps then advance two ticks per byte.
        self.clock_rate = clock_rate
        self._dec = AvDecoder("g722", 16000)

    def decode(self, payload: bytes | bytearray | memoryview) -> np.ndarray:
        pcm = self._dec.decode(payload)
        return pcm if pcm is not None else self.conceal(2 * len(payload))

    def conceal(self, samples: int) -> np.ndarray:
        return silence(samples)

    def duration(self, payload: bytes | bytearray | memoryview) -> int:
        return len(payload) * self.clock_rate // 8000


class G722Encoder(AvEncoder):
    """16 kHz mono int16 in, one 20 ms (160-byte) payload per 320 samples out."""

    def __init__(self, packet_ms: int = 20) -> None:
        super().__init__("g722", 16000, 16 * packet_ms)
