"""multipart bodies: every real SIPREC body of the shared fixtures, RFC 2046 details, errors, building."""

from __future__ import annotations

from pathlib import Path

import pytest

from siprec.sip.errors import SipParseError
from siprec.sip.multipart import BodyPart, boundary_of, build_multipart, parse_multipart
from siprec.sip.parser import parse_message

SDP, META, META_PLAIN = "application/sdp", "application/rs-metadata+xml", "application/rs-metadata"

# file -> [(content type, disposition)] of its parts, read off the captures by hand.
EXPECTED_PARTS: dict[str, list[tuple[str, str | None]]] = {
    "acme-siprec-offer.txt": [(SDP, None), (META, "recording-session")],
    "avaya-siprec-offer.txt": [(SDP, None), (META, "recording-session")],
    "broadworks-offer-2.txt": [(SDP, None), (META, "recording-session")],
    "cisco-siprec-offer.txt": [(SDP, "session"), (META, "recording-session"), ("application/gtd", "signal")],
    "connectel-offer.txt": [(SDP, None), (META, "recording-session")],
    "connectel-offer2.txt": [(SDP, None), (META, "recording-session")],
    "connectel-offer3.txt": [(SDP, None), (META, "recording-session")],
    "inactive-sdp-offer.txt": [(SDP, "session"), (META, "recording-session")],
    "procomm-siprec-offer.txt": [(SDP, None), (META_PLAIN, "recording-session")],
    "sonus-siprec-offer.txt": [(SDP, "session"), (META, "recording-session")],
}
NOT_MULTIPART = ["non-siprec-payload.txt", "sample-sdp2.txt", "sample-sdp3.txt", "sample-sdps.txt"]


def first_boundary(body: bytes) -> str:
    line = next(line for line in body.splitlines() if line.startswith(b"--"))
    return line[2:].strip().decode()


@pytest.mark.parametrize("name", sorted(EXPECTED_PARTS))
def test_fixture_bodies(fixtures_dir: Path, name: str) -> None:
    body = (fixtures_dir / "siprec" / "invites" / name).read_bytes()
    parts = parse_multipart(f'multipart/mixed;boundary="{first_boundary(body)}"', body)
    assert [(p.content_type, p.disposition) for p in parts] == EXPECTED_PARTS[name]
    sdp = parts[0].body
    assert sdp.startswith(b"v=0") and b"m=audio" in sdp
    meta = parts[1].body
    assert meta.lstrip().startswith((b"<?xml", b"<recording", b"<tns:recording"))
    assert meta.rstrip().endswith((b"recording>", b"</tns:recording>"))
    assert not meta.endswith(b"\n--")


def test_fixture_full_invite_intrado(fixtures_dir: Path) -> None:
    text = (fixtures_dir / "siprec" / "invites" / "intrado-siprec-invite.txt").read_bytes()
    data = text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    msg = parse_message(data)
    parts = parse_multipart(msg.content_type or "", msg.body)
    assert [(p.content_type, p.disposition) for p in parts] == [(SDP, None), (META_PLAIN, "recording-session")]
    assert msg.headers.tokens("Require") == ["siprec"]


def test_fixture_corrupt_broadworks_is_400(fixtures_dir: Path) -> None:
    body = (fixtures_dir / "siprec" / "invites" / "broadworks-offer.txt").read_bytes()
    with pytest.raises(SipParseError) as info:
        parse_multipart("multipart/mixed;boundary=UniqueBroadWorksBoundary", body)
    assert info.value.status == 400
    assert info.value.warning == "multipart part 1: bad Content-Type 'application/ +xml'"


@pytest.mark.parametrize("name", NOT_MULTIPART)
def test_fixture_non_multipart(fixtures_dir: Path, name: str) -> None:
    body = (fixtures_dir / "siprec" / "invites" / name).read_bytes()
    with pytest.raises(SipParseError) as info:
        parse_multipart("multipart/mixed;boundary=uniqueBoundary", body)
    assert info.value.warning == "multipart: boundary 'uniqueBoundary' not found in body"


def test_rfc2046_details() -> None:
    body = (
        b"This is the preamble.\r\n--b1 \t\r\nContent-Type: application/sdp\r\n"
        b"Content-Disposition: session;handling=required\r\n\r\nv=0\r\n\r\n"
        b"--b1\r\n\r\nno headers here\r\n--b1--\r\nepilogue\r\n"
    )
    parts = parse_multipart("Multipart/Mixed; charset=utf-8; boundary=b1", body)
    assert parts[0].content_type == SDP and parts[0].body == b"v=0\r\n"
    assert parts[0].disposition == "session" and parts[0].disposition_params == {"handling": "required"}
    assert parts[1].content_type == "text/plain" and parts[1].body == b"no headers here"
    assert len(parts[1].headers) == 0


def test_bare_lf_and_folded_part_headers() -> None:
    body = b"--x\nContent-Type:\n application/sdp\n\nv=0\n--x--\n"
    parts = parse_multipart("multipart/mixed;boundary=x", body)
    assert parts[0].content_type == SDP and parts[0].body == b"v=0"


def test_boundary_look_alike_inside_a_line_is_content() -> None:
    body = b"--x\r\nContent-Type: text/plain\r\n\r\nabc --x not a delimiter\r\n--x--\r\n"
    parts = parse_multipart("multipart/mixed;boundary=x", body)
    assert parts[0].body == b"abc --x not a delimiter"


@pytest.mark.parametrize(
    ("content_type", "body", "warning"),
    [
        ("multipart/mixed", b"--x\r\n\r\na\r\n--x--", "multipart: Content-Type has no boundary parameter"),
        ("application/sdp", b"v=0", "multipart: Content-Type application/sdp is not multipart"),
        ("multipart/mixed;boundary=" + "b" * 71, b"", "multipart: bad boundary '" + "b" * 71 + "'"),
        ("multipart/mixed;boundary=x", b"no delimiter", "multipart: boundary 'x' not found in body"),
        ("multipart/mixed;boundary=x", b"--x--\r\n", "multipart: no body parts"),
        ("multipart/mixed;boundary=x", b"--xjunk\r\n\r\na\r\n--x--", "multipart part 1: junk after boundary"),
        ("multipart/mixed;boundary=x", b"--x\r\nBad Header\r\n\r\na\r\n--x--", "multipart part 1: bad header line 'Bad Header'"),
        ("multipart/mixed;boundary=x", b"--x\r\nContent-Type: text/plain", "multipart part 1: no empty line after the part headers"),
        ("multipart/mixed;boundary=x", b"--x\r\n\r\na\r\n" * 40 + b"--x--", "multipart: more than 32 parts"),
        ("multi part/mixed;boundary=x", b"", "bad Content-Type 'multi part/mixed;boundary=x'"),
    ],
)
def test_errors(content_type: str, body: bytes, warning: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_multipart(content_type, body)
    assert info.value.status == 400 and info.value.warning == warning


def test_build_round_trip() -> None:
    sdp = BodyPart.make(SDP, b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\n", disposition="session;handling=required")
    meta = BodyPart.make(META, b'<?xml version="1.0"?>\r\n<recording/>', disposition="recording-session")
    content_type, body = build_multipart([sdp, meta], boundary="abc123")
    assert content_type == "multipart/mixed;boundary=abc123"
    assert boundary_of(content_type) == "abc123"
    assert body.endswith(b"--abc123--\r\n")
    parsed = parse_multipart(content_type, body)
    assert parsed == [sdp, meta]
    generated, _ = build_multipart([sdp])
    assert boundary_of(generated).startswith("siprec-")
    with pytest.raises(ValueError):
        build_multipart([BodyPart.make("text/plain", b"--abc123")], boundary="abc123")
