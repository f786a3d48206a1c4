"""Loading the configuration: YAML, then environment overrides, then validation, with every problem reported.

Precedence (lowest first): model defaults < YAML file < IZI SIPREC alias variables < SIPREC__SECTION__KEY variables.
Every problem is collected and reported together (ConfigError.problems), each with its dotted key path.
"""

from __future__ import annotations

import copy
import os
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from siprec.config.model import REDACTED, Config, redact_url, unknown_key_message

ENV_PREFIX = "SIPREC__"

# Variable names documented by the IZI SIPREC API reference, mapped onto our keys.
ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "RECORDING_COMBINE_LEGS": ("recording", "combine_legs"),
    "ANALYTICS_ENABLED": ("analytics", "enabled"),
    "ENABLE_REALTIME_AMQP": ("amqp", "enabled"),
    "AMQP_URL": ("amqp", "url"),
    "REALTIME_EXCHANGE_NAME": ("amqp", "exchange"),
    "PUBLISH_PARTIAL_TRANSCRIPTS": ("amqp", "publish_partial_transcripts"),
    "PUBLISH_FINAL_TRANSCRIPTS": ("amqp", "publish_final_transcripts"),
    "PUBLISH_SENTIMENT_UPDATES": ("amqp", "publish_sentiment_updates"),
    "PUBLISH_KEYWORD_DETECTIONS": ("amqp", "publish_keyword_detections"),
    "PUBLISH_SPEAKER_CHANGES": ("amqp", "publish_speaker_changes"),
}


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class ConfigProblem:
    path: str  # dotted key path ("sip.udp_port"), or the file name for file-level problems
    message: str
    env_var: str | None = None  # the variable that set the value, when it came from the environment

    def __str__(self) -> str:
        origin = f" (from {self.env_var})" if self.env_var else ""
        return f"{self.path}: {self.message}{origin}"


class ConfigError(Exception):
    """Invalid configuration: every problem found, not only the first."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# --------------------------------------------------------------------------- loading


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path) -> dict[str, Any]:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(name, "config file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(name, f"cannot read config file: {exc}")]) from None
    return parse_config_text(text, name)


def parse_config_text(text: str, name: str = "body") -> dict[str, Any]:
    """A config document (YAML, or JSON which YAML reads too) as a mapping; ConfigError naming `name` (the file,
    or where the text came from) if not one. Duplicate keys are refused."""
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem(name, f"invalid YAML: {where}{problem}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(name, "top level must be a mapping of sections (sip:, rtp:, ...)")])
    return data


def _field_at(path: tuple[str, ...]) -> tuple[type[BaseModel] | None, Any, str | None]:
    """Walk Config along path: (owning model, field annotation, unknown-key hint or None if known)."""
    model: type[BaseModel] = Config
    ann: Any = Config
    for i, key in enumerate(path):
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None, None, "unknown key"
        model = ann
        if key not in model.model_fields:
            if model.model_config.get("extra") == "allow":
                return model, str, None  # free-form section (stt.<provider>.*): strings, parsed by the plugin's model
            return model, None, unknown_key_message(key, model)
        ann = model.model_fields[key].annotation
        if i == len(path) - 1:
            return model, ann, None
    return model, ann, None


def _parse_env_value(raw: str, ann: Any) -> Any:
    """Strings stay verbatim (YAML would turn "no" into False); other types are parsed as YAML scalars/lists."""
    if ann in (str, Path):
        return raw
    if typing.get_origin(ann) is list and not raw.lstrip().startswith("["):
        return raw  # comma-separated; the field splits it
    try:
        return yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        return raw  # let the field validator report it with the raw text


def _env_overrides(env: Mapping[str, str]) -> tuple[list[tuple[tuple[str, ...], Any, str]], list[ConfigProblem]]:
    """(path, value, variable) for each alias then each SIPREC__ variable, plus problems with unknown names."""
    aliases: list[tuple[tuple[str, ...], Any, str]] = []
    direct: list[tuple[tuple[str, ...], Any, str]] = []
    problems: list[ConfigProblem] = []
    for name, raw in sorted(env.items()):
        upper = name.upper()
        if upper in ENV_ALIASES:
            path = ENV_ALIASES[upper]
            aliases.append((path, _parse_env_value(raw, _field_at(path)[1]), name))
            continue
        if not upper.startswith(ENV_PREFIX):
            continue
        parts = tuple(p.lower() for p in name[len(ENV_PREFIX):].split("__"))
        if not all(parts):
            problems.append(ConfigProblem(name, f"expected {ENV_PREFIX}<SECTION>__<KEY> with non-empty parts"))
            continue
        _, ann, unknown = _field_at(parts)
        if unknown:
            problems.append(ConfigProblem(".".join(parts), unknown, name))
            continue
        direct.append((parts, _parse_env_value(raw, ann), name))
    return aliases + direct, problems


def _set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}  # a scalar/null here is replaced; the override wins
            node[key] = child
        node = child
    node[path[-1]] = value


def _show_input(path: str, value: Any) -> str:
    """The offending value for an error message, never a secret."""
    key = ".".join(path.split(".")[:2])  # "auth.api_keys.0" -> "auth.api_keys"
    if key in Config.SECRET_PATHS:
        return REDACTED
    if key in Config.URL_PATHS and isinstance(value, str):
        value = redact_url(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _iter_problems(exc: ValidationError, origins: dict[tuple[str, ...], str]) -> Iterator[ConfigProblem]:
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        path = ".".join(loc) or "config"
        env_var = next((origins[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in origins), None)
        kind, msg = err["type"], err["msg"]
        if kind == "extra_forbidden":
            owner = _field_at(loc[:-1])[1] if len(loc) > 1 else Config
            message = unknown_key_message(loc[-1], owner) if isinstance(owner, type) else "unknown key"
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            message = f"expected a mapping of keys (got {_show_input(path, err['input'])})"
        elif kind == "cross_field":
            message = msg
        else:
            msg = msg.removeprefix("Value error, ")
            message = f"{msg} (got {_show_input(path, err['input'])})"
        yield ConfigProblem(path, message, env_var)


def _check_files(config: Config) -> list[ConfigProblem]:
    """Files the server will open at start: better named by check-config than by a traceback."""
    if not config.sip.tls_port:
        return []
    return [
        ConfigProblem(f"sip.{key}", f"file not found: {getattr(config.sip, key)}")
        for key in ("tls_cert", "tls_key")
        if not Path(getattr(config.sip, key)).is_file()
    ]


def config_from_mapping(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Validate already-parsed YAML (e.g. a body posted to /api/config/validate), env overrides applied on top."""
    merged: dict[str, Any] = copy.deepcopy(dict(data))
    overrides, problems = _env_overrides(env or {})
    origins: dict[tuple[str, ...], str] = {}
    for key_path, value, name in overrides:
        _set_path(merged, key_path, value)
        origins[key_path] = name
    config: Config | None = None
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        problems.extend(_iter_problems(exc, origins))
    if config is not None and not problems:
        problems.extend(_check_files(config))
    if problems or config is None:
        raise ConfigError(problems)
    return config


def load_config(path: str | Path | None, env: Mapping[str, str] = os.environ) -> Config:
    """Load YAML (None: defaults only), apply env aliases then SIPREC__ overrides, validate; raise ConfigError."""
    data: dict[str, Any] = _read_yaml(Path(path)) if path is not None else {}
    config = config_from_mapping(data, env)
    config._source = Path(path) if path is not None else None
    return config
