"""Config models, YAML loading, env overrides, aliases, error reporting and redaction."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from siprec.config import (
    ENV_ALIASES,
    Config,
    ConfigError,
    load_config,
    redact_url,
)

REPO = Path(__file__).resolve().parents[2]
ETC = REPO / "etc" / "siprec.yaml"
DOCS = REPO / "docs" / "configuration.md"


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(p) for p in exc.value.problems]


def leaf_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    out: list[str] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += leaf_paths(ann, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def dict_leaves(data: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            out += dict_leaves(value, f"{prefix}{key}.")
        else:
            out.append(prefix + key)
    return out


# --------------------------------------------------------------------------- defaults


def test_defaults_match_contract() -> None:
    c = Config()
    assert (c.sip.udp_port, c.sip.tcp_port, c.sip.tls_port) == (5060, 5060, 0)
    assert c.sip.require_siprec is False
    assert (c.sip.session_expires, c.sip.min_se) == (1800, 90)
    assert c.sip.trusted_sources == []
    assert c.sip.max_message_size == 65535
    assert (c.rtp.port_min, c.rtp.port_max, c.rtp.jitter_ms, c.rtp.rtp_timeout_s) == (16384, 32767, 60, 60)
    assert c.recording.dir == Path("./recordings")
    assert c.recording.combine_legs is True
    assert (c.recording.pause_mode, c.recording.format) == ("silence", "wav")
    assert c.recording.encryption.enabled is False
    assert (c.stt.provider, c.stt.fallback, c.stt.language, c.stt.partials, c.stt.max_concurrent) == (
        "whisper", [], "en-US", True, 0)
    assert (c.http.port, c.http.enable_metrics, c.http.cors_origins) == (8080, True, [])
    assert (c.auth.api_keys, c.auth.require_auth_for_reads) == ([], False)
    pr = c.pause_resume
    assert (pr.enabled, pr.per_session, pr.require_auth) == (True, True, True)
    assert (c.amqp.enabled, c.amqp.exchange) == (False, "siprec.events")
    assert c.amqp.url.startswith("amqp://")
    assert (c.analytics.enabled, c.analytics.keywords, c.analytics.snapshot_interval_s) == (True, [], 5)
    assert c.limits.max_sessions == 0
    assert c.limits.per_source.model_dump() == {"concurrent": 0, "hourly": 0, "daily": 0}
    assert c.store.url == "sqlite:///./siprec.db"
    assert c.redis.url == ""
    assert (c.log.level, c.log.format) == ("INFO", "text")
    assert c.webhooks.model_dump() == {"urls": [], "secret": "", "timeout_s": 5, "max_retries": 5}


def test_no_file_and_empty_file_give_defaults(tmp_path: Path) -> None:
    assert load_config(None, {}).model_dump() == Config().model_dump()
    assert load_config(None, {}).source is None
    empty = write(tmp_path, "")
    assert load_config(empty, {}).model_dump() == Config().model_dump()
    only_comments = write(tmp_path, "# nothing\nsip:\n  # udp_port: 5\n", "b.yaml")
    assert load_config(only_comments, {}).sip.udp_port == 5060


def test_etc_file_loads_and_documents_every_key() -> None:
    c = load_config(ETC, {})
    assert c.source == ETC
    assert c.model_dump() == Config().model_dump()  # the shipped file shows the defaults
    data = yaml.safe_load(ETC.read_text())
    assert sorted(dict_leaves(data)) == sorted(leaf_paths(Config))
    # every key carries a comment
    for line in ETC.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and not line.rstrip().endswith(":"):
            assert "#" in line, line


def test_docs_mention_every_key() -> None:
    text = DOCS.read_text()
    for path in leaf_paths(Config):
        section, key = path.split(".", 1)
        assert f"### `{section}`" in text and f"`{key}`" in text, path
    for alias in ENV_ALIASES:
        assert alias in text


def test_every_section_loads_from_file(tmp_path: Path) -> None:
    f = write(tmp_path, """
sip: {host: 127.0.0.1, advertised_host: rec.example.com, udp_port: 5070, tcp_port: 5071, tls_port: 5061,
      tls_cert: CERT, tls_key: KEY, require_siprec: true, session_expires: 600, min_se: 120,
      trusted_sources: [10.0.0.0/8, 192.0.2.7, "2001:db8::/32"], max_message_size: 1500}
rtp: {port_min: 20000, port_max: 20003, jitter_ms: 0, rtp_timeout_s: 2.5}
recording: {dir: /srv/rec, combine_legs: false, pause_mode: drop, format: flac,
            encryption: {enabled: true, key_file: /etc/siprec/key}}
stt: {provider: deepgram, fallback: [whisper, none], language: de-DE, partials: false, max_concurrent: 4}
http: {host: 127.0.0.1, port: 18080, enable_metrics: false, cors_origins: "https://a.example, https://b.example"}
auth: {api_keys: [k1, k2], jwt_secret: s3cret, require_auth_for_reads: true}
pause_resume: {enabled: false, per_session: false, require_auth: false, api_key: pk}
amqp: {enabled: true, url: "amqps://u:p@mq:5671/vh", exchange: ex, publish_partial_transcripts: false,
       publish_final_transcripts: false, publish_sentiment_updates: false, publish_keyword_detections: false,
       publish_speaker_changes: false}
analytics: {enabled: false, keywords: [refund, cancel], snapshot_interval_s: 0.5}
limits: {max_sessions: 100, per_source: {concurrent: 5, hourly: 60, daily: 500}}
store: {url: "postgresql://u:p@db/siprec"}
redis: {url: "redis://:pw@cache:6379/0"}
log: {level: debug, format: json}
webhooks: {urls: ["https://hook.example/x"], secret: whs, timeout_s: 2, max_retries: 0}
""".replace("CERT", str(write(tmp_path, "c", "cert.pem"))).replace("KEY", str(write(tmp_path, "k", "key.pem"))))
    c = load_config(f, {})
    assert c.sip.tls_port == 5061 and c.sip.require_siprec is True
    assert c.sip.trusted_sources[1] == ipaddress.ip_network("192.0.2.7/32")
    assert c.rtp.port_max == 20003 and c.rtp.rtp_timeout_s == 2.5
    assert c.recording.dir == Path("/srv/rec") and c.recording.format == "flac"
    assert c.recording.encryption.key_file == "/etc/siprec/key"
    assert c.stt.fallback == ["whisper", "none"]
    assert c.http.cors_origins == ["https://a.example", "https://b.example"]
    assert c.auth.api_keys == ["k1", "k2"]
    assert c.pause_resume.api_key == "pk"
    assert c.amqp.publish_speaker_changes is False
    assert c.analytics.keywords == ["refund", "cancel"]
    assert c.limits.per_source.daily == 500
    assert c.store.url.startswith("postgresql://")
    assert c.redis.url.startswith("redis://")
    assert c.log.level == "DEBUG" and c.log.format == "json"
    assert c.webhooks.max_retries == 0


def test_trusted_sources_feed_admission_control() -> None:
    # The config holds networks; siprec.sip.admission decides (one mechanism, tested there).
    from siprec.sip.admission import AdmissionControl

    c = Config.model_validate({"sip": {"trusted_sources": "10.0.0.0/8, 2001:db8::/32"}})
    ac = AdmissionControl([str(n) for n in c.sip.trusted_sources])
    assert ac.is_trusted("10.1.2.3") and ac.is_trusted("2001:db8::1")
    assert not ac.is_trusted("192.0.2.8") and not ac.is_trusted("not-an-ip")
    assert AdmissionControl([str(n) for n in Config().sip.trusted_sources]).is_trusted("198.51.100.1")


# --------------------------------------------------------------------------- env overrides


def test_env_overrides_every_type(tmp_path: Path) -> None:
    env = {
        "SIPREC__SIP__UDP_PORT": "15060",
        "SIPREC__HTTP__PORT": "18080",
        "SIPREC__RECORDING__DIR": "/srv/rec",
        "SIPREC__RECORDING__COMBINE_LEGS": "false",
        "SIPREC__RTP__PORT_MIN": "30000",
        "SIPREC__RTP__PORT_MAX": "30999",
        "SIPREC__RTP__RTP_TIMEOUT_S": "1.5",
        "SIPREC__STT__PROVIDER": "none",
        "SIPREC__STT__FALLBACK": "[whisper, pocketsphinx]",
        "SIPREC__AUTH__API_KEYS": "k1,k2",
        "SIPREC__AMQP__ENABLED": "true",
        "SIPREC__AMQP__URL": "amqp://guest:guest@127.0.0.1:5672/",
        "SIPREC__SIP__TRUSTED_SOURCES": "10.0.0.0/8, 192.0.2.1",
        "SIPREC__LIMITS__PER_SOURCE__HOURLY": "7",
        "SIPREC__RECORDING__ENCRYPTION__ENABLED": "yes",
        "SIPREC__RECORDING__ENCRYPTION__KEY_FILE": "/k",
        "SIPREC__LOG__FORMAT": "json",
        "SIPREC__WEBHOOKS__URLS": "http://a/x,https://b/y",
    }
    c = load_config(write(tmp_path, "sip: {udp_port: 5080}\n"), env)
    assert c.sip.udp_port == 15060
    assert c.http.port == 18080
    assert c.recording.dir == Path("/srv/rec") and c.recording.combine_legs is False
    assert (c.rtp.port_min, c.rtp.port_max, c.rtp.rtp_timeout_s) == (30000, 30999, 1.5)
    assert c.stt.provider == "none" and c.stt.fallback == ["whisper", "pocketsphinx"]
    assert c.auth.api_keys == ["k1", "k2"]
    assert c.amqp.enabled is True
    assert [str(n) for n in c.sip.trusted_sources] == ["10.0.0.0/8", "192.0.2.1/32"]
    assert c.limits.per_source.hourly == 7
    assert c.recording.encryption.enabled is True and c.recording.encryption.key_file == "/k"
    assert c.log.format == "json"
    assert c.webhooks.urls == ["http://a/x", "https://b/y"]


def test_env_strings_stay_verbatim_for_string_fields() -> None:
    # YAML 1.1 would read "no" as false and drop "#..." as a comment; string keys must keep the text.
    c = load_config(None, {"SIPREC__STT__LANGUAGE": "no", "SIPREC__AUTH__JWT_SECRET": "a #b: c",
                           "SIPREC__AUTH__API_KEYS": "123, 0x1f"})
    assert c.stt.language == "no"
    assert c.auth.jwt_secret == "a #b: c"
    assert c.auth.api_keys == ["123", "0x1f"]


def test_env_names_are_case_insensitive() -> None:
    c = load_config(None, {"siprec__sip__udp_port": "15062", "Siprec__Limits__Per_Source__Daily": "9",
                           "recording_combine_legs": "false"})
    assert c.sip.udp_port == 15062
    assert c.limits.per_source.daily == 9
    assert c.recording.combine_legs is False


def test_env_section_mapping_and_other_vars_ignored() -> None:
    c = load_config(None, {"SIPREC__LIMITS__PER_SOURCE": "{hourly: 3, daily: 4}", "SIPREC_SHARED_DIR": "/x",
                           "PATH": "/bin", "SIPRECX": "1"})
    assert (c.limits.per_source.hourly, c.limits.per_source.daily) == (3, 4)


# A value for each alias that differs from the key's default.
_ALIAS_VALUES = {"AMQP_URL": "amqp://u:p@broker.example:5672/vh", "REALTIME_EXCHANGE_NAME": "calls.events"}


@pytest.mark.parametrize(("alias", "path"), sorted(ENV_ALIASES.items()))
def test_aliases(alias: str, path: tuple[str, ...]) -> None:
    default = getattr(getattr(Config(), path[0]), path[1])
    if alias in _ALIAS_VALUES:
        c = load_config(None, {alias: _ALIAS_VALUES[alias]})
        assert getattr(getattr(c, path[0]), path[1]) == _ALIAS_VALUES[alias] != default
        return
    c = load_config(None, {alias: "false" if default else "true"})
    assert getattr(getattr(c, path[0]), path[1]) is (not default)


def test_precedence_file_then_alias_then_siprec_var(tmp_path: Path) -> None:
    f = write(tmp_path, "recording: {combine_legs: true}\namqp: {enabled: false}\n")
    assert load_config(f, {}).recording.combine_legs is True
    assert load_config(f, {"RECORDING_COMBINE_LEGS": "false"}).recording.combine_legs is False
    both = {"RECORDING_COMBINE_LEGS": "false", "SIPREC__RECORDING__COMBINE_LEGS": "true"}
    assert load_config(f, both).recording.combine_legs is True
    both = {"SIPREC__AMQP__ENABLED": "false", "ENABLE_REALTIME_AMQP": "true"}
    assert load_config(f, both).amqp.enabled is False


# --------------------------------------------------------------------------- errors


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as exc:
        load_config(missing, {})
    assert problems(exc) == [f"{missing}: config file not found"]


@pytest.mark.parametrize(("text", "expect"), [
    ("sip: [\n", "invalid YAML: line"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("sip:\n  udp_port: 1\n  udp_port: 2\n", "duplicate key 'udp_port'"),
])
def test_bad_yaml(tmp_path: Path, text: str, expect: str) -> None:
    f = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(f, {})
    assert len(exc.value.problems) == 1
    assert str(exc.value.problems[0]).startswith(f"{f}: ")
    assert expect in str(exc.value)


def test_unknown_keys_in_file_with_hint(tmp_path: Path) -> None:
    f = write(tmp_path, "sip:\n  udp_prot: 5060\nsipp: {}\nlimits: {per_source: {hourley: 1, zzz: 2}}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(f, {})
    assert sorted(problems(exc)) == sorted([
        "sip.udp_prot: unknown key; did you mean udp_port?",
        "sipp: unknown key; did you mean sip?",
        "limits.per_source.hourley: unknown key; did you mean hourly?",
        "limits.per_source.zzz: unknown key",
    ])


def test_unknown_keys_in_env_name_the_variable() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, {"SIPREC__SIP__UDP_PROT": "1", "SIPREC__NOPE__X": "1", "SIPREC__SIP__UDP_PORT__X": "1",
                           "SIPREC__SIP": "", "SIPREC__": "1"})
    got = problems(exc)
    assert "sip.udp_prot: unknown key; did you mean udp_port? (from SIPREC__SIP__UDP_PROT)" in got
    assert "nope.x: unknown key (from SIPREC__NOPE__X)" in got
    assert "sip.udp_port.x: unknown key (from SIPREC__SIP__UDP_PORT__X)" in got
    assert any(p.startswith("SIPREC__: expected") for p in got)
    assert any("(from SIPREC__SIP)" in p for p in got)  # "" is not a section mapping
    assert exc.value.problems[0].env_var or exc.value.problems[0].path == "SIPREC__"


def test_all_bad_values_reported_together(tmp_path: Path) -> None:
    f = write(tmp_path, """
sip:
  udp_port: 70000
  tls_port: 5061
  trusted_sources: [10.0.0.0/8, 10.0.0.300, bogus]
rtp: {port_min: 30000, port_max: 20000}
recording: {pause_mode: mute, format: mp3, encryption: {enabled: true}}
log: {format: xml}
store: {url: "mysql://x"}
redis: {url: "http://x"}
amqp: {url: "http://u:pw@h/"}
""")
    with pytest.raises(ConfigError) as exc:
        load_config(f, {"SIPREC__HTTP__PORT": "-1"})
    got = problems(exc)
    expected_prefixes = [
        "sip.udp_port: Input should be less than or equal to 65535 (got 70000)",
        "sip.tls_port: tls_port 5061 requires tls_cert and tls_key",
        "sip.trusted_sources: not a valid IP address or CIDR network: item 1 '10.0.0.300', item 2 'bogus'",
        "rtp.port_min: port_min (30000) must be less than port_max (20000)",
        "recording.pause_mode: Input should be 'silence' or 'drop' (got 'mute')",
        "recording.format: Input should be 'wav' or 'flac' (got 'mp3')",
        "recording.encryption.key_file: required when encryption is enabled",
        "log.format: Input should be 'text' or 'json' (got 'xml')",
        "store.url: url must start with sqlite:/// or postgresql://",
        "redis.url: url must start with redis:// or rediss://",
        "http.port: Input should be greater than or equal to 0 (got -1) (from SIPREC__HTTP__PORT)",
    ]
    for prefix in expected_prefixes:
        assert any(p.startswith(prefix) for p in got), (prefix, got)
    assert len(got) == len(expected_prefixes) + 1  # + amqp.url
    amqp = next(p for p in got if p.startswith("amqp.url"))
    assert "pw" not in amqp and "***" in amqp  # a password never reaches the error output


@pytest.mark.parametrize(("env", "expect"), [
    ({"SIPREC__RTP__PORT_MIN": "16385"}, "rtp.port_min: port_min (16385) must be even"),
    ({"SIPREC__RTP__PORT_MIN": "20000", "SIPREC__RTP__PORT_MAX": "20002"}, "must hold at least 4 ports"),
    ({"SIPREC__RTP__PORT_MIN": "0"}, "rtp.port_min: Input should be greater than or equal to 1"),
    ({"SIPREC__SIP__MIN_SE": "60"}, "sip.min_se: Input should be greater than or equal to 90 (got 60)"),
    ({"SIPREC__SIP__SESSION_EXPIRES": "100", "SIPREC__SIP__MIN_SE": "120"},
     "sip.session_expires: session_expires (100) must be >= min_se (120)"),
    ({"SIPREC__SIP__MAX_MESSAGE_SIZE": "1000"}, "sip.max_message_size: Input should be greater than or equal to 1500"),
    ({"SIPREC__SIP__MAX_MESSAGE_SIZE": "2000000"}, "less than or equal to 1048576"),
    ({"SIPREC__SIP__TLS_PORT": "5061", "SIPREC__SIP__TLS_CERT": "/nonexistent/c.pem",
      "SIPREC__SIP__TLS_KEY": "/nonexistent/k.pem"}, "sip.tls_cert: file not found: /nonexistent/c.pem"),
    ({"SIPREC__STT__PROVIDER": ""}, "stt.provider: String should have at least 1 character"),
    ({"SIPREC__LOG__LEVEL": "loud"}, "log.level: Input should be 'DEBUG'"),
    ({"SIPREC__WEBHOOKS__URLS": "ftp://x"}, "webhooks.urls: every url must start with http:// or https://"),
    ({"SIPREC__HTTP__PORT": "5060"}, "http.port: port 5060 is also sip.tcp_port"),
    ({"SIPREC__SIP__UDP_PORT": "20000"}, "rtp.port_min: range 16384-32767 includes sip.udp_port 20000"),
    ({"SIPREC__SIP__UDP_PORT": "abc"}, "sip.udp_port: Input should be a valid integer"),
    ({"SIPREC__AMQP__ENABLED": "maybe"}, "amqp.enabled: Input should be a valid boolean"),
    ({"SIPREC__AMQP__INSTANCE_ID": "rec a/1"}, "amqp.instance_id: String should match pattern"),
])
def test_single_bad_values(env: dict[str, str], expect: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, env)
    assert any(expect in p for p in problems(exc)), problems(exc)


def test_accepted_edge_values() -> None:
    c = load_config(None, {
        "SIPREC__SIP__UDP_PORT": "0", "SIPREC__SIP__TCP_PORT": "65535", "SIPREC__SIP__MAX_MESSAGE_SIZE": "1500",
        "SIPREC__RTP__PORT_MIN": "40000", "SIPREC__RTP__PORT_MAX": "40003",
        "SIPREC__STORE__URL": "postgres://h/db", "SIPREC__REDIS__URL": "rediss://h:6380",
        "SIPREC__LOG__LEVEL": "warn", "SIPREC__HTTP__HOST": "127.0.0.1", "SIPREC__HTTP__PORT": "65534",
    })
    assert c.sip.udp_port == 0 and c.log.level == "WARNING"
    assert load_config(None, {"SIPREC__STORE__URL": "sqlite+aiosqlite:///:memory:"}).store.url.endswith(":memory:")


def test_secret_values_never_shown_in_errors(tmp_path: Path) -> None:
    f = write(tmp_path, "auth: {jwt_secret: [topsecret]}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(f, {"SIPREC__AUTH__API_KEYS": "[[nested-secret]]"})
    text = str(exc.value)
    assert "nested-secret" not in text and "topsecret" not in text
    assert "auth.api_keys" in text and "auth.jwt_secret" in text


def test_config_error_is_exception_with_all_lines() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, {"SIPREC__SIP__UDP_PORT": "70000", "SIPREC__HTTP__PORT": "70000"})
    assert isinstance(exc.value, Exception)
    assert str(exc.value).count("\n") == 1
    assert {p.path for p in exc.value.problems} == {"sip.udp_port", "http.port"}
    assert {p.env_var for p in exc.value.problems} == {"SIPREC__SIP__UDP_PORT", "SIPREC__HTTP__PORT"}


# --------------------------------------------------------------------------- redaction


def test_to_public_dict_redacts_secrets(tmp_path: Path) -> None:
    c = load_config(None, {
        "SIPREC__AUTH__API_KEYS": "key-one,key-two", "SIPREC__AUTH__JWT_SECRET": "jwt-s",
        "SIPREC__PAUSE_RESUME__API_KEY": "pr-key", "SIPREC__WEBHOOKS__SECRET": "wh-s",
        "SIPREC__AMQP__URL": "amqp://bob:amqp-pw@mq:5672/vh",
        "SIPREC__STORE__URL": "postgresql://app:db-pw@db:5432/siprec",
        "SIPREC__REDIS__URL": "redis://:redis-pw@cache:6379/0",
        "SIPREC__WEBHOOKS__URLS": "https://u:hook-pw@hooks.example/x",
    })
    public = c.to_public_dict()
    text = repr(public)
    for secret in ("key-one", "jwt-s", "pr-key", "wh-s", "amqp-pw", "db-pw", "redis-pw", "hook-pw"):
        assert secret not in text, secret
        assert secret not in repr(c), secret  # repr/logging of the model does not leak either
    assert public["auth"]["api_keys"] == ["***", "***"]
    assert public["amqp"]["url"] == "amqp://bob:***@mq:5672/vh"
    assert public["store"]["url"] == "postgresql://app:***@db:5432/siprec"
    assert public["redis"]["url"] == "redis://:***@cache:6379/0"
    assert public["sip"]["udp_port"] == 5060  # non-secrets intact
    assert Config().to_public_dict()["auth"]["jwt_secret"] == ""  # unset stays visibly unset


@pytest.mark.parametrize(("url", "expect"), [
    ("sqlite:///./siprec.db", "sqlite:///./siprec.db"),
    ("amqp://guest@h/", "amqp://guest@h/"),
    ("redis://[::1]:6379", "redis://[::1]:6379"),
    ("postgresql://u:p@w:rd@h/db", "postgresql://u:***@h/db"),
    ("not a url", "not a url"),
])
def test_redact_url(url: str, expect: str) -> None:
    assert redact_url(url) == expect


def test_sections_forbid_extra_when_built_in_code() -> None:
    with pytest.raises(Exception, match="unknown|Extra"):
        Config.model_validate({"sip": {"udp_prot": 1}})


def test_config_from_mapping_for_api_validation() -> None:
    from siprec.config import config_from_mapping

    assert config_from_mapping({"http": {"port": 9000}}).http.port == 9000
    assert config_from_mapping({}, {"SIPREC__HTTP__PORT": "9001"}).http.port == 9001
    original = {"sip": {"udp_port": 1}}
    config_from_mapping(original, {"SIPREC__SIP__TCP_PORT": "2"})
    assert original == {"sip": {"udp_port": 1}}  # the caller's dict is not modified
    with pytest.raises(ConfigError) as exc:
        config_from_mapping({"sip": {"udp_port": "x"}, "nope": 1})
    assert {p.path for p in exc.value.problems} == {"sip.udp_port", "nope"}
