"""The only socket code of SIP: asyncio UDP, TCP and TLS listeners on one host, bytes in and out.

Everything above this module is sans-I/O. Here we only frame bytes into messages (the parser does the work),
hand them to a `MessageHandler` with the `Peer` they came from, and send bytes back to a `Peer`: on the same
connection for TCP/TLS when it is still open (RFC 3261 section 18.2.2), else a new one; by datagram for UDP.
Hostile peers are bounded: datagram and message sizes, connection count, idle time, unread output.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from siprec.sip.errors import SipParseError
from siprec.sip.message import SipRequest, SipResponse
from siprec.sip.parser import KeepAlive, StreamFramer, parse_message
from siprec.sip.transaction import Peer

log = logging.getLogger("siprec.sip.transport")

PICK_PORT_ATTEMPTS = 5  # ports 0: tries at one free port number for both UDP and TCP

SipMessageT = SipRequest | SipResponse

# A peer that does not read what we send cannot make us buffer without bound.
MAX_UNSENT_BYTES = 1 << 20


class MessageHandler(Protocol):
    def on_message(self, message: SipMessageT, peer: Peer) -> None: ...

    def on_bad_message(self, error: SipParseError, peer: Peer) -> None: ...


@dataclass(frozen=True)
class TransportLimits:
    max_message_size: int = 65535
    max_connections: int = 4096
    idle_timeout_s: float = 300.0  # stream connections with no traffic for this long are closed
    connect_timeout_s: float = 5.0


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int] | tuple[str, int, int, int]) -> None:
        self.owner._on_datagram(data, Peer("UDP", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable for a response we sent: nothing to do, the transaction layer times out.
        log.debug("udp error: %s", exc)


class _Stream(asyncio.Protocol):
    """One TCP or TLS connection: framing, keep-alive answers, idle time-out."""

    def __init__(self, owner: SipTransport, name: str) -> None:
        self.owner = owner
        self.name = name  # "TCP" or "TLS"
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.framer = StreamFramer(owner.limits.max_message_size)
        self._idle: asyncio.TimerHandle | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer(self.name, host, port, self)
        if not self.owner._register(self):
            log.warning("closing %s connection from %s:%s: connection limit reached", self.name, host, port)
            transport.close()
            return
        self._touch()

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        self._touch()
        try:
            items = self.framer.feed(data)
        except SipParseError as err:
            # Framing is lost: answer if we can, then close, as RFC 3261 section 18.3 says.
            if err.partial is None:
                err.partial = _salvage(self.framer.pending())
            self.owner.handler.on_bad_message(err, self.peer)
            self.close_after_flush()
            return
        for item in items:
            if isinstance(item, KeepAlive):
                self.write(b"\r\n")  # RFC 5626 section 4.4.1 pong
                continue
            self.owner._deliver(item, self.peer, datagram=False)

    def write(self, data: bytes) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        if t.get_write_buffer_size() + len(data) > MAX_UNSENT_BYTES:
            log.warning("closing %s connection %s: peer does not read", self.name, self.peer)
            t.abort()
            return
        t.write(data)

    def close_after_flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self.owner.limits.idle_timeout_s, self._on_idle)

    def _on_idle(self) -> None:
        log.info("closing idle %s connection %s", self.name, self.peer)
        self.close_after_flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self.owner._unregister(self)
        if not self.closed.done():
            self.closed.set_result(None)


class SipTransport:
    """Listeners for UDP, TCP and TLS on `host`. Port 0 asks the OS for a free port (tests); None = off."""

    def __init__(
        self,
        handler: MessageHandler,
        *,
        host: str = "0.0.0.0",
        udp_port: int | None = 5060,
        tcp_port: int | None = 5060,
        tls_port: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        limits: TransportLimits = TransportLimits(),
    ) -> None:
        self.handler = handler
        self.host = host
        self.limits = limits
        self._want = {"UDP": udp_port, "TCP": tcp_port, "TLS": tls_port}
        self._ssl = ssl_context
        self._udp: _Datagram | None = None
        self._servers: dict[str, asyncio.Server] = {}
        self._streams: dict[tuple[str, str, int], _Stream] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self.bound: dict[str, int] = {}
        self.stats = {"received": 0, "sent": 0, "bad": 0, "oversize": 0}

    # --- life cycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        # Ports 0 for UDP and TCP ask for one free port for both: the port the kernel picks for UDP can be taken
        # for TCP (an outgoing connection's ephemeral port), so pick again a few times before giving up.
        attempts = PICK_PORT_ATTEMPTS if self._want["UDP"] == 0 and self._want["TCP"] == 0 else 1
        for attempt in range(1, attempts + 1):
            try:
                await self._start_once()
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or attempt == attempts:
                    raise
                log.debug("UDP port %s is taken for TCP: picking another", exc)

    async def _start_once(self) -> None:
        loop = asyncio.get_running_loop()
        udp, tcp, tls = self._want["UDP"], self._want["TCP"], self._want["TLS"]
        self.bound = {}
        try:
            if udp is not None:
                transport, proto = await loop.create_datagram_endpoint(
                    lambda: _Datagram(self), local_addr=(self.host, udp)
                )
                self._udp = proto
                self.bound["UDP"] = transport.get_extra_info("sockname")[1]
            if tcp is not None:
                # Same port as UDP when asked for 0 and UDP is on: SIP peers expect both on one port.
                port = self.bound.get("UDP", 0) if tcp == 0 and udp == 0 else tcp
                await self._listen("TCP", port, None)
            if tls is not None:
                if self._ssl is None:
                    raise ValueError("TLS port configured without an SSL context (sip.tls_cert / sip.tls_key)")
                await self._listen("TLS", tls, self._ssl)
        except BaseException:
            await self.stop()
            raise
        log.info("SIP listening on %s: %s", self.host, ", ".join(f"{k} {v}" for k, v in self.bound.items()))

    async def _listen(self, name: str, port: int, ctx: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Stream(self, name), self.host, port, ssl=ctx, reuse_address=True, backlog=512
        )
        self._servers[name] = server
        self.bound[name] = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for server in self._servers.values():
            server.close()
        for stream in list(self._streams.values()):
            if stream.transport is not None:
                stream.transport.abort()
        for server in self._servers.values():
            await server.wait_closed()
        self._servers.clear()
        for task in list(self._pending):
            task.cancel()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()
            self._udp = None

    @property
    def connection_count(self) -> int:
        return len(self._streams)

    # --- receiving --------------------------------------------------------------------------------------
    def _on_datagram(self, data: bytes, peer: Peer) -> None:
        if not data.strip(b"\r\n\t \x00"):
            return  # keep-alive padding some SBCs send over UDP
        if data[0] < 0x20 and data[0] not in (0x0D, 0x0A):
            return  # STUN (RFC 5626 keep-alive over UDP) or RTP sent to the wrong port: not SIP
        if len(data) > self.limits.max_message_size:
            self.stats["oversize"] += 1
            self._oversize(data, peer)
            return
        self._deliver(data, peer, datagram=True)

    def _oversize(self, data: bytes, peer: Peer) -> None:
        try:
            partial: object | None = parse_message(data, datagram=True)
        except SipParseError as err:
            partial = err.partial
        self.handler.on_bad_message(
            SipParseError(
                f"message of {len(data)} bytes exceeds sip.max_message_size {self.limits.max_message_size}",
                status=513,
                partial=partial,
            ),
            peer,
        )

    def _deliver(self, data: bytes, peer: Peer, *, datagram: bool) -> None:
        try:
            message = parse_message(data, datagram=datagram)
        except SipParseError as err:
            self.stats["bad"] += 1
            self.handler.on_bad_message(err, peer)
            return
        self.stats["received"] += 1
        self.handler.on_message(message, peer)

    def _register(self, stream: _Stream) -> bool:
        if len(self._streams) >= self.limits.max_connections:
            return False
        assert stream.peer is not None
        self._streams[_key(stream.peer)] = stream
        return True

    def _unregister(self, stream: _Stream) -> None:
        if stream.peer is not None and self._streams.get(_key(stream.peer)) is stream:
            del self._streams[_key(stream.peer)]

    # --- sending ----------------------------------------------------------------------------------------
    def send(self, peer: Peer, data: bytes) -> None:
        """Send without waiting. Stream peers without an open connection get a new one (RFC 3261 18.2.2)."""
        self.stats["sent"] += 1
        if peer.transport == "UDP":
            if self._udp is None or self._udp.transport is None:
                log.warning("dropping message to %s: UDP is off", peer)
                return
            self._udp.transport.sendto(data, (peer.host.strip("[]"), peer.port))
            return
        stream = peer.connection if isinstance(peer.connection, _Stream) else self._streams.get(_key(peer))
        if stream is not None and stream.transport is not None and not stream.transport.is_closing():
            stream.write(data)
            return
        self._spawn(self._connect_and_send(peer, data))

    async def _connect_and_send(self, peer: Peer, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        ctx: ssl.SSLContext | None = None
        if peer.transport == "TLS":
            ctx = ssl.create_default_context()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _Stream(self, peer.transport), peer.host.strip("[]"), peer.port, ssl=ctx),
                self.limits.connect_timeout_s,
            )
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            log.warning("cannot connect to %s to send a message: %s", peer, exc)
            return
        proto.write(data)

    def _spawn(self, coro: Callable[[], object] | object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


def _salvage(data: bytes) -> object | None:
    """The request in front of a framing error, parsed as a datagram, so its Via/Call-ID can address a 400."""
    head, sep, _ = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    try:
        return parse_message(head + sep, datagram=True)
    except SipParseError as err:
        return err.partial


def _key(peer: Peer) -> tuple[str, str, int]:
    return (peer.transport, peer.host.strip("[]"), peer.port)


def make_server_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx
