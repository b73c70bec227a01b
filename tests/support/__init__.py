"""Shared test support: pytest plugins (listed in tests/conftest.py) and helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def ci_is_set() -> bool:
    """True when the env var CI is set to something other than empty/0/false/no."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(message: str):
    """A needed service/tool is missing: fail under CI, skip elsewhere."""
    if ci_is_set():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
