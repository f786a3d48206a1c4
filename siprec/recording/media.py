"""`RecordingMedia`: the MediaSink that records. It owns the RTP sockets, the per-session recorders and the sweep.

Sockets are bound when the port pool hands a port out (`reserve`), i.e. while the SDP answer is being built, so a
port another process holds is skipped before the 200 OK and a session never starts half set up. `open_leg` takes
the bound pair and attaches datagram endpoints to it.

When a session ends its files are closed, the manifest is written ("completed"), FLAC transcoding (if configured)
runs in a worker thread so a long call never blocks RTP intake, and `recording_ready` is published.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rtp.receiver import bind_pair, open_endpoint
from siprec.config import Config
from siprec.events.types import Event, RecordingReady
from siprec.recording.manifest import clear_marker, recover_interrupted, set_marker, write_manifest
from siprec.recording.recorder import LegRecorder, SessionRecorder
from siprec.recording.transcription import AudioTap, Transcription, TranscriptionTap
from siprec.recording.wav import WavError, transcode_to_flac
from siprec.srs.session import Leg, LegHandle, RecordingSession

__all__ = ["PortSockets", "RecordingMedia", "ready_event", "recover_sessions"]

log = logging.getLogger("siprec.recording")

SWEEP_S = 0.5
LINGER_S = 5.0  # sockets of a finished leg stay open this long to absorb the RTP an SRC sends after BYE


def ready_event(folder: Path, manifest: dict[str, Any]) -> RecordingReady:
    """recording_ready from a final manifest (a completed session, or one recovered after a crash)."""
    combined = (manifest.get("combined") or {}).get("file")
    return RecordingReady(
        str(manifest.get("call_id", "")), str(manifest.get("session_id", "")), str(folder),
        str(folder / "manifest.json"), tuple(str(folder / leg["file"]) for leg in manifest.get("legs", [])),
        str(folder / combined) if combined else None, str(manifest.get("state", "completed")),
    )  # fmt: skip


class PortSockets:
    """RTP/RTCP socket pairs bound when the port pool hands a port out (the PortPool reserve/unreserve hooks)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._reserved: dict[int, tuple[socket.socket, socket.socket | None]] = {}

    def reserve(self, port: int) -> bool:
        try:
            self._reserved[port] = bind_pair(self.host, port)
        except OSError as exc:
            log.warning("RTP port %d (or %d) is taken (%s): skipped", port, port + 1, exc.strerror)
            return False
        return True

    def unreserve(self, port: int) -> None:
        pair = self._reserved.pop(port, None)
        if pair is not None:
            for sock in pair:
                if sock is not None:
                    sock.close()

    def take(self, port: int) -> tuple[socket.socket, socket.socket | None]:
        pair = self._reserved.pop(port, None)
        return pair if pair is not None else bind_pair(self.host, port)

    def give(self, port: int, pair: tuple[socket.socket, socket.socket | None]) -> None:
        """A pair bound elsewhere (a media worker receives it from the SIP process)."""
        self._reserved[port] = pair

    def close(self) -> None:
        for port in list(self._reserved):
            self.unreserve(port)


def recover_sessions(config: Config, publish: Callable[[Event], None]) -> list[Path]:
    """Repair sessions a crash interrupted and announce each with recording_ready (at start-up)."""

    def announce(folder: Path, manifest: dict[str, Any]) -> None:
        publish(ready_event(folder, manifest))

    return recover_interrupted(
        Path(config.recording.dir), flac=config.recording.format == "flac", on_recovered=announce
    )


# (index, codec, packets received, lost, late) of one leg. A tuple of atoms on purpose: media workers report one per
# live leg every half second and the SIP process keeps the last; the GC stops tracking such tuples, where dicts would
# be promoted to the oldest generation by the thousand and bring on full collections during the calls.
LegCounters = tuple[int, str, int, int, int]


def counters_entry(counters: LegCounters) -> dict[str, Any]:
    index, codec, packets, lost, late = counters
    return {"index": index, "codec": codec, "packets_received": packets, "packets_lost": lost, "packets_late": late}


class RecordingMedia:
    reports_activity = True

    def __init__(self, config: Config, publish: Callable[[Event], None], *, host: str | None = None) -> None:
        self.config = config
        self.publish = publish
        self.root = Path(config.recording.dir)
        self.host = host or config.sip.host or "0.0.0.0"
        self.linger_s = LINGER_S
        self.recorders: dict[str, SessionRecorder] = {}  # by session_id, while any of its legs is live
        self._finished: list[SessionRecorder] = []  # ended sessions whose sockets still linger
        self.sockets = PortSockets(self.host)
        self._sweep: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stt: Transcription | None = None  # set by the app when a transcription provider runs
        self.totals: Counter[str] = Counter()  # of legs already finished (live ones are summed on demand)
        self.codec_totals: dict[str, Counter[str]] = {}  # the same per codec (packets, lost, late)

    # --- ports (PortPool hooks) ------------------------------------------------------------------------------
    def reserve(self, port: int) -> bool:
        return self.sockets.reserve(port)

    def unreserve(self, port: int) -> None:
        self.sockets.unreserve(port)

    # --- MediaSink ---------------------------------------------------------------------------------------------
    def open_leg(self, session: RecordingSession, leg: Leg) -> LegHandle:
        recorder = self.recorders.get(session.session_id)
        if recorder is None:
            recorder = SessionRecorder(self, session, self.publish)
            self.recorders[session.session_id] = recorder
            set_marker(self.root, session.session_id, session.folder)
        rtp_sock, rtcp_sock = self.sockets.take(leg.stream.port)
        handle = recorder.open_leg(leg)
        handle.rtp.sock, handle.rtcp.sock = rtp_sock, rtcp_sock  # owned by the endpoints from here on
        self._spawn(open_endpoint(rtp_sock, handle.rtp))
        if rtcp_sock is not None:
            self._spawn(open_endpoint(rtcp_sock, handle.rtcp))
        self._arm()
        return handle

    def save_metadata(self, session: RecordingSession, name: str, raw: bytes) -> None:
        (session.folder / name).write_bytes(raw)

    def session_ended(self, session: RecordingSession) -> None:
        recorder = self.recorders.pop(session.session_id, None)
        if recorder is None:
            return
        recorder.finish()
        data = recorder.write_manifest("completed")
        self._finished.append(recorder)
        for leg in recorder.legs:
            self._count(leg)
        if self.config.recording.format == "flac":
            self._spawn_flac(recorder, data)
        else:
            self._ready(recorder, data)

    # --- live transcription (a media worker forwards the audio instead) -----------------------------------------
    @property
    def transcribes(self) -> bool:
        return self.stt is not None

    def open_tap(self, session: RecordingSession, leg: Leg, sample_rate: int, origin: float) -> AudioTap | None:
        """Called with a leg's first decoded block (`origin`: wall time of its sample 0)."""
        if self.stt is None:
            return None
        return TranscriptionTap(self.stt, session, leg, sample_rate, origin)

    # --- end of session ----------------------------------------------------------------------------------------
    def _ready(self, recorder: SessionRecorder, data: dict[str, Any]) -> None:
        session = recorder.session
        clear_marker(self.root, session.session_id)
        self.publish(ready_event(recorder.folder, data))
        if self.stt is not None:  # after FLAC: post-call jobs read the final leg files
            self.stt.session_ended(
                call_id=session.call_id, session_id=session.session_id, folder=recorder.folder,
                leg_files={leg["index"]: recorder.folder / leg["file"] for leg in data["legs"]},
            )  # fmt: skip

    def _spawn_flac(self, recorder: SessionRecorder, data: dict[str, Any]) -> None:
        folder = recorder.folder
        entries = [*data["legs"], *([data["combined"]] if data.get("combined") else [])]

        def transcode() -> None:
            for entry in entries:
                path = folder / entry["file"]
                if path.suffix == ".wav" and path.exists():
                    entry["file"] = transcode_to_flac(path).name

        async def run() -> None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, transcode)
                data["format"] = "flac"
            except (OSError, WavError) as exc:
                log.error(
                    "FLAC transcoding failed, WAV kept: %s", exc, extra={"call_id": recorder.session.call_id}
                )
            write_manifest(folder, data)
            self._ready(recorder, data)

        self._spawn(run())

    # --- sweep -------------------------------------------------------------------------------------------------
    def _arm(self) -> None:
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(SWEEP_S, self._on_sweep)

    def _on_sweep(self) -> None:
        self._sweep = None
        try:
            self.sweep(time.time(), time.monotonic())
        except Exception:
            log.exception("media sweep failed")
        if self.recorders or self._finished:
            self._arm()

    def sweep(self, now_wall: float, now_mono: float) -> None:
        for recorder in list(self.recorders.values()):
            recorder.sweep(now_wall, now_mono)
        still: list[SessionRecorder] = []
        for recorder in self._finished:
            if all(leg.close_at is not None and leg.close_at <= now_mono for leg in recorder.legs):
                for leg in recorder.legs:
                    leg.close_sockets()
            else:
                still.append(recorder)
        self._finished = still
        # Legs closed by a re-offer while their session goes on: release their sockets after the linger too.
        for recorder in self.recorders.values():
            for leg in recorder.legs:
                if leg.close_at is not None and leg.close_at <= now_mono and leg.rtp.transport is not None:
                    leg.close_sockets()

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def recover(self) -> list[Path]:
        """Repair sessions a crash interrupted (call at start-up, before any new session)."""
        return recover_sessions(self.config, self.publish)

    async def close(self) -> None:
        """After the UAS ended every session: wait for FLAC jobs, close every socket."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for recorder in [*self.recorders.values(), *self._finished]:
            for leg in recorder.legs:
                leg.close_sockets()
        self._finished.clear()
        self.sockets.close()

    # --- statistics ----------------------------------------------------------------------------------------------
    def _count(self, leg: LegRecorder) -> None:
        c = leg.stream.counters
        j = leg.stream.jitter
        self.totals["packets"] += c.packets
        self.totals["lost"] += j.lost
        self.totals["late"] += j.late
        self.totals["duplicates"] += j.duplicates
        for reason, n in c.dropped.items():
            self.totals["dropped_" + reason] += n
        codec = self.codec_totals.setdefault(leg.leg.stream.codec.encoding, Counter())
        codec["packets"] += c.packets
        codec["lost"] += j.lost
        codec["late"] += j.late

    def stats(self) -> dict[str, dict[str, int]]:
        """RTP packets received, lost and late by codec since start: finished legs plus live ones (/metrics)."""
        out = {codec: Counter(t) for codec, t in self.codec_totals.items()}
        for recorder in self.recorders.values():
            for leg in recorder.legs:
                row = out.setdefault(leg.leg.stream.codec.encoding, Counter())
                row["packets"] += leg.stream.counters.packets
                row["lost"] += leg.stream.jitter.lost
                row["late"] += leg.stream.jitter.late
        return {codec: {k: row[k] for k in ("packets", "lost", "late")} for codec, row in sorted(out.items())}

    def leg_counters(self, session_id: str) -> tuple[LegCounters, ...]:
        """Per-leg RTP counters of a live session, () when it has no recorder."""
        recorder = self.recorders.get(session_id)
        if recorder is None:
            return ()
        return tuple(
            (leg.index, leg.leg.stream.codec.encoding, leg.stream.counters.packets, leg.stream.jitter.lost,
             leg.stream.jitter.late)
            for leg in recorder.legs
        )  # fmt: skip

    def session_stats(self, session_id: str) -> list[dict[str, Any]]:
        """The REST session view of leg_counters()."""
        return [counters_entry(c) for c in self.leg_counters(session_id)]

    @property
    def live_legs(self) -> int:
        return sum(1 for r in self.recorders.values() for leg in r.legs if not leg.closed)

    # --- internals -------------------------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("media task failed: %s", t.exception())

        task.add_done_callback(done)
