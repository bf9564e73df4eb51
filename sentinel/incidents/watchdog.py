"""Watchdogs on the injected clock: hangs, silent hosts and stragglers become signals.

They write synthetic events (ids derived from the episode, so repeats are no-ops) and never
touch incidents: triage decides from the events like from any agent's (one path for changes).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.clock import Clock
from sentinel.db.models import Decision, Event, Gpu, Host, Incident, Job, JobProgress, JobRank
from sentinel.db.partitions import insert_events_once
from sentinel.db.upsert import dialect_of, insert_for
from sentinel.incidents.service import IncidentChange, TriageService
from sentinel.incidents.settings import HealthSettings, TriageSettings
from sentinel.incidents.signals import synthetic_id
from sentinel.incidents.state import OPEN_STATES, IncidentState
from sentinel.remediation.decisions import DecisionStatus


async def add_synthetic_events(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Insert synthetic events, skipping the ones already stored; returns how many were new."""
    if not rows:
        return 0
    # Ids are derived from the key, times are the pass's: looked up first (partitioned events).
    return len(await insert_events_once(session, rows))


def synthetic_row(
    kind: str,
    *,
    key: tuple[object, ...],
    host: str,
    at: datetime,
    received: datetime,
    job_id: str | None = None,
    gpu_index: int | None = None,
    critical: bool = False,
    **payload: Any,
) -> dict[str, Any]:
    return {
        "id": synthetic_id(kind, *key),
        "host_id": host,
        "seq": 0,
        "kind": kind,
        "observed_at": at,
        "received_at": received,
        "gpu_index": gpu_index,
        "job_id": job_id,
        "critical": critical,
        "payload": {"kind": kind, "observed_at": at.isoformat(), **payload},
    }


class RankProgress(NamedTuple):
    """What the watchdogs read of a rank. Plain rows, not ORM objects: a sweep reads every rank
    of every job (16,384 for the full fleet) every quarter of a heartbeat interval."""

    job_id: str
    host_id: str
    rank: int
    gpu_index: int | None
    step: int
    step_time_s: float | None
    step_changed_at: datetime
    last_beat_at: datetime
    checkpoint_save_s: float | None = None  # the rank's measured blocking checkpoint save


_PROGRESS = select(
    JobRank.job_id,
    JobRank.host_id,
    JobRank.rank,
    JobRank.gpu_index,
    JobRank.step,
    JobRank.step_time_s,
    JobRank.step_changed_at,
    JobRank.last_beat_at,
    JobRank.checkpoint_save_s,
)


class _Sampled(NamedTuple):
    written_at: datetime  # when job_progress last got a row for the job
    step: int  # the median step seen at the last sweep
    moved_at: datetime  # when that median step last changed, written or not


class ProgressSampler:
    """Writes a job's progress (its median rank's step) to ``job_progress``: every
    ``progress_sample_s`` while it trains, and at once when it rolls back to a checkpoint (a
    restart: the ranks came back) or moves again after standing still (it trains again), so
    the goodput report can tell waiting for nodes from restarting from lost work."""

    def __init__(self, sample_s: float, still_s: float) -> None:
        self._sample_s = sample_s
        self._still_s = still_s  # standing still this long, then moving, is a resumption
        self._last: dict[str, _Sampled] = {}

    def rows(
        self, ranks: dict[str, list[RankProgress]], now: datetime, running: set[str]
    ) -> list[dict[str, Any]]:
        for job_id in [j for j in self._last if j not in running]:
            del self._last[job_id]
        out: list[dict[str, Any]] = []
        for job_id in sorted(running):
            members = ranks.get(job_id)
            if not members:
                continue
            step = int(statistics.median_low(r.step for r in members))
            last = self._last.get(job_id)
            if last is not None and step == last.step:
                continue
            if last is None or self._due(last, step, now):
                times = [r.step_time_s for r in members if r.step_time_s]
                out.append(
                    {
                        "job_id": job_id,
                        "at": now,
                        "step": step,
                        "step_time_s": statistics.median(times) if times else None,
                        "ranks": len(members),
                    }
                )
                self._last[job_id] = _Sampled(now, step, now)
            else:
                self._last[job_id] = last._replace(step=step, moved_at=now)
        return out

    def _due(self, last: _Sampled, step: int, now: datetime) -> bool:
        rolled_back = step < last.step
        resumed = step > last.step and (now - last.moved_at).total_seconds() >= self._still_s
        periodic = (now - last.written_at).total_seconds() >= self._sample_s
        return rolled_back or resumed or periodic


class Watchdog:
    def __init__(
        self, clock: Clock, triage: TriageSettings, health: HealthSettings, service: TriageService
    ) -> None:
        self._clock = clock
        self._triage = triage
        self._health = health
        self._service = service
        self._progress = ProgressSampler(
            triage.progress_sample_s, triage.stall_intervals * triage.heartbeat_interval_s
        )

    async def run_once(self, session: AsyncSession) -> list[IncidentChange]:
        """One sweep over running jobs: new signals written, recovered jobs' incidents resolved.
        Returns the resolutions, for the incident stages once the caller has committed."""
        now = self._clock.now()
        jobs = (await session.scalars(select(Job).where(Job.state == "running"))).all()
        ranks: dict[str, list[RankProgress]] = defaultdict(list)
        for row in (await session.execute(_PROGRESS)).all():
            ranks[row.job_id].append(RankProgress._make(row))
        hosts = (await session.execute(select(Host.id, Host.last_seen))).all()
        last_seen = {host_id: seen for host_id, seen in hosts}
        # What each host last observed (its newest GPU sample), falling back on when it was
        # last heard from: a late batch carries old readings, and says nothing about now.
        sampled = await session.execute(
            select(Gpu.host_id, func.max(Gpu.updated_at)).group_by(Gpu.host_id)
        )
        reported = last_seen | {host_id: at for host_id, at in sampled.all() if at is not None}
        rows: list[dict[str, Any]] = []
        for job in jobs:
            members = ranks.get(job.id, [])
            if members:
                times = [r.step_time_s for r in members if r.step_time_s]
                median = statistics.median(times) if times else None
                rows += self._stalls(job, members, median, now, reported, last_seen)
                if len(times) >= 4 and median is not None:
                    rows += self._stragglers(job, members, median, now)
        rows += self._silent_hosts(ranks, last_seen, now)
        await add_synthetic_events(session, rows)
        samples = self._progress.rows(ranks, now, {job.id for job in jobs})
        if samples:
            ins = insert_for(dialect_of(session), JobProgress)
            await session.execute(ins.on_conflict_do_nothing(), samples)
        return await self._resolve_recovered(session, ranks, now)

    def _stalls(
        self,
        job: Job,
        members: list[RankProgress],
        median_step_s: float | None,
        now: datetime,
        reported: dict[str, datetime],
        last_seen: dict[str, datetime],
    ) -> list[dict[str, Any]]:
        saves = [r.checkpoint_save_s for r in members if r.checkpoint_save_s]
        threshold = self._triage.stall_threshold_s(median_step_s, max(saves, default=None))
        cutoff = now - timedelta(seconds=threshold)
        wait = timedelta(seconds=self._triage.heartbeat_interval_s / 2)
        # A rank is stalled when its host reported something observed well after the rank's
        # last progress, with no progress in it. A host whose reports are late (its agent
        # backing off after the service shed load, a slow link) shows old steps because nothing
        # newer has arrived: that is not a hang; a host that stopped reporting altogether is
        # the silent-host watchdog's.
        stalled = [
            r
            for r in members
            if r.step_changed_at < cutoff
            and reported.get(r.host_id, r.step_changed_at) - r.step_changed_at > wait
        ]
        if not stalled:
            return []
        # Most of the job's hosts must have told us something since their ranks last stepped
        # (a report observed after it, or a recent step): when most have told nothing (the
        # service shed their uploads, or they are all late), missing steps are missing news.
        # (A host silent for good is news too: the silent-host watchdog's.)
        silent_since = now - timedelta(seconds=self._health.silent_after_s)
        recent = {r.host_id for r in members if r.step_changed_at >= cutoff}
        gone = {r.host_id for r in members if last_seen.get(r.host_id, now) < silent_since}
        informed = recent | gone | {r.host_id for r in stalled}
        if 2 * len(informed) <= len({r.host_id for r in members}):
            return []
        top = max(r.step for r in members)
        # The episode is named by the moment the job last made progress: the same hang seen
        # by later sweeps is the same event, a hang after a restart is a new one.
        last_progress = max(r.step_changed_at for r in members)
        rows = [
            synthetic_row(
                "heartbeat_stall",
                key=(job.id, "job", last_progress.isoformat()),
                host="-",
                job_id=job.id,
                at=now,
                received=now,
                rank=None,
                seconds=(now - min(r.step_changed_at for r in stalled)).total_seconds(),
                ranks_stalled=len(stalled),
                ranks=len(members),
                step=top,
                text=f"{len(stalled)} of {len(members)} ranks of job {job.id} made no progress "
                f"past step {top} for over {threshold:.0f} s",
            )
        ]
        return rows + self._stopped_first(job, members, stalled, last_progress, now)

    def _stopped_first(
        self,
        job: Job,
        members: list[RankProgress],
        stalled: list[RankProgress],
        last_progress: datetime,
        now: datetime,
    ) -> list[dict[str, Any]]:
        """Hosts whose ranks stopped well before the job last progressed: where a hang began.

        A rank's last step change is its own beat's time, so a rank still stepping is never a
        whole heartbeat interval behind the job's last progress; one that far behind stopped
        first. Only a few such hosts say where; many are the job slowing down as a whole.
        """
        before = last_progress - timedelta(seconds=self._triage.heartbeat_interval_s)
        early: dict[str, list[RankProgress]] = defaultdict(list)
        for r in stalled:
            if r.step_changed_at <= before:
                early[r.host_id].append(r)
        if not early or len(early) > max(1, len({r.host_id for r in members}) // 20):
            return []
        top = max(r.step for r in members)
        episode = last_progress.isoformat()
        rows = []
        for host, rs in sorted(early.items()):
            first = min(rs, key=lambda r: (r.step_changed_at, r.rank))
            rows.append(
                synthetic_row(
                    "heartbeat_stall",
                    key=(job.id, host, episode),
                    host=host,
                    job_id=job.id,
                    gpu_index=first.gpu_index,
                    at=now,
                    received=now,
                    rank=first.rank,
                    seconds=(now - first.step_changed_at).total_seconds(),
                    step=first.step,
                    stopped_first={
                        "step": first.step,
                        "at": first.step_changed_at.isoformat(),
                        "rest_step": top,
                        "rest_at": episode,
                    },
                )
            )
        return rows

    def _stragglers(
        self, job: Job, members: list[RankProgress], median: float, now: datetime
    ) -> list[dict[str, Any]]:
        hour = now.strftime("%Y%m%d%H")
        return [
            synthetic_row(
                "straggler",
                key=(job.id, r.rank, hour),
                host=r.host_id,
                job_id=job.id,
                gpu_index=r.gpu_index,
                at=now,
                received=now,
                rank=r.rank,
                step_time_s=r.step_time_s,
                median_s=median,
                text=f"rank {r.rank} on {r.host_id} GPU {r.gpu_index}: step time "
                f"{r.step_time_s:.2f} s vs median {median:.2f} s",
            )
            for r in members
            if r.step_time_s and r.step_time_s > self._triage.straggler_factor * median
        ]

    def _silent_hosts(
        self, ranks: dict[str, list[RankProgress]], last_seen: dict[str, datetime], now: datetime
    ) -> list[dict[str, Any]]:
        in_jobs = {r.host_id for rs in ranks.values() for r in rs}
        rows = []
        for host_id in sorted(in_jobs):
            seen = last_seen.get(host_id)
            if seen is None:
                continue
            silent = (now - seen).total_seconds()
            if silent > self._health.silent_after_s:
                rows.append(
                    synthetic_row(
                        "host_silent",
                        key=(host_id, seen.isoformat()),
                        host=host_id,
                        at=now,
                        received=now,
                        critical=True,
                        seconds=silent,
                        last_seen=seen.isoformat(),
                    )
                )
        return rows

    async def _resolve_recovered(
        self, session: AsyncSession, ranks: dict[str, list[RankProgress]], now: datetime
    ) -> list[IncidentChange]:
        """An incident is over when the job trains again after it was interrupted: most ranks
        advanced since the job stalled or was restarted. A job that never stopped (a warning
        that did not interrupt it) keeps its incident until an operator resolves it."""
        incidents = (
            await session.scalars(
                select(Incident).where(
                    Incident.state.in_(OPEN_STATES), Incident.job_id.is_not(None)
                )
            )
        ).all()
        resolved: list[IncidentChange] = []
        for incident in incidents:
            members = ranks.get(incident.job_id or "", [])
            if not members:
                continue
            interrupted = await self._interrupted_at(session, incident)
            if interrupted is None:
                continue
            since = max(interrupted, incident.detected_at).timestamp() + (
                self._triage.heartbeat_interval_s
            )
            moved = [r for r in members if r.step_changed_at.timestamp() > since]
            if len(moved) >= self._triage.resolve_fraction * len(members):
                top = max(r.step for r in moved)
                resolved.append(
                    await self._service.transition(
                        session,
                        incident,
                        IncidentState.resolved,
                        f"job advanced again: {len(moved)} of {len(members)} ranks progressed "
                        f"(up to step {top}) after the interruption",
                        "watchdog",
                    )
                )
        return resolved

    async def _interrupted_at(self, session: AsyncSession, incident: Incident) -> datetime | None:
        """When the job was last seen stopped for this incident, if it was. A restart stops it
        too (the old ranks die, the new ones load a checkpoint), so this covers requeues."""
        lookback = incident.opened_at - timedelta(seconds=self._triage.lookback_s)
        stalled: datetime | None = await session.scalar(
            select(func.max(Event.observed_at)).where(
                Event.kind == "heartbeat_stall",
                Event.job_id == incident.job_id,
                Event.observed_at >= lookback,
            )
        )
        # A restart in place (or a rollback, a data skip) the launcher acknowledged stopped the
        # ranks too, often for less than a stall takes to be seen: the job trains again once
        # they advance after it.
        # So did an exclusion carried out in the job (the launchers restarted the ranks onto a
        # standby host, and acknowledged it); a requeued one is seen stalled.
        done = (
            await session.execute(
                select(Decision.updated_at, Decision.action, Decision.outcome).where(
                    Decision.incident_id == incident.id,
                    Decision.action.in_(
                        ("restart_in_place", "roll_back", "skip_data", "exclude_and_restart")
                    ),
                    Decision.status == DecisionStatus.done,
                )
            )
        ).first()
        restarted = (
            done[0]
            if done is not None
            and (done[1] != "exclude_and_restart" or done[2].get("standby_host"))
            else None
        )
        found = [t for t in (stalled, restarted) if t is not None]
        return max(found) if found else None
