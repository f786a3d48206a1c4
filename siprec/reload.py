"""Hot reload of the configuration: `ConfigReloader` re-reads the file and the environment, applies what can change
while the server runs, and lists what needs a restart (POST /api/config/reload, SIGHUP).

How the change reaches the components. Every component is built with the one root `Config` object
(SiprecServer.config, ApiContext.config). A reload never mutates a section object: on that root it replaces each
section that has changed hot keys by a copy carrying the new values of those keys only. Hence three kinds of key
(`KEY_RULES`, each with the reason):
- LIVE: read from the root at each use (`config.sip.require_siprec` on each INVITE...): the swap is the change;
- APPLIED: a component copied the value (or kept the section object) at construction, so an applier must hand it
  the new one: `register(prefixes, apply)`, `apply(old, new)` with the root before (a snapshot) and after (the
  live root). Such a key is hot only while a registered applier covers it; without one it is restart-required;
- RESTART: sockets, port ranges, store, directories, providers. Never swapped in: the live config keeps the values
  in force (GET /api/config shows those), and every reload lists the keys still waiting for a restart.

All or nothing: the new file must validate (plus the checks added with `add_check`, e.g. stt.* against the
installed providers), the config in force afterwards (old restart keys, new hot keys) must validate too, and if an
applier raises, the sections are put back and the appliers that already ran are called again with (new, old).
`reload()` is synchronous and meant for the event loop's thread: a small file is read and checked in
milliseconds and nothing can interleave with it, so two reloads never mix.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from siprec.config import (
    Config,
    ConfigError,
    ConfigProblem,
    config_from_mapping,
    load_config,
    parse_config_text,
)

if TYPE_CHECKING:
    import asyncio


__all__ = [
    "KEY_RULES",
    "Applier",
    "ConfigReloader",
    "KeyChange",
    "KeyMode",
    "ReloadOutcome",
    "Validation",
    "install_sighup",
    "leaf_keys",
    "parse_config_text",
]

log = logging.getLogger("siprec.reload")

Applier = Callable[[Config, Config], None]
Result = Literal["applied", "no_changes", "restart_required", "invalid", "failed"]


class KeyMode(StrEnum):
    LIVE = "live"
    APPLIED = "applied"
    RESTART = "restart"


@dataclass(frozen=True)
class KeyRule:
    mode: KeyMode
    why: str


def _live(why: str) -> KeyRule:
    return KeyRule(KeyMode.LIVE, why)


def _applied(why: str) -> KeyRule:
    return KeyRule(KeyMode.APPLIED, why)


def _restart(why: str) -> KeyRule:
    return KeyRule(KeyMode.RESTART, why)


_SOCKETS = "bound at start"
# Dotted key -> rule; a key without its own entry takes its closest parent's (stt.<provider> sections: "stt").
# Every leaf of Config has an entry (checked by the tests), so a new key gets a conscious decision.
KEY_RULES: dict[str, KeyRule] = {
    "sip.host": _restart(f"SIP sockets {_SOCKETS}"),
    "sip.advertised_host": _restart("given to the SIP core at start (Via, Contact)"),
    "sip.udp_port": _restart(f"SIP sockets {_SOCKETS}"),
    "sip.tcp_port": _restart(f"SIP sockets {_SOCKETS}"),
    "sip.tls_port": _restart(f"SIP sockets {_SOCKETS}"),
    "sip.tls_cert": _restart("TLS context built at start"),
    "sip.tls_key": _restart("TLS context built at start"),
    "sip.require_siprec": _live("RecordingUas reads it on each INVITE"),
    "sip.session_expires": _live("RecordingUas reads it on each session-timer negotiation"),
    "sip.min_se": _live("RecordingUas reads it on each session-timer negotiation"),
    "sip.trusted_sources": _applied("AdmissionControl (admission_applier)"),
    "sip.max_message_size": _restart("SIP transport limits set at start"),
    "rtp.port_min": _restart("RTP port pool built at start"),
    "rtp.port_max": _restart("RTP port pool built at start"),
    "rtp.jitter_ms": _live("read for each new leg"),
    "rtp.rtp_timeout_s": _live("RecordingUas reads it on each media check"),
    "rtp.latch": _live("read for each new leg"),
    "rtp.media_workers": _restart("worker processes started with the server"),
    "recording.dir": _restart("recording root and crash recovery set at start"),
    "recording.combine_legs": _live("read for each new session"),
    "recording.pause_mode": _restart("the STT pipeline copies it at start"),
    "recording.format": _live("read when a session ends"),
    "recording.encryption": _restart("not implemented in this version"),
    "stt": _restart("STT providers are started once"),
    "stt.provider": _restart("STT providers are started once"),
    "stt.fallback": _restart("STT providers are started once"),
    "stt.language": _applied("the STT service (stt_applier): legs opened and jobs started after the reload"),
    "stt.partials": _applied("the STT service (stt_applier): legs opened after the reload"),
    "stt.max_concurrent": _live("SttService reads it for each new leg"),
    "http.host": _restart(f"HTTP socket {_SOCKETS}"),
    "http.port": _restart(f"HTTP socket {_SOCKETS}"),
    "http.enable_metrics": _live("/metrics reads it on each request"),
    "http.cors_origins": _live("read on each HTTP request"),
    "auth": _applied("the API authenticator (auth_applier)"),
    "pause_resume.enabled": _live("the pause routes read it on each request"),
    "pause_resume.per_session": _live("the pause routes read it on each request"),
    "pause_resume.require_auth": _applied("the API authenticator (auth_applier)"),
    "pause_resume.api_key": _applied("the API authenticator (auth_applier)"),
    "amqp.enabled": _restart("the AMQP publisher is started once"),
    "amqp.url": _restart("the AMQP connection is made at start"),
    "amqp.exchange": _restart("the exchange is declared at start"),
    "amqp.instance_id": _restart("the outbox is opened with it at start"),
    "amqp.publish_partial_transcripts": _applied("the AMQP publisher's filter (amqp_filter_applier)"),
    "amqp.publish_final_transcripts": _applied("the AMQP publisher's filter (amqp_filter_applier)"),
    "amqp.publish_sentiment_updates": _applied("the AMQP publisher's filter (amqp_filter_applier)"),
    "amqp.publish_keyword_detections": _applied("the AMQP publisher's filter (amqp_filter_applier)"),
    "amqp.publish_speaker_changes": _applied("the AMQP publisher's filter (amqp_filter_applier)"),
    "analytics.enabled": _applied("the analytics service (analytics_applier)"),
    "analytics.keywords": _applied("the analytics service (analytics_applier)"),
    "analytics.snapshot_interval_s": _applied("the analytics service (analytics_applier)"),
    "limits": _applied("AdmissionControl (admission_applier)"),
    "store.url": _restart("the store is opened at start"),
    "redis.url": _restart("the Redis connection is made at start"),
    "log.level": _applied("the root logger (log_level_applier)"),
    "log.format": _restart("the log handler is installed at start"),
    "webhooks.urls": _applied("the webhook sender (webhooks_applier)"),
    "webhooks.secret": _applied("the webhook sender (webhooks_applier)"),
    "webhooks.max_retries": _applied("the webhook sender (webhooks_applier)"),
    "webhooks.timeout_s": _restart("the webhook HTTP session is made at start"),
}
_UNCLASSIFIED = _restart("not classified")


def rule_for(key: str) -> KeyRule:
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        rule = KEY_RULES.get(".".join(parts[:n]))
        if rule is not None:
            return rule
    return _UNCLASSIFIED


# --------------------------------------------------------------------------- keys and values


def leaf_keys(config: BaseModel, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a config as {dotted key: value}; an stt.<provider> option section is one leaf."""
    out: dict[str, Any] = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            out.update(leaf_keys(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    for name, value in (config.model_extra or {}).items():
        out[f"{prefix}{name}"] = value
    return out


def _public_value(public: Mapping[str, Any], key: str) -> Any:
    node: Any = public
    for part in key.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _with_values(model: BaseModel, updates: Mapping[tuple[str, ...], Any]) -> Any:
    """A copy of `model` with the values at the given paths replaced (sub-models copied, never mutated)."""
    direct: dict[str, Any] = {}
    nested: dict[str, dict[tuple[str, ...], Any]] = {}
    for path, value in updates.items():
        if len(path) == 1:
            direct[path[0]] = value
        else:
            nested.setdefault(path[0], {})[path[1:]] = value
    for name, sub in nested.items():
        direct[name] = _with_values(getattr(model, name), sub)
    return model.model_copy(update=direct)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class KeyChange:
    key: str
    mode: KeyMode  # what this reload does with it: LIVE/APPLIED are applied, RESTART waits
    old: Any  # public values: secrets "***", URL passwords hidden
    new: Any
    why: str


@dataclass(frozen=True)
class ReloadOutcome:
    result: Result
    trigger: str  # api | sighup | ...
    at: float  # Unix time
    source: str | None  # the file read (None: defaults and environment only)
    changes: tuple[KeyChange, ...] = ()
    unchanged: int = 0
    problems: tuple[ConfigProblem, ...] = ()
    error: str | None = None
    appliers: tuple[str, ...] = ()  # names of the appliers that ran

    @property
    def ok(self) -> bool:
        return self.result not in ("invalid", "failed")

    @property
    def applied(self) -> list[str]:
        return [c.key for c in self.changes if c.mode is not KeyMode.RESTART] if self.ok else []

    @property
    def restart_required(self) -> list[str]:
        return [c.key for c in self.changes if c.mode is KeyMode.RESTART]


@dataclass(frozen=True)
class Validation:
    """A config checked without touching the running one: its problems, or what loading it would change."""

    problems: tuple[ConfigProblem, ...]
    changes: tuple[KeyChange, ...] = ()
    unchanged: int = 0

    @property
    def valid(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class _Registered:
    prefixes: tuple[str, ...]
    apply: Applier
    name: str

    def covers(self, key: str) -> bool:
        return any(key == p or key.startswith(p + ".") for p in self.prefixes)


class ApplyFailed(Exception):
    """An applier raised; everything was put back."""

    def __init__(self, message: str, changes: tuple[KeyChange, ...] = (), unchanged: int = 0) -> None:
        super().__init__(message)
        self.changes = changes
        self.unchanged = unchanged


# --------------------------------------------------------------------------- the reloader


@dataclass(eq=False)
class ConfigReloader:
    """Reloads `config_path` (None: defaults + environment) into the running `current` Config (see the module doc).

    `env`: the variables to read (None: os.environ as it is at each reload). `clock`: Unix time for the status."""

    config_path: str | Path | None
    current: Config
    env: Mapping[str, str] | None = None
    clock: Callable[[], float] = time.time
    reloads: int = 0  # attempts
    last: ReloadOutcome | None = None
    last_applied_at: float | None = None
    pending_restart: tuple[str, ...] = ()  # as of the last valid read of the config
    _appliers: list[_Registered] = field(default_factory=list)
    _checks: list[Callable[[Config], None]] = field(default_factory=list)

    # ---------------------------------------------------------------- set-up

    def register(self, prefixes: str | Iterable[str], apply: Applier, *, name: str | None = None) -> None:
        """Call `apply(old, new)` when a hot key under one of `prefixes` ("limits", "sip.trusted_sources") changed.
        Makes the APPLIED keys it covers hot. Appliers run in registration order, once per reload. Registering a
        name again replaces that applier in its place (a component re-created, or wired again after start)."""
        wanted = (prefixes,) if isinstance(prefixes, str) else tuple(prefixes)
        if not wanted or not all(wanted):
            raise ValueError("an applier needs at least one non-empty key prefix")
        entry = _Registered(wanted, apply, name or "+".join(wanted))
        for i, known in enumerate(self._appliers):
            if known.name == entry.name:
                self._appliers[i] = entry
                return
        self._appliers.append(entry)

    def add_check(self, check: Callable[[Config], None]) -> None:
        """An extra check of every new config (reload and validate): raise ConfigError to refuse it."""
        self._checks.append(check)

    @property
    def config(self) -> Config:
        """The live root config (the object every component reads)."""
        return self.current

    @property
    def applier_names(self) -> list[str]:
        return [a.name for a in self._appliers]

    @property
    def source(self) -> str | None:
        return None if self.config_path is None else str(self.config_path)

    def mode(self, key: str) -> KeyMode:
        """What a change of `key` does now: LIVE, APPLIED (an applier covers it) or RESTART."""
        rule = rule_for(key)
        if rule.mode is KeyMode.APPLIED and not any(a.covers(key) for a in self._appliers):
            return KeyMode.RESTART
        return rule.mode

    def why(self, key: str) -> str:
        rule = rule_for(key)
        if rule.mode is KeyMode.APPLIED and self.mode(key) is KeyMode.RESTART:
            return f"no live applier registered: {rule.why}"
        return rule.why

    def key_modes(self) -> dict[str, KeyMode]:
        """Every key of the running config with what a change of it does now."""
        return {key: self.mode(key) for key in leaf_keys(self.current)}

    # ---------------------------------------------------------------- checking

    def _environment(self) -> Mapping[str, str]:
        return os.environ if self.env is None else self.env

    def _checked(self, load: Callable[[], Config]) -> Config:
        config = load()
        problems: list[ConfigProblem] = []
        for check in self._checks:
            try:
                check(config)
            except ConfigError as exc:
                problems.extend(exc.problems)
        if problems:
            raise ConfigError(problems)
        return config

    def changes(self, new: Config) -> tuple[list[KeyChange], int]:
        """How `new` differs from the running config, key by key (public values), and how many keys are equal."""
        old_leaves, new_leaves = leaf_keys(self.current), leaf_keys(new)
        old_public, new_public = self.current.to_public_dict(), new.to_public_dict()
        out: list[KeyChange] = []
        same = 0
        for key in sorted(old_leaves.keys() | new_leaves.keys()):
            if key in old_leaves and key in new_leaves and old_leaves[key] == new_leaves[key]:
                same += 1
                continue
            old, new_value = _public_value(old_public, key), _public_value(new_public, key)
            out.append(KeyChange(key, self.mode(key), old, new_value, self.why(key)))
        return out, same

    def validate_text(self, text: str, *, name: str = "body", apply_env: bool = True) -> Validation:
        """Check a whole config document (YAML or JSON) as a reload of it would; nothing running is touched."""
        env = self._environment() if apply_env else {}
        try:
            new = self._checked(lambda: config_from_mapping(parse_config_text(text, name), env))
        except ConfigError as exc:
            return Validation(tuple(exc.problems))
        changes, same = self.changes(new)
        return Validation((), tuple(changes), same)

    # ---------------------------------------------------------------- reloading

    def reload(self, trigger: str = "api") -> ReloadOutcome:
        """Re-read, check, apply the hot changes, list the rest. Never raises for a bad config: the outcome (also
        kept as `last`) says what happened."""
        self.reloads += 1
        at = self.clock()
        try:
            outcome = self._reload(trigger, at)
        except ConfigError as exc:
            outcome = ReloadOutcome("invalid", trigger, at, self.source, problems=tuple(exc.problems))
            log.warning(
                "config reload (%s) refused, nothing changed: %s", trigger, "; ".join(map(str, exc.problems))
            )
        except ApplyFailed as exc:
            outcome = ReloadOutcome(
                "failed", trigger, at, self.source, exc.changes, exc.unchanged, error=str(exc)
            )
            log.error("config reload (%s) failed and was rolled back: %s", trigger, exc)
        self.last = outcome
        if outcome.ok:
            self.pending_restart = tuple(outcome.restart_required)
        return outcome

    def _reload(self, trigger: str, at: float) -> ReloadOutcome:
        new = self._checked(lambda: load_config(self.config_path, self._environment()))
        changes, same = self.changes(new)
        hot = [c for c in changes if c.mode is not KeyMode.RESTART]
        waiting = [c.key for c in changes if c.mode is KeyMode.RESTART]
        if not hot:
            result: Result = "restart_required" if waiting else "no_changes"
            log.info("config reload (%s): nothing to apply%s", trigger, _waiting(waiting))
            return ReloadOutcome(result, trigger, at, self.source, tuple(changes), same)
        new_leaves = leaf_keys(new)
        effective = _with_values(self.current, {tuple(c.key.split(".")): new_leaves[c.key] for c in hot})
        # old restart keys + new hot keys: must hold together too (cross-field checks)
        config_from_mapping(effective.model_dump(mode="json"), {})
        try:
            ran = self._apply(effective, {c.key for c in hot})
        except ApplyFailed as exc:
            raise ApplyFailed(str(exc), tuple(changes), same) from None
        self.last_applied_at = at
        log.info(
            "config reloaded (%s) from %s: applied %s%s",
            trigger, self.source or "defaults and environment", ", ".join(c.key for c in hot), _waiting(waiting),
        )  # fmt: skip
        return ReloadOutcome("applied", trigger, at, self.source, tuple(changes), same, appliers=tuple(ran))

    def _apply(self, effective: Config, hot: set[str]) -> list[str]:
        live = self.current
        # shallow: sections are replaced below, never mutated, so `before` keeps the old ones
        before = live.model_copy()
        sections = sorted({key.split(".", 1)[0] for key in hot})
        for name in sections:
            setattr(live, name, getattr(effective, name))
        ran: list[_Registered] = []
        for applier in self._appliers:
            if not any(applier.covers(key) for key in hot):
                continue
            try:
                applier.apply(before, live)
            except Exception as exc:
                log.exception("config applier %s failed; rolling back", applier.name)
                self._roll_back(before, sections, ran)
                raise ApplyFailed(f"applier {applier.name} failed: {type(exc).__name__}: {exc}") from None
            ran.append(applier)
        return [a.name for a in ran]

    def _roll_back(self, before: Config, sections: list[str], ran: list[_Registered]) -> None:
        live = self.current
        after = live.model_copy()
        for name in sections:
            setattr(live, name, getattr(before, name))
        for applier in reversed(ran):
            try:
                applier.apply(after, live)
            except Exception:
                log.exception("config applier %s failed to roll back", applier.name)


def _waiting(keys: list[str]) -> str:
    return f"; restart required for {', '.join(keys)}" if keys else ""


# --------------------------------------------------------------------------- SIGHUP


def install_sighup(loop: asyncio.AbstractEventLoop, reloader: ConfigReloader) -> Callable[[], None]:
    """Reload on SIGHUP (on the loop's thread). Returns the function that removes the handler again."""

    def on_sighup() -> None:
        try:
            reloader.reload("sighup")
        except Exception:  # a bug must not kill the loop's signal handling
            log.exception("config reload on SIGHUP failed")

    loop.add_signal_handler(signal.SIGHUP, on_sighup)

    def remove() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return remove
