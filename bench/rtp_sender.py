"""Load generator for RTP: G.711 (PCMU) legs at 20 ms per packet, sent by a few worker processes.

Used by bench.media_load. One Python process tops out well below the 100,000 packets/s of 1,000 two-leg calls
once the kernel's loopback delivery (charged to the sender) is counted, so the legs are split over processes.
Each worker owns its legs and ONE unconnected UDP socket: every packet of a leg leaves from the same source
address, which is what the recorder latches on to, and an unconnected socket never reports the ICMP "port
unreachable" of a receiver that is not bound (yet) as an error on the next send.

Cheap on purpose, because it shares the machine with the server it measures: a leg's packet is the 8-byte
header prefix of the tick (version, payload type, sequence, timestamp: the same for every leg of the tick) glued
to the leg's prebuilt SSRC + payload, then one `sendto`. The legs of a worker are spread over `slots` instants
inside each 20 ms tick, so the server sees a steady stream rather than one burst per tick. A worker that falls
behind catches up without skipping packets (every leg gets exactly `packets_per_leg`) and reports how late it got.

`python -m bench.rtp_sender HOST PORT_MIN LEGS [SECONDS]` sends to LEGS even ports from PORT_MIN (no server
needed: it then measures the sender alone).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.connection
import os
import resource
import socket
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

PTIME_S = 0.020
SAMPLES_PER_PACKET = 160  # 20 ms at 8 kHz
PAYLOAD_TYPE_PCMU = 0
PAYLOAD = bytes([0xFF, 0xFE, 0x7F, 0x7E]) * 40  # 160 bytes of near-silence in mu-law (no all-same bytes)
SSRC_BASE = 0x5EC0_0000
SEQUENCE_START = 1000
TIMESTAMP_START = 160_000
SNDBUF = 4 * 1024 * 1024
DEFAULT_PROCESSES = 2
DEFAULT_SLOTS = 20  # instants per 20 ms tick at which a worker sends (one group of legs each)

_PREFIX = struct.Struct("!BBHI")  # V=2 P=0 X=0 CC=0 | M=0 PT | sequence | timestamp


@dataclass(frozen=True)
class WorkerResult:
    legs: int
    attempted: int
    errors: int  # sendto failures (ENOBUFS, EPERM, ...): not on the wire
    cpu_s: float  # user + system time of the worker, kernel loopback delivery included
    max_lag_ms: float  # how far behind its schedule the worker got at worst


@dataclass(frozen=True)
class SendResult:
    legs: int
    packets_per_leg: int
    sent: int  # sendto successes
    errors: int
    cpu_s: float
    wall_s: float  # from the common start instant to the last worker's last packet
    max_lag_ms: float
    processes: int

    @property
    def cores(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


def _worker(
    host: str,
    legs: Sequence[tuple[int, int]],  # (destination port, ssrc)
    packets_per_leg: int,
    start_at: float,
    slots: int,
    conn: multiprocessing.connection.Connection,
) -> None:
    """Runs in a child process: sends, then reports a WorkerResult (as a tuple) and the end instant on `conn`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with contextlib.suppress(OSError):  # the default buffer only makes ENOBUFS more likely; they are counted
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
    sock.bind((host, 0))
    sendto = sock.sendto
    # Legs grouped by slot; each leg is (ssrc + payload, address), built once.
    groups: list[list[tuple[bytes, tuple[str, int]]]] = [[] for _ in range(min(slots, max(1, len(legs))))]
    for i, (port, ssrc) in enumerate(legs):
        groups[i % len(groups)].append((struct.pack("!I", ssrc) + PAYLOAD, (host, port)))
    step = PTIME_S / len(groups)
    pack = _PREFIX.pack
    errors = 0
    max_lag = 0.0
    monotonic, sleep = time.monotonic, time.sleep
    conn.send("ready")
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    for k in range(packets_per_leg):
        prefix = pack(
            0x80,
            PAYLOAD_TYPE_PCMU,
            (SEQUENCE_START + k) & 0xFFFF,
            (TIMESTAMP_START + k * SAMPLES_PER_PACKET) & 0xFFFFFFFF,
        )
        tick = start_at + k * PTIME_S
        for s, group in enumerate(groups):
            delay = tick + s * step - monotonic()
            if delay > 0:
                sleep(delay)
            elif -delay > max_lag:
                max_lag = -delay
            for tail, addr in group:
                try:
                    sendto(prefix + tail, addr)
                except OSError:
                    errors += 1
    end = monotonic()
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    sock.close()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    conn.send(((len(legs), len(legs) * packets_per_leg, errors, cpu, max_lag * 1000.0), end))
    conn.close()


class RtpSender:
    """Sends `packets_per_leg` packets to every port in `ports` (one leg each) from `processes` workers.

    `start()` spawns the workers and returns the common start instant (time.monotonic(), the same clock in every
    process on Linux); `join()` waits and sums up. The split lets the caller sample the server exactly around
    the sending window."""

    def __init__(
        self,
        host: str,
        ports: Sequence[int],
        packets_per_leg: int,
        *,
        processes: int = DEFAULT_PROCESSES,
        slots: int = DEFAULT_SLOTS,
        lead_s: float = 0.5,
    ) -> None:
        if packets_per_leg < 1:
            raise ValueError("packets_per_leg must be >= 1")
        self.host = host
        self.ports = list(ports)
        self.packets_per_leg = packets_per_leg
        self.processes = max(1, min(processes, len(self.ports) or 1))
        self.slots = slots
        self.lead_s = lead_s
        self._procs: list[tuple[mp.process.BaseProcess, multiprocessing.connection.Connection]] = []
        self.start_at = 0.0

    def start(self) -> float:
        # spawn, not fork: the parent may hold threads (numpy, from other benchmarks) and a fork would copy them
        # half-done; the workers need nothing from the parent but their arguments.
        ctx = mp.get_context("spawn")
        legs = [(port, SSRC_BASE + i) for i, port in enumerate(self.ports)]
        # The start instant is fixed before spawning and pushed back if spawning takes longer than lead_s.
        self.start_at = time.monotonic() + self.lead_s + 0.1 * self.processes
        for p in range(self.processes):
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_worker,
                args=(
                    self.host,
                    legs[p :: self.processes],
                    self.packets_per_leg,
                    self.start_at,
                    self.slots,
                    child,
                ),
                name=f"rtp-sender-{p}",
                daemon=True,
            )
            proc.start()
            child.close()
            self._procs.append((proc, parent))
        for proc, conn in self._procs:
            if not conn.poll(30):
                raise RuntimeError(f"{proc.name} did not start")
            conn.recv()  # "ready"
        return self.start_at

    def finished(self) -> bool:
        """Every worker has sent its last packet (join() will not wait)."""
        return all(conn.poll() for _, conn in self._procs)

    def join(self, timeout: float | None = None) -> SendResult:
        deadline = None if timeout is None else time.monotonic() + timeout
        results: list[WorkerResult] = []
        last_end = self.start_at
        for proc, conn in self._procs:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not conn.poll(wait):
                proc.kill()
                raise RuntimeError(f"{proc.name} did not finish in time")
            (legs, attempted, errors, cpu, lag), end = conn.recv()
            results.append(WorkerResult(legs, attempted, errors, cpu, lag))
            last_end = max(last_end, end)
            proc.join()
        self._procs = []
        attempted = sum(r.attempted for r in results)
        errors = sum(r.errors for r in results)
        return SendResult(
            legs=sum(r.legs for r in results),
            packets_per_leg=self.packets_per_leg,
            sent=attempted - errors,
            errors=errors,
            cpu_s=sum(r.cpu_s for r in results),
            wall_s=last_end - self.start_at,
            max_lag_ms=max((r.max_lag_ms for r in results), default=0.0),
            processes=len(results),
        )

    def close(self) -> None:
        """Kill workers still running (after an error in the caller)."""
        for proc, _ in self._procs:
            if proc.is_alive():
                proc.kill()
            proc.join(5)
        self._procs = []


def send_rtp(host: str, ports: Sequence[int], packets_per_leg: int, **kwargs: int) -> SendResult:
    sender = RtpSender(host, ports, packets_per_leg, **kwargs)
    try:
        sender.start()
        return sender.join()
    finally:
        sender.close()


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.split("\n\n")[-1].strip(), file=sys.stderr)
        return 2
    host, port_min, legs = argv[0], int(argv[1]), int(argv[2])
    seconds = float(argv[3]) if len(argv) > 3 else 5.0
    processes = int(os.environ.get("BENCH_SENDER_PROCESSES", DEFAULT_PROCESSES))
    result = send_rtp(
        host, [port_min + 2 * i for i in range(legs)], round(seconds / PTIME_S), processes=processes
    )
    print(
        f"{result.sent:,} packets to {result.legs} legs in {result.wall_s:.2f} s "
        f"({result.sent / result.wall_s:,.0f}/s), {result.errors} errors, sender CPU {result.cpu_s:.2f} s "
        f"({result.cores:.2f} cores, {result.processes} processes), max lag {result.max_lag_ms:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
