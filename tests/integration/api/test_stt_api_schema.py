"""The config and stt operations of /api/openapi.json checked by schemathesis (every check, bounded examples) against
a running server wired with a config reloader (reading a file equal to the running config) and an SttService on
the "energy" test provider, with a finished job in its history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from siprec.appliers import register_components
from siprec.config import config_from_mapping
from siprec.reload import ConfigReloader
from siprec.stt.pipeline import SttService
from siprec.stt.registry import ProviderRegistry
from tests.integration.api import test_api_openapi as openapi_test
from tests.integration.api.conftest import api_server
from tests.integration.api.test_stt_api import PIPER, EnergyProvider

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "schemathesis-key"


async def test_schemathesis_finds_nothing_in_config_and_stt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {"auth": {"api_keys": [KEY], "require_auth_for_reads": True}, "rtp": {"rtp_timeout_s": 600}}
    EnergyProvider.gate, EnergyProvider.fail, EnergyProvider.files = None, False, []
    registry = ProviderRegistry(entry_points=False)
    registry.register(EnergyProvider)
    async with api_server(tmp_path, config) as api:
        server = api.server
        path = tmp_path / "siprec.yaml"
        path.write_text(json.dumps(server.config.model_dump(mode="json")), encoding="utf-8")
        reloader = ConfigReloader(path, server.config, env={})
        register_components(reloader, api=server.api, admission=server.admission)
        server.api.reloader = reloader
        service = SttService(
            config_from_mapping({"stt": {"provider": "energy"}}), server.bus.publish, registry
        )
        await service.start()
        server.api.stt = service
        try:
            headers = {"X-API-Key": KEY, "Content-Type": "audio/wav"}
            async with api.http.post(
                api.url("/api/stt/submit"), data=(PIPER / "s01.wav").read_bytes(), headers=headers
            ) as r:
                assert r.status == 202
            call = await api.call()
            auth = ("-H", f"X-API-Key: {KEY}")
            monkeypatch.setattr(openapi_test, "TAGS", ("config",))
            text = await openapi_test.run_schemathesis(api, tmp_path, call.call_id, *auth)
            assert "No issues found" in text
            # Every check but "schema-valid data is accepted": bytes that fit {type: string, format: binary} are
            # rarely a WAV or FLAC file, and an upload that is not audio is refused (400 INVALID_AUDIO) by design.
            monkeypatch.setattr(openapi_test, "TAGS", ("stt",))
            text = await openapi_test.run_schemathesis(
                api, tmp_path, call.call_id, *auth, "--exclude-checks", "positive_data_acceptance"
            )
            # (schemathesis warns that random Call-IDs are not found and random bytes are not audio: expected)
            assert "Failures:" not in text and " passed" in text
            assert await call.bye() == 200
            call.close()
        finally:
            await service.close(jobs_timeout_s=10)
    assert reloader.reloads >= 1 and all(o.ok for o in [reloader.last] if o is not None)
