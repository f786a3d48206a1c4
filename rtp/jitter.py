"""Sans-I/O jitter buffer for one recorded leg: packets and arrival times in, a gapless timeline of payloads out.

Why it is shaped this way
-------------------------
A recorder does not play audio; it must write each leg so that sample n of the file is wall-clock time
`start_time + n / clock_rate`, within 20 ms over hours, without losing or inventing audio. So the buffer works
on the *output timeline* in RTP clock ticks, and everything else maps onto it.

* **Ordering and identity.** Each packet gets a key `epoch << 48 | extended_seq`. The 16-bit sequence is
  extended against the highest seen (RFC 3550 A.1 style), so the 65535 -> 0 wrap is invisible; the 32-bit
  timestamp is extended the same way. Pending packets sit in a heap of plain tuples; a set of pending keys and
  the last emitted key find duplicates. A packet older than the last emitted one is *late* if its slot was
  declared lost (then `lost` is decremented: lost + late + played = expected) and a *duplicate* otherwise.

* **Position by timestamp.** Within an epoch a packet's nominal position is `ext_timestamp + offset`. The gap
  before it is `pos - (previous pos + previous duration)`, so loss and silence suppression (DTX, where the
  sequence is contiguous but the timestamp jumps) are filled with exactly the right number of ticks. Durations
  come from `duration_of(payload)` (the codec knows: G.711 bytes, Opus TOC, ...) or else a learned estimate.

* **Wall clock.** For every packet `s = arrival * clock_rate - pos` is its transit time in ticks plus a constant.
  Queueing only ever adds delay, so minima of `s` follow the true sender-clock/wall-clock relation `c`. The
  estimate is the median of the minima of the last four 0.5 s buckets of arrivals: one early outlier cannot move
  it, a real change (route, hold) moves it within about a second, and the lag for a drifting sender is ~1 ms at
  0.1 %. The drift *rate* is measured over 60 s windows (apparent rates above 0.2 % are steps, not clocks) and
  used to carry old minima and the estimate forward across silences, so a talk spurt after 30 s of DTX is placed
  as precisely as one after 20 ms. `drift = c - c0` (c0: the relation in the first second) is how far
  the sender clock has run slow (+) or fast (-) of the wall clock. The buffer keeps `applied`, the correction
  actually applied so far (output position = pos + applied), and corrects `err = applied - drift` only at
  packet boundaries, never inside a packet:
    - at a natural gap (loss, DTX) once |err| > drift_soft_ms: the gap is shortened (down to nothing) or
      lengthened, which is inaudible;
    - with no gap, once |err| > drift_hard_ms: silence is inserted before the packet (sender slow), or the
      whole packet is dropped when that brings err closer to zero (sender fast; counted in drift_dropped).
  With 20 ms packets the error therefore stays within about 15 ms plus estimator noise.

* **Discontinuities.** A new SSRC, a sequence jump beyond RFC 3550's MAX_DROPOUT/MAX_MISORDER, a timestamp that
  goes backwards while the sequence goes forwards, or a packet that arrives more than `resync_ms` earlier than
  its timestamp allows, starts a new epoch: the new mapping puts that packet at its wall-clock position, and the
  gap before it is measured by the wall clock. A timestamp that stands still while the wall clock runs (some SBCs
  after hold) is caught by the drift logic instead, within the window, without being confused with a burst of
  delayed packets.

* **Release.** A packet leaves as soon as it is the next expected key (in-order streams see no added latency),
  or when the wall clock passes its nominal time plus `jitter_ms` (a hole is then declared lost), or when more
  than `max_packets` wait. `pop_ready(now)` returns `Audio` and `Gap` items; runs of `Audio` can be decoded in
  one block by concatenable codecs (see rtp.codecs.base.decode_frames). Gaps are produced when the next packet
  is emitted, so a stream that stops sending produces no trailing silence: the writer pads by `position` and
  `start_time` if it needs to.

Per packet the cost is a few integer operations, one tuple, one heap push/pop and one set add/discard.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Audio", "Frame", "Gap", "JitterBuffer", "JitterStats"]

MAX_DROPOUT = 3000  # RFC 3550 A.1: a larger forward sequence jump is a restart, not loss
MAX_MISORDER = 100
_EPOCH_SHIFT = 48
_SEQ_BASE = 1 << 16  # extended sequence numbers start here so a reordered predecessor never goes negative
_LATE_HORIZON_S = 10.0  # a far-backwards sequence number this late is a straggler, not a restart
_BUCKET_S = 0.5  # the transit minimum is taken per bucket of arrivals ...
_BUCKETS = 4  # ... and the clock relation is the median of the last four bucket minima
_RATE_WINDOW_S = 60.0  # the drift rate is measured over this long, to extrapolate across silences
_MAX_RATE = 0.002  # a faster apparent drift is a step (hold, route change), not a clock
_SETTLE_S = 1.0  # during the first second the leg's reference c0 follows the estimate
_MAX_LOST_KEYS = 4096


class Audio(NamedTuple):
    position: int  # ticks from the leg start where this payload's audio begins
    timestamp: int  # RTP timestamp as sent
    samples: int  # ticks the payload covers
    payload: bytes


class Gap(NamedTuple):
    position: int
    samples: int  # ticks of silence (or concealment) to produce


Frame = Audio | Gap


@dataclass(frozen=True, slots=True)
class JitterStats:
    received: int
    played: int
    lost: int
    late: int
    duplicates: int
    resyncs: int
    drift_inserted: int  # ticks of silence inserted to follow the wall clock
    drift_removed: int  # ticks taken out of gaps or dropped packets to follow the wall clock
    drift_dropped: int  # packets dropped whole for drift
    overflow: int  # packets released early because the buffer was full


class JitterBuffer:
    def __init__(
        self,
        clock_rate: int,
        samples_per_packet_hint: int | None = None,
        jitter_ms: float = 60,
        *,
        duration_of: Callable[[bytes], int] | None = None,
        resync_ms: float = 100,
        drift_soft_ms: float = 5,
        drift_hard_ms: float = 15,
        max_packets: int = 500,
    ) -> None:
        if clock_rate <= 0:
            raise ValueError("clock_rate must be positive")
        self.clock_rate = clock_rate
        self._jitter = jitter_ms * clock_rate / 1000
        self._resync = resync_ms * clock_rate / 1000
        self._soft = round(drift_soft_ms * clock_rate / 1000)
        self._hard = round(drift_hard_ms * clock_rate / 1000)
        self.duration_of = duration_of  # payload -> ticks; replaceable (codec change)
        self._dur = samples_per_packet_hint or clock_rate // 50
        self._last_delta = -1
        self._max_packets = max_packets

        self._started = False
        self._t0 = 0.0
        self._epoch = -1
        self._ssrc: int | None = None
        self._old_ssrcs: deque[int] = deque(maxlen=4)
        self._max_seq = 0  # extended, of the current epoch
        self._first_seq = 0  # packets before this one belong to an abandoned mapping (0: no such floor)
        self._ts_ref = 0  # extended timestamp of the packet with _max_seq
        self._ts_offset = 0

        # Clock relation estimate: per-bucket transit minima (ticks, arrivals relative to t0), the leg's reference.
        self._bucket_end = 0.0
        self._min_cur = 0.0
        self._minima: deque[tuple[float, float]] = deque(maxlen=_BUCKETS)  # (bucket centre, minimum)
        self._c = 0.0  # the clock relation estimate (ticks) at time _c_time (seconds after t0) ...
        self._c_time = 0.0
        self._rate = 0.0  # ... and how fast it moves (ticks per second), measured over _RATE_WINDOW_S
        self._anchor: tuple[float, float] | None = None
        self._now = 0.0  # seconds after t0 of the latest arrival or poll
        self._c0 = 0.0
        self._base = 0  # output position of nominal position 0, fixed by the first emitted packet

        self._heap: list[tuple[int, int, int, int, bytes]] = []  # (key, pos, duration, timestamp, payload)
        self._pending: set[int] = set()
        self._last_key = -1
        self._epoch_start_key = -1  # first key emitted in the current epoch: anything older never played
        self._next_pos = 0  # nominal end of the last emitted packet
        self._applied = 0  # output position minus nominal position
        self._out = 0  # ticks emitted so far
        self._lost_keys: set[int] = set()

        self.received = 0
        self.played = 0
        self.lost = 0
        self.late = 0
        self.duplicates = 0
        self.resyncs = 0
        self.drift_inserted = 0
        self.drift_removed = 0
        self.drift_dropped = 0
        self.overflow = 0

    # ----------------------------------------------------------------------------------------------- intake

    def push(self, seq: int, timestamp: int, payload: bytes, arrival: float, ssrc: int | None = None) -> bool:
        """Accept one packet of this leg's audio payload type. `arrival` is wall-clock seconds. False when the
        packet was not queued (a duplicate or too late: counted in `duplicates` / `late`)."""
        self.received += 1
        if not self._started:
            self._start(seq, timestamp, arrival, ssrc)
        rel = arrival - self._t0
        x = rel * self.clock_rate
        if rel > self._now:
            self._now = rel
        if ssrc is not None and ssrc != self._ssrc:
            if ssrc in self._old_ssrcs:
                self.late += 1  # a straggler from a source already replaced
                return False
            if self._ssrc is not None:
                self._old_ssrcs.append(self._ssrc)
            self._ssrc = ssrc
            self._new_epoch(seq, timestamp, x, floor=False)
            ext, ext_ts = self._max_seq, self._ts_ref
        else:
            d = ((seq - self._max_seq + 0x8000) & 0xFFFF) - 0x8000
            dts = ((timestamp - self._ts_ref + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            ext = self._max_seq + d
            ext_ts = self._ts_ref + dts
            if d > 0:
                if d > MAX_DROPOUT or dts < 0 or x - ext_ts - self._ts_offset < self._clock(rel) - self._resync:
                    self._new_epoch(seq, timestamp, x)
                    ext, ext_ts = self._max_seq, self._ts_ref
                else:
                    if d == 1 and dts > 0:
                        self._learn_duration(dts)
                    self._max_seq = ext
                    self._ts_ref = ext_ts
            elif d < -MAX_MISORDER:
                if 0 <= x - ext_ts - self._ts_offset - self._clock(rel) <= _LATE_HORIZON_S * self.clock_rate:
                    self.late += 1
                    return False
                self._new_epoch(seq, timestamp, x)
                ext, ext_ts = self._max_seq, self._ts_ref
            elif ext < self._first_seq:
                self.late += 1  # reordered across the start of this epoch: its mapping is gone
                return False
        key = (self._epoch << _EPOCH_SHIFT) | ext
        pos = ext_ts + self._ts_offset
        if key <= self._last_key or key in self._pending:
            if key in self._lost_keys:
                self._lost_keys.discard(key)
                self.lost -= 1
                self.late += 1
            elif key < self._epoch_start_key:
                self.late += 1
            else:
                self.duplicates += 1
            return False
        s = x - pos
        if rel >= self._bucket_end:
            self._close_bucket(rel)
            self._min_cur = s
        elif s < self._min_cur:
            self._min_cur = s
            if not self._minima:
                self._c = s
        if rel < _SETTLE_S:
            self._c0 = self._c
        duration = self.duration_of(payload) if self.duration_of is not None else self._dur
        heapq.heappush(self._heap, (key, pos, duration, timestamp, payload))
        self._pending.add(key)
        return True

    def _start(self, seq: int, timestamp: int, arrival: float, ssrc: int | None) -> None:
        self._started = True
        self._t0 = arrival
        self._ssrc = ssrc
        self._bucket_end = _BUCKET_S
        self._new_epoch(seq, timestamp, 0.0, floor=False)
        self.resyncs = 0

    def _close_bucket(self, rel: float) -> None:
        """A bucket of arrivals is complete: update the clock relation and, rarely, the drift rate."""
        self._minima.append((self._bucket_end - _BUCKET_S / 2, self._min_cur))
        self._bucket_end = rel + _BUCKET_S
        rate = self._rate
        # Each minimum is carried forward to now at the measured rate, so old buckets (say from before a
        # long silence) do not hold the estimate back.
        values = sorted(v + rate * (rel - t) for t, v in self._minima)
        self._c = values[(len(values) - 1) // 2]
        self._c_time = rel
        if rel < _SETTLE_S:
            return
        if self._anchor is None:
            self._anchor = (rel, self._c)
            return
        t_a, c_a = self._anchor
        if rel - t_a >= _RATE_WINDOW_S:
            slope = (self._c - c_a) / (rel - t_a)
            if abs(slope) <= _MAX_RATE * self.clock_rate:
                self._rate = slope
            self._anchor = (rel, self._c)

    def _clock(self, rel: float) -> float:
        """The clock relation at `rel` seconds after t0."""
        return self._c + self._rate * (rel - self._c_time)

    def _new_epoch(self, seq: int, timestamp: int, x: float, floor: bool = True) -> None:
        """Map this packet to its wall-clock position; the clock estimate carries over unchanged.

        After a discontinuity within one source (`floor`), reordered packets from before it are dropped: their
        timestamps belong to the old mapping. At the start of a source they are its own earlier packets."""
        self.resyncs += 1
        self._epoch += 1
        self._max_seq = _SEQ_BASE + seq
        self._first_seq = self._max_seq if floor else 0
        self._ts_ref = timestamp
        self._ts_offset = round(x - self._clock(x / self.clock_rate)) - timestamp
        self._last_delta = -1

    def _learn_duration(self, delta: int) -> None:
        # Adopt a timestamp step seen twice in a row: a single DTX jump is not a packet duration.
        if delta == self._last_delta:
            self._dur = delta
        self._last_delta = delta

    # ---------------------------------------------------------------------------------------------- release

    def pop_ready(self, now: float) -> list[Frame]:
        """Everything that may leave by wall-clock time `now`, in timeline order."""
        out: list[Frame] = []
        heap = self._heap
        if not heap:
            return out
        rel = now - self._t0
        if rel > self._now:
            self._now = rel
        limit = rel * self.clock_rate - self._clock(rel) - self._jitter
        while heap:
            head = heap[0]
            if head[0] == self._last_key + 1 or head[1] <= limit:
                pass
            elif len(heap) > self._max_packets:
                self.overflow += 1
            else:
                break
            heapq.heappop(heap)
            self._pending.discard(head[0])
            self._emit(head, out)
        return out

    def flush(self) -> list[Frame]:
        """End of call: everything still buffered, in order."""
        out: list[Frame] = []
        while self._heap:
            head = heapq.heappop(self._heap)
            self._pending.discard(head[0])
            self._emit(head, out)
        return out

    def _emit(self, entry: tuple[int, int, int, int, bytes], out: list[Frame]) -> None:
        key, pos, duration, timestamp, payload = entry
        last = self._last_key
        drift = round(self._clock(self._now) - self._c0) + self._base
        if last >= 0 and key >> _EPOCH_SHIFT == last >> _EPOCH_SHIFT:
            missing = key - last - 1
            if missing:
                self.lost += missing
                if missing < 64:
                    self._lost_keys.update(range(last + 1, key))
                    if len(self._lost_keys) > _MAX_LOST_KEYS:
                        self._lost_keys = {k for k in self._lost_keys if k > key - _MAX_LOST_KEYS}
            gap = pos - self._next_pos
            err = self._applied - drift  # > 0: the output runs ahead of the wall clock
            if gap < 0:
                self._applied -= gap  # overlapping timestamps: keep the output contiguous, correct later
                err -= gap
                gap = 0
            if gap > 0:
                if err > self._soft:
                    cut = min(err, gap)
                    gap -= cut
                    self._applied -= cut
                    self.drift_removed += cut
                elif err < -self._soft:
                    gap -= err
                    self._applied -= err
                    self.drift_inserted -= err
            elif err < -self._hard:
                gap = -err
                self._applied -= err
                self.drift_inserted -= err
            elif err > self._hard and 2 * err >= duration > 0:
                self._applied -= duration
                self.drift_removed += duration
                self.drift_dropped += 1
                self._next_pos = pos + duration
                self._last_key = key
                return
        else:
            # First packet of the leg or of an epoch: placed at its wall-clock position, never before the
            # audio already written.
            if last < 0:
                # The leg starts with this packet, even if a reordered predecessor got a negative position.
                self._base -= drift + pos
                drift = -pos
            gap = max(pos + drift - self._out, 0)
            self._applied = self._out + gap - pos
            self._epoch_start_key = key
        if gap:
            out.append(Gap(self._out, gap))
            self._out += gap
        out.append(Audio(self._out, timestamp, duration, payload))
        self._out += duration
        self._next_pos = pos + duration
        self._last_key = key
        self.played += 1

    # ---------------------------------------------------------------------------------------------- reading

    @property
    def position(self) -> int:
        """Ticks emitted so far (audio plus gaps)."""
        return self._out

    @property
    def start_time(self) -> float | None:
        """Wall-clock time of position 0 (arrival of the first packet less its excess network delay)."""
        return self._t0 + (self._c0 - self._base) / self.clock_rate if self._started else None

    @property
    def drift_ms(self) -> float:
        """How far the sender clock has fallen behind (+) or run ahead (-) of the wall clock since the start."""
        return (self._clock(self._now) - self._c0 + self._base) * 1000 / self.clock_rate

    @property
    def buffered(self) -> int:
        return len(self._heap)

    def stats(self) -> JitterStats:
        return JitterStats(self.received, self.played, self.lost, self.late, self.duplicates, self.resyncs,
                           self.drift_inserted, self.drift_removed, self.drift_dropped, self.overflow)
