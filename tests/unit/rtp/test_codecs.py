"""G.722, Opus, G.729 (PyAV/FFmpeg), L16 and the codec registry, with real speech from the fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from rtp.codecs import g729
from rtp.codecs.base import Decoder, UnsupportedCodec, decode_frames
from rtp.codecs.g722 import G722Decoder, G722Encoder
from rtp.codecs.l16 import L16Decoder, l16_encode
from rtp.codecs.opus import OpusDecoder, OpusEncoder, opus_packet_samples
from rtp.codecs.registry import decodable_encodings, decoder_for, output_sample_rate
from rtp.jitter import Audio, Gap


def speech(fixtures_dir: Path, rate: int, name: str = "piper/s01.wav") -> np.ndarray:
    pcm, src = sf.read(fixtures_dir / "audio" / name, dtype="float32")
    assert src == 8000
    return np.clip(np.rint(soxr.resample(pcm, src, rate) * 32767), -32768, 32767).astype(np.int16)


def best_alignment(ref: np.ndarray, out: np.ndarray, max_lag: int) -> tuple[int, float]:
    """(lag, correlation) maximising the correlation of out[lag:] with ref (codecs add delay).
    The lag comes from an FFT cross-correlation, the figure from np.corrcoef at that lag."""
    a, b = ref.astype(np.float64), out.astype(np.float64)
    size = 1 << (len(a) + len(b)).bit_length()
    xcorr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    lag = int(np.argmax(xcorr[:max_lag]))
    n = min(len(a), len(b) - lag)
    return lag, float(np.corrcoef(a[:n], b[lag : lag + n])[0, 1])


def test_g722_round_trip_real_speech(fixtures_dir: Path) -> None:
    x = speech(fixtures_dir, 16000)
    enc = G722Encoder()
    packets = enc.encode(x) + enc.flush()
    assert {len(p) for p in packets} == {160}  # 20 ms at 64 kbit/s
    dec = G722Decoder()
    assert (dec.sample_rate, dec.clock_rate, dec.duration(packets[0])) == (16000, 8000, 160)
    y = np.concatenate([dec.decode(p) for p in packets])
    assert len(y) == 320 * len(packets)
    lag, corr = best_alignment(x, y, 64)
    assert corr > 0.99
    n = len(x) - 64
    err = x[:n].astype(np.float64) - y[lag : lag + n]
    snr = 10 * np.log10((x[:n].astype(np.float64) ** 2).sum() / (err**2).sum())
    assert snr > 20


def test_g722_state_kept_across_packets(fixtures_dir: Path) -> None:
    x = speech(fixtures_dir, 16000, "espeak/s03.wav")
    enc = G722Encoder()
    packets = enc.encode(x) + enc.flush()
    dec = G722Decoder()
    per_packet = np.concatenate([dec.decode(p) for p in packets])
    whole = G722Decoder().decode(b"".join(packets))
    assert np.array_equal(per_packet, whole)
    # A decoder that forgets its ADPCM state at every packet would not match.
    fresh = np.concatenate([G722Decoder().decode(p) for p in packets])
    assert not np.array_equal(fresh, whole)


def test_g722_block_decode_through_frames_matches(fixtures_dir: Path) -> None:
    enc = G722Encoder()
    packets = enc.encode(speech(fixtures_dir, 16000)) + enc.flush()
    frames = [Audio(i * 160, i * 160, 160, p) for i, p in enumerate(packets[:10])]
    frames.insert(5, Gap(800, 80))
    pcm = decode_frames(G722Decoder(), frames)
    assert len(pcm) == 10 * 320 + 160
    assert (pcm[1600:1760] == 0).all()


def test_opus_round_trip_real_speech(fixtures_dir: Path) -> None:
    x = speech(fixtures_dir, 48000)
    enc = OpusEncoder(packet_ms=20)
    packets = enc.encode(x) + enc.flush()
    assert all(opus_packet_samples(p) == 960 for p in packets)
    dec = OpusDecoder()
    assert dec.duration(packets[0]) == 960 and not dec.concatenable
    y = np.concatenate([dec.decode(p) for p in packets])
    assert len(y) == 960 * len(packets)
    lag, corr = best_alignment(x, y, 1000)  # the encoder's lookahead delays the output (~6.5 ms)
    assert corr > 0.9
    assert lag < 960


def test_opus_toc_durations() -> None:
    assert opus_packet_samples(b"") == 0
    assert opus_packet_samples(bytes([0x78])) == 960  # config 15 (hybrid 20 ms), 1 frame
    assert opus_packet_samples(bytes([0x79])) == 1920  # 2 frames
    assert opus_packet_samples(bytes([0xF8])) == 960  # CELT 20 ms
    assert opus_packet_samples(bytes([0x03 | (3 << 3), 0x03])) == 3 * 2880  # SILK 60 ms x 3
    assert opus_packet_samples(bytes([0x03])) == 0  # code 3 without its count byte


def test_av_decoders_survive_garbage_and_empty_payloads(fixtures_dir: Path) -> None:
    dec = OpusDecoder()
    assert len(dec.decode(b"")) == 0  # FFmpeg would take an empty packet as end of stream
    assert len(dec.decode(b"\xff\xff\xff")) >= 0
    enc = OpusEncoder()
    packets = enc.encode(speech(fixtures_dir, 48000)[:48000])
    assert len(dec.decode(packets[0])) == 960  # still decoding after the bad ones
    g = G722Decoder()
    assert len(g.decode(b"")) == 0
    assert len(g.decode(b"\x01\x02")) == 4


@pytest.mark.skipif(not g729.available(), reason="this FFmpeg has no G.729 decoder")
def test_g729_frames_and_sid() -> None:
    dec = decoder_for("G729", 8000)
    rng = np.random.default_rng(1)
    two_frames = rng.integers(0, 256, 20, dtype=np.uint8).tobytes()
    assert len(dec.decode(two_frames)) == 160 and dec.duration(two_frames) == 160
    with_sid = two_frames + b"\x12\x34"
    assert len(dec.decode(with_sid)) == 240 and dec.duration(with_sid) == 240
    assert len(dec.decode(b"\x12\x34")) == 80


def test_l16_network_order_and_downmix() -> None:
    mono = np.array([1, -2, 300, -32768, 32767], dtype=np.int16)
    raw = l16_encode(mono)
    assert raw[:2] == b"\x00\x01"
    assert L16Decoder(16000).decode(raw).tolist() == mono.tolist()
    assert L16Decoder(16000).decode(raw + b"\x01").tolist() == mono.tolist()  # torn sample ignored
    stereo = l16_encode(np.array([100, 300, -100, -300], dtype=np.int16))
    dec = L16Decoder(44100, channels=2)
    assert dec.decode(stereo).tolist() == [200, -200]
    assert dec.duration(stereo) == 2 and dec.sample_rate == 44100


@pytest.mark.parametrize(("encoding", "clock", "channels", "rate"), [
    ("PCMU", 8000, 1, 8000), ("pcma", 8000, 1, 8000), ("G722", 8000, 1, 16000), ("opus", 48000, 2, 48000),
    ("L16", 8000, 1, 8000), ("L16", 16000, 1, 16000), ("L16", 44100, 2, 44100), ("L16", 48000, 1, 48000),
])
def test_registry_decoders(encoding: str, clock: int, channels: int, rate: int) -> None:
    dec = decoder_for(encoding, clock, channels)
    assert isinstance(dec, Decoder)
    assert dec.sample_rate == rate == output_sample_rate(encoding, clock)
    assert dec.clock_rate == clock
    assert len(dec.conceal(100)) == 100 and dec.conceal(100).dtype == np.int16


@pytest.mark.parametrize(("encoding", "clock", "channels"), [
    ("PCMU", 16000, 1), ("G722", 48000, 1), ("OPUS", 8000, 1), ("OPUS", 48000, 3), ("GSM", 8000, 1),
    ("telephone-event", 8000, 1), ("L16", 0, 1), ("PCMU", 8000, 0), ("iLBC", 8000, 1),
])
def test_registry_rejects(encoding: str, clock: int, channels: int) -> None:
    with pytest.raises(UnsupportedCodec):
        decoder_for(encoding, clock, channels)


def test_decodable_encodings() -> None:
    names = decodable_encodings()
    assert names[:5] == ["PCMU", "PCMA", "G722", "OPUS", "L16"]
    assert ("G729" in names) == g729.available()
    assert all(n == n.upper() for n in names)
    with pytest.raises(UnsupportedCodec):
        output_sample_rate("GSM", 8000)


def test_decoders_have_independent_state(fixtures_dir: Path) -> None:
    a, b = decoder_for("G722", 8000), decoder_for("G722", 8000)
    enc = G722Encoder()
    packets = enc.encode(speech(fixtures_dir, 16000)[:16000])
    a.decode(packets[40])
    assert not np.array_equal(a.decode(packets[41]), b.decode(packets[41]))
