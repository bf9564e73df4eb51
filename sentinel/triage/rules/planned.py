"""Triage rules for planned work: announced maintenance explains the interruption."""

from __future__ import annotations

from collections.abc import Sequence

from sentinel.knowledge.taxonomy import CATEGORIES, Category, Scope
from sentinel.triage.context import TriageContext
from sentinel.triage.rules.base import (
    ERROR,
    Rule,
)
from sentinel.triage.signals import PLANNED_RESTART, Signal
from sentinel.triage.verdict import Verdict


class AnnouncedMaintenanceIsPlanned(Rule):
    """Maintenance was announced for the hosts involved: the interruption was planned.

    A maintenance window takes its hosts down: whatever happens on them is its effect. A
    planned restart of the job's processes (kind PLANNED_RESTART) explains only what stopping
    and starting processes causes (ranks stopping, stalls, NCCL errors from peers going away:
    categories of Scope.JOB), never a hardware, host or fabric fault on its hosts, which gets
    its own verdict (and its host's exclusion) as at any other time."""

    def applies(self, ctx: TriageContext) -> bool:
        return bool(ctx.causes_in([Category.PLANNED]))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        planned = ctx.causes_in([Category.PLANNED])
        named = {s.host for s in planned if s.host}
        hard = [s for s in ctx.causes if _unannounced(s, planned)]
        if hard:
            return None  # a fault the announcement does not cover: let the fault rules speak
        culprit = next(iter(named)) if len(named) == 1 else None
        rest = [s for s in ctx.signals if s not in planned and not _beyond_restarts(s, planned)]
        return Verdict.build(
            category=Category.PLANNED,
            confidence=0.85,
            reason=f"Maintenance was announced ({planned[0].text.strip()[:120]}); "
            f"{len(rest)} other signal(s) are its expected effect.",
            rule=self.name,
            evidence=planned,
            symptoms=rest,
            culprit_host=culprit,
        )


def _unannounced(signal: Signal, announced: Sequence[Signal]) -> bool:
    """A fault (error or worse) that no announcement explains."""
    hint = signal.category_hint
    if hint is None or hint is Category.PLANNED or signal.severity_rank < ERROR:
        return False
    if any(a.kind == PLANNED_RESTART for a in announced) and _of_the_job(signal):
        return False  # what stopping and starting the job's processes causes
    maintenance = [a for a in announced if a.kind != PLANNED_RESTART]
    if not maintenance:
        return True
    if hint is Category.HOST_MAINTENANCE:
        return False  # hosts go down in maintenance: one lost is what was announced
    # Only a window naming the fault's host covers it; one for the whole job names none.
    return any(a.host is None for a in maintenance) or signal.host not in {
        a.host for a in maintenance
    }


def _beyond_restarts(signal: Signal, announced: Sequence[Signal]) -> bool:
    """A signal that announced restarts alone cannot be the effect of: not theirs to explain."""
    return all(a.kind == PLANNED_RESTART for a in announced) and not _of_the_job(signal)


def _of_the_job(signal: Signal) -> bool:
    hint = signal.category_hint
    return hint is None or CATEGORIES[hint].scope is Scope.JOB
