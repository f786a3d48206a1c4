"""N concurrent two-leg G.711 calls against a real `siprec serve`, on loopback: what gets recorded and what it costs.

The issue's target on a 2-core machine: 1,000 calls (2,000 legs x 50 packets/s = 100,000 packets/s) with
>= 99.99 % of the packets recorded, under 1.5 cores, <= 100 KiB RSS per call, INVITE -> 200 p99 under 50 ms.

One run per N (BENCH_CALLS, default 100,500,1000):

1. `siprec serve` in a subprocess (so its CPU and RSS come from /proc, not from our own process) with a temporary
   config: SIP on 127.0.0.1 and a free port, recordings in a temporary folder (deleted afterwards unless
   BENCH_KEEP=1), a fresh RTP range, log level WARNING (a log line per packet would be the benchmark), no speech
   to text, no analytics, no limits. Ready when it answers an OPTIONS.
2. sipp (bench/sipp/load_call.xml, one UDP socket) places the N calls at BENCH_CPS calls/s and holds them.
   The RTP ports come from the SDP answers (sipp logs them per call), not from what the allocator is expected to
   do. INVITE -> 200 times come from sipp's message trace (-trace_shortmsg, microseconds): its -trace_rtt
   counts in whole milliseconds on a ~4 ms clock, too coarse for a p50 of about a millisecond.
3. Once every call is up, bench.rtp_sender sends BENCH_MEDIA_S seconds of PCMU to every leg. The server's CPU
   (utime + stime of its process tree) and RSS are sampled around exactly that window.
4. sipp hangs up (the hold time ends a few seconds after the media), the server is stopped with SIGTERM, and the
   recorded packets are summed from every `<dir>/<date>/<call>/manifest.json` (legs[*].packets_received).
   No manifest at all (a server without the recording module) is reported as "n/a", not as zero.

Also reported: the kernel's UDP receive-buffer drops during the window (/proc/net/snmp, host-wide, so other
traffic on the machine shows up too) and the sender's own CPU, which competes with the server for the 2 cores:
on loopback the kernel's delivery of each datagram runs in the sender's context, so it is counted there.

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
HOLD_MARGIN_S = 8.0
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 30.0

TARGET_RECORDED = 0.9999
TARGET_CORES = 1.5
TARGET_RSS_KIB = 100
TARGET_P99_MS = 50.0
TARGET_CALLS = 1000


@dataclass
class LoadResult:
    n_calls: int
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
    rss_idle_kib: int = 0
    rss_calls_kib: int = 0  # every call set up, no media yet
    rss_media_kib: int = 0  # at the end of the media window
    server_fds: int = 0
    server_processes: int = 1
    setup_ms: list[float] = field(default_factory=list)
    kernel_drops: int = 0  # UDP RcvbufErrors during the media window (host-wide)
    host_busy_s: float = 0.0  # CPU time of the whole machine during the media window (/proc/stat)
    setup_wall_s: float = 0.0
    setup_host_busy_s: float = 0.0
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
    def other_cores(self) -> float | None:
        """Cores busy during the media window with neither the server nor the sender: other work on the machine
        (a test suite, a build) that the figures above had to share the 2 cores with."""
        if self.media_wall_s <= 0 or self.sent is None:
            return None
        return max(0.0, (self.host_busy_s - self.media_cpu_s - self.sent.cpu_s) / self.media_wall_s)

    @property
    def setup_other_cores(self) -> float | None:
        """The same while the calls were being set up (sipp's own CPU included: it is small)."""
        if self.setup_wall_s <= 0:
            return None
        return max(0.0, (self.setup_host_busy_s - self.setup_cpu_s) / self.setup_wall_s)

    def rss_per_call_kib(self, after: int) -> float:
        return (after - self.rss_idle_kib) / self.n_calls

    def percentile_ms(self, q: float) -> float | None:
        if not self.setup_ms:
            return None
        ordered = sorted(self.setup_ms)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]  # nearest rank

    def rows(self) -> list[dict]:
        n = self.n_calls
        tag = f"{n:,} calls"
        ratio = self.recorded_ratio
        recorded = (
            f"n/a / {self.packets_sent:,} (no manifest)" if self.recorded is None
            else f"{self.recorded:,} / {self.packets_sent:,} ({100 * ratio:.3f} %)" if ratio is not None
            else f"{self.recorded:,} / 0"
        )  # fmt: skip
        sender = self.sent
        p50, p99 = self.percentile_ms(0.50), self.percentile_ms(0.99)
        big = n >= TARGET_CALLS
        rows = [
            {"name": f"{tag}: established / completed", "value": f"{self.established:,} / {self.completed:,}",
             "unit": "calls", "target": f"{n:,}"},
            {"name": f"{tag}: packets recorded / sent", "value": recorded, "unit": "packets",
             "target": f">= {100 * TARGET_RECORDED:.2f} %"},
            {"name": f"{tag}: server CPU per 100,000 packets", "value": _num(self.cpu_per_100k), "unit": "CPU s",
             "target": f"<= {TARGET_CORES}" if big else ""},
            {"name": f"{tag}: server cores during media", "value": _num(self.cores), "unit": "cores",
             "target": f"< {TARGET_CORES}" if big else ""},
            {"name": f"{tag}: server RSS per call (media flowing)",
             "value": round(self.rss_per_call_kib(self.rss_media_kib), 1), "unit": "KiB",
             "target": f"<= {TARGET_RSS_KIB}"},
            {"name": f"{tag}: server RSS per call (signalling only)",
             "value": round(self.rss_per_call_kib(self.rss_calls_kib), 1), "unit": "KiB", "target": ""},
            {"name": f"{tag}: server CPU per call set-up", "value": _num(1000 * self.setup_cpu_s / n),
             "unit": "CPU ms", "target": ""},
            {"name": f"{tag}: INVITE -> 200 p50 / p99",
             "value": f"{_num(p50)} / {_num(p99)}", "unit": "ms", "target": f"p99 < {TARGET_P99_MS:g}"},
            {"name": f"{tag}: sender CPU ({sender.processes if sender else 0} processes)",
             "value": f"{_num(sender.cpu_s if sender else None)} s = {_num(sender.cores if sender else None)} cores",
             "unit": "", "target": ""},
            {"name": f"{tag}: other load on the machine (media / set-up)",
             "value": f"{_num(self.other_cores)} / {_num(self.setup_other_cores)}", "unit": "cores", "target": "0"},
            {"name": f"{tag}: kernel UDP receive-buffer drops", "value": self.kernel_drops, "unit": "packets",
             "target": "0"},
        ]  # fmt: skip
        if self.notes:
            rows.append({"name": f"{tag}: notes", "value": "; ".join(self.notes), "unit": "", "target": ""})
        return rows


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


def host_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (every state of /proc/stat's cpu line but idle and iowait)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def udp_counters() -> dict[str, int]:
    lines = [
        line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")
    ]
    return dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=False)) if len(lines) >= 2 else {}


def bound_udp_ports(ports: set[int]) -> int:
    """How many of `ports` some socket is bound to (IPv4 and IPv6 tables)."""
    found: set[int] = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                port = int(line.split()[1].rsplit(":", 1)[1], 16)
                if port in ports:
                    found.add(port)
    return len(found)


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


def warm_up(sipp: str, sip_port: int, folder: Path, exclude: range) -> None:
    """One short call before measuring. The first calls of a fresh server pay for lazy imports and first-use set-up
    (measured: one stall of ~40 ms that the next dozen INVITEs queue behind); that is start-up cost, not the
    per-call latency the p99 target is about."""
    folder.mkdir()
    cmd = [
        sipp, f"{HOST}:{sip_port}", "-sf", str(SCENARIO), "-i", HOST, "-t", "u1",
        "-p", str(free_port(exclude)), "-mp", str(free_even_pair(exclude)), "-cp", str(free_port(exclude)),
        "-m", "1", "-d", "200", "-nostdin", "-timeout", "20s", "-timeout_error",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=folder, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"warm-up call failed (sipp exit {done.returncode}): {done.stderr[-500:]!r}")


def _config_yaml(sip_port: int, rec_dir: Path, store: Path, port_min: int) -> str:
    # JSON is YAML: no quoting pitfalls for the paths.
    config = {
        "sip": {"host": HOST, "udp_port": sip_port, "tcp_port": sip_port},
        "rtp": {"port_min": port_min, "port_max": port_min + RTP_RANGE - 1},
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
    byes = 0
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
                byes += 1
    return [1000 * (answered[c] - sent[c]) for c in answered if c in sent], byes


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
    cps: int = DEFAULT_CPS,
    processes: int = DEFAULT_PROCESSES,
    port_min: int = DEFAULT_RTP_PORT_MIN,
    keep: bool = False,
) -> LoadResult:
    """One benchmark run of `n_calls` calls with `seconds` of media on every leg. Raises when the server does not
    start or sipp fails outright; shortfalls (calls not up, packets not recorded) are in the result."""
    sipp = shutil.which("sipp")
    if sipp is None:
        raise RuntimeError("sipp is not installed (Debian package sip-tester)")
    if 4 * n_calls > RTP_RANGE:
        raise ValueError(f"{n_calls} calls need {4 * n_calls} RTP/RTCP ports; the range holds {RTP_RANGE}")
    rtp_range = range(port_min, port_min + RTP_RANGE)
    result = LoadResult(n_calls)
    tmp = Path(tempfile.mkdtemp(prefix=f"siprec-bench-{n_calls}-"))
    rec_dir, sipp_dir = tmp / "recordings", tmp / "sipp"
    sipp_dir.mkdir()
    server_log = tmp / "server.log"
    server: subprocess.Popen[bytes] | None = None
    load: subprocess.Popen[bytes] | None = None
    sender: RtpSender | None = None
    try:
        sip_port = free_port(rtp_range, tcp=True)
        config = tmp / "siprec.yaml"
        config.write_text(_config_yaml(sip_port, rec_dir, tmp / "siprec.db", port_min))
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
        cmd = [
            sipp, f"{HOST}:{sip_port}", "-sf", str(SCENARIO), "-i", HOST, "-t", "u1",
            "-p", str(free_port(rtp_range)), "-mp", str(free_even_pair(rtp_range)), "-cp", str(free_port(rtp_range)),
            "-r", str(cps), "-m", str(n_calls), "-l", str(n_calls), "-d", str(round(hold_s * 1000)),
            "-cid_str", f"bench-{secrets.token_hex(3)}-%u@%s",
            "-nostdin", "-trace_err", "-trace_logs", "-trace_shortmsg",
            "-timeout", f"{round(hold_s + ramp_s + 60)}s", "-timeout_error",
        ]  # fmt: skip
        cpu_before_calls, busy_before_calls = cpu_seconds(tree), host_busy_s()
        sipp_started = time.monotonic()
        load = subprocess.Popen(
            cmd, cwd=sipp_dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=(sipp_dir / "sipp.stderr").open("wb"),
        )  # fmt: skip
        log_file = sipp_dir / f"{SCENARIO.stem}_{load.pid}_logs.log"
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
        result.setup_host_busy_s = host_busy_s() - busy_before_calls
        result.setup_wall_s = time.monotonic() - sipp_started
        if load.poll() is not None and load.returncode not in (0, 1):
            raise RuntimeError(f"sipp exited with {load.returncode}: {_tail(sipp_dir / 'sipp.stderr', 800)}")
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
        while (bound := bound_udp_ports(wanted)) < len(wanted) and time.monotonic() < settle:
            time.sleep(0.1)
        result.ports_bound = bound
        if bound < len(wanted):
            result.notes.append(f"server had bound {bound} of {len(wanted)} answered RTP ports")
        result.rss_calls_kib = rss_kib(tree)

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
        cpu0, snmp0, busy0, t0 = cpu_seconds(tree), udp_counters(), host_busy_s(), time.monotonic()
        result.sent = sender.join(timeout=seconds * 3 + 30)
        tree = process_tree(server.pid)
        cpu1, snmp1, busy1, t1 = cpu_seconds(tree), udp_counters(), host_busy_s(), time.monotonic()
        result.media_cpu_s, result.media_wall_s = cpu1 - cpu0, t1 - t0
        result.host_busy_s = busy1 - busy0
        result.rss_media_kib = rss_kib(tree)
        result.server_fds = open_fds(server.pid)
        result.server_processes = len(tree)
        result.kernel_drops = snmp1.get("RcvbufErrors", 0) - snmp0.get("RcvbufErrors", 0)
        if result.sent.errors:
            result.notes.append(f"{result.sent.errors:,} sendto errors")
        if result.sent.max_lag_ms > 2 * PTIME_S * 1000:
            result.notes.append(f"sender fell {result.sent.max_lag_ms:.0f} ms behind its schedule at worst")

        # --- hang-up, stop, count
        try:
            load.wait(max(10.0, first_bye - time.monotonic() + ramp_s + 30))
        except subprocess.TimeoutExpired:
            result.notes.append("sipp did not finish: killed")
        rc = _stop(load, signal.SIGKILL, 5)
        if rc not in (0, None):
            result.notes.append(f"sipp exit code {rc} (failed calls; see its error log)")
        shortmsg = sipp_dir / f"{SCENARIO.stem}_{load.pid}_shortmessages.log"
        result.setup_ms, result.completed = setup_times_ms(shortmsg)
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
        _stop(server)
        if keep:
            print(f"# media_load: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- table


def _calls_from_env() -> list[int]:
    raw = os.environ.get("BENCH_CALLS", "")
    return [int(x) for x in raw.replace(" ", "").split(",") if x] or list(DEFAULT_CALLS)


def run(calls: list[int] | None = None) -> list[dict]:
    """Rows for `make bench`. Knobs: BENCH_CALLS=100,500,1000, BENCH_MEDIA_S=10, BENCH_CPS=200,
    BENCH_SENDER_PROCESSES=2, BENCH_RTP_PORT_MIN=20000, BENCH_KEEP=1 (keep the recordings and sipp traces)."""
    if shutil.which("sipp") is None:
        return [
            {"name": "media load", "value": "not available", "unit": "", "target": "needs sipp (sip-tester)"}
        ]
    seconds = float(os.environ.get("BENCH_MEDIA_S", DEFAULT_MEDIA_S))
    cps = int(os.environ.get("BENCH_CPS", DEFAULT_CPS))
    processes = int(os.environ.get("BENCH_SENDER_PROCESSES", DEFAULT_PROCESSES))
    port_min = int(os.environ.get("BENCH_RTP_PORT_MIN", DEFAULT_RTP_PORT_MIN))
    keep = os.environ.get("BENCH_KEEP", "") not in ("", "0")
    rows: list[dict] = []
    for n in calls or _calls_from_env():
        started = time.monotonic()
        try:
            result = run_load(n, seconds=seconds, cps=cps, processes=processes, port_min=port_min, keep=keep)
        except Exception as exc:  # one failed N must not hide the others (benchmarks never fail the build)
            rows.append(
                {
                    "name": f"{n:,} calls",
                    "value": "failed",
                    "unit": "",
                    "target": f"{type(exc).__name__}: {exc}",
                }
            )
            continue
        finally:
            print(f"# media_load: {n:,} calls: {time.monotonic() - started:.1f} s", file=sys.stderr)
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
