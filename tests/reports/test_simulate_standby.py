"""The simulation charges an exclusion what the product does with it: with in-place restarts
on, a standby host of the job's allocation takes the culprit's place in the job (no requeue:
init) while the allocation has one free; the excluded host, still allocated, is a standby again
once repaired, and a requeue gives the job its full allocation; otherwise a requeue (onto a spare
from the pool: requeue + init), never init alone."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from sentinel.reports.simulation import Assumptions, Mechanisms, play, schedule
from sentinel.reports.simulation.play import Run

SMALL = Assumptions(hosts=64)


def _exclusions(run: Run) -> Counter[float]:
    """Each exclusion's time from the decision to training again."""
    return Counter(
        round(i.resumed_s - i.issued_s, 3)
        for i in run.interruptions
        if i.exclude_hosts and i.action == "exclude_and_restart" and not i.planned
    )


def test_an_exclusion_goes_onto_a_standby_while_the_allocation_has_one() -> None:
    a = SMALL
    in_place = Mechanisms(in_place=True)
    times = _exclusions(play(a, schedule(a, 11), in_place))
    # Onto a standby (init), or, the standbys used, a requeue waiting for a node.
    assert set(times) == {a.init_s, a.node_wait_s + a.restart_s}
    assert times[a.init_s] > times[a.node_wait_s + a.restart_s] > 0
    # More standbys take more exclusions in the job; none takes none.
    more = replace(a, standby_hosts=8)
    assert _exclusions(play(more, schedule(more, 11), in_place))[a.init_s] > times[a.init_s]
    none = replace(a, standby_hosts=0)
    assert a.init_s not in _exclusions(play(none, schedule(none, 11), in_place))


def test_a_spare_from_the_pool_is_a_requeue_even_with_in_place_restarts() -> None:
    """The product requeues the job onto a hot spare (requeue + init), in-place restarts on or
    not; only a standby already in the allocation spares the requeue."""
    a = replace(SMALL, standby_hosts=0, spare_pool=10_000)
    both = Mechanisms(hot_spares=True, in_place=True)
    assert set(_exclusions(play(a, schedule(a, 11), both))) == {a.restart_s}


def test_the_standby_count_is_printed_with_its_source() -> None:
    [line] = [line for line in SMALL.lines() if line.startswith("standby hosts")]
    assert "2 (sbatch -N 66 for 64 hosts' ranks" in line
    assert "is a standby again once repaired" in line
    assert "NVIDIA Resiliency Extension" in line and "--nnodes MIN:MAX" in line


def test_an_excluded_host_is_a_standby_again_once_repaired() -> None:
    """The host a standby replaced stays allocated: repaired, it is a standby again (a repeat
    offender, kept out, never is); a requeue gives the job its full allocation."""
    from sentinel.reports.simulation.play import _requeue_hosts, _standbys_free, _State

    a = replace(SMALL, standby_hosts=2)
    state = _State(standbys_out=["node3", "node9"])
    state.back_at.update({"node3": 100.0, "node9": float("inf")})
    assert _standbys_free(a, state, 50.0) == 0
    assert _standbys_free(a, state, 150.0) == 1  # node3 repaired: a standby again
    # A requeue at 150 s must find node9's place and the excluded host's; the allocation is
    # then full again.
    assert _requeue_hosts(Mechanisms(in_place=True), state, "restart", 1, 150.0) == 2
    assert _standbys_free(a, state, 150.0) == 2
