"""WebSocket fan-out: 200 clients on one live call, one of them never reading. The readers must get every event
within 100 ms, and the non-reader must be cut (error LAGGED, close 4008) without slowing anybody.

Server side (this process, on uvloop when installed, as `siprec serve` runs): an EventBus, the WebSocketHub with
its defaults and aiohttp on 127.0.0.1 and a free port. It publishes session_started, then BENCH_WS_RATE transcript
events/s (every fourth one final, ~1.3 KB each with word timings, as a speech-to-text provider sends them) for
BENCH_WS_SECONDS, and on at the same rate until the non-reader is cut (at most EXTRA_S more), then session_ended.
Each event carries its publish time (time.monotonic, CLOCK_MONOTONIC: one clock for every process of the host) in
its metadata.

Client side (a subprocess, so the clients' CPU does not sit on the server's event loop): N-1 aiohttp clients
connected with ?call_id=, each noting when every event arrives, and one raw socket that completes the WebSocket
handshake with a 4 KiB receive buffer and then never reads. Once the readers have the session_ended, the
non-reader reads what was left for it and says whether a LAGGED error and a 4008 close were among it.

Latency is receive time minus publish time, per (event, reader); an event's delivery time is its slowest reader.
When the non-reader is cut depends on what it can swallow: the socket buffers (send_buffer_bytes, ~200 KB by
default) and then queue_size frames (BENCH_WS_QUEUE, default the server's 256). The lagged client's grace is long
here (60 s) so that it can still read its LAGGED frame after the run; the server default is 2 s.

The machine has 2 cores shared with whatever else runs: the server's and the clients' CPU are reported, and the
1-minute load average before the run, so that a run on a busy machine can be recognised.

`python -m bench.ws_fanout [--clients N] [--rate R] [--seconds S] [--queue Q]` prints the rows; `run()` returns
them for `make bench`. `open_silent_client`, `read_to_end` and `server_frames` serve the tests as well.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector, WSMsgType, web

from siprec.api.ws import DEFAULT_QUEUE_SIZE, TRANSCRIPTIONS_PATH, WebSocketHub
from siprec.events.bus import EventBus
from siprec.events.types import SessionEnded, SessionStarted, TranscriptEvent

HOST = "127.0.0.1"
CALL_ID = "bench-ws-fanout@127.0.0.1"
TARGET_MS = 100.0
CONNECT_PARALLEL = 20
EXTRA_S = 60.0
WORDS = [
    "thank",
    "you",
    "for",
    "calling",
    "this",
    "is",
    "the",
    "billing",
    "department",
    "how",
    "can",
    "I",
    "help",
    "you",
    "today",
]


# --- a client that never reads (also used by tests/integration/api/test_ws_lag.py) ----------------------------


async def open_silent_client(
    host: str, port: int, target: str, *, rcvbuf: int = 4096
) -> tuple[socket.socket, bytes]:
    """A TCP connection that completes the WebSocket handshake for `target` (path and query) and then reads no
    more: its small receive buffer makes the server's socket fill quickly. Returns the socket (non-blocking) and
    any bytes that came after the handshake's headers."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: it sets the TCP window
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (host, port))
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode("ascii"))
        received = b""
        async with asyncio.timeout(10):
            while b"\r\n\r\n" not in received:
                chunk = await loop.sock_recv(sock, 4096)
                if not chunk:
                    raise ConnectionError("the server closed the connection during the handshake")
                received += chunk
        head, _, rest = received.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"handshake refused: {head.splitlines()[0]!r}")
        return sock, rest
    except BaseException:
        sock.close()
        raise


async def read_to_end(sock: socket.socket, *, timeout_s: float) -> tuple[bytes, bool]:
    """Everything the peer sends until it closes the connection (True) or `timeout_s` passes (False)."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await loop.sock_recv(sock, 65536):
                data += chunk
    except TimeoutError:
        return bytes(data), False
    except ConnectionResetError:
        pass
    return bytes(data), True


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of the complete unmasked frames in `data` (a server's side of a WebSocket)."""
    frames: list[tuple[int, bytes]] = []
    at = 0
    while at + 2 <= len(data):
        opcode, length = data[at] & 0x0F, data[at + 1] & 0x7F
        at += 2
        if length == 126:
            if at + 2 > len(data):
                break
            (length,) = struct.unpack_from("!H", data, at)
            at += 2
        elif length == 127:
            if at + 8 > len(data):
                break
            (length,) = struct.unpack_from("!Q", data, at)
            at += 8
        if at + length > len(data):
            break
        frames.append((opcode, data[at : at + length]))
        at += length
    return frames


def lag_outcome(data: bytes) -> dict[str, Any]:
    """Whether a non-reader's bytes end with the LAGGED error and the 4008 close."""
    frames = server_frames(data)
    lagged = any(op == 1 and json.loads(p).get("payload", {}).get("code") == "LAGGED" for op, p in frames)
    close_code = next((struct.unpack("!H", p[:2])[0] for op, p in frames if op == 8 and len(p) >= 2), None)
    return {"frames": len(frames), "lagged_frame": lagged, "close_code": close_code}


# --- client side (subprocess) ---------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _clients_main(port: int, clients: int, call_id: str) -> dict[str, Any]:
    url = f"http://{HOST}:{port}{TRANSCRIPTIONS_PATH}?call_id={call_id}"
    arrivals: list[dict[int, float]] = []  # per reader: event number -> latency (s)
    gate = asyncio.Semaphore(CONNECT_PARALLEL)
    loop = asyncio.get_running_loop()
    cpu0 = time.process_time()
    async with ClientSession(connector=TCPConnector(limit=0), timeout=ClientTimeout(total=None)) as http:

        async def reader(index: int, ready: asyncio.Future[None]) -> None:
            async with gate:
                ws = await http.ws_connect(url, autoping=True)
            ready.set_result(None)
            got = arrivals[index]
            try:
                async for msg in ws:
                    now = time.monotonic()
                    if msg.type is not WSMsgType.TEXT:
                        continue
                    frame = json.loads(msg.data)
                    if frame["type"] == "transcript":
                        meta = frame["payload"]["metadata"]
                        got[meta["n"]] = now - meta["sent_at"]
                    elif frame["type"] == "session_ended":
                        break
            finally:
                await ws.close()

        readers = clients - 1
        arrivals.extend({} for _ in range(readers))
        ready = [loop.create_future() for _ in range(readers)]
        tasks = [asyncio.create_task(reader(i, ready[i])) for i in range(readers)]
        silent, _ = await open_silent_client(HOST, port, f"{TRANSCRIPTIONS_PATH}?call_id={call_id}")
        await asyncio.wait_for(asyncio.gather(*ready), 120)
        print("ready", flush=True)
        await asyncio.gather(*tasks)
        leftover, closed = await read_to_end(silent, timeout_s=20)
        silent.close()
    latencies = [v for got in arrivals for v in got.values()]
    events = max((max(got, default=-1) for got in arrivals), default=-1) + 1
    worst = [
        max(got[n] for got in arrivals if n in got)
        for n in range(events)
        if any(n in got for got in arrivals)
    ]
    return {
        "readers": len(arrivals),
        "events": events,
        "deliveries": len(latencies),
        "missing": len(arrivals) * events - len(latencies),
        "latency_ms": {q: 1000 * _percentile(latencies, p) for q, p in (("p50", 0.5), ("p99", 0.99))}
        | {"max": 1000 * max(latencies, default=float("nan"))},
        "event_worst_ms": {q: 1000 * _percentile(worst, p) for q, p in (("p50", 0.5), ("p99", 0.99))}
        | {"max": 1000 * max(worst, default=float("nan"))},
        "events_over_target": sum(1 for w in worst if w * 1000 > TARGET_MS),
        "silent": lag_outcome(leftover) | {"closed_by_server": closed, "bytes": len(leftover)},
        "cpu_s": time.process_time() - cpu0,
    }


# --- server side ----------------------------------------------------------------------------------------------


@dataclass
class Settings:
    clients: int = 200
    rate: float = 20.0
    seconds: float = 10.0
    queue: int = DEFAULT_QUEUE_SIZE


def _transcript(n: int) -> TranscriptEvent:
    words = [WORDS[(n + i) % len(WORDS)] for i in range(12)]
    start = n * 0.5
    return TranscriptEvent(
        call_id=CALL_ID,
        stream_label="leg-0",
        speaker_label="Customer",
        text=" ".join(words),
        is_final=n % 4 == 3,
        start=start,
        end=start + 3.0,
        confidence=0.91,
        words=tuple(
            {"text": w, "start": start + i * 0.25, "end": start + i * 0.25 + 0.2, "confidence": 0.9}
            for i, w in enumerate(words)
        ),
        provider="bench",
        language="en-US",
        metadata={"session_id": "bench", "leg": 0, "n": n, "sent_at": time.monotonic()},
    )


async def _serve_and_measure(settings: Settings) -> dict[str, Any]:
    bus = EventBus()
    live = {CALL_ID}
    hub = WebSocketHub(
        bus, verify_token=None, session_exists=live.__contains__, queue_size=settings.queue, lag_grace_s=60.0
    )
    app = web.Application()
    hub.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = runner.addresses[0][1]
    started = time.time()
    bus.publish(SessionStarted(call_id=CALL_ID, session_id="bench", started_at=started, siprec=True))
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.ws_fanout",
        "--clients-only",
        str(port),
        str(settings.clients),
        CALL_ID,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 180)
        if line.strip() != b"ready":
            raise RuntimeError(f"the client process did not get ready: {line!r}")
        connected = hub.stats()["clients_total"]
        events = int(settings.rate * settings.seconds)
        cpu0 = time.process_time()
        t0 = time.monotonic()
        cut_at: float | None = None
        late_ticks = n = 0
        frame_bytes = 0
        publish_s: list[float] = []
        # The run lasts `seconds`, and longer at the same rate until the non-reader is cut (at most EXTRA_S more).
        while n < events or (cut_at is None and n < events + EXTRA_S * settings.rate):
            delay = t0 + n / settings.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late_ticks += 1
            event = _transcript(n)
            frame_bytes += len(event.to_json().encode())
            before = time.perf_counter()
            bus.publish(event)  # serialises once and queues for 200 clients: what the publisher pays
            publish_s.append(time.perf_counter() - before)
            n += 1
            if cut_at is None and hub.lagged_disconnects:
                cut_at, cut_after = time.monotonic() - t0, frame_bytes
        bus.publish(SessionEnded(CALL_ID, "bench", "bye", started, time.time(), time.time() - started))
        server_cpu = time.process_time() - cpu0
        window = time.monotonic() - t0
        out, _ = await asyncio.wait_for(child.communicate(), 120)
        result = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await hub.close()
        await runner.cleanup()
    return result | {
        "connected": connected,
        "published": n,
        "publish_us": {"p50": 1e6 * _percentile(publish_s, 0.5), "max": 1e6 * max(publish_s)},
        "cut_after_bytes": cut_after if cut_at is not None else None,
        "frame_bytes": frame_bytes // max(n, 1),
        "publisher_late_ticks": late_ticks,
        "cut_at_s": cut_at,
        "server_cpu_s": server_cpu,
        "window_s": window,
        "hub": hub.stats(),
    }


def _rows(settings: Settings, r: dict[str, Any], load: float) -> list[dict[str, Any]]:
    lat, worst, silent = r["latency_ms"], r["event_worst_ms"], r["silent"]
    target = f"<= {TARGET_MS:.0f} ms"
    cut = (
        "no"
        if r["cut_at_s"] is None
        else f"after {r['cut_at_s']:.1f} s, {r['cut_after_bytes'] / 1024:.0f} KiB"
    )
    return [
        {
            "name": "clients connected (1 never reads)",
            "value": r["connected"],
            "unit": "",
            "target": str(settings.clients),
        },
        {
            "name": "events published",
            "value": r["published"],
            "unit": "",
            "target": f"{settings.rate:g}/s for >= {settings.seconds:g} s, {r['frame_bytes']:,} B each",
        },
        {
            "name": "deliveries to readers (missing)",
            "value": f"{r['deliveries']:,} ({r['missing']})",
            "unit": "",
            "target": "0 missing",
        },
        {
            "name": "bus.publish() per event p50 / max",
            "value": f"{r['publish_us']['p50']:.0f} / {r['publish_us']['max']:.0f}",
            "unit": "us",
            "target": "never waits",
        },
        {"name": "latency p50", "value": round(lat["p50"], 2), "unit": "ms", "target": ""},
        {"name": "latency p99", "value": round(lat["p99"], 2), "unit": "ms", "target": ""},
        {"name": "latency max", "value": round(lat["max"], 2), "unit": "ms", "target": target},
        {"name": "event to all readers p50", "value": round(worst["p50"], 2), "unit": "ms", "target": ""},
        {"name": "event to all readers p99", "value": round(worst["p99"], 2), "unit": "ms", "target": ""},
        {"name": "event to all readers max", "value": round(worst["max"], 2), "unit": "ms", "target": target},
        {"name": "events slower than target", "value": r["events_over_target"], "unit": "", "target": "0"},
        {
            "name": "non-reader cut (LAGGED)",
            "value": cut,
            "unit": "",
            "target": f"queue {settings.queue} frames",
        },
        {
            "name": "non-reader got LAGGED + close",
            "value": f"{silent['lagged_frame']} / {silent['close_code']}",
            "unit": "",
            "target": "True / 4008",
        },
        {
            "name": "server CPU (hub + aiohttp)",
            "value": round(r["server_cpu_s"], 2),
            "unit": "s",
            "target": f"in {r['window_s']:.1f} s",
        },
        {"name": "client process CPU", "value": round(r["cpu_s"], 2), "unit": "s", "target": ""},
        {"name": "load average before the run", "value": load, "unit": "", "target": "2 cores"},
    ]


def run(settings: Settings | None = None) -> list[dict[str, Any]]:
    settings = settings or Settings(
        int(os.environ.get("BENCH_WS_CLIENTS", 200)),
        float(os.environ.get("BENCH_WS_RATE", 20)),
        float(os.environ.get("BENCH_WS_SECONDS", 10)),
        int(os.environ.get("BENCH_WS_QUEUE", DEFAULT_QUEUE_SIZE)),
    )
    load = os.getloadavg()[0]
    _raise_fd_limit(settings.clients * 2 + 64)
    result = _run_loop(_serve_and_measure(settings))
    return _rows(settings, result, round(load, 2))


def _run_loop(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--clients-only"]:
        port, clients, call_id = int(argv[1]), int(argv[2]), argv[3]
        _raise_fd_limit(clients * 2 + 64)
        print(json.dumps(_run_loop(_clients_main(port, clients, call_id))), flush=True)
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.ws_fanout", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="transcript events per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--queue", type=int, default=DEFAULT_QUEUE_SIZE, help="the hub's queue_size (frames per client)"
    )
    args = parser.parse_args(argv)
    rows = run(Settings(args.clients, args.rate, args.seconds, args.queue))
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        value = f"{r['value']:,}" if isinstance(r["value"], int | float) else str(r["value"])
        print(f"{r['name'].ljust(width)}  {value:>18} {r['unit']:<3} {r['target']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
