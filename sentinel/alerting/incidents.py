"""From an incident to alerts: one root-cause alert, plus per-host symptoms it will mute."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.alerting.config import RoutingConfig
from sentinel.alerting.model import AlertIn
from sentinel.alerting.notifiers.base import truncate
from sentinel.alerting.service import push_alerts
from sentinel.clock import Clock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Decision, Incident
from sentinel.incidents.service import IncidentChange
from sentinel.incidents.state import IncidentState
from sentinel.incidents.verdicts import verdict_of
from sentinel.remediation.decisions import DecisionStatus
from sentinel.triage.taxonomy import CATEGORIES, Category
from sentinel.triage.verdict import Verdict
from sentinel.wire.severity import Severity

CAUSE_ALERT = "SentinelIncident"
SYMPTOM_ALERT = "SentinelSymptom"
# A decision that could not be carried out (it failed, or was escalated after an attempt died):
# its own alert, since a changed annotation on a firing alert notifies nobody.
REMEDIATION_FAILED_ALERT = "SentinelRemediationFailed"
EVIDENCE_SHOWN = 20
# A cause's line is one record (bounded by the verdict), but a single line may be long.
CAUSE_LINE_MAX = 4000


def alert_severity(category: str) -> Severity:
    """The severity label of an incident's root-cause alert: its category's, in the table."""
    try:
        return CATEGORIES[Category(category)].alert_severity
    except ValueError:
        return Severity.WARNING


class SymptomLike(Protocol):
    """A symptom seen on one host (a triage ``Evidence`` fits)."""

    @property
    def host(self) -> str | None: ...

    @property
    def text(self) -> str: ...


def _evidence(verdict: Verdict) -> list[str]:
    return [
        f"{e.host}: {e.text}" if e.host and e.host not in e.text else e.text
        for e in verdict.evidence[:EVIDENCE_SHOWN]
        if e.text
    ]


def _cause_line(verdict: Verdict) -> dict[str, str] | None:
    """The first cause's raw line with its host, source and time (``notifiers.base.cause_line``
    reads it back)."""
    cause = next((e for e in verdict.evidence if e.role == "cause" and e.text), None)
    if cause is None:
        return None
    line = {"text": truncate(cause.text, CAUSE_LINE_MAX)}
    if cause.host:
        line["host"] = cause.host
    if cause.source:
        line["source"] = cause.source
    if cause.time:
        line["at"] = cause.time.isoformat()
    return line


def _decision_text(decision: Decision | None) -> str | None:
    if decision is None:
        return None
    text = f"{decision.action} ({decision.status})"
    if decision.exclude_hosts:
        text += ", exclude " + ", ".join(map(str, decision.exclude_hosts))
    if decision.checkpoint_step is not None:
        text += f", restart from checkpoint step {decision.checkpoint_step}"
    return f"{text}: {decision.reason}"


def alerts_for_incident(
    incident: Incident,
    symptoms: Sequence[SymptomLike] = (),
    *,
    decision: Decision | None = None,
) -> list[AlertIn]:
    """The root-cause alert (role="cause") and one symptom alert per other host (role="symptom").

    Push them again when the incident changes; a resolved incident's alerts carry ``ends_at``
    and so resolve their groups.
    """
    ends_at = incident.resolved_at if incident.state == IncidentState.resolved else None
    common = {
        "category": incident.category,
        "cluster": incident.cluster or "",
        "job": incident.job_id or "",
        "incident": str(incident.id),
    }
    cause_labels = {
        "alertname": CAUSE_ALERT,
        **common,
        "severity": alert_severity(incident.category).value,
        "host": incident.culprit_host or "",
        "gpu": incident.culprit_gpu or "",
        # No single culprit host: the fault is the cluster's (a switch, the fabric), and it
        # explains per-host timeouts across the cluster (see the default inhibit rules).
        "scope": "host" if incident.culprit_host else "cluster",
        "role": "cause",
    }
    verdict = verdict_of(incident)
    annotations: dict[str, Any] = {
        "summary": incident.reason,
        "confidence": incident.confidence,
        "rule": incident.rule,
        "evidence": _evidence(verdict),
    }
    cause = _cause_line(verdict)
    if cause:
        annotations["cause_line"] = cause
    decided = _decision_text(decision)
    if decided:
        annotations["decision"] = decided
    alerts = [
        AlertIn(
            labels={k: v for k, v in cause_labels.items() if v},
            annotations=annotations,
            starts_at=incident.opened_at,
            ends_at=ends_at,
            incident_id=incident.id,
        )
    ]
    stopped = (DecisionStatus.failed, DecisionStatus.escalated)
    if decision is not None and decision.error and decision.status in stopped:
        alerts.append(
            AlertIn(
                labels={
                    "alertname": REMEDIATION_FAILED_ALERT,
                    **{k: v for k, v in common.items() if v},
                    "severity": Severity.CRITICAL.value,
                    "role": "remediation",
                },
                annotations={
                    "summary": f"{decision.status}: {decision.error}",
                    "decision": decided,
                },
                starts_at=decision.updated_at,
                ends_at=ends_at,
                incident_id=incident.id,
            )
        )
    by_host: dict[str, list[str]] = {}
    for s in symptoms:
        if s.host and s.host != incident.culprit_host:
            by_host.setdefault(s.host, []).append(s.text)
    for host, texts in sorted(by_host.items()):
        labels = {
            "alertname": SYMPTOM_ALERT,
            **common,
            "severity": Severity.WARNING.value,
            "host": host,
            "role": "symptom",
        }
        alerts.append(
            AlertIn(
                labels={k: v for k, v in labels.items() if v},
                annotations={"summary": texts[0], "evidence": texts[:EVIDENCE_SHOWN]},
                starts_at=incident.opened_at,
                ends_at=ends_at,
                incident_id=incident.id,
            )
        )
    return alerts


class StateIncidentAlerts:
    """Incident stage: every change (re)states the incident's alerts, the cause with the decision
    made on it and one symptom per other host for inhibition to mute. It changes no incident."""

    def __init__(self, config: RoutingConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock

    async def __call__(
        self, sessions: async_sessionmaker[AsyncSession], change: IncidentChange
    ) -> list[IncidentChange]:
        async with unit_of_work(sessions) as session:
            incident = await session.get(Incident, change.incident.id)
            if incident is None:
                return []
            decision = await session.scalar(
                select(Decision).where(Decision.incident_id == incident.id)
            )
            alerts = alerts_for_incident(incident, verdict_of(incident).symptoms, decision=decision)
            await push_alerts(session, self._config, alerts, self._clock.now())
        return []
