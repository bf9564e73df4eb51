"""The simulation's planned interruptions: a printed share is job-level work (a configuration
or dataset update) that the operator restarts in place where the launcher does in-place
restarts; the rest (firmware) is requeued as before."""

from __future__ import annotations

from dataclasses import replace

from sentinel.remediation.planned import OPERATOR_RESTART_RULE
from sentinel.reports.simulation import VARIANTS, Assumptions, play, schedule
from sentinel.reports.simulation.output import OPTIMISTIC, PESSIMISTIC
from sentinel.triage.taxonomy import LLAMA3_PLANNED_INTERRUPTIONS, Category

SMALL = Assumptions(hosts=64)
SEED = 11


def _planned(a: Assumptions) -> list[bool]:
    return [f.job_level for f in schedule(a, SEED) if f.category == Category.PLANNED]


def test_the_share_is_drawn_on_its_own_stream() -> None:
    shares = [_planned(replace(SMALL, planned_job_level_share=s)) for s in (0.0, 0.5, 1.0)]
    assert shares[0] == [False] * LLAMA3_PLANNED_INTERRUPTIONS
    assert shares[2] == [True] * LLAMA3_PLANNED_INTERRUPTIONS
    assert 0 < sum(shares[1]) < LLAMA3_PLANNED_INTERRUPTIONS
    # Every other draw is as it was: the same faults at the same times.
    base = [
        (f.at_s, f.category, f.host)
        for f in schedule(replace(SMALL, planned_job_level_share=0.0), SEED)
    ]
    assert [(f.at_s, f.category, f.host) for f in schedule(SMALL, SEED)] == base


def test_job_level_work_is_restarted_in_place_by_the_operator_only_with_in_place() -> None:
    faults = schedule(SMALL, SEED)
    in_place = dict(VARIANTS)["+ in-place restart"]
    reactive = dict(VARIANTS)["Sentinel reactive (today)"]
    for m, restarted in ((in_place, True), (reactive, False)):
        planned = [
            i for i in play(SMALL, faults, m).interruptions if i.fault.category == Category.PLANNED
        ]
        assert len(planned) == LLAMA3_PLANNED_INTERRUPTIONS and all(i.planned for i in planned)
        for i in planned:
            if i.fault.job_level and restarted:
                assert (i.action, i.rule) == ("restart_in_place", OPERATOR_RESTART_RULE)
                assert "asked by operator" in i.reason
                assert i.resumed_s - i.issued_s == SMALL.in_place_restart_s
            else:
                assert (i.action, i.rule) == ("none", "PlannedWorkNeedsNothing")
                assert i.resumed_s - i.issued_s == SMALL.restart_s
            assert i.steps_lost == 0


def test_the_share_is_printed_with_its_source_and_varied_in_the_sensitivity() -> None:
    [line] = [x for x in SMALL.lines() if x.startswith("planned interruptions")]
    assert "50% job-level" in line and "judgement" in line and "firmware" in line
    assert {"planned_job_level_share": 0.0} in [c for _, c in PESSIMISTIC]
    assert {"planned_job_level_share": 0.8} in [c for _, c in OPTIMISTIC]
