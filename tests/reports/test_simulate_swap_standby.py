"""The simulation charges a proactive swap what the product does with it: in the in-place
variants, a swap carried out in the job onto a free standby host of the allocation (init, no
requeue, a standby consumed as an exclusion consumes one, the pool's spare kept); otherwise the
requeue, onto a spare of the pool where one is free (requeue + init), else waiting for a node."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from sentinel.reports.simulation import Assumptions, Mechanisms, play, schedule
from sentinel.reports.simulation.play import Run

SMALL = Assumptions(hosts=64)
SWAPS = Mechanisms(proactive_swap=True)


def _swaps(run: Run) -> Counter[float]:
    """Each swap's time from its execution to training again."""
    return Counter(
        round(i.resumed_s - i.issued_s, 3) for i in run.interruptions if i.action == "swap"
    )


def test_a_swap_goes_onto_a_standby_in_the_in_place_variants() -> None:
    a = SMALL
    in_job = _swaps(play(a, schedule(a, 11), replace(SWAPS, in_place=True)))
    # Onto a standby (init) while the allocation has one free, else the requeue waiting for a
    # node (no hot spares in this variant).
    assert set(in_job) == {a.init_s, a.node_wait_s + a.restart_s}
    assert in_job[a.init_s] > 0
    # With hot spares too, the swaps the standbys cannot take are requeued onto the pool's.
    both = _swaps(play(a, schedule(a, 11), replace(SWAPS, in_place=True, hot_spares=True)))
    assert set(both) == {a.init_s, a.restart_s} and both[a.init_s] == in_job[a.init_s]


def test_without_in_place_restarts_or_a_standby_a_swap_is_the_requeue() -> None:
    a = SMALL
    assert a.init_s not in _swaps(play(a, schedule(a, 11), SWAPS))
    none = replace(a, standby_hosts=0)
    assert a.init_s not in _swaps(play(none, schedule(none, 11), replace(SWAPS, in_place=True)))


def test_the_swap_onto_a_standby_is_printed_with_the_standby_count() -> None:
    [line] = [line for line in SMALL.lines() if line.startswith("standby hosts")]
    assert "a proactive swap is carried out in the job the same way onto a free standby" in line
