"""Rolling a crash loop back to the code version that trained (issue 17): the job's heartbeats
say which version runs; version A wrote the durable checkpoint, version B was deployed at a
restart and fails with the same software error twice; the second time the job restarts from
its checkpoint on A (the launcher in place with SENTINEL_CODE_VERSION=A, else a requeue that
names A), once; the same error on A is escalated as any crash loop."""

from __future__ import annotations

from builders import obs
from conftest import auth

from remediation.test_remediation import TRACEBACK
from remediation.timeline import HOSTS, Timeline
from sentinel.db.models import Decision
from sentinel.web.routes import TOKEN_COOKIE

CHECKPOINT = 110  # A's (the timeline's ranks checkpointed at 100 before saying a version)


def _in_place(tl: Timeline, on: bool) -> None:
    tl.ctx.remediation._settings = tl.ctx.settings.remediation.model_copy(update={"in_place": on})


async def _crash(tl: Timeline) -> Decision:
    """Every rank's training log shows the same traceback; the decision made for it."""
    before = len(await tl.decisions())
    tl.clock.advance(60)
    for h, host in enumerate(HOSTS[:4]):
        await tl.post(
            host,
            [obs("log", tl.clock.now(), source="application", message=TRACEBACK, rank=h * 8,
                 job_id="job-1")],
        )  # fmt: skip
    await tl.loops()
    decisions = await tl.decisions()
    assert len(decisions) == before + 1
    return decisions[-1]


async def _trains(tl: Timeline, version: str) -> None:
    """The ranks advance on this version (from A's checkpoint); the open incident resolves."""
    for _ in range(3):
        tl.clock.advance(10)
        await tl.beats(code_version=version, checkpoint_step=CHECKPOINT)
        await tl.watchdog()
        await tl.loops()
    assert all(i.state == "resolved" for i in await tl.incidents())


async def _ack(tl: Timeline, d: Decision) -> None:
    r = await tl.client.post(
        f"/api/v1/decisions/{d.id}/ack",
        json={"outcome": "done", "detail": "restarted: run 2"},
        headers=auth(tl.tokens["agent"]),
    )
    assert r.status_code == 200 and r.json()["status"] == "done", r.text


async def _advice(tl: Timeline) -> dict[str, object]:
    r = await tl.client.get("/api/v1/jobs/job-1/advice", headers=auth(tl.tokens["agent"]))
    return dict(r.json())


async def _b_deployed_after_a_trained(tl: Timeline) -> None:
    tl.clock.advance(60)
    await tl.beats(code_version="A", checkpoint_step=CHECKPOINT)  # A checkpoints
    tl.clock.advance(60)
    await tl.beats(code_version="B", checkpoint_step=CHECKPOINT)  # restarted from it
    r = await tl.client.get("/api/v1/jobs/job-1", headers=auth(tl.tokens["viewer"]))
    assert (r.json()["code_version"], r.json()["trained_version"]) == ("B", "A")


async def test_the_launcher_rolls_a_crash_loop_back_to_the_version_that_trained(
    tl: Timeline,
) -> None:
    _in_place(tl, True)
    await _b_deployed_after_a_trained(tl)
    first = await _crash(tl)
    assert (first.action, first.status) == ("restart_in_place", "awaiting_ack")
    await _ack(tl, first)
    await _trains(tl, "B")

    d = await _crash(tl)  # the same error again on B
    assert (d.action, d.status, d.rule) == (
        "roll_back",
        "awaiting_ack",
        "RollBackACrashLoopToTheVersionThatTrained",
    ), d.reason
    assert d.outcome["code_version"] == "A" and "on code version B" in d.reason
    assert [s["op"] for s in d.outcome["steps"]] == ["in_place"]
    assert "on code version A (SENTINEL_CODE_VERSION)" in d.outcome["steps"][0]["output"]
    advice = await _advice(tl)
    assert (advice["restart_in_place"], advice["restart_decision"]) == (True, str(d.id))
    assert (advice["restart_code_version"], advice["code_version"]) == ("A", "A")
    r = await tl.client.get(f"/api/v1/decisions/{d.id}", headers=auth(tl.tokens["viewer"]))
    assert r.json()["code_version"] == "A"
    # The dashboard's decision view names it too.
    page = await tl.client.get(
        f"/incidents/{d.incident_id}", headers={"Cookie": f"{TOKEN_COOKIE}={tl.tokens['viewer']}"}
    )
    assert 'on code version <b class="mono">A</b>' in page.text
    await _ack(tl, d)
    assert (await _advice(tl))["restart_in_place"] is False
    assert await tl.requeues() == 0  # the allocation kept both times
    await _trains(tl, "A")

    # The same error on A: not the new version's; a crash loop, escalated as before.
    last = await _crash(tl)
    assert (last.action, last.rule) == ("escalate", "EscalateRepeatedSoftwareBug"), last.reason
    assert [d.action for d in await tl.decisions()].count("roll_back") == 1


async def test_without_a_launcher_the_rollback_is_a_requeue_that_names_the_version(
    tl: Timeline,
) -> None:
    _in_place(tl, False)
    await _b_deployed_after_a_trained(tl)
    first = await _crash(tl)
    assert (first.action, first.status) == ("restart", "done")
    for _ in range(3):  # requeued: the ranks are down a while, their hosts' agents report
        tl.clock.advance(10)
        await tl.alive()
    await tl.watchdog()
    await _trains(tl, "B")
    d = await _crash(tl)
    assert (d.action, d.status) == ("roll_back", "done"), d.reason
    assert [s["op"] for s in d.outcome["steps"]] == ["requeue"] and await tl.requeues() == 2
    assert "restart from checkpoint step 110 on A" in d.reason
    # What the job script asks when the requeued job starts: check out A.
    advice = await _advice(tl)
    assert (advice["restart_in_place"], advice["code_version"]) == (False, "A")


async def test_a_rollback_no_launcher_acknowledges_is_requeued_and_stays_a_rollback(
    tl: Timeline,
) -> None:
    _in_place(tl, True)
    await _b_deployed_after_a_trained(tl)
    await _ack(tl, await _crash(tl))
    await _trains(tl, "B")
    d = await _crash(tl)
    assert (d.action, d.status) == ("roll_back", "awaiting_ack")
    tl.clock.advance(tl.ctx.settings.remediation.in_place_ack_s + 1)
    await tl.loops()
    [*_, d] = await tl.decisions()
    assert (d.action, d.status) == ("roll_back", "done"), d.reason
    assert [s["op"] for s in d.outcome["steps"]] == ["in_place", "in_place", "requeue"]
    assert await tl.requeues() == 1 and (await _advice(tl))["code_version"] == "A"


async def test_a_job_that_reports_no_version_is_escalated_as_before(tl: Timeline) -> None:
    _in_place(tl, True)
    await tl.beats()
    await _ack(tl, await _crash(tl))
    for _ in range(3):
        tl.clock.advance(10)
        await tl.beats()
        await tl.watchdog()
        await tl.loops()
    d = await _crash(tl)
    assert (d.action, d.rule) == ("escalate", "EscalateRepeatedSoftwareBug"), d.reason
