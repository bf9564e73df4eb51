"""Correlation: the policy names the cause, not the symptoms, over text and live signals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from sentinel.triage import (
    DEFAULT_POLICY,
    Category,
    Policy,
    Signal,
    TriageContext,
    classify_all,
    classify_signals,
    classify_signals_all,
    classify_text,
    extract_signals,
    fr_verdict_signal,
    gpu_sample_signal,
    heartbeat_stall_signal,
    host_silent_signal,
    log_signals,
    maintenance_signal,
    xid_signal,
)
from sentinel.triage.rules import (
    BlameHardGpuXidOverPeerTimeouts,
    LinkErrorsOnManyHostsAreTheFabric,
    MostSevereRemainingCauseWins,
    StragglersSlowEveryCollective,
    ThinEvidenceIsUnknown,
    WatchdogTimeoutWithNothingDeeper,
)
from sentinel.triage.signals import straggler_signal
from tests.triage.conftest import nccl_timeout_line

T0 = datetime(2024, 7, 1, 3, 0, tzinfo=UTC)


def host(index: int) -> str:
    return f"gpu-{index:04d}"


def test_xid79_on_one_host_explains_2047_peer_timeouts(timeout_line: Callable[..., str]) -> None:
    lines = [timeout_line(host(i), rank=i * 8) for i in range(2048) if i != 1377]
    lines.insert(
        900,
        "Nov 28 07:38:01 gpu-1377 kernel: [81234.567890] NVRM: Xid (PCI:0000:9b:00): 79, "
        "pid=0, GPU has fallen off the bus.",
    )
    verdict = classify_text("\n".join(lines))
    assert verdict.category == Category.FAULTY_GPU
    assert verdict.culprit_host == "gpu-1377"
    assert verdict.culprit_gpu == "00000000:9B:00.0"
    assert verdict.rule == "BlameHardGpuXidOverPeerTimeouts"
    assert verdict.symptoms_total == 2047
    assert len(verdict.symptoms) <= 50
    assert verdict.evidence[0].xid == 79
    assert verdict.confidence >= 0.9


def test_same_traceback_on_every_rank_is_a_bug_even_with_xid13() -> None:
    blocks = []
    for rank in range(8):
        blocks += [
            f"[rank{rank}]: Traceback (most recent call last):",
            f'[rank{rank}]:   File "/app/train.py", line 301, in <module>',
            f"[rank{rank}]:     main()",
            f'[rank{rank}]:   File "/app/model.py", line 77, in forward',
            f"[rank{rank}]:     x = self.proj(x).view(b, s, {rank + 64})",
            f"[rank{rank}]: RuntimeError: shape '[4, 2048, {rank + 64}]' is invalid for input "
            "of size 1234",
        ]
    blocks.append(
        "[Fri Aug 30 11:43:09 2024] NVRM: Xid (PCI:0000:cb:00): 13, pid=7781, name=python, "
        "Graphics SM Warp Exception on (GPC 7, TPC 7, SM 0): Out Of Range Address"
    )
    verdict = classify_text("\n".join(blocks))
    assert verdict.category == Category.SOFTWARE_BUG
    assert verdict.rule == "SameTracebackOnManyRanksIsSoftwareBug"
    assert any(e.xid == 13 for e in verdict.evidence)
    assert verdict.confidence >= 0.85


def _ib_error(reporter: str, peer: str) -> str:
    return (
        f"{reporter}:3468:3905 [4] ib_plugin.c:1615 NCCL WARN NET/IB : Got completion from peer "
        f"{peer}<54862> with status=12 opcode=0 len=0 vendor err 129 (Recv)"
    )


def test_ib_errors_on_many_hosts_are_the_fabric() -> None:
    text = "\n".join(_ib_error(host(i), f"10.0.{i}.9") for i in range(6))
    verdict = classify_text(text)
    assert verdict.category == Category.NETWORK_SWITCH_CABLE
    assert verdict.rule == "LinkErrorsOnManyHostsAreTheFabric"


def test_ib_errors_on_one_host_are_its_nic() -> None:
    text = "\n".join(_ib_error(host(7), f"10.0.{i}.9") for i in range(3))
    verdict = classify_text(text)
    assert verdict.category == Category.NIC
    assert verdict.culprit_host == host(7)


def test_many_hosts_blaming_one_peer_name_that_peer() -> None:
    text = "\n".join(_ib_error(host(i), "10.0.77.9") for i in range(5))
    verdict = classify_text(text)
    assert verdict.category == Category.NIC
    assert verdict.culprit_host == "10.0.77.9"


def test_mlx5_port_down_on_one_host_is_its_nic() -> None:
    text = (
        "Feb 14 05:03:41 gpu-0311 kernel: mlx5_core 0000:ab:00.0 mlx5_5: Port: 1 Link DOWN\n"
        + "\n".join(_watchdog(i) for i in range(4))
    )
    verdict = classify_text(text)
    assert verdict.category == Category.NIC
    assert verdict.culprit_host == "gpu-0311"
    assert verdict.symptoms_total == 4


def _watchdog(rank: int, seq: int = 1580) -> str:
    return (
        f"[rank{rank}]:[E321 02:07:08.408271257 ProcessGroupNCCL.cpp:607] [Rank {rank}] Watchdog "
        f"caught collective operation timeout: WorkNCCL(SeqNum={seq}, OpType=ALLREDUCE, "
        f"NumelIn=4, NumelOut=4, Timeout(ms)=600000) ran for 600060 milliseconds before timing out."
    )


def test_watchdog_timeouts_alone_are_a_watchdog_timeout() -> None:
    verdict = classify_text("\n".join(_watchdog(r) for r in range(8)))
    assert verdict.category == Category.NCCL_WATCHDOG_TIMEOUT
    assert verdict.rule == "WatchdogTimeoutWithNothingDeeper"


def test_watchdog_names_the_rank_stuck_on_another_collective() -> None:
    lines = [_watchdog(r) for r in range(8) if r != 5] + [_watchdog(5, seq=1579)]
    verdict = classify_text("\n".join(lines))
    assert verdict.category == Category.NCCL_WATCHDOG_TIMEOUT
    assert verdict.culprit_rank == 5


@pytest.mark.parametrize(
    "text", ["", "   \n\n", "hello world", "\x00\x01binary\xff", "loss 2.3 ok"]
)
def test_garbage_is_unknown(text: str) -> None:
    verdict = classify_text(text)
    assert verdict.category == Category.UNKNOWN
    assert verdict.rule == ThinEvidenceIsUnknown().name


def test_unknown_says_what_was_seen() -> None:
    verdict = classify_text(
        "[E ProcessGroupNCCL.cpp:455] To avoid data inconsistency, we are "
        "taking the entire process down."
    )
    assert verdict.category != Category.FAULTY_GPU
    assert "pytorch" in verdict.reason or verdict.evidence


def test_dbe_before_fall_off_bus_is_hbm() -> None:
    text = (
        "NVRM: Xid (PCI:0000:ca:00): 48, pid=1, name=python, An uncorrectable double bit error\n"
        "NVRM: Xid (PCI:0000:ca:00): 79, pid=1, GPU has fallen off the bus.\n"
        "NVRM: Xid (PCI:0000:ca:00): 119, pid=1, Timeout after 6s of waiting for RPC response"
    )
    verdict = classify_text(text)
    assert verdict.category == Category.GPU_HBM_MEMORY
    assert {e.xid for e in verdict.evidence} == {48, 79, 119}


def test_gsp_timeouts_after_fall_off_bus_do_not_win() -> None:
    text = (
        "NVRM: Xid (PCI:0000:ca:00): 79, pid=1, GPU has fallen off the bus.\n"
        "NVRM: Xid (PCI:0000:ca:00): 119, pid=1, Timeout after 6s of waiting for RPC response"
    )
    assert classify_text(text).category == Category.FAULTY_GPU


def test_psu_failure_explains_the_gpu_it_took_down() -> None:
    text = (
        "   1 | 11/28/2023 | 07:38:56 | Power Supply #0x50 | Failure detected () | Asserted\n"
        "NVRM: Xid (PCI:0000:ca:00): 79, pid=1, GPU has fallen off the bus."
    )
    assert classify_text(text).category == Category.POWER_SUPPLY


def test_two_unrelated_faults_give_a_secondary_verdict() -> None:
    text = "\n".join(
        [
            "Nov 28 07:38:01 gpu-0001 kernel: NVRM: Xid (PCI:0000:9b:00): 79, pid=0, GPU has "
            "fallen off the bus.",
            "Nov 28 07:39:01 gpu-0002 kernel: nvme nvme0: I/O 123 QID 4 timeout, aborting",
            *(_watchdog(r) for r in range(4)),
        ]
    )
    primary, *secondary = classify_all(text)
    assert primary.category == Category.FAULTY_GPU
    assert [v.category for v in secondary] == [Category.SSD]
    assert secondary[0].culprit_host == "gpu-0002"


def test_a_single_fault_has_no_secondary_verdict() -> None:
    verdicts = classify_all("NVRM: Xid (PCI:0000:44:00): 79, GPU has fallen off the bus")
    assert len(verdicts) == 1


# ---------------------------------------------------------------- live observations


def test_live_xid_event_and_heartbeat_stalls() -> None:
    signals = [
        heartbeat_stall_signal(host=host(i), rank=i * 8, seconds=45, time=T0)
        for i in range(64)
        if i != 17
    ]
    signals.append(xid_signal(79, host=host(17), gpu="00000000:9B:00.0", time=T0, event_id="ev-1"))
    verdict = classify_signals(signals, job_hosts=64)
    assert verdict.category == Category.FAULTY_GPU
    assert verdict.culprit_host == host(17)
    assert verdict.culprit_gpu == "00000000:9B:00.0"
    assert verdict.evidence[0].event_id == "ev-1"
    assert verdict.symptoms_total == 63


@pytest.mark.parametrize(
    ("condition", "category"),
    [
        ("row_remap_failure", Category.GPU_HBM_MEMORY),
        ("uncorrectable_ecc", Category.GPU_HBM_MEMORY),
        ("sram_uncorrectable_ecc", Category.GPU_SRAM_MEMORY),
        ("thermal_slowdown", Category.GPU_THERMAL),
        ("fallen_off_bus", Category.FAULTY_GPU),
        ("power_brake", Category.POWER_SUPPLY),
    ],
)
def test_gpu_sample_conditions(condition: str, category: Category) -> None:
    sample = gpu_sample_signal(condition, host="h1", gpu="3", time=T0)  # type: ignore[arg-type]
    verdict = classify_signals([sample, heartbeat_stall_signal(host="h2", rank=9, seconds=30)])
    assert verdict.category == category
    assert verdict.culprit_host == "h1"


def test_silent_host_is_host_loss() -> None:
    signals = [host_silent_signal(host="gpu-0099", seconds=20, time=T0)]
    signals += [heartbeat_stall_signal(host=host(i), rank=i, seconds=30) for i in range(10)]
    verdict = classify_signals(signals)
    assert verdict.category == Category.HOST_MAINTENANCE
    assert verdict.culprit_host == "gpu-0099"


def test_announced_maintenance_is_planned() -> None:
    signals = [
        maintenance_signal(host="gpu-0099", text="firmware upgrade window", time=T0),
        host_silent_signal(host="gpu-0099", seconds=20, time=T0 + timedelta(seconds=5)),
    ]
    verdict = classify_signals(signals)
    assert verdict.category == Category.PLANNED
    assert verdict.culprit_host == "gpu-0099"


def test_maintenance_elsewhere_does_not_hide_a_gpu_fault() -> None:
    signals = [
        maintenance_signal(host="gpu-0001", text="drain for upgrade"),
        xid_signal(48, host="gpu-0002", gpu="0"),
    ]
    assert classify_signals(signals).category == Category.GPU_HBM_MEMORY


def _restart_of(hosts: list[str]) -> list[Signal]:
    """An operator's planned restart in place, announced for every host of the job."""
    text = "announced maintenance by operator: planned restart in place: dataset update"
    return [maintenance_signal(host=h, text=text, time=T0, restart=True) for h in hosts]


def test_a_planned_restart_explains_the_stop_of_the_jobs_processes() -> None:
    hosts = [host(i) for i in range(16)]
    signals = _restart_of(hosts)
    signals += [
        heartbeat_stall_signal(host=h, rank=i, seconds=30, time=T0 + timedelta(seconds=20))
        for i, h in enumerate(hosts)
    ]
    signals += log_signals(nccl_timeout_line(host(3), rank=3), host=host(3))
    verdict = classify_signals(signals, job_hosts=16)
    assert (verdict.category, verdict.rule) == (Category.PLANNED, "AnnouncedMaintenanceIsPlanned")
    assert verdict.culprit_host is None
    assert len(verdict.explained) == len(signals)


def test_a_gpu_falling_off_the_bus_during_a_planned_restart_is_its_own_fault() -> None:
    hosts = [host(i) for i in range(2048)]
    signals = _restart_of(hosts)
    signals += [
        heartbeat_stall_signal(host=h, rank=i * 8, seconds=30, time=T0 + timedelta(seconds=20))
        for i, h in enumerate(hosts[:64])
    ]
    signals.append(xid_signal(79, host=host(1377), gpu="0", time=T0 + timedelta(seconds=25)))
    verdicts = classify_signals_all(signals, job_hosts=2048, limit=4)
    assert (verdicts[0].category, verdicts[0].culprit_host) == (Category.FAULTY_GPU, host(1377))
    assert verdicts[0].evidence[0].xid == 79
    # The restart is still planned work, apart: it explains the stop, not the XID.
    planned = [v for v in verdicts if v.category == Category.PLANNED]
    assert len(planned) == 1
    assert all(e.xid is None for e in [*planned[0].evidence, *planned[0].symptoms])


def test_a_planned_restart_does_not_explain_a_lost_host() -> None:
    signals = _restart_of([host(1), host(2)])
    signals.append(host_silent_signal(host=host(2), seconds=60, time=T0 + timedelta(seconds=5)))
    verdict = classify_signals(signals, job_hosts=2)
    assert (verdict.category, verdict.culprit_host) == (Category.HOST_MAINTENANCE, host(2))


def test_flight_recorder_names_the_stuck_rank_and_its_gpu() -> None:
    signals = [heartbeat_stall_signal(host=host(i), rank=i, seconds=600) for i in range(16)]
    signals.append(
        fr_verdict_signal(
            text="rank 11 never entered ALLREDUCE #4711",
            rank=11,
            host=host(11),
            gpu="4",
            mismatch=False,
        )
    )
    verdict = classify_signals(signals)
    assert verdict.category == Category.NCCL_WATCHDOG_TIMEOUT
    culprit = (verdict.culprit_rank, verdict.culprit_host, verdict.culprit_gpu)
    assert culprit == (11, host(11), "4")


def test_flight_recorder_mismatch_is_a_bug_on_the_culprits_gpu() -> None:
    signals = [
        fr_verdict_signal(
            text="ranks disagree on collective #12: ALLREDUCE vs BROADCAST",
            rank=3,
            host=host(0),
            gpu="3",
            mismatch=True,
        )
    ]
    verdict = classify_signals(signals)
    assert verdict.category == Category.SOFTWARE_BUG
    assert (verdict.culprit_rank, verdict.culprit_host, verdict.culprit_gpu) == (3, host(0), "3")


def test_log_record_from_a_known_host_keeps_host_time_and_id() -> None:
    signals = log_signals(
        "EDAC MC0: 1 UE memory read error on CPU_SrcID#0_MC#0_Chan#0_DIMM#0",
        host="gpu-0005",
        time=T0,
        event_id="log-9",
    )
    assert [(s.host, s.time, s.event_id) for s in signals] == [("gpu-0005", T0, "log-9")]
    verdict = classify_signals(signals)
    assert verdict.category == Category.SYSTEM_MEMORY
    assert verdict.culprit_host == "gpu-0005"


def test_secondary_verdicts_from_live_signals() -> None:
    signals = [
        xid_signal(95, host="a", gpu="1"),
        *(
            s
            for s in extract_signals(_ib_error("b", "10.0.0.1") + "\n" + _ib_error("c", "10.0.0.2"))
        ),
    ]
    categories = [v.category for v in classify_signals_all(signals)]
    assert categories == [Category.GPU_SRAM_MEMORY, Category.NETWORK_SWITCH_CABLE]


def test_policy_must_end_with_the_unknown_rule() -> None:
    with pytest.raises(ValueError, match="ThinEvidenceIsUnknown"):
        Policy([WatchdogTimeoutWithNothingDeeper()])
    assert DEFAULT_POLICY.names[-1] == "ThinEvidenceIsUnknown"


def test_rules_fired_end_with_the_deciding_rule() -> None:
    verdict = classify_text("NVRM: Xid (PCI:0000:44:00): 79, GPU has fallen off the bus")
    assert verdict.rules_fired[-1] == verdict.rule


# ---------------------------------------------------------------- found by the replay corpus


def _stalls(n: int = 8) -> list[Signal]:
    return [heartbeat_stall_signal(host=host(i), rank=i * 8, seconds=30, time=T0) for i in range(n)]


def test_a_corrected_pcie_error_on_a_healthy_host_is_no_lead_for_a_hang() -> None:
    noise = log_signals(
        "pcieport 0000:15:01.0: AER: Corrected error received: 0000:16:00.0", host=host(3)
    )
    verdict = classify_signals([*noise, *_stalls()])
    assert verdict.category == Category.NCCL_WATCHDOG_TIMEOUT


def test_cuda_ecc_error_yields_to_the_xid_that_names_the_memory() -> None:
    # CUDA says "uncorrectable ECC error" for SRAM and HBM alike; XID 94 says SRAM.
    signals = [
        xid_signal(94, host=host(4), gpu="0000:db:00.0", time=T0),
        *log_signals(
            "[rank39]: RuntimeError: CUDA error: uncorrectable ECC error encountered",
            host=host(4),
            time=T0 + timedelta(seconds=1),
        ),
        *_stalls(),
    ]
    verdict = classify_signals(signals)
    assert (verdict.category, verdict.culprit_gpu) == (Category.GPU_SRAM_MEMORY, "00000000:DB:00.0")


def test_culprit_gpu_comes_from_the_ecc_counter_when_the_cuda_error_names_none() -> None:
    signals = [
        *log_signals(
            "[rank143]: RuntimeError: CUDA error: uncorrectable ECC error encountered",
            host=host(17),
            time=T0,
        ),
        gpu_sample_signal("uncorrectable_ecc", host=host(17), gpu="00000000:DB:00.0", time=T0),
    ]
    verdict = classify_signals(signals)
    assert verdict.category == Category.GPU_HBM_MEMORY
    assert (verdict.culprit_host, verdict.culprit_gpu) == (host(17), "00000000:DB:00.0")


def test_peers_blaming_an_address_point_at_the_host_whose_port_went_down() -> None:
    text = "\n".join(
        [
            f"Mar 02 04:01:15 {host(6)} kernel: mlx5_core 0000:5f:00.0 mlx5_3: Port: 1 Link DOWN",
            *(_ib_error(host(i), "10.128.0.16") for i in (5, 7, 14)),
        ]
    )
    verdict = classify_signals(extract_signals(text), hosts_seen=[host(i) for i in range(16)])
    assert (verdict.category, verdict.culprit_host) == (Category.NIC, host(6))
    assert verdict.rule == "PeersBlamingOneHostIsItsNic"


def test_peers_blaming_a_known_host_name_keep_that_name() -> None:
    text = "\n".join(_ib_error(host(i), host(9)) for i in (5, 7, 14))
    verdict = classify_signals(extract_signals(text))
    assert (verdict.category, verdict.culprit_host) == (Category.NIC, host(9))


def test_an_app_caused_xid_on_several_hosts_names_no_single_host() -> None:
    xids = [xid_signal(13, host=host(h), gpu=f"0000:{0x18 + g:02x}:00.0", time=T0)
            for h in range(3) for g in range(2)]  # fmt: skip
    verdict = classify_signals(xids)
    assert verdict.category == Category.SOFTWARE_BUG
    assert (verdict.culprit_host, verdict.culprit_gpu) == (None, None)


def test_same_traceback_on_one_host_so_far_with_xids_on_others_names_no_host() -> None:
    tracebacks = [
        s
        for r in range(8)
        for s in log_signals(
            f"[rank{48 + r}]: Traceback (most recent call last):\n"
            f'[rank{48 + r}]:   File "/app/moe.py", line 233, in forward\n'
            f"[rank{48 + r}]:     out = self.dispatch(x)\n"
            f"[rank{48 + r}]: RuntimeError: CUDA error: an illegal memory access was encountered",
            host=host(6),
            time=T0,
        )
    ]
    xids = [xid_signal(13, host=host(h), gpu="0000:18:00.0", time=T0) for h in (0, 1, 6)]
    verdict = classify_signals([*tracebacks, *xids])
    assert verdict.rule == "SameTracebackOnManyRanksIsSoftwareBug"
    assert verdict.culprit_host is None


def _worker_exit(code: int, at: datetime) -> list[Signal]:
    return log_signals(
        "[2026-03-02 04:01:40,441] torch.distributed.elastic.multiprocessing.api: [ERROR] failed "
        f"(exitcode: {code}) local_rank: 3 (pid: 8812) of binary: /usr/bin/python3",
        host=host(9),
        time=at,
    )


def test_a_worker_exit_with_nothing_said_before_the_hang_is_unknown_on_its_host() -> None:
    later = T0 + timedelta(seconds=60)
    timeouts = [
        s
        for i in range(4)
        for s in log_signals(
            f"[rank{i * 8}]:[E0302 04:02:40.000 ProcessGroupNCCL.cpp:616] [Rank {i * 8}] "
            "Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7, OpType=ALLREDUCE, "
            "NumelIn=1, NumelOut=1, Timeout(ms)=60000) ran for 60012 milliseconds before timing "
            "out.",
            host=host(i),
            time=later,
        )
    ]
    verdict = classify_signals([*_worker_exit(1, T0), *_stalls(), *timeouts])
    assert (verdict.category, verdict.culprit_host) == (Category.UNKNOWN, host(9))
    assert verdict.rule == "CrashedWorkerBeforeAnyTimeout"


def test_a_worker_aborted_by_its_watchdog_after_the_timeout_is_still_a_hang() -> None:
    timeout = log_signals(
        "[rank72]:[E0302 04:01:40.000 ProcessGroupNCCL.cpp:616] [Rank 72] Watchdog caught "
        "collective operation timeout: WorkNCCL(SeqNum=7, OpType=ALLREDUCE, NumelIn=1, "
        "NumelOut=1, Timeout(ms)=60000) ran for 60012 milliseconds before timing out.",
        host=host(9),
        time=T0,
    )
    exit_ = _worker_exit(-6, T0 + timedelta(seconds=1))
    assert classify_signals([*timeout, *exit_]).category == Category.NCCL_WATCHDOG_TIMEOUT


def test_a_worker_that_aborted_itself_first_is_a_software_bug() -> None:
    verdict = classify_signals([*_worker_exit(-6, T0), *_stalls()])
    assert (verdict.category, verdict.culprit_host) == (Category.SOFTWARE_BUG, host(9))


def test_two_gpus_falling_off_behind_a_fatal_pcie_switch_error_is_the_switch() -> None:
    text = "\n".join(
        [
            "pcieport 0000:16:02.0: AER: Uncorrected (Fatal) error received: 0000:16:02.0",
            "NVRM: Xid (PCI:0000:18:00): 79, pid=0, GPU has fallen off the bus.",
            "NVRM: Xid (PCI:0000:2a:00): 79, pid=0, GPU has fallen off the bus.",
        ]
    )
    verdict = classify_signals(extract_signals(text, default_host=host(8)))
    assert (verdict.category, verdict.culprit_host) == (Category.IO_EXPANSION_BOARD, host(8))
    assert verdict.rule == "BlamePcieSwitchOverTheGpusBehindIt"


def test_one_gpu_falling_off_with_its_port_reporting_it_is_the_gpu() -> None:
    text = "\n".join(
        [
            "pcieport 0000:16:02.0: AER: Uncorrected (Fatal) error received: 0000:18:00.0",
            "NVRM: Xid (PCI:0000:18:00): 79, pid=0, GPU has fallen off the bus.",
        ]
    )
    verdict = classify_signals(extract_signals(text, default_host=host(8)))
    assert (verdict.category, verdict.culprit_gpu) == (Category.FAULTY_GPU, "00000000:18:00.0")


# ---------------------------------------------------------------- the right culprit


def _corrected_dimm_error(on: str, at: datetime = T0) -> list[Signal]:
    return log_signals(
        "EDAC MC0: 3 CE memory read error on CPU_SrcID#0_MC#0_Chan#1_DIMM#0 (channel:1 slot:0 "
        "page:0x4f2a1 offset:0x540 grain:32 syndrome:0x0)",
        host=on,
        time=at,
    )


def _job_stall(at: datetime = T0) -> Signal:
    return heartbeat_stall_signal(host=None, rank=None, seconds=20, time=at)


def _stopped_first(on: str, lead_s: float = 23.0) -> Signal:
    return heartbeat_stall_signal(
        host=on,
        rank=11016,
        gpu="0",
        seconds=20,
        time=T0,
        stopped_first={
            "step": 6,
            "at": T0.isoformat(),
            "rest_step": 17,
            "rest_at": (T0 + timedelta(seconds=lead_s)).isoformat(),
        },
    )


def test_a_corrected_dimm_error_elsewhere_is_no_lead_for_a_hang() -> None:
    ctx = TriageContext.of([_job_stall(), *_corrected_dimm_error(host(5))])
    assert not MostSevereRemainingCauseWins().applies(ctx)
    verdicts = classify_signals_all(ctx.signals)
    assert (verdicts[0].category, verdicts[0].culprit_host) == (
        Category.NCCL_WATCHDOG_TIMEOUT,
        None,
    )
    # What is left is a secondary lead with nothing above warning: it opens nothing.
    assert all(e.role == "cause" for v in verdicts[1:] for e in v.evidence)
    assert all(v.evidence_total == 1 for v in verdicts[1:])


def test_a_lesser_sign_on_the_host_where_the_hang_began_is_a_lead() -> None:
    ctx = TriageContext.of([_job_stall(), _stopped_first(host(5)), *_corrected_dimm_error(host(5))])
    assert MostSevereRemainingCauseWins().applies(ctx)
    verdict = DEFAULT_POLICY.decide(ctx)
    assert (verdict.category, verdict.culprit_host) == (Category.SYSTEM_MEMORY, host(5))


def test_a_hang_names_the_host_whose_ranks_stopped_first_with_its_step_and_time() -> None:
    ctx = TriageContext.of([_job_stall(), _stopped_first("node-1377")])
    verdict = WatchdogTimeoutWithNothingDeeper().verdict(ctx)
    assert verdict is not None
    assert (verdict.culprit_host, verdict.culprit_gpu, verdict.culprit_rank) == (
        "node-1377",
        "0",
        11016,
    )
    assert "stopped first: rank 11016 at step 6 at 03:00:00, 23 s before the rest of the job " in (
        verdict.reason
    )
    assert "(step 17 at 03:00:23)" in verdict.reason
    assert DEFAULT_POLICY.decide(ctx).culprit_host == "node-1377"


def test_several_hosts_stopping_first_name_none() -> None:
    ctx = TriageContext.of([_job_stall(), _stopped_first(host(1)), _stopped_first(host(2))])
    verdict = DEFAULT_POLICY.decide(ctx)
    assert (verdict.category, verdict.culprit_host) == (Category.NCCL_WATCHDOG_TIMEOUT, None)
    assert "ranks on 2 hosts (gpu-0001, gpu-0002) stopped before the rest" in verdict.reason


def _stragglers(on: str, ranks: range = range(72, 80)) -> list[Signal]:
    """Ranks of one host that straggle, each on its GPU (the rank's index on its host)."""
    return [
        straggler_signal(host=on, rank=r, gpu=str(r % 8), step_time_s=6.0, median_s=2.0, time=T0)
        for r in ranks
    ]


def test_one_host_straggling_with_nothing_deeper_is_named() -> None:
    ctx = TriageContext.of(_stragglers(host(9)))
    rule = StragglersSlowEveryCollective()
    assert rule.applies(ctx)
    verdict = DEFAULT_POLICY.decide(ctx)
    assert verdict.rule == rule.name
    assert (verdict.category, verdict.culprit_host) == (Category.NCCL_WATCHDOG_TIMEOUT, host(9))
    assert (verdict.culprit_gpu, verdict.culprit_rank) == (None, None)  # eight ranks straggle
    assert "step time 6.00 s vs the job's median 2.00 s" in verdict.reason


def test_one_rank_straggling_names_its_host_and_gpu() -> None:
    verdict = classify_signals(_stragglers(host(9), range(75, 76)))
    assert verdict.rule == "StragglersSlowEveryCollective"
    assert (verdict.culprit_host, verdict.culprit_gpu, verdict.culprit_rank) == (host(9), "3", 75)


def test_stragglers_on_several_hosts_name_none() -> None:
    ctx = TriageContext.of(
        [*_stragglers(host(9), range(72, 73)), *_stragglers(host(3), range(24, 25))]
    )
    verdict = DEFAULT_POLICY.decide(ctx)
    assert (verdict.rule, verdict.culprit_host) == ("StragglersSlowEveryCollective", None)


def test_a_straggler_running_hot_is_its_gpu_overheating() -> None:
    hot = gpu_sample_signal("thermal_slowdown", host=host(9), gpu="00000000:5D:00.0", time=T0)
    verdict = classify_signals([*_stragglers(host(9)), hot])
    assert (verdict.category, verdict.culprit_host) == (Category.GPU_THERMAL, host(9))


def test_a_hang_after_one_host_straggled_names_that_host() -> None:
    verdict = classify_signals([*_stragglers(host(9), range(75, 77)), _job_stall()])
    assert verdict.rule == "WatchdogTimeoutWithNothingDeeper"
    assert (verdict.culprit_host, verdict.culprit_gpu, verdict.culprit_rank) == (host(9), "3", 75)


def _retry_exceeded(reporter: int, peer: str, at: datetime) -> list[Signal]:
    return log_signals(
        f"{host(reporter)}:3468:3905 [4] ib_plugin.c:1615 NCCL WARN NET/IB : Got completion "
        f"from peer {peer}<54862> with status=12 opcode=0 len=0 vendor err 129 (Recv) "
        f"localGid ::ffff:10.129.0.{reporter} remoteGids::ffff:{peer}",
        host=host(reporter),
        time=at,
    )


def _dead_host_and_its_peers(delay_s: float) -> list[Signal]:
    """XID 79 on gpu-0021; six peers' completions naming its addresses on three rails."""
    xid = xid_signal(79, host=host(21), gpu="0000:9a:00.0", time=T0)
    later = T0 + timedelta(seconds=delay_s)
    reports = [
        s
        for n, peer in enumerate((2, 5, 7, 10, 12, 15))
        for s in _retry_exceeded(peer, f"10.{128 + n % 3}.2.15", later)
    ]
    return [xid, *reports]


def test_peers_completions_after_a_gpu_fell_off_are_its_shadow() -> None:
    ctx = TriageContext.of(_dead_host_and_its_peers(30), hosts_seen=[host(i) for i in range(32)])
    verdict = BlameHardGpuXidOverPeerTimeouts().verdict(ctx)
    assert verdict is not None
    assert (verdict.category, verdict.culprit_host) == (Category.FAULTY_GPU, host(21))
    assert verdict.symptoms_total == 6
    [only] = DEFAULT_POLICY.decide_all(ctx)
    assert only.culprit_host == host(21)


def test_peers_completions_before_the_gpu_fault_are_not_its_shadow() -> None:
    verdicts = classify_signals_all(_dead_host_and_its_peers(-30))
    assert [v.category for v in verdicts] == [
        Category.FAULTY_GPU,
        Category.NETWORK_SWITCH_CABLE,
    ]


def test_a_completion_naming_another_known_host_is_not_the_dead_hosts_shadow() -> None:
    signals = [
        xid_signal(79, host=host(21), gpu="0000:9a:00.0", time=T0),
        *_retry_exceeded(2, host(30), T0 + timedelta(seconds=30)),
        *_retry_exceeded(5, host(30), T0 + timedelta(seconds=30)),
    ]
    verdicts = classify_signals_all(signals, hosts_seen=[host(i) for i in range(32)])
    assert [(v.category, v.culprit_host) for v in verdicts] == [
        (Category.FAULTY_GPU, host(21)),
        (Category.NIC, host(30)),
    ]


def test_peers_completions_after_a_crashed_rank_are_its_shadow() -> None:
    crash = log_signals(
        "[rank170]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.",
        host=host(21),
        time=T0,
    )
    reports = [
        s
        for peer in (2, 5, 7)
        for s in _retry_exceeded(peer, "10.128.2.15", T0 + timedelta(seconds=30))
    ]
    ctx = TriageContext.of([*crash, *reports, _job_stall()])
    [only] = DEFAULT_POLICY.decide_all(ctx)
    assert (only.category, only.culprit_host) == (Category.SOFTWARE_BUG, host(21))


def test_peers_completions_after_one_hosts_port_went_down_are_that_nics_shadow() -> None:
    down = log_signals("mlx5_core 0000:5f:00.0 mlx5_3: Port: 1 Link DOWN", host=host(6), time=T0)
    later = T0 + timedelta(seconds=30)
    # Two addresses: NCCL names the peer by whichever of its ports the queue pair used.
    reports = [
        *_retry_exceeded(5, "10.131.0.16", later),
        *_retry_exceeded(7, "10.131.0.16", later),
        *_retry_exceeded(14, "10.128.0.16", later),
    ]
    ctx = TriageContext.of([*down, *reports])
    assert not LinkErrorsOnManyHostsAreTheFabric().applies(ctx)
    verdict = DEFAULT_POLICY.decide(ctx)
    assert (verdict.rule, verdict.culprit_host) == ("LinkErrorsOnOneHostAreItsNic", host(6))
    assert verdict.symptoms_total == 3
    assert len(DEFAULT_POLICY.decide_all(ctx)) == 1


def test_a_shared_storage_outage_is_not_the_symptom_of_a_local_disk_fault() -> None:
    lustre = [
        s
        for h in range(4)
        for s in log_signals(
            "LustreError: 11-0: scratch-OST0003-osc-ffff9a4c3e5f1000: operation ost_write to "
            "node 10.0.0.3@o2ib failed: rc = -110",
            host=host(h),
            time=T0,
        )
    ]
    nvme = log_signals(
        "nvme nvme0: controller is down; will reset: CSTS=0xffffffff, PCI_STATUS=0xffff",
        host=host(3),
        time=T0 + timedelta(seconds=40),
    )
    verdicts = classify_signals_all([*lustre, *nvme, _job_stall()])
    assert [(v.category, v.culprit_host) for v in verdicts] == [
        (Category.SSD, host(3)),
        (Category.DEPENDENCY, None),
    ]
    assert verdicts[1].evidence_total == 4
