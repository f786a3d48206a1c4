"""Helpers for the UAS tests (not a test module): a SipCore + RecordingUas driven by hand with manual clocks,
and SIPREC INVITEs built from the shared fixture bodies."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from siprec.config import Config
from siprec.events.bus import EventBus
from siprec.events.types import Event
from siprec.sip.core import SipCore
from siprec.sip.message import SipRequest, SipResponse
from siprec.sip.transaction import Peer
from siprec.srs.ports import PortPool
from siprec.srs.sdp import NegotiatedStream
from siprec.srs.session import Leg, RecordingSession
from siprec.srs.uas import RecordingUas, uas_policy
from tests.sip_helpers import SRC, CoreDriver
from tests.support import FIXTURES

INVITES = FIXTURES / "siprec" / "invites"
WALL0 = 1_700_000_000.0  # 2023-11-14 UTC


@dataclass
class FixtureBody:
    content_type: str
    body: bytes
    headers: list[str] = field(default_factory=list)  # extra INVITE headers the fixture carries


def fixture_bodies(name: str) -> list[FixtureBody]:
    """The INVITE bodies of a fixture: one multipart body (a whole INVITE for Intrado), or each SDP of a
    `__split_here__` file as a plain application/sdp INVITE."""
    text = (INVITES / name).read_text()
    if text.startswith("INVITE "):
        head, _, body = text.partition("\n\n")
        ctype = next(line.split(":", 1)[1].strip() for line in head.splitlines() if line.startswith("Content-Type:"))
        keep = [line for line in head.splitlines()[1:] if line.split(":", 1)[0] in ("Require", "Supported")]
        return [FixtureBody(ctype, crlf(body), keep)]
    found = re.search(r"^--(\S+?)\s*$", text, re.M)
    if found is None:
        return [FixtureBody("application/sdp", crlf(chunk.strip() + "\n")) for chunk in text.split("__split_here__")]
    return [FixtureBody(f"multipart/mixed;boundary={found[1]}", crlf(text))]


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def multipart(sdp: str, metadata: str | None = None, *, metadata_first: bool = False,
              mtype: str = "application/rs-metadata+xml") -> tuple[str, bytes]:
    parts = [("application/sdp", None, sdp)]
    if metadata is not None:
        meta = (mtype, "recording-session", metadata)
        parts = [meta, *parts] if metadata_first else [*parts, meta]
    out = ""
    for ctype, disposition, content in parts:
        out += f"--BB\nContent-Type: {ctype}\n" + (f"Content-Disposition: {disposition}\n" if disposition else "")
        out += "\n" + content.strip() + "\n"
    out += "--BB--\n"
    return "multipart/mixed;boundary=BB", crlf(out)


def sdp(*media: str, conn: str = "192.0.2.9") -> str:
    return f"v=0\no=- 1 1 IN IP4 {conn}\ns=-\nc=IN IP4 {conn}\nt=0 0\n" + "".join(media)


def audio(port: int, label: str, direction: str = "sendonly", codec: str = "0") -> str:
    return f"m=audio {port} RTP/AVP {codec}\na=label:{label}\na={direction}\n"


def participant_doc(*people: tuple[str, str, str | None, str], mode: str = "complete", streams: int = 2) -> str:
    """A small RFC 7865 document: people are (participant id, aor, name or None, stream id sent)."""
    ns = "urn:ietf:params:xml:ns:recording:1"
    xml = f'<?xml version="1.0"?>\n<recording xmlns="{ns}"><datamode>{mode}</datamode>'
    xml += '<session session_id="s1"><sipSessionID>abc</sipSessionID></session>'
    for pid, aor, name, send in people:
        name_el = f"<name>{name}</name>" if name else ""
        xml += f'<participant participant_id="{pid}"><nameID aor="{aor}">{name_el}</nameID></participant>'
        xml += f'<participantstreamassoc participant_id="{pid}"><send>{send}</send></participantstreamassoc>'
    for n in range(1, streams + 1):
        xml += f'<stream stream_id="st{n}" session_id="s1"><label>{n}</label></stream>'
    return xml + "</recording>"


class FakeLeg:
    def __init__(self, log: list[tuple[str, int, str]], leg: Leg) -> None:
        self.log, self.index = log, leg.index
        log.append(("open", leg.index, leg.stream.codec.encoding))

    def update(self, stream: NegotiatedStream) -> None:
        self.log.append(("update", self.index, stream.codec.encoding))

    def pause(self) -> None:
        self.log.append(("pause", self.index, ""))

    def resume(self) -> None:
        self.log.append(("resume", self.index, ""))

    def close(self) -> None:
        self.log.append(("close", self.index, ""))


class RecordingMedia:
    """A MediaSink fake that records every call the session makes, and reports RTP activity."""

    reports_activity = True

    def __init__(self) -> None:
        self.log: list[tuple[str, int, str]] = []
        self.ended: list[str] = []

    def open_leg(self, session: RecordingSession, leg: Leg) -> FakeLeg:
        return FakeLeg(self.log, leg)

    def save_metadata(self, session: RecordingSession, name: str, raw: bytes) -> None:
        self.log.append(("metadata", len(raw), name))

    def session_ended(self, session: RecordingSession) -> None:
        self.ended.append(session.call_id)


class UasHarness(CoreDriver):
    def __init__(self, tmp: Path, *, media: RecordingMedia | None = None, ports: PortPool | None = None,
                 **config: object) -> None:
        super().__init__()
        self.wall = WALL0
        self.config = Config.model_validate({"recording": {"dir": str(tmp)}, **config})
        self.bus = EventBus()
        self.events: list[Event] = []
        self.bus.subscribe(self.events.append)
        self.ports = ports or PortPool(40000, 40999, quarantine_s=10, clock=lambda: self.now)
        self.attach(SipCore(None, policy=uas_policy(), clock=lambda: self.now))  # type: ignore[arg-type]
        self.uas = RecordingUas(self.config, bus=self.bus, core=self.core, ports=self.ports, media=media,
                                clock=lambda: self.now, wall_clock=lambda: self.wall)
        self.core.app = self.uas
        self._branch = 0

    # --- driving -------------------------------------------------------------------------------------
    def feed(self, raw: bytes, peer: Peer = SRC) -> list[SipRequest | SipResponse]:
        return self.deliver(raw, peer)

    def request(self, method: str, *, call_id: str = "call-1", cseq: int = 1, to_tag: str | None = None,
                ctype: str | None = None, body: bytes = b"", extra: list[str] | tuple[str, ...] = (),
                contact_params: str = "") -> bytes:
        self._branch += 1
        to = "<sip:srs@192.0.2.1>" + (f";tag={to_tag}" if to_tag else "")
        lines = [
            f"{method} sip:srs@192.0.2.1:5060 SIP/2.0",
            f"Via: SIP/2.0/UDP 192.0.2.9:5080;branch=z9hG4bK{self._branch}x;rport",
            "Max-Forwards: 70",
            "From: <sip:src@192.0.2.9>;tag=ft1",
            f"To: {to}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:src@192.0.2.9:5080>{contact_params}",
            *extra,
        ]
        if ctype:
            lines.append(f"Content-Type: {ctype}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def invite(self, ctype: str, body: bytes, **kw: object) -> SipResponse:
        return final(self.feed(self.request("INVITE", ctype=ctype, body=body, **kw)))  # type: ignore[arg-type]

    def call(self, ctype: str, body: bytes, *, call_id: str = "call-1", **kw: object) -> Dialogue:
        ok = self.invite(ctype, body, call_id=call_id, **kw)
        assert ok.status == 200, ok.headers.get("Warning")
        d = Dialogue(self, call_id, ok.to.tag or "", ok)
        self.feed(self.request("ACK", call_id=call_id, to_tag=d.tag))
        return d

    # --- timers: the core's and the UAS's, and a wall clock that moves with the monotonic one ---------------
    def deadlines(self) -> list[float]:
        uas = self.uas.next_deadline()
        return super().deadlines() + ([] if uas is None else [uas])

    def fire(self) -> None:
        super().fire()
        self.uas.tick()

    def move_clock(self, to: float) -> None:
        self.wall += to - self.now
        self.now = to

    def types(self) -> list[str]:
        return [e.type for e in self.events]


@dataclass
class Dialogue:
    h: UasHarness
    call_id: str
    tag: str
    ok: SipResponse
    cseq: int = 1

    def send(self, method: str, ctype: str | None = None, body: bytes = b"",
             extra: list[str] | tuple[str, ...] = ()) -> SipResponse:
        self.cseq += 1
        out = self.h.feed(self.h.request(method, call_id=self.call_id, cseq=self.cseq, to_tag=self.tag,
                                         ctype=ctype, body=body, extra=extra))
        resp = final(out)
        if method == "INVITE" and resp.status < 300:
            self.h.feed(self.h.request("ACK", call_id=self.call_id, cseq=self.cseq, to_tag=self.tag))
        return resp

    @property
    def session(self) -> RecordingSession:
        found = self.h.uas.session(self.call_id)
        assert found is not None
        return found


def final(msgs: list[SipRequest | SipResponse]) -> SipResponse:
    finals = [m for m in msgs if isinstance(m, SipResponse) and m.status >= 200]
    assert len(finals) == 1, msgs
    return finals[0]


def media_lines(resp: SipResponse) -> list[str]:
    return [line for line in resp.body.decode().splitlines() if line.startswith(("m=", "a=label", "a=recvonly", "a=inactive"))]
