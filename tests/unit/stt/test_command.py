"""`siprec stt list`: installed providers (a real entry point in a temporary dist-info), capabilities, the
configured one; in process and as a real child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from siprec import cli
from siprec.config import ENV_ALIASES
from tests.unit.stt.fake_dist import make_dist

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.upper().startswith("SIPREC__") or name.upper() in ENV_ALIASES:
            monkeypatch.delenv(name)
    root = make_dist(
        tmp_path / "site", {"eptone": "siprec_stt_eptone:EpTone", "epbroken": "siprec_stt_eptone:Nope"}
    )
    monkeypatch.syspath_prepend(str(root))
    return root


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_list_shows_providers_and_the_configured_one(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = config(tmp_path, "stt:\n  provider: eptone\n  language: en-GB\n  eptone: {threshold: 10}\n")
    assert cli.main(["stt", "list", "--config", str(f)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("installed speech-to-text providers (")
    i = lines.index("  eptone  <- provider")
    assert lines[i + 1] == "      streaming, partials, word_timestamps; languages en; input rates 16000 Hz"
    assert lines[i + 2].startswith(
        "      options: fail_after_s, fail_files, fail_in, fail_start, min_silence_s, "
    )
    assert lines[i + 2].endswith("; from siprec_stt_eptone:EpTone from siprec-stt-eptone")
    assert any(line.startswith("  epbroken  UNUSABLE: siprec_stt_eptone:Nope from siprec-stt-eptone: cannot be imported")
               for line in lines)  # fmt: skip
    assert f"configured ({f}): provider eptone, fallback none, language en-GB" in lines
    assert "problem:" not in err


def test_list_json_and_problems_with_the_config(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = config(tmp_path, "stt:\n  provider: eptone\n  fallback: [whisperz]\n")
    assert cli.main(["stt", "list", "--config", str(f), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    ep = next(p for p in report["providers"] if p["name"] == "eptone")
    assert ep == {
        "name": "eptone", "streaming": True, "partials": True, "word_timestamps": True, "languages": ["en"],
        "sample_rates": [16000], "config": ep["config"], "origin": "siprec_stt_eptone:EpTone from siprec-stt-eptone",
        "configured": "provider",
    }  # fmt: skip
    assert "threshold" in ep["config"]
    assert {
        "name": "epbroken",
        "error": next(b["error"] for b in report["broken"] if b["name"] == "epbroken"),
    } in report["broken"]
    assert report["configured"] == {
        "provider": "eptone",
        "fallback": ["whisperz"],
        "language": "en-US",
        "config": str(f),
    }
    assert len(report["problems"]) == 1
    assert report["problems"][0].startswith(
        "stt.fallback.0: no installed provider named 'whisperz' (installed: "
    )


def test_list_with_a_bad_config_file(site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = config(tmp_path, "stt: {max_concurrent: -1}\n")
    assert cli.main(["stt", "list", "--config", str(f)]) == 1
    assert "stt.max_concurrent: Input should be greater than or equal to 0" in capsys.readouterr().err


def test_stt_needs_an_action(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["stt"])
    assert exc.value.code == 2


def test_list_in_a_child_process_discovers_the_entry_point(site: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIPREC__")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)])
    env["SIPREC__STT__PROVIDER"] = "eptone"
    proc = subprocess.run(
        [sys.executable, "-m", "siprec.cli", "stt", "list", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert next(p for p in report["providers"] if p["name"] == "eptone")["configured"] == "provider"
    assert report["configured"]["config"] is None  # no etc/siprec.yaml in cwd: built-in defaults + env
    assert report["problems"] == []
