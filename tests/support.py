"""Shared test helpers (import as `from tests.support import ...`): where the fixtures are, and how a missing tool or service is reported.

A test that needs a tool (sipp, openssl) or a service (RabbitMQ, Redis, PostgreSQL) calls `require(...)`: locally a
missing one skips the test with the reason; in CI (CI=true) it fails, so nothing is silently left untested.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SIPREC_SHARED_DIR", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, what: str) -> None:
    """Skip locally, fail in CI, when `condition` is false."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required for this test but missing in CI: {what}")
    pytest.skip(f"missing: {what}")
