"""WavWriter, repair_wav, wav_info, read_wav and transcode_to_flac, checked against stdlib `wave`, soundfile and
hand-packed headers; the crash case runs a real writer in a child process that SIGKILLs itself."""

from __future__ import annotations

import errno
import inspect
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siprec.recording import wav as wavmod
from siprec.recording.wav import (
    FLAC_TEMP_SUFFIX,
    MAX_DATA_BYTES,
    WavError,
    WavInfo,
    WavWriter,
    read_wav,
    repair_wav,
    transcode_to_flac,
    wav_info,
)
from tests.support import REPO

HEADER = "<4sI4s4sIHHIIHH4sI"


def _block(i: int, channels: int) -> np.ndarray:
    """Block `i` of a deterministic stream (also sent verbatim to the child process in the SIGKILL test)."""
    n = 37 * (i + 1)
    rng = np.random.default_rng(1000 + i)
    pcm = rng.integers(-32768, 32768, size=(n, channels), dtype=np.int16)
    return pcm[:, 0].copy() if channels == 1 else pcm


def _noise(frames: int, channels: int, seed: int = 0) -> np.ndarray:
    pcm = np.random.default_rng(seed).integers(-32768, 32768, size=(frames, channels), dtype=np.int16)
    return pcm[:, 0].copy() if channels == 1 else pcm


def _header(
    *,
    riff: bytes = b"RIFF",
    riff_size: int = 36,
    wave_id: bytes = b"WAVE",
    fmt: bytes = b"fmt ",
    fmt_size: int = 16,
    tag: int = 1,
    channels: int = 1,
    rate: int = 8000,
    byte_rate: int | None = None,
    block_align: int | None = None,
    bits: int = 16,
    data: bytes = b"data",
    data_size: int = 0,
) -> bytes:
    """A 44-byte header packed by hand, any field overridable (to build junk)."""
    block_align = channels * bits // 8 if block_align is None else block_align
    byte_rate = rate * block_align if byte_rate is None else byte_rate
    return struct.pack(
        HEADER,
        riff,
        riff_size,
        wave_id,
        fmt,
        fmt_size,
        tag,
        channels,
        rate,
        byte_rate,
        block_align,
        bits,
        data,
        data_size,
    )


def _read_with_wave(path: Path) -> tuple[np.ndarray, int, int]:
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2
        channels, rate = w.getnchannels(), w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return (pcm if channels == 1 else pcm.reshape(-1, channels)), rate, channels


def _sizes(path: Path) -> tuple[int, int]:
    """(RIFF size, data size) from the header, reading 44 bytes only (some files here are sparse 4 GiB ones)."""
    with open(path, "rb") as f:
        fields = struct.unpack(HEADER, f.read(44))
    return fields[1], fields[12]


# --- header and round trips -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "rate"), [(1, 8000), (3, 16000)])
def test_header_bytes_exact(tmp_path: Path, channels: int, rate: int) -> None:
    path = tmp_path / "a.wav"
    w = WavWriter(path, rate, channels)
    raw = path.read_bytes()
    assert len(raw) == 44
    assert struct.unpack(HEADER, raw) == (
        b"RIFF",
        36,
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        rate,
        rate * 2 * channels,
        2 * channels,
        16,
        b"data",
        0,
    )
    w.write(_noise(5, channels))
    w.close()
    raw = path.read_bytes()
    data = 5 * 2 * channels
    assert len(raw) == 44 + data
    assert struct.unpack(HEADER, raw[:44]) == (
        b"RIFF",
        36 + data,
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        rate,
        rate * 2 * channels,
        2 * channels,
        16,
        b"data",
        data,
    )


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_round_trip_with_wave_and_soundfile(tmp_path: Path, channels: int) -> None:
    path = tmp_path / "leg.wav"
    blocks = [_block(i, channels) for i in range(4)]
    expected = np.concatenate(blocks)
    with WavWriter(path, 16000, channels) as w:
        w.write(blocks[0])
        w.write_bytes(blocks[1].astype("<i2").tobytes())
        w.write(blocks[2])
        w.write_bytes(memoryview(blocks[3].astype("<i2")))
        w.refresh_header()
        assert w.frames == len(expected)

        # Readable while still open, as soon as the header was refreshed.
        by_wave, rate, nch = _read_with_wave(path)
        assert (rate, nch) == (16000, channels)
        np.testing.assert_array_equal(by_wave, expected)
        by_sf, rate = sf.read(path, dtype="int16")
        assert rate == 16000
        np.testing.assert_array_equal(by_sf, expected)
    assert w.closed

    # Interleaving, spelled out: frame i holds channel 0, 1, ... as consecutive little-endian int16.
    body = path.read_bytes()[44:]
    frames = expected.reshape(len(expected), channels)
    for i in (0, 1, len(frames) - 1):
        for c in range(channels):
            off = (i * channels + c) * 2
            assert struct.unpack("<h", body[off : off + 2])[0] == frames[i, c]

    pcm, rate = read_wav(path)
    assert rate == 16000 and pcm.dtype == np.int16 and pcm.shape == expected.shape
    np.testing.assert_array_equal(pcm, expected)
    assert wav_info(path) == WavInfo(path, 16000, channels, len(expected))
    assert wav_info(path).duration_s == pytest.approx(len(expected) / 16000)


def test_write_is_little_endian_whatever_the_layout(tmp_path: Path) -> None:
    pcm = _noise(300, 3, seed=5)
    reference = tmp_path / "ref.wav"
    with WavWriter(reference, 8000, 3) as w:
        w.write(pcm)
    variants = {
        "big_endian": pcm.astype(">i2"),
        "fortran": np.asfortranarray(pcm),
        "strided": np.repeat(pcm, 2, axis=0)[::2],
        "column_view": np.ascontiguousarray(np.concatenate([pcm, pcm], axis=1))[:, :3],
    }
    for name, arr in variants.items():
        path = tmp_path / f"{name}.wav"
        with WavWriter(path, 8000, 3) as w:
            w.write(arr)
        assert path.read_bytes() == reference.read_bytes(), name


def test_write_refuses_wrong_input_and_closed_writer(tmp_path: Path) -> None:
    w = WavWriter(tmp_path / "a.wav", 8000, 2)
    with pytest.raises(TypeError, match="int16"):
        w.write(np.zeros((4, 2), dtype=np.float32))
    with pytest.raises(TypeError, match="int16"):
        w.write(np.zeros((4, 2), dtype=np.int32))
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        w.write(np.zeros(8, dtype=np.int16))
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        w.write(np.zeros((4, 3), dtype=np.int16))
    with pytest.raises(ValueError, match="whole number"):
        w.write_bytes(b"\x00" * 6)
    assert w.frames == 0
    w.close()
    w.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        w.write_bytes(b"\x00" * 4)
    with pytest.raises(ValueError, match="closed"):
        w.refresh_header()
    mono = WavWriter(tmp_path / "m.wav", 8000)
    with pytest.raises(ValueError, match=r"\(n,\)"):
        mono.write(np.zeros((4, 1), dtype=np.int16))
    mono.close()
    for bad in ({"channels": 0}, {"sample_rate": 0}, {"max_data_bytes": MAX_DATA_BYTES + 1}):
        with pytest.raises(ValueError):
            WavWriter(tmp_path / "bad.wav", **({"sample_rate": 8000} | bad))


def test_failed_write_leaves_no_partial_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk full mid-block: the part that made it is cut, the next write lands where the failed one began."""
    path = tmp_path / "full.wav"
    w = WavWriter(path, 8000, 2)
    first, second, third = _noise(100, 2, 1), _noise(100, 2, 2), _noise(50, 2, 3)
    w.write(first)
    real_pwrite = os.pwrite
    calls = []

    def short_then_enospc(fd: int, data: bytes, offset: int) -> int:
        calls.append(offset)
        if len(calls) == 1:
            return real_pwrite(fd, memoryview(data)[:101], offset)  # a torn frame
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", short_then_enospc)
    with pytest.raises(OSError, match="No space"):
        w.write(second)
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert w.frames == 100
    assert path.stat().st_size == 44 + 400
    w.write(third)
    w.close()
    pcm, _ = read_wav(path)
    np.testing.assert_array_equal(pcm, np.concatenate([first, third]))


# --- crash and repair -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2])
def test_repair_of_unrefreshed_file_with_torn_frame(tmp_path: Path, channels: int) -> None:
    path = tmp_path / "live.wav"
    crashed = tmp_path / "crashed.wav"
    blocks = [_block(i, channels) for i in range(3)]
    with WavWriter(path, 8000, channels) as w:
        w.write(blocks[0])
        w.refresh_header()
        w.write(blocks[1])
        w.write(blocks[2])
        shutil.copyfile(path, crashed)  # what a SIGKILL right now would leave: the header still says block 0
    with open(crashed, "ab") as f:
        f.write(b"\x7f" * (2 * channels - 1))  # half-written last frame

    before = wav_info(crashed)
    assert before.frames == len(blocks[0])
    assert sf.info(str(crashed)).frames == len(blocks[0])

    info = repair_wav(crashed)
    expected = np.concatenate(blocks)
    assert info == WavInfo(crashed, 8000, channels, len(expected))
    assert crashed.stat().st_size == 44 + expected.nbytes
    assert crashed.read_bytes() == path.read_bytes()  # identical to the cleanly closed file
    pcm, _ = read_wav(crashed)
    np.testing.assert_array_equal(pcm, expected)
    np.testing.assert_array_equal(_read_with_wave(crashed)[0], expected)

    # Idempotent, and a file that is already right is not even written to.
    stamp = crashed.stat().st_mtime_ns
    os.utime(crashed, ns=(stamp - 10**9, stamp - 10**9))
    assert repair_wav(crashed) == info
    assert crashed.stat().st_mtime_ns == stamp - 10**9
    assert crashed.read_bytes() == path.read_bytes()


def test_repair_of_header_promising_more_than_the_file(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    pcm = _noise(50, 1)
    path.write_bytes(_header(riff_size=36 + 10_000, data_size=10_000) + pcm.astype("<i2").tobytes())
    assert wav_info(path).frames == 50  # capped by what the file holds
    assert repair_wav(path).frames == 50
    assert _sizes(path) == (36 + 100, 100)
    np.testing.assert_array_equal(read_wav(path)[0], pcm)


def test_repair_of_empty_recording(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(_header(riff_size=0, data_size=0) + b"\x01")
    assert repair_wav(path) == WavInfo(path, 8000, 1, 0)
    assert path.read_bytes() == _header()
    assert read_wav(path)[0].shape == (0,)


JUNK = {
    "empty": (b"", "shorter than the 44-byte"),
    "truncated_header": (_header()[:30], "shorter than the 44-byte"),
    "text": (b"hello, this is not audio at all\n" * 4, "not a RIFF/WAVE"),
    "avi": (_header(wave_id=b"AVI ") + b"\0" * 8, "not a RIFF/WAVE"),
    "fmt_18": (_header(fmt_size=18) + b"\0" * 8, "not the plain 44-byte header"),
    "list_before_data": (_header(data=b"LIST") + b"\0" * 8, "not the plain 44-byte header"),
    "float32": (_header(tag=3, bits=32) + b"\0" * 8, "not 16-bit PCM"),
    "extensible": (_header(tag=0xFFFE) + b"\0" * 8, "not 16-bit PCM"),
    "pcm8": (_header(bits=8) + b"\0" * 8, "not 16-bit PCM"),
    "no_channels": (_header(channels=0) + b"\0" * 8, "invalid fmt chunk"),
    "no_rate": (_header(rate=0) + b"\0" * 8, "invalid fmt chunk"),
    "block_align": (_header(channels=2, block_align=2) + b"\0" * 8, "inconsistent fmt chunk"),
    "byte_rate": (_header(byte_rate=1234) + b"\0" * 8, "inconsistent fmt chunk"),
}


@pytest.mark.parametrize("name", sorted(JUNK))
def test_junk_raises_wav_error_and_is_left_alone(tmp_path: Path, name: str) -> None:
    content, reason = JUNK[name]
    path = tmp_path / f"{name}.wav"
    path.write_bytes(content)
    for func in (repair_wav, wav_info):
        with pytest.raises(WavError, match=reason) as exc:
            func(path)
        assert str(path) in str(exc.value)
    assert path.read_bytes() == content
    if name not in ("block_align", "byte_rate"):  # libsndfile reads these anyway (it recomputes both fields)
        with pytest.raises(WavError, match=str(path)):
            read_wav(path)


def test_read_wav_refuses_other_encodings(tmp_path: Path) -> None:
    path = tmp_path / "float.wav"
    sf.write(path, np.zeros(10, dtype=np.float32), 8000, subtype="FLOAT")
    with pytest.raises(WavError, match="not a 16-bit PCM WAV"):
        read_wav(path)


def test_repair_at_the_32_bit_limit(tmp_path: Path) -> None:
    """Sparse files: the sizes stay within 32 bits, and a file too big for them is refused, not truncated."""
    path = tmp_path / "huge.wav"
    with open(path, "wb") as f:
        f.write(_header())
        f.truncate(44 + MAX_DATA_BYTES)  # odd: the last byte is a torn mono frame
    info = repair_wav(path)
    assert info.frames == (MAX_DATA_BYTES - 1) // 2
    assert _sizes(path) == (0xFFFFFFFE, MAX_DATA_BYTES - 1)

    with open(path, "r+b") as f:
        f.truncate(44 + MAX_DATA_BYTES + 3)
    with pytest.raises(WavError, match="more than a WAV's 32-bit sizes"):
        repair_wav(path)
    assert path.stat().st_size == 44 + MAX_DATA_BYTES + 3


CHILD = """
import os, signal, sys
import numpy as np
from siprec.recording.wav import WavWriter

{block_source}

path, channels, refreshed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
w = WavWriter(path, 8000, channels)
for i in range(refreshed):
    w.write(_block(i, channels))
    w.refresh_header()
w.write(_block(refreshed, channels))  # on disk, never refreshed
with open(path, "ab") as f:
    f.write(b"\\x55" * (2 * channels - 1))  # a torn frame after it
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("channels", [1, 3])
def test_sigkill_mid_stream_leaves_a_playable_repairable_file(tmp_path: Path, channels: int) -> None:
    path = tmp_path / "killed.wav"
    refreshed = 5
    script = CHILD.format(block_source=inspect.getsource(_block))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", script, str(path), str(channels), str(refreshed)],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()

    as_refreshed = np.concatenate([_block(i, channels) for i in range(refreshed)])
    pcm, rate = sf.read(path, dtype="int16")  # playable as is
    assert rate == 8000
    np.testing.assert_array_equal(pcm, as_refreshed)

    everything = np.concatenate([as_refreshed, _block(refreshed, channels)])
    assert repair_wav(path).frames == len(everything)
    pcm, _ = sf.read(path, dtype="int16")
    np.testing.assert_array_equal(pcm, everything)


# --- property: blocking does not matter -------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    channels=st.sampled_from([1, 2, 3]),
    seed=st.integers(0, 2**32 - 1),
    steps=st.lists(st.tuples(st.integers(0, 400), st.booleans(), st.booleans()), max_size=12),
)
def test_any_blocking_gives_the_file_of_one_write(
    channels: int, seed: int, steps: list[tuple[int, bool, bool]]
) -> None:
    total = sum(n for n, _, _ in steps)
    pcm = _noise(total, channels, seed)
    with tempfile.TemporaryDirectory() as tmp:
        one, many = Path(tmp) / "one.wav", Path(tmp) / "many.wav"
        with WavWriter(one, 8000, channels) as w:
            w.write(pcm)
        with WavWriter(many, 8000, channels) as w:
            start = 0
            for n, as_bytes, refresh in steps:
                chunk = pcm[start : start + n]
                start += n
                if as_bytes:
                    w.write_bytes(chunk.astype("<i2").tobytes())
                else:
                    w.write(chunk)
                if refresh:
                    w.refresh_header()
            assert w.frames == total
        assert many.read_bytes() == one.read_bytes()
        assert (
            one.read_bytes()
            == _header(channels=channels, riff_size=36 + pcm.nbytes, data_size=pcm.nbytes)
            + pcm.astype("<i2").tobytes()
        )


# --- the 4 GiB guard --------------------------------------------------------------------------------------------


def test_size_limit_drops_audio_and_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "long.wav"
    pcm = _noise(40, 3)
    with caplog.at_level(logging.WARNING, logger="siprec.recording"):
        w = WavWriter(path, 8000, 3, max_data_bytes=100)  # 16 whole 6-byte frames fit
        assert w.max_data_bytes == 96
        w.write(pcm[:10])
        w.write(pcm[10:20])  # 6 fit, 4 dropped
        w.refresh_header()
        w.write(pcm[20:25])
        w.write_bytes(pcm[25:40].astype("<i2").tobytes())
        w.close()
    assert w.frames == 16
    assert w.frames_dropped == 4 + 5 + 15
    warnings = [r for r in caplog.records if r.name == "siprec.recording" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0].getMessage()
    assert path.stat().st_size == 44 + 96
    assert _sizes(path) == (36 + 96, 96)
    np.testing.assert_array_equal(read_wav(path)[0], pcm[:16])


@pytest.mark.parametrize("channels", [1, 2, 3, 8])
def test_default_limit_is_the_largest_whole_frame_count_under_4_gib(tmp_path: Path, channels: int) -> None:
    with WavWriter(tmp_path / "x.wav", 8000, channels) as w:
        limit = w.max_data_bytes
    frame = 2 * channels
    assert limit % frame == 0
    assert 36 + limit <= 0xFFFFFFFF < 36 + limit + frame
    assert MAX_DATA_BYTES == 0xFFFFFFFF - 36


# --- FLAC -------------------------------------------------------------------------------------------------------


def _make_wav(path: Path, channels: int, frames: int, rate: int = 8000) -> np.ndarray:
    pcm = _noise(frames, channels, seed=channels)
    with WavWriter(path, rate, channels) as w:
        w.write(pcm)
    return pcm


@pytest.mark.parametrize("channels", [1, 3])
def test_flac_transcode_is_lossless_and_replaces_the_wav(tmp_path: Path, channels: int) -> None:
    wav_path = tmp_path / "call.wav"
    pcm = _make_wav(wav_path, channels, 10_000, rate=16000)
    out = transcode_to_flac(wav_path, block_frames=3000)  # several blocks, the last one partial
    assert out == tmp_path / "call.flac"
    assert sorted(os.listdir(tmp_path)) == ["call.flac"]  # WAV removed, no temporary left
    assert out.stat().st_mode & 0o777 == 0o644
    info = sf.info(str(out))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("FLAC", "PCM_16", 16000, channels)
    back, rate = sf.read(out, dtype="int16")
    assert rate == 16000
    np.testing.assert_array_equal(back, pcm)


def test_flac_transcode_to_a_named_file_keeping_the_wav(tmp_path: Path) -> None:
    wav_path = tmp_path / "call.wav"
    pcm = _make_wav(wav_path, 2, 500)
    before = wav_path.read_bytes()
    target = tmp_path / "out" / "other.flac"
    target.parent.mkdir()
    assert transcode_to_flac(wav_path, target, remove_wav=False) == target
    assert wav_path.read_bytes() == before
    assert os.listdir(target.parent) == ["other.flac"]
    np.testing.assert_array_equal(sf.read(target, dtype="int16")[0], pcm)


def test_flac_failure_after_writing_keeps_the_wav_and_no_temporary(tmp_path: Path) -> None:
    wav_path = tmp_path / "call.wav"
    _make_wav(wav_path, 1, 800)
    before = wav_path.read_bytes()
    blocker = tmp_path / "call.flac"
    blocker.mkdir()  # os.replace onto a directory fails once the FLAC is fully written
    with pytest.raises(WavError, match="call.wav.*transcoding to .*call.flac failed"):
        transcode_to_flac(wav_path)
    assert wav_path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["call.flac", "call.wav"]
    assert os.listdir(blocker) == []


def test_flac_failure_when_the_encoder_refuses(tmp_path: Path) -> None:
    """Nine channels: the temporary exists when libsndfile refuses them (FLAC stops at 8)."""
    wav_path = tmp_path / "wide.wav"
    _make_wav(wav_path, 9, 100)
    before = wav_path.read_bytes()
    with pytest.raises(WavError, match="wide.wav"):
        transcode_to_flac(wav_path)
    assert wav_path.read_bytes() == before
    assert os.listdir(tmp_path) == ["wide.wav"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"RIFF junk, not audio" * 5, "transcoding to"),
        (_header(), "no audio frames"),
    ],
    ids=["corrupt", "empty"],
)
def test_flac_refuses_bad_wav_and_keeps_it(tmp_path: Path, content: bytes, reason: str) -> None:
    wav_path = tmp_path / "bad.wav"
    wav_path.write_bytes(content)
    with pytest.raises(WavError, match=reason):
        transcode_to_flac(wav_path)
    assert wav_path.read_bytes() == content
    assert os.listdir(tmp_path) == ["bad.wav"]


def test_flac_into_a_missing_folder_keeps_the_wav(tmp_path: Path) -> None:
    wav_path = tmp_path / "call.wav"
    _make_wav(wav_path, 1, 100)
    with pytest.raises(WavError, match="call.wav"):
        transcode_to_flac(wav_path, tmp_path / "nowhere" / "call.flac")
    assert os.listdir(tmp_path) == ["call.wav"]


def test_flac_temporaries_are_recognisable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The temporary is a hidden file ending in FLAC_TEMP_SUFFIX next to the target (for a start-up sweep)."""
    wav_path = tmp_path / "call.wav"
    _make_wav(wav_path, 1, 100)
    seen: list[str] = []
    real_replace = os.replace

    def spy(src: str | Path, dst: str | Path) -> None:
        seen.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(wavmod.os, "replace", spy)
    transcode_to_flac(wav_path)
    assert len(seen) == 1 and seen[0].startswith(".call.flac.") and seen[0].endswith(FLAC_TEMP_SUFFIX)
