"""Restart in place (issue 17 item 4): a transient fault with no host to blame is answered by
the launcher restarting the ranks on the same allocation: no requeue; the advice says so while
the incident is open; once per job in the window."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from builders import obs
from conftest import auth

from remediation.test_remediation import TRACEBACK
from remediation.timeline import HOSTS, Timeline
from sentinel.knowledge.taxonomy import Category
from sentinel.remediation.policy import (
    DEFAULT_POLICY,
    Action,
    PastDecision,
    RemediationContext,
    RestartInPlaceWhenTransient,
)
from sentinel.settings import RemediationSettings

ON = RemediationSettings(in_place=True)


def ctx(**kw: Any) -> RemediationContext:
    values: dict[str, Any] = {
        "category": Category.NCCL_WATCHDOG_TIMEOUT,
        "culprit_host": None,
        "culprit_gpu": None,
        "confidence": 0.6,
        "xids": (),
        "signature": None,
        "job_id": "job-1",
        "job_hosts": 4,
        "checkpoint_step": 100,
        "current_step": 120,
        "past": (),
        "drains_last_hour": 0,
        "spare_hosts": 2,
        "settings": ON,
    }
    return RemediationContext(**{**values, **kw})


def test_the_rule_restarts_in_place_only_what_is_transient_and_only_once() -> None:
    rule = RestartInPlaceWhenTransient()
    p = rule.propose(ctx())
    assert p is not None and p.action == Action.restart_in_place
    assert "same allocation" in p.reason and "step 100" in p.reason
    assert rule.propose(ctx(settings=RemediationSettings())) is None  # off by default
    assert rule.propose(ctx(culprit_host="node2")) is None  # a host to blame: exclude it
    assert rule.propose(ctx(category=Category.FAULTY_GPU)) is None
    before = PastDecision(
        "nccl_watchdog_timeout", "restart_in_place", "done", datetime.now(UTC), None
    )
    assert rule.propose(ctx(past=(before,))) is None  # back again: requeue this time
    assert DEFAULT_POLICY.decide(ctx(past=(before,))).action == Action.restart
    assert DEFAULT_POLICY.decide(ctx(category=Category.SOFTWARE_BUG)).action == (
        Action.restart_in_place
    )


async def test_a_crash_is_restarted_in_place_without_a_requeue(tl: Timeline) -> None:
    tl.ctx.remediation._settings = tl.ctx.settings.remediation.model_copy(update={"in_place": True})
    tl.clock.advance(60)
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
    [d] = await tl.decisions()
    assert (d.action, d.status, d.rule) == (
        "restart_in_place",
        "done",
        "RestartInPlaceWhenTransient",
    )
    assert [s["op"] for s in d.outcome["steps"]] == ["in_place"]
    assert await tl.requeues() == 0  # the allocation is kept
    r = await tl.client.get("/api/v1/jobs/job-1/advice", headers=auth(tl.tokens["agent"]))
    advice = r.json()
    assert advice["restart_in_place"] is True and advice["restart_decision"] == str(d.id)
    assert "same allocation" in advice["restart_reason"]

    # The launcher restarted the ranks: the job trains again, the incident resolves, and the
    # advice no longer says to restart.
    await tl.down_then_back()
    [incident] = await tl.incidents()
    assert incident.state == "resolved"
    r = await tl.client.get("/api/v1/jobs/job-1/advice", headers=auth(tl.tokens["viewer"]))
    assert r.json()["restart_in_place"] is False
