"""RecordingIndex over real folders made by the recorder's own session_folder/write_manifest: paging order, the
bounded manifest cache, filters, Call-ID lookup (re-used and hostile Call-IDs), file checks, erase, participant_key."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from siprec.api.recording_index import RecordingIndex
from siprec.api.recording_model import LiveSession, RecordingFilter, participant_key
from siprec.events.types import ParticipantInfo
from siprec.recording.manifest import iso_time, set_marker, write_manifest
from siprec.srs.session import safe_name, session_folder

DAY1 = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
HOUR = 3600.0
DAY = 24 * HOUR
NOBODY: dict[Path, LiveSession] = {}


def record(
    root: Path,
    call_id: str,
    started: float,
    *,
    people: tuple[tuple[str, str], ...] = (("Alice", "sip:alice@example.com"),),
    state: str = "completed",
) -> Path:
    folder = session_folder(root, call_id, started)
    (folder / "leg-0-1.wav").write_bytes(b"RIFF" + bytes(40))
    manifest: dict[str, Any] = {
        "call_id": call_id, "session_id": f"sess-{started}", "state": state, "started_at": iso_time(started),
        "ended_at": iso_time(started + 30), "duration_s": 30.0, "started_at_unix": started,
        "ended_at_unix": started + 30, "format": "wav",
        "participants": [{"id": f"p{i}", "aor": aor, "name": name} for i, (name, aor) in enumerate(people)],
        "legs": [{"index": 0, "label": "1", "file": "leg-0-1.wav", "codec": "PCMU", "duration_s": 30.0}],
        "combined": None,
    }  # fmt: skip
    write_manifest(folder, manifest)
    return folder


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, list[str]]:
    """Nine recordings over three days, three a day, an hour apart; call ids newest first."""
    root = tmp_path / "rec"
    calls = []
    for d in range(3):
        for h in range(3):
            call_id = f"call-{d}-{h}@test"
            record(root, call_id, DAY1 + d * DAY + h * HOUR, people=(("Alice", "sip:alice@example.com"),
                                                                     (f"Person{d}{h}", f"sip:p{d}{h}@x.test")))  # fmt: skip
            calls.append(call_id)
    return root, calls[::-1]


def page_ids(
    index: RecordingIndex, flt: RecordingFilter, offset: int, limit: int
) -> tuple[list[str | None], bool]:
    found, more = index.page(flt, offset, limit, NOBODY)
    return [r.call_id for r in found], more


def test_pages_newest_first_every_recording_once(archive: tuple[Path, list[str]]) -> None:
    root, newest_first = archive
    index = RecordingIndex(root)
    seen: list[str | None] = []
    offset = 0
    while True:
        ids, more = page_ids(index, RecordingFilter(), offset, 4)
        seen += ids
        offset += len(ids)
        if not more:
            break
    assert seen == newest_first
    assert page_ids(index, RecordingFilter(), 9, 4) == ([], False)
    assert page_ids(index, RecordingFilter(), 5, 4) == (newest_first[5:9], False)


def test_whole_days_before_the_page_are_counted_not_read_and_manifests_are_cached(
    archive: tuple[Path, list[str]],
) -> None:
    root, newest_first = archive
    index = RecordingIndex(root)
    assert page_ids(index, RecordingFilter(), 3, 2) == (newest_first[3:5], True)
    assert index.manifest_reads == 3  # only the middle day; the newest day was skipped by its folder count
    index.page(RecordingFilter(), 3, 2, NOBODY)
    assert index.manifest_reads == 3  # unchanged manifests come from the cache
    folder = root / "2026-03-02" / "call-1-1@test"
    manifest = index.manifest(index.recording(folder, NOBODY))
    assert manifest is not None
    write_manifest(folder, {**manifest, "state": "interrupted", "padding": "x"})
    ids, _ = page_ids(index, RecordingFilter(state="interrupted"), 0, 10)
    assert ids == ["call-1-1@test"]
    assert index.manifest_reads == 3 + 1 + 3 + 3  # the changed one, and the two days never read before


def test_cache_is_bounded(archive: tuple[Path, list[str]]) -> None:
    root, newest_first = archive
    index = RecordingIndex(root, cache_size=2)
    assert page_ids(index, RecordingFilter(), 0, 50)[0] == newest_first
    assert index.cache_entries == 2


def test_a_busy_day_is_not_reread_for_each_page(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    for n in range(30):
        record(root, f"busy-{n:02d}@test", DAY1 + n * 60)
    index = RecordingIndex(root, cache_size=5)  # far fewer summaries than the day holds
    expected = [f"busy-{n:02d}@test" for n in range(29, -1, -1)]
    assert page_ids(index, RecordingFilter(), 0, 3) == (expected[:3], True)
    reads = index.manifest_reads
    assert reads <= 30 + 4  # each start time once, then the page
    assert page_ids(index, RecordingFilter(), 0, 3) == (expected[:3], True)
    assert page_ids(index, RecordingFilter(), 3, 3) == (expected[3:6], True)
    assert index.manifest_reads - reads <= 3  # only the recordings of the new page
    record(root, "busy-new@test", DAY1 + 3000)
    assert page_ids(index, RecordingFilter(), 0, 1) == (["busy-new@test"], True)


def test_filters(archive: tuple[Path, list[str]]) -> None:
    root, _ = archive
    index = RecordingIndex(root)
    assert page_ids(index, RecordingFilter(participant="person12"), 0, 10) == (["call-1-2@test"], False)
    assert page_ids(index, RecordingFilter(participant="SIP:P0"), 0, 10)[0] == [
        "call-0-2@test", "call-0-1@test", "call-0-0@test"]  # fmt: skip
    assert len(page_ids(index, RecordingFilter(participant="alice@EXAMPLE"), 0, 10)[0]) == 9
    assert len(page_ids(index, RecordingFilter(participant="p1"), 0, 10)[0]) == 9  # the participant id "p1"
    day2 = datetime(2026, 3, 2, tzinfo=UTC)
    whole_day = RecordingFilter(since=day2, until=day2.replace(hour=23, minute=59, second=59))
    assert page_ids(index, whole_day, 0, 10)[0] == ["call-1-2@test", "call-1-1@test", "call-1-0@test"]
    within = RecordingFilter(since=day2.replace(hour=1), until=day2.replace(hour=1, minute=30))
    assert page_ids(index, within, 0, 10)[0] == ["call-1-1@test"]
    assert page_ids(index, RecordingFilter(state="recording"), 0, 10) == ([], False)


def test_reused_and_colliding_call_ids(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    first = record(root, "abc", DAY1)
    second = record(root, "abc", DAY1 + 60)  # the same Call-ID again that day: abc-2
    other = record(root, "abc-3", DAY1 + 120)  # another call whose own folder name looks like a re-use
    later = record(root, "abc", DAY1 + DAY)
    assert (second.name, other.name) == ("abc-2", "abc-3")
    index = RecordingIndex(root)
    assert [r.folder for r in index.find("abc", NOBODY, every=True)] == [later, second, first]
    assert [r.folder for r in index.find("abc", NOBODY)] == [later]
    assert [r.folder for r in index.find("abc", NOBODY, session_id=f"sess-{DAY1}")] == [first]
    assert [r.folder for r in index.find("abc-3", NOBODY, every=True)] == [other]
    assert index.find("abc", NOBODY, session_id="nope") == []
    # The first recording erased: the re-used one behind the gap is still found
    index.erase(index.find("abc", NOBODY, session_id=f"sess-{DAY1}")[0])
    assert [r.folder for r in index.find("abc", NOBODY, every=True)] == [later, second]


@pytest.mark.parametrize(
    "call_id", ["../../etc/passwd", "a/b", "..", ".hidden", "nul\x00byte", "é/../ü", "x" * 500]
)
def test_hostile_call_ids_stay_inside_and_match_exactly(tmp_path: Path, call_id: str) -> None:
    root = tmp_path / "rec"
    folder = record(root, call_id, DAY1)
    assert folder.parent.parent == root.resolve() and folder.name == safe_name(call_id)
    index = RecordingIndex(root)
    assert [r.folder for r in index.find(call_id, NOBODY)] == [folder]
    # Another Call-ID with the same sanitised name would still not be served for this one
    assert index.find(call_id + "x", NOBODY) == []
    assert not (tmp_path / "etc").exists()


def test_file_checks(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    folder = record(root, "files@test", DAY1)
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (folder / "link.wav").symlink_to(secret)
    (folder / ".manifest.json.tmp").write_text("{}")
    index = RecordingIndex(root)
    rec = index.find("files@test", NOBODY)[0]
    assert index.audio_path(rec, "leg-0-1.wav") == folder / "leg-0-1.wav"
    for name in ("link.wav", "../../secret.txt", ".manifest.json.tmp", "a/b.wav", "missing.wav", "", "x\x00"):
        assert index.audio_path(rec, name) is None, name
    assert [name for name, _ in index.files(rec)] == ["leg-0-1.wav", "manifest.json"]
    assert [name for name, _ in index.files(rec, hidden=True)] == [".manifest.json.tmp", "leg-0-1.wav",
                                                                    "manifest.json"]  # fmt: skip
    on_disk = sum(
        os.lstat(folder / name).st_size for name in (".manifest.json.tmp", "leg-0-1.wav", "manifest.json")
    )
    erased = index.erase(rec)
    assert not folder.exists() and secret.read_text() == "not yours"
    assert erased.files == (".manifest.json.tmp", "leg-0-1.wav", "manifest.json") and erased.bytes == on_disk
    assert index.find("files@test", NOBODY) == []


def test_folders_without_manifest(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    record(root, "done@test", DAY1)
    bare = session_folder(root, "refused@test", DAY1 + 10)
    live_folder = session_folder(root, "live@test", DAY1 + 20)
    live = {
        live_folder: LiveSession("live@test", "s-live", DAY1 + 20, (ParticipantInfo("p0", "sip:bo@x", "Bo"),))
    }
    index = RecordingIndex(root)
    found, _ = index.page(RecordingFilter(), 0, 10, live)
    assert [(r.call_id, r.state, r.has_manifest) for r in found] == [
        ("live@test", "recording", False), ("done@test", "completed", True), (None, "incomplete", False)]  # fmt: skip
    assert found[2].folder == bare
    assert index.find("live@test", live)[0].participants[0].name == "Bo"
    (bare / "manifest.json").write_text("[not an object]")
    assert index.recording(bare, NOBODY).state == "incomplete"


def test_markers_name_folders(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    folder = record(root, "m@test", DAY1, state="recording")
    set_marker(root, "sess-1", folder)
    assert RecordingIndex(root).marked_folders() == {folder.resolve()}
    assert RecordingIndex(tmp_path / "empty").marked_folders() == set()


def test_usage(archive: tuple[Path, list[str]]) -> None:
    root, _ = archive
    index = RecordingIndex(root)
    usage = index.usage(NOBODY)
    on_disk = sum(os.path.getsize(p) for p in root.rglob("*") if p.is_file())
    assert (usage.recordings, usage.days, usage.bytes) == (9, 3, on_disk)
    assert (usage.oldest_started_at, usage.newest_started_at) == (DAY1, DAY1 + 2 * DAY + 2 * HOUR)
    assert index.usage(NOBODY) is usage  # kept for a while
    index.erase(index.find("call-0-0@test", NOBODY)[0])
    assert index.usage(NOBODY).recordings == 8  # an erase forgets the totals


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("sip:Alice@Example.com", "alice@example.com"),
        ("<sips:alice@example.com;transport=tls>", "alice@example.com"),
        ("alice@example.com", "alice@example.com"),
        ("sip:+1-555-010-9999@carrier.example;user=phone", "tel:15550109999"),
        ("+1 (555) 010 9999", "tel:15550109999"),
        ("tel:+15550109999", "tel:15550109999"),
        ("sip:15550109999@other.example", "tel:15550109999"),
        ("bob", "bob"),
        ("   ", None),
        ("sip:", None),
    ],
)
def test_participant_key(text: str, key: str | None) -> None:
    assert participant_key(text) == key


def test_select_is_exact(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    record(root, "one@test", DAY1, people=(("Al", "sip:+15550109999@carrier.example"),))
    record(
        root, "two@test", DAY1 + 10, people=(("Al", "sip:alice@example.com"), ("Bo", "sip:bob@example.com"))
    )
    record(root, "three@test", DAY1 + 20, people=(("Al", "sip:alice@example.com.evil"),))
    index = RecordingIndex(root)

    def select(**kw: Any) -> list[str | None]:
        return [
            r.call_id
            for r in index.select(NOBODY, call_id=kw.get("call_id"), participant=kw.get("participant"))
        ]

    assert select(participant="+1 555 010 9999") == ["one@test"]
    assert select(participant="alice@example.com") == ["two@test"]
    assert select(participant="sip:ALICE@example.com") == ["two@test"]
    assert select(participant="alice") == []  # no substring matching for GDPR
    assert select(call_id="two@test", participant="sip:bob@example.com") == ["two@test"]
    assert select(call_id="one@test", participant="sip:bob@example.com") == []
    assert select(call_id="three@test") == ["three@test"]
