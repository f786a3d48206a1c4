"""MetadataState (complete and partial updates, RFC 7865 8.1 -> 8.2) and SDP m-line -> participant resolution."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siprec.srs.metadata import (
    MetadataState,
    RecordingMetadata,
    parse_metadata,
    resolve_labels,
)
from tests.unit.srs.siprec_bodies import metadata_documents, metadata_part, sdp_labels

RFC_NS = "urn:ietf:params:xml:ns:recording:1"
BOB, PAUL = "srfBElmCRp2QB23b7Mpk0w==", "zSfPoSvdSDCmU3A3TRDxAw=="
S96, S97 = "UAAMm5GRQKSCMVvLyl4rFw==", "i1Pz3to5hGk8fuXl+PbwCw=="
S98, S99 = "8zc6e0lYTlWIINA6GR+3ag==", "EiXGlc+4TruqqoDaNE76ag=="


@pytest.fixture(scope="module")
def siprec_dir(fixtures_dir: Path) -> Path:
    return fixtures_dir / "siprec"


def load(siprec_dir: Path, name: str) -> RecordingMetadata:
    return parse_metadata((siprec_dir / "metadata" / name).read_bytes())


def doc(body: str, mode: str = "complete") -> RecordingMetadata:
    return parse_metadata(
        f'<recording xmlns="{RFC_NS}"><datamode>{mode}</datamode>{body}</recording>'.encode()
    )


def ids(items: list) -> list[str]:
    return [item.id for item in items]


# ---------------------------------------------------------------------------------------------------------------
# MetadataState.apply


def test_rfc7865_complete_then_partial_disassociation(siprec_dir: Path) -> None:
    state = MetadataState()
    first = state.apply(load(siprec_dir, "Rfc7865-8.1.xml"))
    assert (first.version, first.data_mode, state.version) == (1, "complete", 1)
    assert ids(first.participants_added) == [BOB, PAUL]
    assert ids(first.streams_added) == [S96, S97, S98, S99]
    assert first.participants_removed == first.participants_changed == first.streams_removed == []
    assert first.changed

    second = state.apply(load(siprec_dir, "Rfc7865-8.2.xml"))
    assert (second.version, second.data_mode, state.version, state.data_mode) == (2, "partial", 2, "partial")
    assert ids(second.participants_removed) == [BOB]
    assert second.participants_removed[0].disassociate_time == "2010-12-16T23:41:07Z"
    assert second.participants_added == second.participants_changed == []
    assert second.streams_added == second.streams_removed == second.streams_changed == []
    # Bob is kept (history, speaker of his streams) with everything the partial document did not restate.
    bob = state.participant(BOB)
    assert bob is not None
    assert (bob.aor, bob.name, bob.send, bob.recv) == ("sip:bob@biloxi.com", "Bob", [S97, S96], [S98, S99])
    assert (bob.associate_time, bob.disassociate_time) == ("2010-12-16T23:41:07Z", "2010-12-16T23:41:07Z")
    assert ids(state.participants) == [BOB, PAUL]
    assert ids(state.active_participants) == [PAUL]
    assert ids(state.streams) == [S96, S97, S98, S99]
    snap = state.snapshot()
    assert snap.data_mode == "complete" and ids(snap.participants) == [BOB, PAUL]
    assert [g.id for g in snap.groups] == ["7+OTCyoxTmqmqyA/1weDAg=="]
    assert [s.id for s in snap.sessions] == ["hVpd7YQgRW2nD22h7q60JQ=="]
    assert len(snap.groups[0].extensions) == 2


def test_same_complete_document_twice_changes_nothing_but_the_version(siprec_dir: Path) -> None:
    state = MetadataState()
    state.apply(load(siprec_dir, "cisco_from_drachtio.xml"))
    again = state.apply(load(siprec_dir, "cisco_from_drachtio.xml"))
    assert again.version == 2 and not again.changed


def test_avaya_sbce_dummy_participant_replaced_by_complete_update(siprec_dir: Path) -> None:
    # Avaya SBCE: the INVITE carries a placeholder party (sip:ASBCE@asbce.com); an UPDATE brings the real one.
    state = MetadataState()
    state.apply(load(siprec_dir, "avaya-sbce_broadworks-offer-2_from_drachtio.xml"))
    update = doc(
        '<participant participant_id="9a2de728ba0bc348db1e"><nameID aor="sip:9878942259@212.188.68.145">'
        "<name>Caller</name></nameID><send>e6988909e02ca808ec0a</send></participant>"
        '<participant participant_id="real-callee"><nameID aor="sip:5551234@212.188.68.145"/>'
        "<send>261ddd3615629f108092</send></participant>"
        '<stream stream_id="e6988909e02ca808ec0a" session_id="00FA0800705D4C5DCAAC41"><label>10</label></stream>'
        '<stream stream_id="261ddd3615629f108092" session_id="00FA0800705D4C5DCAAC41"><label>20</label></stream>'
    )
    change = state.apply(update)
    assert ids(change.participants_added) == ["real-callee"]
    assert ids(change.participants_removed) == ["abcdef12345678901234"]
    assert ids(change.participants_changed) == ["9a2de728ba0bc348db1e"]  # name now known
    assert change.participants_changed[0].name == "Caller"
    assert change.streams_added == change.streams_removed == change.streams_changed == []
    assert [a.participant.id if a.participant else None for a in resolve_labels(state, ["10", "20"])] == [
        "9a2de728ba0bc348db1e",
        "real-callee",
    ]


def test_complete_update_removes_streams_by_absence(siprec_dir: Path) -> None:
    state = MetadataState()
    state.apply(load(siprec_dir, "procomm_from_drachtio.xml"))
    change = state.apply(doc('<stream stream_id="HdU6Bt7GTZiHcNe4R2LHdA=="><label>a_leg</label></stream>'))
    assert ids(change.streams_removed) == ["T6T6syCpRSGH1J+gwLFaIQ=="]
    assert ids(change.participants_removed) == ["Ye5S5pU+SAG2JY4oG7M4Cw==", "QDhKextjTa+F1TzXuvHZHw=="]
    assert state.participants == []


def test_partial_adds_changes_and_relinks(siprec_dir: Path) -> None:
    state = MetadataState()
    state.apply(load(siprec_dir, "cisco_from_drachtio.xml"))
    p7301, p7300 = "kQNhKFdEEeeJ99D/VsPGWA==", "kQNhKFdEEeeJ+ND/VsPGWA=="
    st1, st2 = "kQOH5VdEEeeJ/ND/VsPGWA==", "kQOH5VdEEeeJ/dD/VsPGWA=="
    update = doc(
        # a name for 7301, a transfer target joining on a new stream, 7300 relinked (not restated itself)
        f'<participant participant_id="{p7301}"><nameID aor="sip:7301@35.162.237.204"><name>Agent 7301</name>'
        "</nameID></participant>"
        '<participant participant_id="new"><nameID aor="sip:7400@35.162.237.204"/></participant>'
        '<stream stream_id="st3" session_id="kQNhKFdEEeeJ9tD/VsPGWA=="><label>3</label></stream>'
        '<participantstreamassoc participant_id="new"><send>st3</send></participantstreamassoc>'
        f'<participantstreamassoc participant_id="{p7300}"><recv>{st1}</recv></participantstreamassoc>',
        mode="partial",
    )
    change = state.apply(update)
    assert ids(change.participants_added) == ["new"]
    assert ids(change.participants_changed) == [p7301, p7300]
    assert change.participants_removed == []
    assert ids(change.streams_added) == ["st3"]
    p = {x.id: x for x in state.participants}
    assert (p[p7301].name, p[p7301].aor, p[p7301].send, p[p7301].recv) == (
        "Agent 7301",
        "sip:7301@35.162.237.204",
        [st1],
        [st2],
    )
    assert p[p7301].associate_time == "2017-06-23T12:16:06.040Z"  # not restated, kept
    assert (p[p7300].send, p[p7300].recv) == ([], [st1])  # an association states the current set
    assert (p["new"].send, p["new"].recv) == (["st3"], [])
    assert [s.label for s in state.streams] == ["1", "2", "3"]


def test_partial_stream_disassociation_and_label_change() -> None:
    state = MetadataState()
    state.apply(
        doc(
            '<participant participant_id="a"><nameID aor="sip:a@x"/><send>s1</send></participant>'
            '<stream stream_id="s1"><label>1</label></stream><stream stream_id="s2"><label>2</label></stream>'
        )
    )
    change = state.apply(
        doc(
            '<stream stream_id="s1"><label>11</label></stream>'
            '<stream stream_id="s2"><disassociate-time>2024-01-01T00:00:00Z</disassociate-time></stream>',
            mode="partial",
        )
    )
    assert ids(change.streams_changed) == ["s1"] and ids(change.streams_removed) == ["s2"]
    assert change.participants_changed == []
    assert [(s.id, s.label, s.active) for s in state.streams] == [("s1", "11", True), ("s2", "2", False)]


def test_partial_before_any_complete_is_merged_into_empty_state(siprec_dir: Path) -> None:
    state = MetadataState()
    change = state.apply(load(siprec_dir, "Rfc7865-8.2.xml"))
    # Bob arrives already disassociated: known, but neither added nor removed.
    assert change.version == 1 and not change.changed
    assert ids(state.participants) == [BOB] and state.active_participants == []


def test_state_does_not_alias_parsed_documents(siprec_dir: Path) -> None:
    parsed = load(siprec_dir, "acme_from_drachtio.xml")
    state = MetadataState()
    state.apply(parsed)
    parsed.participants[0].send.append("junk")
    parsed.participants[0].name = "changed"
    assert state.participants[0].send == ["Q4O8SGLQSilXHUGQX2zd8Q=="] and state.participants[0].name == "9000"
    snap = state.snapshot()
    snap.participants[0].recv.append("junk")
    assert state.participants[0].recv == []


# ---------------------------------------------------------------------------------------------------------------
# resolve_labels on the real invites (SDP labels taken from the same body)

INVITE_ATTRIBUTION = {
    "acme-siprec-offer.txt": [
        ("16777227", "fSD3PFErSjNTHLDiXCELjw==", "metadata-label"),
        ("16777228", "EbccNyypRlFYXTm4iw8hxw==", "metadata-label"),
    ],
    "avaya-siprec-offer.txt": [
        ("201835599", "ARlTfnirTkxisET9jl8njg==", "metadata-label"),
        ("201835600", "L1OKBsjoTO11Pn5uow6ptQ==", "metadata-label"),
    ],
    "broadworks-offer-2.txt": [
        ("10", "9a2de728ba0bc348db1e", "metadata-label"),
        ("20", "abcdef12345678901234", "metadata-label"),
    ],
    "cisco-siprec-offer.txt": [
        ("1", "kQNhKFdEEeeJ99D/VsPGWA==", "metadata-label"),
        ("2", "kQNhKFdEEeeJ+ND/VsPGWA==", "metadata-label"),
    ],
    # streams but no participant<->stream links at all: SDP order
    "connectel-offer.txt": [("1", "WEWTz80cS1Cqdyepmu3STQ==", "sdp-order"), ("2", "21Isz6eFRYuiDN0vEkVXQQ==", "sdp-order")],
    # empty <participantstreamassoc> elements: SDP order
    "inactive-sdp-offer.txt": [
        ("1", "GZBIusaXEeuxxa1dFIaIyA==", "sdp-order"),
        ("2", "GZBIusaXEeuxxq1dFIaIyA==", "sdp-order"),
    ],
    "intrado-siprec-invite.txt": [("1", "YTllOTVhZTgtZjY4MS00YTBjLWIxOGUtYTQw", "metadata-label")],
    "procomm-siprec-offer.txt": [
        ("a_leg", "Ye5S5pU+SAG2JY4oG7M4Cw==", "metadata-label"),
        ("b_leg", "QDhKextjTa+F1TzXuvHZHw==", "metadata-label"),
    ],
    # label 1 is sent by the second participant in document order: metadata beats SDP order
    "sonus-siprec-offer.txt": [
        ("1", "MTQ3YzA3YzMtNjdkNy0xMA==", "metadata-label"),
        ("2", "MTQ3YzA3YzItNjdkNy0xMA==", "metadata-label"),
    ],
    # the corrupted BroadWorks body yields no participants: the one leg is recorded as unknown
    "broadworks-offer.txt": [("1", None, "unknown")],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(INVITE_ATTRIBUTION))
def test_invite_label_resolution(siprec_dir: Path, name: str) -> None:
    text = (siprec_dir / "invites" / name).read_text()
    body = metadata_part(text)
    assert body is not None
    state = MetadataState()
    state.apply(parse_metadata(body))
    got = resolve_labels(state, sdp_labels(text))
    assert [
        (a.label, a.participant.id if a.participant else None, a.rule) for a in got
    ] == INVITE_ATTRIBUTION[name]
    assert [a.index for a in got] == list(range(len(got)))
    for a in got:
        assert a.participants == ([a.participant] if a.participant else [])


def test_rfc_four_streams_two_per_speaker(siprec_dir: Path) -> None:
    got = resolve_labels(load(siprec_dir, "Rfc7865-8.1.xml"), ["96", "97", "98", "99"])
    assert [(a.participant.id if a.participant else None, a.stream_id) for a in got] == [
        (BOB, S96),
        (BOB, S97),
        (PAUL, S98),
        (PAUL, S99),
    ]
    assert {a.rule for a in got} == {"metadata-label"}


def test_sdp_labels_that_disagree_fall_back_to_metadata_stream_order(siprec_dir: Path) -> None:
    # SDP says 10/20, metadata says 1/2: the i-th metadata stream (whose label no m-line claims) and its sender.
    sonus = load(siprec_dir, "sonus_from_drachtio.xml")
    got = resolve_labels(sonus, ["10", "20"])
    assert [(a.participant.id if a.participant else None, a.rule, a.stream_id) for a in got] == [
        ("MTQ3YzA3YzMtNjdkNy0xMA==", "metadata-stream", "MTQ3YzA3YzQtNjdkNy0xMA=="),
        ("MTQ3YzA3YzItNjdkNy0xMA==", "metadata-stream", "MTQ3YzA3YzUtNjdkNy0xMA=="),
    ]


def test_missing_sdp_labels_use_metadata_stream_order(siprec_dir: Path) -> None:
    got = resolve_labels(load(siprec_dir, "acme_from_drachtio.xml"), [None, None])
    assert [(a.label, a.participant.id if a.participant else None, a.rule) for a in got] == [
        (None, "fSD3PFErSjNTHLDiXCELjw==", "metadata-stream"),
        (None, "EbccNyypRlFYXTm4iw8hxw==", "metadata-stream"),
    ]


def test_sdp_label_carrying_a_stream_id(siprec_dir: Path) -> None:
    got = resolve_labels(load(siprec_dir, "acme_from_drachtio.xml"), ["l1NyQy8ORSlouUj2G3UE/A=="])
    assert (got[0].participant.id if got[0].participant else None, got[0].rule) == (
        "EbccNyypRlFYXTm4iw8hxw==",
        "metadata-stream",
    )


def test_partly_disagreeing_labels_never_steal_a_claimed_stream(siprec_dir: Path) -> None:
    # m-line 1 says 999 (unknown); the stream at position 1 is labelled 16777228, which m-line 0 claims.
    got = resolve_labels(load(siprec_dir, "acme_from_drachtio.xml"), ["16777228", "999"])
    assert [(a.participant.id if a.participant else None, a.rule) for a in got] == [
        ("EbccNyypRlFYXTm4iw8hxw==", "metadata-label"),
        ("EbccNyypRlFYXTm4iw8hxw==", "sdp-order"),
    ]


def test_no_streams_in_metadata_uses_sdp_order_then_unknown(siprec_dir: Path) -> None:
    state = MetadataState()
    state.apply(load(siprec_dir, "netsapiens_v1.0_call0722_from_vcon-siprec-adapter.xml"))
    got = resolve_labels(state, ["1", "2", "3"])
    assert [(a.participant.name if a.participant else None, a.rule) for a in got] == [
        ("Luke Skywalker", "sdp-order"),
        ("Boba Fett", "sdp-order"),
        (None, "unknown"),
    ]
    assert got[2].participants == [] and got[2].stream_id is None


def test_no_metadata_at_all_is_unknown() -> None:
    got = resolve_labels(MetadataState(), ["1", None])
    assert [(a.index, a.label, a.participant, a.rule) for a in got] == [
        (0, "1", None, "unknown"),
        (1, None, None, "unknown"),
    ]
    assert resolve_labels(MetadataState(), []) == []


def test_mixed_stream_lists_every_sender() -> None:
    mixed = doc(
        '<participant participant_id="a"><nameID aor="sip:a@x"/></participant>'
        '<participant participant_id="b"><nameID aor="sip:b@x"/></participant>'
        '<stream stream_id="m"><label>1</label></stream>'
        '<participantstreamassoc participant_id="a"><send>m</send><recv>m</recv></participantstreamassoc>'
        '<participantstreamassoc participant_id="b"><send>m</send><recv>m</recv></participantstreamassoc>'
    )
    (leg,) = resolve_labels(mixed, ["1"])
    assert leg.rule == "metadata-label" and leg.stream_id == "m"
    assert leg.participant is not None and leg.participant.id == "a"
    assert ids(leg.participants) == ["a", "b"]


def test_active_sender_comes_before_one_who_left() -> None:
    state = MetadataState()
    state.apply(
        doc(
            '<participant participant_id="old"><nameID aor="sip:old@x"/><send>s</send></participant>'
            '<participant participant_id="new"><nameID aor="sip:new@x"/><send>s</send></participant>'
            '<stream stream_id="s"><label>1</label></stream>'
        )
    )
    state.apply(
        doc(
            '<participantsessionassoc participant_id="old" session_id="x">'
            "<disassociate-time>2024-01-01T00:00:00Z</disassociate-time></participantsessionassoc>",
            mode="partial",
        )
    )
    (leg,) = resolve_labels(state, [" 1 "])
    assert leg.participant is not None and leg.participant.id == "new"
    assert ids(leg.participants) == ["new", "old"]
    assert leg.label == " 1 "  # reported as the SDP had it; matched stripped


def test_documents_at_the_size_limit_stay_cheap() -> None:
    # Repeated links, thousands of associations, thousands of same-label streams: all linear, well under a second
    # here; the bound only catches a quadratic regression.
    links = "".join(f"<send>s{i % 7}</send>" for i in range(17000))
    assocs = "".join(
        f'<participantstreamassoc participant_id="p"><send>s{i}</send></participantstreamassoc>'
        for i in range(3000)
    )
    crowd = "".join(
        f'<participant participant_id="p{i}"><send>s</send></participant>'
        f'<stream stream_id="t{i}"><label>1</label></stream>'
        for i in range(2000)
    )
    bodies = [
        f'<recording><participant participant_id="p">{links}</participant></recording>',
        f'<recording><participant participant_id="p"/>{assocs}</recording>',
        f"<recording>{crowd}</recording>",
    ]
    start = time.perf_counter()
    for body in bodies:
        parsed = parse_metadata(body.encode())
        state = MetadataState()
        state.apply(parsed)
        state.apply(parsed)
        resolve_labels(state, ["1"] * 50 + [None] * 50)
    assert time.perf_counter() - start < 5.0
    assert parse_metadata(bodies[0].encode()).participants[0].send == [f"s{i}" for i in range(7)]
    assert len(parse_metadata(bodies[1].encode()).participants[0].send) == 3000


@settings(max_examples=200, deadline=None)
@given(
    st.lists(metadata_documents(), min_size=1, max_size=4),
    st.lists(st.sampled_from(["1", "2", "s1", None]), max_size=4),
)
def test_generated_updates_keep_state_and_attribution_consistent(
    bodies: list[bytes], labels: list[str | None]
) -> None:
    state = MetadataState()
    for n, body in enumerate(bodies, start=1):
        change = state.apply(parse_metadata(body))
        assert change.version == state.version == n
        known = {p.id for p in state.participants}
        assert {p.id for p in change.participants_added} <= known
        legs = resolve_labels(state, labels)
        assert [leg.index for leg in legs] == list(range(len(labels)))
        for leg in legs:
            if leg.rule in ("metadata-label", "metadata-stream"):
                assert leg.participant is leg.participants[0] and leg.stream_id is not None
                assert all(leg.stream_id in p.send for p in leg.participants)
            elif leg.rule == "sdp-order":
                assert leg.participant is state.participants[leg.index] and leg.participants == [
                    leg.participant
                ]
            else:
                assert (
                    leg.participant is None
                    and leg.participants == []
                    and leg.index >= len(state.participants)
                )
