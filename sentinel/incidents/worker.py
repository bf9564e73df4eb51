"""The triage worker: on the leader, new events → the scopes they touch → evaluation.

Incremental: a pass reads only the events that arrived since the last one, turns each into
signals once, and re-weighs only the scopes (jobs, or hosts outside any job) those events
touch. Each scope's signals are kept in memory on the leader for as long as they count (the
scope's horizon); a new leader rebuilds a scope from the database the first time it touches it.
A pass that takes long never makes the next be skipped: the loop runs back to back, and the
backlog (how long the oldest unweighed event has waited, how many wait) is a metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.clock import Clock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Event, JobRank
from sentinel.incidents.accountability import Accountant, Disposition
from sentinel.incidents.service import (
    Horizon,
    IncidentChange,
    Scope,
    TriageService,
    scopes_for_hosts,
)
from sentinel.incidents.settings import TriageSettings
from sentinel.incidents.signals import event_signals, gpu_conditions
from sentinel.incidents.watchdog import add_synthetic_events, synthetic_row
from sentinel.ingest.repository import StoredBatch
from sentinel.metrics import ServiceMetrics
from sentinel.triage.signals import Signal
from sentinel.wire import PERIODIC_KINDS, GpuSample

log = logging.getLogger(__name__)

# Replicas stamp received_at with their own clocks: re-read a little overlap, dedup by id.
_OVERLAP = timedelta(seconds=10)


@dataclass
class _Weighed:
    """One stored event as triage weighs it: parsed once, kept while its scope counts it."""

    host_id: str
    job_id: str | None
    observed_at: datetime
    received_at: datetime
    signals: list[Signal]


@dataclass
class _ScopeState:
    scope: Scope
    events: dict[uuid.UUID, _Weighed] = field(default_factory=dict)
    touched: datetime | None = None

    def owns(self, ev: _Weighed) -> bool:
        if ev.host_id == "-":
            return self.scope.job_id is not None and ev.job_id == self.scope.job_id
        return ev.host_id in self.scope.hosts

    def prune(self, horizon: Horizon) -> None:
        self.events = {
            k: v
            for k, v in self.events.items()
            if horizon.counts(str(k), v.observed_at, v.received_at)
        }

    def signals(self) -> list[Signal]:
        ordered = sorted(self.events.values(), key=lambda e: e.observed_at)
        return [s for e in ordered for s in e.signals]


def _key(scope: Scope) -> str:
    return f"job:{scope.job_id}" if scope.job_id else f"host:{min(scope.hosts)}"


def _weigh(rows: Sequence[Event]) -> dict[uuid.UUID, _Weighed]:
    """Parse events into signals: CPU work, run off the event loop."""
    return {
        ev.id: _Weighed(ev.host_id, ev.job_id, ev.observed_at, ev.received_at, event_signals(ev))
        for ev in rows
    }


class TriageWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        service: TriageService,
        settings: TriageSettings,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._service = service
        self._settings = settings
        self._metrics = metrics
        self._cursor: datetime | None = None
        self._seen: dict[uuid.UUID, datetime] = {}
        self._lock = asyncio.Lock()
        # A GPU (host, index) -> its conditions whose onset was recorded and that still hold.
        self._active_conditions: dict[tuple[str, int], set[str]] = {}
        self._states: dict[str, _ScopeState] = {}
        self.accountant = Accountant()
        self._accountant_loaded = False
        # The events a pass is weighing now, and those stored on this replica since it began:
        # how many, and the received time of the oldest (the triage lag's reference).
        self._inflight: tuple[int, datetime | None] = (0, None)
        self._arrived: tuple[int, datetime | None] = (0, None)
        if metrics is not None:
            metrics.triage_lag.set_function(self.lag_seconds)
            metrics.triage_backlog.set_function(lambda: float(self.waiting))

    @property
    def waiting(self) -> int:
        return self._inflight[0] + self._arrived[0]

    def lag_seconds(self) -> float:
        """How long the oldest event not yet weighed has been waiting in the service."""
        times = [t for _, t in (self._inflight, self._arrived) if t is not None]
        if not times:
            return 0.0
        return max(0.0, (self._clock.now() - min(times)).total_seconds())

    async def run_once(self) -> list[IncidentChange]:
        async with self._lock:
            started = time.perf_counter()
            async with unit_of_work(self._sessions) as session:
                changes = await self._run(session)
            if self._metrics is not None:
                self._metrics.triage_pass.observe(time.perf_counter() - started)
            return changes

    async def run_forever(
        self,
        stop: asyncio.Event,
        after: Callable[[list[IncidentChange]], Awaitable[None]],
    ) -> None:
        """The leader's loop: passes back to back while events keep coming (a long pass never
        makes the next be skipped), pausing poll_s when a pass found nothing new. ``after``
        takes each pass's committed changes (the incident stages)."""
        while not stop.is_set():
            try:
                changes = await self.run_once()
                await after(changes)
            except Exception:
                log.exception("triage pass failed; retrying")
                changes = []
            if not changes and self.waiting == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._settings.poll_s)

    async def _run(self, session: AsyncSession) -> list[IncidentChange]:
        now = self._clock.now()
        if not self._accountant_loaded:
            await self.accountant.reload(session)
            self._accountant_loaded = True
        since = (self._cursor or now - timedelta(seconds=self._settings.window_s)) - _OVERLAP
        ids = (
            await session.execute(
                select(Event.id, Event.received_at).where(Event.received_at >= since)
            )
        ).all()
        fresh_ids = [r.id for r in ids if r.id not in self._seen]
        for r in ids:
            self._seen.setdefault(r.id, r.received_at)
        if ids:
            self._cursor = max(r.received_at for r in ids)
        horizon = (self._cursor or now) - 2 * _OVERLAP
        self._seen = {k: v for k, v in self._seen.items() if v >= horizon}
        self._arrived = (0, None)
        if not fresh_ids:
            self._evict(now)
            return []
        rows = await self._load(session, fresh_ids)
        self._inflight = (len(rows), min(r.received_at for r in rows))
        try:
            return await self._weigh_fresh(session, rows, now)
        finally:
            self._inflight = (0, None)

    async def _weigh_fresh(
        self, session: AsyncSession, rows: list[Event], now: datetime
    ) -> list[IncidentChange]:
        fresh = await asyncio.to_thread(_weigh, rows)
        await self.accountant.note(session, (s for ev in fresh.values() for s in ev.signals), now)
        scopes = await self._scopes(session, fresh.values())
        changes: list[IncidentChange] = []
        outcomes: dict[str, Disposition] = {}
        for scope in scopes:
            state = await self._state(session, scope, fresh)
            horizon = await self._service.horizon(session, scope)
            state.prune(horizon)
            state.touched = now
            evaluation = await self._service.evaluate(session, scope, state.signals(), horizon)
            changes += evaluation.changes
            outcomes.update(evaluation.outcomes)
        await self.accountant.settle(session, outcomes, now)
        self._evict(now)
        return changes

    async def _load(self, session: AsyncSession, ids: list[uuid.UUID]) -> list[Event]:
        rows: list[Event] = []
        for i in range(0, len(ids), 500):
            rows += (
                await session.scalars(select(Event).where(Event.id.in_(ids[i : i + 500])))
            ).all()
        return rows

    async def _scopes(self, session: AsyncSession, fresh: Iterable[_Weighed]) -> list[Scope]:
        events = list(fresh)
        scopes = await scopes_for_hosts(session, {e.host_id for e in events})
        jobs_named = {e.job_id for e in events if e.host_id == "-" and e.job_id}
        for job_id in sorted(jobs_named - {s.job_id for s in scopes}):
            hosts = (
                await session.scalars(
                    select(JobRank.host_id).where(JobRank.job_id == job_id).distinct()
                )
            ).all()
            scopes.append(Scope(job_id, frozenset(hosts)))
        return scopes

    async def _state(
        self, session: AsyncSession, scope: Scope, fresh: dict[uuid.UUID, _Weighed]
    ) -> _ScopeState:
        """The scope's kept signals plus the fresh ones; rebuilt from the database when this
        replica has not followed the scope (a new leader) or its hosts changed."""
        key = _key(scope)
        state = self._states.get(key)
        if state is None or state.scope != scope:
            state = _ScopeState(scope)
            horizon = await self._service.horizon(session, scope)
            rows = await self._service.load_events(session, scope, horizon)
            stored = {r.id for r in rows}
            known = {k: v for k, v in fresh.items() if k in stored}
            state.events = known | await asyncio.to_thread(
                _weigh, [r for r in rows if r.id not in known]
            )
            self._states[key] = state
        for event_id, ev in fresh.items():
            if state.owns(ev):
                state.events[event_id] = ev
        return state

    def _evict(self, now: datetime) -> None:
        """Scopes untouched for a whole window: their signals no longer count."""
        cutoff = now - timedelta(seconds=self._settings.window_s)
        self._states = {
            k: v for k, v in self._states.items() if v.touched is None or v.touched >= cutoff
        }

    async def on_ingest(self, stored: Sequence[StoredBatch]) -> None:
        """Ingest listener: note what now waits for triage; GPU conditions in samples become
        events (at onset only)."""
        rows = []
        for item in stored:
            events = sum(o.kind not in PERIODIC_KINDS for o in item.batch.observations)
            if events:
                n, oldest = self._arrived
                self._arrived = (
                    n + events,
                    item.received_at if oldest is None else min(oldest, item.received_at),
                )
            host = item.batch.host_id
            for obs in item.batch.observations:
                if not isinstance(obs, GpuSample):
                    continue
                present = gpu_conditions(obs)
                gpu = (host, obs.gpu_index)
                if not present:
                    # A healthy GPU, nearly every sample: whatever held has ended.
                    self._active_conditions.pop(gpu, None)
                    continue
                active = self._active_conditions.setdefault(gpu, set())
                active.intersection_update(c for c, _ in present)
                for condition, detail in present:
                    if condition in active:
                        continue
                    active.add(condition)
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
