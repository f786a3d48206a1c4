"""A session's recording: `LegRecorder` (one per SDP m-line: RTP intake to leg WAV) and `SessionRecorder` (the legs,
the combined WAV, DTMF, the manifest).

Hot path: `LegRecorder.on_rtp` runs once per datagram from the endpoint callback; it pushes into the jitter buffer
and, every `BATCH` packets, decodes the released audio in one block and appends it to the leg's writer. The media
sweep (`RecordingMedia`, every half second) releases audio of legs that went quiet, flushes buffers older than a
second, advances the combined file and rewrites manifests that changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rtp.codecs import output_sample_rate
from rtp.receiver import UdpEndpoint
from rtp.stream import DtmfNotice, PcmBlock, ReceiveStream, SourceLatched, SsrcChanged, StreamParams
from siprec.events.types import DtmfDetected, Event, ParticipantInfo
from siprec.recording.combined import CombinedWriter
from siprec.recording.leg import LegWriter
from siprec.recording.manifest import iso_time, write_manifest
from siprec.recording.timeline import Interval, to_samples
from siprec.srs.metadata_model import Participant
from siprec.srs.sdp import NegotiatedStream
from siprec.srs.session import SESSION_SCOPE, Leg, RecordingSession, safe_name

if TYPE_CHECKING:
    from siprec.recording.media import RecordingMedia
    from siprec.recording.transcription import AudioTap

__all__ = ["LegRecorder", "SessionRecorder", "stream_params"]

log = logging.getLogger("siprec.recording")

BATCH = 8  # packets between decodes on the hot path (160 ms of 20 ms packets)
STALE_BUFFER_S = 1.0  # the sweep flushes a leg buffer older than this (header refresh well within 2 s)
COMBINED_MARGIN_S = 1.0
TRANSCRIPT_FILE = "transcript.json"  # written by the STT service beside the manifest once the finals are in  # the combined file trails the wall clock by the jitter delay plus this


def stream_params(stream: NegotiatedStream, *, jitter_ms: float, latch: bool) -> StreamParams:
    codec = stream.codec
    srtp = stream.srtp
    return StreamParams(
        payload_type=codec.payload_type,
        encoding=codec.encoding,
        clock_rate=codec.clock_rate,
        channels=codec.channels,
        fmtp=codec.fmtp,
        telephone_event_pt=stream.telephone_event_pt,
        jitter_ms=jitter_ms,
        latch=latch,
        srtp_suite=srtp.suite if srtp else None,
        srtp_key=srtp.remote_key if srtp else None,
        ptime_ms=stream.ptime,
    )


def participant_entry(p: Participant | ParticipantInfo) -> dict[str, str | None]:
    """A participant as manifest.json lists it (CONTRACT.md: {id, aor, name})."""
    return {"id": p.id, "aor": p.aor, "name": p.name}


def leg_file_name(leg: Leg, suffix: str = "") -> str:
    label = safe_name(leg.label, 40) if leg.label else "nolabel"
    return f"leg-{leg.index}-{label}{suffix}.wav"


@dataclass
class DtmfRecord:
    leg: int
    digit: str | None
    event: int
    start: float  # seconds from session start
    duration_s: float
    ended: bool


class LegRecorder:
    """The LegHandle the session holds for one leg: RTP/RTCP endpoints, ReceiveStream, LegWriter."""

    def __init__(self, owner: SessionRecorder, leg: Leg, file_name: str) -> None:
        self.owner = owner
        self.leg = leg
        self.index = leg.index
        media = owner.media
        self.stream = ReceiveStream(
            stream_params(leg.stream, jitter_ms=media.config.rtp.jitter_ms, latch=media.config.rtp.latch)
        )
        self.file_name = file_name
        self.writer = LegWriter(
            owner.folder / file_name,
            self.stream.sample_rate,
            drop_paused=media.config.recording.pause_mode == "drop",
        )
        self.origin: float | None = None  # wall time of the leg file's sample 0
        self.tap: AudioTap | None = None  # live transcription of this leg (from its first block)
        self.flushed_at = time.monotonic()
        self.closed = False
        self.close_at: float | None = None  # monotonic deadline for the lingering sockets
        call = owner.session.call_id
        self.rtp = UdpEndpoint(self.on_rtp, f"rtp {call} leg {leg.index}")
        self.rtcp = UdpEndpoint(self.on_rtcp, f"rtcp {call} leg {leg.index}")

    # --- hot path ------------------------------------------------------------------------------------------
    def on_rtp(self, data: bytes, addr: tuple[str, int], arrival: float) -> None:
        stream = self.stream
        if stream.receive(data, addr, arrival) and stream.pending >= BATCH:
            self.process(arrival)
        if stream.notices:
            self._notices()

    def on_rtcp(self, data: bytes, addr: tuple[str, int], arrival: float) -> None:
        if not self.closed:
            self.stream.receive_rtcp(data, addr, arrival)

    def process(self, now: float) -> None:
        block = self.stream.pull(now)
        if block is not None:
            self._append(block)
            self.owner.session.touch_media(time.monotonic())

    # --- writing -------------------------------------------------------------------------------------------
    def _append(self, block: PcmBlock) -> None:
        if self.origin is None:
            self.origin = self.stream.start_time or time.time()
            self.owner.leg_started(self)
            self.tap = self.owner.media.open_tap(self.owner.session, self.leg, self.stream.sample_rate, self.origin)
        if self.tap is not None:
            self.tap.feed(block.position, block.pcm)
        pauses = self.pauses()
        self.writer.append(block.position, block.pcm, pauses)
        if self.writer.due:
            self.flush(pauses)

    def pauses(self) -> list[Interval]:
        """This leg's paused stretches (session-wide and its own hold) on its timeline."""
        if self.origin is None:
            return []
        own = f"leg-{self.index}"
        wall = [(p.start, p.end) for p in self.owner.session.pauses if p.scope in (SESSION_SCOPE, own)]
        return to_samples(wall, self.origin, self.stream.sample_rate) if wall else []

    def flush(self, pauses: list[Interval] | None = None) -> None:
        writer = self.writer
        if not writer.buffered:
            return
        start = writer.buffer_start
        blocks = writer.pending_blocks()
        writer.flush(self.pauses() if pauses is None else pauses)
        self.flushed_at = time.monotonic()
        self.owner.feed_combined(self.index, start, blocks)

    def sweep(self, now_wall: float, now_mono: float) -> None:
        if self.closed:
            return
        if self.stream.jitter.buffered:
            self.process(now_wall)
        if self.writer.buffered and now_mono - self.flushed_at >= STALE_BUFFER_S:
            self.flush()

    # --- LegHandle -----------------------------------------------------------------------------------------
    def update(self, stream: NegotiatedStream) -> None:
        old = self.stream.params
        new = stream_params(stream, jitter_ms=old.jitter_ms, latch=old.latch)
        if (new.encoding, new.clock_rate) != (old.encoding, old.clock_rate) and (
            output_sample_rate(new.encoding, new.clock_rate) != self.stream.sample_rate
        ):
            log.warning(
                "leg %d: codec change %s/%d -> %s/%d changes the sample rate; the new payload type is not recorded",
                self.index, old.encoding, old.clock_rate, new.encoding, new.clock_rate,
                extra={"call_id": self.owner.session.call_id},
            )  # fmt: skip
            return
        released = self.stream.reconfigure(new)
        if released is not None:
            self._append(released)
        self.owner.dirty = True

    def pause(self) -> None:
        self.owner.dirty = True  # the pause itself is read from session.pauses by wall time

    def resume(self) -> None:
        self.owner.dirty = True

    def close(self) -> None:
        """The leg ended: write what is buffered, close the file, keep the sockets a few seconds to absorb the
        RTP an SRC sends after BYE (counted as closed_leg) instead of answering it with ICMP errors."""
        if self.closed:
            return
        block = self.stream.finish()
        if block is not None:
            self._append(block)
        self._notices()
        self.flush()
        self.writer.close(self.pauses())
        if self.tap is not None:
            self.tap.close()
        self.closed = True
        self.close_at = time.monotonic() + self.owner.media.linger_s
        self.owner.dirty = True

    def close_sockets(self) -> None:
        self.rtp.close()
        self.rtcp.close()

    # --- reporting -----------------------------------------------------------------------------------------
    def _notices(self) -> None:
        session = self.owner.session
        for notice in self.stream.notices:
            if isinstance(notice, DtmfNotice):
                self.owner.dtmf(self.index, notice)
            elif isinstance(notice, SsrcChanged):
                log.info(
                    "leg %d: SSRC %08x -> %08x, recording continues", self.index, notice.old, notice.new,
                    extra={"call_id": session.call_id},
                )  # fmt: skip
            elif isinstance(notice, SourceLatched):
                log.debug(
                    "leg %d: RTP from %s:%d", self.index, *notice.address, extra={"call_id": session.call_id}
                )
        self.stream.notices.clear()

    def manifest_entry(
        self, combined: CombinedWriter | None, session_pauses: list[Interval]
    ) -> dict[str, Any]:
        leg = self.leg
        s = self.stream
        c = s.counters
        j = s.jitter
        p = leg.participant
        return {
            "index": leg.index,
            "label": leg.label,
            "file": self.file_name,
            "codec": leg.stream.codec.encoding,
            "payload_type": leg.stream.codec.payload_type,
            "sample_rate": s.sample_rate,
            "participant": participant_entry(p) if p else None,
            "participants": [participant_entry(q) for q in (leg.attribution.participants if leg.attribution else [])],
            "attribution": leg.rule,
            "ssrc": s.ssrc,
            "packets_received": c.packets,
            "packets_lost": j.lost,
            "packets_late": j.late,
            "packets_duplicate": j.duplicates,
            "duration_s": round(self.writer.frames / s.sample_rate, 3),
            "started_at": iso_time(self.origin),
            "combined_offset": combined.file_offset(self.index, session_pauses)
            if combined is not None and self.index < combined.channels
            else None,
            "srtp": s.params.srtp_suite,
            "ssrc_changes": c.ssrc_changes,
            "dropped": dict(sorted(c.dropped.items())),
            "decode_errors": c.decode_errors,
            "rtcp": {
                "packets": c.rtcp_packets,
                "sender_reports": c.rtcp_sender_reports,
                "receiver_reports": c.rtcp_receiver_reports,
                "errors": c.rtcp_errors,
                "fraction_lost": c.rtcp_fraction_lost,
                "jitter_ms": None if c.rtcp_jitter_ms is None else round(c.rtcp_jitter_ms, 2),
                "sender_packet_count": c.rtcp_sender_packets,
            },
            "opened_at": iso_time(leg.opened_at),
            "closed_at": iso_time(leg.closed_at),
        }


class SessionRecorder:
    def __init__(
        self, media: RecordingMedia, session: RecordingSession, publish: Callable[[Event], None]
    ) -> None:
        self.media = media
        self.session = session
        self.folder = session.folder
        self.publish = publish
        self.legs: list[LegRecorder] = []
        self.dtmf_events: list[DtmfRecord] = []
        self.dirty = True
        self.combined: CombinedWriter | None = None
        rec = media.config.recording
        if rec.combine_legs:
            # Channel n = m-line n of the initial offer; the file's rate is the highest of its legs.
            initial = list(session.legs.values())
            channels = max(leg.index for leg in initial) + 1 if initial else 1
            rate = max(
                (
                    output_sample_rate(leg.stream.codec.encoding, leg.stream.codec.clock_rate)
                    for leg in initial
                ),
                default=8000,
            )
            self.combined = CombinedWriter(
                self.folder / "combined.wav", rate, channels, session.started_at,
                lag_s=media.config.rtp.jitter_ms / 1000 + COMBINED_MARGIN_S,
                drop_paused=rec.pause_mode == "drop",
            )  # fmt: skip

    def open_leg(self, leg: Leg) -> LegRecorder:
        used = {r.file_name for r in self.legs}
        name = leg_file_name(leg)
        n = 2
        while name in used:  # an m-line re-opened after it was closed gets a file of its own
            name = leg_file_name(leg, f"-{n}")
            n += 1
        recorder = LegRecorder(self, leg, name)
        self.legs.append(recorder)
        self.dirty = True
        return recorder

    # --- combined ------------------------------------------------------------------------------------------
    def leg_started(self, leg: LegRecorder) -> None:
        if self.combined is None or leg.origin is None:
            return
        if leg.index >= self.combined.channels:
            log.warning(
                "leg %d was added after the call started: it has its own file but no channel in combined.wav",
                leg.index, extra={"call_id": self.session.call_id},
            )  # fmt: skip
            return
        self.combined.place(leg.index, leg.origin, leg.stream.sample_rate)

    def feed_combined(self, index: int, position: int, blocks: list[np.ndarray]) -> None:
        combined = self.combined
        if combined is None or index >= combined.channels:
            return
        for block in blocks:
            combined.feed(index, position, block)
            position += len(block)
        combined.advance(time.time(), self.session_pauses(combined))

    def session_pauses(self, combined: CombinedWriter) -> list[Interval]:
        wall = [(p.start, p.end) for p in self.session.pauses if p.scope == SESSION_SCOPE]
        return to_samples(wall, combined.origin, combined.sample_rate) if wall else []

    # --- events --------------------------------------------------------------------------------------------
    def dtmf(self, index: int, notice: DtmfNotice) -> None:
        ev = notice.event
        at = notice.at or time.time()
        start = round(max(0.0, at - self.session.started_at), 3)
        duration = round(ev.duration_samples / notice.clock_rate, 3)
        self.dtmf_events.append(DtmfRecord(index, ev.digit, ev.event, start, duration, ev.ended))
        self.dirty = True
        s = self.session
        self.publish(
            DtmfDetected(s.call_id, s.session_id, index, ev.digit, ev.event, start, duration, ev.ended)
        )

    # --- sweep and end -------------------------------------------------------------------------------------
    def sweep(self, now_wall: float, now_mono: float) -> None:
        for leg in self.legs:
            leg.sweep(now_wall, now_mono)
        if self.combined is not None and not self.session.ended:
            self.combined.advance(now_wall, self.session_pauses(self.combined))
        if self.dirty:
            self.write_manifest("recording")

    def finish(self) -> None:
        """Every leg is closed (the session closes them before telling the sink): close the combined file."""
        for leg in self.legs:
            leg.close()
        if self.combined is not None:
            self.combined.close(time.time(), self.session_pauses(self.combined))

    def manifest(self, state: str) -> dict[str, Any]:
        s = self.session
        combined = self.combined
        pauses = self.session_pauses(combined) if combined is not None else []
        ended = s.ended_at
        return {
            "call_id": s.call_id,
            "session_id": s.session_id,
            "state": state,
            "started_at": iso_time(s.started_at),
            "ended_at": iso_time(ended),
            "duration_s": round(s.duration(ended if ended is not None else time.time()), 3),
            "started_at_unix": s.started_at,
            "ended_at_unix": ended,
            "end_reason": s.end_reason,
            "siprec": s.siprec,
            "format": "wav",
            "participants": [participant_entry(p) for p in s.participant_infos()],
            "legs": [leg.manifest_entry(combined, pauses) for leg in self.legs],
            "combined": None
            if combined is None
            else {
                "file": combined.path.name,
                "channels": combined.channels,
                "sample_rate": combined.sample_rate,
                "duration_s": round(combined.frames / combined.sample_rate, 3),
                "late_samples": combined.late_samples,
            },
            "pauses": [
                {"start": iso_time(p.start), "end": iso_time(p.end), "scope": p.scope, "reason": p.reason}
                for p in s.pauses
            ],
            "dtmf": [vars(d) for d in self.dtmf_events],
            "metadata_versions": len(s.metadata_files),
            "metadata_files": list(s.metadata_files),
            "transcript_file": TRANSCRIPT_FILE if self.media.transcribes else None,
        }

    def write_manifest(self, state: str) -> dict[str, Any]:
        data = self.manifest(state)
        write_manifest(self.folder, data)
        self.dirty = False
        return data
