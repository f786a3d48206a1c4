"""SDP text <-> model: `parse_sdp` (tolerant, bounded, precise 400 warnings) and `serialize_sdp` (CRLF).

The parser keeps what the SRC sent (unknown attributes and lines too) so that `parse_sdp(serialize_sdp(d)) == d`.
Malformed mandatory lines (v=, o=, c=, m=, a=rtpmap) raise `SdpError` 400; a malformed optional attribute (ptime,
rtcp, fmtp, crypto) is kept as an unknown attribute, because one odd line from an SBC must not cost the recording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from siprec.srs.sdp.model import (
    MAX_LINES,
    MAX_MEDIA,
    MAX_SDP_SIZE,
    STATIC_PAYLOAD_TYPES,
    Attribute,
    Bandwidth,
    Codec,
    Connection,
    CryptoAttribute,
    Direction,
    MediaDescription,
    Origin,
    RtcpAttribute,
    SdpError,
    SessionDescription,
    warning_text,
)

_NUM = re.compile(r"[0-9]{1,10}")  # ASCII digits only: int() would accept Unicode digits and huge strings
_DIRECTIONS = frozenset(d.value for d in Direction)
# Spellings other stacks expect on the wire (names are case-insensitive, RFC 4855, but not every parser agrees).
_WIRE_SPELLING = {"TELEPHONE-EVENT": "telephone-event", "OPUS": "opus"}

# ---------------------------------------------------------------------------------------------------- parsing


def _bad(warning: str) -> SdpError:
    return SdpError(status=400, warning=warning)


def _num(text: str) -> int | None:
    return int(text) if _NUM.fullmatch(text) else None


def _parse_connection(value: str) -> Connection | None:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6") or not parts[2]:
        return None
    return Connection(address=parts[2], addr_type=parts[1], net_type=parts[0])


def _parse_crypto(value: str) -> CryptoAttribute | None:
    parts = value.split()
    if len(parts) < 3 or (tag := _num(parts[0])) is None or not parts[2].startswith("inline:"):
        return None
    # Only the first key-param is used; extra ";"-separated keys (rare) are ignored.
    key, *extras = parts[2][len("inline:") :].split(";", 1)[0].split("|")
    if not key or len(extras) > 2:
        return None
    lifetime = next((e for e in extras if ":" not in e), None)
    mki = next((e for e in extras if ":" in e), None)
    return CryptoAttribute(tag, parts[1], key, lifetime, mki, tuple(parts[3:]))


def _parse_rtcp(value: str) -> RtcpAttribute | None:
    port_text, _, rest = value.partition(" ")
    port = _num(port_text)
    if port is None or port > 65535:
        return None
    conn = _parse_connection(rest) if rest.strip() else None
    if rest.strip() and conn is None:
        return None
    return RtcpAttribute(port, conn)


def _parse_ms(value: str) -> int | None:
    # ptime is milliseconds; some stacks write "20.0".
    whole, _, frac = value.partition(".")
    ms = _num(whole)
    return ms if ms is not None and (not frac or frac.isascii() and frac.isdigit()) else None


def _split_lines(text: str | bytes) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based line number (blank lines, leading or trailing, carry nothing)."""
    if len(text) > MAX_SDP_SIZE:
        raise _bad(f"SDP body larger than {MAX_SDP_SIZE} bytes")
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")  # a stray Latin-1 s= line must not cost the call
    raw = re.split(r"\r\n|\r|\n", text)
    lines = [(n, ln.rstrip(" \t")) for n, ln in enumerate(raw, start=1) if ln.strip(" \t")]
    if len(lines) > MAX_LINES:
        raise _bad(f"SDP has more than {MAX_LINES} lines")
    return lines


@dataclass
class _RawMedia:
    number: int  # SDP line number of the m= line, for warnings
    value: str
    lines: list[tuple[int, str, str]] = field(default_factory=list)


def parse_sdp(text: str | bytes) -> SessionDescription:
    """Parse one SDP body; raise `SdpError` (400) with a precise warning when it is not usable SDP."""
    lines = _split_lines(text)
    if not lines or not lines[0][1].startswith("v="):
        missing = not any(ln.startswith("v=") for _, ln in lines)
        raise _bad("SDP missing v= line" if missing else "SDP must start with v=")
    if lines[0][1] != "v=0":
        raise _bad(f"unsupported SDP version '{warning_text(lines[0][1][2:])}'")
    session: list[tuple[int, str, str]] = []
    media: list[_RawMedia] = []
    for number, line in lines[1:]:
        if len(line) < 2 or line[1] != "=" or not (line[0].isascii() and line[0].isalpha()):
            raise _bad(f"SDP line {number} is not <type>=<value>: '{warning_text(line)}'")
        kind, value = line[0], line[2:]
        if kind == "m":
            if len(media) >= MAX_MEDIA:
                raise _bad(f"SDP has more than {MAX_MEDIA} m= lines")
            media.append(_RawMedia(number, value))
        elif media:
            media[-1].lines.append((number, kind, value))
        else:
            session.append((number, kind, value))

    desc = _parse_session(session)
    if not media:
        raise _bad("SDP has no m= line")
    desc.media = [_parse_media(i, raw, desc) for i, raw in enumerate(media)]
    return desc


def _parse_session(lines: list[tuple[int, str, str]]) -> SessionDescription:
    origin: Origin | None = None
    desc = SessionDescription(origin=Origin("-", "0", "0", Connection("0.0.0.0")))
    for number, kind, value in lines:
        if kind == "o":
            parts = value.split()
            conn = _parse_connection(" ".join(parts[3:])) if len(parts) == 6 else None
            if conn is None or origin is not None:
                raise _bad(f"bad o= line {number}: '{warning_text(value)}'")
            origin = Origin(parts[0], parts[1], parts[2], conn)
        elif kind == "s":
            desc.session_name = value
        elif kind == "c":
            if (conn := _parse_connection(value)) is None:
                raise _bad(f"bad c= line {number}: '{warning_text(value)}'")
            desc.connection = conn
        elif kind == "t":
            desc.timing = value
        elif kind == "b":
            _add_bandwidth(desc.bandwidths, desc.other_lines, value)
        elif kind == "a":
            name, sep, attr_value = value.partition(":")
            if not sep and name in _DIRECTIONS:
                desc.direction = Direction(name)
            else:
                desc.attributes.append(Attribute(name, attr_value if sep else None))
        else:
            desc.other_lines.append((kind, value))
    if origin is None:
        raise _bad("SDP missing o= line")
    desc.origin = origin
    return desc


def _add_bandwidth(into: list[Bandwidth], other: list[tuple[str, str]], value: str) -> None:
    bwtype, _, amount = value.partition(":")
    if (kbps := _num(amount)) is not None and bwtype:
        into.append(Bandwidth(bwtype, kbps))
    else:
        other.append(("b", value))  # odd but harmless: keep it verbatim


def _parse_media(index: int, raw: _RawMedia, session: SessionDescription) -> MediaDescription:
    where = f"m-line {index} (SDP line {raw.number})"
    parts = raw.value.split()
    if len(parts) < 3:
        raise _bad(f"bad m= line at {where}: '{warning_text(raw.value)}'")
    port_text, _, count_text = parts[1].partition("/")
    port, count = _num(port_text), (_num(count_text) if count_text else 1)
    if port is None or port > 65535 or not count:
        raise _bad(f"bad port in m= line at {where}: '{warning_text(parts[1])}'")
    m = MediaDescription(index=index, media=parts[0].lower(), port=port, proto=parts[2], port_count=count)
    is_rtp = "RTP/" in m.proto.upper()
    numeric: list[int] = []
    for fmt in parts[3:]:
        pt = _num(fmt) if is_rtp else None
        if is_rtp and (pt is None or pt > 127):
            raise _bad(f"bad payload type '{warning_text(fmt)}' in m= line at {where}")
        if pt is None:
            m.other_formats.append(fmt)
        elif pt not in numeric:
            numeric.append(pt)
    if not parts[3:] and port != 0:
        raise _bad(f"m= line without formats at {where}")

    rtpmap: dict[int, tuple[str, int, int]] = {}
    fmtp: dict[int, str] = {}
    direction: Direction | None = None
    for number, kind, value in raw.lines:
        if kind == "c":
            conn = _parse_connection(value)
            if conn is None:
                raise _bad(f"bad c= line {number} in {where}: '{warning_text(value)}'")
            m.connection = m.connection or conn  # several c= lines are multicast layers: the first is enough
            continue
        if kind == "b":
            _add_bandwidth(m.bandwidths, m.other_lines, value)
            continue
        if kind != "a":
            m.other_lines.append((kind, value))
            continue
        name, sep, val = value.partition(":")
        known = _media_attribute(m, name, val if sep else None, numeric)
        if name == "rtpmap" and sep and known is None:
            raise _bad(f"bad a=rtpmap at SDP line {number} in {where}: '{warning_text(val)}'")
        if isinstance(known, Direction):
            direction = known
        elif isinstance(known, tuple) and known[0] == "rtpmap" and known[1] not in rtpmap:
            rtpmap[known[1]] = known[2]
        elif isinstance(known, tuple) and known[0] == "fmtp":
            fmtp.setdefault(known[1], known[2])
        elif known is None:
            m.attributes.append(Attribute(name, val if sep else None))

    m.connection = m.connection or session.connection
    m.direction = direction or session.direction or Direction.SENDRECV
    for pt in numeric:
        enc, rate, channels = rtpmap.get(pt) or STATIC_PAYLOAD_TYPES.get(pt) or ("", 0, 1)
        m.formats.append(Codec(pt, enc, rate, channels, fmtp.get(pt)))
    return m


_Known = Direction | tuple | bool


def _media_attribute(m: MediaDescription, name: str, val: str | None, pts: list[int]) -> _Known | None:
    """Fill a known media attribute into `m`; None means "keep it as an unknown attribute"."""
    if val is None:
        if name in _DIRECTIONS:
            return Direction(name)
        if name == "rtcp-mux":
            m.rtcp_mux = True
            return True
        return None
    if name == "label" and m.label is None:
        m.label = val.strip()
        return True
    if name == "rtpmap":
        match = re.fullmatch(r"([0-9]{1,3}) +([^/ ]+)/([0-9]{1,7})(?:/([0-9]{1,2}))?", val.strip())
        if match is None or int(match[1]) > 127 or int(match[3]) == 0 or match[4] == "0" or match[4] == "00":
            return None
        pt = int(match[1])
        if pt not in pts:
            return False  # mapping for a format not offered: drop it as RFC 8866 6.6 allows
        return ("rtpmap", pt, (match[2].upper(), int(match[3]), int(match[4] or 1)))
    if name == "fmtp":
        pt_text, _, params = val.partition(" ")
        pt = _num(pt_text)
        return ("fmtp", pt, params.strip()) if pt is not None and pt in pts else None
    if name in ("ptime", "maxptime") and (ms := _parse_ms(val)) is not None:
        if name == "ptime" and m.ptime is None:
            m.ptime = ms
        elif name == "maxptime" and m.maxptime is None:
            m.maxptime = ms
        return True  # a repeated ptime is dropped: the first one rules
    if name == "rtcp" and m.rtcp is None and (rtcp := _parse_rtcp(val)) is not None:
        m.rtcp = rtcp
        return True
    if name == "crypto" and (crypto := _parse_crypto(val)) is not None:
        m.crypto.append(crypto)
        return True
    return None


# ---------------------------------------------------------------------------------------------------- serialising


def _conn(c: Connection) -> str:
    return f"{c.net_type} {c.addr_type} {c.address}"


def _attr(a: Attribute) -> str:
    return f"a={a.name}" if a.value is None else f"a={a.name}:{a.value}"


def _crypto_value(c: CryptoAttribute) -> str:
    key = "|".join([c.key_b64] + [x for x in (c.lifetime, c.mki) if x is not None])
    return " ".join([str(c.tag), c.suite, f"inline:{key}", *c.session_params])


def _media_lines(m: MediaDescription, session_conn: Connection | None) -> list[str]:
    port = f"{m.port}/{m.port_count}" if m.port_count != 1 else str(m.port)
    fmts = [str(c.payload_type) for c in m.formats] + m.other_formats
    out = ["m=" + " ".join([m.media, port, m.proto, *fmts])]
    out += [f"{k}={v}" for k, v in m.other_lines]
    if m.connection is not None and m.connection != session_conn:
        out.append(f"c={_conn(m.connection)}")
    out += [f"b={b.type}:{b.value}" for b in m.bandwidths]
    for c in m.formats:
        if c.encoding and c.clock_rate:
            channels = f"/{c.channels}" if c.channels != 1 else ""
            name = _WIRE_SPELLING.get(c.encoding, c.encoding)
            out.append(f"a=rtpmap:{c.payload_type} {name}/{c.clock_rate}{channels}")
        if c.fmtp is not None:
            out.append(f"a=fmtp:{c.payload_type} {c.fmtp}".rstrip())
    out += [f"a={name}:{ms}" for name, ms in (("ptime", m.ptime), ("maxptime", m.maxptime)) if ms is not None]
    if m.rtcp is not None:
        rtcp_conn = f" {_conn(m.rtcp.connection)}" if m.rtcp.connection else ""
        out.append(f"a=rtcp:{m.rtcp.port}{rtcp_conn}")
    if m.rtcp_mux:
        out.append("a=rtcp-mux")
    out += [f"a=crypto:{_crypto_value(c)}" for c in m.crypto]
    if m.label is not None:
        out.append(f"a=label:{m.label}")
    out.append(f"a={m.direction}")
    out += [_attr(a) for a in m.attributes]
    return out


def serialize_sdp(desc: SessionDescription) -> str:
    """Render `desc` as SDP text with CRLF line ends (known attributes first, then the kept unknown ones)."""
    o = desc.origin
    out = [
        "v=0",
        f"o={o.username} {o.session_id} {o.session_version} {_conn(o.connection)}",
        f"s={desc.session_name}",
    ]
    if desc.connection is not None:
        out.append(f"c={_conn(desc.connection)}")
    out += [f"b={b.type}:{b.value}" for b in desc.bandwidths]
    out.append(f"t={desc.timing}")
    out += [f"{k}={v}" for k, v in desc.other_lines]
    if desc.direction is not None:
        out.append(f"a={desc.direction}")
    out += [_attr(a) for a in desc.attributes]
    for m in desc.media:
        out += _media_lines(m, desc.connection)
    return "\r\n".join(out) + "\r\n"
