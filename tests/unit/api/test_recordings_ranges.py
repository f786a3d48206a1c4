"""plan_download: single byte ranges, If-Range and conditional requests (RFC 9110), against a reference model."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siprec.api.byte_ranges import DownloadPlan, FileValidators, plan_download

FILE = FileValidators(size=1000, mtime_ns=1_795_256_102_125_000_000)
ETAG = FILE.etag
MTIME = FILE.mtime_s


def plan(headers: dict[str, str], method: str = "GET", file: FileValidators = FILE) -> DownloadPlan:
    return plan_download(method, headers, file)


def test_validators_are_strong_and_change_with_size() -> None:
    assert ETAG.startswith('"') and ETAG.endswith('"') and not ETAG.startswith("W/")
    assert FileValidators(1001, FILE.mtime_ns).etag != ETAG
    assert FILE.last_modified == formatdate(MTIME, usegmt=True)


@pytest.mark.parametrize(
    ("range_header", "expected"),
    [
        ("bytes=0-9", (206, 0, 10, "bytes 0-9/1000")),
        ("bytes=-100", (206, 900, 100, "bytes 900-999/1000")),
        ("bytes=-5000", (206, 0, 1000, "bytes 0-999/1000")),  # suffix longer than the file: all of it
        ("bytes=990-", (206, 990, 10, "bytes 990-999/1000")),
        ("bytes=500-99999", (206, 500, 500, "bytes 500-999/1000")),  # end clipped to the file
        ("bytes=999-999", (206, 999, 1, "bytes 999-999/1000")),
        ("BYTES = 0 - 0", (206, 0, 1, "bytes 0-0/1000")),
        ("bytes=1000-", (416, 0, 0, "bytes */1000")),
        ("bytes=1000-2000", (416, 0, 0, "bytes */1000")),
        ("bytes=-0", (416, 0, 0, "bytes */1000")),
    ],
)
def test_single_ranges(range_header: str, expected: tuple[int, int, int, str]) -> None:
    result = plan({"Range": range_header})
    status, start, length, content_range = expected
    assert (result.status, result.content_range) == (status, content_range)
    if status == 206:
        assert (result.start, result.length) == (start, length)


@pytest.mark.parametrize(
    "range_header",
    ["bytes=0-1,5-6", "bytes=5-2", "items=0-9", "bytes=", "bytes=-", "bytes=a-b", "0-9", "bytes=1-2-3",
     "bytes=0-" + "9" * 300],
)  # fmt: skip
def test_ranges_that_are_ignored_give_the_whole_file(range_header: str) -> None:
    assert plan({"Range": range_header}) == DownloadPlan(200, 0, 1000, 1000)


def test_head_ignores_range_and_empty_file_has_no_satisfiable_range() -> None:
    assert plan({"Range": "bytes=0-9"}, method="HEAD").status == 200
    empty = FileValidators(0, FILE.mtime_ns)
    assert plan({"Range": "bytes=0-"}, file=empty).status == 416
    assert plan({"Range": "bytes=-10"}, file=empty).content_range == "bytes */0"
    assert plan({}, file=empty) == DownloadPlan(200, 0, 0, 0)


def test_if_range() -> None:
    assert plan({"Range": "bytes=0-9", "If-Range": ETAG}).status == 206
    assert plan({"Range": "bytes=0-9", "If-Range": '"stale"'}).status == 200
    assert plan({"Range": "bytes=0-9", "If-Range": f"W/{ETAG}"}).status == 200  # weak never matches If-Range
    assert plan({"Range": "bytes=0-9", "If-Range": FILE.last_modified}).status == 206
    assert plan({"Range": "bytes=0-9", "If-Range": formatdate(MTIME - 60, usegmt=True)}).status == 200
    assert plan({"Range": "bytes=0-9", "If-Range": "not a date"}).status == 200


def test_conditional_get() -> None:
    assert plan({"If-None-Match": ETAG}).status == 304
    assert plan({"If-None-Match": f'"other", W/{ETAG}'}).status == 304  # weak comparison
    assert plan({"If-None-Match": "*"}).status == 304
    assert plan({"If-None-Match": '"other"'}).status == 200
    assert plan({"If-None-Match": ETAG}, method="HEAD").status == 304
    assert plan({"If-Modified-Since": FILE.last_modified}).status == 304
    assert plan({"If-Modified-Since": formatdate(MTIME - 1, usegmt=True)}).status == 200
    # If-None-Match wins over If-Modified-Since
    assert plan({"If-None-Match": '"other"', "If-Modified-Since": FILE.last_modified}).status == 200
    assert plan({"If-Modified-Since": "garbage"}).status == 200
    # A 304 is decided before the range
    assert plan({"If-None-Match": ETAG, "Range": "bytes=0-9"}).status == 304


def test_preconditions() -> None:
    assert plan({"If-Match": ETAG}).status == 200
    assert plan({"If-Match": "*"}).status == 200
    assert plan({"If-Match": '"other"'}).status == 412
    assert plan({"If-Match": f"W/{ETAG}"}).status == 412  # strong comparison
    assert plan({"If-Match": "not-a-list"}).status == 412
    assert plan({"If-Unmodified-Since": formatdate(MTIME - 1, usegmt=True)}).status == 412
    assert plan({"If-Unmodified-Since": FILE.last_modified, "Range": "bytes=0-1"}).status == 206
    assert plan({"If-Match": '"other"', "If-None-Match": ETAG}).status == 412  # If-Match is evaluated first


def _reference(size: int, first: int | None, last: int | None) -> tuple[int, int, int]:
    """RFC 9110 14.1.2 in the most literal form: the set of selected byte positions."""
    if first is None:
        assert last is not None
        positions = list(range(size))[max(0, size - last) :] if last else []
    else:
        end = size - 1 if last is None else min(last, size - 1)
        positions = list(range(first, end + 1)) if first < size else []
    if not positions:
        return 416, 0, 0
    return 206, positions[0], len(positions)


@given(
    size=st.integers(0, 3000),
    first=st.none() | st.integers(0, 4000),
    last=st.none() | st.integers(0, 4000),
)
def test_ranges_match_the_reference_model(size: int, first: int | None, last: int | None) -> None:
    if first is None and last is None:
        return
    if first is not None and last is not None and last < first:
        return  # invalid: ignored (covered above)
    header = f"bytes={'' if first is None else first}-{'' if last is None else last}"
    result = plan({"Range": header}, file=FileValidators(size, FILE.mtime_ns))
    assert (result.status, result.start if result.status == 206 else 0, result.length) == _reference(
        size, first, last
    )
    if result.status == 206:
        assert 0 <= result.start < size and result.start + result.length <= size
