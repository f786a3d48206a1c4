"""build_app / ApiServer over a real socket: the error envelope for every failure, input validation, the Server
header, CORS, and the OpenAPI document generated from the declared routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import BaseModel, Field

from siprec import __version__
from siprec.api import openapi
from siprec.api.context import ApiContext
from siprec.api.errors import not_found
from siprec.api.routing import BODY, QUERY, Access, Reply, RouteTable, json_reply
from siprec.api.server import ApiServer, discover_route_tables
from siprec.config import config_from_mapping
from siprec.events.bus import EventBus


class NoSessions:
    sessions: tuple[()] = ()

    def session(self, call_id: str) -> None:
        return None


class Limit(BaseModel):
    limit: int = Field(10, ge=1, le=100)


class Thing(BaseModel):
    name: str = Field(min_length=1)
    size: int = 1


class ThingOut(BaseModel):
    """A thing."""

    name: str
    size: int
    limit: int


table = RouteTable("things")


@table.post(
    "/api/things", summary="make", access=Access.WRITE, query=Limit, body=Thing, responses={201: ThingOut}
)
async def make_thing(request: web.Request) -> web.StreamResponse:
    thing: Thing = request[BODY]
    return json_reply(ThingOut(name=thing.name, size=thing.size, limit=request[QUERY].limit), status=201)


@table.get("/api/things/{name}", summary="one", responses={200: ThingOut})
async def get_thing(request: web.Request) -> web.StreamResponse:
    raise not_found("THING_NOT_FOUND", "no such thing", name=request.match_info["name"])


@table.get("/api/boom", summary="fails", responses={200: Reply("never", "text/plain", {"type": "string"})})
async def boom(request: web.Request) -> web.StreamResponse:
    raise RuntimeError("secret internal detail")


def context(**config: Any) -> ApiContext:
    return ApiContext(config_from_mapping(config), NoSessions(), EventBus())  # type: ignore[arg-type]


@pytest.fixture
async def client() -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    ctx = context(auth={"api_keys": ["k"]}, http={"cors_origins": ["https://ui.example"]})
    server = ApiServer(ctx, tables=[table, openapi.routes], client_max_size=1024)
    await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            yield f"http://127.0.0.1:{server.port}", http
    finally:
        await server.stop()


async def envelope(resp: aiohttp.ClientResponse, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.headers["Server"] == f"siprec/{__version__}"
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    return body["error"]


async def test_aiohttp_errors_use_the_envelope(client: tuple[str, aiohttp.ClientSession]) -> None:
    base, http = client
    async with http.get(base + "/nowhere") as r:
        await envelope(r, 404, "NOT_FOUND")
    async with http.delete(base + "/api/things") as r:
        await envelope(r, 405, "METHOD_NOT_ALLOWED")
        assert r.headers["Allow"] == "POST"
    async with http.post(base + "/api/things", data=b"x" * 4096, headers={"X-API-Key": "k"}) as r:
        await envelope(r, 413, "PAYLOAD_TOO_LARGE")


async def test_unhandled_exception_is_500_without_detail(
    client: tuple[str, aiohttp.ClientSession], caplog: pytest.LogCaptureFixture
) -> None:
    base, http = client
    with caplog.at_level(logging.ERROR, "siprec.api"):
        async with http.get(base + "/api/boom") as r:
            err = await envelope(r, 500, "INTERNAL")
    assert "secret" not in str(err) and err["details"] == {}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == ["GET /api/boom failed"]


async def test_inputs_are_validated_before_the_handler(client: tuple[str, aiohttp.ClientSession]) -> None:
    base, http = client
    key = {"X-API-Key": "k"}
    async with http.post(base + "/api/things?limit=5", json={"name": "a"}, headers=key) as r:
        assert r.status == 201 and await r.json() == {"name": "a", "size": 1, "limit": 5}
    async with http.post(
        base + "/api/things", data=b"{nope", headers={**key, "Content-Type": "application/json"}
    ) as r:
        await envelope(r, 400, "INVALID_JSON")
    async with http.post(base + "/api/things", json={"name": ""}, headers=key) as r:
        err = await envelope(r, 400, "VALIDATION_ERROR")
        assert err["details"]["errors"][0]["location"] == ["body", "name"]
    async with http.post(base + "/api/things?limit=1000", json={"name": "a"}, headers=key) as r:
        err = await envelope(r, 400, "VALIDATION_ERROR")
        assert err["details"]["errors"][0]["location"] == ["query", "limit"]
    async with http.post(base + "/api/things", headers=key) as r:
        await envelope(r, 400, "BODY_REQUIRED")
    async with http.post(
        base + "/api/things", data=b"<a/>", headers={**key, "Content-Type": "application/xml"}
    ) as r:
        await envelope(r, 415, "UNSUPPORTED_MEDIA_TYPE")
    async with http.post(base + "/api/things", json={"name": "a"}) as r:
        await envelope(r, 401, "AUTH_REQUIRED")
        assert r.headers["WWW-Authenticate"].startswith("Bearer realm=")
    async with http.get(base + "/api/things/x") as r:
        err = await envelope(r, 404, "THING_NOT_FOUND")
        assert err["details"] == {"name": "x"}


async def test_cors(client: tuple[str, aiohttp.ClientSession]) -> None:
    base, http = client
    preflight = {"Origin": "https://ui.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "x-api-key, content-type"}  # fmt: skip
    async with http.options(base + "/api/things", headers=preflight) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "https://ui.example"
        assert "X-API-Key" in r.headers["Access-Control-Allow-Headers"]
        assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
        assert "POST" in r.headers["Access-Control-Allow-Methods"]
    async with http.get(base + "/api/things/x", headers={"Origin": "https://ui.example"}) as r:
        assert r.status == 404 and r.headers["Access-Control-Allow-Origin"] == "https://ui.example"
        assert "Origin" in r.headers["Vary"]
    async with http.get(base + "/api/things/x", headers={"Origin": "https://evil.example"}) as r:
        assert "Access-Control-Allow-Origin" not in r.headers
    async with http.options(
        base + "/api/things", headers={**preflight, "Origin": "https://evil.example"}
    ) as r:
        await envelope(r, 405, "METHOD_NOT_ALLOWED")


async def test_openapi_document_lists_the_declared_routes(client: tuple[str, aiohttp.ClientSession]) -> None:
    base, http = client
    async with http.get(base + "/api/openapi.json") as r:
        doc = await r.json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {"/api/things", "/api/things/{name}", "/api/boom", "/api/openapi.json"}
    make = doc["paths"]["/api/things"]["post"]
    assert make["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Thing"
    }
    assert make["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/ThingOut")
    assert {"400", "401", "413", "default"} <= set(make["responses"])
    assert make["security"] == [{"ApiKeyHeader": []}, {"ApiKeyQuery": []}]
    assert [p["name"] for p in make["parameters"]] == ["limit"]
    assert doc["paths"]["/api/things/{name}"]["get"]["security"] == []  # reads are open in this config
    assert "ErrorEnvelope" in doc["components"]["schemas"]


def test_two_models_with_one_name_are_refused() -> None:
    other = RouteTable("other")
    ThingOutClash = type("ThingOut", (BaseModel,), {"__annotations__": {"x": int}})

    @other.get("/api/clash", summary="clash", responses={200: ThingOutClash})
    async def clash(request: web.Request) -> web.StreamResponse:
        raise AssertionError

    ctx = context()
    with pytest.raises(ValueError, match="two API models are named ThingOut"):
        openapi.build_document([*table.routes, *other.routes], ctx.auth, "1")


def test_the_package_route_modules_are_discovered() -> None:
    tags = {t.tag for t in discover_route_tables()}
    assert {"health", "metrics", "sessions", "meta"} <= tags


async def test_what_the_http_parser_refuses_gets_the_envelope_too(
    client: tuple[str, aiohttp.ClientSession], caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    base, _ = client
    port = int(base.rsplit(":", 1)[1])
    for raw in (
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Bad: \x00\r\n\r\n",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with caplog.at_level(logging.INFO, "siprec.api"):
            writer.write(raw)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ", 2)[1] == b"400", head
        assert b"Content-Type: application/json" in head and f"Server: siprec/{__version__}".encode() in head
        assert b'"code": "BAD_REQUEST"' in body
    refused = [r for r in caplog.records if r.getMessage().startswith("bad HTTP request")]
    assert len(refused) == 2 and all(r.exc_info is None for r in refused)
