"""RFC 4475 torture messages sent as UDP datagrams to a running server; the answer on the wire is checked.

Responses go where the message's top Via says (RFC 3261 section 18.2.2): to the source address and the Via port
(5060 when absent). So each message is sent from 127.0.0.2:<that port>, where the test listens. After each message
an OPTIONS probe follows on the same socket: the server handles datagrams in order, so once the probe's answer is
in, every answer to the torture message is in too; no waiting on a guess.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket

import pytest

from tests.integration.sip_server import running_server
from tests.integration.test_sip_transport import fixed_app
from tests.support import REPO

pytestmark = pytest.mark.integration

DATA = REPO / "tests" / "data" / "rfc4475"
EXPECTED: dict[str, dict[str, object]] = json.loads((DATA / "expected.json").read_text())
CLIENT_HOST = "127.0.0.2"
_VIA = re.compile(rb"^(?:via|v)\s*:\s*SIP\s*/\s*[\d.]+\s*/\s*(\w+)\s+[^\s;:,]+(?::(\d+))?", re.I | re.M)


def via_port(raw: bytes) -> int:
    """The port RFC 3261 section 18.2.2 sends the response to: the Via port, else 5060 (5061 for TLS)."""
    m = _VIA.search(raw)
    if m is None:
        return 5060
    if m.group(2):
        return int(m.group(2))
    return 5061 if m.group(1).upper() == b"TLS" else 5060


def status_and_call_id(data: bytes) -> tuple[int, str]:
    """Read a response without the strict parser: a 400 echoes the torture message's own broken headers."""
    start = data.split(b"\r\n", 1)[0].split(b" ")
    assert start[0] == b"SIP/2.0", data[:80]
    m = re.search(rb"^(?:call-id|i)\s*:\s*(\S+)", data, re.I | re.M)
    return int(start[1]), (m.group(1).decode() if m else "")


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.queue.put_nowait(data)


def probe(port: int, n: int) -> bytes:
    return (
        "OPTIONS sip:srs@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {CLIENT_HOST}:{port};branch=z9hG4bKprobe{n}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{CLIENT_HOST}>;tag=probe\r\n"
        "To: <sip:srs@127.0.0.1>\r\n"
        f"Call-ID: probe-{n}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def test_every_torture_message_gets_the_prescribed_answer() -> None:
    loop = asyncio.get_running_loop()
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((CLIENT_HOST, 0))
        sock.close()
    except OSError:
        pytest.fail("127.0.0.2 is not usable on this loopback interface")
    endpoints: dict[int, tuple[asyncio.DatagramTransport, Collector]] = {}
    outcomes: dict[str, list[int]] = {}
    async with running_server(application=fixed_app) as server:
        server_port = server.transport.bound["UDP"]
        try:
            for n, name in enumerate(sorted(EXPECTED)):
                raw = (DATA / f"{name}.dat").read_bytes()
                port = via_port(raw)
                if port not in endpoints:
                    transport, proto = await loop.create_datagram_endpoint(Collector, local_addr=(CLIENT_HOST, port))
                    endpoints[port] = (transport, proto)  # type: ignore[assignment]
                transport, proto = endpoints[port]
                transport.sendto(raw, ("127.0.0.1", server_port))
                transport.sendto(probe(port, n), ("127.0.0.1", server_port))
                statuses: list[int] = []
                while True:
                    data = await asyncio.wait_for(proto.queue.get(), 5)
                    status, call_id = status_and_call_id(data)
                    if call_id == f"probe-{n}":
                        assert status == 200
                        break
                    statuses.append(status)
                outcomes[name] = [s for s in statuses if s >= 200]
        finally:
            for transport, _ in endpoints.values():
                transport.close()
    wrong = {}
    for name, spec in EXPECTED.items():
        finals = outcomes[name]
        allowed = spec["response_any_of"]
        if spec["response"] is None:
            ok = finals == []
        else:
            ok = len(finals) == 1 and finals[0] in allowed  # type: ignore[operator]
        if not ok:
            wrong[name] = (finals, allowed, spec["note"])
    assert not wrong, "\n".join(f"{n}: got {g}, allowed {a} ({note})" for n, (g, a, note) in wrong.items())
    # The server's own choice, where the RFC allows several, is the one the table names first.
    preferred = {n: s["response"] for n, s in EXPECTED.items() if s["response"] is not None}
    assert {n: outcomes[n][0] for n in preferred} == preferred
