"""Logging set-up: one line per event, text or JSON lines, always able to carry the SIP Call-ID.

Modules log with `log_for_call(logger, call_id).info("...", extra={"peer": ...})`, or set `call_context(call_id)`
around a task so every record made inside it carries the Call-ID without passing it around.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from typing import IO, Any

from siprec.config import LogConfig

_current_call_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("siprec_call_id", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra=` and is printed as a field.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_OWN_HANDLER = "_siprec_handler"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and k != "call_id" and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CallIdFilter(logging.Filter):
    """Fills record.call_id from call_context() when the call did not pass one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "call_id", None) is None:
            record.call_id = _current_call_id.get()
        return True


class TextFormatter(logging.Formatter):
    """`2024-05-01T10:00:00.123Z INFO siprec.sip call_id=abc message peer=1.2.3.4` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        fields = "".join(f" {k}={_one_line(str(v))}" for k, v in _extras(record).items())
        call_id = getattr(record, "call_id", None) or "-"
        line = f"{_timestamp(record)} {record.levelname} {record.name} call_id={call_id} {_one_line(msg)}{fields}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)  # tracebacks stay readable for humans
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, call_id (when known) and every `extra=` field."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        call_id = getattr(record, "call_id", None)
        if call_id is not None:
            obj["call_id"] = call_id
        for key, value in _extras(record).items():
            obj.setdefault(key, value)
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str, ensure_ascii=False)


def _one_line(text: str) -> str:
    # Text from the network (SIP headers, URIs) must not forge extra log lines.
    return text.replace("\r", "\\r").replace("\n", "\\n")


def configure_logging(cfg: LogConfig, stream: IO[str] | None = None) -> None:
    """Install one handler on the root logger (replacing one installed earlier by this function)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _OWN_HANDLER, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if cfg.format == "json" else TextFormatter())
    handler.addFilter(CallIdFilter())
    setattr(handler, _OWN_HANDLER, True)
    root.addHandler(handler)
    root.setLevel(cfg.level)
    # aiohttp logs every request at INFO; keep access lines for DEBUG only.
    logging.getLogger("aiohttp.access").setLevel(logging.DEBUG if cfg.level == "DEBUG" else logging.WARNING)


class CallIdAdapter(logging.LoggerAdapter[logging.Logger]):
    """Logger bound to one call: adds call_id (and any fixed fields) while keeping per-call `extra=`."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


def log_for_call(logger: logging.Logger, call_id: str, **fields: Any) -> CallIdAdapter:
    """`log_for_call(log, call_id, peer="1.2.3.4").warning("bad SDP")` -> one line with call_id and peer."""
    return CallIdAdapter(logger, {"call_id": call_id, **fields})


@contextlib.contextmanager
def call_context(call_id: str) -> Iterator[None]:
    """Records made inside (same task or thread) carry this call_id unless they pass their own."""
    token = _current_call_id.set(call_id)
    try:
        yield
    finally:
        _current_call_id.reset(token)


def current_call_id() -> str | None:
    return _current_call_id.get()


__all__ = [
    "CallIdAdapter",
    "CallIdFilter",
    "JsonFormatter",
    "TextFormatter",
    "call_context",
    "configure_logging",
    "current_call_id",
    "log_for_call",
]
