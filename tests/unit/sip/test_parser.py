"""parse_message and StreamFramer: table tests of start lines, headers, bodies, warnings and partial requests."""

from __future__ import annotations

import pytest

from siprec.sip.errors import SipParseError
from siprec.sip.message import SipRequest, SipResponse
from siprec.sip.parser import KEEPALIVE, MAX_HEADER_LINES, KeepAlive, StreamFramer, parse_message

CORE = (
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport\r\n"
    "Max-Forwards: 70\r\n"
    'From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n'
    "To: <sip:srs@example.com>\r\n"
    "Call-ID: a84b4c76e66710@pc33\r\n"
)


def request(
    method: str = "OPTIONS",
    *,
    line: str | None = None,
    extra: str = "",
    cseq: str | None = None,
    body: bytes = b"",
    length: str | None = "auto",
    core: str = CORE,
) -> bytes:
    start = line if line is not None else f"{method} sip:srs@example.com SIP/2.0"
    cl = "" if length is None else f"Content-Length: {len(body) if length == 'auto' else length}\r\n"
    head = f"{start}\r\n{core}CSeq: {cseq or '1 ' + method}\r\n{extra}{cl}\r\n"
    return head.encode() + body


def error_of(data: bytes, **kw: bool) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        parse_message(data, **kw)
    return info.value


def test_request_fields() -> None:
    msg = parse_message(request("INVITE", body=b"v=0\r\n", extra="Content-Type: application/sdp\r\n"))
    assert isinstance(msg, SipRequest)
    assert (msg.method, msg.uri, msg.version) == ("INVITE", "sip:srs@example.com", "SIP/2.0")
    assert msg.body == b"v=0\r\n"
    assert msg.top_via.branch == "z9hG4bK776asdhds" and msg.top_via.port == 5060
    assert msg.top_via.params["rport"] is None
    assert msg.from_.display_name == "Alice" and msg.from_.tag == "1928301774"
    assert msg.to.tag is None
    assert msg.cseq.seq == 1 and msg.max_forwards == 70
    assert msg.content_type == "application/sdp"


def test_response_fields() -> None:
    data = ("SIP/2.0 180 Ringing Now\r\n" + CORE + "CSeq: 4 INVITE\r\nContent-Length: 0\r\n\r\n").encode()
    msg = parse_message(data)
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason) == (180, "Ringing Now")


def test_compact_forms_case_and_folding() -> None:
    data = (
        b"OPTIONS sip:srs@example.com SIP/2.0\r\n"
        b"v: SIP/2.0/TCP a.example.com;branch=z9hG4bK1,\r\n SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\n"
        b"f: <sip:a@example.com>;tag=1\r\nt: sip:b@example.com\r\ni: abc@host\r\n"
        b"cSeQ: 7\r\n\tOPTIONS\r\nm: <sip:a@10.0.0.1>, <sip:a@10.0.0.2>;q=0.5\r\n"
        b"k: timer, siprec\r\nX-Custom : one\r\nx-custom: two\r\nl: 0\r\n\r\n"
    )
    msg = parse_message(data)
    assert [v.host for v in msg.vias] == ["a.example.com", "b.example.com"]
    assert msg.cseq.seq == 7 and msg.call_id == "abc@host"
    assert msg.headers.get_all("Contact") == ["<sip:a@10.0.0.1>", "<sip:a@10.0.0.2>;q=0.5"]
    assert msg.headers.tokens("Supported") == ["timer", "siprec"]
    assert msg.headers.get_raw("X-Custom") == ["one", "two"]
    assert [n for n, _ in msg.headers][:5] == ["Via", "From", "To", "Call-ID", "CSeq"]


def test_utf8_display_name_and_body() -> None:
    body = "v=0\r\ns=Grüße\r\n".encode()
    data = request(core=CORE.replace('"Alice"', '"Zoë Ünal"'), body=body)
    msg = parse_message(data)
    assert msg.from_.display_name == "Zoë Ünal" and msg.body == body


@pytest.mark.parametrize(
    ("data", "warning", "status", "has_partial"),
    [
        (request(line="OPTIONS  sip:srs@example.com SIP/2.0"), "bad request line: more than one space between elements", 400, True),
        (request(line="OPTIONS sip:srs@example.com SIP/2.0 "), "bad request line: whitespace after the SIP version", 400, True),
        (request(line="OPTIONS sip:a b@example.com SIP/2.0"), "bad Request-URI 'sip:a b@example.com': contains whitespace", 400, True),
        (request(line="OPTIONS <sip:srs@example.com> SIP/2.0"), "bad Request-URI: enclosed in <>", 400, True),
        (request(line="OPTIONS sip:srs@example.com?Subject=x SIP/2.0"), "bad Request-URI: a SIP Request-URI must not contain headers", 400, True),
        (request(line="OPTIONS srs.example.com SIP/2.0"), "bad Request-URI 'srs.example.com': no scheme", 400, True),
        (request(line="OPTIONS sip:srs@example.com SIP/3.0"), "unsupported SIP version SIP/3.0", 505, True),
        (request(line="OPTIONS sip:srs@example.com HTTP/1.1"), "bad SIP version 'HTTP/1.1'", 400, True),
        (request(line="OPT<IONS sip:srs@example.com SIP/2.0", cseq="1 OPTIONS"), "bad method 'OPT<IONS'", 400, True),
        (request(cseq="1 INVITE"), "bad CSeq: method INVITE does not match request method OPTIONS", 400, True),
        (request(cseq="x OPTIONS"), "bad CSeq: expected '<number> <method>'", 400, True),
        (request(cseq="2147483648 OPTIONS"), "bad CSeq: sequence number 2147483648 out of range", 400, True),
        (request(extra="Max-Forwards: 256\r\n", core=CORE.replace("Max-Forwards: 70\r\n", "")), "bad Max-Forwards '256' (must be 0-255)", 400, True),
        (request(extra="Max-Forwards: -1\r\n", core=CORE.replace("Max-Forwards: 70\r\n", "")), "bad Max-Forwards '-1' (must be 0-255)", 400, True),
        (request(extra="Call-ID: other@pc33\r\n"), "duplicate Call-ID header", 400, True),
        (request(extra="To: <sip:x@example.com>\r\n"), "duplicate To header", 400, True),
        (request(length="-5"), "negative Content-Length -5", 400, True),
        (request(length="five"), "bad Content-Length 'five'", 400, True),
        (request(body=b"x" * 120, length="150"), "Content-Length 150 larger than body 120", 400, True),
        (request(extra="Content-Length: 0\r\n", length="3", body=b"abc"), "multiple Content-Length headers (0, 3)", 400, True),
        (request(core=CORE.replace("Call-ID: a84b4c76e66710@pc33\r\n", "")), "missing Call-ID header", 400, False),
        (request(core=CORE.replace("To: <sip:srs@example.com>\r\n", "")), "missing To header", 400, False),
        (request(core=CORE.replace("Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport\r\n", "")), "missing Via header", 400, False),
        (request(core=CORE.replace("Call-ID: a84b4c76e66710@pc33", "Call-ID: a b")), "bad Call-ID 'a b'", 400, True),
        (request(core=CORE.replace("<sip:srs@example.com>", '"Unclosed <sip:srs@example.com>')), "bad To: unterminated quoted string", 400, True),
        (request(core=CORE.replace("<sip:srs@example.com>", "<sip:srs@example.com")), "bad To: missing '>'", 400, True),
        (request(core=CORE.replace('"Alice"', "Smith, Alice")), "bad From: unquoted display name 'Smith, Alice' has non-token characters", 400, True),
        (request(core=CORE.replace(";rport", ";;")), "bad Via: empty header parameter", 400, True),
        (request(core=CORE.replace(";rport", ";rport,,")), "bad Via: empty value in comma-separated list", 400, True),
        (request(core=CORE.replace("10.0.0.1:5060", "10.0.0.1:99999")), "bad Via: bad port '99999'", 400, True),
        (request(core=CORE.replace("SIP/2.0/UDP", "SIP/2.0")), "bad Via: bad sent-protocol", 400, False),
        (request(extra="Contact: sip:a@b.example.com?Route=x\r\n"), "bad Contact: addr-spec with headers needs <>", 400, True),
        (request(extra="Contact: <sip:a@b.example.com>;;\r\n"), "bad Contact: empty header parameter", 400, True),
        (request(extra="Bad Name: x\r\n"), "bad header name 'Bad Name'", 400, False),
        (request(extra="NoColonHere\r\n"), "header line without colon: 'NoColonHere'", 400, False),
    ],
)
def test_rejections(data: bytes, warning: str, status: int, has_partial: bool) -> None:
    err = error_of(data)
    assert (err.warning, err.status) == (warning, status)
    assert (err.partial is not None) is has_partial
    if has_partial:
        assert isinstance(err.partial, SipRequest)
        assert err.partial.headers.get("Call-ID") is not None


def test_partial_holds_what_parsed() -> None:
    err = error_of(request("INVITE", cseq="1 INVITE", body=b"x" * 10, length="20"))
    partial = err.partial
    assert isinstance(partial, SipRequest)
    assert partial.method == "INVITE" and partial.call_id == "a84b4c76e66710@pc33"
    assert partial.top_via.branch == "z9hG4bK776asdhds"


def test_structural_errors_without_partial() -> None:
    assert error_of(b"").warning == "message has no empty line ending the headers"
    assert error_of(b"OPTIONS sip:a@b SIP/2.0\r\n").warning == "message has no empty line ending the headers"
    bare_lf = request().replace(b"\r\nMax-Forwards", b"\nMax-Forwards")
    assert error_of(bare_lf).warning == "bare CR or LF in the header section (lines must end with CRLF)"
    assert error_of(request().replace(b"\r\n", b"\n") + b"\r\n\r\n").warning.startswith("bare CR or LF")
    assert error_of(b"\xff\xfe\r\n\r\n").warning == "header section is not valid UTF-8 (octet 0)"
    assert error_of(b"GARBAGE\r\n\r\n").warning == "bad request line 'GARBAGE'"
    assert error_of(b" OPTIONS sip:a@b SIP/2.0\r\n\r\n").warning == "bad request line: whitespace before the method"
    many = request(extra="X-A: 1\r\n" * MAX_HEADER_LINES)
    assert error_of(many).warning == f"too many header lines (more than {MAX_HEADER_LINES})"
    folded_first = b"OPTIONS sip:a@b.example.com SIP/2.0\r\n folded\r\n\r\n"
    assert error_of(folded_first).warning == "continuation line before the first header"


@pytest.mark.parametrize(
    ("start", "warning"),
    [
        ("SIP/2.0 20 OK", "bad status code '20'"),
        ("SIP/2.0 700 Huh", "bad status code '700'"),
        ("SIP/2.0 4294967301 big", "bad status code '4294967301'"),
        ("SIP/3.0 200 OK", "unsupported SIP version 'SIP/3.0' in response"),
    ],
)
def test_bad_status_lines(start: str, warning: str) -> None:
    data = f"{start}\r\n{CORE}CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n".encode()
    err = error_of(data)
    assert err.warning == warning and err.partial is None


def test_response_without_reason_phrase_is_accepted() -> None:
    for start in ("SIP/2.0 100 ", "SIP/2.0 100"):
        msg = parse_message(f"{start}\r\n{CORE}CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n".encode())
        assert isinstance(msg, SipResponse) and msg.reason == ""


def test_datagram_body_rules() -> None:
    # Extra octets after Content-Length are ignored; a missing Content-Length takes the rest of the datagram.
    assert parse_message(request(body=b"abc", length="3") + b"JUNK").body == b"abc"
    assert parse_message(request(body=b"abc\r\n", length=None)).body == b"abc\r\n"
    # On a stream (datagram=False) Content-Length is mandatory.
    err = error_of(request(body=b"", length=None), datagram=False)
    assert err.warning == "missing Content-Length header (required on stream transports)"
    assert err.partial is not None


def test_unknown_request_uri_scheme_is_kept_raw() -> None:
    msg = parse_message(request(line="OPTIONS urn:service:sos SIP/2.0"))
    assert msg.uri == "urn:service:sos"
    msg = parse_message(request(line="OPTIONS tel:+1-201-555-0123 SIP/2.0"))
    assert msg.uri == "tel:+1-201-555-0123"


def test_ipv6_references() -> None:
    core = CORE.replace("10.0.0.1:5060", "[2001:db8::9:1]:5070")
    msg = parse_message(request(line="OPTIONS sip:srs@[2001:db8::10] SIP/2.0", core=core))
    assert msg.top_via.host == "[2001:db8::9:1]" and msg.top_via.port == 5070
    assert msg.uri == "sip:srs@[2001:db8::10]"


# --- StreamFramer ---------------------------------------------------------------------------------------------


def test_framer_messages_keepalives_and_stray_crlf() -> None:
    one = request(body=b"hello", length="5")
    two = request("INVITE", body=b"", length="0")
    framer = StreamFramer()
    out = framer.feed(b"\r\n" + one + b"\r\n\r\n" + two[:10])
    assert out == [one, KEEPALIVE]
    assert isinstance(out[1], KeepAlive)
    assert framer.feed(two[10:]) == [two]
    assert framer.buffered == 0
    # A ping split across reads is still one ping; a lone CRLF then a message is just the message.
    assert framer.feed(b"\r\n") == [] and framer.feed(b"\r\n") == [KEEPALIVE]
    assert framer.feed(b"\r\n" + one) == [one]


def test_framer_errors() -> None:
    with pytest.raises(SipParseError) as info:
        StreamFramer().feed(request(length=None))
    assert info.value.status == 400
    assert info.value.warning == "missing Content-Length header (required on stream transports)"
    with pytest.raises(SipParseError) as info:
        StreamFramer().feed(request(length="abc"))
    assert info.value.warning == "bad Content-Length 'abc'"
    with pytest.raises(SipParseError) as info:
        StreamFramer().feed(request(extra="l: 4\r\n", length="5", body=b"12345"))
    assert info.value.warning == "multiple Content-Length headers"
    small = StreamFramer(max_message_size=300)
    with pytest.raises(SipParseError) as info:
        small.feed(request(body=b"x" * 400, length="400")[:320])
    assert info.value.status == 513
    endless = StreamFramer(max_message_size=1000)
    endless.feed(b"OPTIONS sip:a@b SIP/2.0\r\n")
    with pytest.raises(SipParseError) as info:
        for _ in range(100):
            endless.feed(b"X-Filler: " + b"y" * 20 + b"\r\n")
    assert info.value.status == 513 and endless.buffered <= 1000 + 40


def test_framer_buffer_is_bounded_and_scan_linear() -> None:
    framer = StreamFramer(max_message_size=65535)
    head = request(body=b"z" * 60000, length="60000")
    for i in range(0, len(head), 1000):
        framer.feed(head[i : i + 1000])
        assert framer.buffered <= 65535
    assert framer.buffered == 0


def test_framer_pending_keeps_unframed_bytes_for_salvage() -> None:
    framer = StreamFramer()
    broken = request(length=None)
    with pytest.raises(SipParseError):
        framer.feed(broken)
    assert framer.pending() == broken
