"""Degraded indicators and the proactive-swap policy: each rule alone, pure."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sentinel.db.models import Swap
from sentinel.remediation.degraded import (
    FanStopped,
    HostWindow,
    PsuRedundancyLost,
    RepeatedThermalSlowdown,
    RisingCorrectableEcc,
    RisingLinkErrors,
    RowRemapPending,
    Seen,
    XidResetAtNextOpportunity,
    find_all,
)
from sentinel.remediation.settings import SwapSettings
from sentinel.remediation.swap import (
    DEFAULT_SWAP_POLICY,
    CapSwapsPerHour,
    CapSwapsPerJob,
    NeverMoreThanThePoolHolds,
    NothingToSwapOutsideAJob,
    SwapAtNextCheckpoint,
    SwapContext,
    SwapsDisabled,
    checkpoint_due,
)

T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def seen(kind: str, s: float = 0, gpu: str | None = "0", **payload: Any) -> Seen:
    return Seen(str(uuid.uuid4()), kind, T0 + timedelta(seconds=s), gpu, payload)


def window(*events: Seen, **settings: Any) -> HostWindow:
    return HostWindow("node2", events, SwapSettings(**settings))


def test_row_remap_pending_is_degraded_per_gpu() -> None:
    w = window(
        seen("ecc", counter="remap_pending", previous=0, current=1),
        seen("ecc", counter="remap_pending", previous=1, current=0, gpu="3"),
    )
    [f] = RowRemapPending().find(w)
    assert (f.indicator, f.gpu, f.rule) == ("remap_pending:0", "0", "RowRemapPending")
    assert "next GPU reset" in f.reason


def test_correctable_ecc_counts_only_a_rise_over_the_threshold() -> None:
    slow = window(
        seen("ecc", 0, counter="ecc_volatile_corrected", previous=10, current=200),
        seen("ecc", 60, counter="ecc_volatile_corrected", previous=200, current=900),
    )
    assert RisingCorrectableEcc().find(slow) == []
    fast = window(
        seen("ecc", 0, counter="ecc_volatile_corrected", previous=10, current=600),
        seen("ecc", 60, counter="ecc_volatile_corrected", previous=600, current=1500),
    )
    [f] = RisingCorrectableEcc().find(fast)
    assert "1490 correctable" in f.reason and f.gpu == "0"


@pytest.mark.parametrize(
    ("code", "degraded"),
    [
        (156, True),  # resource retirement event: RESET_GPU, a warning
        (160, True),  # channel retirement event: RESTART_BM, an error
        (79, False),  # fallen off the bus: critical, the job is dead (an incident)
        (13, False),  # the application's fault
        (63, False),  # IGNORE
    ],
)
def test_xid_reset_at_next_opportunity_from_the_catalog(code: int, degraded: bool) -> None:
    found = XidResetAtNextOpportunity().find(window(seen("xid", xid=code, message="Xid")))
    assert bool(found) is degraded


def test_thermal_slowdown_must_repeat() -> None:
    twice = [seen("gpu_condition", s, condition="thermal_slowdown") for s in (0, 60)]
    assert RepeatedThermalSlowdown().find(window(*twice)) == []
    thrice = [*twice, seen("gpu_condition", 120, condition="thermal_slowdown")]
    [f] = RepeatedThermalSlowdown().find(window(*thrice))
    assert f.indicator == "thermal" and len(f.evidence) == 3


IB = (
    "/sys/class/infiniband/mlx5_0/ports/1/counters/symbol_error: 10 -> 90 in 60 s, "
    "above 10 per minute"
)


def test_ib_error_rate_must_rise_again() -> None:
    once = window(seen("log", source="infiniband", message=IB, gpu=None))
    assert RisingLinkErrors().find(once) == []
    twice = window(
        seen("log", 0, source="infiniband", message=IB, gpu=None),
        seen(
            "log",
            60,
            source="infiniband",
            message=IB.replace("symbol_error", "link_error_recovery"),
        ),
    )
    [f] = RisingLinkErrors().find(twice)
    assert f.indicator == "ib_errors"


def test_psu_redundancy_lost_and_fan_at_zero_from_the_bmc() -> None:
    psu = seen(
        "log",
        source="ipmi",
        gpu=None,
        message="  1f | 12/06/2026 | 08:00:00 | Power Unit #0x01 | Redundancy Lost | Asserted",
    )
    fan = seen(
        "log", source="ipmi", gpu=None, message="FAN3             | 32h | cr  | 29.3 | 0 RPM"
    )
    spinning = seen(
        "log", source="ipmi", gpu=None, message="FAN4             | 33h | ok  | 29.4 | 8400 RPM"
    )
    assert [f.indicator for f in PsuRedundancyLost().find(window(psu))] == ["psu_redundancy"]
    assert [f.indicator for f in FanStopped().find(window(fan, spinning))] == ["fan"]
    assert FanStopped().find(window(spinning)) == []


def test_healthy_events_find_nothing() -> None:
    quiet = window(
        seen("ecc", counter="ecc_volatile_corrected", previous=0, current=3),
        seen("log", source="kernel", message="eth0: link up"),
        seen("gpu_condition", condition="power_brake"),
    )
    assert find_all(quiet) == []


def ctx(**kw: Any) -> SwapContext:
    values: dict[str, Any] = {
        "host": "node2",
        "gpu": "0",
        "finding": "GPU 0: a row remap is pending",
        "job_id": "job-1",
        "job_hosts": 4,
        "current_step": 120,
        "durable_step": 100,
        "swaps_last_hour": 0,
        "swaps_for_job": 0,
        "spares_ready": 1,
        "swaps_in_flight": 0,
        "settings": SwapSettings(pool_size=1, spares=["node5"]),
    }
    return SwapContext(**{**values, **kw})


def test_swap_at_the_next_checkpoint_when_nothing_caps_it() -> None:
    p = DEFAULT_SWAP_POLICY.decide(ctx())
    assert (p.action, p.status, p.rule) == ("swap_at_checkpoint", "waiting", "SwapAtNextCheckpoint")
    assert "next durable checkpoint" in p.reason and "node2" in p.reason
    assert SwapAtNextCheckpoint().propose(ctx()) == p


def test_each_cap_refuses_with_its_reason() -> None:
    hour = CapSwapsPerHour().propose(ctx(swaps_last_hour=2))
    assert hour is not None and hour.status == "refused" and "cap 2" in hour.reason
    assert CapSwapsPerHour().propose(ctx(swaps_last_hour=1)) is None
    job = CapSwapsPerJob().propose(ctx(swaps_for_job=2))
    assert job is not None and job.status == "refused" and "job job-1" in job.reason
    assert CapSwapsPerJob().propose(ctx(swaps_for_job=1)) is None
    pool = NeverMoreThanThePoolHolds().propose(ctx(spares_ready=1, swaps_in_flight=1))
    assert pool is not None and pool.status == "refused" and "no spare free" in pool.reason
    assert NeverMoreThanThePoolHolds().propose(ctx(spares_ready=2, swaps_in_flight=1)) is None
    # A standby host of the job's allocation takes the host's place in the job instead.
    assert NeverMoreThanThePoolHolds().propose(ctx(spares_ready=0, standbys=1)) is None
    assert DEFAULT_SWAP_POLICY.decide(ctx(spares_ready=0)).rule == "NeverMoreThanThePoolHolds"


def test_no_job_or_swaps_off_is_nothing_to_do() -> None:
    p = NothingToSwapOutsideAJob().propose(ctx(job_id=None))
    assert p is not None and (p.action, p.status) == ("none", "noop")
    off = SwapsDisabled().propose(ctx(settings=SwapSettings(enabled=False)))
    assert off is not None and off.status == "noop"


def test_the_checkpoint_must_be_newer_than_the_decision() -> None:
    swap = Swap(decided_step=120, checkpoint_step=100)
    assert not checkpoint_due(swap, None)
    assert not checkpoint_due(swap, 100)  # the one durable when it was decided
    assert not checkpoint_due(swap, 110)  # newer, but older than where the job was
    assert checkpoint_due(swap, 120)
    assert checkpoint_due(Swap(decided_step=None, checkpoint_step=None), 5)


def test_leading_indicators_are_told_from_failures() -> None:
    from sentinel.remediation.degraded import leading_indicator

    assert leading_indicator("Power Unit #0x01 | Redundancy Lost | Asserted")
    assert leading_indicator("FAN3             | 32h | cr  | 29.3 | 0 RPM")
    assert leading_indicator(IB)
    assert leading_indicator("Xid 156", 156)
    assert not leading_indicator("Xid 79: GPU has fallen off the bus", 79)
    assert not leading_indicator("Power Supply #0x02 | Failure detected | Asserted")


def test_a_host_that_only_warns_is_left_to_the_swap() -> None:
    from sentinel.knowledge.taxonomy import Category
    from sentinel.remediation.policy import (
        DEFAULT_POLICY,
        LeaveDegradedHostsToTheSwap,
        RemediationContext,
    )
    from sentinel.remediation.settings import RemediationSettings

    def rctx(**kw: Any) -> RemediationContext:
        values: dict[str, Any] = {
            "category": Category.POWER_SUPPLY,
            "culprit_host": "node3",
            "culprit_gpu": None,
            "confidence": 0.77,
            "xids": (),
            "signature": None,
            "job_id": "job-1",
            "job_hosts": 4,
            "checkpoint_step": 100,
            "current_step": 120,
            "past": (),
            "drains_last_hour": 0,
            "spare_hosts": 1,
            "leading_only": True,
        }
        return RemediationContext(**{**values, **kw})

    p = DEFAULT_POLICY.decide(rctx())
    assert (p.action, p.rule) == ("none", "LeaveDegradedHostsToTheSwap")
    assert "next durable checkpoint" in p.reason
    rule = LeaveDegradedHostsToTheSwap()
    assert rule.propose(rctx(leading_only=False)) is None  # a failure: excluded as before
    off = RemediationSettings(swap=SwapSettings(enabled=False))
    assert rule.propose(rctx(settings=off)) is None
    assert DEFAULT_POLICY.decide(rctx(settings=off)).action == "exclude_and_restart"
