"""A real SiprecServer (SIP and HTTP on free loopback ports) with an aiohttp client, and a real SIPREC call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from siprec.app import SiprecServer
from siprec.events.types import Event, RecordingReady
from tests.integration.sip_server import running_server
from tests.integration.src_client import LegOffer, SrcCall

# A range of its own, so these tests do not compete with the media tests for RTP ports.
RTP_RANGE = {"port_min": 47000, "port_max": 47999}


@dataclass
class Api:
    server: SiprecServer
    http: aiohttp.ClientSession
    events: list[Event] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"

    @property
    def sip_port(self) -> int:
        return self.server.transport.bound["UDP"]

    def url(self, path: str) -> str:
        return self.base + path

    async def call(self, participants: tuple[str, ...] = ("Alice", "Bob")) -> SrcCall:
        """A live two-leg SIPREC call (INVITE answered 200, ACK sent); the caller sends BYE."""
        call = SrcCall(self.sip_port)
        await call.invite([LegOffer(label=str(i + 1), participant=p) for i, p in enumerate(participants)])
        return call

    async def manifest_after_bye(self, call: SrcCall) -> dict[str, Any]:
        import json

        assert await call.bye() == 200
        call.close()
        ready = await wait_for(
            lambda: next(
                (e for e in self.events if isinstance(e, RecordingReady) and e.call_id == call.call_id), None
            ),
            what="recording_ready",
        )
        return json.loads(Path(ready.manifest).read_text())


async def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


ApiFactory = Callable[..., Awaitable[Api]]


@asynccontextmanager
async def api_server(
    tmp: Path, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> AsyncIterator[Api]:
    merged: dict[str, dict[str, Any]] = {"rtp": dict(RTP_RANGE)}
    for section, values in (overrides or {}).items():
        merged.setdefault(section, {}).update(values)
    async with running_server(merged, tmp=tmp) as server, aiohttp.ClientSession() as http:
        api = Api(server, http)
        server.bus.subscribe(api.events.append)
        yield api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with api_server(tmp_path) as running:
        yield running
