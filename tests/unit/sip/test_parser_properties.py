"""Property tests: serialise/parse round trip, hostile mutations only ever raise SipParseError, chunking-proof framing."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siprec.sip.errors import SipParseError
from siprec.sip.message import Headers, SipRequest, SipResponse
from siprec.sip.multipart import parse_multipart
from siprec.sip.parser import KEEPALIVE, StreamFramer, parse_message
from siprec.sip.uri import SipUri, parse_uri

DATA = Path(__file__).resolve().parents[2] / "data" / "rfc4475"
SEEDS = [p.read_bytes() for p in sorted(DATA.glob("*.dat"))]

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~", min_size=1, max_size=12)
user_part = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.!*_+~&=$,", min_size=1, max_size=12)
host = st.from_regex(r"[a-z][a-z0-9]{0,8}(\.[a-z][a-z0-9]{0,8}){0,2}", fullmatch=True)
method = st.sampled_from(["INVITE", "OPTIONS", "BYE", "UPDATE", "ACK", "CANCEL", "INFO", "X-CUSTOM"])
display = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=16)
value_text = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E) | st.sampled_from(["é", "ü", "中"]), max_size=20)


@st.composite
def requests(draw: st.DrawFn) -> SipRequest:
    m = draw(method)
    user = draw(user_part)
    fields = [
        ("Via", f"SIP/2.0/{draw(st.sampled_from(['UDP', 'TCP', 'TLS']))} {draw(host)}:{draw(st.integers(1, 65535))};branch=z9hG4bK{draw(token)}"),
        ("Max-Forwards", str(draw(st.integers(0, 255)))),
        ("From", f'"{draw(display).replace(chr(92), "").replace(chr(34), "")}" <sip:{user}@{draw(host)}>;tag={draw(token)}'),
        ("To", f"<sip:{draw(token)}@{draw(host)}>"),
        ("Call-ID", f"{draw(token)}@{draw(host)}"),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {m}"),
    ]
    for _ in range(draw(st.integers(0, 4))):
        fields.append((f"X-{draw(token)}", draw(value_text).strip()))
    body = draw(st.binary(max_size=300))
    return SipRequest(headers=Headers(fields), body=body, method=m, uri=f"sip:{user}@{draw(host)}")


@st.composite
def responses(draw: st.DrawFn) -> SipResponse:
    req = draw(requests())
    reason = draw(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)).strip()
    return SipResponse(headers=req.headers, body=req.body, status=draw(st.integers(100, 699)), reason=reason)


@given(requests())
def test_request_round_trip(msg: SipRequest) -> None:
    wire = msg.serialize()
    parsed = parse_message(wire)
    assert isinstance(parsed, SipRequest)
    assert (parsed.method, parsed.uri, parsed.body) == (msg.method, msg.uri, msg.body)
    expected = [(n, v) for n, v in msg.headers] + [("Content-Length", str(len(msg.body)))]
    assert list(parsed.headers) == expected
    assert parsed.serialize() == wire
    assert parse_message(wire, datagram=False).serialize() == wire


@given(responses())
def test_response_round_trip(msg: SipResponse) -> None:
    wire = msg.serialize()
    parsed = parse_message(wire)
    assert isinstance(parsed, SipResponse)
    assert (parsed.status, parsed.reason, parsed.body) == (msg.status, msg.reason, msg.body)
    assert parsed.serialize() == wire


def _try_everything(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError as exc:
        assert 400 <= exc.status <= 599 and exc.warning
        if exc.partial is not None:
            assert isinstance(exc.partial, SipRequest)
        return
    # Whatever parsed must be usable by the layers above without anything but SipParseError.
    for accessor in ("call_id", "cseq", "from_", "to", "vias", "top_via", "content_type"):
        with contextlib.suppress(SipParseError):
            getattr(msg, accessor)
    if msg.content_type and msg.content_type.lower().startswith("multipart/"):
        with contextlib.suppress(SipParseError):
            parse_multipart(msg.content_type, msg.body)
    msg.serialize()


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=8), st.integers(0, 4000))
def test_mutations_only_raise_parse_errors(seed: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(seed)
    for pos, byte in flips:
        if data:
            data[pos % len(data)] = byte
    _try_everything(bytes(data[: max(cut, len(data) // 3)]))


@settings(max_examples=300)
@given(st.sampled_from(SEEDS), st.integers(0, 2000))
def test_truncations_only_raise_parse_errors(seed: bytes, cut: int) -> None:
    _try_everything(seed[:cut])


@settings(max_examples=200)
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_parse_errors(data: bytes) -> None:
    _try_everything(data)
    _try_everything(b"INVITE sip:a@b.example.com SIP/2.0\r\n" + data)


@given(st.text(max_size=80))
def test_uri_parser_only_raises_parse_errors(text: str) -> None:
    try:
        uri = parse_uri(text)
    except SipParseError:
        return
    assert parse_uri(str(uri)) == uri


@given(st.builds(SipUri, host=host, user=st.none() | st.text(max_size=10), port=st.none() | st.integers(1, 65535),
                 params=st.dictionaries(token.map(str.lower), st.none() | st.text(max_size=6), max_size=3)))
def test_uri_print_parse_round_trip(uri: SipUri) -> None:
    if uri.user == "":
        uri.user = None
    again = parse_uri(str(uri))
    assert again == uri and again.equals(uri)


@given(st.lists(requests(), min_size=1, max_size=5), st.lists(st.integers(1, 400), min_size=1, max_size=30),
       st.lists(st.booleans(), min_size=5, max_size=5))
def test_framing_is_independent_of_chunking(msgs: list[SipRequest], sizes: list[int], pings: list[bool]) -> None:
    stream = b""
    expected: list[object] = []
    for msg, ping in zip(msgs, pings, strict=False):
        wire = msg.serialize()
        stream += wire
        expected.append(wire)
        if ping:
            stream += b"\r\n\r\n"
            expected.append(KEEPALIVE)
    framer = StreamFramer()
    out: list[object] = []
    pos = 0
    i = 0
    while pos < len(stream):
        size = sizes[i % len(sizes)]
        out.extend(framer.feed(stream[pos : pos + size]))
        pos += size
        i += 1
    assert out == expected
    assert framer.buffered == 0
    whole = StreamFramer().feed(stream)
    assert whole == expected
