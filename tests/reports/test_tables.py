"""The report's arithmetic on small timelines: downtime, lost work, overlaps, ETTR, MTTF."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from sentinel.reports.frames import INCIDENT_SCHEMA, JOB_SCHEMA, History
from sentinel.reports.tables import (
    ReportParams,
    build_report,
    interruptions,
    mttf,
    repeat_offenders,
    root_causes,
)

H = 3600.0


def incident(opened: float, category: str = "faulty_gpu", **kw: Any) -> dict[str, Any]:
    row = dict.fromkeys(INCIDENT_SCHEMA)
    row.update(id=f"i{opened}", job_id="job", category=category, state="resolved",
               opened_s=opened, detected_s=opened + 2)  # fmt: skip
    row.update(kw)
    return row


def history(*incidents: dict[str, Any], step_time: float | None = 6.0) -> History:
    jobs = pl.DataFrame(
        [{"job_id": "job", "first_seen_s": 0.0, "last_seen_s": 10 * H, "world_size": 16,
          "state": "running", "step_time_s": step_time}],
        schema=JOB_SCHEMA,
    )  # fmt: skip
    return History(pl.DataFrame(list(incidents), schema=INCIDENT_SCHEMA), jobs, None, None)


def test_downtime_runs_from_the_fault_to_the_job_training_again_plus_lost_work() -> None:
    # t=1h a GPU falls off the bus; 10 steps of 6 s since the checkpoint; training at 1h10m.
    h = history(incident(1 * H, resolved_s=1 * H + 600, steps_lost=10, status="done"))
    report = build_report(h, ReportParams(), now_s=10 * H)
    ettr = report.tables["ettr"].row(0, named=True)
    assert ettr["downtime_h"] == pytest.approx(600 / H, abs=0.01)
    assert ettr["lost_work_h"] == pytest.approx(60 / H, abs=0.01)
    assert ettr["ettr_pct"] == pytest.approx((10 * H - 660) / (10 * H) * 100, abs=0.01)


def test_an_unresolved_incident_counts_until_its_restart_was_carried_out_plus_restart_time() -> (
    None
):
    h = history(incident(H, status="done", decision_updated_s=H + 30, steps_lost=0))
    per = interruptions(h, ReportParams(restart_s=300), 0.0, 10 * H)
    assert per["downtime_s"].to_list() == [330.0]


def test_an_open_incident_counts_until_the_end_of_the_window() -> None:
    h = history(incident(9 * H, state="open", status="escalated"))
    per = interruptions(h, ReportParams(), 0.0, 10 * H)
    assert per["downtime_s"].to_list() == [H]


def test_overlapping_incidents_of_one_job_count_once() -> None:
    h = history(
        incident(H, resolved_s=H + 600),
        incident(H + 300, category="nic", resolved_s=H + 900),  # overlaps the first by 300 s
    )
    per = interruptions(h, ReportParams(), 0.0, 10 * H).sort("opened_s")
    assert per["downtime_s"].to_list() == [600.0, 300.0]


def test_unknown_step_time_leaves_lost_work_uncounted_and_says_so() -> None:
    h = history(incident(H, resolved_s=H + 60, steps_lost=100), step_time=None)
    report = build_report(h, ReportParams(), now_s=10 * H)
    assert report.summary["incidents_without_lost_work"] == 1
    assert report.tables["ettr"]["lost_work_h"].to_list() == [0.0]


def test_root_causes_share_only_the_unexpected_and_sit_beside_table5() -> None:
    inc = history(
        incident(1.0), incident(2.0), incident(3.0, category="software_bug"),
        incident(4.0, category="planned"),
    ).incidents  # fmt: skip
    table = {r["category"]: r for r in root_causes(inc).iter_rows(named=True)}
    assert table["faulty_gpu"]["share_pct"] == pytest.approx(66.7)
    assert table["software_bug"]["share_pct"] == pytest.approx(33.3)
    assert table["planned"]["share_pct"] is None
    assert table["cpu"]["count"] == 0 and table["cpu"]["llama3_count"] == 2


def test_mttf_is_the_window_over_the_unexpected_failures() -> None:
    inc = history(incident(1.0), incident(2.0, category="nic"), incident(3.0, "planned")).incidents
    table = {r["category"]: r for r in mttf(inc, 10 * H).iter_rows(named=True)}
    assert table["(all unexpected)"]["mttf_h"] == 5.0
    assert table["nic"]["mttf_h"] == 10.0
    assert table["(all unexpected)"]["llama3_mttf_h"] == pytest.approx(54 * 24 / 419, abs=0.01)


def test_repeat_offenders_are_hosts_named_twice() -> None:
    inc = history(
        incident(1.0, culprit_host="h1"), incident(2.0, "nic", culprit_host="h1"),
        incident(3.0, culprit_host="h2"),
    ).incidents  # fmt: skip
    rows = repeat_offenders(inc).to_dicts()
    assert [(r["host"], r["incidents"], r["categories"]) for r in rows] == [
        ("h1", 2, "faulty_gpu,nic")
    ]
