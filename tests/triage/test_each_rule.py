"""Each triage rule alone: one case where it concludes and one near miss where it stays silent.

The timeline and excerpt tests hold the policy's order; these hold each rule's own condition,
over a context built from a few signals (`sig` has a default for everything, each test says only
what the rule reads). tests/test_every_rule_is_tested.py fails when a rule has no test here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

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
from sentinel.triage.signals import Signal
from sentinel.triage.verdict import Verdict

T0 = datetime(2024, 7, 1, 3, 0, tzinfo=UTC)
GPU_A = "00000000:9B:00.0"
GPU_B = "00000000:BB:00.0"


def sig(
    category: Category | None = Category.FAULTY_GPU,
    *,
    attrs: dict[str, str] | None = None,
    at_s: float | None = 0.0,
    **overrides: Any,
) -> Signal:
    """A cause at error level on host a, at T0; override what the rule under test reads."""
    fields: dict[str, Any] = {
        "kind": "log",
        "family": "test",
        "text": f"{category.value if category else 'a line'} reported",
        "pattern": "test_pattern",
        "category_hint": category,
        "role": "cause",
        "severity": "error",
        "host": "a",
        "time": None if at_s is None else T0 + timedelta(seconds=at_s),
    }
    fields.update(overrides)
    return Signal(**fields, attrs=attrs or {})


def timeout(host: str, rank: int, at_s: float = 60.0, **overrides: Any) -> Signal:
    """A peer's NCCL watchdog timeout: the symptom most faults leave behind."""
    fields: dict[str, Any] = {"family": "nccl", "severity": "error", "rank": rank}
    fields.update(overrides)
    return sig(Category.NCCL_WATCHDOG_TIMEOUT, role="symptom", host=host, at_s=at_s, **fields)


def ctx(*signals: Signal, **job: Any) -> TriageContext:
    return TriageContext.of(signals, **job)


def concludes(rule: Rule, context: TriageContext) -> Verdict:
    assert rule.applies(context), f"{rule.name} should apply"
    verdict = rule.verdict(context)
    assert verdict is not None, f"{rule.name} should conclude"
    assert verdict.rule == rule.name
    return verdict


def silent(rule: Rule, context: TriageContext) -> None:
    assert not rule.applies(context) or rule.verdict(context) is None


# ---------------------------------------------------------------- planned work


def test_announced_maintenance_is_planned() -> None:
    notice = sig(Category.PLANNED, severity="info", text="maintenance window for a")
    verdict = concludes(AnnouncedMaintenanceIsPlanned(), ctx(notice, timeout("b", 8)))
    assert verdict.category == Category.PLANNED
    assert verdict.culprit_host == "a"


def test_announced_maintenance_does_not_cover_a_fault_on_another_host() -> None:
    notice = sig(Category.PLANNED, severity="info")
    silent(AnnouncedMaintenanceIsPlanned(), ctx(notice, sig(Category.FAULTY_GPU, host="b")))


# ---------------------------------------------------------------- hardware


def test_power_or_chassis_is_blamed_over_what_it_took_down() -> None:
    psu = sig(Category.POWER_SUPPLY, family="ipmi")
    gpu = sig(Category.FAULTY_GPU, gpu=GPU_A, xid=79, at_s=1)
    verdict = concludes(BlamePowerOrChassisOverWhatItTookDown(), ctx(psu, gpu, timeout("b", 8)))
    assert verdict.category == Category.POWER_SUPPLY
    assert verdict.culprit_host == "a"


def test_a_power_supply_warning_is_not_blamed() -> None:
    silent(
        BlamePowerOrChassisOverWhatItTookDown(), ctx(sig(Category.POWER_SUPPLY, severity="warning"))
    )


def test_nvswitch_is_blamed_over_the_gpus_on_its_baseboard() -> None:
    sxid = sig(Category.IO_EXPANSION_BOARD, family="nvswitch", severity="critical")
    nvlink = sig(Category.FAULTY_GPU, gpu=GPU_A, xid=74, at_s=1)
    verdict = concludes(BlameNvSwitchOverTheGpusOnItsBaseboard(), ctx(sxid, nvlink))
    assert verdict.category == Category.IO_EXPANSION_BOARD
    assert (verdict.culprit_host, verdict.culprit_gpu) == ("a", None)


def test_nvswitch_leaves_a_gpu_memory_fault_on_its_host_to_the_gpu_rule() -> None:
    sxid = sig(Category.IO_EXPANSION_BOARD, family="nvswitch", severity="critical")
    dbe = sig(Category.GPU_HBM_MEMORY, gpu=GPU_A, xid=48)
    silent(BlameNvSwitchOverTheGpusOnItsBaseboard(), ctx(sxid, dbe))


def test_pcie_switch_is_blamed_over_the_gpus_behind_it() -> None:
    aer = sig(Category.IO_EXPANSION_BOARD, family="pcie")
    gpus = [sig(Category.FAULTY_GPU, gpu=g, xid=79, at_s=1) for g in (GPU_A, GPU_B)]
    verdict = concludes(BlamePcieSwitchOverTheGpusBehindIt(), ctx(aer, *gpus))
    assert verdict.category == Category.IO_EXPANSION_BOARD
    assert verdict.culprit_host == "a"


def test_pcie_switch_beside_one_failing_gpu_is_that_gpus_fall() -> None:
    aer = sig(Category.IO_EXPANSION_BOARD, family="pcie")
    silent(BlamePcieSwitchOverTheGpusBehindIt(), ctx(aer, sig(gpu=GPU_A, xid=79)))


def test_hard_gpu_xid_is_blamed_over_peer_timeouts() -> None:
    xid79 = sig(Category.FAULTY_GPU, kind="xid", family="kernel_xid", gpu=GPU_A, xid=79)
    peers = [timeout(h, rank=8 * i) for i, h in enumerate(["b", "c", "d"], start=1)]
    verdict = concludes(BlameHardGpuXidOverPeerTimeouts(), ctx(xid79, *peers))
    assert (verdict.category, verdict.culprit_host, verdict.culprit_gpu) == (
        Category.FAULTY_GPU,
        "a",
        GPU_A,
    )
    assert verdict.symptoms_total == 3


def test_a_cuda_error_beside_an_app_caused_xid_is_not_a_failing_gpu() -> None:
    app_xid = sig(Category.SOFTWARE_BUG, xid=13, attrs={"cause": "application"})
    cuda = sig(Category.FAULTY_GPU, family="cuda", at_s=1)
    silent(BlameHardGpuXidOverPeerTimeouts(), ctx(app_xid, cuda))


def test_host_hardware_is_blamed_over_peer_timeouts() -> None:
    dimm = sig(Category.SYSTEM_MEMORY, family="edac", attrs={"dimm": "CPU0_DIMM_A1"})
    verdict = concludes(BlameHostHardwareOverPeerTimeouts(), ctx(dimm, timeout("b", 8)))
    assert (verdict.category, verdict.culprit_host) == (Category.SYSTEM_MEMORY, "a")
    assert "DIMM CPU0_DIMM_A1" in verdict.reason


def test_a_corrected_memory_error_is_not_host_hardware_to_blame() -> None:
    silent(
        BlameHostHardwareOverPeerTimeouts(), ctx(sig(Category.SYSTEM_MEMORY, severity="warning"))
    )


# ---------------------------------------------------------------- software


def _traceback(host: str, rank: int) -> Signal:
    return sig(
        Category.SOFTWARE_BUG,
        family="python_traceback",
        host=host,
        rank=rank,
        attrs={"signature": "KeyError: 'step'", "exc_type": "KeyError"},
    )


def test_the_same_traceback_on_many_ranks_is_a_software_bug() -> None:
    verdict = concludes(
        SameTracebackOnManyRanksIsSoftwareBug(), ctx(_traceback("a", 0), _traceback("b", 8))
    )
    assert verdict.category == Category.SOFTWARE_BUG
    assert verdict.culprit_host is None


def test_one_rank_traceback_is_not_many() -> None:
    silent(SameTracebackOnManyRanksIsSoftwareBug(), ctx(_traceback("a", 0)))


def test_an_application_error_without_hardware_is_a_software_bug() -> None:
    oom = sig(Category.SOFTWARE_BUG, family="oom", gpu=GPU_A, rank=3)
    verdict = concludes(ApplicationErrorIsSoftwareBug(), ctx(oom, timeout("b", 8)))
    assert (verdict.category, verdict.culprit_host, verdict.culprit_rank) == (
        Category.SOFTWARE_BUG,
        "a",
        3,
    )


def test_an_info_level_application_line_is_no_software_bug() -> None:
    silent(ApplicationErrorIsSoftwareBug(), ctx(sig(Category.SOFTWARE_BUG, severity="info")))


# ---------------------------------------------------------------- hosts and links


def test_a_silent_host_is_host_loss_and_its_peers_link_errors_its_shadow() -> None:
    gone = sig(Category.HOST_MAINTENANCE, kind="host_silent", family="heartbeat")
    shadow = sig(Category.NIC, host="b", pattern="ib_retry_exceeded", at_s=20)
    verdict = concludes(SilentHostIsHostLoss(), ctx(gone, shadow))
    assert (verdict.category, verdict.culprit_host) == (Category.HOST_MAINTENANCE, "a")
    assert [e.host for e in verdict.symptoms] == ["b"]


def test_a_host_loss_seen_only_as_a_symptom_is_not_concluded() -> None:
    silent(SilentHostIsHostLoss(), ctx(sig(Category.HOST_MAINTENANCE, role="symptom")))


def _blames(reporter: str, peer: str) -> Signal:
    return sig(
        Category.NIC, host=reporter, pattern="nccl_ib_completion_error", attrs={"peer": peer}
    )


def test_peers_blaming_one_host_name_its_nic() -> None:
    verdict = concludes(
        PeersBlamingOneHostIsItsNic(), ctx(_blames("b", "10.0.0.5"), _blames("c", "10.0.0.5"))
    )
    assert (verdict.category, verdict.culprit_host) == (Category.NIC, "10.0.0.5")


def test_one_peer_blaming_a_host_is_not_enough() -> None:
    silent(PeersBlamingOneHostIsItsNic(), ctx(_blames("b", "10.0.0.5")))


def _link_down(host: str | None, category: Category = Category.NETWORK_SWITCH_CABLE) -> Signal:
    return sig(category, family="ib", pattern="ib_link_down", host=host)


def test_link_errors_on_many_hosts_are_the_fabric() -> None:
    verdict = concludes(LinkErrorsOnManyHostsAreTheFabric(), ctx(_link_down("b"), _link_down("c")))
    assert verdict.category == Category.NETWORK_SWITCH_CABLE
    assert verdict.culprit_host is None


def test_link_errors_on_one_host_are_not_the_fabric() -> None:
    silent(LinkErrorsOnManyHostsAreTheFabric(), ctx(_link_down("b")))


def test_link_errors_on_one_host_are_its_nic() -> None:
    verdict = concludes(LinkErrorsOnOneHostAreItsNic(), ctx(_link_down("b", Category.NIC)))
    assert (verdict.category, verdict.culprit_host) == (Category.NIC, "b")


def test_link_errors_on_two_hosts_are_not_one_nic() -> None:
    silent(LinkErrorsOnOneHostAreItsNic(), ctx(_link_down("b"), _link_down("c")))


def test_link_errors_without_hosts_follow_their_pattern() -> None:
    verdict = concludes(LinkErrorsWithoutHostsFollowTheirPattern(), ctx(_link_down(None)))
    assert verdict.category == Category.NETWORK_SWITCH_CABLE


def test_link_errors_naming_a_host_are_left_to_the_host_rules() -> None:
    silent(LinkErrorsWithoutHostsFollowTheirPattern(), ctx(_link_down("b")))


# ---------------------------------------------------------------- outside the job


def test_an_unreachable_service_is_a_dependency() -> None:
    lustre = sig(Category.DEPENDENCY, family="lustre", attrs={"server": "mds01"})
    verdict = concludes(UnreachableServiceIsDependency(), ctx(lustre))
    assert verdict.category == Category.DEPENDENCY
    assert "mds01" in verdict.reason


def test_an_info_level_dependency_line_is_no_failure() -> None:
    silent(UnreachableServiceIsDependency(), ctx(sig(Category.DEPENDENCY, severity="info")))


def test_a_numeric_blowup_without_hardware_is_silent_data_corruption() -> None:
    nan = sig(Category.SILENT_DATA_CORRUPTION, severity="warning", rank=5)
    verdict = concludes(NumericBlowupWithoutHardwareIsSilentDataCorruption(), ctx(nan))
    assert (verdict.category, verdict.culprit_rank) == (Category.SILENT_DATA_CORRUPTION, 5)


def test_an_info_level_loss_note_is_no_corruption() -> None:
    note = sig(Category.SILENT_DATA_CORRUPTION, severity="info")
    silent(NumericBlowupWithoutHardwareIsSilentDataCorruption(), ctx(note))


def test_the_most_severe_remaining_cause_wins_weakly() -> None:
    corrected = sig(Category.SYSTEM_MEMORY, severity="warning")
    verdict = concludes(MostSevereRemainingCauseWins(), ctx(corrected))
    assert (verdict.category, verdict.culprit_host) == (Category.SYSTEM_MEMORY, "a")
    assert verdict.confidence < 0.5


def test_a_lesser_sign_far_from_the_trouble_is_no_lead() -> None:
    # Host b's ranks timed out; a corrected error on healthy host a does not explain that.
    corrected = sig(Category.SYSTEM_MEMORY, severity="warning")
    silent(MostSevereRemainingCauseWins(), ctx(corrected, timeout("b", 8), timeout("c", 16)))


# ---------------------------------------------------------------- symptoms only


def _crash(exitcode: str, at_s: float = 0.0) -> Signal:
    return sig(
        Category.SOFTWARE_BUG,
        role="symptom",
        family="launcher",
        rank=3,
        at_s=at_s,
        attrs={"exitcode": exitcode},
    )


def test_a_worker_that_aborted_before_any_timeout_is_the_program() -> None:
    verdict = concludes(CrashedWorkerBeforeAnyTimeout(), ctx(_crash("-6"), timeout("b", 8)))
    assert (verdict.category, verdict.culprit_host, verdict.culprit_rank) == (
        Category.SOFTWARE_BUG,
        "a",
        3,
    )


def test_a_worker_killed_after_a_timeout_is_its_consequence() -> None:
    silent(CrashedWorkerBeforeAnyTimeout(), ctx(timeout("b", 8, at_s=0), _crash("-6", at_s=60)))


def _straggler(host: str, rank: int, gpu: str | None = None) -> Signal:
    return sig(
        Category.NCCL_WATCHDOG_TIMEOUT,
        role="symptom",
        kind="straggler",
        family="heartbeat",
        host=host,
        gpu=gpu,
        rank=rank,
        text=f"rank {rank} steps in 9.0 s, the rest in 3.0 s",
        attrs={"step_time_s": "9.0"},
    )


def test_stragglers_slow_every_collective() -> None:
    verdict = concludes(StragglersSlowEveryCollective(), ctx(_straggler("a", 3, gpu="5")))
    assert (verdict.category, verdict.culprit_host, verdict.culprit_gpu, verdict.culprit_rank) == (
        Category.NCCL_WATCHDOG_TIMEOUT,
        "a",
        "5",
        3,
    )


def test_stragglers_before_a_hang_are_left_to_the_hang_rule() -> None:
    silent(StragglersSlowEveryCollective(), ctx(_straggler("a", 3), timeout("b", 8)))


def test_a_watchdog_timeout_with_nothing_deeper_names_the_flight_recorders_rank() -> None:
    stuck = sig(None, role="context", kind="fr_verdict", family="flight_recorder", rank=5, gpu="1")
    verdict = concludes(
        WatchdogTimeoutWithNothingDeeper(), ctx(timeout("b", 8), timeout("c", 16), stuck)
    )
    assert (verdict.category, verdict.culprit_host, verdict.culprit_gpu, verdict.culprit_rank) == (
        Category.NCCL_WATCHDOG_TIMEOUT,
        "a",
        "1",
        5,
    )


def test_a_watchdog_timeout_with_nothing_deeper_names_the_rank_on_another_collective() -> None:
    """The one rank whose timeout names an older collective than its peers' is where the hang
    began; its GPU is named where its evidence carries one (the event's, from the agent)."""
    odd = timeout("c", 21, gpu="5", attrs={"seqnum": "87"})
    peers = [timeout(h, r, attrs={"seqnum": "88"}) for h, r in (("a", 3), ("b", 8))]
    verdict = concludes(WatchdogTimeoutWithNothingDeeper(), ctx(*peers, odd))
    assert (verdict.category, verdict.culprit_host, verdict.culprit_gpu, verdict.culprit_rank) == (
        Category.NCCL_WATCHDOG_TIMEOUT,
        "c",
        "5",
        21,
    )
    assert "rank 21 timed out on a different collective than the rest" in verdict.reason


def test_a_straggler_alone_is_no_watchdog_timeout() -> None:
    silent(WatchdogTimeoutWithNothingDeeper(), ctx(_straggler("a", 3)))


def test_a_symptom_points_to_a_cause() -> None:
    hint = sig(Category.FAULTY_GPU, role="symptom", family="nccl", text="unhandled cuda error")
    verdict = concludes(SymptomPointsToACause(), ctx(hint))
    assert (verdict.category, verdict.culprit_host) == (Category.FAULTY_GPU, "a")


def test_a_launchers_exit_points_to_no_cause() -> None:
    silent(SymptomPointsToACause(), ctx(_crash("1")))


def test_a_collective_error_with_nothing_deeper() -> None:
    pg = sig(None, role="symptom", family="pytorch", text="ProcessGroupNCCL error")
    verdict = concludes(CollectiveErrorWithNothingDeeper(), ctx(pg))
    assert verdict.category == Category.NCCL_WATCHDOG_TIMEOUT


def test_an_application_symptom_is_no_collective_error() -> None:
    line = sig(None, role="symptom", family="python_traceback")
    silent(CollectiveErrorWithNothingDeeper(), ctx(line))


def test_thin_evidence_is_unknown() -> None:
    verdict = concludes(ThinEvidenceIsUnknown(), ctx())
    assert (verdict.category, verdict.confidence) == (Category.UNKNOWN, 0.0)


def test_thin_evidence_names_no_cause_even_beside_one() -> None:
    # The last rule always answers and never reads causes: the rules above it must.
    verdict = concludes(ThinEvidenceIsUnknown(), ctx(sig(Category.FAULTY_GPU, xid=79)))
    assert verdict.category == Category.UNKNOWN
    assert verdict.culprit_host is None
