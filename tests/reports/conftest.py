"""One simulated 54-day history per test session (written by the real `sentinel simulate`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sentinel.cli import app
from sentinel.reports.simulation import Assumptions, Outcome, run

SEED = 405


@dataclass(frozen=True)
class Simulated:
    outcome: Outcome
    url: str
    output: str


@pytest.fixture(scope="session")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Simulated:
    path: Path = tmp_path_factory.mktemp("simulated") / "history.db"
    result = CliRunner().invoke(app, ["simulate", str(path), "--seed", str(SEED)])
    assert result.exit_code == 0, result.output
    return Simulated(run(Assumptions(), SEED), f"sqlite:///{path}", result.output)
