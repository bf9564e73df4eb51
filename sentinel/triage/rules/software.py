"""Triage rules for the application's own faults: the same failure on many ranks, or an
error with no hardware beneath it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sentinel.knowledge.taxonomy import Category
from sentinel.triage.context import TriageContext
from sentinel.triage.rules.base import (
    CRITICAL,
    ERROR,
    WARNING,
    Rule,
    _shadows,
    _strongest,
    _symptom_note,
    _what,
    _where,
)
from sentinel.triage.signals import Signal
from sentinel.triage.verdict import Verdict


def _software_faults(ctx: TriageContext) -> list[Signal]:
    return ctx.causes_in([Category.SOFTWARE_BUG], WARNING)


class SameTracebackOnManyRanksIsSoftwareBug(Rule):
    """Every rank failing the same way is the program, not one machine (even with XID 13)."""

    def groups(self, ctx: TriageContext) -> dict[str, list[Signal]]:
        groups: dict[str, list[Signal]] = defaultdict(list)
        for signal in _software_faults(ctx):
            if signal.xid is None:
                groups[signal.signature].append(signal)
        return groups

    @staticmethod
    def spread(group: Sequence[Signal]) -> int:
        streams = {(s.host, s.rank) for s in group if s.host or s.rank is not None}
        return len(streams) if streams else len(group)

    def applies(self, ctx: TriageContext) -> bool:
        return any(self.spread(g) >= 2 for g in self.groups(ctx).values())

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        group = max(self.groups(ctx).values(), key=self.spread)
        spread = self.spread(group)
        # App-caused XIDs (13, 31, 43) are what the bad kernel did to the GPU: same evidence.
        app_xids = [s for s in _software_faults(ctx) if s.xid is not None]
        evidence = [*group, *app_xids]
        symptoms = ctx.others(evidence)
        # The app-caused XIDs count too: a bug seen on one host's tracebacks so far but
        # raising XIDs on several hosts is no single host's.
        hosts = {s.host for s in evidence if s.host}
        head = group[0]
        return Verdict.build(
            category=Category.SOFTWARE_BUG,
            confidence=0.9 if spread >= 4 else 0.82,
            reason=f"The same failure ({head.signature[:160]}) on {spread} ranks/processes: "
            f"the program, not one machine"
            + (f"; {len(app_xids)} app-caused XID(s) agree" if app_xids else "")
            + ".",
            rule=self.name,
            evidence=evidence,
            symptoms=symptoms,
            culprit_host=next(iter(hosts)) if len(hosts) == 1 else None,
        )


class ApplicationErrorIsSoftwareBug(Rule):
    """A traceback, OOM or illegal access with no hardware under it: the application failed."""

    def applies(self, ctx: TriageContext) -> bool:
        return bool(_software_faults(ctx))

    def verdict(self, ctx: TriageContext) -> Verdict | None:
        faults = _software_faults(ctx)
        head = _strongest(faults, ctx)
        evidence = [head, *(s for s in faults if s is not head)]
        symptoms = ctx.others(evidence)
        confidence = {CRITICAL: 0.8, ERROR: 0.75, WARNING: 0.5}.get(head.severity_rank, 0.4)
        if head.family == "oom":
            confidence += 0.05
        # The same fault (the same XID, the same message) on several hosts is the program
        # everywhere, not the first host that happened to report it.
        alike = [
            s
            for s in faults
            if (s.xid == head.xid if head.xid is not None else s.signature == head.signature)
        ]
        alone = len({s.host for s in alike}) == 1
        if alone and head.host:
            # A crashed rank's queue pairs are gone: its peers' failed completions follow it.
            symptoms = [*symptoms, *_shadows(ctx, head.host, evidence)]
        return Verdict.build(
            category=Category.SOFTWARE_BUG,
            confidence=confidence,
            reason=f"{_what(head)} on {_where(head)} with no hardware fault beneath it"
            + ("" if alone else f" (and on {len({s.host for s in alike}) - 1} more host(s))")
            + f"{_symptom_note(symptoms, head.host)}.",
            rule=self.name,
            evidence=evidence,
            symptoms=symptoms,
            culprit_host=head.host if alone else None,
            culprit_gpu=head.gpu if alone and len({s.gpu for s in alike}) == 1 else None,
            culprit_rank=head.rank if alone and len(alike) == 1 else None,
        )
