"""The keyword-trie matcher finds what trying every pattern would, and the knowledge package
loads on a GPU host without the service."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sentinel.knowledge import PatternSpec, default_knowledge
from sentinel.knowledge.keywords import trie_regex
from sentinel.knowledge.matcher import Found

REPO = Path(__file__).resolve().parents[2]
CATALOG = default_knowledge().patterns
LINES = [line for spec in CATALOG.patterns for line in (*spec.examples, *spec.counter_examples)]


def _every_pattern(text: str) -> list[Found]:
    """What the matcher stands for: every pattern tried, the first of each family kept."""
    found: list[Found] = []
    done: set[str] = set()
    for spec in CATALOG.patterns:
        match = spec.compiled.search(text) if spec.family not in done else None
        if match is not None:
            done.add(spec.family)
            found.append((spec, match))
    return found


def _names(found: list[Found]) -> list[str]:
    return [spec.name for spec, _ in found]


@pytest.mark.parametrize("line", LINES)
def test_the_matcher_finds_what_trying_every_pattern_finds(line: str) -> None:
    assert _names(CATALOG.matcher.matches(line)) == _names(_every_pattern(line))


def test_a_line_without_any_keyword_is_tried_against_no_pattern() -> None:
    line = "step 1200 | tokens/s 412345 | lr 2.9e-4 | mfu 41.2%"
    assert CATALOG.matcher.prefilter.search(line.lower()) is None
    assert CATALOG.matcher.candidates(line.lower()) == []


def test_nccl_info_chatter_is_not_read() -> None:
    line = "gpu-1:881:1020 [3] NCCL INFO NET/IB : Got completion from peer x with status=12"
    assert CATALOG.matcher.matches(line) == []


def test_the_trie_matches_the_longest_word_at_each_position() -> None:
    pattern = re.compile(trie_regex(["ab", "abc", "b", "a.b"]))
    assert [m.group(0) for m in pattern.finditer("abc a.b ab b")] == ["abc", "a.b", "ab", "b"]


def test_a_pattern_without_a_literal_word_is_refused() -> None:
    with pytest.raises(ValueError, match="literal word"):
        PatternSpec(
            name="digits", family="host", regex=r"\d+ [A-Z]+", role="cause", severity="error"
        )


def test_the_agent_and_the_knowledge_load_without_the_services_dependencies() -> None:
    code = (
        "import sys; sys.path.insert(0, '.'); "
        "import sentinel_agent.agent, sentinel_agent.cli; "
        "from sentinel.knowledge import default_knowledge; default_knowledge().patterns.matcher; "
        "service = ('fastapi', 'starlette', 'sqlalchemy', 'alembic', 'polars', 'numba', "
        "'jinja2', 'sentinel.triage', 'sentinel.db', 'sentinel.api', 'sentinel.incidents', "
        "'sentinel.ingest'); "
        "loaded = [m for m in sys.modules if m.startswith(service)]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-I", "-c", code], cwd=REPO, check=True)
