"""Fixtures for flight-recorder tests: the real PyTorch dumps copied into the repo."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "flight-recorder"
SCENARIOS = ("healthy", "hang", "hang_cascade", "mismatch", "wrong_op")
FORMATS = ("raw", "fixed", "json")


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


def dump_dir(scenario: str, fmt: str) -> Path:
    return FIXTURES / scenario / fmt
