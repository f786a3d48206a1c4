"""How many live legs the whisper provider transcribes in real time here, finals only (partials off).

For each N (BENCH_STT_LEGS, default 2,4,8,12): one provider (one model, its decode pool) and N streams fed at
real-time pace, 20 ms blocks, with the two-party call fixture (../shared/fixtures/audio/call, resampled 8 -> 16 kHz
with soxr). The legs come in pairs, as calls: the agent and the customer track of one call, taking turns. Call c of
C starts c/C of the way into the tracks (wrapping round), so that the calls do not all speak at once as N copies of
one call would. BENCH_STT_S seconds of audio per leg (default: the whole 50.4 s track).

Latency of a final = the wall-clock time it arrived minus the wall-clock time the block holding its last speech
sample was fed. It includes the end-of-utterance silence the VAD waits for (min_silence_ms, 0.5 s by default) and
the decode, as a listener sees it. N legs are "sustained" in real time when no final came more than MAX_LAG_S after
its end of speech: the decode pool keeps up, nothing piles up, and the pipeline (which switches a leg to post-call
when it is 10 s behind) would never see a leg lagging, with a 2x margin. p50/p95 are printed beside it against the
issue's "words on the bus within about a second". The finals that close() forces at the end of the feed are not
timed (they have no end of speech); "drain" is how long they took: every leg ends at the same instant here, a
burst real traffic does not make, so it is reported, not judged.

Also reported: the benchmark process's CPU (cores: decoding, VAD and feeding), the CPU used by every other process
meanwhile (the machine has 2 cores and other work on it makes every figure worse: repeat a run where that is far
from 0), and the WER of the finals against script.json (a sanity check that speed did not cost accuracy).

`python -m bench.stt_whisper [N ...]` prints the table; `run()` returns the rows for `make bench`. Options of the
provider come from BENCH_STT_<KEY> (e.g. BENCH_STT_BEAM_SIZE=5, BENCH_STT_FINAL_WINDOW=fit, BENCH_STT_WORKERS=1).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.wer import normalise, word_edits

REPO = Path(__file__).resolve().parents[1]
CALL = Path(os.environ.get("SIPREC_SHARED_DIR", REPO.parent / "shared")) / "fixtures" / "audio" / "call"
DEFAULT_LEGS = (2, 4, 8, 12)
BLOCK_S = 0.02
RATE = 16000
MAX_LAG_S = 5.0


def load_tracks() -> dict[str, np.ndarray]:
    import soundfile
    import soxr

    tracks = {}
    for who in ("agent", "customer"):
        audio, rate = soundfile.read(CALL / f"{who}.wav", dtype="float32")
        tracks[who] = np.clip(np.round(soxr.resample(audio, rate, RATE) * 32768), -32768, 32767).astype(
            np.int16
        )
    return tracks


@dataclass
class Leg:
    track: str
    audio: np.ndarray  # the leg's audio, already rotated to its starting point
    offset_s: float  # where in its track the leg starts
    fed_wall: list[float] = field(default_factory=list)  # wall time at which block k was fed
    finals: list[tuple[float, float, str]] = field(default_factory=list)  # (arrival wall, speech end, text)


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_machine() -> float:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # minus idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


async def run_legs(n: int, seconds: float, tracks: dict[str, np.ndarray], options: dict[str, str]) -> dict:
    from siprec_stt_whisper import WhisperConfig, WhisperProvider

    from siprec.stt.provider import StreamParams

    provider = WhisperProvider(WhisperConfig(**options))
    await provider.start()
    legs = []
    calls = (n + 1) // 2
    for i in range(n):
        track = "agent" if i % 2 == 0 else "customer"
        audio = tracks[track]
        start = int(len(audio) * (i // 2) / calls) // 320 * 320
        rotated = np.concatenate((audio[start:], audio[:start]))[: int(seconds * RATE)]
        legs.append(Leg(track, rotated, start / RATE))
    streams = [
        provider.open_stream(StreamParams(RATE, "en-US", partials=False, call_id=f"bench-{i}"))
        for i in range(n)
    ]

    async def collect(leg: Leg, stream) -> None:
        async for result in stream:
            if result.is_final:
                leg.finals.append((time.perf_counter(), result.end, result.text))

    readers = [asyncio.create_task(collect(leg, s)) for leg, s in zip(legs, streams, strict=True)]
    blocks = len(legs[0].audio) // 320
    cpu0, machine0, t0 = _cpu_self(), _cpu_machine(), time.perf_counter()
    max_backlog = 0.0
    for k in range(blocks):
        delay = t0 + k * BLOCK_S - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.perf_counter()
        for leg, stream in zip(legs, streams, strict=True):
            stream.feed(leg.audio[k * 320 : (k + 1) * 320], k * BLOCK_S)
            leg.fed_wall.append(now)
        max_backlog = max(max_backlog, max(s.backlog_s for s in streams))
    fed_end = time.perf_counter()
    await asyncio.gather(*(s.close() for s in streams))
    await asyncio.gather(*readers)
    drain = time.perf_counter() - fed_end
    cpu_self, machine, wall = _cpu_self() - cpu0, _cpu_machine() - machine0, time.perf_counter() - t0
    await provider.close()

    latencies = []
    for leg in legs:
        for arrived, end, _ in leg.finals:
            block = min(int(end / BLOCK_S), len(leg.fed_wall) - 1)  # the block holding the last speech sample
            if (
                end < len(leg.audio) / RATE - 0.05
            ):  # finals forced by close() at the end of the feed are not timed
                latencies.append(arrived - leg.fed_wall[block])
    latencies.sort()
    p50 = statistics.median(latencies) if latencies else float("nan")
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else float("nan")
    return {
        "legs": n,
        "finals": sum(len(leg.finals) for leg in legs),
        "p50": p50,
        "p95": p95,
        "max": latencies[-1] if latencies else float("nan"),
        "drain": drain,
        "max_backlog": max_backlog,
        "cpu_self": cpu_self / wall,
        "cpu_other": max(0.0, (machine - cpu_self) / wall),
        "wer": _wer(legs, seconds) if seconds >= 50 else None,
        "sustained": bool(latencies) and latencies[-1] <= MAX_LAG_S,
    }


def _wer(legs: list[Leg], seconds: float) -> float:
    """WER of the call that starts at the beginning of the tracks and hears them whole (the others are cut)."""
    script = json.loads((CALL / "script.json").read_text())
    edits = words = 0
    for leg in legs:
        if leg.offset_s != 0.0:
            continue
        ref = normalise(" ".join(u["text"] for u in script["utterances"] if u["speaker"] == leg.track))
        hyp = normalise(" ".join(text for _, _, text in sorted(leg.finals, key=lambda f: f[1])))
        edits, words = edits + word_edits(ref, hyp), words + len(ref)
    return edits / words if words else float("nan")


def _options() -> dict[str, str]:
    prefix = "BENCH_STT_"
    skip = {"BENCH_STT_LEGS", "BENCH_STT_S"}
    return {
        k[len(prefix) :].lower(): v for k, v in os.environ.items() if k.startswith(prefix) and k not in skip
    }


def measure(counts: tuple[int, ...], seconds: float):  # noqa: ANN201 (an iterator of result dicts)
    tracks = load_tracks()
    options = _options()
    for n in counts:
        yield asyncio.run(run_legs(n, seconds, tracks, options))


def _counts(argv: list[str]) -> tuple[int, ...]:
    return tuple(int(a) for a in argv) or tuple(
        int(x) for x in os.environ.get("BENCH_STT_LEGS", ",".join(map(str, DEFAULT_LEGS))).split(",")
    )


def rows_of(results: list[dict]) -> list[dict]:
    rows = []
    for r in results:
        n = r["legs"]
        rows += [
            {"name": f"whisper {n} legs: real time sustained", "value": "yes" if r["sustained"] else "no", "unit": "",
             "target": ">= 8 legs"},
            {"name": f"whisper {n} legs: end of utterance -> final p50", "value": r["p50"], "unit": "s",
             "target": "about 1"},
            {"name": f"whisper {n} legs: end of utterance -> final p95", "value": r["p95"], "unit": "s",
             "target": ""},
            {"name": f"whisper {n} legs: CPU (this process / others)", "value": f"{r['cpu_self']:.2f} / {r['cpu_other']:.2f}",
             "unit": "cores", "target": ""},
        ]  # fmt: skip
    return rows


def run() -> list[dict]:
    return rows_of(list(measure(_counts([]), float(os.environ.get("BENCH_STT_S", "50.4")))))


def main(argv: list[str]) -> int:
    counts = _counts(argv)
    seconds = float(os.environ.get("BENCH_STT_S", "50.4"))
    print(f"# whisper, options {_options() or 'defaults'}, {seconds:g} s of audio per leg, fed in real time")
    header = "legs | finals | p50 s | p95 s | max s | drain s | max backlog s | CPU self | CPU others | WER  | sustained"
    print(header)
    print("-" * len(header))
    for r in measure(counts, seconds):
        wer = "n/a " if r["wer"] is None else f"{r['wer']:.3f}"
        print(
            f"{r['legs']:>4} | {r['finals']:>6} | {r['p50']:5.2f} | {r['p95']:5.2f} | {r['max']:5.2f} | {r['drain']:7.2f} |"
            f" {r['max_backlog']:13.2f} | {r['cpu_self']:8.2f} | {r['cpu_other']:10.2f} | {wer} | "
            f"{'yes' if r['sustained'] else 'no'}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
