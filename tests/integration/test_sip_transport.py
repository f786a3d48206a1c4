"""The SIP server on real loopback sockets: sipp over UDP and TCP, a raw TLS client, framing and bad input."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest

from siprec.app import Components
from siprec.sip.core import SipCore
from siprec.sip.message import SipResponse
from siprec.sip.parser import parse_message
from siprec.sip.transport import SipTransport
from siprec.sip.validation import UasPolicy
from tests.integration.sip_server import UdpClient, run_sipp, running_server, self_signed_cert
from tests.sip_helpers import FixedAnswerApp

pytestmark = pytest.mark.integration


def fixed_app(parts: Components) -> FixedAnswerApp:
    app = FixedAnswerApp()
    app.supported_options = ("siprec",)  # type: ignore[attr-defined]
    app.accepted_types = ("application/sdp", "multipart/mixed")  # type: ignore[attr-defined]
    return app


def options(port: int, transport: str = "UDP", call_id: str = "opt-1", branch: str = "z9hG4bKopt1", *,
            host: str = "127.0.0.1", extra: str = "") -> bytes:
    return (
        f"OPTIONS sip:srs@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {host}:{port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{host}>;tag=p1\r\n"
        "To: <sip:srs@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_sipp_options_over_udp_and_tcp(transport: str, tmp_path: Path) -> None:
    async with running_server(application=fixed_app) as server:
        result = await run_sipp("options.xml", server.transport.bound["UDP"], transport=transport, workdir=tmp_path)
        assert result.returncode == 0, result.stderr + result.errors
        assert server.core.stats.responses.get(200) == 1
        assert server.core.stats.requests == {"OPTIONS": 1}


async def test_udp_and_tcp_share_one_port() -> None:
    async with running_server(application=fixed_app) as server:
        assert server.transport.bound["UDP"] == server.transport.bound["TCP"]


async def test_port_zero_picks_again_when_the_udp_port_is_taken_for_tcp() -> None:
    """Ports 0: the UDP port the kernel picks may be busy for TCP (someone's ephemeral port); pick another."""
    blockers: list[socket.socket] = []
    transport = SipTransport(SipCore(FixedAnswerApp(), policy=UasPolicy()), host="127.0.0.1", udp_port=0, tcp_port=0)
    listen = transport._listen

    async def taken_once(name: str, port: int, ctx: ssl.SSLContext | None) -> None:
        if not blockers:  # the first pick: really occupy that TCP port, as another process would
            blocker = socket.socket()
            blocker.bind(("127.0.0.1", port))
            blocker.listen()
            blockers.append(blocker)
        await listen(name, port, ctx)

    transport._listen = taken_once  # type: ignore[method-assign]
    try:
        await transport.start()
        first = blockers[0].getsockname()[1]
        assert transport.bound["UDP"] == transport.bound["TCP"] != first
    finally:
        await transport.stop()
        for b in blockers:
            b.close()


async def test_tls_options_with_raw_client(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    overrides = {"sip": {"tls_port": 0, "tls_cert": str(cert), "tls_key": str(key)}}
    # tls_port 0 means "off" in the config; ask the transport for a free port instead.
    from tests.integration.sip_server import free_port

    overrides["sip"]["tls_port"] = free_port(__import__("socket").SOCK_STREAM)
    async with running_server(overrides, application=fixed_app) as server:
        ctx = ssl.create_default_context(cafile=str(cert))
        reader, writer = await asyncio.open_connection("127.0.0.1", server.transport.bound["TLS"], ssl=ctx)
        local_port = writer.get_extra_info("sockname")[1]
        writer.write(options(local_port, "TLS"))
        await writer.drain()
        resp = parse_message(await _read_one(reader), datagram=False)
        assert isinstance(resp, SipResponse)
        assert resp.status == 200
        assert resp.headers.get("Supported") == "siprec"
        writer.close()
        await writer.wait_closed()


async def _read_one(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = 0
    for line in head.decode().split("\r\n"):
        if line.lower().startswith(("content-length:", "l:")):
            length = int(line.split(":", 1)[1])
    body = await asyncio.wait_for(reader.readexactly(length), 5) if length else b""
    return head + body


async def test_tcp_framing_pipelining_split_writes_and_keepalive() -> None:
    async with running_server(application=fixed_app) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.transport.bound["TCP"])
        port = writer.get_extra_info("sockname")[1]
        # Two requests in one write, then one split across three writes with a keep-alive in between.
        writer.write(options(port, "TCP", "a", "z9hG4bKa") + options(port, "TCP", "b", "z9hG4bKb"))
        third = options(port, "TCP", "c", "z9hG4bKc")
        writer.write(third[:10])
        await writer.drain()
        writer.write(third[10:40])
        await writer.drain()
        writer.write(third[40:])
        got = [parse_message(await _read_one(reader), datagram=False) for _ in range(3)]
        assert [(m.call_id, m.status) for m in got] == [("a", 200), ("b", 200), ("c", 200)]  # type: ignore[union-attr]
        writer.write(b"\r\n\r\n")  # RFC 5626 ping
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"
        writer.close()
        await writer.wait_closed()


async def test_tcp_message_without_content_length_gets_400_and_close() -> None:
    async with running_server(application=fixed_app) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.transport.bound["TCP"])
        port = writer.get_extra_info("sockname")[1]
        writer.write(options(port, "TCP").replace(b"Content-Length: 0\r\n", b""))
        resp = parse_message(await _read_one(reader), datagram=False)
        assert isinstance(resp, SipResponse) and resp.status == 400
        assert "Content-Length" in (resp.headers.get("Warning") or "")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closed the connection
        writer.close()
        await asyncio.sleep(0)
        assert server.transport.connection_count == 0 or await _eventually(lambda: server.transport.connection_count == 0)


async def _eventually(cond: object, timeout: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if cond():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.01)
    return False


async def test_udp_bad_input_gets_precise_errors() -> None:
    async with running_server({"sip": {"max_message_size": 1500}}, application=fixed_app) as server:
        port = server.transport.bound["UDP"]
        client = await UdpClient.open()
        try:
            # Content-Length larger than the datagram: 400 naming the problem.
            client.send(options(client.port, call_id="cl").replace(b"Content-Length: 0", b"Content-Length: 99"), port)
            resp = parse_message(await client.recv())
            assert isinstance(resp, SipResponse) and resp.status == 400
            assert "Content-Length" in (resp.headers.get("Warning") or "")
            # Over sip.max_message_size: 513.
            big = options(client.port, call_id="big", branch="z9hG4bKbig", extra="X-Pad: " + "x" * 1600 + "\r\n")
            client.send(big, port)
            resp = parse_message(await client.recv())
            assert isinstance(resp, SipResponse) and resp.status == 513
            # Unknown method: 405 with Allow.
            client.send(options(client.port, call_id="m", branch="z9hG4bKm").replace(b"OPTIONS", b"NOTIFY"), port)
            resp = parse_message(await client.recv())
            assert isinstance(resp, SipResponse) and resp.status == 405 and resp.headers.get("Allow")
            # Garbage gets nothing, and the server still answers the next request.
            client.send(b"\x00\x01garbage", port)
            client.send(b"HELLO WORLD\r\n\r\n", port)
            client.send(options(client.port, call_id="after", branch="z9hG4bKafter"), port)
            resp = parse_message(await client.recv())
            assert resp.call_id == "after" and isinstance(resp, SipResponse) and resp.status == 200
        finally:
            client.close()


async def test_untrusted_source_is_refused_with_403() -> None:
    async with running_server({"sip": {"trusted_sources": ["10.0.0.0/8"]}}, application=fixed_app) as server:
        client = await UdpClient.open()
        try:
            client.send(options(client.port), server.transport.bound["UDP"])
            resp = parse_message(await client.recv())
            assert isinstance(resp, SipResponse) and resp.status == 403
            assert "trusted_sources" in (resp.headers.get("Warning") or "")
        finally:
            client.close()


async def test_idle_tcp_connection_is_closed_and_connection_cap_holds() -> None:
    from siprec.sip.transport import SipTransport, TransportLimits

    class Silent:
        def on_message(self, message: object, peer: object) -> None: ...

        def on_bad_message(self, error: object, peer: object) -> None: ...

    transport = SipTransport(
        Silent(),  # type: ignore[arg-type]
        host="127.0.0.1", udp_port=None, tcp_port=0,
        limits=TransportLimits(idle_timeout_s=0.2, max_connections=2),
    )
    await transport.start()
    try:
        port = transport.bound["TCP"]
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        # The third connection is over the cap: closed at once.
        assert await asyncio.wait_for(conns[2][0].read(), 5) == b""
        # The other two say nothing and are closed after the idle time.
        for reader, _ in conns[:2]:
            assert await asyncio.wait_for(reader.read(), 5) == b""
        assert await _eventually(lambda: transport.connection_count == 0)
        for _, writer in conns:
            writer.close()
    finally:
        await transport.stop()
