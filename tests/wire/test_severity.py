"""Severity: the four values stored and sent, ranked, and read from labels arriving from outside."""

from __future__ import annotations

import pytest

from sentinel.wire.severity import Severity


def test_the_values_are_those_stored_and_sent() -> None:
    assert [s.value for s in Severity] == ["info", "warning", "error", "critical"]


def test_a_severity_ranks_above_the_lesser_ones() -> None:
    assert [s.rank for s in Severity] == [0, 1, 2, 3]
    assert Severity.CRITICAL.rank > Severity.ERROR.rank > Severity.WARNING.rank


@pytest.mark.parametrize(
    ("label", "parsed"),
    [("critical", Severity.CRITICAL), ("info", Severity.INFO), ("Critical", None), ("", None)],
)
def test_a_label_is_a_severity_only_as_spelt(label: str, parsed: Severity | None) -> None:
    assert Severity.parse(label) is parsed
    assert Severity.parse(None) is None
    assert Severity.parse(label, Severity.WARNING) is (parsed or Severity.WARNING)
