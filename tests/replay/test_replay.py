"""Every recorded failure replays to the expected incidents: category and culprit exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel.replay.recording import load_expectation
from sentinel.replay.runner import case_dirs, replay
from sentinel.triage.taxonomy import Category

CASES = case_dirs([Path(__file__).parent / "cases"])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_replay_case(case: Path) -> None:
    outcome = await replay(case)
    seen = [(o.category, o.culprit_host, round(o.detected_s, 1), o.rule) for o in outcome.observed]
    assert outcome.ok, f"{outcome.problems}; observed {seen}"


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 30


def test_the_corpus_covers_every_category() -> None:
    seen = {i.category for c in CASES for i in load_expectation(c / "expect.yaml").incidents}
    assert {c.value for c in Category} <= seen
    assert any(not load_expectation(c / "expect.yaml").incidents for c in CASES)
