"""Every rule in the product is tested alone: a new rule without its test fails `make test`.

The rules are read from the product's own registries (the ordered policies, the degraded
indicators, the flight recorder's detectors), and every concrete subclass of a rule base must be
in one of them (a rule written but never registered is dead code). Each must be named in the
file that tests the rules of its kind one by one, with a context builder, and say in its
docstring why it exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pytest

from sentinel.flightrec import analyze
from sentinel.remediation import degraded, swap
from sentinel.remediation import policy as remediation
from sentinel.triage import policy as triage
from sentinel.triage.rules import Rule as TriageRule

TESTS = Path(__file__).resolve().parent

# Each registry of rules, and the file that tests its rules one by one.
REGISTRIES: dict[str, tuple[Iterable[object], Path]] = {
    "triage": (triage.DEFAULT_POLICY.rules, TESTS / "triage" / "test_each_rule.py"),
    "remediation": (
        remediation.DEFAULT_POLICY.rules,
        TESTS / "remediation" / "test_each_policy_rule.py",
    ),
    "repair": (
        remediation.DEFAULT_POLICY.repair_rules,
        TESTS / "remediation" / "test_each_policy_rule.py",
    ),
    "degraded": (degraded.INDICATORS, TESTS / "remediation" / "test_swap_rules.py"),
    "swap": (swap.DEFAULT_SWAP_POLICY.rules, TESTS / "remediation" / "test_swap_rules.py"),
    "flight recorder": (
        (*analyze.DISAGREEMENT_RULES, *analyze.HEALTH_RULES),
        TESTS / "flightrec" / "test_each_detector.py",
    ),
}
BASES: tuple[type, ...] = (
    TriageRule,
    remediation.Rule,
    remediation.RepairRule,
    swap.SwapRule,
    degraded.Indicator,
)


def registered() -> set[type]:
    return {type(rule) for rules, _ in REGISTRIES.values() for rule in rules}


def concrete_subclasses(base: type) -> set[type]:
    """Rule classes a product module defines: private ones (`_HardwareOverSymptoms`) are
    shared bodies, not rules."""
    found: set[type] = set()
    for sub in base.__subclasses__():
        if not sub.__module__.startswith("sentinel."):
            continue  # a test's own subclass
        if not sub.__name__.startswith("_"):
            found.add(sub)
        found |= concrete_subclasses(sub)
    return found


def untested(rules: Iterable[object], test_file: Path) -> list[str]:
    """The rules whose class name the test file never mentions."""
    text = test_file.read_text(encoding="utf-8")
    names = {type(rule).__name__ for rule in rules}
    return sorted(n for n in names if not re.search(rf"\b{re.escape(n)}\b", text))


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_every_rule_is_named_in_its_test_file(kind: str) -> None:
    rules, test_file = REGISTRIES[kind]
    assert untested(rules, test_file) == [], f"{kind} rules without a test in {test_file.name}"


def test_every_rule_class_is_registered() -> None:
    defined = set().union(*(concrete_subclasses(base) for base in BASES))
    detectors = {
        value
        for value in vars(analyze).values()
        if isinstance(value, type)
        and value.__module__ == analyze.__name__
        and callable(getattr(value, "find", None))
        and hasattr(value, "kind")
    }
    unregistered = sorted(c.__name__ for c in (defined | detectors) - registered())
    assert unregistered == []


def test_every_rule_says_why() -> None:
    """A rule's docstring is its reason for being: the one place a reader learns why it
    decides what it does (a class's docstring is not inherited)."""
    silent = sorted(c.__name__ for c in registered() if not (c.__doc__ or "").strip())
    assert silent == []


def test_a_rule_without_a_test_is_caught(tmp_path: Path) -> None:
    class ExcludeEveryHostOnTuesdays(remediation.Rule):
        def propose(self, ctx: remediation.RemediationContext) -> None:
            return None

    tests = tmp_path / "test_rules.py"
    tests.write_text("def test_planned() -> None:\n    PlannedWorkNeedsNothing()\n")
    rules = [remediation.PlannedWorkNeedsNothing(), ExcludeEveryHostOnTuesdays()]
    assert untested(rules, tests) == ["ExcludeEveryHostOnTuesdays"]
