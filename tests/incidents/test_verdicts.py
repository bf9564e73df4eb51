"""An incident's verdict reads back as the typed value triage stored."""

from __future__ import annotations

from typing import Any

from alerting.incident_builders import xid79_incident

from sentinel.incidents.verdicts import verdict_of
from sentinel.triage.taxonomy import Category


def test_the_stored_verdict_reads_back_typed() -> None:
    verdict = verdict_of(xid79_incident())
    assert verdict.category is Category.FAULTY_GPU
    [cause] = verdict.evidence
    assert (cause.role, cause.host, cause.xid) == ("cause", "node1377", 79)


def test_a_row_without_a_full_verdict_reads_as_its_headline() -> None:
    incident = xid79_incident()
    simulated: dict[str, Any] = {"simulated": True, "signature": "xid79"}
    incident.verdict = simulated  # as `sentinel simulate` writes its incidents
    verdict = verdict_of(incident)
    assert (verdict.category, verdict.culprit_host, verdict.rule) == (
        Category.FAULTY_GPU,
        "node1377",
        "FaultyGpuOnFatalXid",
    )
    assert verdict.evidence == [] and verdict.reason == incident.reason
