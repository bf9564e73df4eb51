"""Triage rules for causes outside the job's hardware: a failed dependency, numbers that blew
up with no hardware error, and the weakest lead among the remaining causes."""

from __future__ import annotations

from sentinel.knowledge.taxonomy import Category
from sentinel.triage.context import TriageContext
from sentinel.triage.rules.base import (
    ERROR,
    WARNING,
    Rule,
    _strongest,
    _what,
    _where,
)
from sentinel.triage.signals import Signal
from sentinel.triage.verdict import Verdict


class UnreachableServiceIsDependency(Rule):
    """Shared storage, the rendezvous store or the scheduler failing: an outside dependency."""

    def applies(self, ctx: TriageContext) -> bool:
        return bool(ctx.causes_in([Category.DEPENDENCY], WARNING))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        faults = ctx.causes_in([Category.DEPENDENCY], WARNING)
        head = _strongest(faults, ctx)
        server = head.attrs.get("server")
        hosts = len({s.host for s in faults}) or 1
        return Verdict.build(
            category=Category.DEPENDENCY,
            confidence=0.7 if head.severity_rank >= ERROR else 0.5,
            reason=f"{_what(head)}"
            + (f" (server {server})" if server else "")
            + f": a service the job depends on failed, seen from {hosts} host(s).",
            rule=self.name,
            evidence=[head, *(s for s in faults if s is not head)],
            symptoms=ctx.others(faults),
        )


class NumericBlowupWithoutHardwareIsSilentDataCorruption(Rule):
    """NaNs, loss spikes or replicas that disagree, with no hardware error: silent corruption."""

    def applies(self, ctx: TriageContext) -> bool:
        return bool(ctx.causes_in([Category.SILENT_DATA_CORRUPTION], WARNING))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        faults = ctx.causes_in([Category.SILENT_DATA_CORRUPTION], WARNING)
        head = _strongest(faults, ctx)
        return Verdict.build(
            category=Category.SILENT_DATA_CORRUPTION,
            confidence=0.6 if head.severity_rank >= ERROR else 0.5,
            reason=f"{_what(head)} on {_where(head)} and no hardware error reported: "
            "suspect silent data corruption (rerun the step on other hosts to confirm).",
            rule=self.name,
            evidence=[head, *(s for s in faults if s is not head)],
            symptoms=ctx.others(faults),
            culprit_host=head.host,
            culprit_rank=head.rank,
        )


class MostSevereRemainingCauseWins(Rule):
    """Any other cause a pattern names (a warning-level XID, correctable errors...): weakly."""

    @staticmethod
    def leads(ctx: TriageContext) -> list[Signal]:
        # Info-level causes (a corrected PCIe error, "machine check events logged") happen on
        # healthy hosts all day: never a lead, else any hang would be blamed on them. A
        # warning-level one (a corrected DIMM error) is a lead only where the trouble is.
        return [
            s
            for s in ctx.causes
            if s.category_hint and s.severity_rank >= WARNING and ctx.explains_effects(s)
        ]

    def applies(self, ctx: TriageContext) -> bool:
        return bool(self.leads(ctx))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        causes = self.leads(ctx)
        head = _strongest(causes, ctx)
        same = [s for s in causes if s.category_hint == head.category_hint]
        return Verdict.build(
            category=head.category_hint or Category.UNKNOWN,
            confidence=0.3 + 0.07 * head.severity_rank,
            reason=f"Only lesser signs: {_what(head)} on {_where(head)}; a lead, not proof.",
            rule=self.name,
            evidence=[head, *(s for s in same if s is not head)],
            symptoms=ctx.others(same),
            culprit_host=head.host,
            culprit_gpu=head.gpu,
            culprit_rank=head.rank,
        )
