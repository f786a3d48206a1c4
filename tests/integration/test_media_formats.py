"""recording.format flac and recording.pause_mode drop, end to end through a running server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtp.codecs.g711 import ulaw_decode
from siprec.events.types import Event, RecordingReady
from tests.integration.sip_server import running_server
from tests.integration.src_client import LegOffer, SrcCall, rtp_packets, rtp_socket, send_paced
from tests.integration.test_media_rtp import clip, finished_manifest, sip_port

pytestmark = pytest.mark.integration


async def record(
    tmp_path: Path,
    overrides: dict[str, dict[str, object]],
    seconds: float,
    pause: tuple[float, float] | None = None,
) -> tuple[Path, dict[str, object], list[bytes], list[Event]]:
    overrides = {"rtp": {"port_min": 46000, "port_max": 46999}, **overrides}
    async with running_server(overrides, tmp=tmp_path) as srv:
        events: list[Event] = []
        srv.bus.subscribe(events.append)
        audios = [clip("agent", 4800, seconds), clip("customer", 41580, seconds)]
        call = SrcCall(sip_port(srv))
        ports = await call.invite([LegOffer(label="1"), LegOffer(label="2", participant="Bob")])
        socks = [rtp_socket(), rtp_socket()]

        async def pause_window() -> None:
            if pause is not None:
                await asyncio.sleep(pause[0])
                srv.app.pause(call.call_id)  # type: ignore[attr-defined]
                await asyncio.sleep(pause[1] - pause[0])
                srv.app.resume(call.call_id)  # type: ignore[attr-defined]

        try:
            await asyncio.gather(
                pause_window(),
                *[
                    send_paced(s, port, [(i * 0.02, p) for i, p in enumerate(
                        rtp_packets([a[k : k + 160] for k in range(0, len(a), 160)], payload_type=0,
                                    samples_per_packet=160))])
                    for s, port, a in zip(socks, ports, audios, strict=True)
                ],
            )  # fmt: skip
            assert await call.bye() == 200
        finally:
            for s in socks:
                s.close()
            call.close()
        folder, manifest = await finished_manifest(events, call.call_id)
    return folder, manifest, audios, events


async def test_flac_files_hold_the_same_samples(tmp_path: Path) -> None:
    folder, manifest, audios, events = await record(tmp_path, {"recording": {"format": "flac"}}, 2.0)
    assert manifest["format"] == "flac"
    names = sorted(p.name for p in folder.iterdir())
    assert not [n for n in names if n.endswith(".wav")], names  # transcoded, WAVs removed
    for leg, audio in zip(manifest["legs"], audios, strict=True):  # type: ignore[arg-type]
        assert leg["file"].endswith(".flac")
        pcm, rate = sf.read(folder / leg["file"], dtype="int16")
        assert rate == 8000
        np.testing.assert_array_equal(pcm, ulaw_decode(audio))
    combined = manifest["combined"]
    assert combined["file"] == "combined.flac"  # type: ignore[index]
    data, _ = sf.read(folder / "combined.flac", dtype="int16")
    assert data.shape[1] == 2
    ready = next(e for e in events if isinstance(e, RecordingReady))
    assert ready.combined is not None and ready.combined.endswith("combined.flac")
    assert all(p.endswith(".flac") for p in ready.legs)


async def test_drop_mode_cuts_the_pause_from_every_file(tmp_path: Path) -> None:
    folder, manifest, audios, _ = await record(
        tmp_path, {"recording": {"pause_mode": "drop"}}, 3.0, (1.0, 2.0)
    )
    pauses = manifest["pauses"]
    assert len(pauses) == 1 and pauses[0]["scope"] == "session"  # type: ignore[index]
    for leg, audio in zip(manifest["legs"], audios, strict=True):  # type: ignore[arg-type]
        pcm, _ = sf.read(folder / leg["file"], dtype="int16")
        source = ulaw_decode(audio)
        # About a second is gone; what is left is the source before and after the pause, in order.
        assert 0.9 * 8000 <= len(source) - len(pcm) <= 1.1 * 8000, len(pcm)
        head = int(0.8 * 8000)
        np.testing.assert_array_equal(pcm[:head], source[:head])
        tail = int(0.8 * 8000)
        np.testing.assert_array_equal(pcm[-tail:], source[-tail:])
    combined, _ = sf.read(folder / "combined.wav", dtype="int16")
    assert 1.9 * 8000 <= len(combined) <= 2.3 * 8000
