"""The one error envelope of the HTTP API: every non-2xx answer is `{"error": {"code", "message", "details"}}`.

Route handlers raise `ApiError` (or its shortcuts). `error_middleware` turns those, aiohttp's own HTTP errors (404
unknown path, 405 wrong method, 413 body too large...) and any unexpected exception into the envelope. An
unexpected exception is logged once with its stack trace and answered as 500 INTERNAL without any detail, so no
trace or internal name ever reaches a client. Expected bad input is logged once at INFO, without a trace.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

log = logging.getLogger("siprec.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Codes for aiohttp's own errors (unknown path, wrong method...): the HTTP reason in UPPER_SNAKE.
_REASON_CODES: dict[int, str] = {
    400: "BAD_REQUEST",
    401: "AUTH_REQUIRED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    408: "REQUEST_TIMEOUT",
    411: "LENGTH_REQUIRED",
    413: "PAYLOAD_TOO_LARGE",
    414: "URI_TOO_LONG",
    415: "UNSUPPORTED_MEDIA_TYPE",
    416: "RANGE_NOT_SATISFIABLE",
    422: "VALIDATION_ERROR",
    429: "TOO_MANY_REQUESTS",
    431: "HEADERS_TOO_LARGE",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
}
# Headers of an aiohttp HTTPException worth keeping on the envelope answer.
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After", "Content-Range", "Location")


def code_for_status(status: int) -> str:
    if status in _REASON_CODES:
        return _REASON_CODES[status]
    try:
        return HTTPStatus(status).phrase.upper().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "ERROR"


class ApiError(Exception):
    """An error answer: `status`, machine-readable `code`, human `message`, optional `details` and headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        quiet: bool = False,
    ) -> None:
        """`quiet`: an answer a poller gets again and again (/health while unhealthy), whose cause is logged
        elsewhere when it changes: logged at DEBUG only."""
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.headers = dict(headers or {})
        self.quiet = quiet

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, self.details, headers=self.headers)


def not_found(code: str, message: str, **details: Any) -> ApiError:
    return ApiError(404, code, message, details)


def bad_request(code: str, message: str, **details: Any) -> ApiError:
    return ApiError(400, code, message, details)


def unavailable(code: str, message: str, **details: Any) -> ApiError:
    return ApiError(503, code, message, details)


def error_response(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": dict(details or {})}}
    return web.json_response(body, status=status, headers=dict(headers or {}))


# --- OpenAPI shapes of the envelope --------------------------------------------------------------------------


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable error code, UPPER_SNAKE (e.g. SESSION_NOT_FOUND)")
    message: str = Field(description="Human-readable explanation")
    details: dict[str, Any] = Field(default_factory=dict, description="Context for the error (may be empty)")


class ErrorEnvelope(BaseModel):
    """Every non-2xx answer of the API."""

    error: ErrorBody


# --- middleware ----------------------------------------------------------------------------------------------


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:
        _log_client_error(request, err.status, err.code, err.message, quiet=err.quiet)
        return err.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and 2xx raised as exceptions pass through unchanged
        code = code_for_status(exc.status)
        message = exc.reason or HTTPStatus(exc.status).phrase
        if exc.status == 404:
            message = f"no route for {request.path}"
        elif exc.status == 405:
            message = f"method {request.method} not allowed on {request.path}"
        headers = {k: exc.headers[k] for k in _KEPT_HEADERS if k in exc.headers}
        _log_client_error(request, exc.status, code, message)
        return error_response(exc.status, code, message, headers=headers)
    except (ConnectionResetError, OSError) as exc:
        if (
            isinstance(exc, ConnectionResetError)
            or request.transport is None
            or request.transport.is_closing()
        ):
            raise  # the client went away: nothing to answer, nothing to log as a server fault
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "INTERNAL", "internal error")
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "INTERNAL", "internal error")


def _log_client_error(
    request: web.Request, status: int, code: str, message: str, *, quiet: bool = False
) -> None:
    level = logging.DEBUG if quiet else logging.WARNING if status >= 500 else logging.INFO
    log.log(level, "%s %s -> %d %s: %s", request.method, request.path, status, code, message)
