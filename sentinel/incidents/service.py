"""Correlate a job's signals into incidents and keep their lifecycle, every change with a reason.

One evaluation looks at every event of the job's hosts in the incident window, asks the triage
policy for the primary verdict and any unrelated secondary ones, and matches them to the job's
open incidents: a verdict that names a culprit joins the incident with that culprit, or refines
the job's incident that had none yet (NCCL timeouts first, the XID that explains them later).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.clock import Clock
from sentinel.db import audit
from sentinel.db.audit import Actor
from sentinel.db.engine import unit_of_work
from sentinel.db.models import (
    Event,
    EventDisposition,
    Incident,
    IncidentTransition,
    Job,
    JobRank,
    Maintenance,
)
from sentinel.incidents.accountability import PENDING, Disposition
from sentinel.incidents.settings import TriageSettings
from sentinel.incidents.signals import weighs
from sentinel.incidents.state import (
    OPEN_STATES,
    IncidentState,
    UnknownIncident,
    check_move,
)
from sentinel.incidents.verdicts import verdict_of
from sentinel.metrics import ServiceMetrics
from sentinel.triage.classify import classify_signals_all
from sentinel.triage.signals import Signal, maintenance_signal
from sentinel.triage.taxonomy import Category
from sentinel.triage.verdict import Verdict

log = logging.getLogger(__name__)

# Categories that say "something is wrong, cause not yet known": a later, better verdict
# refines such an incident instead of opening a second one.
_PROVISIONAL = frozenset({Category.UNKNOWN, Category.NCCL_WATCHDOG_TIMEOUT})
# Hosts' clocks disagree by a few seconds: a cause "no later than" an opening allows this much.
_REFINE_SLACK = timedelta(seconds=10)

# "decision_failed": the incident's decision failed or was escalated while being carried out;
# the incident's state is unchanged, but people must be told.
ChangeKind = Literal["opened", "reclassified", "mitigating", "resolved", "decision_failed"]


@dataclass(frozen=True)
class IncidentChange:
    """What happened to an incident, handed on once its transaction has committed (the
    incident is a snapshot from a closed session: later readers load it again by id)."""

    incident: Incident
    kind: ChangeKind


@dataclass(frozen=True)
class Horizon:
    """The events of a scope that still count (see TriageService.horizon)."""

    start: datetime
    # Events received up to this time belonged to the scope's last resolved incident...
    resolved: datetime | None
    # ...except these: the evidence of the scope's incidents still open.
    kept: frozenset[str] = frozenset()

    def counts(self, event_id: str, observed_at: datetime, received_at: datetime) -> bool:
        if observed_at < self.start:
            return False
        return self.resolved is None or received_at > self.resolved or event_id in self.kept


@dataclass(frozen=True)
class Evaluation:
    changes: list[IncidentChange]
    # By event id: the incident (and role) or the dismissal each weighed signal ended in.
    outcomes: dict[str, Disposition]


@dataclass(frozen=True)
class Scope:
    """What one evaluation covers: a job (all its hosts), or one host outside any job."""

    job_id: str | None
    hosts: frozenset[str]


async def scopes_for_hosts(session: AsyncSession, hosts: set[str]) -> list[Scope]:
    rows = (
        await session.execute(
            select(JobRank.job_id, JobRank.host_id)
            .join(Job, Job.id == JobRank.job_id)
            .where(Job.state == "running")
        )
    ).all()
    job_hosts: dict[str, set[str]] = {}
    for job_id, host in rows:
        job_hosts.setdefault(job_id, set()).add(host)
    scopes: list[Scope] = []
    covered: set[str] = set()
    for job_id, members in sorted(job_hosts.items()):
        if members & hosts:
            scopes.append(Scope(job_id, frozenset(members)))
            covered |= members
    scopes.extend(Scope(None, frozenset({h})) for h in sorted(hosts - covered) if h != "-")
    return scopes


class TriageService:
    def __init__(self, clock: Clock, settings: TriageSettings, metrics: ServiceMetrics) -> None:
        self._clock = clock
        self._settings = settings
        self._metrics = metrics

    async def horizon(self, session: AsyncSession, scope: Scope) -> Horizon:
        """Which of a scope's events still count: observed since the window's start (earlier
        while an incident is open), and received after the scope's last incident was resolved
        (what arrived before belonged to that incident), unless an incident still open was
        detected by then: a job's older incident can resolve after its next fault opened one
        (the restarted ranks' beats arrive late), and that fault's evidence still counts."""
        now = self._clock.now()
        incidents = await self._open_incidents(session, scope)
        start = now - timedelta(seconds=self._settings.window_s)
        if incidents:
            start = min(
                start,
                min(i.opened_at for i in incidents) - timedelta(seconds=self._settings.lookback_s),
            )
        resolved = await self._last_resolved_at(session, scope)
        if resolved is None:
            return Horizon(start, None)
        # A hard fault still owed an answer was no part of the resolved incident: one that
        # arrived just before the resolution and was weighed just after still counts.
        kept = await self._pending(session, scope, start)
        if incidents:
            resolved = min(resolved, min(i.detected_at for i in incidents) - _REFINE_SLACK)
            kept |= {eid for i in incidents for eid in _evidence_ids(i, causes_only=False)}
        return Horizon(start, resolved, frozenset(kept))

    async def _pending(self, session: AsyncSession, scope: Scope, start: datetime) -> set[str]:
        hosts = [*scope.hosts, "-"] if scope.job_id else list(scope.hosts)
        rows = await session.scalars(
            select(EventDisposition.event_id).where(
                EventDisposition.role == PENDING,
                EventDisposition.host_id.in_(hosts),
                EventDisposition.observed_at >= start,
            )
        )
        return {str(e) for e in rows.all()}

    async def load_events(
        self, session: AsyncSession, scope: Scope, horizon: Horizon
    ) -> list[Event]:
        """The scope's events within the horizon: what a new leader rebuilds its state from."""
        return await self._events(session, scope, horizon)

    async def evaluate(
        self,
        session: AsyncSession,
        scope: Scope,
        signals: Sequence[Signal],
        horizon: Horizon | None = None,
    ) -> Evaluation:
        """Weigh a scope's signals: open, join or refine incidents; say what became of each
        signal that a verdict accounts for (the accountability of hard faults). `horizon`: the
        scope's, when the caller has just computed it (the worker, to prune)."""
        now = self._clock.now()
        if not any(weighs(s) for s in signals):
            return Evaluation([], {})
        incidents = await self._open_incidents(session, scope)
        horizon = horizon or await self.horizon(session, scope)
        signals = [*signals, *await self._maintenance(session, scope, horizon.start, now)]
        verdicts = await asyncio.to_thread(
            functools.partial(
                classify_signals_all,
                signals,
                job_hosts=len(scope.hosts) if scope.job_id else None,
                job_ranks=await self._rank_count(session, scope),
                hosts_seen=scope.hosts,
                limit=self._settings.max_verdicts,
            )
        )
        by_id = {id(s): s for s in signals}
        changes: list[IncidentChange] = []
        outcomes: dict[str, Disposition] = {}
        for n, verdict in enumerate(verdicts):
            explained = [by_id[i] for i in verdict.explained if i in by_id]
            if n > 0 and not _stands_alone(verdict, signals):
                for s in explained:
                    if s.event_id:
                        outcomes.setdefault(
                            s.event_id,
                            Disposition(
                                "dismissed",
                                None,
                                f"below threshold: {verdict.category.value} without cause "
                                f"evidence of its own ({verdict.rule})",
                            ),
                        )
                continue
            target = _match(
                verdict,
                incidents,
                {s.event_id for s in explained if s.event_id},
                _first_seen(verdict, explained),
            )
            if target is None:
                incident = self._open(session, scope, verdict, explained, now)
                incidents.append(incident)
                changes.append(IncidentChange(incident, "opened"))
            elif _differs(target, verdict):
                self._reclassify(session, target, verdict, now)
                changes.append(IncidentChange(target, "reclassified"))
            else:
                target.verdict = _verdict_json(verdict)
                target.updated_at = now
            incident_id = (incidents[-1] if target is None else target).id
            for s in explained:
                if s.event_id:
                    role: Literal["cause", "symptom"] = (
                        "cause" if id(s) in verdict.causes else "symptom"
                    )
                    outcomes.setdefault(
                        s.event_id, Disposition(role, incident_id, f"{verdict.rule}")
                    )
        await session.flush()
        return Evaluation(changes, outcomes)

    async def transition(
        self,
        session: AsyncSession,
        incident: Incident,
        to_state: Literal[IncidentState.mitigating, IncidentState.resolved],
        reason: str,
        actor: str,
    ) -> IncidentChange:
        """Move an incident to a state, with the reason. The caller hands the returned change
        to the incident stages once its transaction has committed."""
        now = self._clock.now()
        session.add(
            IncidentTransition(
                incident_id=incident.id,
                from_state=incident.state,
                to_state=to_state,
                reason=reason,
                actor=actor,
                at=now,
            )
        )
        incident.state = to_state
        incident.updated_at = now
        if to_state == IncidentState.resolved:
            incident.resolved_at = now
            self._metrics.incidents_resolved.labels(incident.category).inc()
        await session.flush()
        return IncidentChange(
            incident, "resolved" if to_state == IncidentState.resolved else "mitigating"
        )

    async def resolve_by_hand(
        self,
        sessions: async_sessionmaker[AsyncSession],
        who: Actor,
        incident_id: uuid.UUID,
        reason: str,
    ) -> IncidentChange:
        """An operator resolves an incident, with the reason. Its own unit of work: the caller
        hands the change to the incident stages once it has committed."""
        async with unit_of_work(sessions) as session:
            incident = await session.get(Incident, incident_id)
            if incident is None:
                raise UnknownIncident(f"no incident {incident_id}")
            check_move(incident.state, IncidentState.resolved)
            change = await self.transition(
                session, incident, IncidentState.resolved, f"by {who.name}: {reason}", who.name
            )
            audit.record(
                session,
                who,
                "incident.resolve",
                f"incident:{incident.id}",
                {"reason": reason},
                self._clock.now(),
            )
        return change

    async def open_planned(self, session: AsyncSession, maintenance: Maintenance) -> IncidentChange:
        """Open the job's incident for planned work that stops it on purpose, as an evaluation
        would read its announcement: an operator's restart in place (remediation/planned.py)
        needs an incident for its decision. The stop's own signals, read with the same
        announcement, get the same verdict and join it. The caller hands the change on once
        its transaction has committed."""
        scope = Scope(maintenance.job_id, frozenset(maintenance.hosts or []))
        signals = _maintenance_signals(maintenance, scope)
        [verdict] = classify_signals_all(
            signals, job_hosts=len(scope.hosts), hosts_seen=scope.hosts, limit=1
        )
        incident = self._open(session, scope, verdict, signals, self._clock.now())
        await session.flush()
        return IncidentChange(incident, "opened")

    def _open(
        self,
        session: AsyncSession,
        scope: Scope,
        verdict: Verdict,
        explained: Sequence[Signal],
        now: datetime,
    ) -> Incident:
        # The incident's own earliest evidence, never another incident's in the same window.
        opened = _first_seen(verdict, explained) or now
        incident = Incident(
            id=uuid.uuid4(),
            job_id=scope.job_id,
            state=IncidentState.open,
            category=verdict.category.value,
            confidence=verdict.confidence,
            culprit_host=verdict.culprit_host,
            culprit_gpu=verdict.culprit_gpu,
            culprit_rank=verdict.culprit_rank,
            rule=verdict.rule,
            reason=verdict.reason,
            verdict=_verdict_json(verdict),
            opened_at=min(opened, now),
            detected_at=now,
            updated_at=now,
        )
        session.add(incident)
        session.add(
            IncidentTransition(
                incident_id=incident.id,
                from_state=None,
                to_state=IncidentState.open,
                reason=f"{verdict.rule}: {verdict.reason}",
                actor="triage",
                at=now,
            )
        )
        self._metrics.incidents_opened.labels(verdict.category.value).inc()
        self._metrics.detection_latency.observe(
            max(0.0, (now - incident.opened_at).total_seconds())
        )
        log.info(
            "incident opened: %s on %s (%s)",
            verdict.category.value,
            verdict.culprit_host or scope.job_id,
            verdict.rule,
        )
        return incident

    def _reclassify(
        self, session: AsyncSession, incident: Incident, verdict: Verdict, now: datetime
    ) -> None:
        before = f"{incident.category} on {incident.culprit_host or 'no host'}"
        session.add(
            IncidentTransition(
                incident_id=incident.id,
                from_state=incident.state,
                to_state=incident.state,
                reason=f"reclassified from {before}: {verdict.rule}: {verdict.reason}",
                actor="triage",
                at=now,
            )
        )
        incident.category = verdict.category.value
        incident.confidence = verdict.confidence
        incident.culprit_host = verdict.culprit_host
        incident.culprit_gpu = verdict.culprit_gpu
        incident.culprit_rank = verdict.culprit_rank
        incident.rule = verdict.rule
        incident.reason = verdict.reason
        incident.verdict = _verdict_json(verdict)
        incident.updated_at = now

    async def _open_incidents(self, session: AsyncSession, scope: Scope) -> list[Incident]:
        q = select(Incident).where(Incident.state.in_(OPEN_STATES))
        if scope.job_id is not None:
            q = q.where(Incident.job_id == scope.job_id)
        else:
            q = q.where(Incident.job_id.is_(None), Incident.culprit_host.in_(scope.hosts))
        return list((await session.scalars(q.order_by(Incident.opened_at))).all())

    async def _last_resolved_at(self, session: AsyncSession, scope: Scope) -> datetime | None:
        q = select(Incident.resolved_at).where(Incident.state == IncidentState.resolved)
        if scope.job_id is not None:
            q = q.where(Incident.job_id == scope.job_id)
        else:
            q = q.where(Incident.job_id.is_(None), Incident.culprit_host.in_(scope.hosts))
        return await session.scalar(q.order_by(Incident.resolved_at.desc()).limit(1))

    async def _events(self, session: AsyncSession, scope: Scope, horizon: Horizon) -> list[Event]:
        hosts = [*scope.hosts, "-"] if scope.job_id else list(scope.hosts)
        q = select(Event).where(Event.host_id.in_(hosts), Event.observed_at >= horizon.start)
        if horizon.resolved is not None:
            kept = [u for u in map(_uuid_or_none, horizon.kept) if u is not None]
            q = q.where((Event.received_at > horizon.resolved) | Event.id.in_(kept))
        if scope.job_id:
            # Job-wide synthetic events ("-") must be this job's.
            q = q.where((Event.host_id != "-") | (Event.job_id == scope.job_id))
        return list((await session.scalars(q.order_by(Event.observed_at))).all())

    async def _maintenance(
        self, session: AsyncSession, scope: Scope, start: datetime, now: datetime
    ) -> list[Signal]:
        rows = (
            await session.scalars(
                select(Maintenance).where(
                    Maintenance.ends_at >= start, Maintenance.starts_at <= now
                )
            )
        ).all()
        return [s for m in rows for s in _maintenance_signals(m, scope)]

    async def _rank_count(self, session: AsyncSession, scope: Scope) -> int | None:
        if scope.job_id is None:
            return None
        from sqlalchemy import func

        return (
            int(
                await session.scalar(
                    select(func.count()).select_from(JobRank).where(JobRank.job_id == scope.job_id)
                )
                or 0
            )
            or None
        )


def _maintenance_signals(m: Maintenance, scope: Scope) -> list[Signal]:
    """What announced maintenance says to a scope: one signal per host of the scope it names,
    or one for the whole job when it names none; nothing for another job's."""
    if m.job_id is not None and m.job_id != scope.job_id:
        return []
    text = f"announced maintenance by {m.author}: {m.reason}"
    hosts = set(m.hosts or [])
    signal = functools.partial(
        maintenance_signal,
        text=text,
        time=m.starts_at,
        event_id=str(m.id),
        restart=m.kind == "restart",
    )
    out: list[Signal] = [] if hosts else [signal()]
    out.extend(signal(host=h) for h in sorted(hosts & scope.hosts))
    return out


def _verdict_json(verdict: Verdict) -> dict[str, object]:
    return verdict.model_dump(mode="json")


def _stands_alone(verdict: Verdict, signals: Sequence[Signal]) -> bool:
    """A secondary verdict opens its own incident only on real cause evidence."""
    return (
        verdict.category != Category.UNKNOWN
        and any(e.role == "cause" for e in verdict.evidence)
        and any(weighs(s) for s in signals if s.event_id in {e.event_id for e in verdict.evidence})
    )


def _match(
    verdict: Verdict,
    incidents: Sequence[Incident],
    explained: set[str],
    first_seen: datetime | None,
) -> Incident | None:
    """The open incident a verdict belongs to, if any.

    The same fault seen again (same culprit, or none, and same category) joins its incident; a
    better verdict refines an incident only when it accounts for that incident's own evidence:
    a late-delivered XID explains the peers' timeouts, and a fault that happened after a
    (non-provisional) incident opened is a new fault, not that incident's cause.
    """
    category = verdict.category.value
    for incident in incidents:
        if incident.culprit_host == verdict.culprit_host and incident.category == category:
            return incident
    for incident in incidents:
        # A provisional incident (a hang, an unknown) is refined by what explains any of its
        # evidence: the cause of a hang often shows after the heartbeats stopped (a host is
        # declared silent a minute later, an NVMe timeout after 30 s). Another incident only by
        # what explains its cause and was seen by the time it opened (one host's link errors
        # first, then the whole rack's: the fabric).
        provisional = Category(incident.category) in _PROVISIONAL
        if not provisional and (
            first_seen is None or first_seen > incident.opened_at + _REFINE_SLACK
        ):
            continue
        if explained & _evidence_ids(incident, causes_only=not provisional):
            return incident
    return None


def _first_seen(verdict: Verdict, explained: Sequence[Signal]) -> datetime | None:
    """When a verdict's fault was first seen: its earliest cause; with no cause (a hang), its
    earliest symptom. Symptoms older than the cause belong to something else."""
    causes = [s.time for s in explained if s.time is not None and id(s) in verdict.causes]
    weighing = [s.time for s in explained if s.time is not None and weighs(s)]
    times = causes or weighing or [s.time for s in explained if s.time is not None]
    return min(times) if times else None


def _uuid_or_none(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _evidence_ids(incident: Incident, *, causes_only: bool) -> set[str]:
    verdict = verdict_of(incident)
    shown = verdict.evidence if causes_only else [*verdict.evidence, *verdict.symptoms]
    return {e.event_id for e in shown if e.event_id and (not causes_only or e.role == "cause")}


def _differs(incident: Incident, verdict: Verdict) -> bool:
    return (incident.category, incident.culprit_host, incident.culprit_gpu) != (
        verdict.category.value,
        verdict.culprit_host,
        verdict.culprit_gpu,
    )
