"""The configuration over REST: GET /api/config, POST /api/config/validate, POST /api/config/reload,
GET /api/config/reload/status (CONTRACT.md). The reload mechanism is siprec.reload (ConfigReloader, on ctx.reloader).

- GET /api/config: the configuration in force (after hot reloads; restart-required changes are not in it), secrets
  shown as "***" and URL passwords hidden (Config.to_public_dict).
- POST /api/config/validate: the body is a whole config document, YAML or JSON (YAML reads both); it is checked as
  a reload would check it (environment overrides on top unless ?apply_env=false) and compared with the running
  config. Never touches anything. An invalid document is a successful check: 200 with valid false and every
  problem {path, message, env_var}; an empty document is the defaults, as an empty config file is. 4xx only
  when no document is sent (400 BODY_REQUIRED: no body, no document type), for another content type (415) and
  for bytes that are not UTF-8 (400 INVALID_ENCODING).
- POST /api/config/reload: re-reads the server's config file and environment and applies the hot keys. 200 with
  what was applied and what waits for a restart; 422 CONFIG_INVALID (nothing changed) with every problem in
  details.problems; 500 CONFIG_APPLY_FAILED when a component refused the change (everything put back).
- GET /api/config/reload/status: the last attempt (from the API or SIGHUP), the keys still waiting for a restart,
  and what a change of each key does now (live, applied, restart).
Without a reloader wired (ctx.reloader None) the two reload routes answer 503 RELOAD_UNAVAILABLE.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, RootModel

from siprec.api.context import ApiContext
from siprec.api.errors import ApiError, unavailable
from siprec.api.routing import QUERY, Access, RouteTable, api_context, json_reply
from siprec.config import Config, ConfigProblem
from siprec.recording.manifest import iso_time
from siprec.reload import ConfigReloader, KeyChange, KeyMode, ReloadOutcome

routes = RouteTable("config", "The running configuration, its validation and hot reload")

# Content types a config document may come as (YAML is a superset of JSON: one parser reads both).
DOCUMENT_TYPES = frozenset(
    {
        "application/json",
        "application/yaml",
        "application/x-yaml",
        "text/yaml",
        "text/x-yaml",
        "text/plain",
        "application/octet-stream",
    }
)
ModeName = Literal["live", "applied", "restart"]
# A YAML or JSON document is any value to its parser (not an object of sections: reported as a problem, 200).
_PARSED = {"description": "A whole config: an object of sections (sip, rtp, recording...)"}
DOCUMENT_BODIES = {
    "application/yaml": _PARSED,
    "application/json": _PARSED,
    "text/plain": {"type": "string", "description": "A whole config file, YAML or JSON text"},
}


# --- shapes ----------------------------------------------------------------------------------------------------


class PublicConfig(RootModel[Config]):
    """The configuration in force, secrets redacted ("***")."""


class ConfigValidateQuery(BaseModel):
    apply_env: bool = Field(
        True, description="Apply the server's SIPREC__* environment overrides on top, as a reload would"
    )


class ConfigProblemItem(BaseModel):
    path: str = Field(description="Dotted key (sip.udp_port), or the document/file for a parse error")
    message: str
    env_var: str | None = Field(None, description="The environment variable that set the value, if one did")


class ConfigKeyChange(BaseModel):
    key: str = Field(description="Dotted key, e.g. limits.max_sessions")
    mode: ModeName = Field(
        description="live: read at each use, in force at once; applied: handed to its component by an "
        "applier; restart: takes effect at the next start"
    )
    old: Any = Field(description="Value in force (secrets as ***)")
    new: Any = Field(description="Value read (secrets as ***)")
    why: str = Field(description="Who reads the key, or why it needs a restart")


class ConfigValidation(BaseModel):
    """The result of checking a config document (nothing running is changed)."""

    valid: bool
    problems: list[ConfigProblemItem] = Field(description="Every problem found (empty when valid)")
    changes: list[ConfigKeyChange] = Field(
        description="Keys that differ from the running config (empty when invalid)"
    )
    hot: list[str] = Field(description="Changed keys a reload would apply at once")
    restart_required: list[str] = Field(description="Changed keys a reload would leave for the next start")
    unchanged: int = Field(description="Keys equal to the running config")


class ConfigReloadReport(BaseModel):
    """One reload attempt."""

    result: Literal["applied", "no_changes", "restart_required", "invalid", "failed"]
    trigger: str = Field(description="api or sighup")
    at: str = Field(description="RFC 3339 UTC time of the attempt")
    source: str | None = Field(description="The config file read (null: defaults and environment only)")
    applied: list[str] = Field(description="Keys now in force")
    restart_required: list[str] = Field(description="Changed keys that take effect at the next start")
    unchanged: int
    changes: list[ConfigKeyChange]
    problems: list[ConfigProblemItem] = Field(description="Why the config was refused (result invalid)")
    error: str | None = Field(description="Why applying failed (result failed; everything was put back)")
    appliers: list[str] = Field(description="Components' appliers that ran")


class ConfigReloadStatus(BaseModel):
    """The hot-reload state of the server."""

    source: str | None
    reloads: int = Field(description="Attempts since start (API and SIGHUP)")
    last_attempt: ConfigReloadReport | None
    last_applied_at: str | None = Field(description="RFC 3339 UTC time changes were last applied")
    pending_restart: list[str] = Field(
        description="Keys changed in the config whose new value needs a restart (as of the last valid read)"
    )
    appliers: list[str] = Field(description="Registered appliers")
    keys: dict[str, ModeName] = Field(description="Every key with what a change of it does now")


# --- views -----------------------------------------------------------------------------------------------------


def _problem(p: ConfigProblem) -> ConfigProblemItem:
    return ConfigProblemItem(path=p.path, message=p.message, env_var=p.env_var)


def _change(c: KeyChange) -> ConfigKeyChange:
    return ConfigKeyChange(key=c.key, mode=c.mode.value, old=c.old, new=c.new, why=c.why)


def reload_report(outcome: ReloadOutcome) -> ConfigReloadReport:
    return ConfigReloadReport(
        result=outcome.result,
        trigger=outcome.trigger,
        at=iso_time(outcome.at) or "",
        source=outcome.source,
        applied=outcome.applied,
        restart_required=outcome.restart_required,
        unchanged=outcome.unchanged,
        changes=[_change(c) for c in outcome.changes],
        problems=[_problem(p) for p in outcome.problems],
        error=outcome.error,
        appliers=list(outcome.appliers),
    )


def _reloader(ctx: ApiContext) -> ConfigReloader:
    if ctx.reloader is None:
        raise unavailable("RELOAD_UNAVAILABLE", "this server has no config reloader wired")
    return ctx.reloader


async def _document(request: web.Request) -> str:
    ctype = request.content_type
    if ctype not in DOCUMENT_TYPES:
        raise ApiError(
            415, "UNSUPPORTED_MEDIA_TYPE", f"expected a YAML or JSON config document, got {ctype}",
            {"accepted": sorted(DOCUMENT_TYPES)},
        )  # fmt: skip
    raw = await request.read()  # over client_max_size -> 413, enveloped
    if not raw and ctype == "application/octet-stream":  # nothing sent (that is the type of no type)
        raise ApiError(400, "BODY_REQUIRED", "send a config document (YAML or JSON) with its Content-Type")
    try:  # an empty document (with its type) is the defaults, as an empty file is
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, "INVALID_ENCODING", "the config document is not UTF-8", {"reason": str(exc)}
        ) from None


# --- routes ----------------------------------------------------------------------------------------------------


@routes.get(
    "/api/config", summary="The configuration in force (secrets redacted)", responses={200: PublicConfig}
)
async def get_config(request: web.Request) -> web.StreamResponse:
    ctx = api_context(request)
    return web.json_response(ctx.config.to_public_dict())


@routes.post(
    "/api/config/validate", summary="Check a whole config document (YAML or JSON body) without applying it",
    access=Access.WRITE, query=ConfigValidateQuery, request_types=DOCUMENT_BODIES, responses={200: ConfigValidation},
)  # fmt: skip
async def validate_config(request: web.Request) -> web.StreamResponse:
    ctx = api_context(request)
    query: ConfigValidateQuery = request[QUERY]
    text = await _document(request)
    # without a reloader nothing is hot: the modes say so (no applier is registered on a bare one)
    reloader = ctx.reloader or ConfigReloader(None, ctx.config)
    checked = reloader.validate_text(text, apply_env=query.apply_env)
    changes = [_change(c) for c in checked.changes]
    return json_reply(
        ConfigValidation(
            valid=checked.valid,
            problems=[_problem(p) for p in checked.problems],
            changes=changes,
            hot=[c.key for c in changes if c.mode != KeyMode.RESTART],
            restart_required=[c.key for c in changes if c.mode == KeyMode.RESTART],
            unchanged=checked.unchanged,
        )
    )


@routes.post(
    "/api/config/reload", summary="Re-read the config file and environment; apply the hot keys",
    access=Access.WRITE, responses={200: ConfigReloadReport},
)  # fmt: skip
async def reload_config(request: web.Request) -> web.StreamResponse:
    ctx = api_context(request)
    outcome = _reloader(ctx).reload("api")
    report = reload_report(outcome)
    if outcome.result == "invalid":
        raise ApiError(
            422, "CONFIG_INVALID", "the config was not reloaded: it has problems (nothing changed)",
            {"source": outcome.source, "problems": [p.model_dump() for p in report.problems]},
        )  # fmt: skip
    if outcome.result == "failed":
        raise ApiError(
            500, "CONFIG_APPLY_FAILED", "a component refused the new config; everything was put back",
            {"source": outcome.source, "error": outcome.error},
        )  # fmt: skip
    return json_reply(report)


@routes.get(
    "/api/config/reload/status", summary="The last reload attempt and the keys waiting for a restart",
    responses={200: ConfigReloadStatus},
)  # fmt: skip
async def reload_status(request: web.Request) -> web.StreamResponse:
    reloader = _reloader(api_context(request))
    last = reloader.last
    return json_reply(
        ConfigReloadStatus(
            source=reloader.source,
            reloads=reloader.reloads,
            last_attempt=reload_report(last) if last is not None else None,
            last_applied_at=iso_time(reloader.last_applied_at),
            pending_restart=list(reloader.pending_restart),
            appliers=reloader.applier_names,
            keys={key: mode.value for key, mode in reloader.key_modes().items()},
        )
    )
