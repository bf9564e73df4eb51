"""An incident's verdict as the one typed value its readers use: remediation, alerting, the
dashboard and the API read ``verdict_of(incident)``, never the stored JSON."""

from __future__ import annotations

from sentinel.db.models import Incident
from sentinel.triage.verdict import Verdict


def verdict_of(incident: Incident) -> Verdict:
    """The verdict stored with the incident. Its headline defaults to the incident's own
    columns, so that a row written without a full verdict (a simulated one) still reads as one."""
    headline = {
        "category": incident.category,
        "confidence": incident.confidence,
        "culprit_host": incident.culprit_host,
        "culprit_gpu": incident.culprit_gpu,
        "culprit_rank": incident.culprit_rank,
        "reason": incident.reason,
        "rule": incident.rule,
    }
    return Verdict.model_validate({**headline, **(incident.verdict or {})})
