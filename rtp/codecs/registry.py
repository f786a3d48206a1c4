"""Codec lookup by SDP rtpmap (encoding name, clock rate, channels) and the list the SDP answer may offer."""

from __future__ import annotations

from rtp.codecs import g729
from rtp.codecs.base import Decoder, UnsupportedCodec
from rtp.codecs.g711 import PcmaDecoder, PcmuDecoder

__all__ = ["decodable_encodings", "decoder_for", "output_sample_rate"]

_MAX_L16_RATE = 192000
_MAX_L16_CHANNELS = 8


def decodable_encodings() -> list[str]:
    """Upper-case encoding names this build can decode, in order of preference for an answer."""
    names = ["PCMU", "PCMA", "G722", "OPUS", "L16"]
    if g729.available():
        names.append("G729")
    return names


def output_sample_rate(encoding: str, clock_rate: int) -> int:
    """Sample rate of the PCM a decoder for this rtpmap produces (the leg WAV's rate)."""
    name = encoding.upper()
    if name in ("PCMU", "PCMA", "G729"):
        return 8000
    if name == "G722":
        return 16000
    if name == "OPUS":
        return 48000
    if name == "L16":
        return clock_rate
    raise UnsupportedCodec(f"{encoding}/{clock_rate}")


def decoder_for(encoding: str, clock_rate: int, channels: int = 1, fmtp: str | None = None) -> Decoder:
    """A fresh decoder (own state) for one stream. fmtp is accepted for future use: nothing decodable here
    depends on it (Opus stereo flags only matter to encoders; G.729 annexb only adds SID frames)."""
    name = encoding.upper()
    if channels < 1:
        raise UnsupportedCodec(f"{encoding}/{clock_rate}/{channels}: channel count")
    if name in ("PCMU", "PCMA"):
        if clock_rate != 8000 or channels > _MAX_L16_CHANNELS:
            raise UnsupportedCodec(f"{encoding}/{clock_rate}/{channels}")
        return (PcmuDecoder if name == "PCMU" else PcmaDecoder)(channels)
    if name == "G722":
        if clock_rate not in (8000, 16000) or channels != 1:
            raise UnsupportedCodec(f"{encoding}/{clock_rate}/{channels}")
        from rtp.codecs.g722 import G722Decoder

        return G722Decoder(clock_rate)
    if name == "OPUS":
        if clock_rate != 48000 or channels > 2:
            raise UnsupportedCodec(f"{encoding}/{clock_rate}/{channels}")
        from rtp.codecs.opus import OpusDecoder

        return OpusDecoder()
    if name == "L16":
        if not 0 < clock_rate <= _MAX_L16_RATE or channels > _MAX_L16_CHANNELS:
            raise UnsupportedCodec(f"{encoding}/{clock_rate}/{channels}")
        from rtp.codecs.l16 import L16Decoder

        return L16Decoder(clock_rate, channels)
    if name == "G729":
        if clock_rate != 8000 or channels != 1 or not g729.available():
            raise UnsupportedCodec(f"{encoding}/{clock_rate}/{channels}")
        return g729.G729Decoder()
    raise UnsupportedCodec(f"{encoding}/{clock_rate}/{channels}")
