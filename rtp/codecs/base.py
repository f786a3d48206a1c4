"""The one decoder interface every codec implements, and block decoding of jitter-buffer output.

A decoder turns the payloads of one RTP stream into mono PCM16 (numpy int16) at `sample_rate`, keeping any codec
state across packets. Durations are counted in RTP clock ticks (`clock_rate`), which is what timestamps count;
for G.722 one tick is two output samples.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Decoder", "UnsupportedCodec", "decode_frames", "silence"]


class UnsupportedCodec(ValueError):
    """The encoding, clock rate, channel count or fmtp is not one this server can decode."""


@runtime_checkable
class Decoder(Protocol):
    sample_rate: int  # of the PCM it returns
    clock_rate: int  # of the RTP timestamps
    # True when payloads of consecutive packets may be joined and decoded in one call (sample-stream codecs:
    # G.711, G.722, L16); lets the media path decode many packets at once.
    concatenable: bool

    def decode(self, payload: bytes) -> np.ndarray:
        """Mono int16 PCM for one payload (or, if `concatenable`, several joined)."""
        ...

    def conceal(self, samples: int) -> np.ndarray:
        """`samples` (at `sample_rate`) of fill for lost or suppressed audio: silence or PLC."""
        ...

    def duration(self, payload: bytes) -> int:
        """How many RTP clock ticks the payload covers, from its size or table of contents."""
        ...


_EMPTY = np.zeros(0, dtype=np.int16)


def silence(samples: int) -> np.ndarray:
    return np.zeros(max(samples, 0), dtype=np.int16)


class _Audio(Protocol):
    payload: bytes | memoryview


def decode_frames(decoder: Decoder, frames: Iterable[object]) -> np.ndarray:
    """Decode jitter-buffer output (rtp.jitter.Audio and rtp.jitter.Gap items) into one PCM block.

    Runs of audio are joined and decoded in one call for concatenable codecs; gaps (in clock ticks) become
    `conceal` output at the decoder's sample rate. Duck-typed on the frame's fields so rtp.codecs does not
    depend on rtp.jitter.
    """
    ratio_num, ratio_den = decoder.sample_rate, decoder.clock_rate
    parts: list[np.ndarray] = []
    run: list[bytes | memoryview] = []
    for frame in frames:
        payload = getattr(frame, "payload", None)
        if payload is not None:
            if decoder.concatenable:
                run.append(payload)
            else:
                parts.append(decoder.decode(bytes(payload)))
            continue
        if run:
            parts.append(decoder.decode(b"".join(run)))
            run = []
        ticks: int = frame.samples  # type: ignore[attr-defined]
        parts.append(decoder.conceal(ticks * ratio_num // ratio_den))
    if run:
        parts.append(decoder.decode(b"".join(run)))
    if not parts:
        return _EMPTY
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
