"""PCM16 WAV files written incrementally, repaired after a crash, and transcoded to FLAC.

A recording lasts hours and the process may be SIGKILLed at any moment, so a WAV is never "finalised" once at the
end: `WavWriter` appends audio with `os.pwrite` at the known end offset and the caller calls `refresh_header` at
least every 2 s, which rewrites the two 32-bit size fields in place. The file is therefore always a valid WAV
describing at most the last 2 s less than what is on disk; `repair_wav` (run on the files a crash left behind)
makes the header describe everything on disk, after cutting a torn trailing frame.

The header is always the plain 44-byte one (fmt chunk of 16 bytes, `data` at offset 36): that fixed layout is what
lets `refresh_header` patch two fields at known offsets and what `repair_wav` checks before touching a file.

What this survives: the death of the process (the data is in the page cache once `pwrite` returns). It does not
fsync while recording (1,000 concurrent calls doing so every 2 s would cost more than it protects); a power loss may
lose the last seconds the kernel had not written back, and `repair_wav` copes with the resulting sizes.

A `WavWriter` is owned by one task or thread; it takes no locks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

log = logging.getLogger("siprec.recording")

HEADER_SIZE = 44
# The RIFF chunk size (at offset 4) counts everything after its own field: "WAVE" + the fmt chunk + the data
# chunk header (4 + 24 + 8 = 36 bytes) + the data. Both it and the data size must fit in 32 bits.
_RIFF_OVERHEAD = HEADER_SIZE - 8
MAX_DATA_BYTES = 0xFFFFFFFF - _RIFF_OVERHEAD
_RIFF_SIZE_OFFSET = 4
_DATA_SIZE_OFFSET = 40
_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
_SIZE = struct.Struct("<I")
_PCM = 1
_BITS = 16
_SAMPLE_BYTES = 2

# Temporary FLAC files carry this suffix (after a leading dot), so a start-up sweep can recognise and delete the
# ones a crash during `transcode_to_flac` left behind.
FLAC_TEMP_SUFFIX = ".flac-tmp"


class WavError(ValueError):
    """The file is not a WAV this module can read or repair; the message names the file and the reason."""


@dataclass(frozen=True)
class WavInfo:
    path: Path
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def _pack_header(sample_rate: int, channels: int, data_bytes: int) -> bytes:
    block_align = channels * _SAMPLE_BYTES
    return _HEADER.pack(
        b"RIFF",
        _RIFF_OVERHEAD + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        _PCM,
        channels,
        sample_rate,
        sample_rate * block_align,
        block_align,
        _BITS,
        b"data",
        data_bytes,
    )


class WavWriter:
    """RIFF/WAVE, PCM 16-bit little-endian, `channels` interleaved; a plain 44-byte header (fmt chunk of 16 bytes).

    No Python-level buffering: every `write` is one `pwrite` (callers hand over blocks of up to 64 KiB), so what a
    write accepted is in the file even if the process dies right after. Audio past `max_data_bytes` (default: the
    largest whole number of frames a 32-bit size field can describe, just under 4 GiB) is dropped and counted in
    `frames_dropped` rather than raised: losing the end of a very long call beats losing the call.
    """

    def __init__(
        self, path: Path, sample_rate: int, channels: int = 1, *, max_data_bytes: int = MAX_DATA_BYTES
    ) -> None:
        if channels < 1 or channels * _SAMPLE_BYTES > 0xFFFF:
            raise ValueError(f"WavWriter: channels must be 1..{0xFFFF // _SAMPLE_BYTES}, got {channels}")
        if sample_rate < 1 or sample_rate * channels * _SAMPLE_BYTES > 0xFFFFFFFF:
            raise ValueError(f"WavWriter: sample rate {sample_rate} out of range for {channels} channel(s)")
        if not 0 <= max_data_bytes <= MAX_DATA_BYTES:
            raise ValueError(f"WavWriter: max_data_bytes must be 0..{MAX_DATA_BYTES}, got {max_data_bytes}")
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.channels = channels
        self._block_align = channels * _SAMPLE_BYTES
        self.max_data_bytes = max_data_bytes - max_data_bytes % self._block_align
        self.frames_dropped = 0
        self._data_bytes = 0
        self._header_data_bytes = 0  # data size the header on disk currently states
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._closed = False
        try:
            self._pwrite_all(_pack_header(sample_rate, channels, 0), 0)
        except BaseException:
            os.close(self._fd)
            self._closed = True
            raise

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.frames} frames"
        return f"<WavWriter {self.path} {self.sample_rate} Hz x{self.channels} {state}>"

    @property
    def frames(self) -> int:
        """Frames written so far (not counting dropped ones)."""
        return self._data_bytes // self._block_align

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, pcm: np.ndarray) -> None:
        """Append int16 samples: shape (n,) for mono, (n, channels) otherwise. Any byte order or memory layout
        is accepted; a little-endian C-contiguous copy is made only when the array is not already one."""
        if pcm.dtype.kind != "i" or pcm.dtype.itemsize != _SAMPLE_BYTES:
            raise TypeError(f"WavWriter.write: expected int16 samples, got dtype {pcm.dtype}")
        expected = (self.channels,) if self.channels > 1 else ()
        if pcm.ndim != 1 + len(expected) or pcm.shape[1:] != expected:
            want = "(n,)" if self.channels == 1 else f"(n, {self.channels})"
            raise ValueError(f"WavWriter.write: expected shape {want}, got {pcm.shape}")
        data = np.ascontiguousarray(pcm.astype("<i2", copy=False))
        self._append(memoryview(data.reshape(-1).view(np.uint8)))

    def write_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Append already interleaved little-endian int16 frames."""
        view = memoryview(data)
        view = view.cast("B") if view.nbytes else memoryview(b"")
        if len(view) % self._block_align:
            raise ValueError(
                f"WavWriter.write_bytes: {len(view)} bytes is not a whole number of "
                f"{self._block_align}-byte frames"
            )
        self._append(view)

    def refresh_header(self) -> None:
        """Make the header's sizes describe everything written so far, so the file is a valid WAV as of now.
        Two 4-byte pwrites; nothing is written when the sizes have not changed since the last refresh."""
        self._check_open("refresh_header")
        if self._header_data_bytes == self._data_bytes:
            return
        data_bytes = self._data_bytes
        self._pwrite_all(_SIZE.pack(_RIFF_OVERHEAD + data_bytes), _RIFF_SIZE_OFFSET)
        self._pwrite_all(_SIZE.pack(data_bytes), _DATA_SIZE_OFFSET)
        self._header_data_bytes = data_bytes

    def close(self) -> None:
        """Refresh the header and close the file; a second call does nothing."""
        if self._closed:
            return
        try:
            self.refresh_header()
        finally:
            self._closed = True
            os.close(self._fd)

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise ValueError(f"WavWriter.{what}: {self.path} is closed")

    def _append(self, view: memoryview) -> None:
        self._check_open("write")
        room = self.max_data_bytes - self._data_bytes
        if len(view) > room:
            dropped = (len(view) - room) // self._block_align
            if self.frames_dropped == 0:
                log.warning(
                    "%s: WAV size limit reached after %d frames (%.0f s); further audio is dropped",
                    self.path,
                    self.max_data_bytes // self._block_align,
                    self.max_data_bytes / self._block_align / self.sample_rate,
                )
            self.frames_dropped += dropped
            view = view[:room]
        if not view:
            return
        start = HEADER_SIZE + self._data_bytes
        try:
            self._pwrite_all(view, start)
        except OSError:
            # A short write (disk full) may have left part of the block: cut it, so the next write lands on a
            # frame boundary and the file never holds bytes the writer does not count.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise
        self._data_bytes += len(view)

    def _pwrite_all(self, data: bytes | memoryview, offset: int) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, offset)
            if n <= 0:
                raise OSError(f"pwrite to {self.path} at offset {offset} wrote nothing")
            view = view[n:]
            offset += n


def _parse_header(path: Path, header: bytes, file_size: int) -> tuple[int, int, int]:
    """(sample_rate, channels, data size stated by the header) of a WavWriter header, or WavError saying why not."""
    if file_size < HEADER_SIZE or len(header) < HEADER_SIZE:
        raise WavError(f"{path}: {file_size} bytes is shorter than the {HEADER_SIZE}-byte WAV header")
    (
        riff,
        _riff_size,
        wave,
        fmt,
        fmt_size,
        fmt_tag,
        channels,
        rate,
        byte_rate,
        block_align,
        bits,
        data,
        data_size,
    ) = _HEADER.unpack(header[:HEADER_SIZE])
    if riff != b"RIFF" or wave != b"WAVE":
        raise WavError(f"{path}: not a RIFF/WAVE file (starts with {header[:4]!r}...{header[8:12]!r})")
    if fmt != b"fmt " or fmt_size != 16 or data != b"data":
        raise WavError(
            f"{path}: not the plain 44-byte header (fmt chunk of 16 bytes, then data): "
            f"found {fmt!r} of {fmt_size} bytes, then {data!r}"
        )
    if fmt_tag != _PCM or bits != _BITS:
        raise WavError(f"{path}: not 16-bit PCM (format tag {fmt_tag}, {bits} bits per sample)")
    if channels < 1 or rate < 1:
        raise WavError(f"{path}: invalid fmt chunk ({channels} channels, {rate} Hz)")
    if block_align != channels * _SAMPLE_BYTES or byte_rate != rate * block_align:
        raise WavError(
            f"{path}: inconsistent fmt chunk (block align {block_align}, byte rate {byte_rate} "
            f"for {channels} channels at {rate} Hz)"
        )
    return rate, channels, data_size


def wav_info(path: Path) -> WavInfo:
    """Rate, channels and frames of a WAV written by WavWriter, from its header alone.

    `frames` is what a reader will actually play: the header's data size, capped by what the file holds (after a
    failed write the header may promise more). An interrupted file reports the frames as of its last refresh.
    """
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        rate, channels, data_size = _parse_header(path, f.read(HEADER_SIZE), size)
    frames = min(data_size, size - HEADER_SIZE) // (channels * _SAMPLE_BYTES)
    return WavInfo(path, rate, channels, frames)


def repair_wav(path: Path) -> WavInfo:
    """Make a WAV left by an interrupted WavWriter describe everything it holds, and return its info.

    Cuts a torn trailing frame, then sets the RIFF and data sizes from the file size (which also fixes a header
    promising more than the file holds). Idempotent: a file that is already right is not written to. The file is
    fsynced when it changed, since the caller is about to rely on it. WavError, without touching the file, for
    anything that is not a WavWriter header or holds more than 32-bit sizes can describe; OSError for I/O.
    """
    path = Path(path)
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        rate, channels, _ = _parse_header(path, os.pread(fd, HEADER_SIZE, 0), size)
        block_align = channels * _SAMPLE_BYTES
        data_bytes = size - HEADER_SIZE
        data_bytes -= data_bytes % block_align
        if data_bytes > MAX_DATA_BYTES:
            raise WavError(
                f"{path}: {data_bytes} bytes of audio is more than a WAV's 32-bit sizes can describe"
            )
        changed = False
        if size != HEADER_SIZE + data_bytes:
            log.info("%s: cutting a torn trailing frame (%d bytes)", path, size - HEADER_SIZE - data_bytes)
            os.ftruncate(fd, HEADER_SIZE + data_bytes)
            changed = True
        for offset, value in (
            (_RIFF_SIZE_OFFSET, _RIFF_OVERHEAD + data_bytes),
            (_DATA_SIZE_OFFSET, data_bytes),
        ):
            field = _SIZE.pack(value)
            if os.pread(fd, 4, offset) != field:
                os.pwrite(fd, field, offset)
                changed = True
        if changed:
            os.fsync(fd)
            log.info("%s: repaired, %d frames", path, data_bytes // block_align)
    finally:
        os.close(fd)
    return WavInfo(path, rate, channels, data_bytes // block_align)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """(int16 samples, sample rate) of a PCM16 WAV: shape (n,) for mono, (n, channels) otherwise."""
    path = Path(path)
    try:
        with sf.SoundFile(path) as f:
            if f.format != "WAV" or f.subtype != "PCM_16":
                raise WavError(f"{path}: not a 16-bit PCM WAV ({f.format}/{f.subtype})")
            return f.read(dtype="int16", always_2d=False), f.samplerate
    except sf.SoundFileError as exc:
        raise WavError(f"{path}: unreadable: {exc}") from exc


def _fsync_path(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def transcode_to_flac(
    wav_path: Path, flac_path: Path | None = None, *, block_frames: int = 65536, remove_wav: bool = True
) -> Path:
    """Losslessly compress a PCM16 WAV to FLAC (same rate and channels) and return the FLAC's path.

    Reads `block_frames` at a time, so memory stays bounded for hours-long calls. The FLAC is written under a
    temporary name in the target folder, checked, fsynced and renamed into place, so the final name only ever
    holds a complete file; only then is the WAV removed (the FLAC is by then the only copy, hence the fsyncs).
    On failure the temporary file is removed, the WAV is kept and WavError says what went wrong. An empty WAV is
    refused: libsndfile writes a zero-byte, unreadable FLAC for it. FLAC holds at most 8 channels.
    """
    if block_frames < 1:
        raise ValueError(f"transcode_to_flac: block_frames must be positive, got {block_frames}")
    wav_path = Path(wav_path)
    final = Path(flac_path) if flac_path is not None else wav_path.with_suffix(".flac")
    tmp: Path | None = None
    try:
        with sf.SoundFile(wav_path) as src:
            if src.format != "WAV" or src.subtype != "PCM_16":
                raise WavError(f"{wav_path}: not a 16-bit PCM WAV ({src.format}/{src.subtype})")
            if src.frames == 0:
                raise WavError(f"{wav_path}: no audio frames to transcode")
            fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=FLAC_TEMP_SUFFIX)
            tmp = Path(name)
            try:
                os.fchmod(fd, 0o644)  # mkstemp makes it 0600; recordings are 0644 like the WAVs
            finally:
                os.close(fd)
            written = 0
            with sf.SoundFile(
                tmp, "w", samplerate=src.samplerate, channels=src.channels, format="FLAC", subtype="PCM_16"
            ) as dst:
                for block in src.blocks(blocksize=block_frames, dtype="int16", always_2d=True):
                    dst.write(block)
                    written += len(block)
            expected = src.frames
        in_flac = sf.info(str(tmp)).frames
        if written != expected or in_flac != expected:
            raise WavError(f"{wav_path}: read {written} of {expected} frames, the FLAC holds {in_flac}")
        _fsync_path(tmp)
        os.replace(tmp, final)
        tmp = None
        _fsync_path(final.parent, os.O_RDONLY | os.O_DIRECTORY)
    except (OSError, sf.SoundFileError) as exc:
        raise WavError(f"{wav_path}: transcoding to {final} failed: {exc}") from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    if remove_wav:
        try:
            wav_path.unlink()
        except OSError as exc:
            raise WavError(
                f"{wav_path}: FLAC {final} is complete but the WAV could not be removed: {exc}"
            ) from exc
    return final
