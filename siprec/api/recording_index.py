"""The archive of recordings as the REST API reads it: `<recording.dir>/<YYYY-MM-DD>/<folder>/manifest.json`.

Safety: request text never becomes a path except through `safe_name`, the recorder's own sanitising (one path
component, never ".."), and every folder or file used is checked to resolve inside recording.dir. A manifest names
its files; a name with a slash or a leading dot, or one that resolves elsewhere (a symlink), is never opened.

Cost: a listing walks the day folders newest first and stops once the page is full; a day wholly skipped by
`offset`, when no filter needs the manifests, costs one directory read. The order within a day comes from the
start times, read once per folder and kept per day; manifests are summarised through a bounded LRU cache validated
by (mtime_ns, size), and read only for the recordings returned (or, filtering by participant or state, for the days
walked), so a listing re-reads only manifests that changed. Looking a Call-ID up costs a couple of stat() calls
per day folder. Everything here does blocking file I/O: the routes call it from a
worker thread, and the cache is guarded by a lock.

States: a folder's state is its manifest's ("recording", "completed", "interrupted"); a folder without a readable
manifest is "recording" while a live session writes into it (its manifest comes with the first media sweep) and
"incomplete" otherwise (e.g. a call refused after its folder was made; it may still hold metadata XML).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from siprec.api.recording_model import (
    ArchiveUsage,
    ErasedFolder,
    LiveSession,
    Recording,
    RecordingFilter,
    is_plain_name,
    participant_key,
    summary_from_manifest,
    summary_without_manifest,
)
from siprec.recording.manifest import MANIFEST, MARKER_DIR
from siprec.srs.session import safe_name

if TYPE_CHECKING:
    from siprec.api.context import ApiContext

__all__ = ["RecordingIndex", "index_for"]

log = logging.getLogger("siprec.api.recordings")

DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DEFAULT_CACHE_SIZE = 4096
DAY_ORDER_CACHE = 64  # days whose folder order (start times) is kept; listings touch the recent ones
MAX_SAME_DAY_REUSE = 1000  # session_folder's own bound on "-2", "-3"... folders of one Call-ID per day


# --- the index ------------------------------------------------------------------------------------------------


class RecordingIndex:
    def __init__(self, root: Path, *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.root = Path(root).resolve()
        self.cache_size = cache_size
        self.manifest_reads = 0  # manifests parsed (cache misses), for tests and diagnostics
        self._cache: OrderedDict[Path, tuple[int, int, Recording | None]] = OrderedDict()
        # day -> (folder name -> start time, the order newest first); a start time never changes once written
        self._orders: OrderedDict[str, tuple[dict[str, float], list[tuple[float | None, str]]]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()
        self._usage: ArchiveUsage | None = None
        self._usage_at = 0.0  # monotonic

    @property
    def cache_entries(self) -> int:
        return len(self._cache)

    # --- folders ---------------------------------------------------------------------------------------------
    def days(self, *, newest_first: bool = True) -> list[str]:
        names = [entry.name for entry in self._scan(self.root) if DAY.match(entry.name) and _is_dir(entry)]
        return sorted(names, reverse=newest_first)

    def folders(self, day: str) -> list[Path]:
        if not DAY.match(day):
            return []
        base = self.root / day
        return [base / e.name for e in self._scan(base) if not e.name.startswith(".") and _is_dir(e)]

    @staticmethod
    def _scan(path: Path) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(path) as it:
                return list(it)
        except (FileNotFoundError, NotADirectoryError):
            return []

    # --- summaries -------------------------------------------------------------------------------------------
    def recording(self, folder: Path, live: Mapping[Path, LiveSession]) -> Recording:
        day = folder.parent.name
        manifest = folder / MANIFEST
        try:
            st = os.stat(manifest, follow_symlinks=False)
        except OSError:
            return summary_without_manifest(folder, day, live.get(folder))
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._cache.get(folder)
            if cached is not None and cached[:2] == key:
                self._cache.move_to_end(folder)
                summary = cached[2]
                return (
                    summary
                    if summary is not None
                    else summary_without_manifest(folder, day, live.get(folder))
                )
        summary = self._read_summary(folder, day, manifest, st)
        with self._lock:
            self._cache[folder] = (*key, summary)
            self._cache.move_to_end(folder)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return summary if summary is not None else summary_without_manifest(folder, day, live.get(folder))

    def _read_summary(self, folder: Path, day: str, manifest: Path, st: os.stat_result) -> Recording | None:
        self.manifest_reads += 1
        if not stat.S_ISREG(st.st_mode):
            return None
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            log.warning("unreadable manifest %s: %s", manifest, exc)
            return None
        if not isinstance(data, dict):
            log.warning("unreadable manifest %s: not a JSON object", manifest)
            return None
        return summary_from_manifest(folder, day, data)

    def manifest(self, rec: Recording) -> dict[str, Any] | None:
        """The whole manifest.json of a recording (read now, not cached), None when it has none."""
        path = self._inside(rec.folder / MANIFEST)
        if path is None:
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    # --- listing ---------------------------------------------------------------------------------------------
    def day_order(
        self, day: str, folders: list[Path], live: Mapping[Path, LiveSession]
    ) -> list[tuple[float | None, str]]:
        """(start time, folder name) of the day's folders, newest first. Start times are kept per day (for
        DAY_ORDER_CACHE days), so a manifest is read for its start time once, when its folder first shows up; a
        folder with no start time yet (no manifest, no live session) is looked at again next time."""
        names = {f.name: f for f in folders}
        with self._lock:
            cached = self._orders.get(day)
            if cached is not None:
                self._orders.move_to_end(day)
                starts, order = cached
                if len(order) == len(names) == len(starts) and all(n in starts for n in names):
                    return order
        known = dict(cached[0]) if cached is not None else {}
        fresh: dict[str, float | None] = {}
        for name, folder in names.items():
            start = known.get(name)
            fresh[name] = start if start is not None else self.recording(folder, live).started_at_unix
        order = sorted(((t, n) for n, t in fresh.items()), key=lambda e: (e[0] or 0.0, e[1]), reverse=True)
        with self._lock:
            self._orders[day] = ({n: t for n, t in fresh.items() if t is not None}, order)
            self._orders.move_to_end(day)
            while len(self._orders) > DAY_ORDER_CACHE:
                self._orders.popitem(last=False)
        return order

    def page(
        self, flt: RecordingFilter, offset: int, limit: int, live: Mapping[Path, LiveSession]
    ) -> tuple[list[Recording], bool]:
        """Up to `limit` recordings after skipping `offset`, newest first, and whether more follow. Manifests are
        read only for the recordings returned, and for all of a day's only when filtering by participant/state."""
        first, last = flt.day_bounds()
        skipped = 0
        found: list[Recording] = []
        for day in self.days():
            if (last is not None and day > last) or (first is not None and day < first):
                continue
            folders = self.folders(day)
            if flt.covers_day(day) and skipped + len(folders) <= offset:
                skipped += len(folders)  # wholly before the page: counted, never read
                continue
            base = self.root / day
            for start, name in self.day_order(day, folders, live):
                if not flt.selects_time(start):
                    continue
                rec = self.recording(base / name, live) if flt.needs_summary else None
                if rec is not None and not flt.selects(rec):
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                found.append(rec or self.recording(base / name, live))
                if len(found) > limit:
                    return found[:limit], True
        return found, False

    def all(self, live: Mapping[Path, LiveSession]) -> Iterator[Recording]:
        """Every recording, newest day first (reads every manifest not in the cache: admin operations only)."""
        for day in self.days():
            yield from sorted((self.recording(f, live) for f in self.folders(day)), key=lambda r: r.sort_key,
                              reverse=True)  # fmt: skip

    def find(
        self,
        call_id: str,
        live: Mapping[Path, LiveSession],
        *,
        session_id: str | None = None,
        every: bool = False,
    ) -> list[Recording]:
        """Recordings of one Call-ID, newest first: the newest only unless `every` (or the one of `session_id`)."""
        base = safe_name(call_id)
        found: list[Recording] = []
        for day in self.days():
            day_found = [
                rec
                for rec in (self.recording(folder, live) for folder in self._candidates(day, base))
                if rec.call_id == call_id and (session_id is None or rec.session_id == session_id)
            ]
            found += sorted(day_found, key=lambda r: r.sort_key, reverse=True)
            if found and not every and session_id is None:
                return found[:1]
            if session_id is not None and found:
                return found
        return found

    def _candidates(self, day: str, base: str) -> Iterator[Path]:
        """`<day>/<base>`, `<day>/<base>-2`, ... as session_folder names them (one gap tolerated, e.g. an erased
        first recording of a re-used Call-ID)."""
        parent = self.root / day
        misses = 0
        for n in range(1, MAX_SAME_DAY_REUSE):
            folder = parent / (base if n == 1 else f"{base}-{n}")
            if folder.is_dir() and self._inside(folder) is not None:
                misses = 0
                yield folder
            else:
                misses += 1
                if misses > 1:
                    return

    def select(
        self, live: Mapping[Path, LiveSession], *, call_id: str | None, participant: str | None
    ) -> list[Recording]:
        """Every recording of `call_id` and/or with a participant whose AOR is `participant` (participant_key);
        both given: recordings matching both."""
        wanted = participant_key(participant) if participant is not None else None
        if participant is not None and wanted is None:
            return []
        pool = self.find(call_id, live, every=True) if call_id is not None else list(self.all(live))
        if wanted is None:
            return pool
        return [r for r in pool if any(p.aor and participant_key(p.aor) == wanted for p in r.participants)]

    # --- files -----------------------------------------------------------------------------------------------
    def _inside(self, path: Path) -> Path | None:
        """`path` if it resolves inside the root (symlinks followed), else None."""
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):
            return None
        return path if resolved.is_relative_to(self.root) and resolved != self.root else None

    def audio_path(self, rec: Recording, name: str) -> Path | None:
        """The file a manifest names, if it is a regular file directly inside the recording's folder."""
        if not is_plain_name(name):
            return None
        path = rec.folder / name
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                return None
        except OSError:
            return None
        return (
            path if self._inside(path) is not None and path.resolve().parent == rec.folder.resolve() else None
        )

    def files(self, rec: Recording, *, hidden: bool = False) -> list[tuple[str, int]]:
        """(path relative to the folder, size) of every regular file under it, symlinks not followed; dot files
        (temporary files being written) only with `hidden`."""
        if self._inside(rec.folder) is None:
            return []
        out: list[tuple[str, int]] = []
        for dirpath, dirnames, filenames in os.walk(rec.folder, followlinks=False):
            dirnames.sort()
            if not hidden:
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in sorted(filenames):
                if not hidden and name.startswith("."):
                    continue
                path = Path(dirpath) / name
                with contextlib.suppress(OSError):
                    st = os.lstat(path)
                    if stat.S_ISREG(st.st_mode):
                        out.append((path.relative_to(rec.folder).as_posix(), st.st_size))
        return out

    def marked_folders(self) -> set[Path]:
        """Folders named by `.inprogress` markers: sessions recording or being finalised (FLAC transcoding)."""
        out: set[Path] = set()
        for entry in self._scan(self.root / MARKER_DIR):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                relative = Path(entry.path).read_text(encoding="utf-8").strip()
                if relative:
                    out.add((self.root / relative).resolve())
        return out

    def erase(self, rec: Recording) -> ErasedFolder:
        """Remove the recording's folder and everything in it (symlinks removed, never followed)."""
        folder = self._inside(rec.folder)
        if folder is None:
            raise FileNotFoundError(rec.folder)
        files = self.files(rec, hidden=True)
        shutil.rmtree(folder)
        with self._lock:
            self._cache.pop(rec.folder, None)
            self._usage = None
        return ErasedFolder(rec, tuple(name for name, _ in files), sum(size for _, size in files))

    # --- totals ----------------------------------------------------------------------------------------------
    def usage(self, live: Mapping[Path, LiveSession], *, max_age_s: float = 30.0) -> ArchiveUsage:
        """What the archive holds. A full walk (stat of every file), so the result is kept for `max_age_s`."""
        with self._lock:
            if self._usage is not None and time.monotonic() - self._usage_at < max_age_s:
                return self._usage
        days = self.days(newest_first=False)
        count = total = 0
        for day in days:
            for folder in self.folders(day):
                count += 1
                for entry in _walk_files(folder):
                    total += entry
        usage = ArchiveUsage(
            recordings=count, bytes=total, days=len(days),
            oldest_started_at=self._edge(days, live, oldest=True),
            newest_started_at=self._edge(days[::-1], live, oldest=False), computed_at=time.time(),
        )  # fmt: skip
        with self._lock:
            self._usage, self._usage_at = usage, time.monotonic()
        return usage

    def _edge(self, days: list[str], live: Mapping[Path, LiveSession], *, oldest: bool) -> float | None:
        for day in days:
            times = [t for t, _ in self.day_order(day, self.folders(day), live) if t is not None]
            if times:
                return min(times) if oldest else max(times)
        return None

    def forget_usage(self) -> None:
        with self._lock:
            self._usage = None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _walk_files(folder: Path) -> Iterator[int]:
    for dirpath, _, filenames in os.walk(folder, followlinks=False):
        for name in filenames:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                if stat.S_ISREG(st.st_mode):
                    yield st.st_size


def index_for(ctx: ApiContext) -> RecordingIndex:
    """The application's RecordingIndex over recording.dir (made on first use, kept in ctx.components)."""
    index = ctx.components.get("recording_index")
    if not isinstance(index, RecordingIndex):
        index = ctx.components["recording_index"] = RecordingIndex(Path(ctx.config.recording.dir))
    return index
