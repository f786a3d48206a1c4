"""Audio codecs: RTP payload bytes to mono PCM16 (numpy int16), one `Decoder` per stream.

`decoder_for(encoding, clock_rate, channels, fmtp)` picks one by SDP rtpmap; `decodable_encodings()` is what an
SDP answer may accept; `decode_frames` decodes jitter-buffer output in blocks. G.722, Opus and G.729 load PyAV
only when first used.
"""

from rtp.codecs.base import Decoder, UnsupportedCodec, decode_frames
from rtp.codecs.registry import decodable_encodings, decoder_for, output_sample_rate

__all__ = ["Decoder", "UnsupportedCodec", "decodable_encodings", "decode_frames", "decoder_for", "output_sample_rate"]
