"""Incidents and symptoms as triage would hand them to the alert path."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from builders import T0

from sentinel.db.models import Incident
from sentinel.triage.taxonomy import Category
from sentinel.triage.verdict import Evidence, Verdict


@dataclass(frozen=True)
class Symptom:
    host: str | None
    text: str


def xid79_incident(n: int = 1, cluster: str = "rsc1") -> Incident:
    return Incident(
        id=uuid.UUID(int=n),
        job_id=f"llama-405b-{n}",
        cluster=cluster,
        state="open",
        category="faulty_gpu",
        confidence=0.97,
        culprit_host="node1377",
        culprit_gpu="3",
        culprit_rank=11016,
        rule="FaultyGpuOnFatalXid",
        reason="GPU 3 on node1377 fell off the bus (Xid 79); 2,047 peers timed out waiting for it",
        verdict=Verdict(
            category=Category.FAULTY_GPU,
            confidence=0.97,
            culprit_host="node1377",
            culprit_gpu="3",
            culprit_rank=11016,
            reason="GPU 3 on node1377 fell off the bus (Xid 79)",
            rule="FaultyGpuOnFatalXid",
            evidence=[
                Evidence(
                    text="NVRM: Xid (PCI:0000:9b:00): 79, pid=0, GPU has fallen off the bus.",
                    pattern=None,
                    family="xid",
                    role="cause",
                    host="node1377",
                    event_id=None,
                    xid=79,
                )
            ],
        ).model_dump(mode="json"),
        opened_at=T0,
        detected_at=T0,
        updated_at=T0,
        resolved_at=None,
    )


def peer_timeouts(hosts: int = 2048) -> list[Symptom]:
    return [
        Symptom(f"node{i:04d}", "Watchdog caught collective operation timeout: WorkNCCL(...)")
        for i in range(hosts)
        if f"node{i:04d}" != "node1377"
    ]
