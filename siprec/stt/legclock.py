"""Where a leg's audio sits in time: session seconds <-> seconds into its recording file, and what was paused.

Built from the blocks the recording path feeds (every block of the leg's timeline, paused or not): sample 0 of a
leg file is the leg's first block. Two things are noted per block: whether transcription was paused (those
stretches are never transcribed, live or after the call) and whether the block is missing from the file (with
`recording.pause_mode: drop` a recording pause cuts it out, so file time stops while session time runs on).
Post-call jobs use this to cut the untranscribed stretches out of the file and to put results back on the
session clock.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

__all__ = ["LegClock", "Span", "subtract"]

Span = tuple[float, float]  # [start, end) in session seconds
_TOLERANCE_S = 0.002


class LegClock:
    def __init__(self, *, drop_paused: bool = False) -> None:
        self.drop_paused = drop_paused  # note() without in_file: a paused block is cut out of the file
        self.start: float | None = None  # session time of the leg's first sample (file offset 0)
        self.end: float | None = None  # session time just after the last block
        self._anchors_session: list[float] = []  # file time runs with session time from each anchor ...
        self._anchors_file: list[float] = []  # ... starting at this file time
        self._file_end = 0.0
        self._resume_anchor = False
        self.paused: list[Span] = []

    def note(
        self, timestamp: float, duration: float, *, paused: bool = False, in_file: bool | None = None
    ) -> None:
        """One block of the leg's timeline: `duration` seconds from `timestamp`; `paused`: transcription was
        paused; `in_file`: the recording wrote it (False: a pause cut it out of the file)."""
        if in_file is None:
            in_file = not (paused and self.drop_paused)
        if self.start is None:
            self.start = timestamp
            self._add_anchor(timestamp, 0.0)
        end = timestamp + duration
        if paused:
            if self.paused and timestamp <= self.paused[-1][1] + _TOLERANCE_S:
                self.paused[-1] = (self.paused[-1][0], max(self.paused[-1][1], end))
            else:
                self.paused.append((timestamp, end))
        if not in_file:
            self._resume_anchor = True  # cut out of the file: file time stands still
        else:
            if self._resume_anchor:
                self._add_anchor(timestamp, self._file_end)
                self._resume_anchor = False
            # silence-suppression gaps are filled in the file, so file time follows session time from the anchor
            self._file_end = max(self._file_end, self._anchors_file[-1] + end - self._anchors_session[-1])
        self.end = end if self.end is None else max(self.end, end)

    def _add_anchor(self, session: float, file: float) -> None:
        self._anchors_session.append(session)
        self._anchors_file.append(file)

    @property
    def file_duration(self) -> float:
        return self._file_end

    def file_time(self, session: float) -> float:
        """Seconds into the leg file of session time `session` (a time inside a cut pause maps to the cut)."""
        if not self._anchors_session:
            return 0.0
        i = max(0, bisect.bisect_right(self._anchors_session, session) - 1)
        t = self._anchors_file[i] + max(0.0, session - self._anchors_session[i])
        if i + 1 < len(self._anchors_file):
            t = min(t, self._anchors_file[i + 1])
        return min(t, self._file_end)

    def session_time(self, file: float) -> float:
        """Session time of `file` seconds into the leg file."""
        if not self._anchors_file:
            return file
        i = max(0, bisect.bisect_right(self._anchors_file, file) - 1)
        # several anchors can share a file time (a cut pause at the very start): the last one is the audio
        return self._anchors_session[i] + (file - self._anchors_file[i])


def subtract(spans: Iterable[Span], holes: Sequence[Span]) -> list[Span]:
    """`spans` without the parts inside `holes` (both sorted lists of [start, end))."""
    out: list[Span] = []
    for start, end in spans:
        cursor = start
        for a, b in holes:
            if b <= cursor or a >= end:
                continue
            if a > cursor:
                out.append((cursor, a))
            cursor = max(cursor, b)
        if cursor < end:
            out.append((cursor, end))
    return out
