"""RecordingSession on its own: safe folder names, pause bookkeeping, the media seam."""

from __future__ import annotations

from pathlib import Path

import pytest

from siprec.events.types import Event
from siprec.srs.sdp import Codec, Direction, NegotiatedStream
from siprec.srs.session import (
    MAX_NAME,
    LegState,
    NoMediaPlugged,
    Offer,
    RecordingSession,
    SessionState,
    safe_name,
    session_folder,
)
from tests.unit.srs.test_uas_support import WALL0, RecordingMedia

HOSTILE = [
    "../../etc/passwd",
    "..",
    ".",
    "",
    "a/b\\c",
    "/abs/path",
    "x" * 5000,
    "\u00e9t\u00e9-\u65e5\u672c-\U0001f600@host",
    "nul\x00byte",
    "...hidden",
    "-rf",
    "CON",
    "a\r\nb",
]


@pytest.mark.parametrize("call_id", HOSTILE)
def test_safe_name_is_one_harmless_component(call_id: str) -> None:
    name = safe_name(call_id)
    assert 0 < len(name) <= MAX_NAME
    assert "/" not in name and "\\" not in name and ".." not in name and "\x00" not in name
    assert not name.startswith((".", "-"))
    assert all(c.isascii() and (c.isalnum() or c in "._@+-") for c in name)


def test_safe_name_keeps_clean_ids_and_separates_mangled_ones() -> None:
    assert safe_name("6c953981285cde0446619ca30087d35a@10.106.2.10") == "6c953981285cde0446619ca30087d35a@10.106.2.10"
    # Two Call-IDs that clean up to the same text still get different names (hash suffix).
    assert safe_name("a/b") != safe_name("a:b")
    assert safe_name("a/b").startswith("a_b-")
    long_a, long_b = "x" * 200 + "a", "x" * 200 + "b"
    assert safe_name(long_a) != safe_name(long_b) and len(safe_name(long_a)) == MAX_NAME


@pytest.mark.parametrize("call_id", HOSTILE)
def test_session_folder_stays_under_the_recording_dir(tmp_path: Path, call_id: str) -> None:
    root = tmp_path / "rec"
    folder = session_folder(root, call_id, WALL0)
    assert folder.is_dir()
    assert folder.resolve().parent == (root / "2023-11-14").resolve()


def test_reused_call_id_gets_its_own_folder(tmp_path: Path) -> None:
    first = session_folder(tmp_path, "same", WALL0)
    second = session_folder(tmp_path, "same", WALL0)
    assert (first.name, second.name) == ("same", "same-2")


def stream(index: int, *, hold: bool = False, port: int = 40000) -> NegotiatedStream:
    return NegotiatedStream(
        index, str(index + 1), Codec(0, "PCMU", 8000), port + 2 * index, "192.0.2.9", 30000 + 2 * index,
        30001 + 2 * index, Direction.INACTIVE if hold else Direction.RECVONLY,
    )  # fmt: skip


def test_pause_records_and_end_close_everything(tmp_path: Path) -> None:
    media = RecordingMedia()
    events: list[Event] = []
    s = RecordingSession("c", folder=tmp_path, siprec=False, started_at=100.0, now=0.0, media=media,
                         publish=events.append)  # fmt: skip
    s.start(Offer([stream(0), stream(1)]), 100.0)
    assert s.pause(110.0) and not s.pause(111.0)
    s.apply(Offer([stream(0, hold=True), stream(1, hold=True)]), 115.0)
    assert s.pause_reasons == ("api", "hold")
    assert s.resume(120.0) and s.state is SessionState.PAUSED  # still on hold
    s.end("bye", 130.0)
    assert s.state is SessionState.ENDED and not s.end("bye", 131.0)
    assert [(p.start, p.end, p.scope, p.reason) for p in s.pauses] == [
        (110.0, 120.0, "session", "api"), (115.0, 130.0, "session", "hold")]  # fmt: skip
    assert all(leg.state is LegState.CLOSED and leg.closed_at == 130.0 for leg in s.legs.values())
    assert [e.type for e in events] == [
        "session_started", "session_paused", "session_paused", "session_ended"]  # fmt: skip
    assert media.log[-2:] == [("close", 0, ""), ("close", 1, "")] and media.ended == ["c"]
    assert events[-1].duration_s == 30.0  # type: ignore[attr-defined]


def test_reoffered_index_is_a_new_leg_and_the_old_one_is_kept(tmp_path: Path) -> None:
    s = RecordingSession("c", folder=tmp_path, siprec=False, started_at=0.0, now=0.0, media=NoMediaPlugged())
    s.start(Offer([stream(0), stream(1)]), 0.0)
    s.apply(Offer([stream(0)]), 1.0)
    s.apply(Offer([stream(0), stream(1, port=41000)]), 2.0)
    assert s.legs[1].stream.port == 41002 and s.legs[1].state is LegState.OPEN
    assert [(leg.index, leg.state) for leg in s.retired_legs] == [(1, LegState.CLOSED)]
