"""Every recorded failure replays to the expected incidents: category and culprit exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel.replay.runner import case_dirs, replay

CASES = case_dirs([Path(__file__).parent / "cases"])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_replay_case(case: Path) -> None:
    outcome = await replay(case)
    seen = [(o.category, o.culprit_host, round(o.detected_s, 1), o.rule) for o in outcome.observed]
    assert outcome.ok, f"{outcome.problems}; observed {seen}"


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 2
