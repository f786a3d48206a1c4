"""RTP media path on one core: parse -> jitter buffer -> G.711 decode, as the receiver will drive it.

1,000 recorded calls are 2,000 legs x 50 packets/s = 100,000 packets/s; the target leaves room for the socket
layer and the writers within 1.5 cores. `python -m bench.rtp_path` prints the table; `run()` returns the rows.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import numpy as np

from rtp.codecs.base import decode_frames
from rtp.codecs.g711 import PcmuDecoder, ulaw_encode
from rtp.jitter import Frame, JitterBuffer
from rtp.packet import build_rtp, parse_rtp

TARGET_PPS = 100_000
PACKETS = 100_000
BATCH = 25  # packets per decode block (500 ms of one leg)


def _datagrams(n: int) -> list[tuple[bytes, float]]:
    """n 20 ms PCMU packets of one leg with network jitter (some reordering) and 0.5 % loss."""
    rng = random.Random(1)
    tone = ulaw_encode((np.sin(np.arange(160) * 0.3) * 8000).astype(np.int16))
    out = []
    for i in range(n):
        if rng.random() < 0.005:
            continue
        arrival = 1_700_000_000.0 + i * 0.02 + 0.005 + rng.expovariate(1 / 0.008)
        out.append((build_rtp(0, i & 0xFFFF, (i * 160) & 0xFFFFFFFF, 0x1234, tone), arrival))
    out.sort(key=lambda d: d[1])
    return out


def _parse_only(data: list[tuple[bytes, float]]) -> None:
    for raw, _ in data:
        parse_rtp(raw)


def _parse_jitter(data: list[tuple[bytes, float]]) -> None:
    jb = JitterBuffer(8000, 160, 60, duration_of=len)
    push, pop = jb.push, jb.pop_ready
    for raw, arrival in data:
        p = parse_rtp(raw)
        push(p.sequence, p.timestamp, p.payload, arrival)
        pop(arrival)
    jb.flush()


def _full_path(data: list[tuple[bytes, float]], batch: int = BATCH) -> None:
    jb = JitterBuffer(8000, 160, 60, duration_of=len)
    dec = PcmuDecoder()
    push, pop = jb.push, jb.pop_ready
    frames: list[Frame] = []
    n = 0
    for raw, arrival in data:
        p = parse_rtp(raw)
        push(p.sequence, p.timestamp, p.payload, arrival)
        frames += pop(arrival)
        n += 1
        if n == batch:
            decode_frames(dec, frames)
            frames = []
            n = 0
    frames += jb.flush()
    decode_frames(dec, frames)


def _best_rate(fn: Callable[[list[tuple[bytes, float]]], None], data: list[tuple[bytes, float]], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn(data)
        best = min(best, time.perf_counter() - started)
    return len(data) / best


def run() -> list[dict]:
    data = _datagrams(PACKETS)
    parse = _best_rate(_parse_only, data)
    jitter = _best_rate(_parse_jitter, data)
    full = _best_rate(_full_path, data)
    per_packet = _best_rate(lambda d: _full_path(d, batch=1), data)
    return [
        {"name": "RTP parse", "value": round(parse), "unit": "packets/s", "target": ""},
        {"name": "parse + jitter buffer", "value": round(jitter), "unit": "packets/s", "target": ""},
        {"name": f"parse + jitter + PCMU decode ({BATCH}-packet blocks)", "value": round(full), "unit": "packets/s",
         "target": f">= {TARGET_PPS:,}"},
        {"name": "parse + jitter + PCMU decode (per packet)", "value": round(per_packet), "unit": "packets/s",
         "target": ""},
        {"name": "legs per core at 50 packets/s (blocks)", "value": round(full / 50), "unit": "legs",
         "target": ">= 2,000"},
        {"name": "us per packet (blocks)", "value": 1e6 / full, "unit": "us", "target": "<= 10"},
    ]


def main() -> None:
    rows = run()
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        value = f"{r['value']:,.2f}" if isinstance(r["value"], float) else f"{r['value']:,}"
        print(f"{r['name'].ljust(width)}  {value:>12} {r['unit']:<10} {r['target']}")


if __name__ == "__main__":
    main()
