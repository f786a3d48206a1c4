"""File downloads with validators, conditional requests and single byte ranges (RFC 9110 sections 8.8, 13, 14).

`plan_download` is the sans-I/O core: from the request method, its headers and the file's size and mtime it
decides the answer (200 whole file, 206 one range, 304, 412 or 416). `send_file` is the aiohttp shell around it.

What is implemented, in RFC 9110's order of evaluation (13.2.2):
- If-Match (strong comparison) else If-Unmodified-Since -> 412 when false.
- If-None-Match (weak comparison) else If-Modified-Since (GET/HEAD) -> 304 when the client's copy is current.
- Range, GET only (HEAD ignores it, as the RFC requires): one `bytes=` spec: `a-b`, `a-` or the suffix `-n`.
  A syntactically invalid Range, another unit or several ranges are ignored (the whole file, 200): the RFC lets a
  server ignore Range, and multipart/byteranges is not worth its cost here. A valid range that selects no byte
  -> 416 with `Content-Range: bytes */<size>`.
- If-Range: an entity tag must match strongly, a date must equal Last-Modified; otherwise the Range is ignored.

The entity tag is strong: `"<mtime_ns hex>-<size hex>"`, so a file that grows (a call still recording) gets a new one.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from aiohttp import web

from siprec.api.errors import ApiError

log = logging.getLogger("siprec.api.recordings")

__all__ = ["DownloadPlan", "FileValidators", "plan_download", "send_file"]

CHUNK_BYTES = 256 * 1024
MAX_RANGE_HEADER = 200  # longer Range values are ignored rather than parsed
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_ETAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


@dataclass(frozen=True)
class FileValidators:
    size: int
    mtime_ns: int

    @property
    def etag(self) -> str:
        return f'"{self.mtime_ns:x}-{self.size:x}"'

    @property
    def mtime_s(self) -> int:
        """Last-Modified has one-second resolution: comparisons use the whole second."""
        return self.mtime_ns // 1_000_000_000

    @property
    def last_modified(self) -> str:
        return formatdate(self.mtime_s, usegmt=True)


@dataclass(frozen=True)
class DownloadPlan:
    status: int  # 200, 206, 304, 412 or 416
    start: int = 0
    length: int = 0  # bytes to send from `start`
    size: int = 0  # the whole file

    @property
    def content_range(self) -> str | None:
        if self.status == 206:
            return f"bytes {self.start}-{self.start + self.length - 1}/{self.size}"
        if self.status == 416:
            return f"bytes */{self.size}"
        return None


def plan_download(method: str, headers: Mapping[str, str], file: FileValidators) -> DownloadPlan:
    """What to answer to `method` with these request `headers` for a file with these validators."""
    method = method.upper()
    size = file.size
    whole = DownloadPlan(200, 0, size, size)
    if_match = headers.get("If-Match")
    if if_match is not None:
        if not _etag_matches(if_match, file.etag, weak=False):
            return DownloadPlan(412, size=size)
    else:
        since = _http_date(headers.get("If-Unmodified-Since"))
        if since is not None and file.mtime_s > since:
            return DownloadPlan(412, size=size)
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        if _etag_matches(if_none_match, file.etag, weak=True):
            return DownloadPlan(304 if method in ("GET", "HEAD") else 412, size=size)
    elif method in ("GET", "HEAD"):
        since = _http_date(headers.get("If-Modified-Since"))
        if since is not None and file.mtime_s <= since:
            return DownloadPlan(304, size=size)
    if method != "GET":
        return whole
    raw = headers.get("Range")
    if raw is None or not _if_range_holds(headers.get("If-Range"), file):
        return whole
    span = _parse_range(raw)
    if span is None:
        return whole
    first, last = span
    if first is None:  # suffix: the last `last` bytes
        assert last is not None
        if last == 0 or size == 0:
            return DownloadPlan(416, size=size)
        start = max(0, size - last)
        return DownloadPlan(206, start, size - start, size)
    if first >= size:
        return DownloadPlan(416, size=size)
    end = size - 1 if last is None else min(last, size - 1)
    return DownloadPlan(206, first, end - first + 1, size)


def _parse_range(raw: str) -> tuple[int | None, int | None] | None:
    """(first, last) of a single `bytes=` spec, first None for a suffix; None when the header is to be ignored."""
    if len(raw) > MAX_RANGE_HEADER:
        return None
    match = _RANGE.match(raw)
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:
        return None, int(last_text)
    first = int(first_text)
    if not last_text:
        return first, None
    last = int(last_text)
    return (first, last) if first <= last else None  # a-b with b < a is invalid: ignored


def _if_range_holds(value: str | None, file: FileValidators) -> bool:
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == file.etag  # strong comparison: a weak tag never matches
    date = _http_date(value)
    return date is not None and date == file.mtime_s


def _etag_matches(header: str, etag: str, *, weak: bool) -> bool:
    header = header.strip()
    if header == "*":
        return True  # the file exists
    pos = 0
    while pos < len(header):
        match = _ETAG.match(header, pos)
        if match is None:
            return False  # malformed list: no match
        is_weak, tag = match.group(1) is not None, match.group(2)
        if tag == etag and (weak or not is_weak):
            return True
        pos = match.end()
    return False


def _http_date(value: str | None) -> int | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        return None  # HTTP dates are GMT; anything else is not one
    return int(parsed.timestamp())


# --- the aiohttp shell ----------------------------------------------------------------------------------------


async def send_file(
    request: web.Request,
    path: Path,
    *,
    content_type: str,
    filename: str,
    extra_headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Answer `request` with the file at `path` (already checked by the caller to be one it may serve).

    Errors (412, 416, file gone) are raised as ApiError so they get the API's error envelope."""
    loop = asyncio.get_running_loop()
    try:
        fobj = await loop.run_in_executor(None, _open_regular, path)
    except FileNotFoundError:
        raise ApiError(
            404, "AUDIO_NOT_FOUND", "the file is listed but not on disk", {"file": path.name}
        ) from None
    try:
        st = os.fstat(fobj.fileno())
        file = FileValidators(st.st_size, st.st_mtime_ns)
        plan = plan_download(request.method, request.headers, file)
        validators = {"ETag": file.etag, "Last-Modified": file.last_modified}
        if plan.status == 304:
            return web.Response(status=304, headers=validators)
        if plan.status == 412:
            raise ApiError(412, "PRECONDITION_FAILED", "the file does not match the request's preconditions",
                           headers=validators)  # fmt: skip
        if plan.status == 416:
            raise ApiError(
                416, "RANGE_NOT_SATISFIABLE", "the requested range selects no byte of the file",
                {"size": plan.size}, headers={"Content-Range": plan.content_range or ""},
            )  # fmt: skip
        response = web.StreamResponse(status=plan.status)
        response.headers.update(validators)
        response.headers.update(extra_headers or {})
        response.headers["Accept-Ranges"] = "bytes"
        response.headers["Content-Disposition"] = f'inline; filename="{filename}"'
        response.content_type = content_type
        response.content_length = plan.length
        if plan.content_range is not None:
            response.headers["Content-Range"] = plan.content_range
        await response.prepare(request)
        try:
            if request.method != "HEAD":
                await _copy(fobj, plan.start, plan.length, response)
            await response.write_eof()
        except _FileShrank as exc:
            log.warning("%s: %s; connection closed", path, exc)
            response.force_close()  # the promised length cannot be met: the client must see the cut
        except ConnectionResetError:
            log.info("download of %s stopped: the client went away", path.name)
        return response  # aiohttp finishes it quietly on a closed connection
    finally:
        fobj.close()


class _FileShrank(Exception):
    pass


def _open_regular(path: Path) -> io.FileIO:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileNotFoundError(path)
        return io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


async def _copy(fobj: io.FileIO, start: int, length: int, response: web.StreamResponse) -> None:
    loop = asyncio.get_running_loop()
    offset, left = start, length
    while left > 0:
        chunk = await loop.run_in_executor(None, os.pread, fobj.fileno(), min(CHUNK_BYTES, left), offset)
        if not chunk:
            raise _FileShrank(f"the file shrank while being sent ({left} bytes short)")
        await response.write(chunk)
        offset += len(chunk)
        left -= len(chunk)
