"""sip/sips/tel URIs: parsing, %-decoding, RFC 3261 section 19.1.4 comparison, printing."""

from __future__ import annotations

import pytest

from siprec.sip.errors import SipParseError
from siprec.sip.uri import SipUri, TelUri, parse_uri, uri_scheme


def test_full_sip_uri() -> None:
    uri = parse_uri("sips:alice:secret@Atlanta.example.com:5061;transport=TCP;lr;maddr=239.255.255.1?subject=project%20x&priority=urgent")
    assert isinstance(uri, SipUri)
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sips", "alice", "secret", "Atlanta.example.com", 5061
    )
    assert uri.params == {"transport": "TCP", "lr": None, "maddr": "239.255.255.1"}
    assert uri.headers == {"subject": "project x", "priority": "urgent"}
    assert uri.secure and uri.transport == "tcp"


@pytest.mark.parametrize(
    ("text", "user", "host", "port"),
    [
        ("sip:example.com", None, "example.com", None),
        ("sip:+1-212-555-1212@gw.example.com;user=phone", "+1-212-555-1212", "gw.example.com", None),
        ("sip:alice@[2001:db8::10]:5070", "alice", "[2001:db8::10]", 5070),
        ("sip:[::1]", None, "[::1]", None),
        ("SIP:ALICE@AtLanTa.CoM", "ALICE", "AtLanTa.CoM", None),
        ("sip:user;par=u%40example.net@example.com", "user;par=u@example.net", "example.com", None),
        ("sip:null-%00-null@example.com", "null-\x00-null", "example.com", None),
        ("sip:%E2%82%AC@example.com", "€", "example.com", None),
    ],
)
def test_user_host_port(text: str, user: str | None, host: str, port: int | None) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    assert (uri.user, uri.host, uri.port) == (user, host, port)
    assert parse_uri(str(uri)) == uri


@pytest.mark.parametrize(
    ("text", "warning", "status"),
    [
        ("http://example.com", "unsupported URI scheme 'http'", 416),
        ("nobodyKnowsThisScheme:totallyopaquecontent", "unsupported URI scheme 'nobodyknowsthisscheme'", 416),
        ("example.com", "bad URI 'example.com': no scheme", 400),
        ("sip:", "bad URI 'sip:': bad host ''", 400),
        ("sip:a b@example.com", "bad URI 'sip:a b@example.com': whitespace, quote or angle bracket", 400),
        ("sip:alice@example.com:0", "bad URI 'sip:alice@example.com:0': bad port '0'", 400),
        ("sip:alice@example.com:70000", "bad URI 'sip:alice@example.com:70000': bad port '70000'", 400),
        ("sip:alice@[2001:db8::10", "bad URI 'sip:alice@[2001:db8::10': unterminated IPv6 reference", 400),
        ("sip:alice@[zz]", "bad URI 'sip:alice@[zz]': bad IPv6 reference", 400),
        ("sip:al%ZZice@example.com", "bad URI: bad %-escape in 'al%ZZice'", 400),
        ("sip:@example.com", "bad URI 'sip:@example.com': empty user part", 400),
        ("sip:alice@example.com;;lr", "bad URI 'sip:alice@example.com;;lr': empty parameter", 400),
        ("sip:alice@exa_mple.com", "bad URI 'sip:alice@exa_mple.com': bad host 'exa_mple.com'", 400),
        ("tel:", "bad URI 'tel:': bad telephone number", 400),
        ("tel:+1-abc", "bad URI 'tel:+1-abc': bad telephone number", 400),
    ],
)
def test_rejections(text: str, warning: str, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert (info.value.warning, info.value.status) == (warning, status)


def test_scheme_helper() -> None:
    assert uri_scheme("SIPS:a@b") == "sips"
    assert uri_scheme("soap.beep://192.0.2.103:3002") == "soap.beep"
    assert uri_scheme("<sip:a@b>") == "" and uri_scheme("nocolon") == ""


# RFC 3261 section 19.1.4 examples.
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
        ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
        ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com", "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
        ("sip:alice@atlanta.com?subject=project%20x&priority=urgent", "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
    ],
)
def test_equivalent(a: str, b: str) -> None:
    assert parse_uri(a).equals(parse_uri(b)) and parse_uri(b).equals(parse_uri(a))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ],
)
def test_not_equivalent(a: str, b: str) -> None:
    assert not parse_uri(a).equals(parse_uri(b))


def test_printing_escapes_what_it_must() -> None:
    uri = SipUri(host="example.com", user="I have spaces", params={"name": "a b"}, headers={"Subject": "x&y"})
    text = str(uri)
    assert text == "sip:I%20have%20spaces@example.com;name=a%20b?Subject=x%26y"
    assert parse_uri(text) == uri
    assert str(parse_uri("sip:%75ser@example.com:5060;lr")) == "sip:user@example.com:5060;lr"


def test_tel_uri() -> None:
    tel = parse_uri("tel:+1-201-555-0123;ext=1234")
    assert isinstance(tel, TelUri)
    assert tel.is_global and tel.digits == "+12015550123" and tel.params == {"ext": "1234"}
    assert tel.equals(parse_uri("tel:+1.201.555.0123;EXT=1234"))
    assert not tel.equals(parse_uri("tel:+1-201-555-0124;ext=1234"))
    local = parse_uri("tel:7042;phone-context=example.com")
    assert isinstance(local, TelUri) and not local.is_global
    assert str(local) == "tel:7042;phone-context=example.com"
    assert parse_uri(str(tel)) == tel
