"""``sentinel-agent check``: the rules on the fake NVML provider's scenarios, the kernel log's
XIDs by age, the drain it asks Slurm for, and the command's exit codes."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sentinel.knowledge import load_xid_catalog
from sentinel_agent.check import (
    CheckResult,
    Failure,
    HealthCheck,
    NoFatalXidInKernelLog,
    build_check,
    drain,
    load_collectors,
    node_name,
    parse_kmsg_record,
    parse_show_node,
)
from sentinel_agent.cli import app
from sentinel_agent.clock import ManualClock

SCENARIOS = Path(__file__).parents[2] / "agents" / "sentinel_agent" / "scenarios"
NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


def _check(
    scenario: str,
    *,
    gpus: int | None = 8,
    kern_log: Path | None = None,
    edac: Path | None = None,
) -> CheckResult:
    env = {
        "SENTINEL_AGENT_COLLECTORS__NVML__PROVIDER": "fake",
        "SENTINEL_AGENT_COLLECTORS__NVML__SCENARIO": str(SCENARIOS / f"{scenario}.yaml"),
        "SENTINEL_AGENT_COLLECTORS__KERNEL_LOG__ENABLED": str(kern_log is not None).lower(),
        "SENTINEL_AGENT_COLLECTORS__EDAC__ENABLED": str(edac is not None).lower(),
    }
    if edac is not None:
        env["SENTINEL_AGENT_COLLECTORS__EDAC__ROOT"] = str(edac)
    if kern_log is not None:
        env["SENTINEL_AGENT_COLLECTORS__KERNEL_LOG__PATH"] = str(kern_log)
    collectors = load_collectors(None, env)
    return build_check(
        collectors, expected_gpus=gpus, xid_window=timedelta(hours=1), clock=ManualClock(NOW)
    ).run()


def test_a_healthy_node_passes_every_rule() -> None:
    result = _check("healthy")
    assert result.healthy
    assert result.ran == ("gpu_count", "gpu_responds", "row_remap", "retired_pages", "ecc_dbe")


def test_a_row_remap_failure_fails_with_the_gpu_named() -> None:
    result = _check("hbm_remap_failure")
    assert result.failures == (
        Failure("row_remap", "GPU 5 (00000000:AB:00.0) row remapping failed"),
        Failure("ecc_dbe", "GPU 5 (00000000:AB:00.0) 1 uncorrectable ECC error(s)"),
    )
    assert result.reason == (
        "sentinel: GPU 5 (00000000:AB:00.0) row remapping failed; "
        "GPU 5 (00000000:AB:00.0) 1 uncorrectable ECC error(s)"
    )


def test_a_lost_gpu_fails_once_and_nothing_else_is_read_of_it() -> None:
    result = _check("xid79")
    assert result.failures == (Failure("gpu_responds", "GPU 3 lost (NVML cannot read it)"),)


def test_fewer_gpus_than_expected_fails() -> None:
    result = _check("healthy", gpus=9)
    assert result.failures == (Failure("gpu_count", "8 of 9 GPUs visible"),)


def test_reason_lists_two_failures_then_counts_the_rest() -> None:
    failures = tuple(Failure("r", f"GPU {i} lost") for i in range(5))
    assert CheckResult(failures, ()).reason == "sentinel: GPU 0 lost; GPU 1 lost; +3 more"
    long = CheckResult((Failure("r", "x" * 400),), ())
    assert len(long.reason) == 200 and long.reason.endswith("...")


def _kern(tmp_path: Path, *lines: tuple[datetime, str]) -> Path:
    path = tmp_path / "kern.log"
    path.write_text("".join(f"{at.isoformat()} node7 kernel: {text}\n" for at, text in lines))
    return path


def test_a_recent_critical_xid_in_the_kernel_log_fails(tmp_path: Path) -> None:
    fell_off = "NVRM: Xid (PCI:0000:9b:00): 79, pid=0, name=python, GPU has fallen off the bus."
    app_fault = "NVRM: Xid (PCI:0000:1b:00): 13, pid=4242, name=python, Graphics Exception"
    log = _kern(
        tmp_path,
        (NOW - timedelta(minutes=5), fell_off),
        (NOW - timedelta(minutes=4), fell_off),
        (NOW - timedelta(minutes=1), app_fault),
    )
    result = _check("healthy", kern_log=log)
    # XID 13 is the application's (not critical); the two 79s are one failure.
    assert result.failures == (
        Failure(
            "kernel_xid",
            "XID 79 (robust_channel_gpu_has_fallen_off_the_bus) on PCI:0000:9b:00",
        ),
    )


def test_an_old_xid_or_one_of_unknown_age_does_not_fail(tmp_path: Path) -> None:
    log = _kern(
        tmp_path,
        (NOW - timedelta(hours=3), "NVRM: Xid (PCI:0000:9b:00): 48, pid=1, name=x, DBE"),
    )
    with log.open("a") as f:
        f.write("NVRM: Xid (PCI:0000:9b:00): 79, pid=0, name=python, no time on this line\n")
    assert _check("healthy", kern_log=log).healthy


def test_an_unreadable_kernel_log_is_reported_as_not_checked(tmp_path: Path) -> None:
    result = _check("healthy", kern_log=tmp_path / "missing.log")
    assert result.healthy
    assert result.skipped == (f"kernel_xid: {tmp_path / 'missing.log'}: No such file or directory",)


def test_an_uncorrectable_host_memory_error_fails(tmp_path: Path) -> None:
    for name, ue in (("mc0", "0"), ("mc1", "2")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "ue_count").write_text(ue + "\n")
    result = _check("healthy", edac=tmp_path)
    assert result.failures == (
        Failure("host_memory_ue", "host memory mc1: 2 uncorrectable error(s)"),
    )
    assert _check("healthy", edac=tmp_path / "none").skipped == (
        f"host_memory_ue: {tmp_path / 'none'}: No such file or directory",
    )


def test_kmsg_records_are_timed_from_boot() -> None:
    booted = NOW - timedelta(hours=2)
    record = "3,812,7200000000,-;NVRM: Xid (PCI:0000:9b:00): 79, pid=0, name=python\n"
    assert parse_kmsg_record(record, booted) == (
        NOW,
        "NVRM: Xid (PCI:0000:9b:00): 79, pid=0, name=python",
    )
    assert parse_kmsg_record("no header here", booted) is None


@pytest.mark.skipif(not os.access("/dev/kmsg", os.R_OK), reason="/dev/kmsg is not readable here")
def test_the_real_kmsg_is_read_without_blocking() -> None:
    rule = NoFatalXidInKernelLog(Path("/dev/kmsg"), timedelta(days=365), load_xid_catalog())
    check = HealthCheck(provider=None, xid_rule=rule)
    result = check.run()
    assert result.ran == ("kernel_xid",) and not result.skipped


def test_show_node_parsing_keeps_the_reason_without_its_author() -> None:
    line = (
        "NodeName=node2 Arch=x86_64 CoresPerSocket=1 State=IDLE+DRAIN ThreadsPerCore=1 "
        "Partitions=gpu Reason=NHC: check_fs_mount:  /lustre not mounted [root@2026-12-06T07:49:54]"
    )
    state = parse_show_node(line)
    assert state.state == "IDLE+DRAIN"
    assert state.reason == "NHC: check_fs_mount:  /lustre not mounted"


class FakeScontrol:
    def __init__(self, show: str, update_rc: int = 0) -> None:
        self.show = show
        self.update_rc = update_rc
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        if argv[1] == "show":
            return subprocess.CompletedProcess(argv, 0, self.show, "")
        return subprocess.CompletedProcess(argv, self.update_rc, "", "Invalid node name")


def test_drain_updates_the_node_with_the_reason() -> None:
    scontrol = FakeScontrol("NodeName=node2 State=IDLE Partitions=gpu")
    outcome = drain("node2", "sentinel: GPU 5 lost", run=scontrol)
    assert outcome.drained
    assert scontrol.calls[-1] == [
        "scontrol", "update", "NodeName=node2", "State=DRAIN", "Reason=sentinel: GPU 5 lost"
    ]  # fmt: skip


def test_drain_leaves_a_node_someone_else_drained_alone() -> None:
    scontrol = FakeScontrol(
        "NodeName=node2 State=IDLE+DRAIN Reason=disk swap [ops@2026-12-06T01:00:00]"
    )
    outcome = drain("node2", "sentinel: GPU 5 lost", run=scontrol)
    assert not outcome.drained
    assert outcome.detail == "already drained by another reason: disk swap"
    assert len(scontrol.calls) == 1


def test_drain_replaces_our_own_older_reason_and_reports_scontrol_errors() -> None:
    scontrol = FakeScontrol(
        "NodeName=node2 State=IDLE+DRAIN Reason=sentinel: GPU 1 lost [root@2026-12-06T01:00:00]",
        update_rc=1,
    )
    outcome = drain("node2", "sentinel: GPU 5 lost", run=scontrol)
    assert not outcome.drained
    assert outcome.detail == "scontrol failed (1): Invalid node name"


def test_node_name_prefers_slurmd_nodename() -> None:
    assert node_name({"SLURMD_NODENAME": "node7"}) == "node7"
    assert node_name({}) != ""


@pytest.mark.parametrize(
    ("scenario", "code", "shown"),
    [
        ("healthy", 0, "healthy (gpu_count, gpu_responds"),
        ("hbm_remap_failure", 1, "FAIL row_remap: GPU 5 (00000000:AB:00.0) row remapping failed"),
    ],
)
def test_cli_exit_code_says_healthy_or_not(scenario: str, code: int, shown: str) -> None:
    env = {
        "SENTINEL_AGENT_COLLECTORS__NVML__PROVIDER": "fake",
        "SENTINEL_AGENT_COLLECTORS__NVML__SCENARIO": str(SCENARIOS / f"{scenario}.yaml"),
        "SENTINEL_AGENT_COLLECTORS__KERNEL_LOG__ENABLED": "false",
        "SENTINEL_AGENT_COLLECTORS__EDAC__ENABLED": "false",
    }
    result = CliRunner().invoke(app, ["check", "--gpus", "8"], env=env)
    assert result.exit_code == code, result.output
    assert shown in result.output


def test_cli_bad_config_exits_2(tmp_path: Path) -> None:
    env = {"SENTINEL_AGENT_COLLECTORS__NVML__PROVIDER": "fake"}  # no scenario
    result = CliRunner().invoke(app, ["check"], env=env)
    assert result.exit_code == 2
    assert "scenario is required" in result.output
