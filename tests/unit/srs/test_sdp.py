"""SDP parsing, serialisation, the SIPREC answer and re-offer diffs (siprec.srs.sdp)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siprec.sip.errors import SipError
from siprec.sip.multipart import parse_multipart
from siprec.srs.sdp import (
    MAX_MEDIA,
    Attribute,
    Bandwidth,
    Codec,
    Connection,
    CryptoAttribute,
    Direction,
    NegotiatedStream,
    RtcpAttribute,
    SdpError,
    SessionDescription,
    build_answer,
    diff_streams,
    parse_sdp,
    serialize_sdp,
)
from tests.support import FIXTURES

INVITES = FIXTURES / "siprec" / "invites"
DECODABLE = ["PCMU", "PCMA", "G722", "OPUS", "L16", "G729"]
OUR_KEY = bytes(range(30))


def sdp_bodies(path: Path) -> list[str]:
    """The application/sdp parts of a fixture: multipart parts, `__split_here__` chunks or a bare SDP body."""
    text = path.read_text()
    bodies = []
    for chunk in re.split(r"^--\S.*$", text, flags=re.M):
        head, _, body = chunk.lstrip("\r\n").partition("\n\n")
        if "application/sdp" in head.lower():
            bodies.append(body)
    return bodies or [part for part in text.split("__split_here__") if "v=0" in part]


def answer(
    offer: SessionDescription | str, **kw: object
) -> tuple[SessionDescription, list[NegotiatedStream]]:
    if isinstance(offer, str):
        offer = parse_sdp(offer)
    args: dict[str, object] = {
        "address": "10.0.0.1",
        "ports": [40000, 40002, 40004, 40006],
        "decodable": DECODABLE,
        "session_id": 7,
        "session_version": 1,
        "srtp_key_factory": lambda: OUR_KEY,
    }
    args.update(kw)
    return build_answer(offer, **args)  # type: ignore[arg-type]


def sdp(*media: str, session: str = "c=IN IP4 192.0.2.1\n") -> str:
    return "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\n" + session + "t=0 0\n" + "".join(media)


AUDIO = (
    "m=audio 5000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\na=label:1\na=sendonly\n"
)

# ---------------------------------------------------------------------------------------------------- fixtures

# Per fixture and SDP body, per m-line: port, label, direction, offered encodings, remote address, ptime;
# then what we answer: (codec, telephone-event payload type, answered direction) per m-line.
PCMU_TE = ["PCMU", "TELEPHONE-EVENT"]
CONNECTEL = [
    [
        (35011, "1", "sendonly", ["PCMU", "PCMA", "GSM", "TELEPHONE-EVENT"], None, None),
        (35012, "2", "sendonly", ["PCMA", "PCMU", "TELEPHONE-EVENT"], None, None),
    ],
    [("PCMU", 101, "recvonly"), ("PCMA", 101, "recvonly")],
]
FIXTURE_EXPECTATIONS: dict[str, list[list[list[tuple[object, ...]]]]] = {
    "acme-siprec-offer.txt": [
        [
            [
                (20106, "16777227", "sendonly", ["PCMU"], "192.168.50.140", None),
                (20110, "16777228", "sendonly", ["PCMU"], "192.168.50.140", None),
            ],
            [("PCMU", None, "recvonly"), ("PCMU", None, "recvonly")],
        ]
    ],
    "avaya-siprec-offer.txt": [
        [
            [
                (33802, "201835599", "sendonly", ["PCMA", "G729", "TELEPHONE-EVENT"], "10.89.88.244", 20),
                (33806, "201835600", "sendonly", ["PCMA", "TELEPHONE-EVENT"], "10.89.88.244", 20),
            ],
            [("PCMA", 101, "recvonly"), ("PCMA", 101, "recvonly")],
        ]
    ],
    "broadworks-offer-2.txt": [
        [
            [
                (38606, "10", "sendonly", ["PCMA", "TELEPHONE-EVENT"], "10.201.1.168", 20),
                (35744, "20", "sendonly", ["PCMA", "TELEPHONE-EVENT"], "10.201.1.168", 20),
            ],
            [("PCMA", 97, "recvonly"), ("PCMA", 97, "recvonly")],
        ]
    ],
    "broadworks-offer.txt": [
        [
            [(22294, "1", "sendonly", ["PCMA", "TELEPHONE-EVENT", "PCMU", "G722", "G729"], "X.X.X.X", 20)],
            [("PCMA", 101, "recvonly")],
        ]
    ],
    "cisco-siprec-offer.txt": [
        [
            [
                (10292, "1", "sendonly", PCMU_TE, "172.31.93.236", 20),
                (10294, "2", "sendonly", PCMU_TE, "172.31.93.236", 20),
            ],
            [("PCMU", 101, "recvonly"), ("PCMU", 101, "recvonly")],
        ]
    ],
    "connectel-offer.txt": [CONNECTEL],
    "connectel-offer2.txt": [CONNECTEL],
    "connectel-offer3.txt": [CONNECTEL],
    "inactive-sdp-offer.txt": [
        [
            [
                (19254, "1", "inactive", PCMU_TE + ["CN"], "192.168.1.2", 20),
                (19236, "2", "inactive", PCMU_TE + ["CN"], "192.168.1.2", 20),
            ],
            [("PCMU", 101, "inactive"), ("PCMU", 101, "inactive")],
        ]
    ],
    "intrado-siprec-invite.txt": [
        [
            [(11854, "1", "sendonly", ["PCMU", "PCMA", "TELEPHONE-EVENT"], "10.106.2.10", None)],
            [("PCMU", 101, "recvonly")],
        ]
    ],
    "non-siprec-payload.txt": [
        [[(10292, "1", "sendonly", PCMU_TE, "172.31.93.236", 20)], [("PCMU", 101, "recvonly")]],
    ],
    "procomm-siprec-offer.txt": [
        [
            [
                (12654, "a_leg", "sendonly", ["PCMA"], "89.185.131.7", None),
                (12686, "b_leg", "sendonly", ["PCMA"], "89.185.131.7", None),
            ],
            [("PCMA", None, "recvonly"), ("PCMA", None, "recvonly")],
        ]
    ],
    "sample-sdp2.txt": [
        [
            [(35003, "1", "sendonly", ["PCMA", "PCMU", "TELEPHONE-EVENT"], "127.0.0.1", None)],
            [("PCMA", 101, "recvonly")],
        ],
        [[(48926, "2", "sendonly", ["PCMU"], "172.16.169.132", None)], [("PCMU", None, "recvonly")]],
    ],
    "sample-sdp3.txt": [
        # No label and no direction (sendrecv by default), then a recvonly offer: answered inactive.
        [
            [(22820, None, "sendrecv", ["PCMA", "TELEPHONE-EVENT"], "167.99.54.110", 20)],
            [("PCMA", 101, "recvonly")],
        ],
        [
            [(19640, None, "recvonly", ["PCMA", "TELEPHONE-EVENT"], "167.99.54.110", 20)],
            [("PCMA", 101, "inactive")],
        ],
    ],
    "sample-sdps.txt": [
        [[(48932, "1", "sendonly", ["PCMU"], "172.16.169.132", None)], [("PCMU", None, "recvonly")]],
        [[(48926, "2", "sendonly", ["PCMU"], "172.16.169.132", None)], [("PCMU", None, "recvonly")]],
    ],
    "sonus-siprec-offer.txt": [
        [
            [
                (48932, "1", "sendonly", ["PCMU"], "172.16.169.132", None),
                (48926, "2", "sendonly", ["PCMU"], "172.16.169.132", None),
            ],
            [("PCMU", None, "recvonly"), ("PCMU", None, "recvonly")],
        ]
    ],
}


def test_every_fixture_has_expectations() -> None:
    assert INVITES.is_dir(), f"fixtures missing at {INVITES}"
    assert sorted(p.name for p in INVITES.glob("*.txt")) == sorted(FIXTURE_EXPECTATIONS)


@pytest.mark.parametrize("name", sorted(FIXTURE_EXPECTATIONS))
def test_fixture_offers_parse_and_answer(name: str) -> None:
    bodies = sdp_bodies(INVITES / name)
    expected = FIXTURE_EXPECTATIONS[name]
    assert len(bodies) == len(expected)
    for body, (media_expected, answer_expected) in zip(bodies, expected, strict=True):
        offer = parse_sdp(body)
        assert len(offer.media) == len(media_expected)
        for m, (port, label, direction, encodings, address, ptime) in zip(
            offer.media, media_expected, strict=True
        ):
            assert (m.media, m.proto, m.port, m.port_count) == ("audio", "RTP/AVP", port, 1)
            assert m.label == label
            assert m.direction == Direction(direction)
            assert [c.encoding for c in m.formats] == encodings
            assert all(c.clock_rate == 8000 for c in m.formats)
            assert (m.connection.address if m.connection else None) == address
            assert m.ptime == ptime
        assert parse_sdp(serialize_sdp(offer)) == offer

        ports = [40000 + 2 * i for i in range(len(offer.media))]
        ans, streams = answer(offer, ports=list(ports))
        assert len(ans.media) == len(offer.media) == len(streams)
        text = serialize_sdp(ans)
        assert text.count("m=audio ") == len(offer.media)
        for m, om, s, (codec, te, direction) in zip(
            ans.media, offer.media, streams, answer_expected, strict=True
        ):
            assert m.port == s.port == ports[m.index]
            assert m.label == s.label == om.label
            assert m.direction == s.direction == Direction(direction)
            assert [c.encoding for c in m.formats] == [codec] + (
                ["TELEPHONE-EVENT"] if te is not None else []
            )
            assert s.codec.encoding == codec and s.telephone_event_pt == te
            rtcp = om.rtcp.port if om.rtcp else om.port + 1
            assert (s.remote_port, s.remote_rtcp_port, s.ptime) == (om.port, rtcp, om.ptime)
            if te is not None:
                assert m.formats[1] == om.codec(te)  # offered payload type and fmtp echoed
        assert "a=recvonly" in text or "a=inactive" in text
        assert parse_sdp(text) == ans


def test_fixture_helper_agrees_with_the_multipart_parser() -> None:
    # The tiny splitter above must cut the same SDP as siprec.sip.multipart does in production.
    checked = 0
    for path in sorted(INVITES.glob("*.txt")):
        text = path.read_text()
        found = re.search(r"^--(\S+?)\s*$", text, re.M)
        if found is None:
            continue
        body = text.partition("\n\n")[2] if text.startswith("INVITE ") else text
        try:
            parts = parse_multipart(f"multipart/mixed;boundary={found[1]}", body.encode())
        except SipError:
            continue  # the corrupted BroadWorks body: the multipart layer's call, not SDP's
        (sdp_part,) = [p for p in parts if p.content_type == "application/sdp"]
        assert parse_sdp(sdp_part.body) == parse_sdp(sdp_bodies(path)[0]), path.name
        checked += 1
    assert checked >= 10


def test_fixture_attributes_in_detail() -> None:
    (avaya,) = sdp_bodies(INVITES / "avaya-siprec-offer.txt")
    offer = parse_sdp(avaya)
    pcma, g729, te = offer.media[0].formats
    assert pcma == Codec(8, "PCMA", 8000)
    assert g729 == Codec(18, "G729", 8000)
    assert te == Codec(101, "TELEPHONE-EVENT", 8000, 1, "0-15")
    assert offer.media[1].formats[0] == Codec(8, "PCMA", 8000)  # static default: no a=rtpmap:8 there
    assert offer.origin.session_id == "15345885" and offer.origin.session_version == "220"

    (procomm,) = sdp_bodies(INVITES / "procomm-siprec-offer.txt")
    assert Attribute("direction", "both") in parse_sdp(procomm).media[0].attributes  # unknown kept

    sample2 = parse_sdp(sdp_bodies(INVITES / "sample-sdp2.txt")[0]).media[0]
    assert sample2.rtcp == RtcpAttribute(60552, Connection("192.168.1.224"))
    assert sample2.bandwidths == [Bandwidth("AS", 84), Bandwidth("TIAS", 64000)]
    assert Attribute("ice-ufrag", "4e087a61") in sample2.attributes
    assert sum(a.name == "candidate" for a in sample2.attributes) == 2
    _, (stream,) = answer(sdp_bodies(INVITES / "sample-sdp2.txt")[0])
    assert stream.remote_rtcp_port == 60552

    (acme,) = sdp_bodies(INVITES / "acme-siprec-offer.txt")
    assert parse_sdp(acme).media[1].maxptime == 150


# ---------------------------------------------------------------------------------------------------- parsing


def test_session_and_media_level_connection_and_direction() -> None:
    text = sdp(
        "m=audio 5000 RTP/AVP 0\n",
        "m=audio 5002 RTP/AVP 0\nc=IN IP6 2001:db8::1\na=inactive\n",
        session="c=IN IP4 192.0.2.1\na=sendonly\n",
    )
    d = parse_sdp(text)
    assert d.connection == Connection("192.0.2.1") and d.direction is Direction.SENDONLY
    assert d.media[0].connection == Connection("192.0.2.1") and d.media[0].direction is Direction.SENDONLY
    assert (
        d.media[1].connection == Connection("2001:db8::1", "IP6")
        and d.media[1].direction is Direction.INACTIVE
    )
    assert parse_sdp(serialize_sdp(d)) == d


def test_default_direction_is_sendrecv_and_hold_address() -> None:
    d = parse_sdp(sdp("m=audio 5000 RTP/AVP 0\n", session="c=IN IP4 0.0.0.0\n"))
    assert d.direction is None and d.media[0].direction is Direction.SENDRECV
    assert d.media[0].connection is not None and d.media[0].connection.is_hold


def test_static_payload_types_and_rtpmap() -> None:
    d = parse_sdp(
        sdp(
            "m=audio 5000/2 RTP/AVP 0 8 9 18 3 4 96 97 98\n"
            "a=rtpmap:96 opus/48000/2\na=fmtp:96 useinbandfec=1; minptime=10\n"
            "a=rtpmap:97 L16/16000\n"
        )
    )
    m = d.media[0]
    assert m.port == 5000 and m.port_count == 2
    assert [(c.payload_type, c.encoding, c.clock_rate, c.channels) for c in m.formats] == [
        (0, "PCMU", 8000, 1),
        (8, "PCMA", 8000, 1),
        (9, "G722", 8000, 1),
        (18, "G729", 8000, 1),
        (3, "GSM", 8000, 1),
        (4, "G723", 8000, 1),
        (96, "OPUS", 48000, 2),
        (97, "L16", 16000, 1),
        (98, "", 0, 1),  # dynamic without rtpmap: unknown, never chosen
    ]
    assert m.formats[2].sample_rate == 16000  # G.722: 8000 Hz RTP clock, 16 kHz audio
    assert m.formats[0].sample_rate == 8000
    assert m.codec(96) is not None and m.codec(96).fmtp == "useinbandfec=1; minptime=10"  # type: ignore[union-attr]
    assert parse_sdp(serialize_sdp(d)) == d
    assert "a=rtpmap:96 opus/48000/2" in serialize_sdp(d)


def test_crypto_rtcp_mux_and_protos() -> None:
    key = base64.b64encode(bytes(30)).decode()
    d = parse_sdp(
        sdp(
            "m=audio 5000 RTP/SAVP 0\n"
            f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^20|1:4\n"
            f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{key} UNENCRYPTED_SRTCP\n"
            "a=crypto:x bogus\n"
            "a=rtcp-mux\na=ptime:20.0\na=ptime:30\na=rtcp:bad\n",
            "m=audio 5002 UDP/TLS/RTP/SAVPF 111\na=rtpmap:111 opus/48000/2\n",
        )
    )
    m = d.media[0]
    assert m.crypto == [
        CryptoAttribute(1, "AES_CM_128_HMAC_SHA1_80", key, "2^20", "1:4"),
        CryptoAttribute(2, "AES_CM_128_HMAC_SHA1_32", key, None, None, ("UNENCRYPTED_SRTCP",)),
    ]
    assert m.crypto[0].key_salt == bytes(30)
    assert m.rtcp_mux and m.ptime == 20 and m.rtcp is None
    assert Attribute("crypto", "x bogus") in m.attributes and Attribute("rtcp", "bad") in m.attributes
    assert d.media[1].proto == "UDP/TLS/RTP/SAVPF"
    assert parse_sdp(serialize_sdp(d)) == d


def test_non_rtp_formats_are_kept_as_tokens() -> None:
    d = parse_sdp(
        sdp(AUDIO, "m=image 6000 udptl t38\n", "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\n")
    )
    assert d.media[1].formats == [] and d.media[1].other_formats == ["t38"]
    assert d.media[2].other_formats == ["webrtc-datachannel"]
    assert parse_sdp(serialize_sdp(d)) == d


@pytest.mark.parametrize("line_end", ["\r\n", "\n", "\r"])
def test_line_ends_whitespace_and_bytes(line_end: str) -> None:
    text = (
        "v=0\no=- 1 1 IN IP4 192.0.2.1 \ns=-\nc=IN IP4 192.0.2.1\t\nt=0 0\n" + AUDIO + "\n\n  \n"
    ).replace("\n", line_end)
    for body in (text, text.encode()):
        d = parse_sdp(body)
        assert d.media[0].label == "1" and d.media[0].direction is Direction.SENDONLY
        assert d.media[0].connection == Connection("192.0.2.1")


def test_serialize_uses_crlf() -> None:
    text = serialize_sdp(parse_sdp(sdp(AUDIO)))
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")


# ---------------------------------------------------------------------------------------------------- errors

BAD_SDP = [
    ("", "SDP missing v= line"),
    ("o=- 1 1 IN IP4 1.2.3.4\ns=-\nm=audio 1 RTP/AVP 0\n", "SDP missing v= line"),
    ("s=-\nv=0\n", "SDP must start with v="),
    ("v=1\n", "unsupported SDP version '1'"),
    ("v=0\ns=-\nm=audio 1 RTP/AVP 0\n", "SDP missing o= line"),
    ("v=0\no=- 1 1 IN IP4\nm=audio 1 RTP/AVP 0\n", "bad o= line 2"),
    ("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\n", "SDP has no m= line"),
    (sdp("m=audio 5000\n"), "bad m= line at m-line 0 (SDP line 6)"),
    (sdp("m=audio 70000 RTP/AVP 0\n"), "bad port in m= line at m-line 0 (SDP line 6): '70000'"),
    (sdp("m=audio x RTP/AVP 0\n"), "bad port in m= line"),
    (sdp("m=audio 5000/0 RTP/AVP 0\n"), "bad port in m= line"),
    (sdp("m=audio 5000 RTP/AVP 0 abc\n"), "bad payload type 'abc' in m= line at m-line 0"),
    (sdp("m=audio 5000 RTP/AVP 200\n"), "bad payload type '200'"),
    (sdp("m=audio 5000 RTP/AVP\n"), "m= line without formats at m-line 0"),
    (
        sdp("m=audio 5000 RTP/AVP 96\na=rtpmap:96 opus\n"),
        "bad a=rtpmap at SDP line 7 in m-line 0 (SDP line 6): '96 opus'",
    ),
    (sdp("m=audio 5000 RTP/AVP 96\na=rtpmap:96 L16/0\n"), "bad a=rtpmap"),
    (sdp("m=audio 5000 RTP/AVP 0\nc=IN IP4\n"), "bad c= line 7 in m-line 0"),
    (sdp("m=audio 5000 RTP/AVP 0\n", session="c=XX IP4 1.2.3.4\n"), "bad c= line 4"),
    (sdp("m=audio 5000 RTP/AVP 0\nthis is not sdp\n"), "SDP line 7 is not <type>=<value>: 'this is not sdp'"),
    (sdp('m=audio 5000 RTP/AVP 0\n"quoted"\n'), "SDP line 7 is not <type>=<value>: '?quoted?'"),
    (sdp("m=audio 5000 RTP/AVP 0\n" * (MAX_MEDIA + 1)), f"SDP has more than {MAX_MEDIA} m= lines"),
    (sdp(AUDIO + "a=x\n" * 3000), "SDP has more than 2048 lines"),
    ("v=0\n" + "a=" + "x" * 70000, "SDP body larger than 65536 bytes"),
]


@pytest.mark.parametrize(("text", "warning"), BAD_SDP)
def test_malformed_sdp_is_400_with_precise_warning(text: str, warning: str) -> None:
    with pytest.raises(SdpError) as info:
        parse_sdp(text)
    assert info.value.status == 400
    assert warning in info.value.warning
    assert info.value.warn_code == 399


def test_missing_connection_is_tolerated() -> None:
    # connectel-offer*.txt have no c= at all; we receive anyway and learn the source from RTP.
    d = parse_sdp(sdp(AUDIO, session=""))
    assert d.media[0].connection is None
    _, (stream,) = answer(d)
    assert stream.remote_address is None and not stream.on_hold


# ---------------------------------------------------------------------------------------------------- answers


def test_answer_shape_and_text() -> None:
    ans, streams = answer(sdp(AUDIO.replace("a=sendonly", "a=ptime:30\na=sendonly")), session_version=4)
    text = serialize_sdp(ans)
    assert text == (
        "v=0\r\no=- 7 4 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\na=ptime:30\r\na=label:1\r\na=recvonly\r\n"
    )
    assert streams == [
        NegotiatedStream(
            index=0,
            label="1",
            codec=Codec(0, "PCMU", 8000),
            port=40000,
            remote_address="192.0.2.1",
            remote_port=5000,
            remote_rtcp_port=5001,
            direction=Direction.RECVONLY,
            telephone_event_pt=101,
            ptime=30,
        )
    ]


def test_answer_ipv6_address() -> None:
    ans, _ = answer(sdp(AUDIO), address="2001:db8::5")
    assert "c=IN IP6 2001:db8::5\r\n" in serialize_sdp(ans)


@pytest.mark.parametrize(
    ("offered", "answered"),
    [("sendonly", "recvonly"), ("sendrecv", "recvonly"), ("recvonly", "inactive"), ("inactive", "inactive")],
)
def test_answer_direction_rfc3264(offered: str, answered: str) -> None:
    _, (stream,) = answer(sdp(AUDIO.replace("sendonly", offered)))
    assert stream.direction == Direction(answered)
    assert stream.on_hold is (answered == "inactive")


def test_first_decodable_codec_in_offer_order_and_clock_rate_check() -> None:
    offer = sdp(
        "m=audio 5000 RTP/AVP 96 97 9 0 98 99\na=rtpmap:96 X-FOO/8000\na=rtpmap:97 PCMU/16000\n"
        "a=rtpmap:98 telephone-event/16000\na=rtpmap:99 telephone-event/8000\na=label:1\na=sendonly\n"
    )
    _, (stream,) = answer(offer)
    assert stream.codec == Codec(9, "G722", 8000) and stream.telephone_event_pt == 99
    _, (stream,) = answer(offer, decodable=["pcmu"])  # case-insensitive, 16000 Hz PCMU skipped
    assert stream.codec == Codec(0, "PCMU", 8000)


def test_opus_with_telephone_event_at_other_rate_gets_no_telephone_event() -> None:
    offer = sdp(
        "m=audio 5000 RTP/AVP 111 101\na=rtpmap:111 opus/48000/2\na=fmtp:111 useinbandfec=1\n"
        "a=rtpmap:101 telephone-event/8000\na=sendonly\n"
    )
    ans, (stream,) = answer(offer)
    assert (
        stream.codec == Codec(111, "OPUS", 48000, 2, "useinbandfec=1") and stream.telephone_event_pt is None
    )
    assert ans.media[0].formats == [stream.codec]
    assert "a=fmtp:111 useinbandfec=1" in serialize_sdp(ans)


def test_unsupported_media_and_transports_get_port_zero() -> None:
    key = base64.b64encode(bytes(30)).decode()
    offer = parse_sdp(
        sdp(
            "m=video 6000 RTP/AVP 96 97\na=rtpmap:96 H264/90000\n",
            AUDIO,
            "m=audio 5002 UDP/TLS/RTP/SAVPF 0\na=fingerprint:sha-256 AA\n",
            "m=audio 5004 RTP/SAVP 0\n",  # no a=crypto
            f"m=audio 5006 RTP/SAVP 0\na=crypto:1 AEAD_AES_256_GCM inline:{key}\n",
            "m=audio 5008 RTP/AVP 4\n",  # G.723 only
            "m=text 5010 RTP/AVP 98\n",
            "m=audio 0 RTP/AVP 0\n",  # disabled by the offerer
        )
    )
    calls: list[int] = []
    ans, streams = answer(offer, ports=lambda i: calls.append(i) or 40000 + 2 * len(calls))
    assert calls == [1]  # ports only asked for accepted streams
    assert [s.index for s in streams] == [1]
    assert [m.port for m in ans.media] == [0, 40002, 0, 0, 0, 0, 0, 0]
    assert [[c.payload_type for c in m.formats] for m in ans.media] == [
        [96],
        [0, 101],
        [0],
        [0],
        [0],
        [4],
        [98],
        [0],
    ]
    assert ans.media[0].media == "video" and ans.media[0].proto == "RTP/AVP"
    assert ans.media[2].proto == "UDP/TLS/RTP/SAVPF"
    assert parse_sdp(serialize_sdp(ans)) == ans


def test_no_usable_stream_is_488() -> None:
    with pytest.raises(SdpError) as info:
        answer(sdp("m=audio 5000 RTP/AVP 96\na=rtpmap:96 SPEEX/8000\n", "m=video 6000 RTP/AVP 97\n"))
    err = info.value
    assert (err.status, err.warn_code) == (488, 305)
    assert err.warning == (
        "no usable audio stream: m0 no decodable codec (offered SPEEX/8000); m1 video not supported"
    )


def test_all_streams_disabled_is_answered() -> None:
    ans, streams = answer(sdp("m=audio 0 RTP/AVP 0\n"))
    assert streams == [] and ans.media[0].port == 0


def test_savp_answered_with_our_key() -> None:
    remote = bytes(range(100, 130))
    rkey = base64.b64encode(remote).decode()
    offer = sdp(
        "m=audio 5000 RTP/SAVP 8\n"
        f"a=crypto:1 AEAD_AES_128_GCM inline:{rkey}\n"
        f"a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{rkey}|2^31|1:4\n"  # MKI: not configured on our side
        f"a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:{rkey}|2^31\n"
        f"a=crypto:4 AES_CM_128_HMAC_SHA1_80 inline:{rkey}\n"
        "a=label:7\na=sendonly\na=rtcp-mux\n"
    )
    ans, (stream,) = answer(offer)
    ours = base64.b64encode(OUR_KEY).decode()
    assert ans.media[0].crypto == [CryptoAttribute(3, "AES_CM_128_HMAC_SHA1_32", ours)]
    assert f"a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:{ours}\r\n" in serialize_sdp(ans)
    assert stream.srtp is not None
    assert (stream.srtp.suite, stream.srtp.tag, stream.srtp.remote_key, stream.srtp.local_key) == (
        "AES_CM_128_HMAC_SHA1_32",
        3,
        remote,
        OUR_KEY,
    )
    assert stream.proto == "RTP/SAVP" and not stream.rtcp_mux and stream.remote_rtcp_port == 5001
    assert "a=rtcp-mux" not in serialize_sdp(ans)
    ans, (stream,) = answer(offer, accept_rtcp_mux=True)
    assert stream.rtcp_mux and stream.remote_rtcp_port == 5000 and ans.media[0].rtcp_mux


def test_savp_with_bad_key_length_is_rejected() -> None:
    short = base64.b64encode(bytes(16)).decode()
    with pytest.raises(SdpError, match="no supported a=crypto"):
        answer(sdp(f"m=audio 5000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{short}\n"))


def test_savp_with_non_base64_key_is_rejected() -> None:
    junk = "A" * 20 + "!!!!" + "A" * 20
    with pytest.raises(SdpError, match="no supported a=crypto"):
        answer(sdp(f"m=audio 5000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{junk}\n"))


def test_bad_key_factory_and_short_port_list_are_caller_bugs() -> None:
    key = base64.b64encode(bytes(30)).decode()
    offer = sdp(f"m=audio 5000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\n")
    with pytest.raises(ValueError, match="30 bytes"):
        answer(offer, srtp_key_factory=lambda: b"short")
    with pytest.raises(ValueError, match="no port left"):
        answer(sdp(AUDIO, AUDIO), ports=[40000])


# ---------------------------------------------------------------------------------------------------- re-offers


def test_reoffer_hold_resume_add_remove() -> None:
    first = sdp(AUDIO, AUDIO.replace("label:1", "label:2").replace("5000", "5002"))
    _, streams0 = answer(first)
    start = diff_streams([], streams0)
    assert (start.added, start.kept, start.held) == ((0, 1), (), ())

    # Hold leg 0 with a=inactive, leg 1 with the RFC 2543 address; same o= and ports kept.
    held_offer = sdp(
        AUDIO.replace("sendonly", "inactive"),
        AUDIO.replace("label:1", "label:2").replace("5000", "5002") + "c=IN IP4 0.0.0.0\n",
    )
    ans, streams1 = answer(held_offer, ports=[], previous=streams0, session_version=2)
    change = diff_streams(streams0, streams1)
    assert change.kept == (0, 1) and change.held == (0, 1) and change.resumed == () and change.changed
    assert [m.port for m in ans.media] == [40000, 40002] and ans.origin.session_version == "2"
    assert ans.media[0].direction is Direction.INACTIVE and ans.media[1].direction is Direction.RECVONLY
    assert streams1[1].remote_hold_address and streams1[1].on_hold and not streams0[1].on_hold

    # Resume both, remove leg 1 (port 0) and add a third leg: only the new one gets a new port.
    resume_offer = sdp(
        AUDIO, "m=audio 0 RTP/AVP 0\n", AUDIO.replace("label:1", "label:3").replace("5000", "5004")
    )
    ans, streams2 = answer(resume_offer, ports=[40008], previous=streams1)
    change = diff_streams(streams1, streams2)
    assert change.resumed == (0,) and change.removed == (1,) and change.added == (2,) and change.held == ()
    assert [m.port for m in ans.media] == [40000, 0, 40008]

    # The same offer again (a session refresh) changes nothing.
    _, streams3 = answer(resume_offer, ports=[], previous=streams2)
    assert not diff_streams(streams2, streams3).changed


def test_reoffer_codec_change_and_srtp_key_reuse() -> None:
    key = base64.b64encode(bytes(range(30))).decode()
    offer = sdp(f"m=audio 5000 RTP/SAVP 0 8\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\na=sendonly\n")
    keys = iter([b"A" * 30, b"B" * 30])
    _, streams0 = answer(offer, srtp_key_factory=lambda: next(keys))
    _, streams1 = answer(offer.replace("SAVP 0 8", "SAVP 8 0"), ports=[], previous=streams0)
    assert streams1[0].srtp is not None and streams1[0].srtp.local_key == b"A" * 30  # no re-keying
    change = diff_streams(streams0, streams1)
    assert change.reconfigured == (0,) and change.kept == (0,) and change.held == ()


def test_missing_m_lines_in_reoffer_count_as_removed() -> None:
    _, streams0 = answer(sdp(AUDIO, AUDIO))
    _, streams1 = answer(sdp(AUDIO), ports=[], previous=streams0)
    assert diff_streams(streams0, streams1).removed == (1,)


def test_initial_inactive_offer_starts_held() -> None:
    (body,) = sdp_bodies(INVITES / "inactive-sdp-offer.txt")
    _, streams = answer(body)
    assert diff_streams([], streams).held == (0, 1)


# ---------------------------------------------------------------------------------------------------- properties

SDP_LINES = st.sampled_from(
    [
        "v=0",
        "o=- 1 2 IN IP4 1.2.3.4",
        "s=-",
        "t=0 0",
        "c=IN IP4 1.2.3.4",
        "c=IN IP6 ::",
        "m=audio 5000 RTP/AVP 0 8 101",
        "m=audio 0 RTP/SAVP 96",
        "m=video 6000 RTP/AVP 97",
        "m=image 7000 udptl t38",
        "a=rtpmap:101 telephone-event/8000",
        "a=rtpmap:96 opus/48000/2",
        "a=fmtp:101 0-16",
        "a=fmtp:101",
        "a=label:1",
        "a=label:",
        "a=sendonly",
        "a=inactive",
        "a=recvonly",
        "a=ptime:20",
        "a=ptime:x",
        "a=maxptime:150",
        "a=rtcp:5001",
        "a=rtcp:5001 IN IP4 1.2.3.4",
        "a=rtcp-mux",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA|2^20|1:4",
        "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:AAAA",
        "b=AS:64",
        "b=X",
        "i=info",
        "k=clear:x",
        "a=x-unknown:1",
        "a=flag",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400) | st.binary(max_size=400))
def test_arbitrary_input_only_raises_sdp_error(data: str | bytes) -> None:
    try:
        parse_sdp(data)
    except SdpError as err:
        assert err.status == 400


@settings(max_examples=400, deadline=None)
@given(st.lists(SDP_LINES | st.text(max_size=20), max_size=30))
def test_sdp_like_input_round_trips_and_answers_or_raises_sdp_error(lines: list[str]) -> None:
    try:
        d = parse_sdp("\r\n".join(["v=0", "o=- 1 1 IN IP4 1.2.3.4", *lines]))
    except SdpError as err:
        assert err.status == 400
        return
    assert parse_sdp(serialize_sdp(d)) == d
    try:
        ans, streams = answer(d, ports=lambda i: 40000 + 2 * i)
    except SdpError as err:
        assert (err.status, err.warn_code) == (488, 305)
        return
    assert len(ans.media) == len(d.media) and parse_sdp(serialize_sdp(ans)) == ans
    assert all(s.direction in (Direction.RECVONLY, Direction.INACTIVE) for s in streams)
