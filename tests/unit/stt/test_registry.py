"""Provider discovery (a real entry point in a temporary dist-info), stt.* config sections and their checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from siprec.config import Config, ConfigError, config_from_mapping, load_config
from siprec.stt.registry import ProviderRegistry
from tests.unit.stt.fake_dist import make_dist
from tests.unit.stt.tone_provider import GermanProvider, NarrowbandProvider, ToneConfig, ToneProvider


def registry(*classes: type) -> ProviderRegistry:
    reg = ProviderRegistry(entry_points=False)
    for cls in classes or (ToneProvider, NarrowbandProvider):
        reg.register(cls)
    return reg


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(p) for p in exc.value.problems]


# --------------------------------------------------------------------------- discovery


def test_entry_point_discovery_from_a_real_dist_info(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_dist(tmp_path / "site", {
        "eptone": "siprec_stt_eptone:EpTone",
        "epmissing": "siprec_stt_eptone:NoSuchClass",
        "epwrong": "siprec_stt_eptone:WrongName",
        "none": "siprec_stt_eptone:EpTone",
    })  # fmt: skip
    monkeypatch.syspath_prepend(str(root))
    reg = ProviderRegistry()
    providers = reg.providers()
    assert providers["eptone"].__name__ == "EpTone"
    assert providers["eptone"].__module__ == "siprec_stt_eptone"  # loaded through the entry point
    assert reg.origin("eptone") == "siprec_stt_eptone:EpTone from siprec-stt-eptone"
    broken = reg.broken()
    assert "cannot be imported: AttributeError" in broken["epmissing"]
    assert "its class says name 'something-else', the entry point says 'epwrong'" in broken["epwrong"]
    assert "reserved" in broken["none"]
    assert not {"epmissing", "epwrong", "none"} & set(providers)
    # configuring a broken one says why; an unknown one lists what is installed
    with pytest.raises(ConfigError) as exc:
        reg.plan(config_from_mapping({"stt": {"provider": "epmissing", "fallback": ["nope"]}}).stt)
    got = problems(exc)
    assert got[0].startswith(
        "stt.provider: provider 'epmissing' is installed but unusable: siprec_stt_eptone:NoSuchClass"
    )
    assert got[1].startswith("stt.fallback.0: no installed provider named 'nope' (installed: ")
    assert "eptone" in got[1] and "'none' for no transcription" in got[1]
    plan = reg.plan(config_from_mapping({"stt": {"provider": "eptone", "eptone": {"threshold": 100}}}).stt)
    assert plan.names == ("eptone",)
    assert plan.providers[0].options == ToneConfig(threshold=100)


def test_code_registration_wins_and_is_checked() -> None:
    reg = ProviderRegistry(entry_points=False)
    assert reg.providers() == {}
    reg.register(ToneProvider)
    assert list(reg.providers()) == ["tone"] and reg.origin("tone") == "registered in code"
    with pytest.raises(ValueError, match="its class says name 'tone', the entry point says 'other'"):
        reg.register(ToneProvider, name="other")
    with pytest.raises(ValueError, match="not a class"):
        reg.register(ToneProvider(ToneConfig()), name="x")  # type: ignore[arg-type]

    class NoModel(ToneProvider):
        name = "nomodel"
        config_model = dict  # type: ignore[assignment]

    with pytest.raises(ValueError, match="config_model is not a pydantic model"):
        reg.register(NoModel)
    with pytest.raises(KeyError, match="no installed provider named 'tonne'.*did you mean tone"):
        reg.get("tonne")


# --------------------------------------------------------------------------- plan


def test_plan_orders_provider_then_fallbacks_with_options() -> None:
    stt = config_from_mapping({"stt": {
        "provider": "tone", "fallback": ["narrowband", "none", "tone"],
        "tone": {"threshold": 123, "tags": ["a", "b"]}, "narrowband": None,
    }}).stt  # fmt: skip
    plan = registry().plan(stt)
    assert plan.enabled and plan.names == ("tone", "narrowband")
    assert plan.providers[0].options == ToneConfig(threshold=123, tags=["a", "b"])
    assert plan.providers[1].options == ToneConfig()
    assert plan.warnings == ("stt.fallback.2: tone is already tried earlier; listed once",)


def test_provider_none_turns_stt_off() -> None:
    plan = registry().plan(config_from_mapping({"stt": {"provider": "none", "fallback": ["nope"]}}).stt)
    assert not plan.enabled and plan.providers == ()


def test_env_overrides_reach_provider_options() -> None:
    env = {
        "SIPREC__STT__PROVIDER": "tone",
        "SIPREC__STT__TONE__THRESHOLD": "42.5",
        "SIPREC__STT__TONE__STALL": "true",
        "SIPREC__STT__TONE__FAIL_AFTER_S": "3",
        "SIPREC__STT__TONE__TAGS": "x, y",
        "SIPREC__STT__NARROWBAND__TAGS": "[p, q]",
    }
    config = load_config(None, env)
    assert (
        config.stt.provider_sections["tone"]["threshold"] == "42.5"
    )  # strings until the plugin's model parses
    plan = registry().plan(config.stt)
    assert plan.providers[0].options == ToneConfig(
        threshold=42.5, stall=True, fail_after_s=3.0, tags=["x", "y"]
    )
    # the section of a provider installed but not configured is checked too (and parsed the same way)
    bad = {**env, "SIPREC__STT__NARROWBAND__THRESHOLD": "loud"}
    with pytest.raises(ConfigError) as exc:
        registry().plan(load_config(None, bad).stt)
    assert problems(exc) == [
        "stt.narrowband.threshold: Input should be a valid number, unable to parse string as a number (got 'loud')"
    ]


def test_bad_provider_options_are_named(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("stt:\n  provider: tone\n  tone:\n    treshold: 5\n    min_silence_s: soon\n"
                 "  wisper: {model_path: /m}\n  deepgram: {api_key: k}\n", encoding="utf-8")  # fmt: skip
    stt = load_config(f, {}).stt
    reg = registry(ToneProvider, NarrowbandProvider)
    reg.register(type("WhisperLike", (ToneProvider,), {"name": "whisper", "instances": []}))
    with pytest.raises(ConfigError) as exc:
        reg.plan(stt)
    got = sorted(problems(exc))
    assert got[0].startswith("stt.tone.min_silence_s: Input should be a valid number")
    assert got[1].startswith(
        "stt.tone.treshold: unknown option of tone; did you mean threshold? (options: threshold, "
    )
    assert got[2] == "stt.wisper: no installed provider named 'wisper'; did you mean whisper?"
    assert len(got) == 3  # deepgram is not installed: a warning, not an error


def test_uninstalled_provider_section_is_a_warning() -> None:
    stt = config_from_mapping({"stt": {"provider": "tone", "deepgram": {"api_key": "k"}}}).stt
    plan = registry().plan(stt)
    assert plan.warnings == (
        "stt.deepgram: options for deepgram, which is not installed, are ignored (installed: narrowband, tone)",
    )


def test_language_support_is_checked() -> None:
    stt = config_from_mapping({"stt": {"provider": "tone", "fallback": ["german"], "language": "de-DE"}}).stt
    with pytest.raises(ConfigError) as exc:
        registry(ToneProvider, GermanProvider).plan(stt)
    assert problems(exc) == ["stt.language: 'de-DE' is not supported by tone (it knows: en)"]
    ok = config_from_mapping(
        {"stt": {"provider": "german", "fallback": ["narrowband"], "language": "de-AT"}}
    ).stt
    assert registry(GermanProvider, NarrowbandProvider).plan(ok).names == ("german", "narrowband")


def test_secret_provider_options_are_hidden() -> None:
    stt = config_from_mapping(
        {"stt": {"provider": "tone", "tone": {"api_key": "s3cret-v", "tags": ["t"]}}}
    ).stt
    with pytest.raises(ConfigError) as exc:
        registry().plan(stt)
    assert "s3cret-v" not in str(exc.value)


# --------------------------------------------------------------------------- config sections


def test_provider_sections_in_config() -> None:
    c = config_from_mapping({"stt": {"whisper": {"model_path": "/m", "api_key": "k1"}, "pocketsphinx": None}})
    assert c.stt.provider_sections == {"whisper": {"model_path": "/m", "api_key": "k1"}, "pocketsphinx": {}}
    public = c.to_public_dict()["stt"]
    assert public["whisper"] == {"model_path": "/m", "api_key": "***"}
    assert (public["provider"], public["max_concurrent"]) == ("whisper", 0)
    assert Config().stt.provider_sections == {}
    assert "k1" not in repr(c.to_public_dict())


def test_env_provider_section_keys() -> None:
    c = load_config(
        None, {"SIPREC__STT__WHISPER__MODEL_PATH": "/models/small.en", "siprec__stt__whisper__beam": "no"}
    )
    assert c.stt.provider_sections == {"whisper": {"model_path": "/models/small.en", "beam": "no"}}


@pytest.mark.parametrize(("data", "env", "expect"), [
    ({"stt": {"partals": True}}, {}, "stt.partals: unknown key; did you mean partials?"),
    ({}, {"SIPREC__STT__PROVIDR": "x"}, "stt.providr: unknown key; did you mean provider? (from SIPREC__STT__PROVIDR)"),
    ({"stt": {"whisper": 5}}, {}, "stt.whisper: unknown key (a provider section stt.<name> is a mapping)"),
    ({}, {"SIPREC__STT__WHISPER": "x"}, "stt.whisper: unknown key (a provider section stt.<name> is a mapping) (from SIPREC__STT__WHISPER)"),
])  # fmt: skip
def test_misspelt_stt_keys_are_errors(data: dict, env: dict[str, str], expect: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_mapping(data, env)
    assert problems(exc) == [expect]
