"""The triage worker: on the leader, new events → the scopes they touch → evaluation."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.clock import Clock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Event, JobRank
from sentinel.incidents.service import IncidentChange, Scope, TriageService, scopes_for_hosts
from sentinel.incidents.signals import gpu_conditions
from sentinel.incidents.watchdog import add_synthetic_events, synthetic_row
from sentinel.ingest.repository import StoredBatch
from sentinel.settings import TriageSettings
from sentinel.wire import GpuSample

log = logging.getLogger(__name__)

# Replicas stamp received_at with their own clocks: re-read a little overlap, dedup by id.
_OVERLAP = timedelta(seconds=10)


class TriageWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        service: TriageService,
        settings: TriageSettings,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._service = service
        self._settings = settings
        self._cursor: datetime | None = None
        self._seen: dict[uuid.UUID, datetime] = {}
        self._lock = asyncio.Lock()
        self._active_conditions: set[tuple[str, int, str]] = set()

    async def run_once(self) -> list[IncidentChange]:
        async with self._lock, unit_of_work(self._sessions) as session:
            return await self._run(session)

    async def _run(self, session: AsyncSession) -> list[IncidentChange]:
        now = self._clock.now()
        since = (self._cursor or now - timedelta(seconds=self._settings.window_s)) - _OVERLAP
        rows = (
            await session.execute(
                select(Event.id, Event.host_id, Event.job_id, Event.received_at).where(
                    Event.received_at >= since
                )
            )
        ).all()
        fresh = [r for r in rows if r.id not in self._seen]
        for r in fresh:
            self._seen[r.id] = r.received_at
        if rows:
            self._cursor = max(r.received_at for r in rows)
        horizon = (self._cursor or now) - 2 * _OVERLAP
        self._seen = {k: v for k, v in self._seen.items() if v >= horizon}
        if not fresh:
            return []
        scopes = await scopes_for_hosts(session, {r.host_id for r in fresh})
        jobs_named = {r.job_id for r in fresh if r.host_id == "-" and r.job_id}
        for job_id in sorted(jobs_named - {s.job_id for s in scopes}):
            hosts = (
                await session.scalars(
                    select(JobRank.host_id).where(JobRank.job_id == job_id).distinct()
                )
            ).all()
            scopes.append(Scope(job_id, frozenset(hosts)))
        changes: list[IncidentChange] = []
        for scope in scopes:
            changes += await self._service.evaluate(session, scope)
        return changes

    async def on_ingest(self, stored: Sequence[StoredBatch]) -> None:
        """Ingest listener: GPU conditions in samples become events (at onset only)."""
        rows = []
        for item in stored:
            host = item.batch.host_id
            for obs in item.batch.observations:
                if not isinstance(obs, GpuSample):
                    continue
                present = gpu_conditions(obs)
                names = {c for c, _ in present}
                for condition in (
                    "fallen_off_bus",
                    "row_remap_failure",
                    "thermal_slowdown",
                    "power_brake",
                ):
                    key = (host, obs.gpu_index, condition)
                    if condition not in names:
                        self._active_conditions.discard(key)
                for condition, detail in present:
                    key = (host, obs.gpu_index, condition)
                    if key in self._active_conditions:
                        continue
                    self._active_conditions.add(key)
                    rows.append(
                        synthetic_row(
                            "gpu_condition",
                            key=(host, obs.gpu_index, condition, obs.observed_at.isoformat()),
                            host=host,
                            gpu_index=obs.gpu_index,
                            at=obs.observed_at,
                            received=item.received_at,
                            critical=condition == "fallen_off_bus",
                            condition=condition,
                            gpu=obs.pci_bus_id or str(obs.gpu_index),
                            detail=detail,
                        )
                    )
        if rows:
            async with unit_of_work(self._sessions) as session:
                await add_synthetic_events(session, rows)
