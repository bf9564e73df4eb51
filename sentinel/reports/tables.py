"""The report's tables, pure over a History: root causes, MTTF, time lost, ETTR, repeat hosts.

Time lost to an interruption is its downtime (from the fault to the job training again: the
incident's resolution, or its restart decision carried out plus the restart time) plus the
work lost since the last checkpoint (steps lost x the job's step time). Interruptions of one
job that overlap are counted once: each starts no earlier than the previous one ended.
ETTR (effective training time ratio) = productive time / wall time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

from sentinel.remediation.decisions import DecisionStatus
from sentinel.reports.frames import History
from sentinel.reports.goodput import (
    breakdown_by_category,
    breakdown_by_day,
    measured_ettr,
    phases,
)
from sentinel.triage.taxonomy import (
    LLAMA3_PLANNED_INTERRUPTIONS,
    LLAMA3_TABLE5,
    LLAMA3_UNEXPECTED_INTERRUPTIONS,
    Category,
)

LLAMA3_DAYS = 54.0
HOUR = 3600.0
PLANNED = Category.PLANNED.value


@dataclass(frozen=True)
class ReportParams:
    # An incident that was never marked resolved counts the job as training again this long
    # after its restart decision was carried out (scheduling, NCCL init, checkpoint load).
    restart_s: float = 300.0


@dataclass
class Report:
    summary: dict[str, Any]
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _reference() -> pl.DataFrame:
    rows: list[tuple[str, int, float | None]] = [
        (c.value, n, pct) for c, (n, pct) in LLAMA3_TABLE5.items()
    ]
    rows.append((PLANNED, LLAMA3_PLANNED_INTERRUPTIONS, None))
    return pl.DataFrame(
        rows,
        schema={"category": pl.String, "llama3_count": pl.Int64, "llama3_share_pct": pl.Float64},
        orient="row",
    )


def root_causes(incidents: pl.DataFrame) -> pl.DataFrame:
    """Interruptions by root cause beside Llama 3's Table 5 (shares of the unexpected ones)."""
    counts = incidents.group_by("category").agg(pl.len().cast(pl.Int64).alias("count"))
    unexpected = int(counts.filter(pl.col("category") != PLANNED)["count"].sum())
    return (
        counts.join(_reference(), on="category", how="full", coalesce=True)
        .with_columns(pl.col("count").fill_null(0))
        .with_columns(
            pl.when(pl.col("category") != PLANNED)
            .then((pl.col("count") / max(unexpected, 1) * 100).round(1))
            .otherwise(None)
            .alias("share_pct")
        )
        .with_columns((pl.col("category") == PLANNED).alias("_planned"))
        .sort(
            ["_planned", "count", "llama3_count"], descending=[False, True, True], nulls_last=True
        )
        .select("category", "count", "share_pct", "llama3_count", "llama3_share_pct")
    )


def mttf(incidents: pl.DataFrame, window_s: float) -> pl.DataFrame:
    """Mean time to failure over the window: overall and per category (unexpected only)."""
    unexpected = incidents.filter(pl.col("category") != PLANNED)
    per = unexpected.group_by("category").agg(pl.len().cast(pl.Int64).alias("failures"))
    overall = pl.DataFrame(
        {"category": ["(all unexpected)"], "failures": [unexpected.height]},
        schema={"category": pl.String, "failures": pl.Int64},
    )
    ref = pl.DataFrame(
        [(c.value, n) for c, (n, _) in LLAMA3_TABLE5.items()]
        + [("(all unexpected)", LLAMA3_UNEXPECTED_INTERRUPTIONS)],
        schema={"category": pl.String, "llama3_failures": pl.Int64},
        orient="row",
    )
    return (
        pl.concat([overall, per.sort(["failures", "category"], descending=[True, False])])
        .join(ref, on="category", how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col("failures") > 0)
            .then((window_s / HOUR / pl.col("failures")).round(2))
            .otherwise(None)
            .alias("mttf_h"),
            (LLAMA3_DAYS * 24 / pl.col("llama3_failures")).round(2).alias("llama3_mttf_h"),
        )
        .select("category", "failures", "mttf_h", "llama3_mttf_h")
    )


def interruptions(
    history: History, params: ReportParams, window_start_s: float, window_end_s: float
) -> pl.DataFrame:
    """One row per incident: its downtime and lost work, overlaps within a job clipped."""
    inc = history.incidents.join(
        history.jobs.select("job_id", "step_time_s"), on="job_id", how="left"
    )
    done_and_restarted = pl.when(pl.col("status") == DecisionStatus.done.value).then(
        pl.col("decision_updated_s") + params.restart_s
    )
    return (
        inc.with_columns(
            pl.max_horizontal(pl.col("opened_s"), pl.lit(window_start_s)).alias("start_s"),
            pl.min_horizontal(
                pl.coalesce(pl.col("resolved_s"), done_and_restarted, pl.lit(window_end_s)),
                pl.lit(window_end_s),
            ).alias("end_s"),
        )
        .sort(["job_id", "start_s"], nulls_last=True)
        .with_columns(
            pl.col("end_s").cum_max().shift(1).over("job_id").alias("_prev_end"),
        )
        .with_columns(
            pl.max_horizontal("start_s", pl.col("_prev_end").fill_null(pl.col("start_s"))).alias(
                "_start"
            )
        )
        .with_columns(
            (pl.col("end_s") - pl.col("_start")).clip(lower_bound=0).alias("downtime_s"),
            (pl.col("steps_lost") * pl.col("step_time_s")).alias("lost_work_s"),
        )
        .drop("_prev_end", "_start")
    )


def time_lost(per_incident: pl.DataFrame, jobs: pl.DataFrame) -> pl.DataFrame:
    """Downtime and lost work per category, in hours and in GPU-hours."""
    frame = per_incident.join(jobs.select("job_id", "world_size"), on="job_id", how="left")
    lost = pl.col("downtime_s") + pl.col("lost_work_s").fill_null(0)
    out = (
        frame.group_by("category")
        .agg(
            pl.len().cast(pl.Int64).alias("interruptions"),
            (pl.col("downtime_s").sum() / HOUR).alias("downtime_h"),
            (pl.col("lost_work_s").fill_null(0).sum() / HOUR).alias("lost_work_h"),
            (lost.sum() / HOUR).alias("total_h"),
            ((lost * pl.col("world_size").fill_null(0)).sum() / HOUR).alias("gpu_hours"),
        )
        .sort(["total_h", "category"], descending=[True, False])
    )
    total = max(float(out["total_h"].sum()), 1e-9)
    return out.with_columns(
        (pl.col("total_h") / total * 100).round(1).alias("share_pct"),
        pl.col("downtime_h", "lost_work_h", "total_h").round(2),
        pl.col("gpu_hours").round(0).cast(pl.Int64),
    )


def ettr(
    per_incident: pl.DataFrame, jobs: pl.DataFrame, window_start_s: float, window_end_s: float
) -> pl.DataFrame:
    """Effective training time ratio per job over its life inside the window."""
    per_job = (
        per_incident.filter(pl.col("job_id").is_not_null())
        .group_by("job_id")
        .agg(
            pl.len().cast(pl.Int64).alias("interruptions"),
            pl.col("downtime_s").sum(),
            pl.col("lost_work_s").fill_null(0).sum(),
            pl.col("end_s").max().alias("_last_end"),
        )
    )
    frame = (
        jobs.join(per_job, on="job_id", how="left")
        .with_columns(
            pl.col("interruptions", "downtime_s", "lost_work_s").fill_null(0),
            pl.max_horizontal("first_seen_s", pl.lit(window_start_s)).alias("_from"),
            pl.min_horizontal(
                pl.max_horizontal("last_seen_s", pl.col("_last_end")), pl.lit(window_end_s)
            ).alias("_to"),
        )
        .with_columns((pl.col("_to") - pl.col("_from")).clip(lower_bound=0).alias("wall_s"))
        .filter(pl.col("wall_s") > 0)
        .with_columns(
            (pl.col("wall_s") - pl.col("downtime_s") - pl.col("lost_work_s"))
            .clip(lower_bound=0)
            .alias("productive_s")
        )
    )
    return frame.select(
        "job_id",
        "world_size",
        "interruptions",
        (pl.col("wall_s") / HOUR).round(2).alias("wall_h"),
        (pl.col("downtime_s") / HOUR).round(2).alias("downtime_h"),
        (pl.col("lost_work_s") / HOUR).round(2).alias("lost_work_h"),
        (pl.col("productive_s") / HOUR).round(2).alias("productive_h"),
        (pl.col("productive_s") / pl.col("wall_s") * 100).round(2).alias("ettr_pct"),
    ).sort("job_id")


def repeat_offenders(incidents: pl.DataFrame, at_least: int = 2) -> pl.DataFrame:
    """Hosts named as the culprit of at least ``at_least`` incidents."""
    return (
        incidents.filter(pl.col("culprit_host").is_not_null())
        .group_by("culprit_host")
        .agg(
            pl.len().cast(pl.Int64).alias("incidents"),
            pl.col("category").unique().sort().str.join(",").alias("categories"),
            pl.col("opened_s").min().alias("first_s"),
            pl.col("opened_s").max().alias("last_s"),
        )
        .filter(pl.col("incidents") >= at_least)
        .sort(["incidents", "culprit_host"], descending=[True, False])
        .with_columns(
            pl.col("first_s").map_elements(_iso, return_dtype=pl.String).alias("first"),
            pl.col("last_s").map_elements(_iso, return_dtype=pl.String).alias("last"),
        )
        .select(pl.col("culprit_host").alias("host"), "incidents", "categories", "first", "last")
    )


def window(history: History, now_s: float) -> tuple[float, float]:
    """The report's window: as asked, else the jobs' (or incidents') span up to now."""
    spans = [history.jobs["first_seen_s"], history.incidents["opened_s"]]
    starts = [float(s.min()) for s in spans if s.len() and s.min() is not None]  # type: ignore[arg-type]
    ends = [history.jobs["last_seen_s"], history.incidents["resolved_s"]]
    stops = [float(s.max()) for s in ends if s.len() and s.max() is not None]  # type: ignore[arg-type]
    start = history.since_s if history.since_s is not None else min(starts, default=now_s)
    end = history.until_s if history.until_s is not None else max(stops, default=now_s)
    return start, max(end, start)


def job_ettr(history: History, params: ReportParams, now_s: float) -> pl.DataFrame:
    """ETTR per job over each job's whole life (what /metrics exports)."""
    start, _ = window(history, now_s)
    per_incident = interruptions(history, params, start, now_s)
    return ettr(per_incident, history.jobs, start, now_s)


def build_report(history: History, params: ReportParams, now_s: float) -> Report:
    start, end = window(history, now_s)
    span = end - start
    inc = history.incidents
    per_incident = interruptions(history, params, start, end)
    unexpected = inc.filter(pl.col("category") != PLANNED).height
    unknown_lost = per_incident.filter(
        pl.col("job_id").is_not_null() & pl.col("lost_work_s").is_null()
    ).height
    jobs_ettr = ettr(per_incident, history.jobs, start, end)
    per_phase = phases(per_incident, history.progress)
    summary: dict[str, Any] = {
        "window_start": _iso(start),
        "window_end": _iso(end),
        "window_days": round(span / 86400, 2),
        "interruptions": inc.height,
        "unexpected": unexpected,
        "planned": inc.height - unexpected,
        "mttf_h": round(span / HOUR / unexpected, 2) if unexpected else None,
        "llama3_mttf_h": round(LLAMA3_DAYS * 24 / LLAMA3_UNEXPECTED_INTERRUPTIONS, 2),
        "ettr_pct": {r["job_id"]: r["ettr_pct"] for r in jobs_ettr.iter_rows(named=True)},
        "restart_s_assumed": params.restart_s,
        "incidents_without_lost_work": unknown_lost,
    }
    return Report(
        summary,
        {
            "root_causes": root_causes(inc),
            "mttf": mttf(inc, span),
            "time_lost": time_lost(per_incident, history.jobs),
            "ettr": jobs_ettr,
            "repeat_offenders": repeat_offenders(inc),
            "goodput": breakdown_by_category(per_phase),
            "goodput_by_day": breakdown_by_day(per_phase),
            "ettr_measured": measured_ettr(history.progress, start, end, history.jobs),
        },
    )
