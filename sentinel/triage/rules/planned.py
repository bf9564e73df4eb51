"""Triage rules for planned work: announced maintenance explains the interruption."""

from __future__ import annotations

from sentinel.knowledge.taxonomy import Category
from sentinel.triage.context import TriageContext
from sentinel.triage.rules.base import (
    ERROR,
    Rule,
)
from sentinel.triage.verdict import Verdict


class AnnouncedMaintenanceIsPlanned(Rule):
    """Maintenance was announced for the hosts involved: the interruption was planned."""

    def applies(self, ctx: TriageContext) -> bool:
        return bool(ctx.causes_in([Category.PLANNED]))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        planned = ctx.causes_in([Category.PLANNED])
        named = {s.host for s in planned if s.host}
        job_wide = any(s.host is None for s in planned)
        hard = [
            s
            for s in ctx.causes
            if s.category_hint not in {Category.PLANNED, Category.HOST_MAINTENANCE, None}
            and s.severity_rank >= ERROR
            and (job_wide or s.host not in named)
        ]
        if hard:
            return None  # a fault the announcement does not cover: let the fault rules speak
        culprit = next(iter(named)) if len(named) == 1 else None
        rest = [s for s in ctx.signals if s not in planned]
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
