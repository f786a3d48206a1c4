"""A real installed distribution for entry-point tests: a `.dist-info` directory and a module in a folder that the
test puts on sys.path (or PYTHONPATH for a child process). importlib.metadata finds it like any pip install."""

from __future__ import annotations

import textwrap
from pathlib import Path

PLUGIN_MODULE = """
from typing import ClassVar

from tests.unit.stt.tone_provider import ToneProvider


class EpTone(ToneProvider):
    name: ClassVar[str] = "eptone"
    instances: ClassVar[list] = []


class WrongName(ToneProvider):
    name: ClassVar[str] = "something-else"
"""


def make_dist(root: Path, entry_points: dict[str, str], *, name: str = "siprec-stt-eptone") -> Path:
    """Write `<root>/siprec_stt_eptone.py` and `<root>/<name>-1.0.dist-info/` declaring `entry_points` in group
    siprec.stt; returns root (the folder to put on sys.path)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "siprec_stt_eptone.py").write_text(textwrap.dedent(PLUGIN_MODULE), encoding="utf-8")
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[siprec.stt]\n{lines}", encoding="utf-8")
    return root
