"""manifest.json (CONTRACT.md "Recording layout"), written atomically, and recovery of sessions a crash interrupted.

While a session records, a marker `<recording.dir>/.inprogress/<session_id>` names its folder. A clean end removes
it; at start-up every marker left behind is a session the process did not finish: its WAV headers are repaired from
the file sizes, durations recomputed, the manifest marked "interrupted" (ended_at = the files' last write), and the
marker removed. Only markers are scanned, so start-up time does not grow with years of recordings.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from siprec.recording.wav import WavError, repair_wav, transcode_to_flac

__all__ = [
    "MARKER_DIR",
    "clear_marker",
    "iso_time",
    "read_manifest",
    "recover_interrupted",
    "set_marker",
    "write_manifest",
]

log = logging.getLogger("siprec.recording")

MANIFEST = "manifest.json"
MARKER_DIR = ".inprogress"


def iso_time(wall: float | None) -> str | None:
    """Unix time to RFC 3339 UTC with milliseconds ("2026-11-21T10:15:02.125Z")."""
    if wall is None:
        return None
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_manifest(folder: Path, data: dict[str, Any]) -> Path:
    """Replace manifest.json atomically: a reader (or a crash) sees the old or the new file, never half of one."""
    path = folder / MANIFEST
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_manifest(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / MANIFEST).read_text(encoding="utf-8")))


def set_marker(root: Path, session_id: str, folder: Path) -> None:
    markers = root / MARKER_DIR
    markers.mkdir(parents=True, exist_ok=True)
    (markers / session_id).write_text(str(folder.resolve().relative_to(root.resolve())), encoding="utf-8")


def clear_marker(root: Path, session_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (root / MARKER_DIR / session_id).unlink()


def recover_interrupted(
    root: Path,
    *,
    flac: bool = False,
    on_recovered: Callable[[Path, dict[str, Any]], None] | None = None,
) -> list[Path]:
    """Repair every session folder a crash left behind (see the module docstring); returns the folders."""
    markers = root / MARKER_DIR
    if not markers.is_dir():
        return []
    recovered: list[Path] = []
    base = root.resolve()
    for marker in sorted(markers.iterdir()):
        try:
            relative = marker.read_text(encoding="utf-8").strip()
            folder = (base / relative).resolve()
            if not folder.is_relative_to(base) or folder == base:
                raise ValueError(f"marker points outside {base}: {relative!r}")
            manifest = _recover_folder(folder, flac)
        except (OSError, ValueError, WavError) as exc:
            log.error("recovery of %s failed: %s", marker.name, exc)
            continue
        finally:
            with contextlib.suppress(OSError):
                marker.unlink()
        recovered.append(folder)
        log.warning(
            "recovered interrupted recording %s (%d legs)",
            folder, len(manifest.get("legs", [])), extra={"call_id": manifest.get("call_id")},
        )  # fmt: skip
        if on_recovered is not None:
            on_recovered(folder, manifest)
    return recovered


def _recover_folder(folder: Path, flac: bool) -> dict[str, Any]:
    manifest = read_manifest(folder)
    last_write = 0.0
    for entry in [*manifest.get("legs", []), manifest.get("combined") or {}]:
        name = entry.get("file")
        if not name or "/" in name or name.startswith("."):
            continue
        path = folder / name
        if not path.is_file():
            entry["duration_s"] = 0.0
            continue
        info = repair_wav(path)
        last_write = max(last_write, path.stat().st_mtime)
        entry["duration_s"] = round(info.duration_s, 3)
        if flac:
            entry["file"] = transcode_to_flac(path).name
    started = manifest.get("started_at_unix")
    ended = last_write or (started if isinstance(started, (int, float)) else None)
    manifest["state"] = "interrupted"
    manifest["ended_at"] = iso_time(ended)
    manifest["ended_at_unix"] = ended
    if isinstance(started, (int, float)) and ended is not None:
        manifest["duration_s"] = round(max(0.0, ended - started), 3)
    for pause in manifest.get("pauses", []):
        if pause.get("end") is None:
            pause["end"] = manifest["ended_at"]
    write_manifest(folder, manifest)
    return manifest
