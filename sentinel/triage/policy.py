"""The triage policy: the ordered rules, first verdict wins; secondary verdicts on request."""

from __future__ import annotations

from collections.abc import Sequence

from sentinel.knowledge.taxonomy import Category
from sentinel.triage.context import TriageContext
from sentinel.triage.rules import (
    AnnouncedMaintenanceIsPlanned,
    ApplicationErrorIsSoftwareBug,
    BlameHardGpuXidOverPeerTimeouts,
    BlameHostHardwareOverPeerTimeouts,
    BlameNvSwitchOverTheGpusOnItsBaseboard,
    BlamePcieSwitchOverTheGpusBehindIt,
    BlamePowerOrChassisOverWhatItTookDown,
    CollectiveErrorWithNothingDeeper,
    CrashedWorkerBeforeAnyTimeout,
    LinkErrorsOnManyHostsAreTheFabric,
    LinkErrorsOnOneHostAreItsNic,
    LinkErrorsWithoutHostsFollowTheirPattern,
    MostSevereRemainingCauseWins,
    NumericBlowupWithoutHardwareIsSilentDataCorruption,
    PeersBlamingOneHostIsItsNic,
    Rule,
    SameTracebackOnManyRanksIsSoftwareBug,
    SilentHostIsHostLoss,
    StragglersSlowEveryCollective,
    SymptomPointsToACause,
    ThinEvidenceIsUnknown,
    UnreachableServiceIsDependency,
    WatchdogTimeoutWithNothingDeeper,
)
from sentinel.triage.verdict import Verdict


class Policy:
    """An ordered list of rules; the first that applies and concludes gives the verdict."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        if not rules or not isinstance(rules[-1], ThinEvidenceIsUnknown):
            raise ValueError("a policy must end with ThinEvidenceIsUnknown so it always answers")
        self.rules = tuple(rules)

    @property
    def names(self) -> list[str]:
        return [rule.name for rule in self.rules]

    def decide(self, ctx: TriageContext) -> Verdict:
        fired: list[str] = []
        for rule in self.rules:
            if not rule.applies(ctx):
                continue
            fired.append(rule.name)
            verdict = rule.verdict(ctx)
            if verdict is not None:
                verdict.rules_fired = fired
                return verdict
        raise AssertionError("unreachable: ThinEvidenceIsUnknown always concludes")

    def decide_all(self, ctx: TriageContext, limit: int = 4) -> list[Verdict]:
        """The primary verdict, then verdicts for unrelated causes the primary does not explain."""
        verdicts = [self.decide(ctx)]
        rest = ctx.without(verdicts[0].explained)
        while len(verdicts) < limit and rest.causes:
            verdict = self.decide(rest)
            if verdict.category == Category.UNKNOWN or not any(
                e.role == "cause" for e in verdict.evidence
            ):
                break
            verdicts.append(verdict)
            rest = rest.without(verdict.explained)
        return verdicts


# Hardware first (a dead GPU explains every peer's timeout), then what many ranks agree on,
# then lost hosts and links, outside services, the application, and symptoms last.
DEFAULT_POLICY = Policy(
    [
        AnnouncedMaintenanceIsPlanned(),
        BlamePowerOrChassisOverWhatItTookDown(),
        BlameNvSwitchOverTheGpusOnItsBaseboard(),
        BlamePcieSwitchOverTheGpusBehindIt(),
        BlameHardGpuXidOverPeerTimeouts(),
        BlameHostHardwareOverPeerTimeouts(),
        SameTracebackOnManyRanksIsSoftwareBug(),
        SilentHostIsHostLoss(),
        PeersBlamingOneHostIsItsNic(),
        LinkErrorsOnManyHostsAreTheFabric(),
        LinkErrorsOnOneHostAreItsNic(),
        LinkErrorsWithoutHostsFollowTheirPattern(),
        UnreachableServiceIsDependency(),
        ApplicationErrorIsSoftwareBug(),
        NumericBlowupWithoutHardwareIsSilentDataCorruption(),
        MostSevereRemainingCauseWins(),
        CrashedWorkerBeforeAnyTimeout(),
        StragglersSlowEveryCollective(),
        WatchdogTimeoutWithNothingDeeper(),
        SymptomPointsToACause(),
        CollectiveErrorWithNothingDeeper(),
        ThinEvidenceIsUnknown(),
    ]
)
