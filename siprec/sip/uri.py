"""SIP, SIPS (RFC 3261 section 19.1) and tel (RFC 3966) URIs: parse, compare, print.

Values are kept %-decoded (user, password, parameters, headers), so comparison is on meaning, and `str()` escapes
again only what must be escaped: `parse_uri(str(u)) == u` always holds, byte-exact round trip does not.
Unknown schemes raise SipParseError(416): the caller decides whether that matters (a Request-URI yes, a To no).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from siprec.sip.errors import SipParseError

# RFC 3261 section 25.1: unreserved = alphanum / mark.
_UNRESERVED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()")
_USER_SAFE = _UNRESERVED | frozenset("&=+$,;?/")
_PASSWORD_SAFE = _UNRESERVED | frozenset("&=+$,")
_PARAM_SAFE = _UNRESERVED | frozenset("[]/:&+$")
_HEADER_SAFE = _UNRESERVED | frozenset("[]/?:+$")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")
_HEX = frozenset("0123456789abcdefABCDEF")
# Characters no URI may hold unescaped (they end the URI inside a header, or are LWS).
_FORBIDDEN = frozenset(' \t\r\n<>"')

SIP_SCHEMES = frozenset({"sip", "sips"})
# Parameters that must match when present in either URI (RFC 3261 section 19.1.4).
_MUST_MATCH = ("user", "ttl", "method", "maddr", "transport")


def uri_scheme(text: str) -> str:
    """The lower-cased scheme of a URI ('' when there is none): lets a caller apply its scheme policy cheaply."""
    scheme, sep, _ = text.partition(":")
    if not sep or not scheme or not scheme[0].isalpha():
        return ""
    if not all(c.isalnum() or c in "+-." for c in scheme):
        return ""
    return scheme.lower()


def unescape(text: str, what: str = "URI") -> str:
    """%HH -> character (UTF-8; undecodable octets survive as surrogates so that escaping restores them)."""
    if "%" not in text:
        return text
    out = bytearray()
    raw = text.encode("utf-8", "surrogateescape")
    i = 0
    n = len(raw)
    while i < n:
        b = raw[i]
        if b == 0x25:  # '%'
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or not all(chr(c) in _HEX for c in pair):
                raise SipParseError(f"bad {what}: bad %-escape in {text!r}")
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(b)
            i += 1
    return out.decode("utf-8", "surrogateescape")


def escape(text: str, safe: frozenset[str]) -> str:
    if all(c in safe for c in text):
        return text
    out: list[str] = []
    for c in text:
        if c in safe:
            out.append(c)
        else:
            out.extend(f"%{b:02X}" for b in c.encode("utf-8", "surrogateescape"))
    return "".join(out)


@dataclass
class SipUri:
    """`sip:user:password@host:port;param=value?header=value` with every part decoded."""

    host: str
    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def secure(self) -> bool:
        return self.scheme == "sips"

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.lower() if value else None

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(escape(self.user, _USER_SAFE))
            if self.password is not None:
                out.append(":" + escape(self.password, _PASSWORD_SAFE))
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        for name, value in self.params.items():
            out.append(";" + escape(name, _PARAM_SAFE))
            if value is not None:
                out.append("=" + escape(value, _PARAM_SAFE))
        if self.headers:
            out.append(
                "?"
                + "&".join(
                    f"{escape(k, _HEADER_SAFE)}={escape(v, _HEADER_SAFE)}" for k, v in self.headers.items()
                )
            )
        return "".join(out)

    def equals(self, other: object) -> bool:
        """URI equality of RFC 3261 section 19.1.4 (not the dataclass `==`, which is structural)."""
        if not isinstance(other, SipUri):
            return False
        if self.scheme != other.scheme or self.user != other.user or self.password != other.password:
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        mine = {k.lower(): (v.lower() if v is not None else None) for k, v in self.params.items()}
        theirs = {k.lower(): (v.lower() if v is not None else None) for k, v in other.params.items()}
        for name in _MUST_MATCH:
            if (name in mine or name in theirs) and mine.get(name, "") != theirs.get(name, ""):
                return False
        for name in mine.keys() & theirs.keys():
            if mine[name] != theirs[name]:
                return False
        my_headers = {k.lower(): v for k, v in self.headers.items()}
        their_headers = {k.lower(): v for k, v in other.headers.items()}
        return my_headers == their_headers


@dataclass
class TelUri:
    """`tel:+1-201-555-0123;phone-context=example.com` (RFC 3966)."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)

    scheme = "tel"

    @property
    def is_global(self) -> bool:
        return self.number.startswith("+")

    @property
    def digits(self) -> str:
        """The number without visual separators (RFC 3966 section 5.1.1)."""
        return "".join(c for c in self.number if c not in "-.()")

    def __str__(self) -> str:
        out = ["tel:", self.number]
        for name, value in self.params.items():
            out.append(f";{name}" if value is None else f";{name}={escape(value, _PARAM_SAFE)}")
        return "".join(out)

    def equals(self, other: object) -> bool:
        if not isinstance(other, TelUri):
            return False
        lower = lambda p: {k.lower(): (v.lower() if v else v) for k, v in p.items()}  # noqa: E731
        return self.digits.lower() == other.digits.lower() and lower(self.params) == lower(other.params)


def parse_uri(text: str) -> SipUri | TelUri:
    """Parse a sip:, sips: or tel: URI; any other scheme -> SipParseError(status=416)."""
    scheme = uri_scheme(text)
    if scheme in SIP_SCHEMES:
        return parse_sip_uri(text)
    if scheme == "tel":
        return _parse_tel(text)
    if not scheme:
        raise SipParseError(f"bad URI {text[:80]!r}: no scheme")
    raise SipParseError(f"unsupported URI scheme {scheme!r}", status=416)


def parse_sip_uri(text: str) -> SipUri:
    if any(c in _FORBIDDEN for c in text):
        raise SipParseError(f"bad URI {text[:80]!r}: whitespace, quote or angle bracket")
    colon = text.find(":")
    scheme = text[:colon].lower()
    if scheme not in SIP_SCHEMES:
        raise SipParseError(f"unsupported URI scheme {scheme!r}", status=416)
    rest = text[colon + 1 :]
    user = password = None
    # userinfo may hold ';' '?' '/' but never an unescaped '@', so the first '@' ends it (RFC 3261 section 25.1).
    at = rest.find("@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        raw_user, sep, raw_password = userinfo.partition(":")
        if not raw_user:
            raise SipParseError(f"bad URI {text[:80]!r}: empty user part")
        user = unescape(raw_user)
        password = unescape(raw_password) if sep else None
    rest, qmark, header_text = rest.partition("?")
    hostport, _, param_text = rest.partition(";")
    host, port = _parse_hostport(hostport, text)
    params = _uri_params(param_text, text)
    headers: dict[str, str] = {}
    if qmark:
        for raw in header_text.split("&"):
            name, eq, value = raw.partition("=")
            if not name or not eq:
                raise SipParseError(f"bad URI {text[:80]!r}: bad header {raw!r}")
            headers[unescape(name)] = unescape(value)
    return SipUri(
        host=host, scheme=scheme, user=user, password=password, port=port, params=params, headers=headers
    )


def _parse_hostport(hostport: str, text: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise SipParseError(f"bad URI {text[:80]!r}: unterminated IPv6 reference")
        host = hostport[: end + 1]
        inner = host[1:-1]
        if not inner or not all(c in _HEX or c in ":." for c in inner) or ":" not in inner:
            raise SipParseError(f"bad URI {text[:80]!r}: bad IPv6 reference")
        after = hostport[end + 1 :]
        if after and not after.startswith(":"):
            raise SipParseError(f"bad URI {text[:80]!r}: junk after IPv6 reference")
        port_text = after[1:] if after else None
    else:
        host, sep, port_text_or_empty = hostport.partition(":")
        port_text = port_text_or_empty if sep else None
        if not host or not all(c in _HOST_CHARS for c in host) or host.startswith((".", "-")):
            raise SipParseError(f"bad URI {text[:80]!r}: bad host {host!r}")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise SipParseError(f"bad URI {text[:80]!r}: bad port {port_text!r}")
    return host, int(port_text)


def _parse_tel(text: str) -> TelUri:
    if any(c in _FORBIDDEN for c in text):
        raise SipParseError(f"bad URI {text[:80]!r}: whitespace, quote or angle bracket")
    body = text[text.find(":") + 1 :]
    number, _, param_text = body.partition(";")
    core = number[1:] if number.startswith("+") else number
    allowed = "0123456789-.()" if number.startswith("+") else "0123456789abcdefABCDEF*#-.()"
    if not core or not all(c in allowed for c in core) or not any(c.isalnum() or c in "*#" for c in core):
        raise SipParseError(f"bad URI {text[:80]!r}: bad telephone number")
    params = _uri_params(param_text, text)
    return TelUri(number=number, params=params)


def _uri_params(param_text: str, text: str) -> dict[str, str | None]:
    """`a=1;b` of a sip/sips/tel URI: names lower-cased, %-escapes resolved; empty or nameless ones are errors."""
    params: dict[str, str | None] = {}
    if not param_text:
        return params
    for raw in param_text.split(";"):
        if not raw:
            raise SipParseError(f"bad URI {text[:80]!r}: empty parameter")
        name, eq, value = raw.partition("=")
        if not name:
            raise SipParseError(f"bad URI {text[:80]!r}: parameter without a name")
        params[unescape(name).lower()] = unescape(value) if eq else None
    return params
