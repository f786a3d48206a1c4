"""The `siprec` command (serve, check-config, version) and logging set-up."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import siprec
from siprec import cli
from siprec.config import Config, LogConfig
from siprec.logsetup import call_context, configure_logging, log_for_call

REPO = Path(__file__).resolve().parents[2]
ETC = REPO / "etc" / "siprec.yaml"

BAD = """
sip: {udp_port: 70000, tls_port: 5061}
recording: {pause_mode: mute}
rtp: {port_min: 30000, port_max: 20000}
"""


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads os.environ: drop any SIPREC__/alias variables of the machine running the tests."""
    import os

    from siprec.config import ENV_ALIASES

    for name in list(os.environ):
        if name.upper().startswith("SIPREC__") or name.upper() in ENV_ALIASES:
            monkeypatch.delenv(name)


@pytest.fixture
def fake_app(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """Stands in for siprec.app so serve can be tested without starting a server."""
    started: list[Config] = []

    def run(config: Config) -> int:
        started.append(config)
        return 0

    module = types.ModuleType("siprec.app")
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "siprec.app", module)
    return started


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- check-config


@pytest.mark.usefixtures("clean_env")
def test_check_config_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", str(ETC)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"ok: {ETC}"
    assert "udp 0.0.0.0:5060" in out[1] and "http 0.0.0.0:8080" in out[1] and "tls off" in out[1]
    assert "recordings ./recordings" in out[1] and "stt whisper" in out[1]


@pytest.mark.usefixtures("clean_env")
def test_check_config_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path, BAD)
    assert cli.main(["check-config", str(f)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert "sip.udp_port: Input should be less than or equal to 65535 (got 70000)" in lines
    assert any(line.startswith("recording.pause_mode:") for line in lines)
    assert any(line.startswith("rtp.port_min:") for line in lines)
    assert "sip.tls_port: tls_port 5061 requires tls_cert and tls_key" in lines  # same section, still reported
    assert lines[-1] == f"invalid: {f} (4 problem(s))"


@pytest.mark.usefixtures("clean_env")
def test_check_config_applies_env(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SIPREC__SIP__UDP_PORT", "15060")
    assert cli.main(["check-config", str(ETC)]) == 0
    assert "udp 0.0.0.0:15060" in capsys.readouterr().out
    monkeypatch.setenv("SIPREC__SIP__UDP_PROT", "15060")
    assert cli.main(["check-config", str(ETC)]) == 1
    err = capsys.readouterr().err
    assert "sip.udp_prot: unknown key; did you mean udp_port? (from SIPREC__SIP__UDP_PROT)" in err


@pytest.mark.usefixtures("clean_env")
def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", str(tmp_path / "x.yaml")]) == 1
    assert f"{tmp_path / 'x.yaml'}: config file not found" in capsys.readouterr().err


@pytest.mark.usefixtures("clean_env")
def test_check_config_show_redacts(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SIPREC__AUTH__JWT_SECRET", "very-secret")
    assert cli.main(["check-config", "--show", str(ETC)]) == 0
    out = capsys.readouterr().out
    assert "jwt_secret: '***'" in out and "very-secret" not in out


def test_check_config_subprocess() -> None:
    exe = REPO / ".venv" / "bin" / "siprec"
    if not exe.exists():
        subprocess.run([str(REPO / ".venv" / "bin" / "pip"), "install", "-e", str(REPO), "-q"], check=True)
    env = {"PATH": "/usr/bin:/bin"}  # no SIPREC__ variables from the caller
    done = subprocess.run([str(exe), "check-config", "etc/siprec.yaml"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: etc/siprec.yaml\n")
    bad = subprocess.run([str(exe), "check-config", "etc/siprec.yaml"], cwd=REPO,
                         env={**env, "SIPREC__HTTP__PORT": "70000"}, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "http.port: Input should be less than or equal to 65535 (got 70000) (from SIPREC__HTTP__PORT)" in bad.stderr


# --------------------------------------------------------------------------- version, usage


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out == f"siprec {siprec.__version__}\n"


def test_no_subcommand_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2
    assert "usage: siprec" in capsys.readouterr().err


def test_subcommands_are_pluggable(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "SUBCOMMANDS", dict(cli.SUBCOMMANDS))

    def configure(p: object) -> None:
        p.add_argument("what")  # type: ignore[attr-defined]

    cli.register("stt", cli.Subcommand("speech-to-text", configure, lambda a: print("stt", a.what) or 3))
    assert cli.main(["stt", "list"]) == 3
    assert capsys.readouterr().out == "stt list\n"


# --------------------------------------------------------------------------- serve


@pytest.mark.usefixtures("clean_env", "restore_logging")
def test_serve_bad_config_refuses_to_start(
    tmp_path: Path, fake_app: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve", "--config", str(write(tmp_path, BAD))]) == 1
    assert fake_app == []  # nothing started
    err = capsys.readouterr().err.splitlines()
    assert "sip.udp_port: Input should be less than or equal to 65535 (got 70000)" in err
    assert any(line.startswith("recording.pause_mode: Input should be 'silence' or 'drop'") for line in err)
    assert err[-1].startswith("siprec: refusing to start:")


@pytest.mark.usefixtures("clean_env", "restore_logging")
def test_serve_missing_config_refuses_to_start(tmp_path: Path, fake_app: list[Config]) -> None:
    assert cli.main(["serve", "--config", str(tmp_path / "none.yaml")]) == 1
    assert fake_app == []


@pytest.mark.usefixtures("clean_env", "restore_logging")
def test_serve_runs_app_with_config(tmp_path: Path, fake_app: list[Config], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIPREC__HTTP__PORT", "18080")
    f = write(tmp_path, "log: {level: debug}\n")
    assert cli.main(["serve", "--config", str(f)]) == 0
    assert len(fake_app) == 1 and fake_app[0].http.port == 18080 and fake_app[0].source == f
    assert logging.getLogger().level == logging.DEBUG


@pytest.mark.usefixtures("clean_env", "restore_logging")
def test_serve_default_config_file(tmp_path: Path, fake_app: list[Config], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no etc/siprec.yaml here: built-in defaults
    assert cli.main(["serve"]) == 0
    assert fake_app[-1].source is None
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "siprec.yaml").write_text("http: {port: 18081}\n")
    assert cli.main(["serve"]) == 0
    assert fake_app[-1].http.port == 18081


@pytest.mark.usefixtures("clean_env", "restore_logging")
def test_serve_returns_app_exit_code(fake_app: list[Config], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules["siprec.app"], "run", lambda config: 3)
    assert cli.main(["serve", "--config", str(ETC)]) == 3


# --------------------------------------------------------------------------- logging


@pytest.mark.usefixtures("restore_logging")
def test_json_log_lines_parse_and_carry_call_id() -> None:
    buf = io.StringIO()
    configure_logging(LogConfig(format="json", level="INFO"), buf)
    log = logging.getLogger("siprec.test")
    log_for_call(log, "a84b4c76e66710@pc33", peer="192.0.2.10").warning("bad SDP\nline2", extra={"status": 488})
    with call_context("ctx-call"):
        log.info("from context")
    log.info("no call")
    log.debug("filtered out")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert first["call_id"] == "a84b4c76e66710@pc33" and first["peer"] == "192.0.2.10" and first["status"] == 488
    assert first["msg"] == "bad SDP\nline2" and first["level"] == "WARNING" and first["logger"] == "siprec.test"
    assert first["ts"].endswith("Z")
    assert second["call_id"] == "ctx-call"
    assert "call_id" not in third


@pytest.mark.usefixtures("restore_logging")
def test_text_log_one_line_per_event() -> None:
    buf = io.StringIO()
    configure_logging(LogConfig(format="text"), buf)
    configure_logging(LogConfig(format="text"), buf)  # idempotent: still one handler, one line per event
    log = logging.getLogger("siprec.test")
    log_for_call(log, "c1").info("evil\r\nINFO forged line", extra={"peer": "192.0.2.1"})
    log.info("plain")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    assert " INFO siprec.test call_id=c1 evil\\r\\nINFO forged line peer=192.0.2.1" in lines[0]
    assert " call_id=- plain" in lines[1]


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_keeps_foreign_handlers() -> None:
    root = logging.getLogger()
    foreign = logging.NullHandler()
    root.addHandler(foreign)
    configure_logging(LogConfig(level="ERROR"))
    assert foreign in root.handlers and root.level == logging.ERROR


@pytest.mark.usefixtures("clean_env", "restore_logging")
def test_serve_refuses_settings_it_cannot_honour(
    tmp_path: Path, fake_app: list[Config], capsys: pytest.CaptureFixture[str]
) -> None:
    # Encryption at rest is a valid key but not built yet: refusing beats writing clear files silently.
    f = write(tmp_path, "recording: {encryption: {enabled: true, key_file: /k}}\n")
    assert cli.main(["check-config", str(f)]) == 0
    assert "encryption at rest is not implemented" in capsys.readouterr().err
    assert cli.main(["serve", "--config", str(f)]) == 1
    assert fake_app == []
    assert "refusing to start: recording.encryption.enabled" in capsys.readouterr().err
