"""Route declarations: one `RouteTable` per route module; each route carries its own OpenAPI description.

A route is declared once, with everything the server and the OpenAPI document need:

    routes = RouteTable("sessions", "Live recording sessions")

    @routes.get("/api/sessions", summary="List live sessions", access=Access.READ,
                query=SessionsQuery, responses={200: SessionList})
    async def list_sessions(request: web.Request) -> web.StreamResponse:
        ctx = api_context(request)
        q: SessionsQuery = request[QUERY]
        ...

The server (siprec.api.server) validates the declared `query` and `body` pydantic models before the handler
runs (400 VALIDATION_ERROR / INVALID_JSON in the error envelope; results in `request[QUERY]`/`request[BODY]`),
enforces `access` (siprec.api.auth), and builds /api/openapi.json from the same declarations, so the document
cannot drift from the routes. Responses are pydantic models (JSON) or `Reply(...)` for other content types.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel

if TYPE_CHECKING:
    from siprec.api.context import ApiContext

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# aiohttp keys under which the server leaves the validated inputs and the context.
QUERY: web.RequestKey[Any] = web.RequestKey("siprec.query")
BODY: web.RequestKey[Any] = web.RequestKey("siprec.body")
CONTEXT: web.AppKey[ApiContext] = web.AppKey("siprec.api_context")
ROUTES: web.AppKey[list[Route]] = web.AppKey("siprec.routes")  # every declared route of the app


def api_context(request: web.Request) -> ApiContext:
    """The ApiContext of the application serving `request`."""
    return request.app[CONTEXT]


class Access(StrEnum):
    """Who may call a route (enforced by siprec.api.auth, shown as `security` in the OpenAPI document)."""

    PUBLIC = "public"  # never asks for credentials (liveness, health, metrics, the OpenAPI document)
    READ = "read"  # credentials only when auth.require_auth_for_reads
    WRITE = "write"  # always credentials (auth.api_keys or a JWT); refused when none is configured
    PAUSE = "pause"  # pause_resume.require_auth: pause_resume.api_key, auth.api_keys or a JWT


@dataclass(frozen=True)
class Reply:
    """A documented non-JSON (or hand-written JSON schema) response."""

    description: str
    content_type: str = "application/json"
    schema: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # header name -> description


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    description: str
    tag: str
    access: Access
    query: type[BaseModel] | None
    body: type[BaseModel] | None
    body_required: bool
    responses: Mapping[int, type[BaseModel] | Reply]
    path_schemas: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # {name} -> JSON schema
    # Bodies the handler reads itself (YAML, audio, multipart), by content type: a pydantic model or a JSON schema.
    # Documented only; `body` is the JSON body the server validates before the handler.
    request_types: Mapping[str, type[BaseModel] | Mapping[str, Any]] = field(default_factory=dict)

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"\{([^}:]+)(?::[^}]*)?\}", self.path)

    @property
    def openapi_path(self) -> str:
        return re.sub(r"\{([^}:]+):[^}]*\}", r"{\1}", self.path)

    @property
    def models(self) -> list[type[BaseModel]]:
        found = [r for r in self.responses.values() if isinstance(r, type)]
        found += [m for m in self.request_types.values() if isinstance(m, type)]
        return [*found, *([self.body] if self.body is not None else [])]


class RouteTable:
    """The routes of one module. Decorate async handlers with `get`/`post`/`put`/`delete`/`route`."""

    def __init__(self, tag: str, description: str = "") -> None:
        self.tag = tag
        self.description = description
        self.routes: list[Route] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        responses: Mapping[int, type[BaseModel] | Reply],
        access: Access = Access.READ,
        query: type[BaseModel] | None = None,
        body: type[BaseModel] | None = None,
        body_required: bool = True,
        description: str | None = None,
        operation_id: str | None = None,
        path_schemas: Mapping[str, Mapping[str, Any]] | None = None,
        request_types: Mapping[str, type[BaseModel] | Mapping[str, Any]] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Declare a route. `path` uses aiohttp syntax ({name} or {name:regex}); `path_schemas` documents a path
        parameter more precisely than "a string" (e.g. {"leg": {"type": "string", "pattern": "^leg-[0-9]+$"}})."""
        if not any(200 <= status < 300 for status in responses):
            raise ValueError(f"{method} {path}: declare at least one 2xx response")

        def register(handler: Handler) -> Handler:
            self.routes.append(
                Route(
                    method=method.upper(),
                    path=path,
                    handler=handler,
                    operation_id=operation_id or handler.__name__,
                    summary=summary,
                    description=description if description is not None else (handler.__doc__ or "").strip(),
                    tag=self.tag,
                    access=access,
                    query=query,
                    body=body,
                    body_required=body_required,
                    responses=dict(responses),
                    path_schemas=dict(path_schemas or {}),
                    request_types=dict(request_types or {}),
                )
            )
            return handler

        return register

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kw)


def json_reply(model: BaseModel, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON answer from a response model (the shape the route declared)."""
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json", headers=headers
    )
