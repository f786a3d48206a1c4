"""`SampleClock`: sample offsets of a stream mapped to the timestamps its blocks were fed with (for providers:
a provider whose engine counts samples or seconds of one run turns them back into the timestamps of feed()).

The decoder sees one contiguous run of samples; the pipeline's timestamps may jump (a dropped pause, a late leg).
Only the jumps are kept (anchors), so a sample's time is its block's timestamp plus its place in the run since the
last jump, exactly as if every block's timestamp had been kept.
"""

from __future__ import annotations

from bisect import bisect_right

JUMP_S = 0.001  # timestamps closer than this to the expected one continue the run (float rounding, resampler)


class SampleClock:
    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.samples = 0  # samples noted so far
        self._offsets: list[int] = []  # anchor sample offsets, increasing
        self._times: list[float] = []  # timestamp of the sample at each anchor

    def note(self, timestamp: float, n_samples: int) -> None:
        """A block of `n_samples` whose first sample is at `timestamp` follows the samples noted so far."""
        if not self._offsets or abs(self.at(self.samples) - timestamp) > JUMP_S:
            if self._offsets and self._offsets[-1] == self.samples:  # an empty run: replace its anchor
                self._times[-1] = timestamp
            else:
                self._offsets.append(self.samples)
                self._times.append(timestamp)
        self.samples += n_samples

    def at(self, offset: int) -> float:
        """The time of sample `offset` (offsets before the first anchor or after the last sample extrapolate)."""
        if not self._offsets:
            return offset / self.sample_rate
        i = max(bisect_right(self._offsets, offset) - 1, 0)
        return self._times[i] + (offset - self._offsets[i]) / self.sample_rate

    def forget_before(self, offset: int) -> None:
        """Drop the anchors no sample at or after `offset` needs (memory stays bounded on long calls)."""
        i = bisect_right(self._offsets, offset) - 1
        if i > 0:
            del self._offsets[:i]
            del self._times[:i]
