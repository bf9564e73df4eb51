"""The simulation's variants: the real triage and policy in the loop, each mechanism modelled,
wrong verdicts paid for, and the sensitivity of the figure to its assumptions."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from sentinel.reports.cadence import daly_interval
from sentinel.reports.simulation import (
    VARIANTS,
    Assumptions,
    Mechanisms,
    Outcome,
    accuracy,
    checkpoint_interval,
    describe,
    play,
    run,
    schedule,
    sensitivity,
)
from sentinel.triage.taxonomy import CATEGORIES, LLAMA3_TABLE5, Category

# A small fleet keeps each draw's triage quick; the schedule is still Table 5's 419 faults.
SMALL = Assumptions(hosts=64)


@pytest.fixture(scope="module")
def outcome() -> Outcome:
    return run(SMALL, 11)


def test_every_variant_is_played_on_the_same_faults(outcome: Outcome) -> None:
    assert list(outcome.runs) == [label for label, _ in VARIANTS]
    ettr = {label: r.ettr(SMALL.step_time_s) for label, r in outcome.runs.items()}
    base, reactive, together = ettr[VARIANTS[0][0]], ettr[VARIANTS[1][0]], ettr[VARIANTS[-1][0]]
    assert base < reactive < together
    for label, _ in VARIANTS[2:-1]:
        assert ettr[label] > reactive, label


def test_every_category_went_through_the_real_triage(outcome: Outcome) -> None:
    t = outcome.triaged
    reactive = outcome.sentinel
    triaged = [i for i in reactive.interruptions if i.fault.category != Category.PLANNED]
    assert sum(t.draws.values()) == len(triaged)
    assert all(i.category is not None for i in triaged)
    right = accuracy(SMALL)
    assert set(right) == set(LLAMA3_TABLE5)
    # The evidence is mostly clear: the real triage names most hardware faults' hosts, and
    # misses exactly where the drawn evidence says nothing (7% + 3% of the host faults).
    for category in (c for c, f in CATEGORIES.items() if f.host_must_leave):
        host_right = right[category].host_right
        assert host_right is not None and 0.85 <= host_right <= 1.0, category
    assert right[Category.DEPENDENCY].host_right is None
    assert right[Category.SOFTWARE_BUG].category_right == pytest.approx(1.0)


def test_a_verdict_that_misses_the_host_costs_a_second_failure(outcome: Outcome) -> None:
    reactive = outcome.sentinel
    missed = [
        i for i in reactive.interruptions
        if CATEGORIES[i.fault.category].host_must_leave
        and i.fault.loop == 0 and i.fault.host is not None
        and f"gpu-host-{i.fault.host:04d}" not in i.exclude_hosts and i.status != "escalated"
    ]  # fmt: skip
    assert missed
    repeats = Counter(i.fault.at_s for i in reactive.interruptions if i.fault.loop)
    again = {(i.fault.host, i.fault.category) for i in reactive.interruptions if i.fault.loop}
    assert repeats and all((i.fault.host, i.fault.category) in again for i in missed)


def test_swaps_are_planned_and_only_with_proactive_swap(outcome: Outcome) -> None:
    for label, m in VARIANTS:
        r = outcome.runs[label]
        swaps = [i for i in r.interruptions if i.action == "swap"]
        assert len(swaps) == r.swaps
        assert bool(swaps) == m.proactive_swap, label
        assert all(i.planned and i.steps_lost == 0 and i.exclude_hosts for i in swaps)


def test_cadence_advice_checkpoints_at_dalys_interval() -> None:
    mttf = SMALL.days * 86400 / 419
    advised = checkpoint_interval(SMALL, Mechanisms(cadence=True))
    assert advised == pytest.approx(daly_interval(SMALL.checkpoint_save_s, mttf))
    assert checkpoint_interval(SMALL, Mechanisms()) == SMALL.checkpoint_interval_s


def test_the_report_prints_every_variant_its_assumptions_and_the_sensitivity(
    outcome: Outcome,
) -> None:
    rows = sensitivity(outcome)
    text = "\n".join(describe(outcome, rows))
    for label, _ in VARIANTS:
        assert label in text
    for source in ("Llama 3 paper", "ByteRobust", "Kokolis et al.", "NVRx", "assumption"):
        assert source in text
    assert "the real triage weighed" in text and "most sensitive to:" in text
    together = outcome.together.ettr(SMALL.step_time_s)
    assert all(r.ettr < together for r in rows if r.pessimistic)
    assert [r.change for r in rows[-2:]] == [
        "every pessimistic end at once",
        "every optimistic end at once",
    ]
    assert rows[-2].ettr == min(r.ettr for r in rows)
    assert rows[-1].ettr == max(r.ettr for r in rows) > together


def test_in_place_restarts_are_the_policys_decisions(outcome: Outcome) -> None:
    """The in-place variant turns the policy's in-place restarts on: a transient fault is
    decided restart_in_place by its rule, a NIC link that flapped and came back by its own
    (the verdict's link_flapped), the same bug again is escalated, and the variants without
    it never restart in place."""
    in_place = outcome.runs["+ in-place restart"].interruptions
    restarted = [i for i in in_place if i.action == "restart_in_place"]
    by_rule = Counter(i.rule for i in restarted if not i.planned)
    assert set(by_rule) == {"RestartInPlaceWhenTransient", "RestartInPlaceAfterALinkFlap"}
    # Planned work restarted in place is the operator's (test_simulate_planned.py).
    assert {i.rule for i in restarted if i.planned} == {"OperatorRestartInPlace"}
    for i in in_place:
        if i.rule == "RestartInPlaceWhenTransient":
            assert i.category in (
                Category.SOFTWARE_BUG,
                Category.NCCL_WATCHDOG_TIMEOUT,
                Category.UNKNOWN,
            ), i
        elif i.rule == "RestartInPlaceAfterALinkFlap":
            # The flap was transient: the host stays in the job and does not fail it again.
            assert i.category == Category.NIC and not i.exclude_hosts, i
            again = [j for j in in_place if j.fault.loop > i.fault.loop
                     and (j.fault.host, j.fault.draw) == (i.fault.host, i.fault.draw)]  # fmt: skip
            assert not again, i
    # A deterministic bug comes back after its in-place restart: a crash loop, escalated.
    assert any(i.rule == "EscalateRepeatedSoftwareBug" and i.fault.loop == 1 for i in in_place)
    for label, r in outcome.runs.items():
        if "in-place" not in label and label != VARIANTS[-1][0]:
            assert all(i.action != "restart_in_place" for i in r.interruptions), label


def test_the_spare_pool_runs_empty_and_refills_from_repaired_hosts(outcome: Outcome) -> None:
    """A spare takes an excluded host's place at once while the pool has one; each is back
    once the host it replaced is repaired. Meanwhile an exclusion waits for a node from the
    queue, and a swap is put off to a checkpoint after a spare is back (or never made)."""
    a = SMALL

    def restarts(m: Mechanisms, pool: int) -> Counter[float]:
        b = replace(a, spare_pool=pool)
        r = play(b, schedule(b, 11), m)
        return Counter(
            round(i.resumed_s - i.issued_s, 3) for i in r.interruptions if i.exclude_hosts
        )

    spares = Mechanisms(hot_spares=True)
    at_once, waited = a.restart_s, a.node_wait_s + a.restart_s
    # The pool the sizing rule recommends (p99 of the hosts out) covers this schedule; one of
    # 8 runs empty.
    assert a.pool_size == 20
    assert set(restarts(spares, a.pool_size)) == {at_once}
    small = 8
    assert set(restarts(spares, small)) == {at_once, waited}
    assert set(restarts(spares, 10_000)) == {at_once}
    assert set(restarts(Mechanisms(), small)) == {waited}
    # The policy is told the pool's free spares: one that finds none escalates the exclusion.
    b = replace(a, spare_pool=small)
    rules = Counter(i.rule for i in play(b, schedule(b, 11), spares).interruptions)
    assert rules["WaitWhenNoSpareHost"] > 0
    b = replace(a, spare_pool=10_000)
    assert "WaitWhenNoSpareHost" not in {
        i.rule for i in play(b, schedule(b, 11), spares).interruptions
    }
    together = VARIANTS[-1][1]
    # No standby host in the allocation: every exclusion takes its spare from the pool.
    swaps = {pool: play(b, schedule(b, 11), together).swaps
             for pool in (small, 10_000)
             for b in [replace(a, spare_pool=pool, standby_hosts=0)]}  # fmt: skip
    assert 0 < swaps[small] < swaps[10_000]


def test_swaps_are_decided_by_the_swap_policy_within_its_caps(outcome: Outcome) -> None:
    """With hot spares, DEFAULT_SWAP_POLICY decides each swap: never more than its caps allow
    (max_per_job in job_window_s, max_per_hour), even with spares to spare."""
    caps = SMALL.remediation.swap
    b = replace(SMALL, spare_pool=10_000)
    for r in (outcome.together, play(b, schedule(b, 11), VARIANTS[-1][1])):
        at = [i.fault_s for i in r.interruptions if i.action == "swap"]
        assert at
        for t in at:
            assert sum(1 for u in at if t - caps.job_window_s < u <= t) <= caps.max_per_job
            assert sum(1 for u in at if t - 3600 < u <= t) <= caps.max_per_hour


def test_a_crash_loop_that_came_with_a_new_version_is_rolled_back_once(outcome: Outcome) -> None:
    """The policy decides the rollback from the code versions the heartbeats would report: a
    repeating bug that came with a new version repeats once, is rolled back (in place where
    in-place restarts are on, else a requeue) and is gone; one not due to a version change is
    escalated as before; the baseline has no rollback."""
    for label, m in outcome.mechanisms.items():
        steps = outcome.runs[label].interruptions
        rolled = [i for i in steps if i.action == "roll_back"]
        if not m.sentinel:
            assert not rolled
            continue
        assert rolled, label
        for i in rolled:
            assert i.fault.new_version and i.fault.loop == 1, i
            assert i.rule == "RollBackACrashLoopToTheVersionThatTrained", i
            seq = i.fault.signature
            assert not [j for j in steps if j.fault.signature == seq and j.fault.loop > 1], i
            took = i.resumed_s - i.issued_s
            assert took == (SMALL.in_place_restart_s if m.in_place else SMALL.restart_s), i
        old = [i for i in steps if i.fault.deterministic and not i.fault.new_version]
        assert any(i.rule == "EscalateRepeatedSoftwareBug" for i in old), label


def test_the_share_of_bugs_from_a_new_version_is_its_own_draw() -> None:
    """Changing the share changes which bugs came with a version, not the rest of the run."""
    none, every = (schedule(replace(SMALL, new_version_bug_share=s), 11) for s in (0.0, 1.0))
    assert [(f.at_s, f.category, f.deterministic) for f in none] == [
        (f.at_s, f.category, f.deterministic) for f in every
    ]
    assert not any(f.new_version for f in none)
    assert all(f.new_version == f.deterministic for f in every)


def test_a_crash_at_the_same_step_skips_that_data_once(outcome: Outcome) -> None:
    """The policy decides the data skip from the step the ranks would report: a repeating bug
    tied to the data fails again at the same step, is restarted skipping those batches (in
    place where in-place restarts are on, else a requeue) and is gone; one not tied to the
    data and not from a new version is escalated as before; the baseline has no skip."""
    for label, m in outcome.mechanisms.items():
        steps = outcome.runs[label].interruptions
        skipped = [i for i in steps if i.action == "skip_data"]
        if not m.sentinel:
            assert not skipped
            continue
        assert any(i.fault.data_position for i in skipped), label
        for i in skipped:
            assert i.fault.loop == 1 and i.rule == "SkipTheDataWhereTheSameStepFailsAgain", i
            took = i.resumed_s - i.issued_s
            assert took == (SMALL.in_place_restart_s if m.in_place else SMALL.restart_s), i
            seq = i.fault.signature
            later = [j for j in steps if j.fault.signature == seq and j.fault.loop > 1]
            if i.fault.data_position:
                assert i.fault.step is not None and i.checkpoint_step <= i.fault.step, i
                assert not later, i
            else:
                # Not the data's, though it failed at the same step (120 s in both times): the
                # skip does not remove it, and the loop after it is escalated.
                assert [j.rule for j in later] == ["EscalateRepeatedSoftwareBug"], i
        rest = [
            i
            for i in steps
            if i.fault.deterministic and not (i.fault.new_version or i.fault.data_position)
        ]
        assert any(i.rule == "EscalateRepeatedSoftwareBug" for i in rest), label


def test_the_share_of_bugs_tied_to_the_data_is_its_own_draw() -> None:
    """Changing the share changes which bugs are tied to the data, not the rest of the run; a
    bug from a new version is never one."""
    none, every = (schedule(replace(SMALL, data_position_bug_share=s), 11) for s in (0.0, 1.0))
    assert [(f.at_s, f.category, f.deterministic, f.new_version) for f in none] == [
        (f.at_s, f.category, f.deterministic, f.new_version) for f in every
    ]
    assert not any(f.data_position for f in none)
    assert all(f.data_position == (f.deterministic and not f.new_version) for f in every)
