"""The `harness` fixture of the STT pipeline tests: builds SttService harnesses and closes them after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.stt.harness import Factory, Harness, make_harness
from tests.unit.stt.tone_provider import NarrowbandProvider, ToneProvider


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Factory]:
    ToneProvider.instances.clear()
    NarrowbandProvider.instances.clear()
    made: list[Harness] = []

    async def factory(stt: dict[str, Any], **kw: Any) -> Harness:
        h = await make_harness(tmp_path, stt, **kw)
        made.append(h)
        return h

    yield factory
    for h in made:
        await h.service.close()
