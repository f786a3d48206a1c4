"""Opus (RFC 7587): real decoding through libopus (or FFmpeg's native decoder) in PyAV, 48 kHz mono.

SDP always says opus/48000/2; the decoder is opened mono, so libopus downmixes stereo packets itself
(the native FFmpeg decoder's stereo output is averaged in `to_mono_int16`). Packets are self-delimited
units, so they are not concatenable. Durations come from the TOC byte (RFC 6716 3.1), which lets the jitter
buffer position packets without decoding them.
"""

from __future__ import annotations

import numpy as np

from rtp.codecs._av import AvDecoder, AvEncoder, codec_available
from rtp.codecs.base import silence

__all__ = ["OpusDecoder", "OpusEncoder", "opus_packet_samples"]

# Frame length in 48 kHz samples for each TOC config (SILK 10/20/40/60 ms, hybrid 10/20, CELT 2.5/5/10/20).
_FRAME_SAMPLES = [480, 960, 1920, 2880] * 3 + [480, 960] * 2 + [120, 240, 480, 960] * 4


def opus_packet_samples(payload: bytes | bytearray | memoryview) -> int:
    """48 kHz samples in one Opus packet; 0 for an empty or malformed packet."""
    if not payload:
        return 0
    toc = payload[0]
    code = toc & 3
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        if len(payload) < 2:
            return 0
        frames = payload[1] & 0x3F
    return frames * _FRAME_SAMPLES[toc >> 3]


def _decoder_name() -> str:
    return "libopus" if codec_available("libopus") else "opus"


class OpusDecoder:
    sample_rate = 48000
    clock_rate = 48000
    concatenable = False

    def __init__(self) -> None:
        self._dec = AvDecoder(_decoder_name(), 48000)

    def decode(self, payload: bytes | bytearray | memoryview) -> np.ndarray:
        pcm = self._dec.decode(payload)
        return pcm if pcm is not None else self.conceal(opus_packet_samples(payload) or 960)

    def conceal(self, samples: int) -> np.ndarray:
        return silence(samples)

    def duration(self, payload: bytes | bytearray | memoryview) -> int:
        return opus_packet_samples(payload)


class OpusEncoder(AvEncoder):
    """48 kHz mono int16 in, one packet per `packet_ms` out (libopus, VoIP mode)."""

    def __init__(self, packet_ms: int = 20, bit_rate: int = 32000) -> None:
        super().__init__("libopus", 48000, 48 * packet_ms, bit_rate=bit_rate, application="voip",
                         frame_duration=packet_ms)
