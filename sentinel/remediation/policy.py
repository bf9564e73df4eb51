"""Remediation rules: small named classes, pure over a preloaded context, in an ordered policy.

The first rule that returns a proposal wins; guards come first so that a cap or an escalation
overrides the category's usual remedy. Thresholds are settings (RemediationSettings).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final

from sentinel.knowledge import default_knowledge
from sentinel.knowledge.taxonomy import Category
from sentinel.settings import RemediationSettings


class Action(StrEnum):
    none = "none"  # nothing to do (planned work, or already recovering)
    restart = "restart"  # requeue from the last checkpoint on the same hosts
    exclude_and_restart = "exclude_and_restart"  # drain the culprit, requeue without it
    hold = "hold"  # wait for a condition (fabric healthy), then restart
    escalate = "escalate"  # stop automating: a human decides


# Faults that live in one host's hardware: that host must leave the job.
HOST_HARDWARE: Final = frozenset(
    {
        Category.FAULTY_GPU,
        Category.GPU_HBM_MEMORY,
        Category.GPU_SRAM_MEMORY,
        Category.GPU_SYSTEM_PROCESSOR,
        Category.NIC,
        Category.HOST_MAINTENANCE,
        Category.GPU_THERMAL,
        Category.SSD,
        Category.POWER_SUPPLY,
        Category.SERVER_CHASSIS,
        Category.IO_EXPANSION_BOARD,
        Category.CPU,
        Category.SYSTEM_MEMORY,
    }
)
# NVIDIA's immediate actions that say the GPU or host must be reset before it is used again.
_HARD_ACTIONS: Final = (
    "RESTART_BM",
    "RESTART_VM",
    "RESET_GPU",
    "WORKFLOW_XID_48",
    "WORKFLOW_NVLINK_ERR",
    "WORKFLOW_NVLINK5_ERR",
    "CONTACT_SUPPORT",
)


@dataclass(frozen=True)
class PastDecision:
    incident_category: str
    action: str
    status: str
    at: datetime
    signature: str | None


@dataclass(frozen=True)
class RemediationContext:
    """Everything the rules may look at, loaded before they run (replays stay deterministic)."""

    category: Category
    culprit_host: str | None
    culprit_gpu: str | None
    confidence: float
    xids: tuple[int, ...]
    signature: str | None  # what makes two software failures "the same error"
    job_id: str | None
    job_hosts: int
    checkpoint_step: int | None
    current_step: int | None
    past: tuple[PastDecision, ...]  # this job's decisions in the restart window
    drains_last_hour: int
    spare_hosts: int | None  # None when the scheduler does not say
    settings: RemediationSettings = field(default_factory=RemediationSettings)

    def restarts(self) -> list[PastDecision]:
        return [
            p
            for p in self.past
            if p.action in (Action.restart, Action.exclude_and_restart, Action.hold)
        ]

    def nvidia_actions(self) -> list[str]:
        table = default_knowledge().xids
        return [e.action for e in (table.get(x) for x in self.xids) if e is not None]

    def host_needs(self) -> str:
        """What the excluded host needs before it returns, from NVIDIA's catalog."""
        actions = self.nvidia_actions()
        for wanted in _HARD_ACTIONS:
            if wanted in actions:
                return wanted
        return "INSPECT"


@dataclass(frozen=True)
class Proposal:
    action: Action
    rule: str
    reason: str
    exclude_hosts: tuple[str, ...] = ()
    host_action: str | None = None


class Rule(ABC):
    @property
    def name(self) -> str:
        return type(self).__name__

    @abstractmethod
    def propose(self, ctx: RemediationContext) -> Proposal | None: ...

    def _p(self, action: Action, reason: str, **kw: object) -> Proposal:
        return Proposal(action, self.name, reason, **kw)  # type: ignore[arg-type]


class PlannedWorkNeedsNothing(Rule):
    def propose(self, ctx: RemediationContext) -> Proposal | None:
        if ctx.category != Category.PLANNED:
            return None
        return self._p(Action.none, "announced maintenance: the interruption was planned")


class CapRestartsPerJob(Rule):
    """A job restarted this often in the window is not being helped by restarts."""

    def propose(self, ctx: RemediationContext) -> Proposal | None:
        n = len(ctx.restarts())
        cap = ctx.settings.max_restarts
        if n < cap:
            return None
        return self._p(
            Action.escalate,
            f"job already restarted {n} times in the last "
            f"{ctx.settings.restart_window_s / 3600:g} h (cap {cap}): a human decides",
        )


class EscalateRepeatedSoftwareBug(Rule):
    """The same software error after a restart will come back: stop the crash loop."""

    def propose(self, ctx: RemediationContext) -> Proposal | None:
        if ctx.category not in (Category.SOFTWARE_BUG, Category.UNKNOWN):
            return None
        same = [
            p
            for p in ctx.restarts()
            if p.incident_category == ctx.category.value
            and (ctx.category == Category.UNKNOWN or p.signature == ctx.signature)
        ]
        allowed = (
            ctx.settings.software_bug_restarts
            if ctx.category == Category.SOFTWARE_BUG
            else ctx.settings.unknown_restarts
        )
        if len(same) < allowed:
            return None
        what = (
            "the same software error"
            if ctx.category == Category.SOFTWARE_BUG
            else "an unexplained failure"
        )
        return self._p(
            Action.escalate,
            f"{what} again after {len(same)} restart(s): "
            "restarting would only repeat it; escalated to a human",
        )


class CapDrainsPerHour(Rule):
    """A fleet-wide event must not drain the cluster host by host."""

    def propose(self, ctx: RemediationContext) -> Proposal | None:
        if ctx.category not in HOST_HARDWARE or not ctx.culprit_host:
            return None
        if ctx.drains_last_hour < ctx.settings.max_drains_per_hour:
            return None
        return self._p(
            Action.escalate,
            f"{ctx.drains_last_hour} hosts drained in the last "
            f"hour (cap {ctx.settings.max_drains_per_hour}): this looks fleet-wide, "
            f"not drained automatically; {ctx.culprit_host} needs a human",
        )


class HoldWhileTheFabricIsDown(Rule):
    def propose(self, ctx: RemediationContext) -> Proposal | None:
        if ctx.category != Category.NETWORK_SWITCH_CABLE:
            return None
        return self._p(
            Action.hold,
            "network fault across many hosts: restarting now would "
            "fail again; restart once the fabric has been quiet for "
            f"{ctx.settings.fabric_quiet_s:g} s",
        )


class EscalateExternalDependency(Rule):
    def propose(self, ctx: RemediationContext) -> Proposal | None:
        if ctx.category != Category.DEPENDENCY:
            return None
        return self._p(
            Action.escalate,
            "an external service (storage, scheduler...) failed: "
            "restarting cannot fix it; its owners must",
        )


class WaitWhenNoSpareHost(Rule):
    """Excluding a host shrinks the job below its size if the cluster has no spare."""

    def propose(self, ctx: RemediationContext) -> Proposal | None:
        if ctx.category not in HOST_HARDWARE or not ctx.culprit_host or ctx.spare_hosts != 0:
            return None
        return self._p(
            Action.escalate,
            f"{ctx.culprit_host} must be excluded but the scheduler "
            "reports no spare host to take its place: drain it by hand once "
            "capacity is found, or shrink the job",
            exclude_hosts=(ctx.culprit_host,),
            host_action=ctx.host_needs(),
        )


class ExcludeHostOnHardwareFault(Rule):
    def propose(self, ctx: RemediationContext) -> Proposal | None:
        if ctx.category not in HOST_HARDWARE or not ctx.culprit_host:
            return None
        gpu = f" GPU {ctx.culprit_gpu}" if ctx.culprit_gpu else ""
        return self._p(
            Action.exclude_and_restart,
            f"{ctx.category.value} on {ctx.culprit_host}{gpu}: drain it ({ctx.host_needs()}) "
            f"and restart from checkpoint step {ctx.checkpoint_step} without it",
            exclude_hosts=(ctx.culprit_host,),
            host_action=ctx.host_needs(),
        )


class ExcludeTheRankThatHung(Rule):
    """A watchdog timeout whose culprit is known (the flight recorder named the rank)."""

    def propose(self, ctx: RemediationContext) -> Proposal | None:
        if ctx.category != Category.NCCL_WATCHDOG_TIMEOUT or not ctx.culprit_host:
            return None
        return self._p(
            Action.exclude_and_restart,
            f"collective hang traced to "
            f"{ctx.culprit_host}: exclude it and restart from checkpoint step "
            f"{ctx.checkpoint_step}",
            exclude_hosts=(ctx.culprit_host,),
            host_action="INSPECT",
        )


class RestartFromCheckpoint(Rule):
    """Software, hangs without a culprit, unknown: restart once on the same hosts."""

    def propose(self, ctx: RemediationContext) -> Proposal | None:
        if ctx.category == Category.SILENT_DATA_CORRUPTION and not ctx.culprit_host:
            return None
        return self._p(
            Action.restart,
            f"{ctx.category.value}: restart from checkpoint step "
            f"{ctx.checkpoint_step} on the same hosts (no host is to blame)",
        )


class EscalateWhatNoRuleCovers(Rule):
    def propose(self, ctx: RemediationContext) -> Proposal | None:
        return self._p(
            Action.escalate,
            f"no automatic remedy for {ctx.category.value} without a culprit: a human decides",
        )


@dataclass(frozen=True)
class RemediationPolicy:
    rules: Sequence[Rule]

    def decide(self, ctx: RemediationContext) -> Proposal:
        for rule in self.rules:
            proposal = rule.propose(ctx)
            if proposal is not None:
                return proposal
        raise AssertionError("unreachable: EscalateWhatNoRuleCovers always proposes")


DEFAULT_POLICY: Final = RemediationPolicy(
    (
        PlannedWorkNeedsNothing(),
        CapRestartsPerJob(),
        EscalateRepeatedSoftwareBug(),
        CapDrainsPerHour(),
        HoldWhileTheFabricIsDown(),
        EscalateExternalDependency(),
        WaitWhenNoSpareHost(),
        ExcludeHostOnHardwareFault(),
        ExcludeTheRankThatHung(),
        RestartFromCheckpoint(),
        EscalateWhatNoRuleCovers(),
    )
)
