"""G.711 tables: exact against audioop for every code and input, and against the call fixtures."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtp.codecs.base import decode_frames
from rtp.codecs.g711 import PcmaDecoder, PcmuDecoder, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from rtp.jitter import Audio, Gap

if sys.version_info < (3, 13):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
else:  # audioop left the stdlib in 3.13; the tables are then checked by their own properties only
    audioop = None

needs_audioop = pytest.mark.skipif(audioop is None, reason="audioop is gone from this Python")
ALL_CODES = bytes(range(256))
ALL_INPUTS = np.arange(-32768, 32768, dtype=np.int16)


@needs_audioop
def test_decode_all_256_codes_exact() -> None:
    assert ulaw_decode(ALL_CODES).tobytes() == audioop.ulaw2lin(ALL_CODES, 2)
    assert alaw_decode(ALL_CODES).tobytes() == audioop.alaw2lin(ALL_CODES, 2)


@needs_audioop
def test_alaw_encode_every_input_exact() -> None:
    assert alaw_encode(ALL_INPUTS) == audioop.lin2alaw(ALL_INPUTS.tobytes(), 2)


@needs_audioop
def test_ulaw_encode_follows_g191() -> None:
    ours = np.frombuffer(ulaw_encode(ALL_INPUTS), np.uint8)
    ref = np.frombuffer(audioop.lin2ulaw(ALL_INPUTS.tobytes(), 2), np.uint8)
    pos = ALL_INPUTS >= 0
    assert (ours[pos] == ref[pos]).all()
    # G.191 takes the one's complement of negatives ((~x) >> 2), audioop negates (-(x >> 2)), so for x < 0
    # G.191's code for x is audioop's for x + 4 (clipping aside), and they differ on exactly 508 inputs.
    neg = ALL_INPUTS[ALL_INPUTS <= -5]
    shifted = np.frombuffer(audioop.lin2ulaw((neg + 4).astype(np.int16).tobytes(), 2), np.uint8)
    assert (np.frombuffer(ulaw_encode(neg), np.uint8) == shifted).all()
    assert int((ours != ref).sum()) == 508


def test_g191_reference_points() -> None:
    # Values from the G.711 tables: 0xFF / 0x7F are +0 / -0, 0x80 / 0x00 the extremes.
    assert ulaw_decode(b"\xff\x7f\x80\x00").tolist() == [0, 0, 32124, -32124]
    assert alaw_decode(b"\xd5\x55\xaa\x2a").tolist() == [8, -8, 32256, -32256]
    assert ulaw_encode(np.array([0, -1, 32767, -32768])) == b"\xff\x7f\x80\x00"
    assert alaw_encode(np.array([0, -1, 32767, -32768])) == b"\xd5\x55\xaa\x2a"


def test_encode_decode_is_idempotent_on_codes() -> None:
    for enc, dec in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        levels = dec(ALL_CODES)
        assert (dec(enc(levels)) == levels).all()
        assert (np.diff(dec(enc(ALL_INPUTS)).astype(np.int32)) >= 0).all()  # monotonic quantiser


@pytest.mark.parametrize("party", ["agent", "customer"])
def test_call_fixture_ulaw_decodes_to_the_wav(fixtures_dir: Path, party: str) -> None:
    # The README: the .ulaw tracks are the .wav tracks through sox's mu-law encoder (which rounds, so the
    # codes are not G.191's); decoding must give the wav back within mu-law quantisation (37 dB quoted).
    raw = (fixtures_dir / f"audio/call/{party}.ulaw").read_bytes()
    wav, rate = sf.read(fixtures_dir / f"audio/call/{party}.wav", dtype="int16")
    assert rate == 8000 and len(raw) == len(wav) == 403524
    pcm = PcmuDecoder().decode(raw)
    if audioop is not None:
        assert pcm.tobytes() == audioop.ulaw2lin(raw, 2)
    err = wav.astype(np.float64) - pcm
    snr = 10 * np.log10((wav.astype(np.float64) ** 2).sum() / (err**2).sum())
    assert snr > 36
    assert (pcm[wav == 0] == 0).all()  # digital silence stays silent
    # Every sample lies within about one quantisation step of the decoded level (sox maps 2 to level 8).
    assert (np.abs(err) <= np.abs(pcm) / 16 + 8).all()


def test_decoder_interface_and_block_decode() -> None:
    dec = PcmaDecoder()
    assert (dec.sample_rate, dec.clock_rate, dec.concatenable) == (8000, 8000, True)
    payloads = [alaw_encode(np.full(160, v)) for v in (1000, -2000, 3000)]
    frames = [Audio(0, 0, 160, payloads[0]), Audio(160, 160, 160, payloads[1]), Gap(320, 80),
              Audio(400, 400, 160, payloads[2])]
    pcm = decode_frames(dec, frames)
    assert len(pcm) == 560 and dec.duration(payloads[0]) == 160
    assert (pcm[320:400] == 0).all()
    expected = np.concatenate([dec.decode(payloads[0]), dec.decode(payloads[1]), np.zeros(80, np.int16),
                               dec.decode(payloads[2])])
    assert (pcm == expected).all()


def test_stereo_g711_downmixes() -> None:
    dec = PcmuDecoder(channels=2)
    payload = ulaw_encode(np.array([1000, 3000] * 80))
    assert len(dec.decode(payload)) == 80 and dec.duration(payload) == 80
