"""The audio tap from a recorded leg into live transcription.

`TranscriptionTap` hands every decoded block of one leg to the STT pipeline with its time on the session clock
(seconds from the session start: the leg file's origin plus the block's sample position, so late-starting legs
and gaps stay where they were spoken), and keeps the speaker label in step with the metadata (a participant
added by a later metadata update names the lines that follow).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import numpy as np

from siprec.srs.metadata_model import Participant
from siprec.srs.session import Leg, RecordingSession

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

log = logging.getLogger("siprec.recording")

__all__ = ["AudioTap", "LegTranscription", "Transcription", "TranscriptionTap", "speaker_label"]


class AudioTap(Protocol):
    """What a LegRecorder feeds its decoded blocks to (`TranscriptionTap`, or a media worker's forwarder)."""

    def feed(self, position: int, pcm: np.ndarray) -> None: ...

    def close(self) -> None: ...


class LegTranscription(Protocol):
    def feed(self, pcm: np.ndarray, timestamp: float) -> None: ...

    def set_speaker(self, speaker_label: str | None, participant_id: str | None) -> None: ...

    def close(self) -> None: ...


class Transcription(Protocol):
    """What the recorder needs of the STT service (siprec.stt.pipeline.SttService)."""

    def open_leg(
        self,
        *,
        call_id: str,
        session_id: str,
        leg_index: int,
        stream_label: str | None,
        speaker_label: str | None,
        participant_id: str | None,
        sample_rate: int,
        paused: Callable[[], bool],
        recording_paused: Callable[[], bool] | None = None,
    ) -> LegTranscription: ...

    def session_ended(
        self, *, call_id: str, session_id: str, folder: Path, leg_files: dict[int, Path]
    ) -> None:
        """Every leg is closed and its file final: write transcript.json once the finals are in."""
        ...


def speaker_label(participant: Participant | None) -> str | None:
    """The name a transcript line is shown under: the participant's display name, else its AOR."""
    if participant is None:
        return None
    return participant.name or participant.aor or participant.id


class TranscriptionTap:
    def __init__(
        self, stt: Transcription, session: RecordingSession, leg: Leg, sample_rate: int, origin: float
    ) -> None:
        self.session = session
        self.leg = leg
        self.sample_rate = sample_rate
        self.offset = origin - session.started_at  # session-clock time of the leg file's sample 0
        self._speaker = leg.participant
        self.failed = False
        self.stream = stt.open_leg(
            call_id=session.call_id,
            session_id=session.session_id,
            leg_index=leg.index,
            stream_label=leg.label,
            speaker_label=speaker_label(self._speaker),
            participant_id=self._speaker.id if self._speaker else None,
            sample_rate=sample_rate,
            paused=lambda: session.transcription_paused,
            # With recording.pause_mode drop the leg file loses paused spans: post-call times must skip them too.
            recording_paused=lambda: session.recording_paused,
        )

    def feed(self, position: int, pcm: np.ndarray) -> None:
        if self.failed:
            return
        try:
            participant = self.leg.participant
            if participant is not self._speaker:
                self._speaker = participant
                self.stream.set_speaker(speaker_label(participant), participant.id if participant else None)
            self.stream.feed(pcm, self.offset + position / self.sample_rate)
        except Exception:  # transcription must never cost the recording: stop feeding, say so once
            self.failed = True
            log.exception(
                "leg %d: transcription tap failed, recording goes on",
                self.leg.index,
                extra={"call_id": self.session.call_id},
            )

    def close(self) -> None:
        try:
            self.stream.close()
        except Exception:
            log.exception(
                "leg %d: closing transcription failed",
                self.leg.index,
                extra={"call_id": self.session.call_id},
            )
