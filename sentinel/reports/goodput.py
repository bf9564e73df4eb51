"""Goodput accounting: where each interruption's time went, and ETTR measured from heartbeats.

An interruption's cost splits into phases, each read from what was recorded, never assumed:

- detection: the incident's first evidence to its detection (``opened_at`` → ``detected_at``);
- decision: detection to the remediation decision (``decisions.created_at``), approvals
  included;
- execution: the decision to its being carried out (the decision's last update once ``done``);
- waiting for nodes: carried out to the job's ranks reporting again (the first progress sample
  after it: a restart rolls the median step back to the checkpoint, see ``ProgressSampler``);
  none after an in-place restart (``restart_in_place``: the job keeps its allocation);
- restart: the ranks back to the job training again (the incident's resolution, which the
  watchdog records when most ranks advanced; else the next progress sample); after an in-place
  restart, from its being carried out, since the launcher restarting the ranks is the restart;
- lost work: the steps redone since the last durable checkpoint x the job's step time.

A phase whose ends were not both recorded is null, not zero: an incident resolved by hand, or a
job whose heartbeats never came back, shows what is known and counts the rest as unattributed
(its downtime from the time-lost table minus the attributed phases).

ETTR measured from heartbeats: for each job, the steps it kept (last sampled step minus first)
times its median step time, over the wall time between the first and the last sample. Steps
redone after a rollback count once, because only the net progress counts.
"""

from __future__ import annotations

import polars as pl

from sentinel.remediation.decisions import DecisionStatus

HOUR = 3600.0
DAY = 86400.0
PHASES = ("detection", "decision", "execution", "waiting_for_nodes", "restart", "lost_work")
COLUMNS = {"waiting_for_nodes": "waiting", "lost_work": "lost", "unattributed": "other"}
PROGRESS_SCHEMA = {
    "job_id": pl.String,
    "at_s": pl.Float64,
    "step": pl.Int64,
    "step_time_s": pl.Float64,
}


def empty_progress() -> pl.DataFrame:
    return pl.DataFrame(schema=PROGRESS_SCHEMA)


def _first_sample_after(
    frame: pl.DataFrame, progress: pl.DataFrame, after: str, name: str
) -> pl.DataFrame:
    """Adds ``<name>_s`` and ``<name>_step``: the job's first progress sample strictly after
    ``after`` (null where there is none, or no job, or ``after`` is null)."""
    samples = progress.select(
        "job_id", pl.col("at_s").alias(f"{name}_s"), pl.col("step").alias(f"{name}_step")
    ).sort("job_id", f"{name}_s")
    known = pl.col(after).is_not_null() & pl.col("job_id").is_not_null()
    joined = (
        frame.filter(known)
        .sort("job_id", after)
        .join_asof(
            samples,
            left_on=after,
            right_on=f"{name}_s",
            by="job_id",
            strategy="forward",
            allow_exact_matches=False,
            coalesce=False,
            # Sorted by (job, time) just above; polars cannot verify that with `by` groups.
            check_sortedness=False,
        )
    )
    if "job_id_right" in joined.columns:
        joined = joined.drop("job_id_right")
    rest = frame.filter(~known).with_columns(
        pl.lit(None, pl.Float64).alias(f"{name}_s"), pl.lit(None, pl.Int64).alias(f"{name}_step")
    )
    return pl.concat([joined, rest], how="vertical_relaxed")


def phases(per_incident: pl.DataFrame, progress: pl.DataFrame) -> pl.DataFrame:
    """Each interruption with its phases in seconds (null where not recorded).

    ``per_incident`` is the time-lost table's frame (``tables.interruptions``): it brings the
    incident's times, its decision's, the downtime and the lost work."""
    done = pl.when(pl.col("status") == DecisionStatus.done.value).then(pl.col("decision_updated_s"))
    frame = per_incident.with_columns(done.alias("done_s"))
    frame = _first_sample_after(frame, progress, "done_s", "returned")
    frame = _first_sample_after(frame, progress, "returned_s", "next")
    # The job trains again when the watchdog resolved the incident (most ranks advanced), else
    # at the next sample after the ranks came back (samples are written when the step moves).
    trained = pl.coalesce(
        pl.when(pl.col("resolved_s") >= pl.col("returned_s")).then(pl.col("resolved_s")),
        pl.col("next_s"),
    )
    # A sample after the incident was over belongs to a later story, not to this restart.
    in_time = pl.col("resolved_s").is_null() | (pl.col("returned_s") <= pl.col("resolved_s"))
    returned = pl.when(in_time).then(pl.col("returned_s"))
    # An in-place restart keeps the allocation: no nodes to wait for; the launcher restarting
    # the ranks (processes, NCCL init, the checkpoint load) is all restart.
    # (A restart in place whose launcher never said so is still one: its decision says so.)
    in_place = (pl.col("action").eq("restart_in_place") | pl.col("in_place")).fill_null(False)
    waiting = (
        pl.when(in_place & returned.is_not_null()).then(0.0).otherwise(returned - pl.col("done_s"))
    )
    restart_from = pl.when(in_place).then(pl.col("done_s")).otherwise(pl.col("returned_s"))
    out = frame.with_columns(
        (pl.col("detected_s") - pl.col("opened_s")).clip(lower_bound=0).alias("detection_s"),
        (pl.col("decided_s") - pl.col("detected_s")).clip(lower_bound=0).alias("decision_s"),
        (pl.col("done_s") - pl.col("decided_s")).clip(lower_bound=0).alias("execution_s"),
        waiting.clip(lower_bound=0).alias("waiting_for_nodes_s"),
        pl.when(in_time).then(trained - restart_from).clip(lower_bound=0).alias("restart_s"),
        pl.col("lost_work_s").alias("lost_work_s"),
    )
    attributed = pl.sum_horizontal(
        [pl.col(f"{p}_s").fill_null(0) for p in PHASES if p != "lost_work"]
    )
    return out.with_columns(
        (pl.col("downtime_s") - attributed).clip(lower_bound=0).alias("unattributed_s")
    )


def _sums() -> list[pl.Expr]:
    cols = [f"{p}_s" for p in PHASES] + ["unattributed_s"]
    total = pl.sum_horizontal([pl.col(c).fill_null(0) for c in cols])
    return [
        pl.len().cast(pl.Int64).alias("interruptions"),
        *[(pl.col(c).fill_null(0).sum() / HOUR).round(3).alias(_column(c)) for c in cols],
        (total.sum() / HOUR).round(3).alias("total_h"),
    ]


def _column(phase_s: str) -> str:
    """The breakdown's column for a phase: hours, in a short name that fits a terminal."""
    return COLUMNS.get(phase_s[:-2], phase_s[:-2]) + "_h"


def breakdown_by_category(per_phase: pl.DataFrame) -> pl.DataFrame:
    """Hours per phase, per root-cause category, the costliest first."""
    if per_phase.is_empty():
        return pl.DataFrame(schema={"category": pl.String, **_empty_sums()})
    return (
        per_phase.group_by("category")
        .agg(*_sums())
        .sort(["total_h", "category"], descending=[True, False])
    )


def breakdown_by_day(per_phase: pl.DataFrame) -> pl.DataFrame:
    """Hours per phase per UTC day of the interruption's start: how the cost moves over time."""
    if per_phase.is_empty():
        return pl.DataFrame(schema={"day": pl.String, **_empty_sums()})
    day = (pl.col("start_s") // DAY * DAY * 1000).cast(pl.Datetime("ms", "UTC")).dt.date()
    return (
        per_phase.with_columns(day.cast(pl.String).alias("day"))
        .group_by("day")
        .agg(*_sums())
        .sort("day")
    )


def _empty_sums() -> dict[str, type[pl.DataType]]:
    cols: dict[str, type[pl.DataType]] = {"interruptions": pl.Int64}
    for p in (*PHASES, "unattributed"):
        cols[_column(f"{p}_s")] = pl.Float64
    cols["total_h"] = pl.Float64
    return cols


def measured_ettr(
    progress: pl.DataFrame,
    window_start_s: float,
    window_end_s: float,
    jobs: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """ETTR per job from its progress samples inside the window (jobs with two or more). A
    job's newest heartbeat (``jobs``' step and last_beat_s) ends its series where it is newer
    than the last sample, since samples are written a minute apart."""
    if jobs is not None and "last_beat_s" in jobs.columns:
        latest = progress.group_by("job_id").agg(pl.col("at_s").max().alias("_last"))
        now = (
            jobs.filter(pl.col("last_beat_s").is_not_null() & pl.col("step").is_not_null())
            .join(latest, on="job_id", how="inner")
            .filter(pl.col("last_beat_s") > pl.col("_last"))
            .select(
                "job_id",
                pl.col("last_beat_s").alias("at_s"),
                pl.col("step").cast(pl.Int64),
                pl.lit(None, pl.Float64).alias("step_time_s"),
            )
        )
        progress = pl.concat([progress, now], how="vertical_relaxed")
    inside = progress.filter(pl.col("at_s").is_between(window_start_s, window_end_s))
    per_job = (
        inside.sort("at_s")
        .group_by("job_id")
        .agg(
            pl.len().cast(pl.Int64).alias("samples"),
            pl.col("at_s").first().alias("_first_s"),
            pl.col("at_s").last().alias("_last_s"),
            pl.col("step").first().alias("first_step"),
            pl.col("step").last().alias("last_step"),
            pl.col("step_time_s").drop_nulls().median().alias("step_time_s"),
        )
        .filter((pl.col("samples") >= 2) & (pl.col("_last_s") > pl.col("_first_s")))
    )
    wall = pl.col("_last_s") - pl.col("_first_s")
    kept = ((pl.col("last_step") - pl.col("first_step")).clip(lower_bound=0)) * pl.col(
        "step_time_s"
    )
    return (
        per_job.with_columns(
            (wall / HOUR).round(2).alias("wall_h"),
            (kept / HOUR).round(2).alias("productive_h"),
            (kept / wall * 100).clip(upper_bound=100).round(2).alias("ettr_pct"),
        )
        .select(
            "job_id", "samples", "first_step", "last_step", "wall_h", "productive_h", "ettr_pct"
        )
        .sort("job_id")
    )
