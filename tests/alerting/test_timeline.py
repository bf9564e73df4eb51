"""Grouping, repeat, inhibition, silences, resolve and acknowledge, as timelines."""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import T0
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerting.timeline import Timeline, alert, sent
from sentinel.alerting import service
from sentinel.alerting.config import DEFAULT_ROUTES
from sentinel.clock import VirtualClock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Alert, AlertGroup, NotificationLog


@pytest.fixture
def tl(sessions: async_sessionmaker[AsyncSession], clock: VirtualClock) -> Timeline:
    return Timeline(sessions, clock)


async def _alerts(tl: Timeline) -> dict[str, Alert]:
    async with unit_of_work(tl.sessions) as s:
        return {a.labels["alertname"]: a for a in (await s.scalars(select(Alert))).all()}


async def _group(tl: Timeline, receiver: str = "team") -> AlertGroup:
    async with unit_of_work(tl.sessions) as s:
        return (await s.scalars(select(AlertGroup).where(AlertGroup.receiver == receiver))).one()


async def test_alerts_within_group_wait_make_one_notification(tl: Timeline) -> None:
    await tl.push(alert("A"), alert("B"))  # t=0
    await tl.run_until(5)
    await tl.push(alert("C", at=5))  # still inside group_wait
    await tl.run_until(25)
    assert tl.between(0, 25) == [sent(10, "team", "firing", "A", "B", "C")]
    # A late arrival waits for the group's next tick (group_interval 30 s), not group_wait.
    await tl.push(alert("D", at=25))
    await tl.run_until(60)
    assert tl.between(11, 60) == [sent(40, "team", "firing", "A", "B", "C", "D")]


async def test_unchanged_group_repeats_after_repeat_interval(tl: Timeline) -> None:
    await tl.push(alert("A"))
    await tl.run_until(300)
    # Ticks every 30 s from t=10; repeat_interval 2 m: first tick at or after t=130, then 250.
    assert tl.between(0, 300) == [
        sent(10, "team", "firing", "A"),
        sent(130, "team", "repeat", "A"),
        sent(250, "team", "repeat", "A"),
    ]


async def test_routes_continue_to_a_second_receiver(tl: Timeline) -> None:
    await tl.push(alert("Xid", severity="critical"), alert("Warn", severity="warning"))
    await tl.run_until(15)
    assert sorted(tl.between(0, 15), key=repr) == [
        sent(10, "pager", "firing", "Xid"),
        sent(10, "team", "firing", "Warn", "Xid"),
    ]


async def test_root_cause_inhibits_its_symptoms(tl: Timeline) -> None:
    await tl.push(
        alert("Cause", role="cause", incident="i1"),
        alert("Symptom1", role="symptom", incident="i1", host="h1"),
        alert("Symptom2", role="symptom", incident="i1", host="h2"),
        alert("OtherIncident", role="symptom", incident="i2", host="h3"),
    )
    await tl.run_until(15)
    assert tl.between(0, 15) == [sent(10, "team", "firing", "Cause", "OtherIncident")]
    alerts = await _alerts(tl)
    cause = alerts["Cause"].fingerprint
    assert alerts["Symptom1"].muted_by == f"inhibited_by:{cause}"
    assert alerts["Symptom2"].muted_by == f"inhibited_by:{cause}"
    assert alerts["Cause"].muted_by is None and alerts["OtherIncident"].muted_by is None
    # When the cause resolves, its symptoms are no longer explained: they are announced.
    await tl.push(alert("Cause", role="cause", incident="i1", ends=20))
    tl.clock.advance(0)
    await tl.run_until(45)
    assert tl.between(16, 45) == [
        sent(40, "team", "firing", "OtherIncident", "Symptom1", "Symptom2")
    ]
    assert (await _alerts(tl))["Symptom1"].muted_by is None


async def test_silence_mutes_until_it_expires(tl: Timeline) -> None:
    async with unit_of_work(tl.sessions) as s:
        silence = await service.create_silence(
            s, ['host=~"h[12]"'], "alice", "replacing cables", T0, T0 + timedelta(minutes=1), T0
        )
    await tl.push(alert("A", host="h1"), alert("B", host="h2"), alert("C", host="h9"))
    await tl.run_until(15)
    assert tl.between(0, 15) == [sent(10, "team", "firing", "C")]
    assert (await _alerts(tl))["A"].muted_by == f"silence:{silence.id}"
    # The silence ends at t=60: the next tick (t=70) announces the alerts it was hiding.
    await tl.run_until(75)
    assert tl.between(16, 75) == [sent(70, "team", "firing", "A", "B", "C")]
    assert (await _alerts(tl))["A"].muted_by is None


async def test_expiring_a_silence_early_unmutes_at_the_next_tick(tl: Timeline) -> None:
    async with unit_of_work(tl.sessions) as s:
        silence = await service.create_silence(
            s,
            [{"name": "alertname", "value": "A"}],
            "bob",
            "known",
            T0,
            T0 + timedelta(hours=1),
            T0,
        )
    await tl.push(alert("A"))
    await tl.run_until(30)
    assert tl.between(0, 30) == []
    async with unit_of_work(tl.sessions) as s:
        await service.expire_silence(s, silence.id, tl.clock.now())
    await tl.run_until(45)
    assert tl.between(31, 45) == [sent(40, "team", "firing", "A")]


async def test_resolved_is_announced_once(tl: Timeline) -> None:
    await tl.push(alert("A"), alert("B"))
    await tl.run_until(20)
    await tl.push(alert("A", ends=20))
    await tl.run_until(45)
    assert tl.between(0, 45) == [
        sent(10, "team", "firing", "A", "B"),
        sent(40, "team", "firing", "B"),  # partly resolved: the content changed
    ]
    await tl.push(alert("B", ends=45))
    await tl.run_until(200)
    assert tl.between(46, 200) == [sent(70, "team", "resolved")]
    group = await _group(tl)
    assert group.state == "resolved" and group.next_flush_at is None
    # A new alert in a resolved group starts a new cycle: group_wait again.
    await tl.push(alert("E", at=200))
    await tl.run_until(215)
    assert tl.between(201, 215) == [sent(210, "team", "firing", "E")]


async def test_never_announced_group_resolves_quietly(tl: Timeline) -> None:
    await tl.push(alert("Blip", ends=5))
    await tl.run_until(60)
    assert tl.between(0, 60) == []


async def test_acknowledged_group_stops_repeating_until_it_fires_again(tl: Timeline) -> None:
    await tl.push(alert("A"))
    await tl.run_until(20)
    group = await _group(tl)
    async with unit_of_work(tl.sessions) as s:
        await service.acknowledge(s, group.id, "carol", tl.clock.now())
    await tl.run_until(400)
    # The ack itself is announced (PagerDuty acknowledges); no repeats follow it.
    assert tl.between(0, 400) == [
        sent(10, "team", "firing", "A"),
        sent(20, "team", "acknowledged", "A"),
    ]
    await tl.push(alert("B", at=400))  # fires again: a new alert in the group
    await tl.run_until(440)
    # The group has ticked every 30 s since the ack at t=20: the next tick is t=410.
    assert tl.between(401, 440) == [sent(410, "team", "firing", "A", "B")]
    await tl.push(alert("A", ends=440), alert("B", ends=440))
    await tl.run_until(470)
    assert tl.between(441, 470) == [sent(470, "team", "resolved")]


async def test_one_acknowledgement_answers_every_receiver_of_the_incident(
    sessions: async_sessionmaker[AsyncSession], clock: VirtualClock
) -> None:
    # Critical, so Slack and PagerDuty both have it; another incident's groups stay unacked.
    tl = Timeline(sessions, clock, routes=DEFAULT_ROUTES.read_text())
    await tl.push(
        alert("Xid", severity="critical", role="cause", cluster="c1", incident="i1"),
        alert("Other", severity="critical", role="cause", cluster="c1", incident="i2"),
    )
    await tl.run_until(15)
    async with unit_of_work(tl.sessions) as s:
        groups = (await s.scalars(select(AlertGroup))).all()
        slack = next(g for g in groups if g.receiver == "slack" and g.labels["incident"] == "i1")
        acked = await service.acknowledge(s, slack.id, "erin", tl.clock.now())
    assert sorted(g.receiver for g in acked) == ["pagerduty", "slack"]
    await tl.run_until(600)
    acks = [x for x in tl.between(15, 600) if x.kind == "acknowledged"]
    assert sorted(acks, key=repr) == [
        sent(15, "pagerduty", "acknowledged", "Xid"),
        sent(15, "slack", "acknowledged", "Xid"),
    ]
    async with unit_of_work(tl.sessions) as s:
        other = (await s.scalars(select(AlertGroup))).all()
    assert {g.receiver for g in other if g.labels["incident"] == "i2" and g.acked_by is None} == {
        "pagerduty",
        "slack",
    }


async def test_every_attempt_is_in_the_notification_log(tl: Timeline) -> None:
    await tl.push(alert("A"))
    await tl.run_until(15)
    async with unit_of_work(tl.sessions) as s:
        rows = (await s.scalars(select(NotificationLog))).all()
    assert [(r.receiver, r.kind, r.status, r.alerts) for r in rows] == [
        ("team", "firing", "sent", 1)
    ]


async def test_cluster_wide_network_fault_mutes_per_host_timeouts_in_that_cluster(
    sessions: async_sessionmaker[AsyncSession], clock: VirtualClock
) -> None:
    tl = Timeline(sessions, clock, routes=DEFAULT_ROUTES.read_text())
    net, nccl = "network_switch_cable", "nccl_watchdog_timeout"
    await tl.push(
        alert(
            "SwitchDown",
            category=net,
            scope="cluster",
            role="cause",
            cluster="c1",
            incident="n1",
            severity="critical",
        ),
        alert("Timeout", category=nccl, role="cause", cluster="c1", incident="t1", host="h5"),
        alert("Timeout", category=nccl, role="cause", cluster="c2", incident="t2", host="h9"),
    )
    await tl.run_until(15)  # default group_wait is 10 s
    assert sorted(tl.between(0, 15), key=repr) == [
        sent(10, "pagerduty", "firing", "SwitchDown"),
        sent(10, "slack", "firing", "SwitchDown"),
        sent(10, "slack", "firing", "Timeout"),  # c2's timeout: another cluster
    ]
    async with unit_of_work(tl.sessions) as s:
        muted = {
            a.labels["cluster"]: a.muted_by
            for a in (await s.scalars(select(Alert))).all()
            if a.labels["alertname"] == "Timeout"
        }
    assert muted["c1"] is not None and muted["c1"].startswith("inhibited_by:")
    assert muted["c2"] is None


async def test_group_acknowledged_before_its_first_message_stays_quiet(tl: Timeline) -> None:
    await tl.push(alert("A"))
    await tl.run_until(3)
    group = await _group(tl)
    async with unit_of_work(tl.sessions) as s:
        await service.acknowledge(s, group.id, "dave", tl.clock.now())
    await tl.run_until(300)
    await tl.push(alert("A", ends=300))
    await tl.run_until(400)
    assert tl.between(0, 400) == []
