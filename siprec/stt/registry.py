"""Installed speech-to-text providers and the check of the `stt.*` config against them.

Providers come from the entry-point group `siprec.stt` (one per installed plugin distribution, the entry-point
name being the provider name) plus classes registered in code (`ProviderRegistry.register`, used by tests and
embedders). `ProviderRegistry.plan(config.stt)` turns the config into an `SttPlan`: the provider classes in the
order they are tried (stt.provider, then stt.fallback) with their options validated by each provider's
`config_model`, or a `ConfigError` naming every problem (unknown names come with the list of installed providers).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.metadata
import inspect
import logging
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from siprec.config import ConfigError, ConfigProblem, SttConfig
from siprec.stt.provider import ENTRY_POINT_GROUP, Capabilities, ProviderConfig, SttProvider

__all__ = ["NONE", "ProviderChoice", "ProviderRegistry", "SttPlan"]

log = logging.getLogger("siprec.stt")

NONE = "none"  # stt.provider: none = transcription off
_METHODS = ("start", "open_stream", "transcribe_file", "close")
_SECRET_HINTS = ("key", "secret", "token", "password", "passphrase")


@dataclass(frozen=True)
class ProviderChoice:
    """One provider the server will use, with its validated `stt.<name>` options."""

    name: str
    provider_class: type[SttProvider]
    options: ProviderConfig


@dataclass(frozen=True)
class SttPlan:
    """The providers in the order they are tried (empty: STT off), the language, and non-fatal remarks."""

    providers: tuple[ProviderChoice, ...]
    language: str
    warnings: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.providers)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.providers)


def check_provider_class(obj: Any, name: str) -> str | None:
    """Why `obj` cannot serve as the provider `name` (None when it can)."""
    if not inspect.isclass(obj):
        return f"{obj!r} is not a class"
    if getattr(obj, "name", None) != name:
        return f"its class says name {getattr(obj, 'name', None)!r}, the entry point says {name!r}"
    caps = getattr(obj, "capabilities", None)
    if not isinstance(caps, Capabilities):
        return "capabilities is not a siprec.stt.provider.Capabilities"
    if not caps.sample_rates or not all(isinstance(r, int) and r > 0 for r in caps.sample_rates):
        return f"capabilities.sample_rates must list positive integers (got {caps.sample_rates!r})"
    model = getattr(obj, "config_model", None)
    if not (inspect.isclass(model) and issubclass(model, BaseModel)):
        return "config_model is not a pydantic model class"
    missing = [m for m in _METHODS if not callable(getattr(obj, m, None))]
    if missing:
        return f"missing method(s): {', '.join(missing)}"
    return None


class ProviderRegistry:
    """Provider classes by name: entry points (loaded on first use) overlaid with code registrations."""

    def __init__(self, *, entry_points: bool = True) -> None:
        self._use_entry_points = entry_points
        self._discovered: dict[str, type[SttProvider]] | None = None
        self._broken: dict[str, str] = {}
        self._origin: dict[str, str] = {}
        self._registered: dict[str, type[SttProvider]] = {}

    # ---------------------------------------------------------------- discovery

    def register(self, provider_class: type[Any], *, name: str | None = None) -> None:
        """Add a provider class in code (wins over an entry point of the same name)."""
        name = name or getattr(provider_class, "name", "")
        problem = check_provider_class(provider_class, name)
        if problem is not None:
            raise ValueError(f"cannot register STT provider {name!r}: {problem}")
        if name == NONE:
            raise ValueError(f"{NONE!r} is reserved (it means no transcription)")
        self._registered[name] = provider_class
        self._origin[name] = "registered in code"

    def _discover(self) -> dict[str, type[SttProvider]]:
        if self._discovered is not None:
            return self._discovered
        found: dict[str, type[SttProvider]] = {}
        if self._use_entry_points:
            for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                dist = getattr(ep.dist, "name", None) or "?"
                where = f"{ep.value} from {dist}"
                if ep.name in found or ep.name in self._broken:
                    log.warning(
                        "STT provider %r is installed twice; using %s, ignoring %s",
                        ep.name,
                        self._origin.get(ep.name),
                        where,
                    )
                    continue
                if ep.name == NONE:
                    self._broken[ep.name] = f"{where}: the name {NONE!r} is reserved"
                    continue
                try:
                    obj = ep.load()
                except Exception as exc:  # a broken plugin must not stop the server from listing the others
                    self._broken[ep.name] = f"{where}: cannot be imported: {type(exc).__name__}: {exc}"
                    self._origin[ep.name] = where
                    continue
                problem = check_provider_class(obj, ep.name)
                self._origin[ep.name] = where
                if problem is not None:
                    self._broken[ep.name] = f"{where}: {problem}"
                    continue
                found[ep.name] = obj
        self._discovered = found
        return found

    def providers(self) -> dict[str, type[SttProvider]]:
        """Every usable provider class by name, sorted by name."""
        merged = {**self._discover(), **self._registered}
        return dict(sorted(merged.items()))

    def broken(self) -> dict[str, str]:
        """Entry points that are installed but cannot be used: name -> why."""
        self._discover()
        return {k: v for k, v in sorted(self._broken.items()) if k not in self._registered}

    def origin(self, name: str) -> str:
        """Where a provider comes from ("module:Class from distribution", or "registered in code")."""
        self._discover()
        return self._origin.get(name, "?")

    def get(self, name: str) -> type[SttProvider]:
        providers = self.providers()
        if name not in providers:
            raise KeyError(self.unknown_message(name))
        return providers[name]

    def unknown_message(self, name: str) -> str:
        broken = self.broken()
        if name in broken:
            return f"provider {name!r} is installed but unusable: {broken[name]}"
        installed = ", ".join(self.providers()) or "none installed"
        close = difflib.get_close_matches(name, list(self.providers()), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"no installed provider named {name!r} (installed: {installed}; or {NONE!r} for no transcription){hint}"

    # ---------------------------------------------------------------- config

    def plan(self, stt: SttConfig) -> SttPlan:
        """Check stt.* against the installed providers; raise ConfigError listing every problem."""
        problems: list[ConfigProblem] = []
        warnings: list[str] = []
        providers = self.providers()
        if stt.provider == NONE:
            return SttPlan((), stt.language)
        wanted: list[tuple[str, str]] = [("stt.provider", stt.provider)]
        for i, name in enumerate(stt.fallback):
            if name == NONE:
                continue  # "none" among fallbacks adds nothing
            if name in (n for _, n in wanted):
                warnings.append(f"stt.fallback.{i}: {name} is already tried earlier; listed once")
                continue
            wanted.append((f"stt.fallback.{i}", name))
        sections = stt.provider_sections
        choices: list[ProviderChoice] = []
        for path, name in wanted:
            if name not in providers:
                problems.append(ConfigProblem(path, self.unknown_message(name)))
                continue
            cls = providers[name]
            if not cls.capabilities.supports_language(stt.language):
                langs = ", ".join(cls.capabilities.languages)
                problems.append(
                    ConfigProblem(
                        "stt.language", f"{stt.language!r} is not supported by {name} (it knows: {langs})"
                    )
                )
            options, errors = _validate_options(name, cls.config_model, sections.get(name, {}))
            problems += errors
            if options is not None:
                choices.append(ProviderChoice(name, cls, options))
        used = {n for _, n in wanted}
        for name, section in sections.items():
            if name in used:
                continue
            if name in providers:  # an installed provider kept for later: its options must still be right
                problems += _validate_options(name, providers[name].config_model, section)[1]
                continue
            close = difflib.get_close_matches(name, list(providers), n=1, cutoff=0.6)
            if close:
                problems.append(
                    ConfigProblem(
                        f"stt.{name}", f"no installed provider named {name!r}; did you mean {close[0]}?"
                    )
                )
            else:
                warnings.append(
                    f"stt.{name}: options for {name}, which is not installed, are ignored "
                    f"(installed: {', '.join(providers) or 'none'})"
                )
        if problems:
            raise ConfigError(problems)
        return SttPlan(tuple(choices), stt.language, tuple(warnings))


def _validate_options(
    name: str, model: type[ProviderConfig], section: Mapping[str, Any]
) -> tuple[ProviderConfig | None, list[ConfigProblem]]:
    try:
        return model.model_validate(_coerce_env_strings(model, section)), []
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            path = f"stt.{name}.{loc}" if loc else f"stt.{name}"
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(
                    str(err["loc"][-1]), list(model.model_fields), n=1, cutoff=0.6
                )
                msg = (
                    f"unknown option of {name}; did you mean {close[0]}?"
                    if close
                    else f"unknown option of {name}"
                )
                msg += f" (options: {', '.join(model.model_fields) or 'none'})"
            else:
                secret = any(h in loc.lower() for h in _SECRET_HINTS)
                shown = "***" if secret else repr(err.get("input"))[:80]
                msg = f"{err['msg'].removeprefix('Value error, ')} (got {shown})"
            problems.append(ConfigProblem(path, msg))
        return None, problems


def _coerce_env_strings(model: type[BaseModel], section: Mapping[str, Any]) -> dict[str, Any]:
    """Environment variables give strings: pydantic parses numbers and booleans from them, lists we split here
    ("a, b" or a YAML list "[a, b]"), as siprec.config does for its own list keys."""
    out = dict(section)
    for key, value in section.items():
        field = model.model_fields.get(key)
        if field is None or not isinstance(value, str):
            continue
        ann = field.annotation
        origins = {typing.get_origin(a) for a in (ann, *typing.get_args(ann))}
        if origins & {list, tuple, set, frozenset}:
            text = value.strip()
            if not text.startswith("["):
                out[key] = [p.strip() for p in text.split(",") if p.strip()]
                continue
            with contextlib.suppress(yaml.YAMLError):  # else the model reports the raw text
                out[key] = yaml.safe_load(text)
    return out
