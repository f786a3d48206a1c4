"""N concurrent two-leg G.711 calls against a real `siprec serve`, on loopback: what gets recorded and what it costs.

The issue's target on a 2-core machine: 1,000 calls (2,000 legs x 50 packets/s = 100,000 packets/s) with
>= 99.99 % of the packets recorded, under 1.5 cores, <= 100 KiB RSS per call, INVITE -> 200 p99 under 50 ms.

One run per N (BENCH_CALLS, default 100,500,1000):

Each N runs once per `rtp.media_workers` value in BENCH_MEDIA_WORKERS (default: 0 and the configured default);
the server's CPU and RSS are sums over its process tree, media workers included.

1. `siprec serve` in a subprocess (so its CPU and RSS come from /proc, not from our own process) with a temporary
   config: SIP on 127.0.0.1 and a free port, recordings in a temporary folder (deleted afterwards unless
   BENCH_KEEP=1), a fresh RTP range, log level WARNING (a log line per packet would be the benchmark), no speech
   to text, no analytics, no limits. Ready when it answers an OPTIONS; then one warm-up call (see warm_up).
2. sipp (bench/sipp/load_call.xml, one UDP socket) places the N calls at BENCH_CPS calls/s and holds them.
   The RTP ports come from the SDP answers (sipp logs them per call), not from what the allocator is expected to
   do. INVITE -> 200 times come from sipp's message trace (-trace_shortmsg, microseconds): its -trace_rtt
   counts in whole milliseconds on a ~4 ms clock, too coarse for a p50 of about a millisecond.
3. Once every call is up (and after IDLE_SAMPLE_S of the server holding them without media), bench.rtp_sender
   sends BENCH_MEDIA_S seconds of PCMU to every leg. The server's CPU (utime + stime of its process tree) and RSS
   are sampled around that window, which ends when the server's RTP sockets are empty again: a server short of
   CPU reads late rather than drops (its socket buffers hold seconds of audio), and its catching up belongs to
   the cost. The backlog (bytes queued in those sockets, /proc/net/udp) is reported as well.
   Set-up latency is measured a second time inside the window (BENCH_PROBE_CPS calls/s of short extra calls
   without media): a burst of N INVITEs into an idle server and a trickle into a server busy with 100,000
   packets/s are different questions, and production asks the second. The probe calls' CPU lands in the window.
4. sipp hangs up HOLD_MARGIN_S after the media would end if set-up had been instant (so a server still that far
   behind loses the rest, as it would after a real BYE), the server is stopped with SIGTERM, and the recorded
   packets are summed from every `<dir>/<date>/<call>/manifest.json` (legs[*].packets_received). No manifest
   at all (a server without the recording module) is reported as "n/a", not as zero.

The machine has 2 cores and the load generator runs on them too, so its CPU is reported beside the server's: the
RTP sender's processes and sipp, the kernel's softirq time (loopback delivery of the datagrams is partly charged
to no process at all) and whatever else ran meanwhile ("other processes": a test suite started by someone else
makes every figure worse, so a run with that far from 0 should be repeated). Kernel receive-buffer drops come
from /proc/net/snmp and are host-wide.

`python -m bench.media_load [N ...]` prints the rows; `run()` returns them for `make bench`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.rtp_sender import DEFAULT_PROCESSES, PTIME_S, RtpSender, SendResult

SCENARIO = Path(__file__).resolve().parent / "sipp" / "load_call.xml"
HOST = "127.0.0.1"

DEFAULT_CALLS = (100, 500, 1000)
DEFAULT_MEDIA_S = 10.0
DEFAULT_CPS = 200
DEFAULT_RTP_PORT_MIN = 20000  # below Linux's ephemeral range (32768-60999), so no client socket sits in it
RTP_RANGE = 10000
# Hold time = ramp-up + media + this: covers waiting for the last 200, binding, spawning the sender.
HOLD_MARGIN_S = 10.0
IDLE_SAMPLE_S = 2.0  # server CPU with every call up and no media yet
# Set-up probe during the media window: calls/s, their hold time, and when they start after the media does.
DEFAULT_PROBE_CPS = 5.0
PROBE_HOLD_MS = 500
PROBE_DELAY_S = 0.5
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 30.0
BACKLOG_POLL_S = 0.25
DRAIN_TIMEOUT_S = 10.0

TARGET_RECORDED = 0.9999
TARGET_CORES = 1.5
TARGET_RSS_KIB = 100
TARGET_P99_MS = 50.0
TARGET_CALLS = 1000


@dataclass
class LoadResult:
    n_calls: int
    cps: float = DEFAULT_CPS
    media_workers: int = 0  # rtp.media_workers of the server (its CPU and RSS include the workers)
    established: int = 0
    completed: int = 0  # BYE answered 200
    ports_as_expected: bool | None = None  # the 2N answered ports are port_min, port_min + 2, ...
    ports_bound: int = 0  # answered RTP ports the server had bound when the media started
    sent: SendResult | None = None
    recorded: int | None = None  # None: no manifest written (no recording module)
    manifests: int = 0
    media_cpu_s: float = 0.0
    media_wall_s: float = 0.0
    setup_cpu_s: float = 0.0  # server CPU from the first INVITE until every call was up
    held_cores: float = 0.0  # server CPU with every call up but no media (timers, sweeps)
    rss_idle_kib: int = 0
    rss_calls_kib: int = 0  # every call set up, no media yet
    rss_media_kib: int = 0  # at the end of the media window
    server_fds: int = 0
    server_processes: int = 1
    setup_ms: list[float] = field(default_factory=list)  # the N calls, placed at BENCH_CPS before any media
    probe_ms: list[float] = field(default_factory=list)  # the probe calls, placed while the media flows
    probe_cps: float = 0.0
    kernel_drops: int = 0  # UDP RcvbufErrors during the media window (host-wide)
    backlog_max: int = 0  # bytes queued in the server's RTP sockets, worst sample while sending
    backlog_end: int = 0  # ... when the last packet had been sent
    drain_s: float = 0.0  # time from the last packet sent to empty queues (part of the media window)
    host_media: HostCpu | None = None  # the whole machine during the media window
    host_setup: HostCpu | None = None  # ... and while the N calls were set up
    setup_wall_s: float = 0.0
    sipp_media_cpu_s: float = 0.0
    sipp_setup_cpu_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    # --- derived figures -------------------------------------------------------------------------------
    @property
    def packets_sent(self) -> int:
        return self.sent.sent if self.sent else 0

    @property
    def recorded_ratio(self) -> float | None:
        if self.recorded is None or not self.packets_sent:
            return None
        return self.recorded / self.packets_sent

    @property
    def cpu_per_100k(self) -> float | None:
        return self.media_cpu_s * 100_000 / self.packets_sent if self.packets_sent else None

    @property
    def cores(self) -> float | None:
        return self.media_cpu_s / self.media_wall_s if self.media_wall_s > 0 else None

    @property
    def generator_cores(self) -> float | None:
        if self.media_wall_s <= 0 or self.sent is None:
            return None
        return (self.sent.cpu_s + self.sipp_media_cpu_s) / self.media_wall_s

    @property
    def softirq_cores(self) -> float | None:
        """Kernel packet delivery that no process is charged for (on loopback, ~0.3 cores at 100,000 packets/s)."""
        return (
            self.host_media.softirq_s / self.media_wall_s
            if self.host_media and self.media_wall_s > 0
            else None
        )

    @property
    def other_cores(self) -> float | None:
        """Process CPU during the media window that is neither the server nor the load generator: other work on
        the machine (a test suite, a build) that the figures above had to share the 2 cores with."""
        if self.host_media is None or self.media_wall_s <= 0 or self.sent is None:
            return None
        ours = self.media_cpu_s + self.sent.cpu_s + self.sipp_media_cpu_s
        return max(0.0, (self.host_media.process_s - ours) / self.media_wall_s)

    @property
    def setup_other_cores(self) -> float | None:
        if self.host_setup is None or self.setup_wall_s <= 0:
            return None
        ours = self.setup_cpu_s + self.sipp_setup_cpu_s
        return max(0.0, (self.host_setup.process_s - ours) / self.setup_wall_s)

    def rss_per_call_kib(self, after: int) -> float:
        return (after - self.rss_idle_kib) / self.n_calls

    def rows(self) -> list[dict]:
        n = self.n_calls
        rows: list[dict] = []

        def row(measure: str, value: object, unit: str = "", target: str = "") -> None:
            rows.append({"name": f"{n:,} calls, {self.media_workers} media workers: {measure}", "value": value,
                         "unit": unit, "target": target})

        big = n >= TARGET_CALLS  # the CPU targets are stated for 1,000 calls
        ratio = self.recorded_ratio
        if self.recorded is None:
            recorded = f"n/a / {self.packets_sent:,} (no manifest)"
        elif ratio is None:
            recorded = f"{self.recorded:,} / 0"
        else:
            recorded = f"{self.recorded:,} / {self.packets_sent:,} ({100 * ratio:.3f} %)"
        sender, wall = self.sent, self.media_wall_s
        row("established / completed", f"{self.established:,} / {self.completed:,}", "calls", f"{n:,}")
        row("packets recorded / sent", recorded, "packets", f">= {100 * TARGET_RECORDED:.2f} %")
        row(
            "server CPU per 100,000 packets",
            _num(self.cpu_per_100k),
            "CPU s",
            f"<= {TARGET_CORES}" if big else "",
        )
        row("server cores during media", _num(self.cores), "cores", f"< {TARGET_CORES}" if big else "")
        row("server RSS per call (media flowing)", round(self.rss_per_call_kib(self.rss_media_kib), 1), "KiB",
            f"<= {TARGET_RSS_KIB}")  # fmt: skip
        row(
            "server RSS per call (signalling only)",
            round(self.rss_per_call_kib(self.rss_calls_kib), 1),
            "KiB",
        )
        row("server CPU per call set-up", _num(1000 * self.setup_cpu_s / n), "CPU ms")
        row("server cores with the calls up, no media yet", _num(self.held_cores), "cores")
        target = f"p99 < {TARGET_P99_MS:g}"
        row(f"INVITE -> 200 p50 / p99 (set-up at {self.cps:g} calls/s)",
            f"{_num(percentile(self.setup_ms, 0.5))} / {_num(percentile(self.setup_ms, 0.99))}", "ms", target)  # fmt: skip
        if self.probe_cps:
            row(f"INVITE -> 200 p50 / p99 (during media, {len(self.probe_ms)} calls at {self.probe_cps:g}/s)",
                f"{_num(percentile(self.probe_ms, 0.5))} / {_num(percentile(self.probe_ms, 0.99))}", "ms", target)  # fmt: skip
        row("server receive backlog: max while sending / drained in",
            f"{self.backlog_max / 1024:,.0f} KiB / {self.drain_s * 1000:,.0f} ms")  # fmt: skip
        row("kernel UDP receive-buffer drops (host-wide)", self.kernel_drops, "packets", "0")
        row(f"load generator during media: RTP sender ({sender.processes if sender else 0} processes) + sipp",
            f"{_num(sender.cores if sender else None)} + {_num(self.sipp_media_cpu_s / wall if wall else None)}",
            "cores")  # fmt: skip
        row("kernel softirq during media (loopback delivery)", _num(self.softirq_cores), "cores")
        row("other processes on the machine (media / set-up)",
            f"{_num(self.other_cores)} / {_num(self.setup_other_cores)}", "cores", "0")  # fmt: skip
        if self.notes:
            row("notes", "; ".join(self.notes))
        return rows


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (no interpolation: with 100 calls, p99 is the second slowest call)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


# --------------------------------------------------------------------------- /proc


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ... (comm may hold spaces)


def process_tree(pid: int) -> list[int]:
    """pid and every descendant: a recorder that moves work into child processes is still measured whole."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime (+ those of reaped children) of the processes, all their threads included."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


@dataclass(frozen=True)
class HostCpu:
    """CPU seconds of the whole machine by kind (/proc/stat's cpu line), or a difference of two samples."""

    process_s: float  # user + nice + system + irq: what processes (and their system calls) used
    softirq_s: float  # network receive processing not charged to any process
    steal_s: float  # taken by the hypervisor

    @classmethod
    def sample(cls) -> HostCpu:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
        tck = os.sysconf("SC_CLK_TCK")
        return cls((user + nice + system + irq) / tck, softirq / tck, steal / tck)

    def __sub__(self, other: HostCpu) -> HostCpu:
        return HostCpu(
            self.process_s - other.process_s, self.softirq_s - other.softirq_s, self.steal_s - other.steal_s
        )


def udp_counters() -> dict[str, int]:
    lines = [
        line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")
    ]
    return dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=False)) if len(lines) >= 2 else {}


def udp_sockets(ports: set[int]) -> tuple[int, int]:
    """(how many of `ports` some socket is bound to, bytes waiting in those sockets' receive queues), from the
    kernel's IPv4 and IPv6 UDP tables. The queue is the server's backlog: what it has not read yet."""
    found: set[int] = set()
    queued = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if port in ports:
                    found.add(port)
                    queued += int(fields[4].split(":")[1], 16)
    return len(found), queued


# --------------------------------------------------------------------------- helpers


def free_port(exclude: range, *, tcp: bool = False) -> int:
    """A UDP port (free for TCP too when asked) outside `exclude`, picked by the kernel."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = udp.getsockname()[1]
            if port in exclude:
                continue
            if not tcp:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as stream:
                try:
                    stream.bind((HOST, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port found")


def free_even_pair(exclude: range) -> int:
    """An even UDP port p with p + 2 free as well (sipp's media port and the one it opens beside it)."""
    for _ in range(200):
        port = free_port(exclude)
        if port % 2 or port + 2 in exclude:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((HOST, port + 2))
            except OSError:
                continue
        return port
    raise RuntimeError("no free even port pair found")


def wait_for_options(port: int, proc: subprocess.Popen[bytes], timeout: float = READY_TIMEOUT_S) -> float:
    """Seconds until the server answers an OPTIONS with 200; raises when it exits or the time runs out."""
    started = time.monotonic()
    token = secrets.token_hex(4)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(0.2)
        local = sock.getsockname()[1]
        attempt = 0
        while time.monotonic() - started < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"siprec serve exited with {proc.returncode} before answering OPTIONS")
            attempt += 1
            request = (
                f"OPTIONS sip:srs@{HOST}:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {HOST}:{local};branch=z9hG4bK-bench-{token}-{attempt};rport\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:bench@{HOST}>;tag=bench-{token}\r\n"
                f"To: <sip:srs@{HOST}:{port}>\r\n"
                f"Call-ID: bench-ready-{token}@{HOST}\r\n"
                f"CSeq: {attempt} OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            sock.sendto(request.encode(), (HOST, port))
            with contextlib.suppress(TimeoutError, ConnectionRefusedError):
                if sock.recv(65535).startswith(b"SIP/2.0 200"):
                    return time.monotonic() - started
            time.sleep(0.1)
    raise RuntimeError(f"siprec serve did not answer OPTIONS within {timeout:.0f} s")


def sipp_command(
    sipp: str,
    sip_port: int,
    exclude: range,
    *,
    calls: int,
    cps: float,
    hold_ms: int,
    timeout_s: float,
    tag: str,
) -> list[str]:
    """sipp placing `calls` load calls at `cps`, each held `hold_ms`; all on one UDP socket. Every local port
    sipp opens (SIP, the media echo pair, the control port) is a free one, so runs beside other sipp instances
    (a test suite) do not collide on sipp's defaults."""
    return [
        sipp, f"{HOST}:{sip_port}", "-sf", str(SCENARIO), "-i", HOST, "-t", "u1",
        "-p", str(free_port(exclude)), "-mp", str(free_even_pair(exclude)), "-cp", str(free_port(exclude)),
        "-r", f"{cps:g}", "-m", str(calls), "-l", str(calls), "-d", str(hold_ms),
        "-cid_str", f"bench-{tag}-{secrets.token_hex(3)}-%u@%s",
        "-nostdin", "-trace_err", "-trace_logs", "-trace_shortmsg",
        "-timeout", f"{round(timeout_s)}s", "-timeout_error",
    ]  # fmt: skip


def start_sipp(cmd: list[str], folder: Path) -> subprocess.Popen[bytes]:
    """sipp in the background, writing its traces into `folder` (its screen output is thrown away)."""
    folder.mkdir(exist_ok=True)
    with (folder / "sipp.stderr").open("wb") as err:
        return subprocess.Popen(
            cmd, cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
        )


def sipp_trace(folder: Path, proc: subprocess.Popen[bytes], kind: str) -> Path:
    return folder / f"{SCENARIO.stem}_{proc.pid}_{kind}.log"


def warm_up(sipp: str, sip_port: int, folder: Path, exclude: range) -> None:
    """One short call before measuring. The first calls of a fresh server pay for lazy imports and first-use set-up
    (measured: one stall of ~40 ms that the next dozen INVITEs queue behind); that is start-up cost, not the
    per-call latency the p99 target is about."""
    cmd = sipp_command(sipp, sip_port, exclude, calls=1, cps=10, hold_ms=200, timeout_s=20, tag="warm-up")
    proc = start_sipp(cmd, folder)
    try:
        rc = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    if rc != 0:
        raise RuntimeError(f"warm-up call failed (sipp exit {rc}): {_tail(folder / 'sipp.stderr', 500)!r}")


def _config_yaml(sip_port: int, rec_dir: Path, store: Path, port_min: int, media_workers: int = 0) -> str:
    # JSON is YAML: no quoting pitfalls for the paths.
    config = {
        "sip": {"host": HOST, "udp_port": sip_port, "tcp_port": sip_port},
        "rtp": {"port_min": port_min, "port_max": port_min + RTP_RANGE - 1, "media_workers": media_workers},
        "recording": {"dir": str(rec_dir)},
        "stt": {"provider": "none"},
        "analytics": {"enabled": False},
        "http": {"host": HOST, "port": 0},
        "store": {"url": f"sqlite:///{store}"},
        "limits": {"max_sessions": 0, "per_source": {"concurrent": 0, "hourly": 0, "daily": 0}},
        "log": {"level": "WARNING"},
    }
    return json.dumps(config, indent=2) + "\n"


def _server_env() -> dict[str, str]:
    """Our environment without SIPREC__ overrides (or IZI aliases): the benchmark's config is the one in force."""
    from siprec.config import ENV_ALIASES, ENV_PREFIX

    return {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(ENV_PREFIX) and k.upper() not in ENV_ALIASES
    }


def siprec_command() -> list[str]:
    script = Path(sys.executable).with_name("siprec")
    return [str(script)] if script.exists() else [sys.executable, "-m", "siprec.cli"]


def read_answered_ports(log: Path) -> list[tuple[str, int, int]]:
    """(call-id, port of leg 1, port of leg 2) per call, from the scenario's <log> lines."""
    out = []
    with contextlib.suppress(OSError):
        for line in log.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def setup_times_ms(shortmsg: Path) -> tuple[list[float], int]:
    """INVITE -> 200 per call (first INVITE sent to first 200 received), and how many BYEs got their 200."""
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    byes: set[str] = set()  # by Call-ID: a retransmitted BYE is answered again
    with contextlib.suppress(OSError), shortmsg.open(errors="replace") as lines:
        for line in lines:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 7:
                continue
            _, _, epoch, direction, call_id, cseq, first = parts[:7]
            if cseq == "CSeq:1 INVITE":
                if direction == "S" and first.startswith("INVITE") and call_id not in sent:
                    sent[call_id] = float(epoch)
                elif direction == "R" and first.startswith("SIP/2.0 200") and call_id not in answered:
                    answered[call_id] = float(epoch)
            elif cseq == "CSeq:2 BYE" and direction == "R" and first.startswith("SIP/2.0 200"):
                byes.add(call_id)
    return [1000 * (answered[c] - sent[c]) for c in answered if c in sent], len(byes)


def recorded_packets(rec_dir: Path) -> tuple[int | None, int]:
    """Sum of legs[*].packets_received over every manifest, and the number of manifests (None: there are none)."""
    total, count = 0, 0
    for path in rec_dir.glob("*/*/manifest.json"):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        count += 1
        legs = doc.get("legs", [])
        items = legs.values() if isinstance(legs, dict) else legs
        total += sum(int(leg.get("packets_received", 0) or 0) for leg in items if isinstance(leg, dict))
    return (total if count else None), count


def _stop(
    proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S
) -> int | None:
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            return None
    return proc.returncode


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# --------------------------------------------------------------------------- the run


def run_load(
    n_calls: int,
    *,
    seconds: float = DEFAULT_MEDIA_S,
    cps: float = DEFAULT_CPS,
    processes: int = DEFAULT_PROCESSES,
    port_min: int = DEFAULT_RTP_PORT_MIN,
    probe_cps: float = DEFAULT_PROBE_CPS,
    keep: bool = False,
    media_workers: int = 0,
) -> LoadResult:
    """One benchmark run of `n_calls` calls with `seconds` of media on every leg. Raises when the server does not
    start or sipp fails outright; shortfalls (calls not up, packets not recorded) are in the result."""
    sipp = shutil.which("sipp")
    if sipp is None:
        raise RuntimeError("sipp is not installed (Debian package sip-tester)")
    if 4 * n_calls > RTP_RANGE:
        raise ValueError(f"{n_calls} calls need {4 * n_calls} RTP/RTCP ports; the range holds {RTP_RANGE}")
    rtp_range = range(port_min, port_min + RTP_RANGE)
    result = LoadResult(n_calls, cps=cps, media_workers=media_workers)
    tmp = Path(tempfile.mkdtemp(prefix=f"siprec-bench-{n_calls}-"))
    rec_dir, sipp_dir = tmp / "recordings", tmp / "sipp"
    sipp_dir.mkdir()
    server_log = tmp / "server.log"
    server: subprocess.Popen[bytes] | None = None
    load: subprocess.Popen[bytes] | None = None
    probe: subprocess.Popen[bytes] | None = None
    sender: RtpSender | None = None
    try:
        sip_port = free_port(rtp_range, tcp=True)
        config = tmp / "siprec.yaml"
        config.write_text(_config_yaml(sip_port, rec_dir, tmp / "siprec.db", port_min, media_workers))
        with server_log.open("wb") as out:
            server = subprocess.Popen(
                [*siprec_command(), "serve", "--config", str(config)],
                cwd=tmp, env=_server_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_for_options(sip_port, server)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{_tail(server_log)}") from None
        warm_up(sipp, sip_port, sipp_dir / "warm-up", rtp_range)
        time.sleep(0.5)  # let the warm-up's garbage settle before the idle sample
        tree = process_tree(server.pid)
        result.rss_idle_kib = rss_kib(tree)

        # --- signalling: N calls, held for the ramp-up + the media window + a margin
        ramp_s = n_calls / cps
        hold_s = ramp_s + seconds + HOLD_MARGIN_S
        cmd = sipp_command(
            sipp, sip_port, rtp_range, calls=n_calls, cps=cps, hold_ms=round(hold_s * 1000),
            timeout_s=hold_s + ramp_s + 60, tag="load",
        )  # fmt: skip
        cpu_before_calls, host_before_calls = cpu_seconds(tree), HostCpu.sample()
        sipp_started = time.monotonic()
        load = start_sipp(cmd, sipp_dir / "load")
        log_file = sipp_trace(sipp_dir / "load", load, "logs")
        deadline = sipp_started + 2 * ramp_s + 30
        answered: list[tuple[str, int, int]] = []
        while time.monotonic() < deadline and load.poll() is None:
            answered = read_answered_ports(log_file)
            if len(answered) >= n_calls:
                break
            time.sleep(0.1)
        answered = read_answered_ports(log_file)
        result.established = len(answered)
        tree = process_tree(server.pid)
        result.setup_cpu_s = cpu_seconds(tree) - cpu_before_calls
        result.host_setup = HostCpu.sample() - host_before_calls
        result.setup_wall_s = time.monotonic() - sipp_started
        result.sipp_setup_cpu_s = cpu_seconds([load.pid])
        if load.poll() is not None and load.returncode not in (0, 1):
            raise RuntimeError(
                f"sipp exited with {load.returncode}: {_tail(sipp_dir / 'load' / 'sipp.stderr', 800)}"
            )
        if result.established < n_calls:
            result.notes.append(
                f"only {result.established} of {n_calls} calls answered within {deadline - sipp_started:.0f} s"
            )
        ports = [p for _, p1, p2 in answered for p in (p1, p2)]
        first = min(ports, default=port_min)
        result.ports_as_expected = sorted(ports) == [first + 2 * i for i in range(2 * n_calls)]
        if not result.ports_as_expected:
            result.notes.append("answered RTP ports are not 2N consecutive even ports")
        # Media receivers may be bound a moment after the 200: give them up to 2 s, then go on regardless.
        wanted = set(ports)
        settle = time.monotonic() + 2.0
        while (bound := udp_sockets(wanted)[0]) < len(wanted) and time.monotonic() < settle:
            time.sleep(0.1)
        result.ports_bound = bound
        if bound < len(wanted):
            result.notes.append(f"server had bound {bound} of {len(wanted)} answered RTP ports")
        result.rss_calls_kib = rss_kib(tree)
        cpu_idle0, idle0 = cpu_seconds(tree), time.monotonic()
        time.sleep(IDLE_SAMPLE_S)
        result.held_cores = (cpu_seconds(tree) - cpu_idle0) / (time.monotonic() - idle0)

        # --- media
        sender = RtpSender(HOST, ports, max(1, round(seconds / PTIME_S)), processes=processes)
        start_at = sender.start()
        first_bye = sipp_started + hold_s
        if start_at + seconds + 1.0 > first_bye:
            result.notes.append(
                "media window overlaps the first BYEs (set-up too slow): late packets are lost"
            )
        time.sleep(max(0.0, start_at - time.monotonic()))
        tree = process_tree(server.pid)
        cpu0, sipp0, snmp0, host0 = (
            cpu_seconds(tree),
            cpu_seconds([load.pid]),
            udp_counters(),
            HostCpu.sample(),
        )
        t0 = time.monotonic()
        if probe_cps > 0 and seconds >= 3:
            # Set-up latency while the media flows: a few more calls, inside the window, that get no RTP.
            time.sleep(PROBE_DELAY_S)
            result.probe_cps = probe_cps
            cmd = sipp_command(
                sipp, sip_port, rtp_range, calls=max(1, int(probe_cps * (seconds - 2))), cps=probe_cps,
                hold_ms=PROBE_HOLD_MS, timeout_s=seconds + 60, tag="probe",
            )  # fmt: skip
            probe = start_sipp(cmd, sipp_dir / "probe")
        # While the sender runs, watch the server's backlog; afterwards let it drain, so that the CPU it spends
        # catching up (a server short of CPU reads late, without dropping: the socket buffers hold seconds of RTP)
        # is counted in the window.
        give_up = time.monotonic() + seconds * 3 + 30
        while not sender.finished() and time.monotonic() < give_up:
            result.backlog_max = max(result.backlog_max, udp_sockets(wanted)[1])
            time.sleep(BACKLOG_POLL_S)
        result.sent = sender.join(timeout=max(1.0, give_up - time.monotonic()))
        sent_at = time.monotonic()
        result.backlog_end = udp_sockets(wanted)[1]
        while udp_sockets(wanted)[1] and time.monotonic() < sent_at + DRAIN_TIMEOUT_S:
            time.sleep(0.02)
        result.drain_s = time.monotonic() - sent_at
        if (left := udp_sockets(wanted)[1]) > 0:
            result.notes.append(
                f"server still {left / 1024:,.0f} KiB behind {DRAIN_TIMEOUT_S:g} s after the last packet"
            )
        tree = process_tree(server.pid)
        cpu1, sipp1, snmp1, host1 = (
            cpu_seconds(tree),
            cpu_seconds([load.pid]),
            udp_counters(),
            HostCpu.sample(),
        )
        t1 = time.monotonic()
        result.media_cpu_s, result.media_wall_s = cpu1 - cpu0, t1 - t0
        result.sipp_media_cpu_s = sipp1 - sipp0
        result.host_media = host1 - host0
        if result.host_media.steal_s > 0.05 * result.media_wall_s:
            result.notes.append(
                f"hypervisor steal {result.host_media.steal_s / result.media_wall_s:.2f} cores"
            )
        result.rss_media_kib = rss_kib(tree)
        result.server_fds = open_fds(server.pid)
        result.server_processes = len(tree)
        result.kernel_drops = snmp1.get("RcvbufErrors", 0) - snmp0.get("RcvbufErrors", 0)
        if result.sent.errors:
            result.notes.append(f"{result.sent.errors:,} sendto errors")
        if result.sent.max_lag_ms > 2 * PTIME_S * 1000:
            result.notes.append(f"sender fell {result.sent.max_lag_ms:.0f} ms behind its schedule at worst")

        # --- hang-up, stop, count
        if probe is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                probe.wait(30)
            if _stop(probe, signal.SIGKILL, 5) not in (0, None):
                result.notes.append("some set-up probe calls failed")
            result.probe_ms, _ = setup_times_ms(sipp_trace(sipp_dir / "probe", probe, "shortmessages"))
        try:
            load.wait(max(10.0, first_bye - time.monotonic() + ramp_s + 30))
        except subprocess.TimeoutExpired:
            result.notes.append("sipp did not finish: killed")
        rc = _stop(load, signal.SIGKILL, 5)
        if rc not in (0, None):
            result.notes.append(f"sipp exit code {rc} (failed calls; see its error log)")
        result.setup_ms, result.completed = setup_times_ms(
            sipp_trace(sipp_dir / "load", load, "shortmessages")
        )
        rc = _stop(server)
        if rc is None:
            result.notes.append("server did not stop on SIGTERM: killed")
        elif rc != 0:
            result.notes.append(f"server exit code {rc}: {_tail(server_log, 300)!r}")
        result.recorded, result.manifests = recorded_packets(rec_dir)
        if result.recorded is not None and result.manifests < n_calls:
            result.notes.append(f"{result.manifests} manifests for {n_calls} calls")
        return result
    finally:
        if sender is not None:
            sender.close()
        _stop(load, signal.SIGKILL, 5)
        _stop(probe, signal.SIGKILL, 5)
        _stop(server)
        if keep:
            print(f"# media_load: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- table


def _calls_from_env() -> list[int]:
    raw = os.environ.get("BENCH_CALLS", "")
    return [int(x) for x in raw.replace(" ", "").split(",") if x] or list(DEFAULT_CALLS)


def _workers_from_env() -> list[int]:
    from siprec.config import RtpConfig

    default = RtpConfig().media_workers
    raw = os.environ.get("BENCH_MEDIA_WORKERS", "")
    return [int(x) for x in raw.replace(" ", "").split(",") if x] or sorted({0, default})


def run(calls: list[int] | None = None) -> list[dict]:
    """Rows for `make bench`. Knobs: BENCH_CALLS=100,500,1000, BENCH_MEDIA_WORKERS=0,<default> (each N is run
    once per value of rtp.media_workers), BENCH_MEDIA_S=10, BENCH_CPS=200, BENCH_PROBE_CPS=5 (0: no set-up probe
    during the media), BENCH_SENDER_PROCESSES=2, BENCH_RTP_PORT_MIN=20000, BENCH_KEEP=1 (keep the recordings and
    sipp traces)."""
    if shutil.which("sipp") is None:
        return [
            {"name": "media load", "value": "not available", "unit": "", "target": "needs sipp (sip-tester)"}
        ]
    seconds = float(os.environ.get("BENCH_MEDIA_S", DEFAULT_MEDIA_S))
    cps = float(os.environ.get("BENCH_CPS", DEFAULT_CPS))
    probe_cps = float(os.environ.get("BENCH_PROBE_CPS", DEFAULT_PROBE_CPS))
    processes = int(os.environ.get("BENCH_SENDER_PROCESSES", DEFAULT_PROCESSES))
    port_min = int(os.environ.get("BENCH_RTP_PORT_MIN", DEFAULT_RTP_PORT_MIN))
    keep = os.environ.get("BENCH_KEEP", "") not in ("", "0")
    rows: list[dict] = []
    runs = [(n, w) for n in calls or _calls_from_env() for w in _workers_from_env()]
    for n, workers in runs:
        started = time.monotonic()
        try:
            result = run_load(
                n,
                seconds=seconds,
                cps=cps,
                processes=processes,
                port_min=port_min,
                probe_cps=probe_cps,
                keep=keep,
                media_workers=workers,
            )
        except Exception as exc:  # one failed N must not hide the others (benchmarks never fail the build)
            rows.append(
                {
                    "name": f"{n:,} calls, {workers} media workers",
                    "value": "failed",
                    "unit": "",
                    "target": f"{type(exc).__name__}: {exc}",
                }
            )
            continue
        finally:
            print(f"# media_load: {n:,} calls, {workers} media workers: {time.monotonic() - started:.1f} s",
                  file=sys.stderr)  # fmt: skip
        rows.extend(result.rows())
    return rows


def main(argv: list[str]) -> int:
    rows = run([int(a) for a in argv] or None)
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        value = r["value"] if isinstance(r["value"], str) else f"{r['value']:,}"
        print(f"{r['name'].ljust(width)}  {value:>28} {r['unit']:<8} {r['target']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
