"""Audio sent to /api/stt/submit: streamed to a temporary file with a size bound, then checked to be mono WAV/FLAC.

The body is never held in memory: request.content (or the multipart `file` part) is read in chunks and written
from a worker thread; over MAX_UPLOAD_BYTES the file is removed and the answer is 413. aiohttp's client_max_size
does not apply to a streamed body, so this is the bound. The caller owns the file (file_job(..., discard_path=True)
deletes it when its job is over).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import IO, Any

import soundfile
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from siprec.api.errors import ApiError

__all__ = ["AUDIO_TYPES", "MAX_UPLOAD_BYTES", "audio_seconds", "multipart_file", "save_upload"]

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
AUDIO_TYPES = {
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/vnd.wave": ".wav",
    "audio/flac": ".flac",
    "audio/x-flac": ".flac",
}
AUDIO_FORMATS = ("WAV", "FLAC")
CHUNK = 256 * 1024


async def save_upload(reader: Any, suffix: str, declared: int | None) -> Path:
    """Stream `reader` (request.content or a multipart part) to a temporary file, at most MAX_UPLOAD_BYTES."""
    if declared is not None and declared > MAX_UPLOAD_BYTES:
        raise _too_large()
    fd, name = tempfile.mkstemp(prefix="siprec-stt-upload-", suffix=suffix)
    path = Path(name)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                chunk = await _read_chunk(reader)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise _too_large()
                await asyncio.to_thread(_write, out, chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


async def _read_chunk(reader: Any) -> bytes:
    if isinstance(reader, BodyPartReader):
        return bytes(await reader.read_chunk(CHUNK))
    return bytes(await reader.read(CHUNK))


def _write(out: IO[bytes], chunk: bytes) -> None:
    out.write(chunk)


def _too_large() -> ApiError:
    return ApiError(
        413, "PAYLOAD_TOO_LARGE", f"audio uploads are limited to {MAX_UPLOAD_BYTES} bytes",
        {"max_bytes": MAX_UPLOAD_BYTES},
    )  # fmt: skip


async def audio_seconds(path: Path, *, what: str) -> float:
    """Duration of a mono WAV/FLAC file; ApiError when it is not one."""
    try:
        info = await asyncio.to_thread(soundfile.info, str(path))
    except (RuntimeError, OSError) as exc:  # soundfile.LibsndfileError is a RuntimeError
        raise ApiError(
            400, "INVALID_AUDIO", f"{what} is not a readable WAV or FLAC file", {"reason": str(exc)}
        ) from None
    if info.format not in AUDIO_FORMATS:
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", f"{what} must be WAV or FLAC (got {info.format})")
    if info.channels != 1:
        raise ApiError(400, "MONO_REQUIRED", f"{what} must have one channel (got {info.channels})")
    if info.frames <= 0 or info.samplerate <= 0:
        raise ApiError(400, "EMPTY_AUDIO", f"{what} holds no audio")
    return float(info.frames) / info.samplerate


async def multipart_file(request: web.Request) -> Path:
    """The `file` part of a multipart/form-data body, saved (other parts are skipped); 400 INVALID_MULTIPART for a
    body aiohttp's reader cannot parse, 400 FILE_REQUIRED without a `file` part."""
    try:
        return await _multipart_file(request)
    except (HttpProcessingError, ValueError, RuntimeError, TypeError) as exc:  # what aiohttp's reader raises
        raise ApiError(
            400, "INVALID_MULTIPART", "the multipart body cannot be read", {"reason": str(exc)}
        ) from None


async def _multipart_file(request: web.Request) -> Path:
    reader = await request.multipart()
    part = await reader.next()
    while part is not None and not (isinstance(part, BodyPartReader) and part.name == "file"):
        await part.release()
        part = await reader.next()
    if part is None:
        raise ApiError(400, "FILE_REQUIRED", "the multipart body needs a 'file' part with the audio")
    suffix = AUDIO_TYPES.get(part.headers.get("Content-Type", "").split(";")[0].strip().lower())
    if suffix is None:
        named = Path(part.filename or "").suffix.lower()
        suffix = named if named in AUDIO_TYPES.values() else ""
    return await save_upload(part, suffix, None)
