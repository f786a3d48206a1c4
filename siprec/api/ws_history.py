"""What a late subscriber is sent first: per call, its session_started frame, its final transcripts so far (the
latest `per_call`), its latest analytics snapshot (on /ws/analytics a dashboard has the call's figures at once,
not after the next interval) and, once it ended, its session_ended frame.

Bounded three ways: frames per call, number of calls (the least recently active call goes first, so a call whose
session_ended never came cannot pin memory), and time: a call is forgotten `keep_after_end_s` after it ended.
No I/O and no timers: expiry is checked whenever the history is used, against an injectable clock.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from siprec.api.ws_frames import EventFrame

STARTED = "session_started"
ENDED = "session_ended"
TRANSCRIPT = "transcript"
SNAPSHOT = "snapshot"


@dataclass
class CallHistory:
    finals: deque[EventFrame]
    started: EventFrame | None = None
    ended: EventFrame | None = None
    ended_at: float | None = None
    snapshot: EventFrame | None = None  # the latest only: each one holds the whole call so far

    def frames(self) -> list[EventFrame]:
        """In the order they were published."""
        out = [self.started] if self.started is not None else []
        out.extend(self.finals)
        out.extend(f for f in (self.snapshot, self.ended) if f is not None)
        return sorted(out, key=lambda f: f.seq)  # the final snapshot follows session_ended


@dataclass
class TranscriptHistory:
    per_call: int = 500
    max_calls: int = 1000
    keep_after_end_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _calls: OrderedDict[str, CallHistory] = field(default_factory=OrderedDict, repr=False)
    _ended: deque[tuple[float, str]] = field(
        default_factory=deque, repr=False
    )  # (ended_at, call_id), end order

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, call_id: object) -> bool:
        self.expire()
        return call_id in self._calls

    def record(self, frame: EventFrame, *, is_final: bool = False) -> None:
        """Keep `frame` if it belongs in a replay: a call's start, its end, or a final transcript."""
        if frame.call_id is None or (frame.type == TRANSCRIPT and not is_final):
            return
        if frame.type not in (STARTED, ENDED, TRANSCRIPT, SNAPSHOT):
            return
        self.expire()
        call = self._calls.get(frame.call_id)
        if call is None and frame.type == SNAPSHOT:
            return  # a call the history no longer (or never) held: nothing to attach it to
        if call is None or (frame.type == STARTED and call.ended is not None):  # new, or a call id used again
            self._calls.pop(frame.call_id, None)
            call = self._calls[frame.call_id] = CallHistory(deque(maxlen=self.per_call))
            while len(self._calls) > self.max_calls:
                self._calls.popitem(last=False)
        else:
            self._calls.move_to_end(frame.call_id)
        if frame.type == STARTED:
            call.started = frame
        elif frame.type == ENDED:
            call.ended = frame
            call.ended_at = self.clock()
            self._ended.append((call.ended_at, frame.call_id))
        elif frame.type == SNAPSHOT:
            call.snapshot = frame
        else:
            call.finals.append(frame)

    def replay(self, call_id: str) -> list[EventFrame]:
        """The call's kept frames, oldest first."""
        self.expire()
        call = self._calls.get(call_id)
        return call.frames() if call is not None else []

    def expire(self) -> None:
        deadline = self.clock() - self.keep_after_end_s
        while self._ended and self._ended[0][0] <= deadline:
            ended_at, call_id = self._ended.popleft()
            call = self._calls.get(call_id)
            # A call id reused after its end (a new session_ended later) is kept until its own deadline.
            if call is not None and call.ended_at == ended_at:
                del self._calls[call_id]


@dataclass
class Coverage:
    """Which events one client got live: spans of event seqs during which it followed a call (or every call,
    call_id None). A replay leaves out the frames inside them, so however a client switches between every-call
    mode and subscriptions it never gets a frame twice. Bounded: beyond `limit` spans the oldest closed one is
    forgotten (a client switching that often may then be sent an old frame again)."""

    limit: int = 256
    _spans: deque[list[Any]] = field(
        default_factory=deque, repr=False
    )  # [start, end or None (open), call_id]

    def __len__(self) -> int:
        return len(self._spans)

    def open(self, call_id: str | None, seq: int) -> None:
        """From event `seq` on, the client gets `call_id`'s events (every call's when None)."""
        self._spans.append([seq, None, call_id])
        if len(self._spans) > self.limit:
            for span in self._spans:
                if span[1] is not None:
                    self._spans.remove(span)
                    break

    def close(self, call_id: str | None, seq: int) -> None:
        """From event `seq` on, it no longer does."""
        for span in self._spans:
            if span[1] is None and span[2] == call_id:
                span[1] = seq

    def got(self, call_id: str, seq: int) -> bool:
        return any(
            start <= seq and (end is None or seq < end) and (cid is None or cid == call_id)
            for start, end, cid in self._spans
        )
