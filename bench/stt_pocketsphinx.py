"""PocketSphinx live legs in real time: how many the provider sustains here, and how late its results are.

For each N (BENCH_STT_LEGS, default 2,4,8,12,16; stops after the first N that is not sustained) the provider
(siprec-stt-pocketsphinx, its defaults: one decoder process per CPU, nice 5, or BENCH_STT_NICE) gets N live streams fed in 20 ms
blocks at real-time pace, all legs in the same loop tick as the recording path does, for BENCH_STT_SECONDS
(default 30) of audio. Even legs play the fixture call's agent track, odd legs the customer's (8 kHz, resampled
to 16 kHz with soxr beforehand), each pair starting 1.7 s after the previous one (leading silence), so
utterances do not all end in the same tick. Partials are on.

Per N:
- sustained: no stream failed and, after the first WARMUP_S seconds, no leg had more than SUSTAIN_BACKLOG_S
  seconds of fed audio waiting to be decoded (the stream's backlog_s, sampled every 100 ms). The pipeline itself
  switches a leg to a post-call job at 10 s; 2 s keeps the results live. The first seconds are reported apart
  ("start"): N streams opening at once make each decoder process build decoders (~0.5 s each, its other streams
  waiting), a burst that steady traffic does not have.
- partial latency: arrival of a partial minus the moment the last sample it covers was fed (the endpointer's
  0.3 s window is part of it: speech reaches the decoder that much later).
- final latency: arrival of a final minus the moment the last sample of that line (script.json's end) was fed:
  end of utterance -> final as a user sees it, the endpointer's decision (about 0.3 s of silence) included.
- loop lag: how late a 10 ms asyncio timer fires in the feeding process (the server's event loop would see this).
- cpu: decoder processes' CPU seconds per second of wall time (cores), and the feeding process's own.
- rss: the decoder processes' resident memory.

The machine has 2 cores shared with whatever else runs: the "other" column is the CPU used by every other process
meanwhile (from /proc/stat), and a run with that far from 0 measures contention as much as PocketSphinx.

`python -m bench.stt_pocketsphinx [N ...]` prints the table; `run()` returns the rows for `make bench`.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from siprec.stt.provider import StreamParams, SttError

SHARED = Path(os.environ.get("SIPREC_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
CALL = SHARED / "fixtures" / "audio" / "call"
RATE = 16000
BLOCK = 320  # 20 ms
PAIR_OFFSET_S = 1.7
SUSTAIN_BACKLOG_S = 2.0
WARMUP_S = 5.0
DEFAULT_LEGS = (2, 4, 8, 12, 16)
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Leg:
    index: int
    pcm: np.ndarray  # leading silence included
    offset_s: float
    ends: list[float]  # session times of the ends of this leg's lines
    stream: Any = None
    partial_latency: list[float] = field(default_factory=list)
    final_latency: list[float] = field(default_factory=list)
    start_backlog: float = 0.0  # the largest backlog_s in the first WARMUP_S seconds
    max_backlog: float = 0.0  # ... and afterwards
    error: str | None = None


@dataclass
class Result:
    legs: int
    sustained: bool
    start_backlog_s: float
    max_backlog_s: float
    partial_p50: float | None
    partial_p95: float | None
    final_p50: float | None
    final_p95: float | None
    finals: int
    partials: int
    lag_p99_ms: float
    lag_max_ms: float
    worker_cores: float
    main_cores: float
    other_cores: float
    rss_mb: float
    errors: list[str]


def _load_call() -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    import soundfile
    import soxr

    script = json.loads((CALL / "script.json").read_text())
    audio = {}
    for who in ("agent", "customer"):
        data, rate = soundfile.read(str(CALL / f"{who}.wav"), dtype="int16")
        audio[who] = soxr.resample(data, rate, RATE).astype(np.int16)
    return audio, script["utterances"]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _machine_busy() -> float:
    """CPU seconds used by everything on the machine (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts[:8]) - idle) / CLK_TCK


async def _measure(
    n: int, seconds: float, audio: dict[str, np.ndarray], lines: list[dict[str, Any]]
) -> Result:
    from siprec_stt_pocketsphinx import PocketsphinxConfig, PocketsphinxProvider

    provider = PocketsphinxProvider(
        PocketsphinxConfig(worker_nice=int(os.environ.get("BENCH_STT_NICE", "5")))
    )
    await provider.start()
    pool = provider._pool
    assert pool is not None
    pids = [w.pid for w in pool.workers if w is not None]
    legs: list[Leg] = []
    for k in range(n):
        who = "agent" if k % 2 == 0 else "customer"
        offset = (k // 2) * PAIR_OFFSET_S % 10.0
        pcm = np.concatenate([np.zeros(int(offset * RATE), dtype=np.int16), audio[who]])[
            : int(seconds * RATE)
        ]
        ends = [u["end"] + offset for u in lines if u["speaker"] == who and u["end"] + offset <= seconds]
        legs.append(Leg(k, pcm, offset, ends))
    for leg in legs:
        leg.stream = provider.open_stream(
            StreamParams(sample_rate=RATE, language="en-US", partials=True, call_id=f"bench-{leg.index}")
        )
    loop = asyncio.get_running_loop()
    fed_at: list[float] = []  # wall (loop) time at which block i of every leg was fed
    counts = {"finals": 0, "partials": 0}

    def fed_time(t: float) -> float | None:
        i = int(t * RATE) // BLOCK
        return fed_at[i] if i < len(fed_at) else None

    async def read(leg: Leg) -> None:
        try:
            async for result in leg.stream:
                now = loop.time()
                if result.is_final:
                    counts["finals"] += 1
                    middle = (result.start + result.end) / 2
                    end = min((e for e in leg.ends if e >= middle - 0.7), default=None)
                    at = fed_time(end) if end is not None else None
                    if at is not None:
                        leg.final_latency.append(now - at)
                else:
                    counts["partials"] += 1
                    at = fed_time(result.end - 1e-6)
                    if at is not None:
                        leg.partial_latency.append(now - at)
        except SttError as exc:
            leg.error = str(exc)

    lags: list[float] = []
    running = True

    async def tick() -> None:
        due = loop.time()
        while running:
            due += 0.01
            await asyncio.sleep(max(0.0, due - loop.time()))
            lags.append(max(0.0, loop.time() - due))
            due = max(due, loop.time())

    readers = [asyncio.create_task(read(leg)) for leg in legs]
    ticker = asyncio.create_task(tick())
    cpu0 = {pid: _proc_cpu(pid) for pid in pids}
    main0, busy0, wall0 = time.process_time(), _machine_busy(), time.monotonic()
    rss = 0.0
    t0 = loop.time()
    blocks = int(seconds * RATE) // BLOCK
    for i in range(blocks):
        delay = t0 + i * BLOCK / RATE - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        fed_at.append(loop.time())
        for leg in legs:
            if leg.error is None:
                try:
                    leg.stream.feed(leg.pcm[i * BLOCK : (i + 1) * BLOCK], i * BLOCK / RATE)
                except SttError as exc:
                    leg.error = str(exc)
        if i % 5 == 0:
            warm = i * BLOCK / RATE >= WARMUP_S
            for leg in legs:
                if warm:
                    leg.max_backlog = max(leg.max_backlog, leg.stream.backlog_s)
                else:
                    leg.start_backlog = max(leg.start_backlog, leg.stream.backlog_s)
        if i % 250 == 0:
            rss = max(rss, sum(_proc_rss_mb(pid) for pid in pids))
    wall = time.monotonic() - wall0
    cpu = sum(_proc_cpu(pid) - cpu0[pid] for pid in pids)
    main = time.process_time() - main0
    busy = _machine_busy() - busy0
    running = False
    for leg in legs:
        if leg.error is None:
            try:
                await asyncio.wait_for(leg.stream.close(), 120)
            except (SttError, TimeoutError) as exc:
                leg.error = leg.error or str(exc) or "close timed out"
    await asyncio.gather(*readers, ticker)
    await provider.close()

    partial = [x for leg in legs for x in leg.partial_latency]
    final = [x for leg in legs for x in leg.final_latency]
    errors = [f"leg {leg.index}: {leg.error}" for leg in legs if leg.error]
    max_backlog = max(leg.max_backlog for leg in legs)
    return Result(
        legs=n,
        sustained=not errors and max_backlog <= SUSTAIN_BACKLOG_S,
        start_backlog_s=max(leg.start_backlog for leg in legs),
        max_backlog_s=max_backlog,
        partial_p50=_pct(partial, 50),
        partial_p95=_pct(partial, 95),
        final_p50=_pct(final, 50),
        final_p95=_pct(final, 95),
        finals=counts["finals"],
        partials=counts["partials"],
        lag_p99_ms=(_pct(lags, 99) or 0.0) * 1000,
        lag_max_ms=max(lags, default=0.0) * 1000,
        worker_cores=cpu / wall,
        main_cores=main / wall,
        other_cores=max(0.0, busy - cpu - main) / wall,
        rss_mb=rss,
        errors=errors,
    )


def measure(legs: tuple[int, ...] | None = None, seconds: float | None = None) -> list[Result]:
    legs = legs or tuple(int(x) for x in os.environ.get("BENCH_STT_LEGS", "").split(",") if x) or DEFAULT_LEGS
    seconds = seconds or float(os.environ.get("BENCH_STT_SECONDS", "30"))
    audio, lines = _load_call()
    results: list[Result] = []
    for n in legs:
        result = asyncio.run(_measure(n, seconds, audio, lines))
        results.append(result)
        print(f"# {n} legs: {'sustained' if result.sustained else 'NOT sustained'}", file=sys.stderr)
        if not result.sustained:
            break
    return results


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(results: list[Result]) -> str:
    headers = ("legs", "sustained", "backlog max start/steady s", "partial p50/p95 s", "final p50/p95 s", "finals", "partials",
               "loop lag p99/max ms", "decoder cores", "feeder cores", "other cores", "decoder RSS MB")  # fmt: skip
    rows = [
        (
            str(r.legs),
            "yes" if r.sustained else "NO",
            f"{r.start_backlog_s:.2f} / {r.max_backlog_s:.2f}",
            f"{_s(r.partial_p50)} / {_s(r.partial_p95)}",
            f"{_s(r.final_p50)} / {_s(r.final_p95)}",
            str(r.finals),
            str(r.partials),
            f"{r.lag_p99_ms:.1f} / {r.lag_max_ms:.1f}",
            f"{r.worker_cores:.2f}",
            f"{r.main_cores:.2f}",
            f"{r.other_cores:.2f}",
            f"{r.rss_mb:.0f}",
        )
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    for r in results:
        lines += [f"legs {r.legs}: {e}" for e in r.errors[:3]]
    return "\n".join(lines)


def run() -> list[dict[str, Any]]:
    """Rows for `make bench`."""
    results = measure()
    sustained = max((r.legs for r in results if r.sustained), default=0)
    rows: list[dict[str, Any]] = [
        {"name": "pocketsphinx live legs sustained", "value": sustained, "unit": "legs"}
    ]
    for r in results:
        rows += [
            {
                "name": f"pocketsphinx {r.legs} legs: final latency p50",
                "value": r.final_p50 or 0.0,
                "unit": "s",
            },
            {
                "name": f"pocketsphinx {r.legs} legs: final latency p95",
                "value": r.final_p95 or 0.0,
                "unit": "s",
            },
            {
                "name": f"pocketsphinx {r.legs} legs: partial latency p95",
                "value": r.partial_p95 or 0.0,
                "unit": "s",
            },
            {"name": f"pocketsphinx {r.legs} legs: decoder cores", "value": r.worker_cores, "unit": "cores"},
        ]
    return rows


def main(argv: list[str]) -> int:
    legs = tuple(int(a) for a in argv) or None
    print(table(measure(legs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
