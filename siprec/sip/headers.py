"""Header names and the structured header values the stack relies on (RFC 3261 sections 7.3 and 20).

Pure functions over strings: canonical names (compact forms expanded), comma splitting that respects quotes and
angle brackets, generic parameters, and the typed values Via, name-addr (From/To/Contact/Route) and CSeq.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from siprec.sip.errors import SipParseError

# RFC 3261 section 7.3.3 and later RFCs (3262, 3515, 3841, 3892, 4028, 4474, 6665).
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

# Spellings that title-casing would get wrong.
_SPECIAL_SPELLING: dict[str, str] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "min-se": "Min-SE",
    "mime-version": "MIME-Version",
    "rseq": "RSeq",
    "rack": "RAck",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
    "p-asserted-identity": "P-Asserted-Identity",
    "p-preferred-identity": "P-Preferred-Identity",
}

# Headers whose value is a comma-separated list (RFC 3261 section 7.3.1). Others (Date, WWW-Authenticate,
# Authorization, ...) contain commas that do not separate values.
MULTI_VALUE: frozenset[str] = frozenset(
    {
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Allow",
        "Allow-Events",
        "Contact",
        "Content-Encoding",
        "Content-Language",
        "Proxy-Require",
        "Record-Route",
        "Require",
        "Route",
        "Supported",
        "Unsupported",
        "Via",
        "Warning",
        "Path",
        "Service-Route",
    }
)

# Headers that may appear at most once; a second copy is a malformed message (RFC 4475 section 3.1.2.19, 3.3.x).
SINGLE_VALUE: frozenset[str] = frozenset(
    {"Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Length", "Content-Type", "Expires"}
)


# RFC 3261 section 25.1: token characters.
TOKEN_CHARS: frozenset[str] = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)


# Regexes rather than per-character loops: this is the parser's hot path.
_TOKEN_MATCH = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+").fullmatch
_HOST_MATCH = re.compile(r"[A-Za-z0-9\-._]+").fullmatch
_WS_SEARCH = re.compile(r"\s").search


def is_token(text: str) -> bool:
    return _TOKEN_MATCH(text) is not None


def has_whitespace(text: str) -> bool:
    return _WS_SEARCH(text) is not None


# Cached: a handful of distinct names make up nearly every lookup; the bound keeps hostile input from growing it.
@lru_cache(maxsize=2048)
def canonical_name(name: str) -> str:
    """`v` -> `Via`, `call-id` -> `Call-ID`, `x-foo-bar` -> `X-Foo-Bar`."""
    low = name.strip().lower()
    if len(low) == 1 and low in COMPACT_FORMS:
        return COMPACT_FORMS[low]
    special = _SPECIAL_SPELLING.get(low)
    if special is not None:
        return special
    return "-".join(part[:1].upper() + part[1:] for part in low.split("-"))


def split_comma(value: str, *, keep_empty: bool = False) -> list[str]:
    """Split a header value at top-level commas: not inside "quoted strings" (with escapes) or <uris>.

    Empty elements (`a,,b`) are dropped unless `keep_empty`, which lets a strict caller reject them."""
    if '"' not in value and "<" not in value:
        # Fast path: nothing can hide a comma.
        items = [p.strip() for p in value.split(",")]
        return items if keep_empty else [p for p in items if p]
    parts: list[str] = []
    start = 0
    in_angle = False
    for i, ch in _unquoted(value, ",<>"):
        if ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif not in_angle:
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return parts if keep_empty else [p for p in parts if p]


def unquote(value: str) -> str:
    """Remove surrounding quotes of a quoted-string and resolve its backslash escapes."""
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        if "\\" not in value:
            return value[1:-1]
        out: list[str] = []
        i = 1
        while i < len(value) - 1:
            ch = value[i]
            if ch == "\\" and i + 1 < len(value) - 1:
                i += 1
                ch = value[i]
            out.append(ch)
            i += 1
        return "".join(out)
    return value


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquoted(text: str, targets: str) -> Iterator[tuple[int, str]]:
    """(index, char) of each character of `targets` outside "quoted strings" (backslash escapes honoured).
    Raises when the text ends inside a quoted string and the caller is still reading."""
    in_quotes = False
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if in_quotes:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif ch in targets:
            yield i, ch
        i += 1
    if in_quotes:
        raise SipParseError("unterminated quoted string")


def _split_unquoted(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    start = 0
    for i, _ in _unquoted(text, sep):
        parts.append(text[start:i])
        start = i + 1
    parts.append(text[start:])
    return parts


def parse_params(text: str) -> dict[str, str | None]:
    """`;a=1;b;c="x y"` (leading ';' optional) -> {'a': '1', 'b': None, 'c': 'x y'}; names lower-cased."""
    params: dict[str, str | None] = {}
    text = text.strip()
    if not text:
        return params
    if text.startswith(";"):
        text = text[1:]
    for raw in text.split(";") if '"' not in text else _split_unquoted(text, ";"):
        raw = raw.strip()
        if not raw:
            raise SipParseError("empty header parameter")
        if "=" in raw:
            name, _, val = raw.partition("=")
            name = name.strip()
            val = val.strip()
            if not name:
                raise SipParseError("header parameter without a name")
            if not is_token(name):
                raise SipParseError(f"bad header parameter name {name!r}")
            if val.startswith('"'):
                if len(val) < 2 or not val.endswith('"'):
                    raise SipParseError(f"bad quoted parameter value {val!r}")
                params[name.lower()] = unquote(val)
            else:
                params[name.lower()] = val
        else:
            if not is_token(raw):
                raise SipParseError(f"bad header parameter {raw!r}")
            params[raw.lower()] = None
    return params


def format_params(params: dict[str, str | None]) -> str:
    out: list[str] = []
    for name, val in params.items():
        if val is None:
            out.append(f";{name}")
        elif _needs_quotes(val):
            out.append(f";{name}={quote(val)}")
        else:
            out.append(f";{name}={val}")
    return "".join(out)


_TOKEN_EXTRA = set("-.!%*_+`'~:[]")


def _needs_quotes(val: str) -> bool:
    return any(not (c.isalnum() or c in _TOKEN_EXTRA) for c in val) or val == ""


@dataclass
class Via:
    """One Via value: `SIP/2.0/UDP host:port;branch=z9hG4bK...;rport`."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> str:
        return f"{self.host}:{self.port}" if self.port is not None else self.host

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"


def _parse_hostport(text: str, what: str) -> tuple[str, int | None]:
    text = text.strip()
    if not text:
        raise SipParseError(f"{what}: missing host")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"{what}: unterminated IPv6 reference")
        host = text[: end + 1]
        rest = text[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise SipParseError(f"{what}: junk after IPv6 reference")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.partition(":")
        if not sep:
            _check_host(host, what)
            return host, None
        _check_host(host, what)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SipParseError(f"{what}: bad port {port_text!r}")
    return host, int(port_text)


def _check_host(host: str, what: str) -> None:
    if _HOST_MATCH(host) is None:
        raise SipParseError(f"{what}: bad host {host!r}")


def parse_via(value: str) -> Via:
    """Parse ONE Via value (split the header with `split_comma` first).

    LWS is legal around the '/' of the sent-protocol and before ';' (RFC 4475 section 3.1.1.1)."""
    name, sep1, rest = value.partition("/")
    version, sep2, rest = rest.partition("/")
    name = name.strip()
    version = version.strip()
    rest = rest.lstrip()
    transport_end = 0
    while transport_end < len(rest) and rest[transport_end] not in " \t;":
        transport_end += 1
    transport = rest[:transport_end]
    if not (sep1 and sep2) or not is_token(name) or not is_token(version) or not is_token(transport):
        raise SipParseError("Via: bad sent-protocol")
    protocol = f"{name.upper()}/{version}"
    if protocol != "SIP/2.0":
        raise SipParseError(f"Via: unsupported protocol {protocol}")
    sent = rest[transport_end:]
    if sent[:1] not in (" ", "\t"):
        raise SipParseError("Via: missing sent-by")
    hostport, semi, param_text = sent.partition(";")
    params = parse_params(param_text) if semi else {}
    host, port = _parse_hostport(hostport.strip(), "Via")
    return Via(transport=transport.upper(), host=host, port=port, params=params, protocol=protocol)


@dataclass
class NameAddr:
    """From/To/Contact/Route/Record-Route value: optional display name, a URI, header parameters."""

    uri: str
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    # True when the value was written as addr-spec without <>; serialised with <> anyway (always legal).
    bare: bool = False

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        name = f"{quote(self.display_name)} " if self.display_name is not None else ""
        return f"{name}<{self.uri}>{format_params(self.params)}"


def parse_name_addr(value: str, *, what: str = "name-addr") -> NameAddr:
    """Parse one name-addr or addr-spec. For addr-spec, parameters after the URI belong to the header
    (RFC 3261 section 20.10), which is what `;tag=` relies on."""
    value = value.strip()
    if not value:
        raise SipParseError(f"{what}: empty")
    if value == "*":
        return NameAddr(uri="*", bare=True)
    if value[0] == '"':
        closing = closing_quote(value, 0)
        lt = value.find("<", closing + 1) if closing > 0 else -1
    else:
        lt = value.find("<")
    if lt >= 0:
        display = value[:lt].strip()
        gt = value.find(">", lt)
        if gt < 0:
            raise SipParseError(f"{what}: missing '>'")
        uri = value[lt + 1 : gt]
        rest = value[gt + 1 :].strip()
        if rest and not rest.startswith(";"):
            raise SipParseError(f"{what}: junk after '>'")
        display_name: str | None
        if not display:
            display_name = None
        elif display[0] == '"':
            if closing_quote(display, 0) != len(display) - 1:
                raise SipParseError(f"{what}: bad quoted display name")
            display_name = unquote(display)
        else:
            words = display.split()
            # An unquoted display name is tokens separated by LWS (RFC 4475 section 3.1.2.15).
            if not all(is_token(w) for w in words):
                raise SipParseError(f"{what}: unquoted display name {display!r} has non-token characters")
            display_name = " ".join(words)
        if not uri:
            raise SipParseError(f"{what}: empty URI")
        if _WS_SEARCH(uri) is not None:
            # Including "< sip:a@b >" (RFC 4475 section 3.1.2.14).
            raise SipParseError(f"{what}: whitespace in URI")
        if ":" not in uri:
            raise SipParseError(f"{what}: URI without scheme")
        return NameAddr(uri=uri, display_name=display_name, params=parse_params(rest))
    if value[0] == '"':
        if closing_quote(value, 0) < 0:
            raise SipParseError(f"{what}: unterminated quoted string")
        raise SipParseError(f"{what}: quoted display name without <URI>")
    # addr-spec: no display name; the URI ends at the first ';' (URI params would need <>), and may not hold
    # ',', '?' or ';' (RFC 3261 section 20.10).
    uri, sep, rest = value.partition(";")
    uri = uri.strip()
    if _WS_SEARCH(uri) is not None or '"' in uri or ">" in uri:
        raise SipParseError(f"{what}: bad addr-spec")
    if ":" not in uri:
        raise SipParseError(f"{what}: URI without scheme")
    if "?" in uri:
        raise SipParseError(f"{what}: addr-spec with headers needs <>")
    return NameAddr(uri=uri, params=parse_params(rest) if sep else {}, bare=True)


def closing_quote(text: str, start: int) -> int:
    """Index of the '"' closing the quoted-string opened at `start` (backslash escapes honoured), or -1."""
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i
        i += 1
    return -1


def _find_unquoted(text: str, ch: str) -> int:
    try:
        return next(i for i, _ in _unquoted(text, ch))
    except (StopIteration, SipParseError):
        return -1  # not there (an unterminated quote is reported by the caller's own checks)


@dataclass(frozen=True)
class CSeq:
    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(value: str) -> CSeq:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or not parts[0].isascii() or not is_token(parts[1]):
        raise SipParseError("CSeq: expected '<number> <method>'")
    # RFC 3261 section 8.1.1.5: less than 2**31. Length first: int() of a huge digit string is not free.
    if len(parts[0]) > 10 or int(parts[0]) >= 2**31:
        raise SipParseError(f"CSeq: sequence number {parts[0][:40]} out of range")
    return CSeq(int(parts[0]), parts[1])
