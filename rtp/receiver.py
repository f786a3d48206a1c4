"""The asyncio side of RTP intake: bind a leg's RTP/RTCP socket pair, and one datagram endpoint per socket.

Binding is synchronous (`bind_pair`) so the SIP layer can reserve real sockets while it builds the SDP answer: a
port that another process holds is found before the 200 OK, never after. The endpoint itself is attached with
`create_datagram_endpoint(sock=...)`; datagrams that arrive in between wait in the kernel's socket buffer.

`UdpEndpoint` calls one plain function per datagram with the arrival time: no per-packet awaits, no tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable

__all__ = ["DatagramHandler", "UdpEndpoint", "bind_pair", "open_endpoint"]

log = logging.getLogger("rtp.receiver")

Address = tuple[str, int]
DatagramHandler = Callable[[bytes, Address, float], object]
RECEIVE_BUFFER = 256 * 1024
_wall_clock = time.time  # arrival stamps are wall-clock (the jitter buffer aligns legs to it)  # a few seconds of audio if the loop stalls on something else


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def bind_pair(host: str, port: int, *, rtcp: bool = True) -> tuple[socket.socket, socket.socket | None]:
    """Bind RTP on `port` and RTCP on `port + 1`. Raises OSError (nothing left open) if either is taken."""
    rtp_sock = _bind(host, port)
    if not rtcp:
        return rtp_sock, None
    try:
        return rtp_sock, _bind(host, port + 1)
    except BaseException:
        rtp_sock.close()
        raise


class UdpEndpoint(asyncio.DatagramProtocol):
    """Delivers each datagram to `handler(data, addr, arrival)`; exceptions are logged, never propagated."""

    def __init__(self, handler: DatagramHandler, name: str) -> None:
        self.handler = handler
        self.name = name
        self.transport: asyncio.DatagramTransport | None = None
        self.sock: socket.socket | None = None  # until the transport owns it
        self.closed = False
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sock = None
        if self.closed:  # closed while the endpoint was being attached
            transport.close()
            return
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:  # type: ignore[override]
        try:
            self.handler(data, addr, _wall_clock())
        except Exception:
            # A bug must cost one packet, not the loop; log the first few with the traceback.
            self.errors += 1
            if self.errors <= 3:
                log.exception("%s: datagram handler failed", self.name)

    def error_received(self, exc: Exception) -> None:
        log.debug("%s: %s", self.name, exc)  # ICMP errors of a receive-only socket are noise

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        elif self.sock is not None:
            self.sock.close()
            self.sock = None


async def open_endpoint(sock: socket.socket, endpoint: UdpEndpoint) -> UdpEndpoint:
    """Attach `endpoint` to a bound socket (which it owns from now on, attached or not)."""
    endpoint.sock = sock
    if endpoint.closed:
        sock.close()
        return endpoint
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: endpoint, sock=sock)
    return endpoint
