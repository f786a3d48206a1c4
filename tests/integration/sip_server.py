"""Helpers for tests that run a real server on loopback: start/stop, sipp runs, raw UDP/TCP/TLS clients."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siprec.app import ApplicationFactory, SiprecServer
from siprec.config import config_from_mapping
from tests.support import REPO, require

SIPP_DIR = REPO / "tests" / "sipp"


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_config(overrides: Mapping[str, Any] | None = None, tmp: Path | None = None) -> Any:
    data: dict[str, Any] = {
        "sip": {"host": "127.0.0.1", "udp_port": 0, "tcp_port": 0, "advertised_host": "127.0.0.1"},
        "http": {"host": "127.0.0.1", "port": 0},  # SiprecServer serves the HTTP API too: a free port
        "log": {"level": "DEBUG"},
        "stt": {"provider": "none"},  # transcription tests ask for their provider
    }
    if tmp is not None:
        data["recording"] = {"dir": str(tmp / "recordings")}
        data["store"] = {"url": f"sqlite:///{tmp / 'siprec.db'}"}
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update(values)
    return config_from_mapping(data)


@asynccontextmanager
async def running_server(
    overrides: Mapping[str, Any] | None = None,
    *,
    application: ApplicationFactory | None = None,
    tmp: Path | None = None,
) -> AsyncIterator[SiprecServer]:
    server = SiprecServer(test_config(overrides, tmp), application=application)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str
    errors: str


async def run_sipp(
    scenario: str | Path,
    port: int,
    *,
    transport: str = "u1",
    calls: int = 1,
    extra: list[str] | None = None,
    timeout_s: float = 30.0,
    workdir: Path,
) -> SippResult:
    """Run sipp as a UAC against 127.0.0.1:port; returns when sipp exits (bounded by its own -timeout)."""
    sipp = shutil.which("sipp")
    require(sipp is not None, "sipp (Debian package sip-tester)")
    assert sipp is not None
    path = Path(scenario)
    if not path.is_absolute():
        path = SIPP_DIR / path
    err_file = workdir / f"sipp-{path.stem}-{transport}.err"
    args = [
        sipp, f"127.0.0.1:{port}", "-sf", str(path), "-m", str(calls), "-t", transport,
        "-i", "127.0.0.1", "-p", str(free_port(socket.SOCK_STREAM if transport.startswith("t") else socket.SOCK_DGRAM)),
        "-timeout", f"{int(timeout_s)}s", "-timeout_error", "-nostdin", "-trace_err", "-error_file", str(err_file),
        "-max_recv_loops", "1000", "-aa",
        *(extra or []),
    ]
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s + 10)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    errors = err_file.read_text(errors="replace") if err_file.exists() else ""
    return SippResult(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"), errors)


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1 (tests generate their own TLS material)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "siprec-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class UdpClient(asyncio.DatagramProtocol):
    """A raw UDP peer that collects datagrams into a queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)

    @classmethod
    async def open(cls) -> UdpClient:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0))
        return proto

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, ("127.0.0.1", port))

    async def recv(self, timeout: float = 3.0) -> bytes:
        return await asyncio.wait_for(self.queue.get(), timeout)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
