"""Sans-I/O SIP message parser (RFC 3261 sections 7, 18.3, 20, 25) and stream framer (RFC 5626 keep-alives).

`parse_message(bytes) -> SipRequest | SipResponse` validates at parse time what RFC 4475 expects a parser to
reject: bad start lines, malformed core headers (Via, From, To, Call-ID, CSeq, Max-Forwards, Contact,
Content-Length), duplicated single-value headers, CSeq/method mismatch, Content-Length against the body.
Other headers stay raw strings, typed only when someone asks (`SipMessage.vias`, `.cseq`, ...).

A request whose start line and core headers parsed but that is otherwise broken raises SipParseError with
`.partial` set, so the caller can still answer 400/505 with a Warning. Bare LF line ends are rejected: RFC 3261
requires CRLF and RFC 4475 has no test asking for leniency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from siprec.sip.errors import SipParseError
from siprec.sip.headers import (
    SINGLE_VALUE,
    TOKEN_CHARS,
    canonical_name,
    has_whitespace,
    parse_cseq,
    parse_name_addr,
    parse_via,
    split_comma,
)
from siprec.sip.message import Headers, SipRequest, SipResponse
from siprec.sip.uri import SIP_SCHEMES, parse_sip_uri, uri_scheme

# Bounds that keep hostile input linear and small.
MAX_HEADER_LINES = 256  # physical lines, continuation lines included
MAX_MESSAGE_SIZE = 65535  # default for StreamFramer; a UDP datagram cannot be larger anyway
MAX_CONTENT_LENGTH_DIGITS = 10

# Headers validated at parse time (typed parse); the rest are kept as raw text.
_NAME_ADDR = frozenset({"From", "To"})
_CORE = ("Via", "From", "To", "Call-ID", "CSeq")

_CANON_CACHE: dict[str, str] = {}
_CANON_CACHE_MAX = 1024


@dataclass(frozen=True)
class KeepAlive:
    """RFC 5626 double-CRLF ping seen on a stream; the transport answers with a single CRLF."""


KEEPALIVE = KeepAlive()


def _canonical(raw_name: str) -> str:
    """Header name as written -> canonical name, validating it is a token (cached: few names repeat)."""
    name = _CANON_CACHE.get(raw_name)
    if name is not None:
        return name
    stripped = raw_name.rstrip(" \t")
    if not stripped or not all(c in TOKEN_CHARS for c in stripped):
        raise SipParseError(f"bad header name {stripped[:40]!r}")
    name = canonical_name(stripped)
    if len(_CANON_CACHE) < _CANON_CACHE_MAX:
        _CANON_CACHE[raw_name] = name
    return name


def parse_message(data: bytes, *, datagram: bool = True) -> SipRequest | SipResponse:
    """Parse one SIP message.

    datagram=True (UDP): the body is Content-Length octets (extra octets ignored, fewer -> 400) or, without
    Content-Length, the rest of the datagram. datagram=False (one message cut out by StreamFramer): a
    Content-Length header is mandatory.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise SipParseError("message has no empty line ending the headers")
    head_bytes = data[:end]
    if head_bytes.count(b"\n") != head_bytes.count(b"\r\n") or head_bytes.count(b"\r") != head_bytes.count(
        b"\n"
    ):
        raise SipParseError("bare CR or LF in the header section (lines must end with CRLF)")
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"header section is not valid UTF-8 (octet {exc.start})") from None
    lines = head.split("\r\n")
    if len(lines) > MAX_HEADER_LINES:
        raise SipParseError(f"too many header lines (more than {MAX_HEADER_LINES})")

    start = lines[0]
    if start.startswith("SIP/"):
        return _parse_response(start, lines, data, end + 4, datagram)
    return _parse_request(start, lines, data, end + 4, datagram)


# --- start lines ----------------------------------------------------------------------------------------------


def _request_line(line: str) -> tuple[str, str, str, str | None, int]:
    """-> (method, uri, version, problem, status). The three parts are best effort even when there is a problem,
    so that a 400 can still be built."""
    parts = line.split(" ")
    if len(parts) == 3 and all(parts):
        method, uri, version = parts
        problem = None
    else:
        stripped = line.strip()
        words = stripped.split()
        if len(words) < 3:
            return "", "", "", f"bad request line {line[:80]!r}", 400
        method, version = words[0], words[-1]
        uri = stripped[len(method) : len(stripped) - len(version)].strip()
        if line.endswith((" ", "\t")):
            problem = "bad request line: whitespace after the SIP version"
        elif stripped != line:
            problem = "bad request line: whitespace before the method"
        elif len(words) == 3:
            problem = "bad request line: more than one space between elements"
        else:
            problem = f"bad Request-URI {uri[:80]!r}: contains whitespace"
        return method, uri, version, problem, 400
    if not all(c in TOKEN_CHARS for c in method):
        return method, uri, version, f"bad method {method[:40]!r}", 400
    if version != "SIP/2.0":
        upper = version.upper()
        if upper == "SIP/2.0":
            version = upper
        elif re.fullmatch(r"SIP/\d+\.\d+", upper):
            return method, uri, version, f"unsupported SIP version {version}", 505
        else:
            return method, uri, version, f"bad SIP version {version[:40]!r}", 400
    return method, uri, version, _check_request_uri(uri), 400


def _check_request_uri(uri: str) -> str | None:
    """Syntax only: scheme policy (416) belongs to the caller, so unknown schemes pass with the raw URI."""
    if uri.startswith("<"):
        return "bad Request-URI: enclosed in <>"
    scheme = uri_scheme(uri)
    if not scheme:
        return f"bad Request-URI {uri[:80]!r}: no scheme"
    if scheme in SIP_SCHEMES:
        try:
            parsed = parse_sip_uri(uri)
        except SipParseError as exc:
            return exc.warning.replace("bad URI", "bad Request-URI", 1)
        if parsed.headers:
            return "bad Request-URI: a SIP Request-URI must not contain headers"
    elif any(c in uri for c in '<>"'):
        return f"bad Request-URI {uri[:80]!r}"
    return None


def _status_line(line: str) -> tuple[str, int, str]:
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version.upper() != "SIP/2.0":
        raise SipParseError(f"unsupported SIP version {version[:40]!r} in response")
    if len(code) != 3 or not code.isdigit() or not code.isascii() or not 100 <= int(code) <= 699:
        raise SipParseError(f"bad status code {code[:40]!r}")
    return "SIP/2.0", int(code), reason


# --- header section -------------------------------------------------------------------------------------------


def _header_fields(lines: list[str]) -> list[tuple[str, str]]:
    """Unfold continuation lines and canonicalise names. Values are stripped; a fold becomes one space."""
    fields: list[tuple[str, str]] = []
    name = ""
    value = ""
    pending = False
    for line in lines[1:] if len(lines) > 1 else ():
        first = line[:1]
        if first == " " or first == "\t":
            if not pending:
                raise SipParseError("continuation line before the first header")
            value = f"{value} {line.strip()}"
            continue
        if pending:
            fields.append((name, value.strip()))
        raw_name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError(f"header line without colon: {line[:60]!r}")
        name = _canonical(raw_name)
        pending = True
    if pending:
        fields.append((name, value.strip()))
    return fields


class _Checker:
    """Validates the header fields, remembering the first problem instead of stopping at it, so a partial
    request can be built when the core headers are usable."""

    __slots__ = ("fields", "problem", "single", "content_length", "cseq_method")

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self.fields = fields
        self.problem: str | None = None
        self.single: dict[str, str] = {}
        self.content_length: int | None = None
        self.cseq_method: str | None = None

    def fail(self, problem: str) -> None:
        if self.problem is None:
            self.problem = problem

    def run(self) -> None:
        single = self.single
        for name, value in self.fields:
            if name in SINGLE_VALUE:
                if name in single:
                    if name == "Content-Length":
                        self.fail(f"multiple Content-Length headers ({single[name]}, {value})")
                    else:
                        self.fail(f"duplicate {name} header")
                    continue
                single[name] = value
            if name == "Via":
                self._via(value)
            elif name in _NAME_ADDR:
                try:
                    parse_name_addr(value, what=f"bad {name}")
                except SipParseError as exc:
                    self.fail(exc.warning)
            elif name == "Contact":
                self._contact(value)
        if not any(name == "Via" for name, _ in self.fields):
            self.fail("missing Via header")
        for name in _CORE[1:]:
            if name not in single:
                self.fail(f"missing {name} header")
        cseq = single.get("CSeq")
        if cseq is not None:
            try:
                self.cseq_method = parse_cseq(cseq).method
            except SipParseError as exc:
                self.fail(f"bad {exc.warning}")
        call_id = single.get("Call-ID")
        if call_id is not None and (not call_id or has_whitespace(call_id)):
            self.fail(f"bad Call-ID {call_id[:60]!r}")
        max_forwards = single.get("Max-Forwards")
        if max_forwards is not None and not (
            # Leading zeros are legal (RFC 4475 section 3.1.1.1: "0068").
            max_forwards.isdigit()
            and max_forwards.isascii()
            and len(max_forwards.lstrip("0")) <= 3
            and int(max_forwards) <= 255
        ):
            self.fail(f"bad Max-Forwards {max_forwards[:40]!r} (must be 0-255)")
        length = single.get("Content-Length")
        if length is not None:
            if length.isdigit() and length.isascii() and len(length) <= MAX_CONTENT_LENGTH_DIGITS:
                self.content_length = int(length)
            elif length.startswith("-") and length[1:].isdigit():
                self.fail(f"negative Content-Length {length[:40]}")
            else:
                self.fail(f"bad Content-Length {length[:40]!r}")

    def _via(self, value: str) -> None:
        try:
            items = split_comma(value, keep_empty=True) if "," in value else [value]
            for item in items:
                if not item:
                    raise SipParseError("Via: empty value in comma-separated list")
                parse_via(item)
        except SipParseError as exc:
            self.fail(f"bad {exc.warning}" if exc.warning.startswith("Via:") else f"bad Via: {exc.warning}")

    def _contact(self, value: str) -> None:
        try:
            items = split_comma(value, keep_empty=True) if "," in value else [value]
            for item in items:
                parse_name_addr(item, what="bad Contact")
        except SipParseError as exc:
            warning = exc.warning
            self.fail(warning if warning.startswith("bad Contact") else f"bad Contact: {warning}")


def _core_usable(fields: list[tuple[str, str]]) -> bool:
    """Enough to address a response: a top Via with sent-protocol and sent-by, and From/To/Call-ID/CSeq present
    (copied raw into the response, so they need not be valid)."""
    seen = set()
    top_via: str | None = None
    for name, value in fields:
        if name == "Via" and top_via is None:
            top_via = value
        seen.add(name)
    if top_via is None or not all(n in seen for n in _CORE[1:]):
        return False
    first = split_comma(top_via, keep_empty=True)[0] if '"' not in top_via else top_via.split(",")[0]
    proto, _, rest = first.partition("/")
    _, _, rest = rest.partition("/")
    words = rest.split(None, 1)
    if len(words) != 2:
        return False
    host = words[1].split(";", 1)[0].strip()
    return bool(host) and not any(c.isspace() for c in host)


def _body(data: bytes, offset: int, content_length: int | None, datagram: bool) -> tuple[bytes, str | None]:
    available = len(data) - offset
    if content_length is None:
        if datagram:
            return data[offset:], None
        return b"", "missing Content-Length header (required on stream transports)"
    if content_length > available:
        return data[offset:], f"Content-Length {content_length} larger than body {available}"
    # Extra octets after Content-Length in a datagram are noise (RFC 3261 section 18.3).
    return data[offset : offset + content_length], None


def _parse_request(start: str, lines: list[str], data: bytes, offset: int, datagram: bool) -> SipRequest:
    method, uri, version, problem, status = _request_line(start)
    if not method:
        raise SipParseError(problem or "bad request line")
    fields = _header_fields(lines)
    checker = _Checker(fields)
    checker.run()
    if problem is None:
        problem = checker.problem
        status = 400
    if problem is None and checker.cseq_method != method:
        problem = f"bad CSeq: method {checker.cseq_method} does not match request method {method}"
    body, body_problem = _body(data, offset, checker.content_length, datagram)
    if problem is None:
        problem = body_problem
    msg = SipRequest(
        headers=Headers.from_canonical(fields), body=body, version=version, method=method, uri=uri
    )
    if problem is not None:
        partial = msg if _core_usable(fields) else None
        if status == 505 and partial is None:
            status = 400
        raise SipParseError(problem, status=status, partial=partial)
    return msg


def _parse_response(start: str, lines: list[str], data: bytes, offset: int, datagram: bool) -> SipResponse:
    version, status, reason = _status_line(start)
    fields = _header_fields(lines)
    checker = _Checker(fields)
    checker.run()
    if checker.problem is not None:
        raise SipParseError(checker.problem)
    body, body_problem = _body(data, offset, checker.content_length, datagram)
    if body_problem is not None:
        raise SipParseError(body_problem)
    return SipResponse(
        headers=Headers.from_canonical(fields), body=body, version=version, status=status, reason=reason
    )


# --- streams --------------------------------------------------------------------------------------------------

_CONTENT_LENGTH_RE = re.compile(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)


class StreamFramer:
    """Cuts a TCP/TLS byte stream into messages (exact bytes, headers + Content-Length body) and keep-alives.

    A double CRLF between messages is an RFC 5626 ping (-> KEEPALIVE); a lone CRLF is ignored. Any framing error
    raises SipParseError (513 when a message would exceed `max_message_size`); the caller closes the connection.
    The buffer never holds more than max_message_size plus one fed chunk.
    """

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._buf = bytearray()
        self._scanned = 0  # how far the search for CRLFCRLF got, so re-scanning stays linear
        self._need: int | None = None  # total size of the message being received, once its headers are in

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def pending(self) -> bytes:
        """The bytes not yet framed (after an error: what the caller may salvage a response address from)."""
        return bytes(self._buf)

    def feed(self, data: bytes) -> list[bytes | KeepAlive]:
        self._buf += data
        out: list[bytes | KeepAlive] = []
        buf = self._buf
        while buf:
            if self._need is None:
                if buf[0] == 0x0D:  # CR: keep-alive or stray CRLF before a message
                    if buf.startswith(b"\r\n\r\n"):
                        out.append(KEEPALIVE)
                        del buf[:4]
                        continue
                    if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                        break  # maybe the start of a ping: wait
                    if buf.startswith(b"\r\n"):
                        del buf[:2]
                        continue
                end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
                if end < 0:
                    self._scanned = len(buf)
                    if len(buf) > self.max_message_size:
                        raise SipParseError(
                            f"message headers larger than {self.max_message_size} octets", status=513
                        )
                    break
                self._need = end + 4 + self._content_length(bytes(buf[: end + 2]))
                if self._need > self.max_message_size:
                    raise SipParseError(
                        f"message of {self._need} octets larger than {self.max_message_size}", status=513
                    )
            if len(buf) < self._need:
                break
            out.append(bytes(buf[: self._need]))
            del buf[: self._need]
            self._need = None
            self._scanned = 0
        return out

    @staticmethod
    def _content_length(head: bytes) -> int:
        values = {m.group(1).strip() for m in _CONTENT_LENGTH_RE.finditer(head)}
        if not values:
            raise SipParseError("missing Content-Length header (required on stream transports)")
        if len(values) > 1:
            raise SipParseError("multiple Content-Length headers")
        value = values.pop()
        if not value.isdigit() or len(value) > MAX_CONTENT_LENGTH_DIGITS:
            raise SipParseError(f"bad Content-Length {value.decode('latin-1')[:40]!r}")
        return int(value)
