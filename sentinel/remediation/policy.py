"""Remediation rules: small named classes, pure over a preloaded context, in an ordered policy.

The first rule that returns a proposal wins; guards come first so that a cap or an escalation
overrides the category's usual remedy. A host taken out of a job then gets its repair from a
second, smaller policy of the same shape (reboot, GPU reset, or a human). Thresholds are
settings (RemediationSettings).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Final, Literal

from sentinel.knowledge import default_knowledge
from sentinel.knowledge.taxonomy import CATEGORIES, Category
from sentinel.remediation.settings import RemediationSettings


class Action(StrEnum):
    none = "none"  # nothing to do (planned work, or already recovering)
    restart = "restart"  # requeue from the last checkpoint on the same hosts
    # the launcher restarts the ranks on the same allocation (no requeue); issue 17 item 4
    restart_in_place = "restart_in_place"
    # restart on the code version that last trained (the launcher in place, else a requeue)
    roll_back = "roll_back"
    # restart from the checkpoint skipping the data batches where the job keeps failing (the
    # launcher in place, else a requeue)
    skip_data = "skip_data"
    exclude_and_restart = "exclude_and_restart"  # drain the culprit, requeue without it
    hold = "hold"  # wait for a condition (fabric healthy), then restart
    escalate = "escalate"  # stop automating: a human decides


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
    step: int | None = None  # the job's step when it was decided (where it failed)


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
    reboots_last_hour: int = 0
    gpu_resets_last_hour: int = 0
    # Every cause of the verdict only warns (degraded.leading_indicator): the job runs on.
    leading_only: bool = False
    # Every cause is an InfiniBand link the agent saw go down and come back up (ACTIVE again
    # at its next poll): the port recovered by itself.
    link_flapped: bool = False
    # The job's code version now (its latest heartbeat's), and the last version under which a
    # checkpoint became durable; None where the job's heartbeats carry no version.
    code_version: str | None = None
    trained_version: str | None = None

    def restarts(self) -> list[PastDecision]:
        """The job's restarts in the window; planned work (an operator's restart in place for
        a configuration or dataset update) is no sign that restarts do not help it."""
        return [
            p
            for p in self.past
            if p.incident_category != Category.PLANNED
            and p.action
            in (
                Action.restart,
                Action.exclude_and_restart,
                Action.hold,
                Action.restart_in_place,
                Action.roll_back,
                Action.skip_data,
            )
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


Repair = Literal["reboot", "reset_gpu"]
# NVIDIA's actions a reboot answers (a VM's reboot is the guest's; the adapter reboots the node).
REBOOT_ACTIONS: Final = frozenset({"RESTART_BM", "RESTART_VM"})


@dataclass(frozen=True)
class RepairProposal:
    """What brings an excluded host back: a scheduler step, or None (a human repairs it)."""

    step: Repair | None
    rule: str
    reason: str
    gpu: str | None = None


@dataclass(frozen=True)
class Proposal:
    action: Action
    rule: str
    reason: str
    exclude_hosts: tuple[str, ...] = ()
    host_action: str | None = None
    repair: RepairProposal | None = None
    code_version: str | None = None  # roll_back: the version to restart on
    skip_steps: tuple[int, int] | None = None  # skip_data: the steps whose batches to skip


class NamedRule:
    """The shape every remediation rule shares (the policy's rules, the repair rules, the
    degraded indicators, the swap rules): a sentence for a class name, which is the `rule` its
    result records, and a docstring that says why the rule exists. Decisions answer once, first
    answer wins (`propose`); detectors run every one and may find several things (degraded's
    `find`, like the flight recorder's). Triage's rules have the same name and docstring but
    two methods, `applies` and `verdict`: a verdict records the rules that applied and passed,
    and triage imports nothing of remediation."""

    @property
    def name(self) -> str:
        return type(self).__name__


class Rule(NamedRule, ABC):
    """Proposes what to do about an incident, or passes to the next rule."""

    @abstractmethod
    def propose(self, ctx: RemediationContext) -> Proposal | None: ...

    def _p(self, action: Action, reason: str, **kw: object) -> Proposal:
        return Proposal(action, self.name, reason, **kw)  # type: ignore[arg-type]


class PlannedWorkNeedsNothing(Rule):
    """Announced maintenance stopped the job on purpose: nothing to remedy."""

    def propose(self, ctx: RemediationContext) -> Proposal | None:
        if ctx.category != Category.PLANNED:
            return None
        return self._p(Action.none, "announced maintenance: the interruption was planned")


class LeaveDegradedHostsToTheSwap(Rule):
    """A host that only warns (a PSU without redundancy, a stopped fan, IB errors, an XID to
    reset at the next opportunity) is not worth stopping the job for: the proactive swap takes
    it out at the job's next checkpoint (remediation/swap.py)."""

    def propose(self, ctx: RemediationContext) -> Proposal | None:
        if not ctx.leading_only or not ctx.culprit_host or not ctx.settings.swap.enabled:
            return None
        return self._p(
            Action.none,
            f"{ctx.category.value} on {ctx.culprit_host} only warns: the job runs on, and the "
            "proactive swap takes the host out at its next durable checkpoint",
        )


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


class RollBackACrashLoopToTheVersionThatTrained(Rule):
    """The same software error again after a restart, on a code version other than the one the
    durable checkpoint was written under: the bug came with the new version (a deterministic
    bug repeats on every restart), so the job restarts from its checkpoint on the last version
    that trained instead of waiting for a fix (ByteRobust rolls the faulty code back the same
    way). Once per error in the window: the same error after the rollback, or on the version
    that trained, is not the new version's, and EscalateRepeatedSoftwareBug stops the loop."""

    def propose(self, ctx: RemediationContext) -> Proposal | None:
        if ctx.category != Category.SOFTWARE_BUG:
            return None
        same = _same_fault(ctx)  # the test EscalateRepeatedSoftwareBug makes for a software bug
        if len(same) < ctx.settings.software_bug_restarts:
            return None
        failing, trained = ctx.code_version, ctx.trained_version
        if not failing or not trained or failing == trained:
            return None
        if any(p.action == Action.roll_back for p in same):
            return None
        return self._p(
            Action.roll_back,
            f"the same software error again after {len(same)} restart(s), on code version "
            f"{failing} (the durable checkpoint was written under {trained}): roll back, "
            f"restart from checkpoint step {ctx.checkpoint_step} on {trained}, the last "
            "version that trained",
            code_version=trained,
        )


class SkipTheDataWhereTheSameStepFailsAgain(Rule):
    """The same software error again after a restart, at the step where it failed last time,
    on the same code (or code of no known version): a failure tied to the data at that step (a
    bad sample or batch that crashes it, a loss that spikes to NaN there) repeats on every
    restart from the checkpoint, so the job restarts from it skipping the batches up to a margin
    past that step. PaLM did this for its loss spikes (restarted ~100 steps before, skipped
    ~200-500 batches: they did not recur at the same point). Once per error in the window:
    the same error after the skip is not the data's, and EscalateRepeatedSoftwareBug stops the
    loop."""

    def propose(self, ctx: RemediationContext) -> Proposal | None:
        if ctx.category != Category.SOFTWARE_BUG:
            return None
        same = _same_fault(ctx)  # the test EscalateRepeatedSoftwareBug makes for a software bug
        if not same or len(same) < ctx.settings.software_bug_restarts:
            return None
        if ctx.code_version and ctx.trained_version and ctx.code_version != ctx.trained_version:
            return None  # a new version's loop: rolled back, or escalated once it was
        if any(p.action == Action.skip_data for p in same):
            return None
        last = max(same, key=lambda p: p.at)
        failing, checkpoint = ctx.current_step, ctx.checkpoint_step
        tolerance = ctx.settings.skip_data_tolerance_steps
        # The step reported last is the last one done: the batch that fails is the next one, so
        # a job that fails before it finishes a step after its checkpoint has failing == it.
        if failing is None or checkpoint is None or last.step is None or failing < checkpoint:
            return None
        if abs(failing - last.step) > tolerance:
            return None
        skip = (checkpoint + 1, max(failing, last.step) + ctx.settings.skip_data_margin_steps)
        return self._p(
            Action.skip_data,
            f"the same software error again after {len(same)} restart(s), at step {failing} "
            f"(step {last.step} last time; within {tolerance}): tied to the data there; "
            f"restart from checkpoint step {checkpoint} skipping the batches of steps "
            f"{skip[0]}-{skip[1]} (the failing step + {ctx.settings.skip_data_margin_steps}, "
            "as PaLM skipped the batches around its loss spikes)",
            skip_steps=skip,
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


class RestartInPlaceAfterALinkFlap(Rule):
    """An InfiniBand link that flapped and is ACTIVE again needs no host change: the job's
    collectives broke on it, and the ranks restart where they are (a transient network fault).
    Once per fault in the window: the same link flapping again is a bad cable or NIC, and the
    rules after this one exclude its host."""

    def propose(self, ctx: RemediationContext) -> Proposal | None:
        if not ctx.settings.in_place or ctx.category != Category.NIC or not ctx.link_flapped:
            return None
        if any(p.action == Action.restart_in_place for p in _same_fault(ctx)):
            return None
        where = f" on {ctx.culprit_host}" if ctx.culprit_host else ""
        return self._p(
            Action.restart_in_place,
            f"an InfiniBand link{where} flapped and is up again: nothing to replace; the "
            f"launcher restarts the ranks in place from checkpoint step {ctx.checkpoint_step} "
            "(same allocation, no requeue); the same link again excludes the host",
        )


class CapDrainsPerHour(Rule):
    """A fleet-wide event must not drain the cluster host by host."""

    def propose(self, ctx: RemediationContext) -> Proposal | None:
        if not CATEGORIES[ctx.category].host_must_leave or not ctx.culprit_host:
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
    """Link errors across many hosts: a restart now would fail on the same fabric, so wait
    until it has been quiet."""

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
    """Storage, the scheduler or another outside service failed: no restart fixes it."""

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
        if (
            not CATEGORIES[ctx.category].host_must_leave
            or not ctx.culprit_host
            or ctx.spare_hosts != 0
        ):
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
    """A fault in one host's hardware comes back wherever the job meets that host again: drain
    it and restart without it."""

    def propose(self, ctx: RemediationContext) -> Proposal | None:
        if not CATEGORIES[ctx.category].host_must_leave or not ctx.culprit_host:
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


# Faults a restart of the ranks on the same hosts may clear: nothing names a host, and
# nothing outside the job must change first.
TRANSIENT: Final = frozenset(
    {Category.NCCL_WATCHDOG_TIMEOUT, Category.SOFTWARE_BUG, Category.UNKNOWN}
)


def _in_place_candidate(ctx: RemediationContext) -> bool:
    """A software error names the host it was seen on, which is not to blame for it; a hang
    traced to a host is (ExcludeTheRankThatHung takes it out)."""
    if ctx.category == Category.NCCL_WATCHDOG_TIMEOUT and ctx.culprit_host:
        return False
    return ctx.settings.in_place and ctx.category in TRANSIENT


def _same_fault(ctx: RemediationContext) -> list[PastDecision]:
    """This job's restarts in the window for the same fault: the same category and signature
    (the first cause line with numbers blanked, as for software bugs; a watchdog timeout has
    no cause line, so any earlier one on the job is the same)."""
    return [
        p
        for p in ctx.restarts()
        if p.incident_category == ctx.category.value and p.signature == ctx.signature
    ]


class RequeueARepeatedInPlaceRestart(Rule):
    """The same transient fault again after an in-place restart in the window: restarting the
    ranks where they are did not clear it, so the job is requeued from its checkpoint (a fresh
    allocation), the path it takes without in-place restarts. After the guards: the same
    software error again is a crash loop (EscalateRepeatedSoftwareBug escalates it, the
    in-place restart counting as its restart), which a requeue would only repeat (`sentinel
    simulate`: requeuing it first cost 21 more crashes and 0.25 points of ETTR)."""

    def propose(self, ctx: RemediationContext) -> Proposal | None:
        if not _in_place_candidate(ctx):
            return None
        same = _same_fault(ctx)
        if not same or any(p.action != Action.restart_in_place for p in same):
            return None
        return self._p(
            Action.restart,
            f"{ctx.category.value} again within {ctx.settings.restart_window_s / 3600:g} h of "
            f"an in-place restart for the same signature "
            f"({max(p.at for p in same):%Y-%m-%dT%H:%M:%SZ}): restarting in place did not "
            f"clear it; requeue from checkpoint step {ctx.checkpoint_step}",
        )


class RestartInPlaceWhenTransient(Rule):
    """A transient fault needs no host change: the launcher restarts the ranks where they are
    (keeping the allocation, skipping the queue). Once per fault in the window: a repeat is
    requeued (RequeueARepeatedInPlaceRestart) or escalated (the guards)."""

    def propose(self, ctx: RemediationContext) -> Proposal | None:
        if not _in_place_candidate(ctx):
            return None
        if any(p.action == Action.restart_in_place for p in _same_fault(ctx)):
            return None
        return self._p(
            Action.restart_in_place,
            f"{ctx.category.value}, no host to blame: the launcher restarts the ranks in place "
            f"from checkpoint step {ctx.checkpoint_step} (same allocation, no requeue)",
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
    """The last rule, so the policy always answers: what no rule above knows a remedy for is a
    human's."""

    def propose(self, ctx: RemediationContext) -> Proposal | None:
        return self._p(
            Action.escalate,
            f"no automatic remedy for {ctx.category.value} without a culprit: a human decides",
        )


class RepairRule(NamedRule, ABC):
    """Says how a host that a proposal drains comes back, or passes."""

    @abstractmethod
    def propose(self, ctx: RemediationContext, proposal: Proposal) -> RepairProposal | None: ...

    def _r(self, step: Repair | None, reason: str, gpu: str | None = None) -> RepairProposal:
        return RepairProposal(step, self.name, reason, gpu)


class CapRebootsPerHour(RepairRule):
    """A fleet-wide event must not reboot the cluster host by host."""

    def propose(self, ctx: RemediationContext, proposal: Proposal) -> RepairProposal | None:
        cap = ctx.settings.max_reboots_per_hour
        if proposal.host_action not in REBOOT_ACTIONS or ctx.reboots_last_hour < cap:
            return None
        return self._r(
            None,
            f"{ctx.reboots_last_hour} hosts rebooted in the last hour (cap {cap}): "
            "left drained for a human",
        )


class CapGpuResetsPerHour(RepairRule):
    """A fleet-wide event must not reset the cluster's GPUs one by one."""

    def propose(self, ctx: RemediationContext, proposal: Proposal) -> RepairProposal | None:
        cap = ctx.settings.max_gpu_resets_per_hour
        if proposal.host_action != "RESET_GPU" or ctx.gpu_resets_last_hour < cap:
            return None
        return self._r(
            None,
            f"{ctx.gpu_resets_last_hour} GPUs reset in the last hour (cap {cap}): "
            "left drained for a human",
        )


class RebootWhereNvidiaSaysRestart(RepairRule):
    """NVIDIA's catalog asks for a reboot (RESTART_BM, RESTART_VM): the host comes back once it
    has rebooted and reports no hard fault."""

    def propose(self, ctx: RemediationContext, proposal: Proposal) -> RepairProposal | None:
        if proposal.host_action not in REBOOT_ACTIONS:
            return None
        return self._r(
            "reboot",
            f"NVIDIA's action is {proposal.host_action}: reboot once the job has left; "
            "in service again when it is back and its agent reports no hard fault",
        )


class ResetGpuWhereNvidiaSaysReset(RepairRule):
    """Only the GPU named: without one, which GPU to reset is a guess."""

    def propose(self, ctx: RemediationContext, proposal: Proposal) -> RepairProposal | None:
        if proposal.host_action != "RESET_GPU" or not ctx.culprit_gpu:
            return None
        return self._r(
            "reset_gpu",
            f"NVIDIA's action is RESET_GPU: reset GPU {ctx.culprit_gpu} once the job has "
            "left; in service again when its agent reports no hard fault",
            gpu=ctx.culprit_gpu,
        )


class LeaveTheRepairToAHuman(RepairRule):
    """The last repair rule: what no automatic step answers (a part to replace, an inspection)
    is repaired by a human, who marks the host repaired."""

    def propose(self, ctx: RemediationContext, proposal: Proposal) -> RepairProposal | None:
        return self._r(
            None, f"{proposal.host_action or 'INSPECT'}: a human repairs it and marks it repaired"
        )


@dataclass(frozen=True)
class RemediationPolicy:
    rules: Sequence[Rule]
    repair_rules: Sequence[RepairRule] = ()

    def decide(self, ctx: RemediationContext) -> Proposal:
        for rule in self.rules:
            proposal = rule.propose(ctx)
            if proposal is not None:
                return self._with_repair(ctx, proposal)
        raise AssertionError("unreachable: EscalateWhatNoRuleCovers always proposes")

    def _with_repair(self, ctx: RemediationContext, proposal: Proposal) -> Proposal:
        """A host this proposal drains gets its repair from the first repair rule that says."""
        if proposal.action != Action.exclude_and_restart or not proposal.exclude_hosts:
            return proposal
        for rule in self.repair_rules:
            repair = rule.propose(ctx, proposal)
            if repair is not None:
                return replace(proposal, repair=repair)
        return proposal


DEFAULT_POLICY: Final = RemediationPolicy(
    (
        PlannedWorkNeedsNothing(),
        LeaveDegradedHostsToTheSwap(),
        CapRestartsPerJob(),
        RollBackACrashLoopToTheVersionThatTrained(),
        SkipTheDataWhereTheSameStepFailsAgain(),
        EscalateRepeatedSoftwareBug(),
        RestartInPlaceAfterALinkFlap(),
        CapDrainsPerHour(),
        HoldWhileTheFabricIsDown(),
        EscalateExternalDependency(),
        WaitWhenNoSpareHost(),
        ExcludeHostOnHardwareFault(),
        ExcludeTheRankThatHung(),
        RequeueARepeatedInPlaceRestart(),
        RestartInPlaceWhenTransient(),
        RestartFromCheckpoint(),
        EscalateWhatNoRuleCovers(),
    ),
    (
        CapRebootsPerHour(),
        CapGpuResetsPerHour(),
        RebootWhereNvidiaSaysRestart(),
        ResetGpuWhereNvidiaSaysReset(),
        LeaveTheRepairToAHuman(),
    ),
)
