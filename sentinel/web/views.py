"""What each dashboard page shows, read from the database in as few queries as the page needs."""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.db.models import (
    Alert,
    AlertGroup,
    AuditEntry,
    Batch,
    Decision,
    Event,
    EventDisposition,
    Gpu,
    Host,
    Incident,
    IncidentTransition,
    JobRank,
    NotificationLog,
)
from sentinel.health import HARD_THROTTLE_MASK, HealthState, host_health
from sentinel.incidents.accountability import count_unaccounted, unaccounted
from sentinel.incidents.settings import HealthSettings
from sentinel.incidents.state import IncidentState
from sentinel.incidents.verdicts import verdict_of
from sentinel.remediation.decisions import DecisionStatus
from sentinel.triage.taxonomy import LLAMA3_TABLE5, Category
from sentinel.triage.verdict import Evidence
from sentinel.web.charts import Chart, Series, line_chart
from sentinel.wire.identity import GpuIdentity

# One letter per GPU cell of the fleet grid (also the CSS class): small pages, fast paint.
CELL = {
    HealthState.healthy: "h",
    HealthState.degraded: "d",
    HealthState.unhealthy: "u",
    HealthState.silent: "s",
    HealthState.drained: "x",
}
STATES = list(CELL)
GPUS_PER_HOST = 8


@dataclass
class FleetHost:
    id: str
    state: str
    reason: str
    cells: str
    culprit: bool


@dataclass
class Fleet:
    hosts: list[FleetHost]
    counts: dict[str, int]
    gpu_counts: dict[str, int]
    total: int


def _cells(
    host_state: HealthState, width: int, present: set[int] | None, flagged: list[Gpu]
) -> str:
    if host_state is HealthState.silent:
        return CELL[host_state] * width
    # A GPU at fault is the one square in red, on a drained host too: that is what goes to
    # repair. A host-wide cause (a critical event with no GPU at fault) reddens the host.
    gpu_fault = any(g.lost or g.remap_failure for g in flagged)
    if host_state is HealthState.drained:
        base = "x"
    elif host_state is HealthState.unhealthy and not gpu_fault:
        base = "u"
    else:
        base = "h"
    # A GPU the agent never reported is one the job cannot use: shown as silent.
    cells = [base if present is None or i in present else "s" for i in range(width)]
    for g in flagged:
        if g.lost or g.remap_failure:
            cells[g.gpu_index] = "u"
        elif base == "h":
            cells[g.gpu_index] = "d"
    return "".join(cells)


# The GPUs that can make a host anything but healthy; the rest add nothing to host_health.
FLAGGED = or_(
    Gpu.lost, Gpu.remap_failure, Gpu.clock_event_reasons.bitwise_and(HARD_THROTTLE_MASK) != 0
)


async def fleet(
    session: AsyncSession,
    now: datetime,
    settings: HealthSettings,
    state: str | None = None,
    named: str | None = None,
) -> Fleet:
    """Every host's health; those shown are the ones in `state` whose name contains `named`."""
    needle = (named or "").lower()
    # Plain rows and only the GPUs that matter: building 18,432 ORM objects would take most of
    # the 300 ms this page may spend. host_health reads only these columns, as attributes,
    # which rows have too (hence the casts), and only the flagged GPUs can change its answer.
    hosts = (
        await session.execute(
            select(
                Host.id,
                Host.last_seen,
                Host.drain_state,
                Host.drain_reason,
                Host.last_critical_at,
                Host.last_critical,
            ).order_by(Host.id)
        )
    ).all()
    shape = {
        host_id: (int(n), int(top))
        for host_id, n, top in (
            await session.execute(
                select(Gpu.host_id, func.count(), func.max(Gpu.gpu_index)).group_by(Gpu.host_id)
            )
        ).all()
    }
    flagged: dict[str, list[Gpu]] = defaultdict(list)
    rows = await session.execute(
        select(
            Gpu.host_id, Gpu.gpu_index, Gpu.lost, Gpu.remap_failure, Gpu.clock_event_reasons
        ).where(FLAGGED)
    )
    for gpu in rows.all():
        flagged[gpu.host_id].append(cast(Gpu, gpu))
    # Hosts with a gap in their GPU indexes are rare; only for them is each index looked up.
    gappy = [h for h, (n, top) in shape.items() if n < max(GPUS_PER_HOST, top + 1)]
    present: dict[str, set[int]] = defaultdict(set)
    if gappy:
        for host_id, index in (
            await session.execute(select(Gpu.host_id, Gpu.gpu_index).where(Gpu.host_id.in_(gappy)))
        ).all():
            present[host_id].add(index)
    culprits = set(
        (
            await session.scalars(
                select(Incident.culprit_host).where(
                    Incident.state != IncidentState.resolved, Incident.culprit_host.is_not(None)
                )
            )
        ).all()
    )
    counts: Counter[str] = Counter()
    gpu_counts: Counter[str] = Counter()
    out: list[FleetHost] = []
    for host in hosts:
        n, top = shape.get(host.id, (0, -1))
        health = host_health(cast(Host, host), flagged[host.id], now, settings)
        cells = _cells(
            health.state,
            max(GPUS_PER_HOST, top + 1),
            present[host.id] if host.id in present or n == 0 else None,
            flagged[host.id],
        )
        counts[health.state.value] += 1
        gpu_counts.update(cells)
        if (state is None or health.state.value == state) and needle in host.id.lower():
            out.append(
                FleetHost(host.id, health.state.value, health.reason, cells, host.id in culprits)
            )
    return Fleet(
        out,
        {s.value: counts[s.value] for s in STATES},
        {s.value: gpu_counts[CELL[s]] for s in STATES},
        len(hosts),
    )


@dataclass
class TriageHealth:
    """Whether triage keeps up: its lag and backlog, and hard faults it has not answered."""

    lag_s: float
    waiting: int
    lagging: bool
    unaccounted: list[EventDisposition]
    unaccounted_total: int


async def triage_health(
    session: AsyncSession,
    now: datetime,
    *,
    lag_s: float,
    waiting: int,
    lag_alert_s: float,
    accountable_s: float,
) -> TriageHealth:
    shown = await unaccounted(session, now, accountable_s, limit=20)
    total = len(shown)
    if total == 20:
        total = await count_unaccounted(session, now, accountable_s)
    return TriageHealth(lag_s, waiting, lag_s > lag_alert_s, shown, total)


async def active_incidents(session: AsyncSession, limit: int = 20) -> list[Incident]:
    rows = await session.scalars(
        select(Incident)
        .where(Incident.state != IncidentState.resolved)
        .order_by(Incident.opened_at.desc())
        .limit(limit)
    )
    return list(rows.all())


@dataclass
class IncidentList:
    """One page of the incidents that match the filters, newest first, with their decisions."""

    incidents: list[Incident]
    decisions: dict[uuid.UUID, Decision]
    total: int
    page: int
    pages: int


INCIDENTS_PER_PAGE = 50


async def incident_list(
    session: AsyncSession,
    *,
    state: str | None = None,
    category: str | None = None,
    job_id: str | None = None,
    host: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page: int = 1,
) -> IncidentList:
    q = select(Incident)
    for column, value in (
        (Incident.state, state),
        (Incident.category, category),
        (Incident.job_id, job_id),
        (Incident.culprit_host, host),
    ):
        if value:
            q = q.where(column == value)
    if since is not None:
        q = q.where(Incident.opened_at >= since)
    if until is not None:
        q = q.where(Incident.opened_at < until)
    total = int(await session.scalar(select(func.count()).select_from(q.subquery())) or 0)
    pages = max(1, -(-total // INCIDENTS_PER_PAGE))
    page = min(page, pages)
    rows = list(
        (
            await session.scalars(
                q.order_by(Incident.opened_at.desc(), Incident.id)
                .offset((page - 1) * INCIDENTS_PER_PAGE)
                .limit(INCIDENTS_PER_PAGE)
            )
        ).all()
    )
    decisions = (
        {
            d.incident_id: d
            for d in (
                await session.scalars(
                    select(Decision).where(Decision.incident_id.in_([i.id for i in rows]))
                )
            ).all()
        }
        if rows
        else {}
    )
    return IncidentList(rows, decisions, total, page, pages)


@dataclass
class HostPage:
    host: Host
    health: str
    reason: str
    gpus: list[dict[str, Any]]
    temperature: Chart | None
    ecc: Chart | None
    events: list[tuple[Event, str]]
    incidents: list[Incident]


# An hour of history at the agents' default 5 s batch interval.
HISTORY_BATCHES = 720


def _event_text(event: Event) -> str:
    payload = event.payload
    text = payload.get("message") or payload.get("detail") or payload.get("text") or ""
    if event.kind == "xid":
        return f"XID {payload.get('xid')}: {text}"
    return str(text) or json.dumps(payload, sort_keys=True)[:300]


async def host_page(
    session: AsyncSession, host: Host, now: datetime, settings: HealthSettings
) -> HostPage:
    gpus = list(
        (
            await session.scalars(select(Gpu).where(Gpu.host_id == host.id).order_by(Gpu.gpu_index))
        ).all()
    )
    health = host_health(host, gpus, now, settings)
    batches = (
        await session.scalars(
            select(Batch)
            .where(Batch.host_id == host.id)
            .order_by(Batch.seq.desc())
            .limit(HISTORY_BATCHES)
        )
    ).all()
    temps: dict[int, list[tuple[datetime, float]]] = defaultdict(list)
    eccs: dict[int, list[tuple[datetime, float]]] = defaultdict(list)
    for b in reversed(batches):
        for s in json.loads(b.samples):
            if s.get("kind") != "gpu_sample":
                continue
            at = datetime.fromisoformat(s["observed_at"])
            if s.get("temperature_c") is not None:
                temps[s["gpu_index"]].append((at, float(s["temperature_c"])))
            if s.get("ecc_volatile_uncorrected") is not None:
                eccs[s["gpu_index"]].append((at, float(s["ecc_volatile_uncorrected"])))
    events = (
        await session.scalars(
            select(Event)
            .where(Event.host_id == host.id)
            .order_by(Event.observed_at.desc())
            .limit(50)
        )
    ).all()
    incidents = (
        await session.scalars(
            select(Incident)
            .where(Incident.culprit_host == host.id)
            .order_by(Incident.opened_at.desc())
            .limit(20)
        )
    ).all()
    faults = await gpu_faults(session, host.id)
    return HostPage(
        host=host,
        health=health.state.value,
        reason=health.reason,
        gpus=[
            {
                "index": g.gpu_index,
                "uuid": g.uuid,
                "pci_bus_id": g.pci_bus_id,
                "serial": g.serial,
                "temperature_c": g.temperature_c,
                "ecc_uncorrected": g.ecc_uncorrected,
                "lost": g.lost,
                "remap_failure": g.remap_failure,
                "throttled": bool((g.clock_event_reasons or 0) & HARD_THROTTLE_MASK),
                "faults": faults.get(g.gpu_index, []),
                "updated_at": g.updated_at,
            }
            for g in gpus
        ],
        temperature=line_chart(
            [Series(f"GPU {i}", pts) for i, pts in sorted(temps.items())], unit="°C"
        ),
        ecc=line_chart([Series(f"GPU {i}", pts) for i, pts in sorted(eccs.items())], unit="errors"),
        events=[(e, _event_text(e)) for e in events],
        incidents=list(incidents),
    )


@dataclass(frozen=True)
class GpuFault:
    """A hard fault triage recorded on one GPU: what to call it, and the line it came from."""

    label: str
    summary: str
    observed_at: datetime


async def gpu_faults(session: AsyncSession, host_id: str) -> dict[int, list[GpuFault]]:
    """The hard faults seen on each GPU of a host since its last repair, newest first.

    A sample can read fine after an XID 79 or a double-bit error (the GPU answers NVML again, or
    never stopped): the GPU is still the one to distrust until the host is repaired. Hard faults
    are the ones triage holds accountable (its event_dispositions), the same ones remediation
    waits out before calling a host repaired.
    """
    repaired = await session.scalar(
        select(func.max(AuditEntry.at)).where(
            AuditEntry.target == f"host:{host_id}", AuditEntry.action == "host.repaired"
        )
    )
    q = (
        select(
            Event.gpu_index, Event.kind, Event.payload, EventDisposition.summary, Event.observed_at
        )
        .join(EventDisposition, EventDisposition.event_id == Event.id)
        .where(EventDisposition.host_id == host_id, Event.gpu_index.is_not(None))
        .order_by(Event.observed_at.desc())
        .limit(200)
    )
    if repaired is not None:
        q = q.where(Event.observed_at > repaired)
    out: dict[int, list[GpuFault]] = defaultdict(list)
    for index, kind, payload, summary, at in (await session.execute(q)).all():
        if kind == "xid" and payload.get("xid") is not None:
            label = f"XID {payload['xid']}"
        else:
            label = str(payload.get("condition") or payload.get("pattern") or kind)
        out[index].append(GpuFault(label, summary, at))
    return out


@dataclass
class SymptomGroup:
    family: str
    pattern: str | None
    count: int
    hosts: int
    example: str


def gpu_identity(g: Gpu) -> GpuIdentity:
    return GpuIdentity(g.gpu_index, g.pci_bus_id, g.uuid, g.serial)


def identify(name: str | None, gpus: list[Gpu]) -> GpuIdentity | None:
    """The GPU of a host that a line names by index, PCI address (any spelling), UUID or
    serial: every source's name for it resolves to the one identity NVML reported."""
    if not name:
        return None
    for g in gpus:
        identity = gpu_identity(g)
        if identity.is_named_by(name):
            return identity
    return None


async def host_gpus(session: AsyncSession, hosts: set[str]) -> dict[str, list[Gpu]]:
    out: dict[str, list[Gpu]] = defaultdict(list)
    if hosts:
        for g in (await session.scalars(select(Gpu).where(Gpu.host_id.in_(hosts)))).all():
            out[g.host_id].append(g)
    return out


@dataclass
class TimelineEntry:
    at: datetime | None
    role: str
    family: str
    host: str | None
    gpu: str | None
    rank: int | None
    text: str
    source: str | None
    gpu_id: GpuIdentity | None = None


TIMELINE_SYMPTOMS = 6


@dataclass
class IncidentPage:
    incident: Incident
    decision: Decision | None
    transitions: list[IncidentTransition]
    timeline: list[TimelineEntry]
    timeline_more: list[TimelineEntry]
    symptoms: list[SymptomGroup]
    symptoms_total: int
    evidence_total: int
    rules_fired: list[str]
    alerts: list[Alert]
    groups: list[AlertGroup]
    notifications: list[NotificationLog]
    steps: list[dict[str, Any]] = field(default_factory=list)
    culprit_gpu: GpuIdentity | None = None
    # The hosts an operator may exclude when overriding the decision, and those preselected.
    job_hosts: list[str] = field(default_factory=list)
    picked: set[str] = field(default_factory=set)


# The override API takes at most this many hosts to exclude.
PICKABLE_HOSTS = 1000


async def _job_hosts(session: AsyncSession, incident: Incident, picked: set[str]) -> list[str]:
    hosts = set(picked)
    if incident.job_id is not None:
        rows = await session.scalars(
            select(JobRank.host_id)
            .where(JobRank.job_id == incident.job_id)
            .distinct()
            .order_by(JobRank.host_id)
            .limit(PICKABLE_HOSTS)
        )
        hosts.update(rows.all())
    return sorted(hosts)


async def incident_page(session: AsyncSession, incident: Incident) -> IncidentPage:
    verdict = verdict_of(incident)
    # The role an item plays in this verdict: a traceback is a cause where it is printed, but on
    # the ranks past the first it is what the verdict lists as a symptom, and folds as one.
    items = [
        *verdict.evidence,
        *(
            s if s.role == "symptom" else s.model_copy(update={"role": "symptom"})
            for s in verdict.symptoms
        ),
    ]
    ids = []
    # A verdict stored before evidence kept its time: the events' own say when.
    for item in (i for i in items if i.time is None):
        try:
            ids.append(uuid.UUID(str(item.event_id)))
        except ValueError:
            continue
    named = {i.host for i in items if i.gpu and i.host}
    gpus = await host_gpus(
        session, named | ({incident.culprit_host} if incident.culprit_host else set())
    )
    seen: dict[str, datetime] = {}
    if ids:
        rows = await session.execute(
            select(Event.id, Event.observed_at).where(Event.id.in_(ids[:500]))
        )
        seen = {str(i): at for i, at in rows.all()}
    timeline = [
        TimelineEntry(
            item.time or seen.get(str(item.event_id)),
            item.role,
            item.family,
            item.host,
            item.gpu,
            item.rank,
            item.text,
            item.source,
            identify(item.gpu, gpus[item.host]) if item.host else None,
        )
        for item in items
    ]
    timeline.sort(key=lambda e: (e.at is None, e.at or incident.opened_at))
    # The causes and the first symptoms tell the story; 2,000 peers' timeouts would bury it.
    head: list[TimelineEntry] = []
    more: list[TimelineEntry] = []
    for entry in timeline:
        shown = sum(e.role == "symptom" for e in head)
        (more if entry.role == "symptom" and shown >= TIMELINE_SYMPTOMS else head).append(entry)
    groups: dict[tuple[str, str | None], list[Evidence]] = defaultdict(list)
    for s in verdict.symptoms:
        groups[(s.family, s.pattern)].append(s)
    symptom_groups = sorted(
        (
            SymptomGroup(
                family,
                pattern,
                len(members),
                len({m.host for m in members if m.host}),
                members[0].text,
            )
            for (family, pattern), members in groups.items()
        ),
        key=lambda g: -g.count,
    )
    decision = await session.scalar(select(Decision).where(Decision.incident_id == incident.id))
    picked = set(decision.exclude_hosts if decision else []) or (
        {incident.culprit_host} if incident.culprit_host else set()
    )
    transitions = (
        await session.scalars(
            select(IncidentTransition)
            .where(IncidentTransition.incident_id == incident.id)
            .order_by(IncidentTransition.at, IncidentTransition.id)
        )
    ).all()
    alerts = (
        await session.scalars(
            select(Alert).where(Alert.incident_id == incident.id).order_by(Alert.starts_at)
        )
    ).all()
    keys = {a.group_key for a in alerts}
    alert_groups = (
        (await session.scalars(select(AlertGroup).where(AlertGroup.group_key.in_(keys)))).all()
        if keys
        else []
    )
    notifications = (
        (
            await session.scalars(
                select(NotificationLog)
                .where(NotificationLog.group_key.in_(keys))
                .order_by(NotificationLog.at)
            )
        ).all()
        if keys
        else []
    )
    return IncidentPage(
        incident=incident,
        decision=decision,
        transitions=list(transitions),
        timeline=head,
        timeline_more=more,
        symptoms=symptom_groups,
        symptoms_total=verdict.symptoms_total,
        evidence_total=verdict.evidence_total,
        rules_fired=list(verdict.rules_fired),
        alerts=list(alerts),
        groups=list(alert_groups),
        notifications=list(notifications),
        steps=list((decision.outcome or {}).get("steps", [])) if decision else [],
        culprit_gpu=identify(incident.culprit_gpu, gpus[incident.culprit_host])
        if incident.culprit_host
        else None,
        job_hosts=await _job_hosts(session, incident, picked),
        picked=picked,
    )


# Decisions that wait for a person: to be approved, released from a hold, or decided instead.
AWAITING_A_HUMAN = (DecisionStatus.proposed, DecisionStatus.held, DecisionStatus.escalated)


async def awaiting_approval(
    session: AsyncSession, limit: int = 200
) -> list[tuple[Decision, Incident]]:
    """The decisions a person must act on, oldest first, each with its incident."""
    rows = await session.execute(
        select(Decision, Incident)
        .join(Incident, Incident.id == Decision.incident_id)
        .where(Decision.status.in_(AWAITING_A_HUMAN))
        .order_by(Decision.created_at)
        .limit(limit)
    )
    return [(d, i) for d, i in rows.all()]


async def group_incidents(session: AsyncSession, groups: list[AlertGroup]) -> dict[str, Incident]:
    """The incident each alert group is about (its `incident` label), so that a group is named
    by what happened and where rather than by the incident's UUID."""
    ids = []
    for g in groups:
        try:
            ids.append(uuid.UUID(str(g.labels.get("incident"))))
        except ValueError:
            continue
    if not ids:
        return {}
    rows = await session.scalars(select(Incident).where(Incident.id.in_(set(ids))))
    return {str(i.id): i for i in rows.all()}


@dataclass
class JobRestarts:
    restarts: int
    pending: int
    last_decision: Decision | None


RESTART_ACTIONS = (
    "restart",
    "restart_in_place",
    "exclude_and_restart",
    "roll_back",
    "skip_data",
)
# Decisions that have not run yet (or, a restart in place, not been acknowledged).
WAITING_TO_RUN = frozenset(
    {
        DecisionStatus.proposed,
        DecisionStatus.held,
        DecisionStatus.approved,
        DecisionStatus.pending,
        DecisionStatus.awaiting_ack,
    }
)


async def job_restarts(session: AsyncSession) -> dict[str, JobRestarts]:
    decisions = (await session.scalars(select(Decision).order_by(Decision.created_at))).all()
    out: dict[str, JobRestarts] = {}
    for d in decisions:
        if d.job_id is None:
            continue
        row = out.setdefault(d.job_id, JobRestarts(0, 0, None))
        if d.action in RESTART_ACTIONS and d.status == DecisionStatus.done:
            row.restarts += 1
        if d.status in WAITING_TO_RUN:
            row.pending += 1
        row.last_decision = d
    return out


@dataclass
class RootCauseRow:
    category: str
    count: int
    share: float | None
    llama3_count: int | None
    llama3_share: float | None


@dataclass
class RootCauses:
    rows: list[RootCauseRow]
    unexpected: int
    planned: int
    since: datetime
    until: datetime


async def root_causes(session: AsyncSession, since: datetime, until: datetime) -> RootCauses:
    counted = dict(
        (
            await session.execute(
                select(Incident.category, func.count())
                .where(Incident.opened_at >= since, Incident.opened_at < until)
                .group_by(Incident.category)
            )
        ).all()
    )
    planned = int(counted.get(Category.PLANNED.value, 0))
    # As in Llama 3's Table 5: shares are of the unexpected interruptions only.
    unexpected = sum(int(n) for c, n in counted.items() if c != Category.PLANNED.value)
    rows = []
    for category in Category:
        n = int(counted.get(category.value, 0))
        ref = LLAMA3_TABLE5.get(category)
        rows.append(
            RootCauseRow(
                category.value,
                n,
                None
                if category is Category.PLANNED
                else (100.0 * n / unexpected if unexpected else 0.0),
                ref[0] if ref else None,
                ref[1] if ref else None,
            )
        )
    rows.sort(key=lambda r: (-r.count, -(r.llama3_count or 0)))
    return RootCauses(rows, unexpected, planned, since, until)


def window(days: float, now: datetime) -> tuple[datetime, datetime]:
    return now - timedelta(days=days), now + timedelta(seconds=1)
