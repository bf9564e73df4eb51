"""What a window's effects single out, and which lesser signs may explain them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sentinel.triage import TriageContext, heartbeat_stall_signal, log_signals, xid_signal
from sentinel.triage.signals import Signal, straggler_signal

T0 = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)
CE = (
    "EDAC MC0: 3 CE memory read error on CPU_SrcID#0_MC#0_Chan#1_DIMM#0 (channel:1 slot:0 "
    "page:0x4f2a1 offset:0x540 grain:32 syndrome:0x0)"
)


def corrected_dimm_error(host: str) -> Signal:
    [signal] = log_signals(CE, host=host, time=T0)
    return signal


def job_stall() -> Signal:
    return heartbeat_stall_signal(host=None, rank=None, seconds=20, time=T0)


def stopped_first(host: str) -> Signal:
    return heartbeat_stall_signal(
        host=host,
        rank=11016,
        seconds=20,
        time=T0,
        stopped_first={
            "step": 6,
            "at": T0.isoformat(),
            "rest_step": 17,
            "rest_at": (T0 + timedelta(seconds=23)).isoformat(),
        },
    )


def test_a_job_wide_hang_singles_out_no_host() -> None:
    ctx = TriageContext.of([job_stall(), corrected_dimm_error("node-0005")])
    assert ctx.implicated_hosts == frozenset()
    assert not ctx.explains_effects(corrected_dimm_error("node-0005"))


def test_a_lesser_sign_explains_the_hang_only_on_the_host_where_it_began() -> None:
    ctx = TriageContext.of([job_stall(), stopped_first("node-1377")])
    assert ctx.implicated_hosts == {"node-1377"}
    assert ctx.explains_effects(corrected_dimm_error("node-1377"))
    assert not ctx.explains_effects(corrected_dimm_error("node-0005"))


def test_a_straggler_singles_out_its_host() -> None:
    slow = straggler_signal(host="node-0009", rank=72, step_time_s=6.0, median_s=2.0, time=T0)
    assert TriageContext.of([slow]).implicated_hosts == {"node-0009"}


def test_watchdog_timeouts_on_every_peer_single_out_no_host() -> None:
    timeouts = [
        s
        for i in range(4)
        for s in log_signals(
            f"[rank{i * 8}]:[E0302 04:02:40.000 ProcessGroupNCCL.cpp:616] [Rank {i * 8}] "
            "Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7, OpType=ALLREDUCE, "
            "NumelIn=1, NumelOut=1, Timeout(ms)=60000) ran for 60012 milliseconds before timing "
            "out.",
            host=f"node-{i:04d}",
            time=T0,
        )
    ]
    ctx = TriageContext.of(timeouts)
    assert ctx.implicated_hosts == frozenset()
    assert not ctx.explains_effects(corrected_dimm_error("node-0001"))


def test_with_nothing_wrong_elsewhere_a_lesser_sign_is_still_a_lead() -> None:
    assert TriageContext.of([]).explains_effects(corrected_dimm_error("node-0005"))


def test_an_error_level_fault_can_explain_any_hang() -> None:
    xid = xid_signal(79, host="node-0005", gpu="0", time=T0)
    assert TriageContext.of([job_stall()]).explains_effects(xid)
