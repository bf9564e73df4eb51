"""The incident stages: decide, then alert, for each committed change in order; a change a
stage makes goes through the stages after it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from builders import at, xid
from conftest import auth
from remediation.timeline import Timeline
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.db.engine import unit_of_work
from sentinel.db.models import Alert, Decision, Incident
from sentinel.incidents.service import ChangeKind, IncidentChange
from sentinel.pipeline import IncidentStages, Stage

Sessions = async_sessionmaker[AsyncSession]


def _change(n: int, kind: ChangeKind = "opened") -> IncidentChange:
    return IncidentChange(Incident(id=uuid.UUID(int=n)), kind)


class Recorder:
    """Stages that note what they saw; 'decide' makes a follow-up change when told to."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str]] = []

    def stage(self, name: str, makes: ChangeKind | None = None, fails: bool = False) -> Stage:
        async def run(sessions: Sessions, change: IncidentChange) -> Sequence[IncidentChange]:
            self.seen.append((name, change.incident.id.int, change.kind))
            if fails:
                raise RuntimeError(f"{name} broke")
            if makes and change.kind == "opened":
                return [IncidentChange(change.incident, makes)]
            return []

        return run


async def test_each_change_goes_through_the_stages_in_order_with_its_follow_ups() -> None:
    r = Recorder()
    stages = IncidentStages(
        None,  # type: ignore[arg-type]
        decide=r.stage("decide", makes="mitigating"),
        alert=r.stage("alert"),
    )
    await stages.run([_change(1), _change(2, "resolved")])
    assert r.seen == [
        ("decide", 1, "opened"),
        ("alert", 1, "opened"),
        ("alert", 1, "mitigating"),  # made by 'decide': only the stages after it
        ("decide", 2, "resolved"),
        ("alert", 2, "resolved"),
    ]


async def test_a_failing_stage_keeps_neither_later_stages_nor_changes_from_theirs() -> None:
    r = Recorder()
    stages = IncidentStages(
        None,  # type: ignore[arg-type]
        decide=r.stage("decide", fails=True),
        alert=r.stage("alert"),
    )
    await stages.run([_change(1), _change(2)])
    assert r.seen == [
        ("decide", 1, "opened"),
        ("alert", 1, "opened"),
        ("decide", 2, "opened"),
        ("alert", 2, "opened"),
    ]


class Witness:
    """Wraps the app's real stages: what was in the database when each began."""

    def __init__(self, stages: IncidentStages) -> None:
        self.seen: list[tuple[str, str, str | None, str | None]] = []
        decide, alert = stages.stages
        stages.stages = (self.wrap("decide", decide), self.wrap("alert", alert))

    def wrap(self, name: str, stage: Stage) -> Stage:
        async def run(sessions: Sessions, change: IncidentChange) -> Sequence[IncidentChange]:
            async with unit_of_work(sessions) as s:
                incident_id = change.incident.id
                decided = await s.scalar(
                    select(Decision.status).where(Decision.incident_id == incident_id)
                )
                alerts = (
                    await s.scalars(select(Alert).where(Alert.incident_id == incident_id))
                ).all()
            shown = next(
                (a.annotations.get("decision") for a in alerts if a.labels["role"] == "cause"),
                None,
            )
            self.seen.append((name, change.kind, decided, shown))
            return await stage(sessions, change)

        return run


async def test_the_decision_is_recorded_before_the_alert_is_stated_and_the_alert_carries_it(
    tl: Timeline,
) -> None:
    witness = Witness(tl.ctx.stages)
    tl.clock.advance(10)  # t=10 s: node3 loses a GPU
    await tl.post("node3", [xid(79, gpu=2, when=tl.clock.now())])
    changes = await tl.ctx.triage_worker.run_once()
    assert [c.kind for c in changes] == ["opened"]
    await tl.ctx.stages.run(changes)
    decided = "exclude_and_restart (approved), exclude node3, restart from checkpoint step 100"
    assert witness.seen == [
        ("decide", "opened", None, None),  # nothing decided, nothing alerted yet
        ("alert", "opened", "approved", None),  # decided; the alert is stated next
    ]
    [alert] = await _cause_alerts(tl)
    assert alert.annotations["decision"].startswith(decided)
    # The remediation loop carries it out: 'mitigating', and the alert says it is done.
    await tl.ctx.stages.run(await tl.ctx.remediation.run_due(tl.ctx.sessions))
    assert witness.seen[2:] == [
        ("decide", "mitigating", "done", alert.annotations["decision"]),
        ("alert", "mitigating", "done", alert.annotations["decision"]),
    ]
    [alert] = await _cause_alerts(tl)
    assert alert.annotations["decision"].startswith("exclude_and_restart (done)")


async def test_a_mitigating_change_made_by_the_decision_reaches_the_alerts(tl: Timeline) -> None:
    r = await tl.client.post(
        "/api/v1/maintenance",
        headers=auth(tl.tokens["operator"]),
        json={
            "hosts": ["node2"],
            "starts_at": at(0).isoformat(),
            "ends_at": at(3600).isoformat(),
            "reason": "BIOS update",
        },
    )
    assert r.status_code == 201, r.text
    witness = Witness(tl.ctx.stages)
    tl.clock.advance(120)
    await tl.watchdog()  # node2 went quiet for its reboot
    changes = await tl.ctx.triage_worker.run_once()
    await tl.ctx.stages.run(changes)
    assert [(stage, kind, decided) for stage, kind, decided, _ in witness.seen] == [
        ("decide", "opened", None),
        ("alert", "opened", "noop"),
        ("alert", "mitigating", "noop"),  # the decision's own change, after the decision
    ]
    [incident] = await tl.incidents()
    assert incident.state == "mitigating"
    [alert] = await _cause_alerts(tl)
    assert alert.annotations["decision"].startswith("none (noop)")


async def test_an_operator_resolve_resolves_the_alerts(tl: Timeline) -> None:
    tl.clock.advance(10)
    line = "NVRM: Xid (PCI:0000:18:00): 79, pid=2711, name=python, GPU has fallen off the bus."
    seen = tl.clock.now()
    await tl.post("node1", [xid(79, gpu=0, when=seen, message=line, source="kernel_log")])
    await tl.loops()
    [incident] = await tl.incidents()
    r = await tl.client.get(f"/api/v1/incidents/{incident.id}", headers=auth(tl.tokens["viewer"]))
    [cause] = r.json()["verdict"]["evidence"]
    # The line as the host printed it, with where and when it was read.
    assert (cause["text"], cause["source"], cause["host"]) == (line, "kernel_log", "node1")
    assert cause["time"] == seen.isoformat().replace("+00:00", "Z")
    r = await tl.client.post(
        f"/api/v1/incidents/{incident.id}/resolve",
        headers=auth(tl.tokens["operator"]),
        json={"reason": "GPU swapped, job running"},
    )
    assert r.status_code == 200, r.text
    [alert] = await _cause_alerts(tl)
    assert alert.state == "resolved" and alert.ends_at == tl.clock.now()


async def _cause_alerts(tl: Timeline) -> list[Alert]:
    async with unit_of_work(tl.ctx.sessions) as s:
        alerts = (await s.scalars(select(Alert))).all()
    return [a for a in alerts if a.labels.get("role") == "cause"]
