"""The SDP model (RFC 8866) shared by the parser, the serialiser and the SIPREC answerer.

Resolution rules: a media section's `connection` and `direction` are the *effective* ones (the media level value,
else the session level one); `SessionDescription.direction` is only the explicit session attribute.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import StrEnum

from siprec.sip.errors import SipError

MAX_SDP_SIZE = 65536  # bytes/characters of one SDP body
MAX_LINES = 2048
MAX_MEDIA = 64


class SdpError(SipError):
    """Malformed SDP (400) or an offer we cannot accept (488, warn-code 305)."""


class Direction(StrEnum):
    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"


@dataclass(frozen=True)
class Connection:
    address: str
    addr_type: str = "IP4"
    net_type: str = "IN"

    @property
    def is_hold(self) -> bool:
        """RFC 2543 style hold: the unspecified address ("c=IN IP4 0.0.0.0")."""
        return self.address in ("0.0.0.0", "::")


@dataclass(frozen=True)
class Origin:
    username: str
    session_id: str  # kept as text: only compared, and some stacks send odd values
    session_version: str
    connection: Connection


@dataclass(frozen=True)
class Attribute:
    name: str
    value: str | None = None  # None for a property attribute ("a=rtcp-mux"), "" for "a=name:"


@dataclass(frozen=True)
class Bandwidth:
    type: str
    value: int


@dataclass(frozen=True)
class Codec:
    payload_type: int
    encoding: str  # upper-case; "" for a dynamic payload type without a=rtpmap
    clock_rate: int  # RTP clock rate; 0 when unknown
    channels: int = 1
    fmtp: str | None = None

    @property
    def sample_rate(self) -> int:
        # G.722 keeps an 8000 Hz RTP clock for historical reasons (RFC 3551 4.5.2) but carries 16 kHz audio.
        return 16000 if self.encoding == "G722" else self.clock_rate


@dataclass(frozen=True)
class CryptoAttribute:
    """RFC 4568 a=crypto with an inline key: `tag suite inline:<key||salt>[|lifetime][|MKI:len] [session params]`."""

    tag: int
    suite: str
    key_b64: str
    lifetime: str | None = None
    mki: str | None = None
    session_params: tuple[str, ...] = ()

    @property
    def key_salt(self) -> bytes:
        return base64.b64decode(_pad_b64(self.key_b64), validate=True)  # binascii.Error on junk


@dataclass(frozen=True)
class RtcpAttribute:
    port: int
    connection: Connection | None = None


@dataclass
class MediaDescription:
    index: int
    media: str
    port: int
    proto: str
    formats: list[Codec] = field(default_factory=list)  # numeric fmts, in m= order
    other_formats: list[str] = field(default_factory=list)  # non-RTP fmts ("t38", "*", "webrtc-datachannel")
    port_count: int = 1
    connection: Connection | None = None
    direction: Direction = Direction.SENDRECV
    label: str | None = None
    crypto: list[CryptoAttribute] = field(default_factory=list)
    ptime: int | None = None
    maxptime: int | None = None
    rtcp: RtcpAttribute | None = None
    rtcp_mux: bool = False
    bandwidths: list[Bandwidth] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    other_lines: list[tuple[str, str]] = field(default_factory=list)  # i=, k= ... kept verbatim

    def codec(self, payload_type: int) -> Codec | None:
        return next((c for c in self.formats if c.payload_type == payload_type), None)


@dataclass
class SessionDescription:
    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    direction: Direction | None = None
    media: list[MediaDescription] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    bandwidths: list[Bandwidth] = field(default_factory=list)
    timing: str = "0 0"
    other_lines: list[tuple[str, str]] = field(default_factory=list)  # i=, u=, e=, p=, r=, z=, k= ...


# RFC 3551 table 4: static audio payload types, used when a=rtpmap is absent.
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1), 3: ("GSM", 8000, 1), 4: ("G723", 8000, 1), 5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1), 7: ("LPC", 8000, 1), 8: ("PCMA", 8000, 1), 9: ("G722", 8000, 1),
    10: ("L16", 44100, 2), 11: ("L16", 44100, 1), 12: ("QCELP", 8000, 1), 13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1), 15: ("G728", 8000, 1), 16: ("DVI4", 11025, 1), 17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
}  # fmt: skip


def warning_text(text: str, limit: int = 48) -> str:
    # Goes into a Warning header: printable ASCII only, no quotes.
    clean = "".join(ch if " " <= ch <= "~" and ch not in '"\\' else "?" for ch in text[:limit])
    return clean + ("..." if len(text) > limit else "")


def _pad_b64(text: str) -> str:
    return text + "=" * (-len(text) % 4)
