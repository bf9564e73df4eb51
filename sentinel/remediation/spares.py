"""The hot-spare pool: hosts held out of the queue in a scheduler reservation that Sentinel
manages, so that a swap (or an exclusion) restarts the job at once instead of waiting.

A host joins the pool while it is healthy by the agent's account (reported within
``swap.healthy_within_s``, healthy as the fleet page says: no GPU lost, no row-remap failure, no
recent critical event, no throttling; not drained, no open degraded finding, in no running
job): first the configured ``swap.spares``, then hosts a swap took out once a human or a repair
returned them to service. A ready spare that stops being healthy leaves the
pool. The scheduler's reservation is then made to hold exactly the ready spares (no scheduler
command runs inside a transaction).
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.clock import Clock
from sentinel.db import audit
from sentinel.db.audit import SENTINEL
from sentinel.db.engine import unit_of_work
from sentinel.db.models import (
    AuditEntry,
    DegradedFinding,
    Gpu,
    Host,
    Job,
    JobRank,
    Spare,
    Swap,
)
from sentinel.health import HealthState, host_health
from sentinel.incidents.settings import HealthSettings
from sentinel.remediation.pool_sizing import (
    DRAIN,
    RETURN,
    CoverHostsOutAtQuantile,
    PoolAdvice,
    record_from,
)
from sentinel.remediation.settings import SwapSettings
from sentinel.schedulers.base import HoldsSpares, OpResult, SchedulerAdapter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolState:
    """What the dashboard and /metrics show."""

    target: int
    ready: tuple[str, ...]
    used: tuple[str, ...]
    unhealthy: tuple[str, ...]  # configured spares not fit to hold now
    advice: PoolAdvice  # the size the fleet's record recommends


class SparePool:
    def __init__(
        self,
        clock: Clock,
        settings: SwapSettings,
        scheduler: SchedulerAdapter,
        health: HealthSettings | None = None,
    ) -> None:
        self._clock = clock
        self._health = health or HealthSettings()
        self._settings = settings
        self._scheduler = scheduler
        self._held: tuple[str, ...] | None = None  # what this process last made Slurm hold
        self.last_hold: OpResult | None = None

    @property
    def supported(self) -> bool:
        return isinstance(self._scheduler, HoldsSpares)

    async def healthy(self, session: AsyncSession, host_id: str) -> str | None:
        """None when ``host_id`` may be a spare, else why not."""
        now = self._clock.now()
        host = await session.get(Host, host_id)
        if host is None:
            return "its agent never reported"
        if host.last_seen < now - timedelta(seconds=self._settings.healthy_within_s):
            return f"its agent has not reported since {host.last_seen:%H:%M:%S}"
        if host.drain_state != "none":
            return f"it is {host.drain_state}"
        # The fleet page's verdict on it: GPUs lost, a row-remap failure, throttling...
        gpus = (await session.scalars(select(Gpu).where(Gpu.host_id == host_id))).all()
        health = host_health(host, gpus, now, self._health)
        if health.state != HealthState.healthy:
            return f"{health.state.value}: {health.reason}"
        if host.last_critical_at is not None and host.last_critical_at >= now - timedelta(
            seconds=self._settings.window_s
        ):
            return f"critical event: {host.last_critical}"
        finding = await session.scalar(
            select(DegradedFinding.reason).where(
                DegradedFinding.host_id == host_id, DegradedFinding.state == "open"
            )
        )
        if finding is not None:
            return f"degraded: {finding}"
        busy = await session.scalar(
            select(JobRank.job_id).where(
                JobRank.host_id == host_id,
                JobRank.last_beat_at >= now - timedelta(seconds=self._settings.healthy_within_s),
            )
        )
        if busy is not None:
            return f"it runs job {busy}"
        return None

    async def sync(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Fill the pool up to its size from healthy candidates, drop unhealthy ready spares,
        then make the reservation hold the ready ones. (The remediation loop runs it every
        tick: what the pool holds now is ``state``, read where it is shown.)"""
        if not self.supported or (self._settings.pool_size == 0 and not self._held):
            return
        now = self._clock.now()
        async with unit_of_work(sessions) as session:
            spares = {s.host_id: s for s in (await session.scalars(select(Spare))).all()}
            ready: list[str] = []
            for s in list(spares.values()):
                if s.state != "ready":
                    continue
                why = await self.healthy(session, s.host_id)
                if why is None:
                    ready.append(s.host_id)
                    continue
                await session.delete(s)
                del spares[s.host_id]
                self._audit(session, "spare.remove", s.host_id, why, now)
            for host_id in await self._candidates(session, spares):
                if len(ready) >= self._settings.pool_size:
                    break
                if await self.healthy(session, host_id) is not None:
                    continue
                used = spares.get(host_id)
                reason = "healthy: its agent reports, not drained, not degraded, in no job"
                if used is not None:
                    used.state, used.job_id, used.updated_at = "ready", None, now
                    used.reason = reason
                else:
                    session.add(
                        Spare(
                            host_id=host_id,
                            state="ready",
                            job_id=None,
                            reason=reason,
                            added_at=now,
                            updated_at=now,
                        )
                    )
                self._audit(session, "spare.add", host_id, reason, now)
                ready.append(host_id)
        await self.apply(tuple(sorted(ready)))

    async def _candidates(self, session: AsyncSession, spares: dict[str, Spare]) -> list[str]:
        """The configured spares not yet in the pool, then hosts that swaps took out (repaired
        ones pass the health check; the others do not). A host swapped out in the job onto a
        standby stays in the job's allocation (drained) while the job runs: not a spare then
        (once repaired it is that job's standby, remediation.standby)."""
        configured = [h for h in self._settings.spares if h not in spares]
        rows = (
            await session.execute(
                select(Swap.host_id, Swap.outcome, Job.state)
                .outerjoin(Job, Job.id == Swap.job_id)
                .where(Swap.status == "done")
                .order_by(Swap.updated_at)
            )
        ).all()
        swapped = [
            host
            for host, outcome, job_state in rows
            if not (outcome.get("standby_host") and job_state == "running")
        ]
        return [*configured, *(h for h in dict.fromkeys(swapped) if h not in spares)]

    async def apply(self, hosts: tuple[str, ...]) -> OpResult | None:
        """Make the reservation hold ``hosts``, if this process has not already."""
        if not isinstance(self._scheduler, HoldsSpares) or hosts == self._held:
            return None
        res = await self._scheduler.hold(self._settings.reservation, hosts)
        self.last_hold = res
        if res.ok:
            self._held = hosts
        else:
            log.warning("spare reservation %s: %s", self._settings.reservation, res.error)
        return res

    async def state(self, sessions: async_sessionmaker[AsyncSession]) -> PoolState:
        async with unit_of_work(sessions) as session:
            rows = (await session.scalars(select(Spare).order_by(Spare.host_id))).all()
            unhealthy = [
                h
                for h in self._settings.spares
                if h not in {r.host_id for r in rows} and await self.healthy(session, h)
            ]
            advice = await self.advice(session)
        return PoolState(
            target=self._settings.pool_size,
            ready=tuple(r.host_id for r in rows if r.state == "ready"),
            used=tuple(r.host_id for r in rows if r.state == "used"),
            unhealthy=tuple(unhealthy),
            advice=advice,
        )

    async def advice(self, session: AsyncSession) -> PoolAdvice:
        """The pool size the record of drains and returns over ``sizing_window_s`` recommends."""
        s = self._settings
        now = self._clock.now()
        rows = (
            await session.execute(
                select(AuditEntry.target, AuditEntry.action, AuditEntry.at).where(
                    AuditEntry.action.in_((DRAIN, RETURN)),
                    AuditEntry.at >= now - timedelta(seconds=s.sizing_window_s),
                    AuditEntry.target.startswith("host:"),
                )
            )
        ).all()
        record = record_from(
            ((target.removeprefix("host:"), action, at) for target, action, at in rows),
            now,
            s.sizing_window_s,
        )
        rule = CoverHostsOutAtQuantile(s.sizing_quantile, s.repair_s, s.sizing_min_repairs)
        return rule.advise(record)

    @staticmethod
    def _audit(session: AsyncSession, action: str, host_id: str, why: str, now: datetime) -> None:
        audit.record(session, SENTINEL, action, f"host:{host_id}", {"reason": why}, now)


class PoolMetrics:
    """The pool's gauges, on the service's registry (read at scrape time)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.spares = Gauge(
            "sentinel_spares",
            "Hosts of the hot-spare pool by state (ready: held in the reservation; used: "
            "given to a job by a swap; unhealthy: configured spares not fit to hold)",
            ["state"],
            registry=registry,
        )
        self.target = Gauge(
            "sentinel_spares_target", "Spares the pool should hold", registry=registry
        )
        self.recommended = Gauge(
            "sentinel_spare_pool_recommended",
            "Spares the fleet's record recommends: the hosts out at once at the sizing "
            "quantile (Poisson, mean drains a day x repair time)",
            registry=registry,
        )
        self.drains_per_day = Gauge(
            "sentinel_spare_pool_drains_per_day",
            "Hosts drained a day by exclusions and swaps, over the sizing window",
            registry=registry,
        )
        self.repair_seconds = Gauge(
            "sentinel_spare_pool_repair_seconds",
            "Mean time from a host's drain to its return, measured over the sizing window "
            "(the configured repair_s until enough repairs are measured)",
            registry=registry,
        )
        self.findings = Gauge(
            "sentinel_degraded_findings_open",
            "Open degraded findings (hosts whose parts warn), by indicator rule",
            ["rule"],
            registry=registry,
        )
        self.swaps = Gauge(
            "sentinel_swaps", "Proactive swap decisions by status", ["status"], registry=registry
        )

    async def refresh(self, sessions: async_sessionmaker[AsyncSession], pool: SparePool) -> None:
        state = await pool.state(sessions)
        async with unit_of_work(sessions) as session:
            findings = (
                await session.execute(
                    select(DegradedFinding.rule, func.count())
                    .where(DegradedFinding.state == "open")
                    .group_by(DegradedFinding.rule)
                )
            ).all()
            swaps = (
                await session.execute(select(Swap.status, func.count()).group_by(Swap.status))
            ).all()
        self.target.set(state.target)
        self.recommended.set(state.advice.recommended)
        self.drains_per_day.set(state.advice.drains_per_day)
        self.repair_seconds.set(state.advice.repair_s)
        for name, hosts in (
            ("ready", state.ready),
            ("used", state.used),
            ("unhealthy", state.unhealthy),
        ):
            self.spares.labels(name).set(len(hosts))
        self.findings.clear()
        for rule, n in findings:
            self.findings.labels(rule).set(n)
        self.swaps.clear()
        for status, n in swaps:
            self.swaps.labels(status).set(n)


_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, PoolMetrics] = weakref.WeakKeyDictionary()


def pool_metrics(registry: CollectorRegistry) -> PoolMetrics:
    """One set of gauges per registry (per app)."""
    if registry not in _METRICS:
        _METRICS[registry] = PoolMetrics(registry)
    return _METRICS[registry]
