"""ConfigReloader (siprec.reload): every key classified, hot keys applied through the live Config and appliers,
restart-required keys listed and left alone, bad files change nothing, failing appliers roll back; admission
limits updated live; SIGHUP reloads a real process."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from siprec.appliers import (
    ADMISSION_PREFIXES,
    admission_applier,
    log_level_applier,
    register_components,
    webhooks_applier,
)
from siprec.config import Config, ConfigError, ConfigProblem, load_config
from siprec.reload import (
    KEY_RULES,
    ConfigReloader,
    KeyMode,
    leaf_keys,
    parse_config_text,
    rule_for,
)
from siprec.sip.admission import AdmissionControl, SourceLimits
from siprec.sip.errors import SipError
from tests.support import REPO

BASE = {
    "log": {"level": "INFO"},
    "auth": {"api_keys": ["old-key"]},
    "limits": {"max_sessions": 5, "per_source": {"concurrent": 2}},
    "sip": {"udp_port": 5070, "tcp_port": 5070},
    "recording": {"combine_legs": True},
}


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")  # JSON is YAML
    return path


def merged(**sections: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(BASE))
    for name, values in sections.items():
        out.setdefault(name, {}).update(values)
    return out


@pytest.fixture
def root_level() -> Iterator[None]:
    root = logging.getLogger()
    before = root.level
    yield
    root.setLevel(before)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Config, ConfigReloader]:
    path = write(tmp_path / "siprec.yaml", BASE)
    config = load_config(path, env={})
    return path, config, ConfigReloader(path, config, env={})


# --- classification --------------------------------------------------------------------------------------------


def test_every_config_key_has_its_own_rule_and_no_rule_is_stale() -> None:
    keys = leaf_keys(Config())
    unclassified = [k for k in keys if k not in KEY_RULES and rule_for(k).why == "not classified"]
    assert not unclassified
    nested_sections = {k.rsplit(".", 1)[0] for k in keys if k.count(".") > 1}
    stale = [
        r for r in KEY_RULES if r not in keys and r not in {k.split(".")[0] for k in keys} | nested_sections
    ]
    assert not stale, stale


def test_provider_sections_and_restart_keys_need_a_restart() -> None:
    assert rule_for("stt.whisper").mode is KeyMode.RESTART
    for key in ("sip.udp_port", "sip.host", "rtp.port_min", "http.port", "store.url", "recording.dir"):
        assert rule_for(key).mode is KeyMode.RESTART, key


def test_an_applied_key_is_hot_only_while_an_applier_covers_it(
    setup: tuple[Path, Config, ConfigReloader],
) -> None:
    _, _, reloader = setup
    assert reloader.mode("limits.max_sessions") is KeyMode.RESTART
    assert "no live applier" in reloader.why("limits.max_sessions")
    reloader.register("limits", lambda old, new: None)
    assert reloader.mode("limits.max_sessions") is KeyMode.APPLIED
    assert reloader.mode("limits.per_source.daily") is KeyMode.APPLIED
    assert reloader.mode("sip.udp_port") is KeyMode.RESTART
    assert reloader.mode("recording.combine_legs") is KeyMode.LIVE
    with pytest.raises(ValueError):
        reloader.register("", lambda old, new: None)
    calls: list[str] = []
    reloader.register("limits", lambda old, new: calls.append("first"), name="x")
    reloader.register("limits", lambda old, new: calls.append("second"), name="x")  # replaces, same place
    assert reloader.applier_names == ["limits", "x"]


# --- reload ----------------------------------------------------------------------------------------------------


def test_reload_applies_hot_keys_and_lists_restart_keys(
    setup: tuple[Path, Config, ConfigReloader], root_level: None
) -> None:
    path, config, reloader = setup
    admission = AdmissionControl([], SourceLimits(2), 5)
    reloader.register("log.level", log_level_applier(), name="logging")
    reloader.register(ADMISSION_PREFIXES, admission_applier(admission), name="admission")
    seen: list[tuple[int, int]] = []
    reloader.register(
        "limits", lambda old, new: seen.append((old.limits.max_sessions, new.limits.max_sessions))
    )
    sip_before, auth_before = config.sip, config.auth

    write(path, merged(
        log={"level": "debug"}, limits={"max_sessions": 1, "per_source": {"concurrent": 3}},
        sip={"udp_port": 5080, "tcp_port": 5070}, recording={"combine_legs": False}, auth={"api_keys": ["new-key"]},
    ))  # fmt: skip
    outcome = reloader.reload()

    assert outcome.result == "applied" and outcome.ok
    assert outcome.applied == [
        "limits.max_sessions", "limits.per_source.concurrent", "log.level", "recording.combine_legs"
    ]  # fmt: skip
    # auth has no applier here: restart-required, like the SIP port
    assert outcome.restart_required == ["auth.api_keys", "sip.udp_port"]
    assert outcome.appliers == ("logging", "admission", "limits")
    # the live object carries the hot values, and only those
    assert config.log.level == "DEBUG" and logging.getLogger().level == logging.DEBUG
    assert config.recording.combine_legs is False
    assert config.limits.max_sessions == 1
    assert config.sip is sip_before and config.sip.udp_port == 5070
    assert config.auth is auth_before and config.auth.api_keys == ["old-key"]
    assert (admission.max_sessions, admission.per_source) == (1, SourceLimits(3, 0, 0))
    assert seen == [(5, 1)]
    assert reloader.pending_restart == ("auth.api_keys", "sip.udp_port")
    secret = next(c for c in outcome.changes if c.key == "auth.api_keys")
    assert (secret.old, secret.new) == (["***"], ["***"])  # values never show secrets

    # the same file again: nothing to apply, the restart keys still wait
    again = reloader.reload("sighup")
    assert (again.result, again.applied, again.restart_required) == (
        "restart_required", [], ["auth.api_keys", "sip.udp_port"]
    )  # fmt: skip
    assert seen == [(5, 1)]
    assert reloader.reloads == 2 and reloader.last is again


def test_stt_and_analytics_settings_reach_their_services(setup: tuple[Path, Config, ConfigReloader]) -> None:
    path, config, reloader = setup
    calls: list[tuple[str, Any]] = []

    class Stt:
        def apply_settings(self, *, language: str, partials: bool) -> None:
            calls.append(("stt", (language, partials)))

    class Analytics:
        def apply(self, section: Any) -> None:
            calls.append(("analytics", (section.keywords, section.snapshot_interval_s)))

    register_components(reloader, stt=Stt(), analytics=Analytics())
    write(path, merged(stt={"language": "en-GB", "partials": False}, analytics={"keywords": ["refund"]}))
    outcome = reloader.reload()
    assert outcome.result == "applied"
    assert outcome.applied == ["analytics.keywords", "stt.language", "stt.partials"]
    assert sorted(calls) == [("analytics", (["refund"], 5.0)), ("stt", ("en-GB", False))]
    assert (config.stt.language, config.stt.partials, config.analytics.keywords) == ("en-GB", False, ["refund"])


def test_unchanged_file_reports_no_changes(setup: tuple[Path, Config, ConfigReloader]) -> None:
    _, _, reloader = setup
    outcome = reloader.reload()
    assert (outcome.result, outcome.changes, outcome.unchanged) == (
        "no_changes",
        (),
        len(leaf_keys(Config())),
    )


def test_a_bad_file_changes_nothing_and_names_every_problem(
    setup: tuple[Path, Config, ConfigReloader], root_level: None
) -> None:
    path, config, reloader = setup
    calls: list[str] = []
    reloader.register("log.level", lambda old, new: calls.append("log"))
    dump = config.model_dump()
    write(path, merged(log={"level": "LOUD"}, rtp={"port_min": 3}, limits={"max_sessions": 1}))
    outcome = reloader.reload()
    assert outcome.result == "invalid" and not outcome.ok
    assert {p.path for p in outcome.problems} == {"log.level", "rtp.port_min"}
    assert outcome.applied == [] and calls == []
    assert config.model_dump() == dump
    path.write_text("log: {level: INFO\n", encoding="utf-8")  # not YAML
    broken = reloader.reload()
    assert broken.result == "invalid" and "invalid YAML" in broken.problems[0].message
    path.unlink()
    gone = reloader.reload()
    assert gone.problems[0].message == "config file not found"


def test_extra_checks_refuse_a_config(setup: tuple[Path, Config, ConfigReloader]) -> None:
    path, config, reloader = setup

    def no_whisper(c: Config) -> None:
        if c.stt.provider == "whisper":
            raise ConfigError([ConfigProblem("stt.provider", "no installed provider named 'whisper'")])

    reloader.add_check(no_whisper)
    write(path, merged(log={"level": "WARNING"}))
    outcome = reloader.reload()
    assert [str(p) for p in outcome.problems] == ["stt.provider: no installed provider named 'whisper'"]
    assert config.log.level == "INFO"


def test_environment_overrides_are_read_at_each_reload(tmp_path: Path, root_level: None) -> None:
    path = write(tmp_path / "c.yaml", BASE)
    env: dict[str, str] = {}
    config = load_config(path, env=env)
    reloader = ConfigReloader(path, config, env=env)
    reloader.register("log.level", log_level_applier())
    env["SIPREC__LOG__LEVEL"] = "error"
    assert reloader.reload().applied == ["log.level"]
    assert config.log.level == "ERROR"
    env["SIPREC__LIMITS__MAX_SESSIONS"] = "many"
    bad = reloader.reload()
    assert [(p.path, p.env_var) for p in bad.problems] == [
        ("limits.max_sessions", "SIPREC__LIMITS__MAX_SESSIONS")
    ]


def test_a_failing_applier_rolls_everything_back(setup: tuple[Path, Config, ConfigReloader]) -> None:
    path, config, reloader = setup
    admission = AdmissionControl([], SourceLimits(2), 5)
    reloader.register(ADMISSION_PREFIXES, admission_applier(admission), name="admission")

    def refuse(old: Config, new: Config) -> None:
        raise RuntimeError("cannot take it")

    reloader.register("recording", refuse, name="refuser")
    limits_before = config.limits
    write(path, merged(limits={"max_sessions": 1}, recording={"combine_legs": False}))
    outcome = reloader.reload()
    assert outcome.result == "failed" and "refuser failed: RuntimeError: cannot take it" in (
        outcome.error or ""
    )
    assert outcome.applied == [] and {c.key for c in outcome.changes} == {
        "limits.max_sessions",
        "recording.combine_legs",
    }
    assert config.limits is limits_before and config.recording.combine_legs is True
    assert admission.max_sessions == 5  # the admission applier ran, then was called again with (new, old)
    assert reloader.last_applied_at is None


def test_nested_and_section_objects_are_replaced_never_mutated(
    setup: tuple[Path, Config, ConfigReloader],
) -> None:
    path, config, reloader = setup
    reloader.register("limits", lambda old, new: None)
    old_limits = config.limits
    write(path, merged(limits={"max_sessions": 5, "per_source": {"concurrent": 2, "daily": 7}}))
    assert reloader.reload().applied == ["limits.per_source.daily"]
    assert old_limits.per_source.daily == 0  # a component holding the old section still sees a whole old one
    assert config.limits.per_source.daily == 7 and config.limits.max_sessions == 5


def test_webhooks_applier_keeps_the_restart_only_timeout(setup: tuple[Path, Config, ConfigReloader]) -> None:
    path, config, reloader = setup

    class Sender:
        def __init__(self) -> None:
            self.config = config.webhooks

    sender = Sender()
    reloader.register("webhooks", webhooks_applier(sender))
    write(path, merged(webhooks={"urls": ["http://127.0.0.1:9/hook"], "timeout_s": 9, "secret": "s"}))
    outcome = reloader.reload()
    assert outcome.applied == ["webhooks.secret", "webhooks.urls"]
    assert outcome.restart_required == ["webhooks.timeout_s"]
    assert sender.config.urls == ["http://127.0.0.1:9/hook"] and sender.config.timeout_s == 5


# --- validate --------------------------------------------------------------------------------------------------


def test_validate_text_never_touches_the_running_config(setup: tuple[Path, Config, ConfigReloader]) -> None:
    _, config, reloader = setup
    reloader.register("limits", lambda old, new: pytest.fail("validate must not apply"))
    dump = config.model_dump()
    yaml_doc = (
        "limits:\n  max_sessions: 9\nsip:\n  udp_port: 5999\n  tcp_port: 5070\nauth:\n  api_keys: [old-key]\n"
    )
    checked = reloader.validate_text(yaml_doc)
    assert checked.valid
    assert {c.key: c.mode for c in checked.changes} == {
        "limits.max_sessions": KeyMode.APPLIED,
        "limits.per_source.concurrent": KeyMode.APPLIED,  # absent from the document: back to its default
        "sip.udp_port": KeyMode.RESTART,
    }
    bad = reloader.validate_text(json.dumps({"sip": {"udp_port": 70000}, "nope": {}}))
    assert not bad.valid and {p.path for p in bad.problems} == {"sip.udp_port", "nope"}
    dup = reloader.validate_text("log:\n  level: INFO\nlog:\n  level: DEBUG\n")
    assert "duplicate key 'log'" in dup.problems[0].message and dup.problems[0].path == "body"
    assert reloader.validate_text("- a\n- b\n").problems[0].message.startswith("top level must be a mapping")
    assert config.model_dump() == dump and reloader.reloads == 0


def test_validate_applies_the_environment_unless_asked_not_to(tmp_path: Path) -> None:
    config = load_config(None, env={})
    reloader = ConfigReloader(None, config, env={"SIPREC__HTTP__PORT": "not-a-port"})
    assert not reloader.validate_text("{}").valid
    assert reloader.validate_text("{}", apply_env=False).valid


def test_parse_config_text_reads_json_and_yaml() -> None:
    assert parse_config_text('{"log": {"level": "INFO"}}') == {"log": {"level": "INFO"}}
    assert parse_config_text("") == {}
    with pytest.raises(ConfigError) as err:
        parse_config_text("a: [1,\n", name="upload")
    assert err.value.problems[0].path == "upload"


# --- admission -------------------------------------------------------------------------------------------------


def test_update_limits_takes_effect_for_new_dialogs_only() -> None:
    admission = AdmissionControl([], SourceLimits(concurrent=0, hourly=2), max_sessions=0)
    admission.admit("10.0.0.1", 0.0)
    admission.admit("10.0.0.1", 1.0)
    admission.update_limits(max_sessions=2)
    with pytest.raises(SipError) as err:
        admission.admit("10.0.0.2", 2.0)
    assert err.value.status == 503 and "max_sessions (2)" in str(err.value)
    admission.release("10.0.0.1")
    admission.release("10.0.0.1")
    # hourly switched off: the source's history is dropped with it, and with no live dialog its state goes
    admission.update_limits(per_source=SourceLimits(), trusted_sources=["192.0.2.0/24"])
    assert admission.active_for("10.0.0.1") == 0 and not admission._sources
    assert admission.is_trusted("192.0.2.7") and not admission.is_trusted("10.0.0.1")
    admission.admit("10.0.0.1", 3.0)
    admission.update_limits(per_source=SourceLimits(concurrent=1))
    with pytest.raises(SipError):
        admission.admit("10.0.0.1", 4.0)
    admission.update_limits(per_source=SourceLimits(hourly=1))  # switched on: counts from now
    admission.admit("10.0.0.1", 5.0)
    with pytest.raises(SipError):
        admission.admit("10.0.0.1", 6.0)


# --- SIGHUP ----------------------------------------------------------------------------------------------------

SIGHUP_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, logging, sys
    from siprec.config import load_config
    from siprec.appliers import register_components
    from siprec.reload import ConfigReloader, install_sighup

    async def main(path):
        config = load_config(path, env={})
        reloader = ConfigReloader(path, config, env={})
        register_components(reloader)
        done = asyncio.Event()
        reloader.register("log.level", lambda old, new: done.set(), name="probe")
        remove = install_sighup(asyncio.get_running_loop(), reloader)
        print("ready", flush=True)
        await asyncio.wait_for(done.wait(), 30)
        remove()
        out = reloader.last
        print(json.dumps({"result": out.result, "trigger": out.trigger, "applied": out.applied,
                          "restart": out.restart_required, "level": logging.getLogger().level}), flush=True)

    asyncio.run(main(sys.argv[1]))
    """
)


def test_sighup_reloads_a_running_process(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", BASE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGHUP_SCRIPT, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        write(path, merged(log={"level": "ERROR"}, sip={"udp_port": 5090, "tcp_port": 5070}))
        os.kill(proc.pid, signal.SIGHUP)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report == {
        "result": "applied", "trigger": "sighup", "applied": ["log.level"], "restart": ["sip.udp_port"],
        "level": logging.ERROR,
    }  # fmt: skip


def test_install_sighup_adds_and_removes_the_handler() -> None:
    import asyncio

    from siprec.reload import install_sighup

    async def main() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        remove = install_sighup(loop, ConfigReloader(None, load_config(None, env={}), env={}))
        installed = signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, None)
        remove()
        return installed, signal.getsignal(signal.SIGHUP) == signal.SIG_DFL

    assert asyncio.run(main()) == (True, True)
