"""Each remediation rule and repair rule alone: one case where it proposes, one where it passes.

The timelines (test_remediation.py, test_repairs.py, test_in_place.py) hold the policy's order
through the service; these hold each rule's own condition over a context built by `ctx`, which
has a default for every field (a hard GPU fault on host a of a running job) so each test says
only what the rule reads. The degraded indicators and swap rules are tested alone in
test_swap_rules.py; tests/test_every_rule_is_tested.py fails when a rule is tested nowhere.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sentinel.knowledge.taxonomy import Category
from sentinel.remediation.policy import (
    Action,
    CapDrainsPerHour,
    CapGpuResetsPerHour,
    CapRebootsPerHour,
    CapRestartsPerJob,
    EscalateExternalDependency,
    EscalateRepeatedSoftwareBug,
    EscalateWhatNoRuleCovers,
    ExcludeHostOnHardwareFault,
    ExcludeTheRankThatHung,
    HoldWhileTheFabricIsDown,
    LeaveDegradedHostsToTheSwap,
    LeaveTheRepairToAHuman,
    PastDecision,
    PlannedWorkNeedsNothing,
    Proposal,
    RebootWhereNvidiaSaysRestart,
    RemediationContext,
    RequeueARepeatedInPlaceRestart,
    ResetGpuWhereNvidiaSaysReset,
    RestartFromCheckpoint,
    RestartInPlaceAfterALinkFlap,
    RestartInPlaceWhenTransient,
    RollBackACrashLoopToTheVersionThatTrained,
    Rule,
    SkipTheDataWhereTheSameStepFailsAgain,
    WaitWhenNoSpareHost,
)

T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
GPU = "00000000:9B:00.0"
_DEFAULTS = RemediationContext(
    category=Category.FAULTY_GPU,
    culprit_host="a",
    culprit_gpu=GPU,
    confidence=0.9,
    xids=(79,),
    signature=None,
    job_id="job-1",
    job_hosts=16,
    checkpoint_step=100,
    current_step=150,
    past=(),
    drains_last_hour=0,
    spare_hosts=4,
)


def ctx(settings: dict[str, Any] | None = None, **overrides: Any) -> RemediationContext:
    """A hard GPU fault on host a of a running job with spares; override what the rule reads
    (`settings` updates the remediation settings)."""
    context = replace(_DEFAULTS, **overrides)
    if settings:
        context = replace(context, settings=context.settings.model_copy(update=settings))
    return context


def past(
    action: Action,
    category: Category = Category.SOFTWARE_BUG,
    signature: str | None = "KeyError: 'step'",
    minutes_ago: float = 10,
    step: int | None = None,
) -> PastDecision:
    return PastDecision(
        category.value, action, "done", T0 - timedelta(minutes=minutes_ago), signature, step
    )


def proposes(rule: Rule, context: RemediationContext, action: Action) -> Proposal:
    proposal = rule.propose(context)
    assert proposal is not None, f"{rule.name} should propose"
    assert (proposal.action, proposal.rule) == (action, rule.name)
    return proposal


# ---------------------------------------------------------------- guards


def test_planned_work_needs_nothing() -> None:
    proposes(PlannedWorkNeedsNothing(), ctx(category=Category.PLANNED), Action.none)


def test_an_unplanned_fault_is_not_planned_work() -> None:
    assert PlannedWorkNeedsNothing().propose(ctx()) is None


def test_a_host_that_only_warns_is_left_to_the_swap() -> None:
    proposes(LeaveDegradedHostsToTheSwap(), ctx(leading_only=True), Action.none)


def test_a_host_that_only_warns_is_not_left_when_swaps_are_off() -> None:
    swap_off = _DEFAULTS.settings.swap.model_copy(update={"enabled": False})
    off = ctx(leading_only=True, settings={"swap": swap_off})
    assert LeaveDegradedHostsToTheSwap().propose(off) is None


def test_restarts_per_job_are_capped() -> None:
    restarts = tuple(past(Action.restart, Category.FAULTY_GPU) for _ in range(4))
    proposal = proposes(CapRestartsPerJob(), ctx(past=restarts), Action.escalate)
    assert "cap 4" in proposal.reason


def test_restarts_under_the_cap_pass() -> None:
    restarts = tuple(past(Action.restart, Category.FAULTY_GPU) for _ in range(3))
    assert CapRestartsPerJob().propose(ctx(past=restarts)) is None


def crash_loop(**overrides: Any) -> RemediationContext:
    """The same software error again after a restart, on version B; A wrote the checkpoint."""
    fields: dict[str, Any] = {
        "category": Category.SOFTWARE_BUG,
        "signature": "KeyError: 'step'",
        "past": (past(Action.restart_in_place),),
        "code_version": "B",
        "trained_version": "A",
    }
    return ctx(**(fields | overrides))


def test_a_crash_loop_on_a_new_version_is_rolled_back_to_the_version_that_trained() -> None:
    proposal = proposes(RollBackACrashLoopToTheVersionThatTrained(), crash_loop(), Action.roll_back)
    assert proposal.code_version == "A"
    assert "on code version B" in proposal.reason and "step 100 on A" in proposal.reason


def test_no_roll_back_where_the_version_trained_or_is_unknown() -> None:
    rule = RollBackACrashLoopToTheVersionThatTrained()
    assert rule.propose(crash_loop(code_version="A")) is None  # the loop is on the old code
    assert rule.propose(crash_loop(code_version=None)) is None  # the job reports no version
    assert rule.propose(crash_loop(trained_version=None)) is None  # nothing trained under one


def test_no_roll_back_of_a_first_error_another_error_or_a_second_time() -> None:
    rule = RollBackACrashLoopToTheVersionThatTrained()
    assert rule.propose(crash_loop(past=())) is None  # not a repeat yet: restarted first
    assert rule.propose(crash_loop(signature="ValueError: shape")) is None
    assert rule.propose(crash_loop(category=Category.UNKNOWN)) is None
    # Rolled back once for this error in the window: the same error again is escalated.
    again = crash_loop(past=(past(Action.restart_in_place), past(Action.roll_back)))
    assert rule.propose(again) is None


def same_step_again(**overrides: Any) -> RemediationContext:
    """The same software error again after a restart, at step 150 as last time; the durable
    checkpoint is step 100, and the version the same."""
    fields: dict[str, Any] = {
        "category": Category.SOFTWARE_BUG,
        "signature": "KeyError: 'step'",
        "past": (past(Action.restart_in_place, step=150),),
        "code_version": "A",
        "trained_version": "A",
    }
    return ctx(**(fields | overrides))


def test_the_same_error_at_the_same_step_restarts_skipping_that_data() -> None:
    rule = SkipTheDataWhereTheSameStepFailsAgain()
    proposal = proposes(rule, same_step_again(), Action.skip_data)
    assert proposal.skip_steps == (101, 350)  # from the checkpoint to the failing step + 200
    assert "at step 150 (step 150 last time" in proposal.reason
    assert "skipping the batches of steps 101-350" in proposal.reason
    # Within the tolerance, and where the job reports no version at all.
    near = same_step_again(current_step=153, code_version=None, trained_version=None)
    assert proposes(rule, near, Action.skip_data).skip_steps == (101, 353)
    wider = same_step_again(settings={"skip_data_margin_steps": 10})
    assert proposes(rule, wider, Action.skip_data).skip_steps == (101, 160)
    # It fails in the first step after the checkpoint: that step's batch is the first skipped.
    first = same_step_again(current_step=100, past=(past(Action.restart, step=100),))
    assert proposes(rule, first, Action.skip_data).skip_steps == (101, 300)


def test_no_skip_at_another_step_on_another_version_or_a_second_time() -> None:
    rule = SkipTheDataWhereTheSameStepFailsAgain()
    assert rule.propose(same_step_again(current_step=160)) is None  # not where it failed
    assert rule.propose(same_step_again(past=(past(Action.restart_in_place),))) is None
    assert rule.propose(same_step_again(past=())) is None  # a first error: restarted first
    assert rule.propose(same_step_again(signature="ValueError: shape")) is None
    assert rule.propose(same_step_again(category=Category.UNKNOWN)) is None
    assert rule.propose(same_step_again(code_version="B")) is None  # the new version's
    assert rule.propose(same_step_again(checkpoint_step=None)) is None  # nothing to restart
    # Skipped once for this error in the window: the same error again is escalated.
    again = same_step_again(
        past=(past(Action.restart_in_place, step=150), past(Action.skip_data, step=150))
    )
    assert rule.propose(again) is None


def test_a_repeated_software_bug_is_escalated() -> None:
    bug = ctx(
        category=Category.SOFTWARE_BUG,
        signature="KeyError: 'step'",
        past=(past(Action.restart),),
    )
    proposes(EscalateRepeatedSoftwareBug(), bug, Action.escalate)


def test_a_different_software_bug_is_not_a_repeat() -> None:
    bug = ctx(
        category=Category.SOFTWARE_BUG,
        signature="ValueError: shape",
        past=(past(Action.restart),),
    )
    assert EscalateRepeatedSoftwareBug().propose(bug) is None


def test_a_link_that_flapped_restarts_in_place() -> None:
    flap = ctx(category=Category.NIC, link_flapped=True, settings={"in_place": True})
    proposes(RestartInPlaceAfterALinkFlap(), flap, Action.restart_in_place)


def test_the_same_link_flapping_again_is_not_restarted_in_place() -> None:
    again = ctx(
        category=Category.NIC,
        link_flapped=True,
        settings={"in_place": True},
        past=(past(Action.restart_in_place, Category.NIC, signature=None),),
    )
    assert RestartInPlaceAfterALinkFlap().propose(again) is None


def test_drains_per_hour_are_capped() -> None:
    proposes(CapDrainsPerHour(), ctx(drains_last_hour=8), Action.escalate)


def test_drains_under_the_cap_pass() -> None:
    assert CapDrainsPerHour().propose(ctx(drains_last_hour=7)) is None


def test_hold_while_the_fabric_is_down() -> None:
    fabric = ctx(category=Category.NETWORK_SWITCH_CABLE, culprit_host=None)
    proposes(HoldWhileTheFabricIsDown(), fabric, Action.hold)


def test_one_nic_is_not_the_fabric() -> None:
    assert HoldWhileTheFabricIsDown().propose(ctx(category=Category.NIC)) is None


def test_an_external_dependency_is_escalated() -> None:
    lustre = ctx(category=Category.DEPENDENCY, culprit_host=None)
    proposes(EscalateExternalDependency(), lustre, Action.escalate)


def test_a_host_fault_is_no_external_dependency() -> None:
    assert EscalateExternalDependency().propose(ctx()) is None


def test_no_spare_host_waits_for_a_human() -> None:
    proposal = proposes(WaitWhenNoSpareHost(), ctx(spare_hosts=0), Action.escalate)
    assert proposal.exclude_hosts == ("a",)


def test_a_scheduler_that_does_not_count_spares_is_not_waited_on() -> None:
    assert WaitWhenNoSpareHost().propose(ctx(spare_hosts=None)) is None


# ---------------------------------------------------------------- remedies


def test_a_hardware_fault_excludes_its_host() -> None:
    proposal = proposes(ExcludeHostOnHardwareFault(), ctx(), Action.exclude_and_restart)
    assert (proposal.exclude_hosts, proposal.host_action) == (("a",), "RESTART_BM")


def test_a_hardware_fault_without_a_host_excludes_nothing() -> None:
    assert ExcludeHostOnHardwareFault().propose(ctx(culprit_host=None)) is None


def test_the_rank_that_hung_is_excluded() -> None:
    hang = ctx(category=Category.NCCL_WATCHDOG_TIMEOUT, culprit_gpu=None, xids=())
    proposal = proposes(ExcludeTheRankThatHung(), hang, Action.exclude_and_restart)
    assert (proposal.exclude_hosts, proposal.host_action) == (("a",), "INSPECT")


def test_a_hang_with_no_culprit_excludes_nobody() -> None:
    hang = ctx(category=Category.NCCL_WATCHDOG_TIMEOUT, culprit_host=None)
    assert ExcludeTheRankThatHung().propose(hang) is None


def test_a_transient_fault_again_after_an_in_place_restart_is_requeued() -> None:
    again = ctx(
        category=Category.NCCL_WATCHDOG_TIMEOUT,
        culprit_host=None,
        signature=None,
        settings={"in_place": True},
        past=(past(Action.restart_in_place, Category.NCCL_WATCHDOG_TIMEOUT, signature=None),),
    )
    proposes(RequeueARepeatedInPlaceRestart(), again, Action.restart)


def test_a_first_transient_fault_is_not_requeued() -> None:
    first = ctx(
        category=Category.NCCL_WATCHDOG_TIMEOUT, culprit_host=None, settings={"in_place": True}
    )
    assert RequeueARepeatedInPlaceRestart().propose(first) is None


def test_a_transient_fault_restarts_in_place() -> None:
    hang = ctx(
        category=Category.NCCL_WATCHDOG_TIMEOUT, culprit_host=None, settings={"in_place": True}
    )
    proposes(RestartInPlaceWhenTransient(), hang, Action.restart_in_place)


def test_no_in_place_restart_when_it_is_off() -> None:
    hang = ctx(category=Category.NCCL_WATCHDOG_TIMEOUT, culprit_host=None)
    assert RestartInPlaceWhenTransient().propose(hang) is None


def test_restart_from_checkpoint() -> None:
    bug = ctx(category=Category.SOFTWARE_BUG, culprit_host=None)
    proposal = proposes(RestartFromCheckpoint(), bug, Action.restart)
    assert "checkpoint step 100" in proposal.reason


def test_silent_corruption_without_a_host_is_not_restarted_on_the_same_hosts() -> None:
    sdc = ctx(category=Category.SILENT_DATA_CORRUPTION, culprit_host=None)
    assert RestartFromCheckpoint().propose(sdc) is None


def test_what_no_rule_covers_is_escalated() -> None:
    proposes(EscalateWhatNoRuleCovers(), ctx(category=Category.UNKNOWN), Action.escalate)


def test_what_no_rule_covers_names_the_category_for_the_human() -> None:
    # The last rule always proposes; its reason is what the human reads first.
    proposal = proposes(EscalateWhatNoRuleCovers(), ctx(category=Category.SSD), Action.escalate)
    assert "ssd" in proposal.reason


# ---------------------------------------------------------------- repairs of a drained host


def drain(host_action: str) -> Proposal:
    return Proposal(
        Action.exclude_and_restart, "ExcludeHostOnHardwareFault", "test", ("a",), host_action
    )


def test_reboots_per_hour_are_capped() -> None:
    repair = CapRebootsPerHour().propose(ctx(reboots_last_hour=4), drain("RESTART_BM"))
    assert repair is not None and repair.step is None


def test_reboots_under_the_cap_pass() -> None:
    assert CapRebootsPerHour().propose(ctx(reboots_last_hour=3), drain("RESTART_BM")) is None


def test_gpu_resets_per_hour_are_capped() -> None:
    repair = CapGpuResetsPerHour().propose(ctx(gpu_resets_last_hour=8), drain("RESET_GPU"))
    assert repair is not None and repair.step is None


def test_gpu_resets_cap_does_not_hold_a_reboot() -> None:
    assert CapGpuResetsPerHour().propose(ctx(gpu_resets_last_hour=8), drain("RESTART_BM")) is None


def test_reboot_where_nvidia_says_restart() -> None:
    repair = RebootWhereNvidiaSaysRestart().propose(ctx(), drain("RESTART_VM"))
    assert repair is not None and repair.step == "reboot"


def test_no_reboot_where_nvidia_says_reset_the_gpu() -> None:
    assert RebootWhereNvidiaSaysRestart().propose(ctx(), drain("RESET_GPU")) is None


def test_reset_the_gpu_where_nvidia_says_reset() -> None:
    repair = ResetGpuWhereNvidiaSaysReset().propose(ctx(), drain("RESET_GPU"))
    assert repair is not None and (repair.step, repair.gpu) == ("reset_gpu", GPU)


def test_no_gpu_reset_without_a_gpu_named() -> None:
    assert ResetGpuWhereNvidiaSaysReset().propose(ctx(culprit_gpu=None), drain("RESET_GPU")) is None


def test_the_repair_is_left_to_a_human() -> None:
    repair = LeaveTheRepairToAHuman().propose(ctx(), drain("CONTACT_SUPPORT"))
    assert repair is not None and repair.step is None
    assert repair.reason.startswith("CONTACT_SUPPORT")


def test_a_human_repair_without_an_action_says_inspect() -> None:
    repair = LeaveTheRepairToAHuman().propose(ctx(), drain("INSPECT"))
    assert repair is not None and repair.reason.startswith("INSPECT")
