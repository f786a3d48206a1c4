"""Fixtures shared by every test; helpers live in tests/support.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import FIXTURES, require


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    require(FIXTURES.is_dir(), f"shared fixtures at {FIXTURES}")
    return FIXTURES
