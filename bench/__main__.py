"""`make bench`: runs every benchmark module's `run()` and prints one table.

Each module returns rows {name, value, unit, target}; a module whose dependencies are missing is reported, not
hidden. Benchmarks measure; they never fail the build (targets are printed beside the figures).
"""

from __future__ import annotations

import importlib
import sys
import time

# media_load starts a real server and sipp: its rows (N = BENCH_CALLS, default 100,500,1000) come last.
MODULES = (
    "bench.sip_parser",
    "bench.rtp_path",
    "bench.ws_fanout",  # 200 WebSocket clients on one call, one never reading
    "bench.analytics",  # sentiment and keywords per final, snapshot round
    "tests.integration.store.outbox_throughput",  # AMQP outbox: events/s stored, published and confirmed
    "bench.stt_whisper",  # concurrent live legs in real time, end-of-utterance -> final latency
    "bench.stt_pocketsphinx",
    "bench.media_load",
)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def main(argv: list[str]) -> int:
    wanted = [m for m in MODULES if not argv or any(a in m for a in argv)]
    rows: list[tuple[str, str, str, str, str]] = []
    for name in wanted:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            rows.append((name, "not available", "", "", str(exc)))
            continue
        started = time.perf_counter()
        for row in module.run():
            rows.append((name.split(".")[-1], row["name"], _fmt(row["value"]), str(row.get("unit", "")), str(row.get("target", ""))))
        print(f"# {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    headers = ("suite", "measure", "value", "unit", "target")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)] if rows else [len(h) for h in headers]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
