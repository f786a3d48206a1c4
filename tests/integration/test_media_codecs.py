"""Calls in G.722, Opus and SRTP into a running server: each leg WAV equals what the codec decodes from the packets
that were sent (the decoders keep state across packets, as the server's must), and resembles the source speech.
Audio is encoded in the test with PyAV (FFmpeg's G.722 and libopus) from the fixtures' speech.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from rtp.codecs.g711 import ulaw_decode
from rtp.codecs.g722 import G722Decoder, G722Encoder
from rtp.codecs.opus import OpusDecoder, OpusEncoder
from rtp.packet import build_rtp
from rtp.srtp import SrtpSender
from siprec.app import SiprecServer
from siprec.events.types import Event
from siprec.recording.wav import read_wav
from tests.integration.sip_server import running_server
from tests.integration.src_client import LegOffer, SrcCall, rtp_packets, rtp_socket, send_paced
from tests.integration.test_media_rtp import clip, finished_manifest, sip_port
from tests.support import FIXTURES

pytestmark = pytest.mark.integration

PTIME = 0.02


def speech(rate: int, seconds: float = 2.0) -> np.ndarray:
    pcm, src = sf.read(FIXTURES / "audio" / "piper" / "s01.wav", dtype="float32")
    pcm = pcm[2400 : 2400 + int(seconds * src)]
    return np.clip(np.rint(soxr.resample(pcm, src, rate) * 32767), -32768, 32767).astype(np.int16)


def correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    best = 0.0
    for lag in range(0, max_lag, max(1, max_lag // 200)):
        n = min(len(a64), len(b64) - lag)
        best = max(best, float(np.corrcoef(a64[:n], b64[lag : lag + n])[0, 1]))
    return best


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[SiprecServer, list[Event]]]:
    async with running_server({"rtp": {"port_min": 44000, "port_max": 44999}}, tmp=tmp_path) as srv:
        events: list[Event] = []
        srv.bus.subscribe(events.append)
        yield srv, events


async def one_call(
    srv: SiprecServer, offers: list[LegOffer], streams: list[list[bytes]], *, extra: list[bytes] | None = None
) -> str:
    call = SrcCall(sip_port(srv))
    ports = await call.invite(offers)
    socks = [rtp_socket() for _ in offers]
    try:
        await asyncio.gather(*[
            send_paced(s, port, [(i * PTIME, p) for i, p in enumerate(packets)])
            for s, port, packets in zip(socks, ports, streams, strict=True)
        ])  # fmt: skip
        for datagram in extra or []:
            socks[0].sendto(datagram, ("127.0.0.1", ports[0]))
        await asyncio.sleep(0.05)
        assert await call.bye() == 200
    finally:
        for s in socks:
            s.close()
        call.close()
    return call.call_id


async def test_g722_and_pcmu_legs_in_one_call(server: tuple[SiprecServer, list[Event]]) -> None:
    srv, events = server
    wide = speech(16000)
    enc = G722Encoder()
    g722 = enc.encode(wide) + enc.flush()
    narrow = clip("customer", 41580, len(g722) * PTIME)
    pcmu = [narrow[i : i + 160] for i in range(0, len(narrow) - 159, 160)]
    offers = [LegOffer("G722", 9, 8000, label="wide"), LegOffer("PCMU", 0, 8000, label="narrow")]
    call_id = await one_call(
        srv, offers,
        [rtp_packets(g722, payload_type=9, samples_per_packet=160),
         rtp_packets(pcmu, payload_type=0, samples_per_packet=160)],
    )  # fmt: skip
    folder, manifest = await finished_manifest(events, call_id)
    legs = {leg["index"]: leg for leg in manifest["legs"]}
    assert (legs[0]["codec"], legs[0]["sample_rate"]) == ("G722", 16000)
    pcm, rate = read_wav(folder / legs[0]["file"])
    assert rate == 16000
    # Exactly what a decoder that keeps its ADPCM state across packets makes of the stream.
    np.testing.assert_array_equal(pcm, G722Decoder().decode(b"".join(g722)))
    assert correlation(wide, pcm, 64) > 0.99
    pcm1, _ = read_wav(folder / legs[1]["file"])
    np.testing.assert_array_equal(pcm1, ulaw_decode(b"".join(pcmu)))

    combined, crate = read_wav(folder / "combined.wav")
    assert crate == 16000 and manifest["combined"]["sample_rate"] == 16000
    off0, off1 = legs[0]["combined_offset"], legs[1]["combined_offset"]
    np.testing.assert_array_equal(combined[off0 : off0 + len(pcm), 0], pcm)
    # The 8 kHz leg is resampled into the 16 kHz file: same speech, twice the samples.
    up = combined[off1 : off1 + 2 * len(pcm1), 1]
    assert correlation(soxr.resample(pcm1.astype(np.float32), 8000, 16000), up, 200) > 0.98


async def test_opus_leg(server: tuple[SiprecServer, list[Event]]) -> None:
    srv, events = server
    source = speech(48000)
    enc = OpusEncoder(packet_ms=20)
    packets = enc.encode(source) + enc.flush()
    call_id = await one_call(
        srv, [LegOffer("opus", 111, 48000, label="o", channels=2)],
        [rtp_packets(packets, payload_type=111, samples_per_packet=960)],
    )  # fmt: skip
    folder, manifest = await finished_manifest(events, call_id)
    leg = manifest["legs"][0]
    assert (leg["codec"], leg["sample_rate"], leg["packets_received"]) == ("OPUS", 48000, len(packets))
    pcm, rate = read_wav(folder / leg["file"])
    assert rate == 48000
    decoder = OpusDecoder()
    np.testing.assert_array_equal(pcm, np.concatenate([decoder.decode(p) for p in packets]))
    assert correlation(source, pcm, 1000) > 0.9  # real speech, not synthesised noise


async def test_srtp_call(server: tuple[SiprecServer, list[Event]]) -> None:
    srv, events = server
    keys = [os.urandom(30), os.urandom(30)]
    agent, customer = clip("agent", 4800, 2.0), clip("customer", 41580, 2.0)
    plain = [
        rtp_packets([a[i : i + 160] for i in range(0, len(a), 160)], payload_type=0, samples_per_packet=160)
        for a in (agent, customer)
    ]
    senders = [SrtpSender("AES_CM_128_HMAC_SHA1_80", k) for k in keys]
    protected = [[s.protect(p) for p in packets] for s, packets in zip(senders, plain, strict=True)]
    # A packet encrypted with the wrong key (an attacker who knows the port) must not reach the file.
    last = plain[0][-1]
    next_seq = (int.from_bytes(last[2:4], "big") + 1) & 0xFFFF  # new sequence: only authentication can fail
    forged_rtp = build_rtp(0, next_seq, int.from_bytes(last[4:8], "big") + 160, int.from_bytes(last[8:12], "big"),
                           b"\x00" * 160)  # fmt: skip
    forged = SrtpSender("AES_CM_128_HMAC_SHA1_80", os.urandom(30)).protect(forged_rtp)
    offers = [LegOffer(label="1", srtp_key=keys[0]), LegOffer(label="2", srtp_key=keys[1], participant="Bob")]
    call_id = await one_call(srv, offers, protected, extra=[forged])
    folder, manifest = await finished_manifest(events, call_id)
    for leg, audio in zip(manifest["legs"], (agent, customer), strict=True):
        assert leg["srtp"] == "AES_CM_128_HMAC_SHA1_80"
        assert leg["packets_received"] == len(audio) // 160
        pcm, _ = read_wav(folder / leg["file"])
        np.testing.assert_array_equal(pcm, ulaw_decode(audio))
    assert manifest["legs"][0]["dropped"] == {"srtp_auth": 1}
