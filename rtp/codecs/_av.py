"""Shared PyAV (FFmpeg) plumbing for the decoders and test encoders of G.722, Opus and G.729.

PyAV is imported lazily so `rtp.codecs` stays cheap to import. FFmpeg quirks handled here, once:
an empty packet means end-of-stream to FFmpeg (after which every decode fails), so empty payloads never reach
it; a failed decode returns None so the caller conceals, and a context stuck at EOF is recreated.
"""

from __future__ import annotations

import fractions
from typing import Any

import numpy as np

__all__ = ["AvDecoder", "AvEncoder", "codec_available", "to_mono_int16"]


def codec_available(name: str, mode: str = "r") -> bool:
    try:
        import av

        av.CodecContext.create(name, mode)
    except Exception:  # noqa: BLE001 - any failure means "not usable here"
        return False
    return True


def to_mono_int16(frame: Any) -> np.ndarray:
    """One decoded av.AudioFrame as mono int16, whatever its sample format and channel layout."""
    arr = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        mono = arr[0] if channels == 1 else arr.mean(axis=0)
    else:
        flat = arr.reshape(-1)
        mono = flat if channels == 1 else flat.reshape(-1, channels).mean(axis=1)
    if mono.dtype == np.int16:
        return mono
    if mono.dtype.kind == "f" and frame.format.name.startswith(("flt", "dbl")):
        mono = np.clip(np.rint(mono * 32768.0), -32768, 32767)
    return mono.astype(np.int16)


class AvDecoder:
    """A stateful FFmpeg decoder context that survives bad packets."""

    def __init__(self, codec: str, sample_rate: int, layout: str = "mono") -> None:
        self._codec = codec
        self._rate = sample_rate
        self._layout = layout
        self._ctx = self._open()

    def _open(self) -> Any:
        import av

        ctx = av.CodecContext.create(self._codec, "r")
        ctx.sample_rate = self._rate
        ctx.layout = self._layout
        return ctx

    def decode(self, payload: bytes | bytearray | memoryview) -> np.ndarray | None:
        """PCM for the payload, or None when FFmpeg rejects it (the caller conceals)."""
        import av

        if not payload:
            return np.zeros(0, dtype=np.int16)
        try:
            frames = self._ctx.decode(av.Packet(bytes(payload)))
        except av.error.EOFError:
            self._ctx = self._open()
            return None
        except (av.error.FFmpegError, ValueError):
            return None
        if not frames:
            return np.zeros(0, dtype=np.int16)
        parts = [to_mono_int16(f) for f in frames]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class AvEncoder:
    """Fixed-size frames of mono int16 PCM into packets (tests and the load generator)."""

    def __init__(self, codec: str, sample_rate: int, frame_samples: int, **options: Any) -> None:
        import av

        self._av = av
        ctx = av.CodecContext.create(codec, "w")
        ctx.sample_rate = sample_rate
        ctx.format = "s16"
        ctx.layout = "mono"
        ctx.time_base = fractions.Fraction(1, sample_rate)
        bit_rate = options.pop("bit_rate", None)
        if bit_rate:
            ctx.bit_rate = bit_rate
        if options:
            ctx.options = {k: str(v) for k, v in options.items()}
        ctx.open()
        self._ctx = ctx
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        self._pending = np.zeros(0, dtype=np.int16)
        self._pts = 0

    def encode(self, pcm: np.ndarray) -> list[bytes]:
        """Packets for every complete frame in `pcm` plus what was left over from the last call."""
        self._pending = np.concatenate([self._pending, np.asarray(pcm, dtype=np.int16)])
        packets: list[bytes] = []
        n = self.frame_samples
        while len(self._pending) >= n:
            chunk, self._pending = self._pending[:n], self._pending[n:]
            frame = self._av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = self.sample_rate
            frame.pts = self._pts
            self._pts += n
            packets.extend(bytes(p) for p in self._ctx.encode(frame))
        return packets

    def flush(self) -> list[bytes]:
        """Pad the last partial frame with silence and drain the encoder."""
        packets: list[bytes] = []
        if len(self._pending):
            pad = np.zeros(self.frame_samples - len(self._pending), dtype=np.int16)
            packets = self.encode(pad)
        packets.extend(bytes(p) for p in self._ctx.encode(None))
        return packets
