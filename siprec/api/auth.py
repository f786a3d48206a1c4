"""Who may call what: API keys (X-API-Key header or ?api_key=) and JWT bearer tokens (HS256 or RS256, pyjwt).

Access levels (siprec.api.routing.Access):
- PUBLIC: never asks.
- READ:   asks only when auth.require_auth_for_reads.
- WRITE:  always asks; with no credential configured at all it is refused (fail closed, 401 with details).
- PAUSE:  asks when pause_resume.require_auth; pause_resume.api_key, any auth.api_keys key or a JWT is accepted.

A JWT is accepted when its signature verifies with auth.jwt_secret (HS*) or the PEM public key in
auth.jwt_public_key_file (RS*/ES*/PS*), with one of auth.jwt_algorithms (default: HS256 when a secret is set,
RS256 when a public key is set), `exp`/`nbf` checked, and `aud`/`iss` when auth.jwt_audience/auth.jwt_issuer are
set. Keys are compared in constant time.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web

from siprec.api.errors import ApiError
from siprec.api.routing import Access
from siprec.config import AuthConfig, PauseResumeConfig

log = logging.getLogger("siprec.api.auth")

API_KEY_HEADER = "X-API-Key"
API_KEY_QUERY = "api_key"
REALM = 'realm="siprec"'
_ASYMMETRIC = ("RS", "ES", "PS", "Ed")


class Authenticator:
    def __init__(self, auth: AuthConfig, pause: PauseResumeConfig) -> None:
        self.api_keys = tuple(k for k in auth.api_keys if k)
        self.pause_key = pause.api_key
        self.require_auth_for_reads = auth.require_auth_for_reads
        self.pause_requires_auth = pause.require_auth
        self.audience = auth.jwt_audience or None
        self.issuer = auth.jwt_issuer or None
        self._secret = auth.jwt_secret
        self._public_key = (
            Path(auth.jwt_public_key_file).read_text(encoding="ascii") if auth.jwt_public_key_file else ""
        )
        algorithms = list(auth.jwt_algorithms)
        if not algorithms:
            algorithms = (["HS256"] if self._secret else []) + (["RS256"] if self._public_key else [])
        self.algorithms = tuple(algorithms)

    # --- queries -------------------------------------------------------------------------------------------
    @property
    def jwt_enabled(self) -> bool:
        return bool(self.algorithms) and bool(self._secret or self._public_key)

    @property
    def configured(self) -> bool:
        """Any credential at all: API keys or JWT verification."""
        return bool(self.api_keys) or self.jwt_enabled

    def required(self, access: Access) -> bool:
        if access is Access.PUBLIC:
            return False
        if access is Access.READ:
            return self.require_auth_for_reads
        if access is Access.PAUSE:
            return self.pause_requires_auth
        return True

    def accepted_keys(self, access: Access) -> tuple[str, ...]:
        if access is Access.PAUSE and self.pause_key:
            return (*self.api_keys, self.pause_key)
        return self.api_keys

    # --- checks --------------------------------------------------------------------------------------------
    def verify_token(self, token: str) -> bool:
        """True for a valid JWT or a configured API key (WebSocket ?token= / Authorization: Bearer)."""
        if not token:
            return False
        if _key_matches(token, self.api_keys):
            return True
        return self.decode_jwt(token) is not None

    def decode_jwt(self, token: str) -> dict[str, Any] | None:
        """The claims of a valid JWT, else None (the reason is logged at INFO, once per request)."""
        if not self.jwt_enabled:
            return None
        try:
            header = jwt.get_unverified_header(token)
            algorithm = str(header.get("alg", ""))
            if algorithm not in self.algorithms:
                raise jwt.InvalidAlgorithmError(f"algorithm {algorithm or '(none)'} not accepted")
            key = self._public_key if algorithm.startswith(_ASYMMETRIC) else self._secret
            if not key:
                raise jwt.InvalidKeyError(f"no key configured for {algorithm}")
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"verify_aud": self.audience is not None},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            log.info("JWT refused: %s", exc)
            return None
        return claims

    def check(self, request: web.Request, access: Access) -> None:
        """Raise ApiError 401 unless the request may use a route of this access level."""
        if not self.required(access):
            return
        keys = self.accepted_keys(access)
        jwt_on = self.jwt_enabled
        if not keys and not jwt_on:
            raise ApiError(
                401, "AUTH_NOT_CONFIGURED", "this route needs a credential but the server has none configured",
                {"hint": "set auth.api_keys, auth.jwt_secret or auth.jwt_public_key_file"
                         + (" (or pause_resume.api_key)" if access is Access.PAUSE else "")},
                headers={"WWW-Authenticate": self.challenge()},
            )  # fmt: skip
        key = request.headers.get(API_KEY_HEADER) or request.query.get(API_KEY_QUERY)
        bearer = _bearer(request.headers.get("Authorization", ""))
        if key is None and bearer is None:
            raise ApiError(
                401, "AUTH_REQUIRED", "credentials required",
                {"accepted": self.schemes(access)}, headers={"WWW-Authenticate": self.challenge()},
            )  # fmt: skip
        if key is not None and _key_matches(key, keys):
            return
        if bearer is not None and (_key_matches(bearer, keys) or self.decode_jwt(bearer) is not None):
            return
        if bearer is not None and key is None:
            raise ApiError(
                401, "INVALID_TOKEN", "the bearer token is not valid",
                headers={"WWW-Authenticate": self.challenge('error="invalid_token"')},
            )  # fmt: skip
        raise ApiError(
            401, "INVALID_API_KEY", "the API key is not valid", headers={"WWW-Authenticate": self.challenge()}
        )

    def schemes(self, access: Access) -> list[str]:
        """Names of the OpenAPI security schemes that can satisfy `access` (empty when none is asked)."""
        if not self.required(access):
            return []
        out = ["ApiKeyHeader", "ApiKeyQuery"] if self.accepted_keys(access) else []
        if self.jwt_enabled:
            out.append("BearerAuth")
        return out or ["ApiKeyHeader", "ApiKeyQuery"]  # nothing configured: the route refuses every call

    def challenge(self, extra: str = "") -> str:
        bearer = f"Bearer {REALM}" + (f", {extra}" if extra else "")
        return f'{bearer}, ApiKey {REALM}, header="{API_KEY_HEADER}"'


def _bearer(value: str) -> str | None:
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _key_matches(candidate: str, keys: tuple[str, ...]) -> bool:
    given = candidate.encode("utf-8", "surrogatepass")
    found = False
    for key in keys:  # no early exit: the time does not say which key (or whether one) matched
        found |= hmac.compare_digest(given, key.encode("utf-8", "surrogatepass"))
    return found
