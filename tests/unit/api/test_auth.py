"""Authenticator: API keys, JWT HS256 and RS256 (keys generated here), the access levels, the 401 answers."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from aiohttp.test_utils import make_mocked_request
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from siprec.api.auth import Authenticator
from siprec.api.errors import ApiError
from siprec.api.routing import Access
from siprec.config import AuthConfig, Config, ConfigError, PauseResumeConfig, config_from_mapping

SECRET = "s" * 32


def rsa_pair(tmp: Path) -> tuple[rsa.RSAPrivateKey, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp / "jwt.pub.pem"
    path.write_bytes(pem)
    return key, path


def authenticator(**auth: object) -> Authenticator:
    pause = auth.pop("pause", {})
    return Authenticator(AuthConfig.model_validate(auth), PauseResumeConfig.model_validate(pause))


def request(headers: dict[str, str] | None = None, path: str = "/api/x") -> object:
    return make_mocked_request("GET", path, headers=headers or {})


def refused(auth: Authenticator, req: object, access: Access) -> ApiError:
    with pytest.raises(ApiError) as info:
        auth.check(req, access)  # type: ignore[arg-type]
    assert info.value.status == 401 and "WWW-Authenticate" in info.value.headers
    return info.value


def test_api_key_by_header_or_query() -> None:
    auth = authenticator(api_keys=["k1", "k2"])
    auth.check(request({"X-API-Key": "k2"}), Access.WRITE)  # type: ignore[arg-type]
    auth.check(request(path="/api/x?api_key=k1"), Access.WRITE)  # type: ignore[arg-type]
    auth.check(request({"Authorization": "Bearer k1"}), Access.WRITE)  # type: ignore[arg-type]
    assert refused(auth, request(), Access.WRITE).code == "AUTH_REQUIRED"
    assert refused(auth, request({"X-API-Key": "nope"}), Access.WRITE).code == "INVALID_API_KEY"
    assert refused(auth, request({"Authorization": "Bearer nope"}), Access.WRITE).code == "INVALID_TOKEN"


def test_access_levels() -> None:
    auth = authenticator(api_keys=["k"], pause={"api_key": "pk", "require_auth": True})
    auth.check(request(), Access.PUBLIC)  # type: ignore[arg-type]
    auth.check(request(), Access.READ)  # type: ignore[arg-type]  # require_auth_for_reads is false
    auth.check(request({"X-API-Key": "pk"}), Access.PAUSE)  # type: ignore[arg-type]
    auth.check(request({"X-API-Key": "k"}), Access.PAUSE)  # type: ignore[arg-type]
    refused(auth, request({"X-API-Key": "pk"}), Access.WRITE)  # the pause key opens the pause routes only
    reads = authenticator(api_keys=["k"], require_auth_for_reads=True)
    refused(reads, request(), Access.READ)
    open_pause = authenticator(pause={"require_auth": False})
    open_pause.check(request(), Access.PAUSE)  # type: ignore[arg-type]


def test_no_credential_configured_refuses_write_routes() -> None:
    err = refused(authenticator(), request({"X-API-Key": "anything"}), Access.WRITE)
    assert err.code == "AUTH_NOT_CONFIGURED" and "auth.api_keys" in err.details["hint"]
    assert refused(authenticator(), request(), Access.PAUSE).code == "AUTH_NOT_CONFIGURED"


def test_jwt_hs256() -> None:
    auth = authenticator(jwt_secret=SECRET, jwt_audience="siprec", jwt_issuer="idp")
    good = jwt.encode({"sub": "u", "aud": "siprec", "iss": "idp", "exp": time.time() + 60}, SECRET, "HS256")
    auth.check(request({"Authorization": f"Bearer {good}"}), Access.WRITE)  # type: ignore[arg-type]
    assert auth.verify_token(good)
    expired = jwt.encode({"aud": "siprec", "iss": "idp", "exp": time.time() - 60}, SECRET, "HS256")
    wrong_aud = jwt.encode({"aud": "other", "iss": "idp"}, SECRET, "HS256")
    wrong_key = jwt.encode({"aud": "siprec", "iss": "idp"}, "x" * 32, "HS256")
    none_alg = jwt.encode({"aud": "siprec", "iss": "idp"}, None, "none")  # type: ignore[arg-type]
    for token in (expired, wrong_aud, wrong_key, none_alg, "not.a.jwt", ""):
        assert not auth.verify_token(token)
    err = refused(auth, request({"Authorization": f"Bearer {expired}"}), Access.WRITE)
    assert err.code == "INVALID_TOKEN" and 'error="invalid_token"' in err.headers["WWW-Authenticate"]


def test_jwt_rs256_and_no_algorithm_confusion(tmp_path: Path) -> None:
    key, pub = rsa_pair(tmp_path)
    auth = authenticator(jwt_public_key_file=str(pub))
    assert auth.algorithms == ("RS256",)
    token = jwt.encode({"sub": "u", "exp": time.time() + 60}, key, "RS256")
    auth.check(request({"Authorization": f"Bearer {token}"}), Access.WRITE)  # type: ignore[arg-type]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert not auth.verify_token(jwt.encode({"sub": "u"}, other, "RS256"))
    # HS256 signed with the public key's PEM as the secret must not pass (RS256 only is configured).
    forged = jwt.encode({"sub": "u"}, pub.read_bytes().decode()[:64] * 2, "HS256")
    assert not auth.verify_token(forged)


def test_both_algorithms_configured(tmp_path: Path) -> None:
    key, pub = rsa_pair(tmp_path)
    auth = authenticator(jwt_secret=SECRET, jwt_public_key_file=str(pub))
    assert set(auth.algorithms) == {"HS256", "RS256"}
    assert auth.verify_token(jwt.encode({"a": 1}, SECRET, "HS256"))
    assert auth.verify_token(jwt.encode({"a": 1}, key, "RS256"))


def test_config_checks_the_auth_keys(tmp_path: Path) -> None:
    cases = [
        ({"jwt_algorithms": ["HS999"]}, "unknown JWT algorithm(s) HS999"),
        ({"jwt_algorithms": ["RS256"]}, "RS*/ES*/PS*/EdDSA algorithms need jwt_public_key_file"),
        ({"jwt_algorithms": ["HS256"]}, "HS* algorithms need jwt_secret"),
        ({"jwt_public_key_file": str(tmp_path / "missing.pem")}, "file not found"),
        ({"require_auth_for_reads": True}, "needs a credential"),
    ]
    for auth, message in cases:
        with pytest.raises(ConfigError) as info:
            config_from_mapping({"auth": auth})
        assert message in str(info.value), auth
    assert isinstance(
        config_from_mapping({"auth": {"api_keys": "a,b", "require_auth_for_reads": True}}), Config
    )
