"""Load the incident record into polars frames: one query per table, aggregates in SQL.

The same statements serve the CLI (sync engine) and the /metrics scrape (async session).
Times become float seconds since the epoch, so that the arithmetic is plain and exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import Select, create_engine, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from sentinel.db.engine import sync_url
from sentinel.db.models import Decision, Incident, Job, JobProgress, JobRank
from sentinel.remediation.decisions import done_by_a_launcher
from sentinel.reports.goodput import PROGRESS_SCHEMA, empty_progress

INCIDENT_SCHEMA: dict[str, Any] = {
    "id": pl.String,
    "job_id": pl.String,
    "category": pl.String,
    "state": pl.String,
    "culprit_host": pl.String,
    "opened_s": pl.Float64,
    "detected_s": pl.Float64,
    "resolved_s": pl.Float64,
    "action": pl.String,
    "status": pl.String,
    "steps_lost": pl.Int64,
    "decided_s": pl.Float64,
    "decision_updated_s": pl.Float64,
    # The job's launcher acknowledged restarting the ranks where they were (a restart in
    # place, or a rollback or data skip carried out in place): no requeue, no nodes waited for.
    "in_place": pl.Boolean,
}
JOB_SCHEMA: dict[str, Any] = {
    "job_id": pl.String,
    "first_seen_s": pl.Float64,
    "last_seen_s": pl.Float64,
    "world_size": pl.Int64,
    "state": pl.String,
    "step_time_s": pl.Float64,
    "step": pl.Int64,  # the furthest rank's step, at
    "last_beat_s": pl.Float64,  # the newest heartbeat of any rank
}


@dataclass(frozen=True)
class History:
    """The incidents (each with its decision, if any) and the jobs of one window."""

    incidents: pl.DataFrame
    jobs: pl.DataFrame
    since_s: float | None
    until_s: float | None
    # The jobs' progress samples (goodput accounting); empty where none were recorded.
    progress: pl.DataFrame = field(default_factory=empty_progress)


def _s(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _within(
    q: Select[*tuple[Any, ...]],
    at: QueryableAttribute[datetime],
    since: datetime | None,
    until: datetime | None,
    job: QueryableAttribute[str | None] | QueryableAttribute[str],
    job_ids: Sequence[str] | None,
) -> Select[*tuple[Any, ...]]:
    """`q` limited to rows whose `at` falls in [since, until) and whose `job` is one of
    `job_ids`; None leaves that side open."""
    if since is not None:
        q = q.where(at >= since)
    if until is not None:
        q = q.where(at < until)
    if job_ids is not None:
        q = q.where(job.in_(job_ids))
    return q


def incidents_query(
    since: datetime | None, until: datetime | None, job_ids: Sequence[str] | None = None
) -> Select[*tuple[Any, ...]]:
    q = select(
        Incident.id,
        Incident.job_id,
        Incident.category,
        Incident.state,
        Incident.culprit_host,
        Incident.opened_at,
        Incident.detected_at,
        Incident.resolved_at,
        Decision.action,
        Decision.status,
        Decision.steps_lost,
        Decision.created_at,
        Decision.updated_at,
        Decision.outcome,
    ).outerjoin(Decision, Decision.incident_id == Incident.id)
    q = _within(q, Incident.opened_at, since, until, Incident.job_id, job_ids)
    return q.order_by(Incident.opened_at)


def jobs_query(job_ids: Sequence[str] | None = None) -> Select[*tuple[Any, ...]]:
    # The job's step time is the mean over its ranks: one aggregate row per job, not 16,384.
    ranks = (
        select(
            JobRank.job_id,
            func.avg(JobRank.step_time_s).label("step_time_s"),
            func.max(JobRank.step).label("step"),
            func.max(JobRank.last_beat_at).label("last_beat_at"),
        )
        .group_by(JobRank.job_id)
        .subquery()
    )
    q = select(
        Job.id,
        Job.first_seen,
        Job.last_seen,
        Job.world_size,
        Job.state,
        ranks.c.step_time_s,
        ranks.c.step,
        ranks.c.last_beat_at,
    ).outerjoin(ranks, ranks.c.job_id == Job.id)
    if job_ids is not None:
        q = q.where(Job.id.in_(job_ids))
    return q.order_by(Job.id)


def progress_query(
    since: datetime | None, until: datetime | None, job_ids: Sequence[str] | None = None
) -> Select[*tuple[Any, ...]]:
    q = select(JobProgress.job_id, JobProgress.at, JobProgress.step, JobProgress.step_time_s)
    q = _within(q, JobProgress.at, since, until, JobProgress.job_id, job_ids)
    return q.order_by(JobProgress.job_id, JobProgress.at)


def _progress_frame(rows: Sequence[Any]) -> pl.DataFrame:
    return pl.DataFrame(
        [(r[0], _s(r[1]), r[2], r[3]) for r in rows], schema=PROGRESS_SCHEMA, orient="row"
    )


def _incident_frame(rows: Sequence[Any]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            (
                str(r[0]),
                r[1],
                r[2],
                r[3],
                r[4],
                _s(r[5]),
                _s(r[6]),
                _s(r[7]),
                r[8],
                r[9],
                r[10],
                _s(r[11]),
                _s(r[12]),
                done_by_a_launcher(r[13]),
            )
            for r in rows
        ],
        schema=INCIDENT_SCHEMA,
        orient="row",
    )


def _job_frame(rows: Sequence[Any]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            (
                r[0],
                _s(r[1]),
                _s(r[2]),
                r[3],
                r[4],
                float(r[5]) if r[5] is not None else None,
                r[6],
                _s(r[7]),
            )
            for r in rows
        ],
        schema=JOB_SCHEMA,
        orient="row",
    )


def _queries(since: datetime | None, until: datetime | None) -> list[Select[*tuple[Any, ...]]]:
    """What a history is read from: the incidents, the jobs, the progress samples."""
    return [incidents_query(since, until), jobs_query(), progress_query(since, until)]


def _history(
    rows: Sequence[Sequence[Any]], since: datetime | None, until: datetime | None
) -> History:
    incidents, jobs, progress = rows
    return History(
        _incident_frame(incidents),
        _job_frame(jobs),
        _s(since),
        _s(until),
        _progress_frame(progress),
    )


def load_history(url: str, since: datetime | None = None, until: datetime | None = None) -> History:
    """The CLI's path: a short-lived sync engine on the URL."""
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            rows = [conn.execute(q).all() for q in _queries(since, until)]
    finally:
        engine.dispose()
    return _history(rows, since, until)


async def load_window(session: AsyncSession, since: datetime, until: datetime) -> History:
    """The dashboard's path: one window of the record, through the service's session."""
    rows = [(await session.execute(q)).all() for q in _queries(since, until)]
    return _history(rows, since, until)


async def load_job_history(session: AsyncSession, job_ids: Sequence[str]) -> History:
    """The scrape's path: these jobs over their whole lives."""
    incidents = (await session.execute(incidents_query(None, None, job_ids))).all()
    jobs = (await session.execute(jobs_query(job_ids))).all()
    return History(_incident_frame(incidents), _job_frame(jobs), None, None)
