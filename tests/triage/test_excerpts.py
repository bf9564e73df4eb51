"""Real-format excerpts (tests/triage/excerpts/*.log) classify to their expected category."""

from __future__ import annotations

from typing import Any

from sentinel.triage.classify import classify_text


def test_excerpt_classifies_as_expected(excerpt: Any) -> None:
    # `excerpt` is parametrized over excerpts/*.log by conftest.pytest_generate_tests.
    verdict = classify_text(excerpt.text)
    assert verdict.category.value == excerpt.expect, verdict.reason
    if excerpt.culprit_host:
        assert verdict.culprit_host == excerpt.culprit_host
    if excerpt.culprit_gpu:
        assert verdict.culprit_gpu == excerpt.culprit_gpu
    if excerpt.expect != "unknown":
        assert verdict.evidence, "a verdict names its evidence"
        assert verdict.confidence > 0
