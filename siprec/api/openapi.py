"""GET /api/openapi.json: the OpenAPI 3.1 document, generated from the declared routes of the running app.

Schemas come from the routes' pydantic models (JSON Schema 2020-12, which OpenAPI 3.1 uses as is); security
follows the running configuration (a read route lists credentials only when auth.require_auth_for_reads).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from siprec.api.auth import API_KEY_HEADER, API_KEY_QUERY, Authenticator
from siprec.api.errors import ErrorEnvelope
from siprec.api.routing import ROUTES, Access, Reply, Route, RouteTable, api_context

routes = RouteTable("meta", "The API description")

# One document per application, built on first use; built again when a config reload changed what the routes
# ask for (the security requirements), since the routes themselves never change while the app runs.
_DOCUMENTS: weakref.WeakKeyDictionary[web.Application, tuple[tuple[Any, ...], dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)
_REF = "#/components/schemas/{model}"
_ENVELOPE = {"$ref": _REF.format(model="ErrorEnvelope")}
_AUTO_ERRORS = {
    400: "Invalid input (VALIDATION_ERROR, INVALID_JSON...)",
    401: "Credentials missing or invalid",
    404: "Not found",
    413: "Request body too large",
}


@routes.get(
    "/api/openapi.json",
    summary="The OpenAPI document of this server",
    access=Access.PUBLIC,
    responses={200: Reply("OpenAPI 3.1 document", schema={"type": "object"})},
)
async def openapi_document(request: web.Request) -> web.StreamResponse:
    app = request.app
    ctx = api_context(request)
    key = tuple(tuple(ctx.auth.schemes(access)) for access in Access)
    cached = _DOCUMENTS.get(app)
    if cached is None or cached[0] != key:
        cached = _DOCUMENTS[app] = (key, build_document(app[ROUTES], ctx.auth, ctx.version))
    return web.json_response(cached[1])


def build_document(all_routes: Iterable[Route], auth: Authenticator, version: str) -> dict[str, Any]:
    route_list = sorted(all_routes, key=lambda r: (r.openapi_path, r.method))
    schemas = _component_schemas(route_list)
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, None] = {}
    for route in route_list:
        paths.setdefault(route.openapi_path, {})[route.method.lower()] = _operation(route, auth, schemas)
        tags[route.tag] = None
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "SIPREC recording server API",
            "version": version,
            "description": "Health, metrics, live sessions, pause/resume and recordings. Every non-2xx answer is "
            'the error envelope {"error": {"code", "message", "details"}}.',
        },
        "tags": [{"name": t} for t in tags],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER},
                "ApiKeyQuery": {"type": "apiKey", "in": "query", "name": API_KEY_QUERY},
                "BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    }


def _component_schemas(route_list: list[Route]) -> dict[str, Any]:
    models: dict[tuple[type[BaseModel], Literal["validation", "serialization"]], None] = {
        (ErrorEnvelope, "serialization"): None
    }
    for route in route_list:
        for reply in route.responses.values():
            if isinstance(reply, type):
                models[(reply, "serialization")] = None
        for model in (route.body, route.query, *route.request_types.values()):
            if isinstance(model, type):
                models[(model, "validation")] = None
    names: dict[str, type[BaseModel]] = {}
    for model, _ in models:
        other = names.setdefault(model.__name__, model)
        if other is not model:
            raise ValueError(
                f"two API models are named {model.__name__}: {other.__module__}, {model.__module__}"
            )
    _, top = models_json_schema(list(models), ref_template=_REF)
    return dict(top.get("$defs", {}))


def _operation(route: Route, auth: Authenticator, schemas: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
    }
    if route.description:
        op["description"] = route.description
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": dict(route.path_schemas.get(name, {"type": "string", "minLength": 1})),
        }
        for name in route.path_params
    ]
    if route.query is not None:
        properties = schemas[route.query.__name__].get("properties", {})
        for name, info in route.query.model_fields.items():
            key = info.alias or name
            schema = _not_null(dict(properties.get(key, {})))
            param: dict[str, Any] = {
                "name": key,
                "in": "query",
                "required": info.is_required(),
                "schema": schema,
            }
            if info.description:
                param["description"] = info.description
            parameters.append(param)
    if parameters:
        op["parameters"] = parameters
    if route.body is not None:
        op["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=route.body.__name__)}}},
        }
    elif route.request_types:
        op["requestBody"] = {
            "required": True,
            "content": {
                ctype: {"schema": {"$ref": _REF.format(model=s.__name__)} if isinstance(s, type) else dict(s)}
                for ctype, s in route.request_types.items()
            },
        }
    has_body = route.body is not None or bool(route.request_types)
    responses: dict[str, Any] = {}
    for status, reply in sorted(route.responses.items()):
        responses[str(status)] = _response(reply)
    schemes = auth.schemes(route.access)
    automatic = []
    if parameters or has_body:
        automatic.append(400)
    if schemes:
        automatic.append(401)
    if route.path_params:
        automatic.append(404)
    if has_body:
        automatic.append(413)
    for status in automatic:
        responses.setdefault(str(status), _error(_AUTO_ERRORS[status], auth if status == 401 else None))
    responses["default"] = _error("Error (any other status)")
    op["responses"] = responses
    op["security"] = [{name: []} for name in schemes]
    return op


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is text or absent, never JSON null: drop pydantic's null branch of an optional one."""
    branches = schema.get("anyOf")
    if not branches:
        return schema
    kept = [b for b in branches if b != {"type": "null"}]
    rest = {k: v for k, v in schema.items() if k != "anyOf" and not (k == "default" and v is None)}
    return {**kept[0], **rest} if len(kept) == 1 else {**rest, "anyOf": kept}


def _response(reply: type[BaseModel] | Reply) -> dict[str, Any]:
    if isinstance(reply, Reply):
        out: dict[str, Any] = {"description": reply.description}
        if reply.content_type:
            out["content"] = {reply.content_type: {"schema": dict(reply.schema)}}
        if reply.headers:
            out["headers"] = {
                h: {"description": d, "schema": {"type": "string"}} for h, d in reply.headers.items()
            }
        return out
    doc = (reply.__doc__ or reply.__name__).strip().splitlines()[0]
    return {
        "description": doc,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=reply.__name__)}}},
    }


def _error(description: str, auth: Authenticator | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": _ENVELOPE}}}
    if auth is not None:
        out["headers"] = {
            "WWW-Authenticate": {"description": "The accepted schemes", "schema": {"type": "string"}}
        }
    return out
