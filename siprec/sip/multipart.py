"""multipart/* bodies (RFC 2046 section 5.1) as SIPREC INVITEs carry them (SDP + rs-metadata, RFC 7866).

Tolerant where vendors are sloppy and it is unambiguous: quoted or bare boundary parameter, CRLF or bare LF line
ends, preamble/epilogue, transport padding after a delimiter, a missing close delimiter. Anything else is a
SipParseError(400) whose warning says what and where.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from siprec.sip.errors import SipParseError
from siprec.sip.headers import TOKEN_CHARS, parse_params
from siprec.sip.message import Headers

MAX_PARTS = 32
MAX_PART_HEADER_LINES = 64
_BCHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")


@dataclass
class BodyPart:
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @classmethod
    def make(cls, content_type: str, body: bytes, disposition: str | None = None) -> BodyPart:
        headers = Headers([("Content-Type", content_type)])
        if disposition is not None:
            headers.add("Content-Disposition", disposition)
        return cls(headers=headers, body=body)

    @property
    def content_type(self) -> str:
        """Media type without parameters, lower-cased; RFC 2046 default text/plain."""
        value = self.headers.get("Content-Type")
        if value is None:
            return "text/plain"
        return value.split(";", 1)[0].strip().lower()

    @property
    def disposition(self) -> str | None:
        """Disposition type without parameters, lower-cased (`session`, `recording-session`, `render`...)."""
        value = self.headers.get("Content-Disposition")
        return value.split(";", 1)[0].strip().lower() if value else None

    @property
    def disposition_params(self) -> dict[str, str | None]:
        value = self.headers.get("Content-Disposition") or ""
        _, sep, params = value.partition(";")
        return parse_params(params) if sep else {}


def media_type(content_type: str) -> tuple[str, dict[str, str | None]]:
    """`multipart/mixed;boundary="x"` -> ('multipart/mixed', {'boundary': 'x'}), validating type/subtype."""
    mtype, sep, params = content_type.partition(";")
    mtype = mtype.strip().lower()
    top, slash, sub = mtype.partition("/")
    if not slash or not top or not sub or not all(c in TOKEN_CHARS for c in top + sub):
        raise SipParseError(f"bad Content-Type {content_type[:80]!r}")
    return mtype, (parse_params(params) if sep else {})


def boundary_of(content_type: str) -> str:
    mtype, params = media_type(content_type)
    if not mtype.startswith("multipart/"):
        raise SipParseError(f"multipart: Content-Type {mtype} is not multipart")
    boundary = params.get("boundary")
    if not boundary:
        raise SipParseError("multipart: Content-Type has no boundary parameter")
    if len(boundary) > 70 or not all(c in _BCHARS for c in boundary) or boundary.endswith(" "):
        raise SipParseError(f"multipart: bad boundary {boundary[:80]!r}")
    return boundary


def parse_multipart(content_type: str, body: bytes) -> list[BodyPart]:
    """Split a multipart body into its parts (not recursive: a nested multipart part stays one BodyPart)."""
    delimiter = b"--" + boundary_of(content_type).encode("ascii")
    # The first delimiter starts the body or a line; what precedes it is preamble.
    if body.startswith(delimiter):
        pos = 0
    else:
        found = body.find(b"\n" + delimiter)
        if found < 0:
            raise SipParseError(f"multipart: boundary {delimiter[2:].decode()!r} not found in body")
        pos = found + 1
    parts: list[BodyPart] = []
    while True:
        after = pos + len(delimiter)
        if body.startswith(b"--", after):
            break  # close delimiter; the rest is epilogue
        eol = body.find(b"\n", after)
        if eol < 0:
            if body[after:].strip():
                raise SipParseError(f"multipart part {len(parts) + 1}: junk after boundary")
            break  # delimiter at the very end without close marker
        if body[after:eol].strip(b" \t\r"):
            raise SipParseError(f"multipart part {len(parts) + 1}: junk after boundary")
        start = eol + 1
        nxt = body.find(b"\n" + delimiter, start - 1)
        if nxt < 0:
            # Missing close delimiter (seen from some SBCs): the last part runs to the end.
            content = body[start:]
        else:
            end = nxt - 1 if nxt > start and body[nxt - 1 : nxt] == b"\r" else nxt
            content = body[start:end] if end >= start else b""
        if len(parts) >= MAX_PARTS:
            raise SipParseError(f"multipart: more than {MAX_PARTS} parts")
        parts.append(_parse_part(content, len(parts) + 1))
        if nxt < 0:
            break
        pos = nxt + 1
    if not parts:
        raise SipParseError("multipart: no body parts")
    return parts


def _parse_part(content: bytes, number: int) -> BodyPart:
    # Headers end at the first empty line (CRLF or bare LF); a part may also start with the empty line.
    if content.startswith(b"\r\n"):
        return BodyPart(Headers(), content[2:])
    if content.startswith(b"\n"):
        return BodyPart(Headers(), content[1:])
    crlf = content.find(b"\r\n\r\n")
    lf = content.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        head, payload = content[:crlf], content[crlf + 4 :]
    elif lf >= 0:
        head, payload = content[:lf], content[lf + 2 :]
    else:
        raise SipParseError(f"multipart part {number}: no empty line after the part headers")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError(f"multipart part {number}: headers are not valid UTF-8") from None
    lines = text.replace("\r\n", "\n").split("\n")
    if len(lines) > MAX_PART_HEADER_LINES:
        raise SipParseError(f"multipart part {number}: too many header lines")
    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or not all(c in TOKEN_CHARS for c in name):
            raise SipParseError(f"multipart part {number}: bad header line {line[:60]!r}")
        fields.append((name, value.strip()))
    headers = Headers(fields)
    ctype = headers.get("Content-Type")
    if ctype is not None:
        try:
            media_type(ctype)
        except SipParseError:
            raise SipParseError(f"multipart part {number}: bad Content-Type {ctype[:80]!r}") from None
    return BodyPart(headers, payload)


def build_multipart(
    parts: Iterable[BodyPart], *, boundary: str | None = None, subtype: str = "mixed"
) -> tuple[str, bytes]:
    """-> (Content-Type value, body) with CRLF line ends and a close delimiter."""
    boundary = boundary or "siprec-" + secrets.token_hex(12)
    delimiter = b"--" + boundary.encode("ascii")
    chunks: list[bytes] = []
    for part in parts:
        if delimiter in part.body:
            raise ValueError("boundary occurs inside a body part")
        head = "".join(f"{name}: {value}\r\n" for name, value in part.headers).encode("utf-8")
        chunks.append(delimiter + b"\r\n" + head + b"\r\n" + part.body + b"\r\n")
    chunks.append(delimiter + b"--\r\n")
    return f"multipart/{subtype};boundary={boundary}", b"".join(chunks)
