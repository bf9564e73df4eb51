"""Triage rules: small named decisions over an incident's signals, each giving a verdict.

A rule says when it applies and what it concludes; the policy (policy.py) tries them in
order and the first verdict wins. Rules never read raw text: pasted excerpts and live agent
events both arrive as Signals, so one policy serves the CLI, the service and replays.

One module per concern: base (the rule's shape and the pieces rules share), planned,
hardware, software, fabric (lost hosts and links), outside (dependencies, silent corruption,
the weakest lead) and symptoms. Their order is the policy's (DEFAULT_POLICY in policy.py).
"""

from sentinel.triage.rules.base import Rule
from sentinel.triage.rules.fabric import (
    LinkErrorsOnManyHostsAreTheFabric,
    LinkErrorsOnOneHostAreItsNic,
    LinkErrorsWithoutHostsFollowTheirPattern,
    PeersBlamingOneHostIsItsNic,
    SilentHostIsHostLoss,
)
from sentinel.triage.rules.hardware import (
    BlameHardGpuXidOverPeerTimeouts,
    BlameHostHardwareOverPeerTimeouts,
    BlameNvSwitchOverTheGpusOnItsBaseboard,
    BlamePcieSwitchOverTheGpusBehindIt,
    BlamePowerOrChassisOverWhatItTookDown,
)
from sentinel.triage.rules.outside import (
    MostSevereRemainingCauseWins,
    NumericBlowupWithoutHardwareIsSilentDataCorruption,
    UnreachableServiceIsDependency,
)
from sentinel.triage.rules.planned import AnnouncedMaintenanceIsPlanned
from sentinel.triage.rules.software import (
    ApplicationErrorIsSoftwareBug,
    SameTracebackOnManyRanksIsSoftwareBug,
)
from sentinel.triage.rules.symptoms import (
    CollectiveErrorWithNothingDeeper,
    CrashedWorkerBeforeAnyTimeout,
    StragglersSlowEveryCollective,
    SymptomPointsToACause,
    ThinEvidenceIsUnknown,
    WatchdogTimeoutWithNothingDeeper,
)

__all__ = [
    "AnnouncedMaintenanceIsPlanned",
    "ApplicationErrorIsSoftwareBug",
    "BlameHardGpuXidOverPeerTimeouts",
    "BlameHostHardwareOverPeerTimeouts",
    "BlameNvSwitchOverTheGpusOnItsBaseboard",
    "BlamePcieSwitchOverTheGpusBehindIt",
    "BlamePowerOrChassisOverWhatItTookDown",
    "CollectiveErrorWithNothingDeeper",
    "CrashedWorkerBeforeAnyTimeout",
    "LinkErrorsOnManyHostsAreTheFabric",
    "LinkErrorsOnOneHostAreItsNic",
    "LinkErrorsWithoutHostsFollowTheirPattern",
    "MostSevereRemainingCauseWins",
    "NumericBlowupWithoutHardwareIsSilentDataCorruption",
    "PeersBlamingOneHostIsItsNic",
    "Rule",
    "SameTracebackOnManyRanksIsSoftwareBug",
    "SilentHostIsHostLoss",
    "StragglersSlowEveryCollective",
    "SymptomPointsToACause",
    "ThinEvidenceIsUnknown",
    "UnreachableServiceIsDependency",
    "WatchdogTimeoutWithNothingDeeper",
]
