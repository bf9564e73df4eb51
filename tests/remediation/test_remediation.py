"""Remediation timelines on the virtual clock, through the real ingest and triage path."""

from __future__ import annotations

from builders import at, obs, xid
from conftest import auth
from sqlalchemy import func, select

from remediation.timeline import HOSTS, Timeline
from sentinel.db.engine import unit_of_work
from sentinel.db.models import OUT_OF_SERVICE, AuditEntry, Host, Incident


async def test_xid79_drains_the_host_and_restarts_without_it(tl: Timeline) -> None:
    tl.clock.advance(10)
    await tl.post(
        "node3",
        [
            xid(
                79,
                gpu=2,
                when=tl.clock.now(),
                pci_bus_id="00000000:5D:00.0",
                message="NVRM: Xid (PCI:0000:5d:00): 79, pid=1, name=python, "
                "GPU has fallen off the bus.",
            )
        ],
    )
    await tl.loops()
    [d] = await tl.decisions()
    assert (d.action, d.status, d.exclude_hosts) == ("exclude_and_restart", "done", ["node3"])
    assert d.rule == "ExcludeHostOnHardwareFault"
    assert d.checkpoint_step == 100 and d.steps_lost == 5
    assert d.outcome["host_action"] == "RESTART_BM"
    assert [s["op"] for s in d.outcome["steps"]] == ["drain", "requeue", "reboot"]
    assert all(s["ok"] for s in d.outcome["steps"])
    assert "node3" not in await tl.job_nodes() and len(await tl.job_nodes()) == 4
    assert await tl.drained("node3")
    [incident] = await tl.incidents()
    assert incident.state == "mitigating"
    async with unit_of_work(tl.ctx.sessions) as s:
        host = await s.get(Host, "node3")
        # Rebooting (test_repairs.py: it returns by itself once back and healthy).
        assert host is not None and host.drain_state == "repairing"
        assert "RESTART_BM" in (host.drain_reason or "")
    r = await tl.client.get(
        "/api/v1/hosts/excluded?format=hostlist", headers=auth(tl.tokens["viewer"])
    )
    assert r.text.strip() == "node3"

    # The job trains again on the others: the incident resolves, and a second pass decides
    # nothing new (exactly once per incident).
    await tl.down_then_back()
    [incident] = await tl.incidents()
    assert incident.state == "resolved"
    assert len(await tl.decisions()) == 1 and await tl.requeues() == 1


TRACEBACK = """Traceback (most recent call last):
  File "/workspace/train.py", line 412, in <module>
    main()
  File "/workspace/train.py", line 398, in main
    loss = model(batch)
  File "/workspace/model.py", line 77, in forward
    h = self.proj(x).view(b, s, self.heads, -1)
RuntimeError: shape '[8, 4096, 64, -1]' is invalid for input of size 33554431"""


async def test_crash_loop_escalates_after_the_allowed_restarts(tl: Timeline) -> None:
    for attempt in range(4):
        tl.clock.advance(600)
        await tl.beats()
        for h, host in enumerate(HOSTS[:4]):
            await tl.post(
                host,
                [
                    obs(
                        "log",
                        tl.clock.now(),
                        source="application",
                        message=TRACEBACK,
                        rank=h * 8,
                        job_id="job-1",
                    )
                ],
            )
        await tl.loops()
        # the failed job comes back (restarted, or by hand) and trains a little
        await tl.down_then_back(60)
        incidents = await tl.incidents()
        assert len(incidents) == attempt + 1, [i.category for i in incidents]
    decisions = await tl.decisions()
    assert [d.action for d in decisions] == ["restart", "escalate", "escalate", "escalate"]
    assert decisions[1].rule == "EscalateRepeatedSoftwareBug"
    assert await tl.requeues() == 1


async def test_planned_maintenance_needs_nothing(tl: Timeline) -> None:
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
    tl.clock.advance(120)
    await tl.watchdog()  # node2 went quiet for its reboot
    await tl.loops()
    incidents = await tl.incidents()
    assert [(i.category, i.state) for i in incidents] == [("planned", "mitigating")]
    [d] = await tl.decisions()
    assert (d.action, d.status) == ("none", "noop")
    assert await tl.requeues() == 0
    await tl.down_then_back()  # the node is back from its BIOS update, the job trains again
    assert [(i.category, i.state) for i in await tl.incidents()] == [("planned", "resolved")]


async def test_operator_approval_mode(tl: Timeline) -> None:
    tl.ctx.remediation._settings = tl.ctx.settings.remediation.model_copy(
        update={"mode": "approve"}
    )
    tl.clock.advance(10)
    await tl.post("node1", [xid(79, gpu=0, when=tl.clock.now())])
    await tl.loops()
    [d] = await tl.decisions()
    assert d.status == "proposed" and await tl.requeues() == 0
    url = f"/api/v1/decisions/{d.id}/approve"
    assert (
        await tl.client.post(url, json={}, headers=auth(tl.tokens["viewer"]))
    ).status_code == 403
    assert (await tl.client.post(url, json={})).status_code == 401
    r = await tl.client.post(url, json={"comment": "go"}, headers=auth(tl.tokens["operator"]))
    assert r.status_code == 200 and r.json()["status"] == "approved"
    r = await tl.client.post(url, json={}, headers=auth(tl.tokens["operator"]))
    assert r.status_code == 409
    await tl.loops()
    [d] = await tl.decisions()
    assert d.status == "done" and await tl.requeues() == 1
    async with unit_of_work(tl.ctx.sessions) as s:
        actions = (await s.scalars(select(AuditEntry.action))).all()
    assert "decision.approve" in actions and "host.drain" in actions


async def test_pull_executor_and_ack(tl: Timeline) -> None:
    tl.ctx.remediation._settings = tl.ctx.settings.remediation.model_copy(
        update={"executor": "pull"}
    )
    tl.clock.advance(10)
    await tl.post("node4", [xid(48, gpu=1, when=tl.clock.now())])
    await tl.loops()
    r = await tl.client.get("/api/v1/decisions?status=pending", headers=auth(tl.tokens["viewer"]))
    [d] = r.json()
    assert d["action"] == "exclude_and_restart" and d["exclude_hosts"] == ["node4"]
    assert await tl.requeues() == 0  # the puller, not Sentinel, carries it out
    r = await tl.client.post(
        f"/api/v1/decisions/{d['id']}/ack",
        headers=auth(tl.tokens["operator"]),
        json={"outcome": "done", "detail": "requeued by k8s operator"},
    )
    assert r.status_code == 200 and r.json()["status"] == "done"


async def test_override_and_repair(tl: Timeline) -> None:
    tl.ctx.remediation._settings = tl.ctx.settings.remediation.model_copy(
        update={"mode": "approve"}
    )
    tl.clock.advance(10)
    await tl.post("node2", [xid(79, gpu=0, when=tl.clock.now())])
    await tl.loops()
    [d] = await tl.decisions()
    r = await tl.client.post(
        f"/api/v1/decisions/{d.id}/override",
        headers=auth(tl.tokens["operator"]),
        json={"action": "exclude_and_restart", "exclude_hosts": [], "reason": "xyz"},
    )
    assert r.status_code == 422 and "exclude_hosts" in r.json()["detail"]
    r = await tl.client.post(
        f"/api/v1/decisions/{d.id}/override",
        headers=auth(tl.tokens["operator"]),
        json={
            "action": "exclude_and_restart",
            "exclude_hosts": ["node2", "node3"],
            "reason": "node3 shares the bad NVSwitch tray",
        },
    )
    assert r.status_code == 200 and r.json()["rule"] == "OperatorOverride"
    await tl.loops()
    assert await tl.drained("node2") and await tl.drained("node3")
    r = await tl.client.post(
        "/api/v1/hosts/node2/repaired",
        headers=auth(tl.tokens["operator"]),
        json={"comment": "GPU swapped"},
    )
    assert r.status_code == 200 and r.json()["drain_state"] == "none"
    assert not await tl.drained("node2")
    r = await tl.client.get("/api/v1/hosts/excluded", headers=auth(tl.tokens["viewer"]))
    assert [h["id"] for h in r.json()] == ["node3"]


async def test_drain_cap_stops_a_fleet_wide_drain(tl: Timeline) -> None:
    tl.ctx.remediation._settings = tl.ctx.settings.remediation.model_copy(
        update={"max_drains_per_hour": 1}
    )
    tl.clock.advance(10)
    await tl.post("node1", [xid(79, gpu=0, when=tl.clock.now())])
    await tl.loops()
    tl.clock.advance(60)
    async with unit_of_work(tl.ctx.sessions) as s:  # the first incident is over
        for i in (await s.scalars(select(Incident))).all():
            await tl.ctx.triage.transition(s, i, "resolved", "test", "test")
    tl.clock.advance(5)
    await tl.post("node2", [xid(79, gpu=0, when=tl.clock.now())])
    await tl.loops()
    decisions = await tl.decisions()
    assert [d.action for d in decisions] == ["exclude_and_restart", "escalate"]
    assert decisions[1].rule == "CapDrainsPerHour"
    async with unit_of_work(tl.ctx.sessions) as s:
        drained = await s.scalar(
            select(func.count()).select_from(Host).where(Host.drain_state.in_(OUT_OF_SERVICE))
        )
    assert drained == 1


async def test_no_spare_host_escalates_instead_of_shrinking_the_job(tl: Timeline) -> None:
    tl.fake.submit("other-job", 2)  # node5 and node6 busy: nothing left to replace node3
    tl.clock.advance(10)
    await tl.post("node3", [xid(79, gpu=2, when=tl.clock.now())])
    await tl.loops()
    [d] = await tl.decisions()
    assert (d.action, d.rule, d.exclude_hosts) == ("escalate", "WaitWhenNoSpareHost", ["node3"])
    assert await tl.requeues() == 0
