"""SIP requests and responses as plain data (RFC 3261 section 7), with serialisation.

Parsing lives in `siprec.sip.parser`; this module only holds messages and builds responses. Header names are kept
in canonical spelling (compact forms expanded) so lookups are plain dict/str work on the hot path.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from siprec.sip.errors import SipError, SipParseError
from siprec.sip.headers import (
    MULTI_VALUE,
    CSeq,
    NameAddr,
    Via,
    canonical_name,
    parse_cseq,
    parse_name_addr,
    parse_via,
    split_comma,
)

SIP_VERSION = "SIP/2.0"

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
}


class Headers:
    """Ordered header fields. Names are canonicalised on insert; lookups are case-insensitive."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str]] = [(canonical_name(n), v) for n, v in fields]

    @classmethod
    def from_canonical(cls, fields: list[tuple[str, str]]) -> Headers:
        """Adopt a list whose names are already canonical (the parser's fast path)."""
        h = cls.__new__(cls)
        h._fields = fields
        return h

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, name: str) -> bool:
        name = canonical_name(name)
        return any(n == name for n, _ in self._fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._fields == other._fields

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"

    def get(self, name: str, default: str | None = None) -> str | None:
        name = canonical_name(name)
        for n, v in self._fields:
            if n == name:
                return v
        return default

    def get_raw(self, name: str) -> list[str]:
        """Every field value of that name as written (a field may itself hold a comma list)."""
        name = canonical_name(name)
        return [v for n, v in self._fields if n == name]

    def get_all(self, name: str) -> list[str]:
        """Every value of that name; comma lists split for the multi-value headers (Via, Route, Supported...)."""
        name = canonical_name(name)
        raw = [v for n, v in self._fields if n == name]
        if name not in MULTI_VALUE:
            return raw
        out: list[str] = []
        for v in raw:
            out.extend(split_comma(v))
        return out

    def tokens(self, name: str) -> list[str]:
        """Option-tag style headers (Require, Supported, Allow): lower-cased tokens."""
        return [t.lower() for t in self.get_all(name)]

    def add(self, name: str, value: str) -> None:
        self._fields.append((canonical_name(name), value))

    def prepend(self, name: str, value: str) -> None:
        self._fields.insert(0, (canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every field of that name by one (at the place of the first)."""
        name = canonical_name(name)
        for i, (n, _) in enumerate(self._fields):
            if n == name:
                self._fields[i] = (name, value)
                self._fields[i + 1 :] = [f for f in self._fields[i + 1 :] if f[0] != name]
                return
        self._fields.append((name, value))

    def remove(self, name: str) -> None:
        name = canonical_name(name)
        self._fields = [f for f in self._fields if f[0] != name]

    def copy(self) -> Headers:
        return Headers.from_canonical(list(self._fields))


@dataclass
class SipMessage:
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    # --- typed accessors of the headers every layer needs -------------------------------------------------
    @property
    def call_id(self) -> str:
        value = self.headers.get("Call-ID")
        if not value:
            raise SipParseError("missing Call-ID header")
        return value.strip()

    @property
    def cseq(self) -> CSeq:
        value = self.headers.get("CSeq")
        if value is None:
            raise SipParseError("missing CSeq header")
        return parse_cseq(value)

    @property
    def from_(self) -> NameAddr:
        value = self.headers.get("From")
        if value is None:
            raise SipParseError("missing From header")
        return parse_name_addr(value, what="From")

    @property
    def to(self) -> NameAddr:
        value = self.headers.get("To")
        if value is None:
            raise SipParseError("missing To header")
        return parse_name_addr(value, what="To")

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        values = self.headers.get_all("Via")
        if not values:
            raise SipParseError("missing Via header")
        return parse_via(values[0])

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return value.strip() if value is not None else None

    def serialize(self) -> bytes:
        raise NotImplementedError

    def _serialize(self, start_line: str) -> bytes:
        lines = [start_line]
        for name, value in self.headers:
            if name == "Content-Length":
                continue
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass
class SipRequest(SipMessage):
    method: str = "OPTIONS"
    uri: str = ""

    def serialize(self) -> bytes:
        return self._serialize(f"{self.method} {self.uri} {self.version}")

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        if value is None:
            return None
        value = value.strip()
        if not value.isdigit() or int(value) > 255:
            raise SipParseError("bad Max-Forwards header")
        return int(value)


@dataclass
class SipResponse(SipMessage):
    status: int = 200
    reason: str = "OK"

    def serialize(self) -> bytes:
        return self._serialize(f"{self.version} {self.status} {self.reason}")


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(10)


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """A response to `request` as RFC 3261 section 8.2.6.2 builds it: Via, From, Call-ID, CSeq copied; To copied
    and given `to_tag` when it has none (never on 100 Trying); Record-Route copied on dialog-creating responses."""
    req = request.headers
    fields: list[tuple[str, str]] = [("Via", v) for v in req.get_raw("Via")]
    frm = req.get("From")
    if frm is not None:
        fields.append(("From", frm))
    to = req.get("To")
    if to is not None:
        if to_tag and status != 100 and ";tag=" not in to.lower().replace(" ", ""):
            try:
                has_tag = parse_name_addr(to).tag is not None
            except SipError:
                has_tag = True  # leave an unparseable To as it was
            if not has_tag:
                to = f"{to};tag={to_tag}"
        fields.append(("To", to))
    call_id = req.get("Call-ID")
    if call_id is not None:
        fields.append(("Call-ID", call_id))
    cseq = req.get("CSeq")
    if cseq is not None:
        fields.append(("CSeq", cseq))
    if 100 < status < 300 and request.method in ("INVITE", "SUBSCRIBE"):
        fields.extend(("Record-Route", v) for v in req.get_raw("Record-Route"))
    if status == 100:
        ts = req.get("Timestamp")
        if ts is not None:
            fields.append(("Timestamp", ts))
    resp_headers = Headers.from_canonical(fields)
    for name, value in headers:
        resp_headers.add(name, value)
    if content_type is not None:
        resp_headers.set("Content-Type", content_type)
    return SipResponse(
        headers=resp_headers,
        body=body,
        status=status,
        reason=reason or REASON_PHRASES.get(status, "Unknown"),
    )
