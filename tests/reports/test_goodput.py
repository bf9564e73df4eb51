"""Goodput accounting: the phases of an interruption and ETTR measured from progress samples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from sentinel.incidents.watchdog import ProgressSampler, RankProgress
from sentinel.reports.frames import INCIDENT_SCHEMA, JOB_SCHEMA, History
from sentinel.reports.goodput import PROGRESS_SCHEMA, measured_ettr
from sentinel.reports.tables import ReportParams, build_report

H = 3600.0
T0 = datetime(2026, 12, 6, tzinfo=UTC)


def _history(incidents: list[dict[str, Any]], progress: list[tuple[float, int]]) -> History:
    rows = []
    for inc in incidents:
        row = dict.fromkeys(INCIDENT_SCHEMA)
        row.update(id="i", job_id="job", category="faulty_gpu", state="resolved")
        row.update(inc)
        rows.append(row)
    jobs = pl.DataFrame(
        [{"job_id": "job", "first_seen_s": 0.0, "last_seen_s": 10 * H, "world_size": 16,
          "state": "running", "step_time_s": 2.0}],
        schema=JOB_SCHEMA,
    )  # fmt: skip
    samples = pl.DataFrame(
        [("job", at, step, 2.0) for at, step in progress], schema=PROGRESS_SCHEMA, orient="row"
    )
    return History(pl.DataFrame(rows, schema=INCIDENT_SCHEMA), jobs, None, None, samples)


def _one(report_table: pl.DataFrame) -> dict[str, Any]:
    assert report_table.height == 1, report_table
    return report_table.row(0, named=True)


def test_each_phase_is_read_from_what_was_recorded() -> None:
    # 1 h: an XID; detected 4 s later; decided at +10 s; carried out at +40 s; the requeued
    # ranks report again (rolled back to the checkpoint) at +340 s; trained again at +400 s.
    t = 1 * H
    history = _history(
        [
            dict(
                opened_s=t,
                detected_s=t + 4,
                decided_s=t + 10,
                status="done",
                decision_updated_s=t + 40,
                resolved_s=t + 400,
                steps_lost=30,
            ),
        ],
        [(0.0, 0), (t - 30, 1785), (t + 340, 1770), (t + 460, 1830)],
    )
    report = build_report(history, ReportParams(), now_s=2 * H)
    row = _one(report.tables["goodput"])
    assert row["category"] == "faulty_gpu"
    assert row["detection_h"] == pytest.approx(4 / H, abs=1e-3)
    assert row["decision_h"] == pytest.approx(6 / H, abs=1e-3)
    assert row["execution_h"] == pytest.approx(30 / H, abs=1e-3)
    assert row["waiting_h"] == pytest.approx(300 / H, abs=1e-3)
    assert row["restart_h"] == pytest.approx(60 / H, abs=1e-3)
    assert row["lost_h"] == pytest.approx(60 / H, abs=1e-3)  # 30 steps x 2 s
    assert row["other_h"] == pytest.approx(0, abs=1e-3)
    day = _one(report.tables["goodput_by_day"])
    assert day["day"] == "1970-01-01"
    assert day["total_h"] == pytest.approx(row["total_h"])


def test_an_in_place_restart_waits_for_no_nodes_its_relaunch_is_the_restart() -> None:
    # 1 h: a software error; decided restart_in_place at +10 s, carried out at +12 s; the
    # launcher's relaunched ranks report again (rolled back) at +50 s; trained again at +75 s.
    t = 1 * H
    history = _history(
        [
            dict(
                category="software_bug",
                opened_s=t,
                detected_s=t + 2,
                decided_s=t + 10,
                action="restart_in_place",
                status="done",
                decision_updated_s=t + 12,
                resolved_s=t + 75,
                steps_lost=10,
            ),
        ],
        [(0.0, 0), (t - 30, 1785), (t + 50, 1780), (t + 120, 1800)],
    )
    row = _one(build_report(history, ReportParams(), now_s=2 * H).tables["goodput"])
    assert row["category"] == "software_bug"
    assert row["waiting_h"] == 0
    assert row["restart_h"] == pytest.approx(63 / H, abs=1e-3)
    assert row["other_h"] == pytest.approx(0, abs=1e-3)


@pytest.mark.parametrize(("action", "in_place", "waiting_s"), [
    ("roll_back", True, 0.0),  # its launcher restarted it on the version that trained
    ("skip_data", True, 0.0),
    ("roll_back", False, 38.0),  # no launcher said so: requeued, the nodes waited for
])  # fmt: skip
def test_a_rollback_or_data_skip_is_in_place_when_its_launcher_acknowledged_it(
    action: str, in_place: bool, waiting_s: float
) -> None:
    t = 1 * H
    history = _history(
        [
            dict(
                category="software_bug",
                opened_s=t,
                detected_s=t + 2,
                decided_s=t + 10,
                action=action,
                status="done",
                decision_updated_s=t + 12,
                resolved_s=t + 75,
                steps_lost=10,
                in_place=in_place,
            ),
        ],
        [(0.0, 0), (t - 30, 1785), (t + 50, 1780), (t + 120, 1800)],
    )
    row = _one(build_report(history, ReportParams(), now_s=2 * H).tables["goodput"])
    assert row["waiting_h"] == pytest.approx(waiting_s / H, abs=1e-3)  # to 3.6 s
    assert row["restart_h"] == pytest.approx((63 - waiting_s) / H, abs=1e-3)


def test_only_an_acknowledged_ack_counts_as_in_place() -> None:
    from sentinel.remediation.decisions import done_by_a_launcher as _acknowledged_in_place

    assert _acknowledged_in_place(
        {"steps": [{"op": "in_place", "ok": True}, {"op": "ack", "ok": True}]}
    )
    assert not _acknowledged_in_place({"steps": [{"op": "in_place", "ok": True}]})
    assert not _acknowledged_in_place({"steps": [{"op": "ack", "ok": False}]})
    assert not _acknowledged_in_place(None) and not _acknowledged_in_place({"steps": "x"})


def test_a_job_that_never_reported_again_leaves_the_restart_unattributed_not_zero() -> None:
    t = 1 * H
    history = _history(
        [
            dict(
                opened_s=t,
                detected_s=t + 4,
                decided_s=t + 10,
                status="done",
                decision_updated_s=t + 40,
                resolved_s=t + 400,
                steps_lost=0,
            )
        ],
        [(0.0, 0), (t - 30, 1785)],
    )
    row = _one(build_report(history, ReportParams(), now_s=2 * H).tables["goodput"])
    assert row["waiting_h"] == 0 and row["restart_h"] == 0
    assert row["other_h"] == pytest.approx(360 / H, abs=1e-3)


def test_a_sample_from_after_the_incident_is_not_its_restart() -> None:
    # Resolved by hand at +100 s; the next sample (another story) comes at +900 s.
    t = 1 * H
    history = _history(
        [
            dict(
                opened_s=t,
                detected_s=t + 4,
                decided_s=t + 10,
                status="done",
                decision_updated_s=t + 40,
                resolved_s=t + 100,
            )
        ],
        [(t - 30, 1785), (t + 900, 1700)],
    )
    row = _one(build_report(history, ReportParams(), now_s=2 * H).tables["goodput"])
    assert row["waiting_h"] == 0
    assert row["other_h"] == pytest.approx(60 / H, abs=1e-3)


def test_measured_ettr_counts_net_progress_once() -> None:
    # One hour; 1,500 steps of 2 s kept, after a rollback of 100 steps that were redone.
    samples = pl.DataFrame(
        [("job", 0.0, 0, 2.0), ("job", 1800.0, 900, 2.0), ("job", 2000.0, 800, 2.0),
         ("job", 3600.0, 1500, 2.0), ("lonely", 10.0, 5, 2.0)],
        schema=PROGRESS_SCHEMA, orient="row",
    )  # fmt: skip
    table = measured_ettr(samples, 0.0, H)
    assert table["job_id"].to_list() == ["job"]  # one sample is no measure
    row = table.row(0, named=True)
    assert row["ettr_pct"] == pytest.approx(1500 * 2 / H * 100, abs=0.01)


def _ranks(step: int, n: int = 4) -> dict[str, list[RankProgress]]:
    return {
        "job": [RankProgress("job", f"h{r}", r, r, step, 2.0, T0, T0) for r in range(n)],
    }


def test_the_sampler_writes_periodically_and_at_once_on_a_restart_or_a_resumption() -> None:
    sampler = ProgressSampler(sample_s=60, still_s=15)
    running = {"job"}

    def at(s: float, step: int) -> list[int]:
        return [r["step"] for r in sampler.rows(_ranks(step), T0 + timedelta(seconds=s), running)]

    assert at(0, 100) == [100]  # the first sight of a job
    assert at(5, 102) == []  # moving, but sampled a minute apart
    assert at(10, 102) == []  # unchanged
    assert at(61, 130) == [130]  # a minute on
    assert at(90, 80) == [80]  # rolled back to a checkpoint: the ranks came back
    assert at(95, 80) == []
    assert at(130, 81) == [81]  # stood still 40 s (loading), then trained: at once
    assert at(135, 83) == []
    assert sampler.rows(_ranks(90), T0 + timedelta(seconds=300), set()) == []  # job ended
    assert at(301, 90) == [90]  # seen again: a first sight
