"""A job's end, as the scheduler's epilog on its hosts reported it (``JobEnd``), recorded on
the job: its state leaves ``running``, so the watchdogs stop expecting its heartbeats.

Every host of the job runs the epilog and reports the same end; the first report recorded
wins and the others change nothing. A job Sentinel never saw (no heartbeats: not a training
job it follows) is not created; the report stays an event on its host either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.db.models import Job
from sentinel.wire import JobEnd

if TYPE_CHECKING:
    from sentinel.ingest.repository import StoredBatch

RUNNING: Final = "running"


@dataclass(frozen=True)
class EndState:
    """What the job's exit says: ``completed`` (0:0), ``killed`` (a signal: scancel, the
    time limit, the OOM killer) or ``failed`` (a non-zero exit code)."""

    state: str
    why: str

    @classmethod
    def of(cls, end: JobEnd) -> EndState:
        if end.signal:
            return cls("killed", f"signal {end.signal}")
        if end.exit_code:
            return cls("failed", f"exit code {end.exit_code}")
        if end.exit_code is None:
            return cls("ended", "exit code unknown")
        return cls("completed", "exit code 0")


def new_job_ends(items: Sequence[StoredBatch]) -> list[JobEnd]:
    """The job ends first stored by these batches (a resent one was recorded already)."""
    return [
        obs
        for item in items
        if not (item.duplicate or item.conflict)
        for obs in item.events
        if isinstance(obs, JobEnd) and obs.id in item.new_event_ids
    ]


async def record_job_ends(session: AsyncSession, items: Sequence[StoredBatch]) -> int:
    """Mark the jobs these batches report ended; returns how many changed state."""
    changed = 0
    for end in new_job_ends(items):
        result = await session.execute(
            update(Job)
            .where(
                or_(Job.id == end.job_id, Job.scheduler_job_id == end.job_id),
                Job.state == RUNNING,
            )
            .values(state=EndState.of(end).state)
            .execution_options(synchronize_session=False)
        )
        changed += int(getattr(result, "rowcount", 0) or 0)
    return changed
