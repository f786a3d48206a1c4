"""The configuration's shape: one pydantic v2 model per section, their defaults and checks, and `Config`.

Unknown keys are errors; field errors and cross-field errors of a section are reported together. Loading (YAML,
environment overrides, the error list) lives in `siprec.config.loading`.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

REDACTED = "***"

# --------------------------------------------------------------------------- field types


def _split_csv(value: Any) -> Any:
    """Lists may be given as "a, b" (env vars are strings); numbers become strings so "[1, 2]" still fits list[str]."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for v in value]
    return value


def _parse_networks(value: Any) -> Any:
    value = _split_csv(value)
    if not isinstance(value, list):
        return value  # pydantic reports the type error
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    bad: list[str] = []
    for i, item in enumerate(value):
        try:
            nets.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            bad.append(f"item {i} {item!r}")
    if bad:
        raise ValueError(f"not a valid IP address or CIDR network: {', '.join(bad)}")
    return nets


CsvList = Annotated[list[str], BeforeValidator(_split_csv)]
Networks = Annotated[list[ipaddress.IPv4Network | ipaddress.IPv6Network], BeforeValidator(_parse_networks)]
Port = Annotated[int, Field(ge=0, le=65535)]
RtpPort = Annotated[int, Field(ge=1, le=65535)]


def _require_scheme(value: str, schemes: tuple[str, ...], what: str) -> str:
    if not value.startswith(schemes):
        raise ValueError(f"{what} must start with {' or '.join(schemes)}")
    return value


def redact_url(url: str) -> str:
    """Hide the password of scheme://user:password@host (keep the user: it helps debugging)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:{REDACTED}@{host}{slash}{tail}"


def unknown_key_message(key: str, model: type[BaseModel]) -> str:
    close = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.6)
    return f"unknown key; did you mean {close[0]}?" if close else "unknown key"


# --------------------------------------------------------------------------- base section

CrossCheck = tuple[tuple[str, ...], str, frozenset[str]]  # (loc, message, top-level fields it depends on)


class _Section(BaseModel):
    """Base of every section: unknown keys are errors; field errors and cross-field errors are reported together."""

    model_config = ConfigDict(extra="forbid")

    def _cross_checks(self) -> list[CrossCheck]:
        return []

    @model_validator(mode="wrap")
    @classmethod
    def _validate_all(cls, data: Any, handler: Callable[[Any], Any]) -> Any:
        if isinstance(data, Mapping):
            # A YAML section with every key commented out is null: treat it as empty.
            data = {
                k: ({} if v is None and _submodel(cls, k) is not None else v) for k, v in data.items()
            }
        try:
            model = handler(data)
            first: ValidationError | None = None
            failed: set[Any] = set()
        except ValidationError as exc:
            if not isinstance(data, Mapping):
                raise
            first, failed = exc, {e["loc"][0] for e in exc.errors() if e["loc"]}
            try:  # validate the rest so that cross-field checks on valid fields still run
                model = handler({k: v for k, v in data.items() if k not in failed})
            except ValidationError:
                raise exc from None
        cross = [c for c in model._cross_checks() if not (c[2] & failed)]
        if not cross:
            if first is not None:
                raise first
            return model
        details = [
            InitErrorDetails(type=PydanticCustomError(e["type"], "{msg}", {"msg": e["msg"]}), loc=e["loc"], input=e["input"])
            for e in (first.errors() if first is not None else [])
        ]
        details += [
            InitErrorDetails(type=PydanticCustomError("cross_field", "{msg}", {"msg": msg}), loc=loc, input=None)
            for loc, msg, _ in cross
        ]
        raise ValidationError.from_exception_data(cls.__name__, details)


def _submodel(model: type[BaseModel], name: Any) -> type[BaseModel] | None:
    field = model.model_fields.get(name) if isinstance(name, str) else None
    ann = field.annotation if field else None
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


# --------------------------------------------------------------------------- sections


class SipConfig(_Section):
    host: str = "0.0.0.0"
    advertised_host: str = ""
    udp_port: Port = 5060
    tcp_port: Port = 5060
    tls_port: Port = 0
    tls_cert: str = ""
    tls_key: str = ""
    require_siprec: bool = False
    session_expires: int = Field(1800, ge=90)
    min_se: int = Field(90, ge=90)
    trusted_sources: Networks = Field(default_factory=list)
    max_message_size: int = Field(65535, ge=1500, le=1_048_576)

    def _cross_checks(self) -> list[CrossCheck]:
        out: list[CrossCheck] = []
        if self.tls_port and not (self.tls_cert and self.tls_key):
            missing = " and ".join(k for k in ("tls_cert", "tls_key") if not getattr(self, k))
            out.append((("tls_port",), f"tls_port {self.tls_port} requires {missing}", frozenset({"tls_port", "tls_cert", "tls_key"})))
        if self.session_expires < self.min_se:
            out.append((
                ("session_expires",),
                f"session_expires ({self.session_expires}) must be >= min_se ({self.min_se})",
                frozenset({"session_expires", "min_se"}),
            ))
        return out


class RtpConfig(_Section):
    port_min: RtpPort = 16384
    port_max: RtpPort = 32767
    jitter_ms: int = Field(60, ge=0, le=5000)
    rtp_timeout_s: float = Field(60, gt=0)
    # Accept a leg's RTP only from the first source address that sent a valid packet (symmetric-RTP latching);
    # false accepts any source (an SRC that changes ports mid-call without a re-INVITE).
    latch: bool = True
    # Processes that receive and record RTP (each owns a share of the sessions); 0 = in the SIP process.
    media_workers: int = Field(2, ge=0, le=64)

    def _cross_checks(self) -> list[CrossCheck]:
        both = frozenset({"port_min", "port_max"})
        out: list[CrossCheck] = []
        if self.port_min % 2:
            out.append((("port_min",), f"port_min ({self.port_min}) must be even (RTP even, RTCP odd)", frozenset({"port_min"})))
        if self.port_min >= self.port_max:
            out.append((("port_min",), f"port_min ({self.port_min}) must be less than port_max ({self.port_max})", both))
        elif self.port_max - self.port_min + 1 < 4:
            out.append((("port_max",), f"range {self.port_min}-{self.port_max} must hold at least 4 ports", both))
        return out


class EncryptionConfig(_Section):
    enabled: bool = False
    key_file: str = ""

    def _cross_checks(self) -> list[CrossCheck]:
        if self.enabled and not self.key_file:
            return [(("key_file",), "required when encryption is enabled", frozenset({"enabled", "key_file"}))]
        return []


class RecordingConfig(_Section):
    dir: Path = Path("./recordings")
    combine_legs: bool = True
    pause_mode: Literal["silence", "drop"] = "silence"
    format: Literal["wav", "flac"] = "wav"
    encryption: EncryptionConfig = Field(default_factory=EncryptionConfig)


class SttConfig(_Section):
    """Plus one `stt.<provider>` mapping per provider (e.g. stt.whisper.model_path): free-form here, checked by the
    STT registry against that provider's config model (siprec.stt.registry), which knows the installed plugins."""

    model_config = ConfigDict(extra="allow")

    provider: str = Field("whisper", min_length=1)  # names are checked later by the STT registry
    fallback: CsvList = Field(default_factory=list)
    language: str = "en-US"
    partials: bool = True
    max_concurrent: int = Field(0, ge=0)

    @property
    def provider_sections(self) -> dict[str, dict[str, Any]]:
        """The `stt.<provider>` option mappings (an empty YAML section is {})."""
        return {k: dict(v or {}) for k, v in (self.model_extra or {}).items() if isinstance(v, Mapping | None)}

    def _cross_checks(self) -> list[CrossCheck]:
        # An extra key that is not a mapping is a misspelt stt key, not a provider section.
        out: list[CrossCheck] = []
        for key, value in (self.model_extra or {}).items():
            if not isinstance(value, Mapping | None):
                hint = unknown_key_message(key, type(self))
                msg = hint if "did you mean" in hint else "unknown key (a provider section stt.<name> is a mapping)"
                out.append(((key,), msg, frozenset({key})))
        return out


class HttpConfig(_Section):
    host: str = "0.0.0.0"
    port: Port = 8080
    enable_metrics: bool = True
    cors_origins: CsvList = Field(default_factory=list)


JWT_ALGORITHMS = frozenset(
    {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}
)


class AuthConfig(_Section):
    api_keys: CsvList = Field(default_factory=list, repr=False)
    jwt_secret: str = Field("", repr=False)
    # PEM public key for RS*/ES*/PS*/EdDSA tokens; jwt_algorithms [] = HS256 with a secret, RS256 with a key file.
    jwt_public_key_file: str = ""
    jwt_algorithms: CsvList = Field(default_factory=list)
    jwt_audience: str = ""  # when set, tokens must carry this aud
    jwt_issuer: str = ""  # when set, tokens must carry this iss
    require_auth_for_reads: bool = False

    @field_validator("jwt_algorithms")
    @classmethod
    def _algorithms(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if a not in JWT_ALGORITHMS]
        if bad:
            raise ValueError(f"unknown JWT algorithm(s) {', '.join(bad)}; known: {', '.join(sorted(JWT_ALGORITHMS))}")
        return v

    def _cross_checks(self) -> list[CrossCheck]:
        out: list[CrossCheck] = []
        if self.jwt_public_key_file and not Path(self.jwt_public_key_file).is_file():
            out.append((("jwt_public_key_file",), f"file not found: {self.jwt_public_key_file}", frozenset({"jwt_public_key_file"})))
        keys = frozenset({"jwt_algorithms", "jwt_secret", "jwt_public_key_file"})
        if any(a.startswith("HS") for a in self.jwt_algorithms) and not self.jwt_secret:
            out.append((("jwt_algorithms",), "HS* algorithms need jwt_secret", keys))
        if any(not a.startswith("HS") for a in self.jwt_algorithms) and not self.jwt_public_key_file:
            out.append((("jwt_algorithms",), "RS*/ES*/PS*/EdDSA algorithms need jwt_public_key_file", keys))
        if self.require_auth_for_reads and not (self.api_keys or self.jwt_secret or self.jwt_public_key_file):
            out.append((
                ("require_auth_for_reads",),
                "needs a credential: api_keys, jwt_secret or jwt_public_key_file",
                frozenset({"require_auth_for_reads", "api_keys", "jwt_secret", "jwt_public_key_file"}),
            ))
        return out


class PauseResumeConfig(_Section):
    enabled: bool = True
    per_session: bool = True
    require_auth: bool = True
    api_key: str = Field("", repr=False)


class AmqpConfig(_Section):
    enabled: bool = False
    url: str = Field("amqp://guest:guest@127.0.0.1:5672/", repr=False)
    exchange: str = Field("siprec.events", min_length=1)
    publish_partial_transcripts: bool = True
    publish_final_transcripts: bool = True
    publish_sentiment_updates: bool = True
    publish_keyword_detections: bool = True
    publish_speaker_changes: bool = True
    # Names this server's rows in the outbox: instances that share one store (PostgreSQL) need distinct ids that
    # stay the same across their restarts, or they would publish each other's events. "" suits one instance.
    instance_id: str = Field("", max_length=64, pattern=r"^[A-Za-z0-9._-]*$")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _require_scheme(v, ("amqp://", "amqps://"), "url")


class AnalyticsConfig(_Section):
    enabled: bool = True
    keywords: CsvList = Field(default_factory=list)
    snapshot_interval_s: float = Field(5, gt=0)


class PerSourceLimits(_Section):
    concurrent: int = Field(0, ge=0)
    hourly: int = Field(0, ge=0)
    daily: int = Field(0, ge=0)


class LimitsConfig(_Section):
    max_sessions: int = Field(0, ge=0)
    per_source: PerSourceLimits = Field(default_factory=PerSourceLimits)


class StoreConfig(_Section):
    url: str = Field("sqlite:///./siprec.db", repr=False)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        scheme, sep, _ = v.partition("://")
        base = scheme.split("+", 1)[0]  # allow SQLAlchemy driver suffixes (postgresql+asyncpg)
        if not sep or base not in ("sqlite", "postgresql", "postgres") or (base == "sqlite" and not v.startswith(f"{scheme}:///")):
            raise ValueError("url must start with sqlite:/// or postgresql:// (or postgres://)")
        return v


class RedisConfig(_Section):
    url: str = Field("", repr=False)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return v if v == "" else _require_scheme(v, ("redis://", "rediss://"), "url")


class LogConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["text", "json"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip().upper()
            return "WARNING" if v == "WARN" else v
        return v


class WebhooksConfig(_Section):
    urls: CsvList = Field(default_factory=list, repr=False)
    secret: str = Field("", repr=False)
    timeout_s: float = Field(5, gt=0, le=300)
    max_retries: int = Field(5, ge=0, le=100)

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        bad = [u for u in v if not u.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"every url must start with http:// or https:// (bad: {', '.join(map(redact_url, bad))})")
        return v


_WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")
_SECRET_WORDS = re.compile(r"(?:^|_)(?:key|secret|token|password|passphrase)(?:$|_)", re.IGNORECASE)


class Config(_Section):
    """The whole server configuration; build it with load_config()."""

    sip: SipConfig = Field(default_factory=SipConfig)
    rtp: RtpConfig = Field(default_factory=RtpConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    stt: SttConfig = Field(default_factory=SttConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    pause_resume: PauseResumeConfig = Field(default_factory=PauseResumeConfig)
    amqp: AmqpConfig = Field(default_factory=AmqpConfig)
    analytics: AnalyticsConfig = Field(default_factory=AnalyticsConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)

    # Paths whose values are secrets: redacted by to_public_dict() and in error messages.
    SECRET_PATHS: ClassVar[frozenset[str]] = frozenset(
        {"auth.api_keys", "auth.jwt_secret", "pause_resume.api_key", "webhooks.secret"}
    )
    URL_PATHS: ClassVar[frozenset[str]] = frozenset({"amqp.url", "store.url", "redis.url", "webhooks.urls"})

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The YAML file this config was loaded from (None for defaults), e.g. for /api/config/reload."""
        return self._source

    def _cross_checks(self) -> list[CrossCheck]:
        # Same TCP port on overlapping addresses: the second bind would fail at start, say so now.
        out: list[CrossCheck] = []
        sip, http = self.sip, self.http
        for key in ("tcp_port", "tls_port"):
            port = getattr(sip, key)
            same_host = sip.host == http.host or sip.host in _WILDCARD_HOSTS or http.host in _WILDCARD_HOSTS
            if port and port == http.port and same_host:
                out.append((("http", "port"), f"port {port} is also sip.{key}", frozenset({"sip", "http"})))
        rtp = self.rtp
        if sip.udp_port and rtp.port_min <= sip.udp_port <= rtp.port_max:
            out.append((("rtp", "port_min"), f"range {rtp.port_min}-{rtp.port_max} includes sip.udp_port {sip.udp_port}", frozenset({"sip", "rtp"})))
        return out

    def to_public_dict(self) -> dict[str, Any]:
        """JSON-ready dict with secrets replaced by "***" and URL passwords hidden (for GET /api/config)."""
        data = self.model_dump(mode="json")
        for path in self.SECRET_PATHS:
            section, key = path.split(".")
            value = data[section][key]
            data[section][key] = [REDACTED] * len(value) if isinstance(value, list) else (REDACTED if value else "")
        for path in self.URL_PATHS:
            section, key = path.split(".")
            value = data[section][key]
            data[section][key] = [redact_url(v) for v in value] if isinstance(value, list) else redact_url(value)
        for name, options in self.stt.provider_sections.items():  # plugin options: hide what is named as a secret
            data["stt"][name] = {k: REDACTED if v and _SECRET_WORDS.search(k) else v for k, v in options.items()}
        return data
