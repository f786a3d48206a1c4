"""RTP into a running server, checked in the files it writes: sample-exact G.711 legs under loss, reordering and
duplicates; the combined file; pauses on every leg; DTMF; hostile datagrams; RTP after BYE.

The SRC is tests/integration/src_client.py (SIP over UDP plus paced RTP senders); audio is the two-party call in
shared/fixtures/audio/call. RTP is paced in real time (the recorder aligns legs to the wall clock).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rtp.codecs.g711 import ulaw_decode
from rtp.codecs.telephone_event import build_event
from rtp.packet import build_rtp
from siprec.app import SiprecServer
from siprec.events.types import DtmfDetected, Event, RecordingReady
from siprec.recording.wav import read_wav
from tests.integration.sip_server import running_server
from tests.integration.src_client import LegOffer, SrcCall, rtp_packets, rtp_socket, send_paced
from tests.support import FIXTURES

pytestmark = pytest.mark.integration

CALL = FIXTURES / "audio" / "call"
PTIME = 0.02
SPP = 160


def clip(name: str, start_sample: int, seconds: float) -> bytes:
    data = (CALL / f"{name}.ulaw").read_bytes()
    return data[start_sample : start_sample + int(seconds * 8000)]


def chunks(data: bytes, size: int = SPP) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data) - size + 1, size)]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[SiprecServer, list[Event]]]:
    # Recorded in this process (media_workers 0): the after-BYE check reads the lingering leg's counters, which a
    # worker keeps to itself. test_media_workers.py runs the other tests here with workers.
    overrides = {"rtp": {"port_min": 43000, "port_max": 43999, "jitter_ms": 60, "media_workers": 0}}
    async with running_server(overrides, tmp=tmp_path) as srv:
        events: list[Event] = []
        srv.bus.subscribe(events.append)
        yield srv, events


async def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def ready(events: list[Event], call_id: str) -> RecordingReady | None:
    return next((e for e in events if isinstance(e, RecordingReady) and e.call_id == call_id), None)


async def finished_manifest(events: list[Event], call_id: str) -> tuple[Path, dict[str, Any]]:
    event = await wait_for(lambda: ready(events, call_id), what="recording_ready")
    folder = Path(event.folder)
    return folder, json.loads((folder / "manifest.json").read_text())


def sip_port(srv: SiprecServer) -> int:
    return srv.transport.bound["UDP"]


async def test_two_legs_sample_exact_with_loss_reorder_and_duplicates(
    server: tuple[SiprecServer, list[Event]],
) -> None:
    srv, events = server
    agent = clip("agent", 4800, 3.0)  # s01, agent speaking
    customer = clip("customer", 41580, 3.0)  # s02, customer speaking
    call = SrcCall(sip_port(srv))
    ports = await call.invite(
        [LegOffer(label="1", participant="Agent"), LegOffer(label="2", participant="Customer")]
    )
    assert len(ports) == 2 and ports[1] == ports[0] + 2

    a_pk = rtp_packets(chunks(agent), payload_type=0, samples_per_packet=SPP)
    c_pk = rtp_packets(chunks(customer), payload_type=0, samples_per_packet=SPP, ssrc=0x1234)
    # Leg 1 (customer): packet 40 lost, 60 and 61 swapped by 30 ms, packet 80 duplicated.
    c_sched = [(i * PTIME, p) for i, p in enumerate(c_pk) if i != 40]
    c_sched = [(at + (0.03 if i in (60,) else 0), p) for i, (at, p) in enumerate(c_sched)]
    c_sched.append((80 * PTIME + 0.005, c_pk[80]))
    sa, sc = rtp_socket(), rtp_socket()
    try:
        await asyncio.gather(
            send_paced(sa, ports[0], [(i * PTIME, p) for i, p in enumerate(a_pk)]),
            send_paced(sc, ports[1], c_sched),
        )
        assert await call.bye() == 200
    finally:
        sa.close()
        sc.close()
        call.close()
    folder, manifest = await finished_manifest(events, call.call_id)

    assert manifest["state"] == "completed"
    legs = {leg["index"]: leg for leg in manifest["legs"]}
    assert legs[0]["participant"]["name"] == "Agent" and legs[1]["participant"]["name"] == "Customer"
    assert (legs[0]["codec"], legs[0]["sample_rate"], legs[0]["payload_type"]) == ("PCMU", 8000, 0)
    assert legs[0]["packets_received"] == len(a_pk) and legs[0]["packets_lost"] == 0
    assert legs[1]["packets_received"] == len(c_pk) - 1
    assert legs[1]["packets_lost"] == 1 and legs[1]["packets_duplicate"] == 1
    assert legs[1]["ssrc"] == 0x1234

    pcm0, rate0 = read_wav(folder / legs[0]["file"])
    pcm1, _ = read_wav(folder / legs[1]["file"])
    assert rate0 == 8000
    np.testing.assert_array_equal(pcm0, ulaw_decode(agent[: len(a_pk) * SPP]))
    expected1 = ulaw_decode(customer[: len(c_pk) * SPP]).copy()
    expected1[40 * SPP : 41 * SPP] = 0  # the lost packet is silence of exactly its length
    np.testing.assert_array_equal(pcm1, expected1)

    combined, crate = read_wav(folder / "combined.wav")
    assert manifest["combined"] == {
        **manifest["combined"],
        "file": "combined.wav",
        "channels": 2,
        "sample_rate": 8000,
    }
    assert combined.shape[1] == 2 and crate == 8000
    for index, pcm in ((0, pcm0), (1, pcm1)):
        off = legs[index]["combined_offset"]
        assert off is not None and 0 <= off < 8000  # the first packet came within a second of the INVITE
        np.testing.assert_array_equal(combined[off : off + len(pcm), index], pcm)
        assert not combined[:off, index].any() and not combined[off + len(pcm) :, index].any()
    # Both legs started together: the combined file aligns them within a packet.
    assert abs(legs[0]["combined_offset"] - legs[1]["combined_offset"]) <= SPP


async def test_pause_silences_every_leg_and_dtmf_is_an_event(
    server: tuple[SiprecServer, list[Event]],
) -> None:
    srv, events = server
    tone = (np.sin(np.arange(8000 * 3) * 2 * np.pi * 440 / 8000) * 8000).astype(np.int16)
    from rtp.codecs.g711 import ulaw_encode

    audio = ulaw_encode(tone)
    call = SrcCall(sip_port(srv))
    offers = [LegOffer(label="a", telephone_event_pt=101), LegOffer(label="b", participant="Bob")]
    ports = await call.invite(offers)
    socks = [rtp_socket(), rtp_socket()]
    packets = [
        rtp_packets(chunks(audio), payload_type=0, samples_per_packet=SPP, ssrc=100 + k) for k in range(2)
    ]
    # DTMF "5" on leg 0 at 0.5 s: three updates and three end packets sharing one timestamp.
    ts0 = int.from_bytes(packets[0][25][4:8], "big")
    seq0 = int.from_bytes(packets[0][-1][2:4], "big") + 100
    dtmf = [(0.5 + k * PTIME, build_rtp(101, seq0 + k, ts0, 100, build_event(5, 160 * (k + 1), end=k >= 3)))
            for k in range(6)]  # fmt: skip
    uas = srv.app

    async def pause_window() -> None:
        await asyncio.sleep(1.0)
        assert uas.pause(call.call_id) is True  # type: ignore[attr-defined]
        await asyncio.sleep(1.0)
        assert uas.resume(call.call_id) is True  # type: ignore[attr-defined]

    try:
        await asyncio.gather(
            send_paced(socks[0], ports[0], [(i * PTIME, p) for i, p in enumerate(packets[0])] + dtmf),
            send_paced(socks[1], ports[1], [(i * PTIME, p) for i, p in enumerate(packets[1])]),
            pause_window(),
        )
        assert await call.bye() == 200
    finally:
        for s in socks:
            s.close()
        call.close()
    folder, manifest = await finished_manifest(events, call.call_id)
    assert len(manifest["pauses"]) == 1 and manifest["pauses"][0]["scope"] == "session"
    assert manifest["pauses"][0]["reason"] == "api" and manifest["pauses"][0]["end"] is not None
    for leg in manifest["legs"]:
        pcm, _ = read_wav(folder / leg["file"])
        assert len(pcm) == 3 * 8000  # silence mode keeps the length (and the alignment)
        silent = np.flatnonzero(pcm == 0)
        # About one second of zeros, starting about a second in, on BOTH legs (the reference paused only one).
        runs = np.split(silent, np.flatnonzero(np.diff(silent) != 1) + 1)
        longest = max(runs, key=len)
        assert 0.9 * 8000 <= len(longest) <= 1.1 * 8000, len(longest)
        assert 0.8 * 8000 <= longest[0] <= 1.3 * 8000, longest[0]
    combined, _ = read_wav(folder / "combined.wav")
    paused = combined[int(1.4 * 8000) : int(1.8 * 8000)]
    assert not paused.any()

    dtmf_events = [e for e in events if isinstance(e, DtmfDetected) and e.call_id == call.call_id]
    assert [(e.digit, e.leg, e.ended) for e in dtmf_events] == [("5", 0, True)]
    assert dtmf_events[0].duration_s == pytest.approx(0.08, abs=0.001)
    assert manifest["dtmf"] == [
        {"leg": 0, "digit": "5", "event": 5, "start": dtmf_events[0].start, "duration_s": 0.08, "ended": True}
    ]
    assert 0.3 <= dtmf_events[0].start <= 1.0
    # DTMF never lands in the audio: the leg's packet count is the audio packets only.
    assert manifest["legs"][0]["packets_received"] == len(packets[0])


async def test_hostile_datagrams_are_counted_and_late_rtp_after_bye_is_dropped(
    server: tuple[SiprecServer, list[Event]],
) -> None:
    srv, events = server
    call = SrcCall(sip_port(srv))
    (port,) = await call.invite([LegOffer(label="x")])
    good = rtp_packets([b"\xff" * SPP] * 50, payload_type=0, samples_per_packet=SPP, ssrc=7)
    hostile = [
        b"\x80\x00\x00",  # truncated
        b"\x40" + bytes(20),  # version 1
        bytes([0x8F, 0]) + bytes(14),  # 15 CSRCs that do not fit
        bytes([0xA0, 0]) + bytes(10) + b"\x00" * 4 + b"\xff",  # padding count beyond the packet
        build_rtp(99, 1, 1, 7, b"\xff" * SPP),  # a payload type that was not negotiated
        b"\x80\x00" + bytes(20000),  # oversized
        b"\x00\x01\x00\x00" + bytes(16),  # STUN-looking
    ]
    main, intruder = rtp_socket(), rtp_socket()
    try:
        await send_paced(main, port, [(i * PTIME, p) for i, p in enumerate(good)])
        for datagram in hostile:
            main.sendto(datagram, ("127.0.0.1", port))
        intruder.sendto(good[0], ("127.0.0.1", port))  # another source while latched
        await asyncio.sleep(0.2)
        assert await call.bye() == 200
        _, manifest = await finished_manifest(events, call.call_id)
        dropped = manifest["legs"][0]["dropped"]
        assert manifest["legs"][0]["packets_received"] == 50
        for reason in ("truncated", "bad_version", "bad_csrc", "bad_padding", "unknown_payload_type",
                       "not_rtp", "unexpected_source", "too_large"):  # fmt: skip
            assert dropped.get(reason, 0) >= 1, (reason, dropped)
        # The SRC keeps streaming after BYE: the socket lingers and drops it (no ICMP, no exception).
        leg = next(r for r in srv.app.media._finished for r in [r] if r.session.call_id == call.call_id)  # type: ignore[attr-defined]
        for p in good[:5]:
            main.sendto(p, ("127.0.0.1", port))
        await wait_for(
            lambda: leg.legs[0].stream.counters.dropped.get("closed_leg", 0) >= 5, what="closed_leg"
        )
    finally:
        main.close()
        intruder.close()
        call.close()
