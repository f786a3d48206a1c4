"""A ZIP archive written straight into an HTTP response, chunk by chunk: never whole in memory, nor on disk.

zipfile writes to an unseekable stream with data descriptors (each member's CRC and sizes follow its data), which
unzip, 7-Zip and Python's zipfile read through the central directory. A worker thread reads a chunk of the source
file, hashes it (SHA-256, reported for the export index) and feeds it to zipfile; the event loop then writes the
bytes that produced to the response, so a slow client holds the reading back (the response's flow control) and at
most about one chunk is held at a time. Audio is STORED (PCM deflates poorly for its CPU cost), text is DEFLATED.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from aiohttp import web

__all__ = ["ZipMember", "ZipStream"]

CHUNK_BYTES = 1024 * 1024
_STORED_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".gz", ".zip")
_MIN_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class ZipMember:
    name: str  # path inside the archive
    size: int  # uncompressed bytes
    sha256: str


class _Buffer:
    """The write-only, unseekable file zipfile writes into; the stream drains it after every step."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class ZipStream:
    """Members are added one after the other (do not call concurrently); `finish` writes the central directory."""

    def __init__(self, response: web.StreamResponse, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._response = response
        self._chunk = chunk_bytes
        self._buffer = _Buffer()
        self._zip = zipfile.ZipFile(self._buffer, "w", allowZip64=True)  # type: ignore[arg-type]
        self.members: list[ZipMember] = []
        self.bytes_out = 0

    async def _drain(self) -> None:
        data = self._buffer.take()
        if data:
            self.bytes_out += len(data)
            await self._response.write(data)

    async def add_file(self, name: str, path: Path) -> ZipMember | None:
        """Add the regular file at `path` (symlinks not followed) as `name`; None if it is gone or not a regular
        file. A file still growing is archived up to the size it had when opened."""
        try:
            fd = await asyncio.to_thread(_open_regular, path)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            info = _info(name, st.st_mtime)
            info.compress_type = (
                zipfile.ZIP_STORED if name.endswith(_STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
            )
            digest = hashlib.sha256()
            dest = self._zip.open(info, "w", force_zip64=st.st_size >= zipfile.ZIP64_LIMIT)
            await self._drain()
            offset, size = 0, st.st_size
            while offset < size:
                read = await asyncio.to_thread(
                    _copy_chunk, fd, offset, min(self._chunk, size - offset), digest, dest
                )
                if read == 0:
                    break  # the file shrank: archive what there was (CRC and sizes follow the data)
                offset += read
                await self._drain()
            await asyncio.to_thread(dest.close)
            await self._drain()
        finally:
            os.close(fd)
        member = ZipMember(name, offset, digest.hexdigest())
        self.members.append(member)
        return member

    async def add_bytes(self, name: str, data: bytes) -> ZipMember:
        info = _info(name, time.time())
        info.compress_type = zipfile.ZIP_DEFLATED
        await asyncio.to_thread(self._zip.writestr, info, data)
        await self._drain()
        member = ZipMember(name, len(data), hashlib.sha256(data).hexdigest())
        self.members.append(member)
        return member

    async def finish(self) -> None:
        """Write the central directory and end the response."""
        self._zip.close()
        await self._drain()
        await self._response.write_eof()


def _info(name: str, mtime: float) -> zipfile.ZipInfo:
    stamp = max(time.gmtime(mtime)[:6], _MIN_ZIP_TIME)
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    return info


def _open_regular(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FileNotFoundError(path)
    return fd


def _copy_chunk(fd: int, offset: int, count: int, digest: Any, dest: IO[bytes]) -> int:
    chunk = os.pread(fd, count, offset)
    digest.update(chunk)
    dest.write(chunk)
    return len(chunk)
