"""The HTTP side server: `build_app(ctx)` makes the aiohttp application, `ApiServer` runs it on a socket.

How a route module plugs in (nothing to edit here):

1. Create a module in the siprec/api/ package (e.g. siprec/api/recordings.py) with a module-level
   `routes = RouteTable("<tag>", "<description>")` (siprec.api.routing) and declare each handler on it:

       @routes.get("/api/recordings/{call_id}", summary="One recording's manifest", access=Access.READ,
                   responses={200: Manifest}, path_schemas={"call_id": {"type": "string"}})
       async def get_recording(request: web.Request) -> web.StreamResponse:
           ctx = api_context(request)                       # ApiContext: config, sessions, bus, components...
           raise not_found("RECORDING_NOT_FOUND", "...")    # siprec.api.errors: the one error envelope
           return json_reply(Manifest(...))

   `build_app` imports every module of the package and mounts every `routes` table it finds, so the module
   is live and in /api/openapi.json as soon as it exists.
2. Inputs: declare `query=<pydantic model>` and/or `body=<pydantic model>`; they are validated before the
   handler runs (400 VALIDATION_ERROR / INVALID_JSON) and handed over as `request[QUERY]` / `request[BODY]`.
   Path parameters are in `request.match_info`.
3. Outputs: every 2xx is declared in `responses` (a pydantic model for JSON, `Reply(...)` for other content
   types such as audio/wav or text/plain). Error answers need no declaration: the envelope (ErrorEnvelope) is
   documented for every route, 401 where the route asks for credentials, 400/404/413 where inputs exist.
4. Access: `access=Access.PUBLIC | READ | WRITE | PAUSE` (siprec.api.auth explains each); the check runs before
   the handler, so a handler never sees an unauthorised request.
5. Model class names are the OpenAPI component names: keep them unique across modules (the build fails loudly
   on a clash).

Every answer carries `Server: siprec/<version>`; CORS follows http.cors_origins (preflight answered here).
"""

from __future__ import annotations

import importlib
import json
import logging
import pkgutil
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

import siprec
import siprec.api
from siprec.api.context import ApiContext
from siprec.api.errors import ApiError, Handler, code_for_status, error_middleware, error_response
from siprec.api.healthchecks import disabled
from siprec.api.metrics import websocket_source
from siprec.api.routing import BODY, CONTEXT, QUERY, ROUTES, Route, RouteTable

__all__ = ["ApiContext", "ApiServer", "build_app", "discover_route_tables", "ROUTES"]

log = logging.getLogger("siprec.api")

MAX_BODY_BYTES = 1024 * 1024
CORS_ALLOW_HEADERS = ("Authorization", "Content-Type", "X-API-Key", "Range")
CORS_EXPOSE_HEADERS = (
    "Content-Range",
    "Content-Length",
    "Accept-Ranges",
    "Content-Disposition",
    "ETag",
    "Last-Modified",
    "WWW-Authenticate",
)
CORS_MAX_AGE_S = 600


def discover_route_tables() -> list[RouteTable]:
    """The `routes` RouteTable of every module of the siprec.api package, in module-name order."""
    tables: list[RouteTable] = []
    for info in sorted(pkgutil.iter_modules(siprec.api.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"siprec.api.{info.name}")
        table = getattr(module, "routes", None)
        if isinstance(table, RouteTable):
            tables.append(table)
    return tables


def build_app(
    ctx: ApiContext, *, tables: Iterable[RouteTable] | None = None, client_max_size: int = MAX_BODY_BYTES
) -> web.Application:
    """The aiohttp application serving every route table (default: all of siprec.api) and the WS hub."""
    app = web.Application(
        middlewares=[_cors_middleware(ctx), error_middleware], client_max_size=client_max_size
    )
    app[CONTEXT] = ctx
    routes: list[Route] = []
    for table in discover_route_tables() if tables is None else tables:
        for route in table.routes:
            app.router.add_route(route.method, route.path, _guarded(route), name=route.operation_id)
            routes.append(route)
    app[ROUTES] = routes
    if ctx.ws_hub is not None:
        ctx.ws_hub.add_routes(app)
    server_header = f"siprec/{ctx.version}"

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = server_header
        _cors_headers(ctx, request, response)

    app.on_response_prepare.append(on_prepare)
    return app


def _guarded(route: Route) -> Handler:
    """The route's handler behind its access check and input validation."""

    async def handler(request: web.Request) -> web.StreamResponse:
        ctx = request.app[CONTEXT]
        ctx.auth.check(request, route.access)
        if route.query is not None:
            request[QUERY] = _validate(route.query, {k: request.query[k] for k in request.query}, "query")
        if route.body is not None:
            request[BODY] = await _read_body(request, route.body, route.body_required)
        return await route.handler(request)

    handler.__name__ = route.operation_id
    return handler


async def _read_body(request: web.Request, model: type[BaseModel], required: bool) -> BaseModel:
    raw = await request.read()  # over client_max_size -> 413 from aiohttp, enveloped by error_middleware
    if not raw.strip():
        if required:
            raise ApiError(400, "BODY_REQUIRED", "a JSON request body is required")
        return _validate(model, {}, "body", strict=True)
    ctype = request.content_type
    if ctype not in ("application/json", "application/octet-stream", "text/plain") and not ctype.endswith(
        "+json"
    ):
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", f"expected application/json, got {ctype}")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(
            400, "INVALID_JSON", "the request body is not valid JSON", {"reason": str(exc)}
        ) from None
    return _validate(model, data, "body", strict=True)


def _validate(model: type[BaseModel], data: Any, where: str, *, strict: bool = False) -> BaseModel:
    """Bodies are JSON and validated strictly (0 is not false, "1" is not 1); query strings are text, so
    their values are converted."""
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as exc:
        errors = [
            {"location": [where, *map(str, e["loc"])], "message": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ApiError(400, "VALIDATION_ERROR", f"invalid {where}", {"errors": errors}) from None


# --- CORS ------------------------------------------------------------------------------------------------------


def _allowed_origin(ctx: ApiContext, request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    allowed = ctx.config.http.cors_origins
    if not origin or not allowed:
        return None
    if "*" in allowed:
        return "*"
    return origin if origin in allowed else None


def _cors_middleware(ctx: ApiContext) -> Any:
    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            origin = _allowed_origin(ctx, request)
            if origin is not None:
                return web.Response(
                    status=204,
                    headers={
                        "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
                        "Access-Control-Allow-Headers": ", ".join(CORS_ALLOW_HEADERS),
                        "Access-Control-Max-Age": str(CORS_MAX_AGE_S),
                    },
                )  # Allow-Origin and Vary are added by on_response_prepare, like on every answer
        return await handler(request)

    return cors


def _cors_headers(ctx: ApiContext, request: web.Request, response: web.StreamResponse) -> None:
    if not ctx.config.http.cors_origins:
        return
    response.headers.add("Vary", "Origin")
    origin = _allowed_origin(ctx, request)
    if origin is None:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    if request.method != "OPTIONS":
        response.headers["Access-Control-Expose-Headers"] = ", ".join(CORS_EXPOSE_HEADERS)


# --- running ---------------------------------------------------------------------------------------------------


class ApiServer:
    """Serves build_app(ctx) on host:port (port 0 = a free port, read back from `port`)."""

    def __init__(
        self,
        ctx: ApiContext,
        *,
        tables: Iterable[RouteTable] | None = None,
        client_max_size: int = MAX_BODY_BYTES,
    ) -> None:
        self.ctx = ctx
        self.tables = tables
        self.client_max_size = client_max_size
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        self._register_ws_hub()
        self.app = build_app(self.ctx, tables=self.tables, client_max_size=self.client_max_size)
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await runner.setup()
        if type(runner.server) is web.Server:
            runner.server.__class__ = _EnvelopeServer  # protocol errors answered with the envelope too
        try:
            site = web.TCPSite(runner, host, port, reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = _bound_port(runner.addresses)
        log.info("HTTP API on %s:%s", host, self.port)

    def _register_ws_hub(self) -> None:
        ctx, hub = self.ctx, self.ctx.ws_hub
        if hub is None:
            if "websocket" not in ctx.health.names:
                ctx.health.add("websocket", disabled("no WebSocket hub is wired"))
            return
        ctx.health.add("websocket", hub.health)
        ctx.metrics.add_source("websocket", websocket_source(hub.stats))

    async def stop(self) -> None:
        if self._runner is None:
            return
        hub = self.ctx.ws_hub
        if hub is not None:
            await hub.close()  # WebSocket clients told first, or cleanup waits for them
        await self._runner.cleanup()
        self._runner = None


class _EnvelopeRequestHandler(web.RequestHandler):
    """Answers what aiohttp's HTTP parser refuses (bad header bytes, a request line over 8 KiB...) with the error
    envelope and the Server header, logged once without a trace; such a request never reaches the middlewares."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            log.error("HTTP request from %s failed", request.remote, exc_info=exc)
            text = "internal error"
        else:
            text = (getattr(exc, "message", None) or message or HTTPStatus(status).phrase).splitlines()[0][
                :200
            ]
            log.info("bad HTTP request from %s: %d %s", request.remote, status, text)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started: the connection is dropped")
        response = error_response(status, code_for_status(status), text)
        response.headers["Server"] = f"siprec/{siprec.__version__}"
        response.force_close()
        return response


class _EnvelopeServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        return _EnvelopeRequestHandler(self, loop=self._loop, **self._kwargs)


def _bound_port(addresses: list[Any]) -> int | None:
    for address in addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None
