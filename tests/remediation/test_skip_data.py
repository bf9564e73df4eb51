"""Skipping the data where a job keeps failing (issue 17): the durable checkpoint is step 100;
the job fails with the same software error at step 150, restarts from the checkpoint, and
fails again at step 150: the failure is tied to the data there, and the job restarts from its
checkpoint skipping the batches of steps 101-350 (the failing step + 200; PaLM's remedy for
its loss spikes): the launcher in place with SENTINEL_SKIP_STEPS, else a requeue whose advice
names the steps; once; the same error after the skip is escalated as any crash loop."""

from __future__ import annotations

from conftest import auth

from remediation.test_roll_back import _ack, _advice, _crash, _in_place
from remediation.timeline import Timeline
from sentinel.web.routes import TOKEN_COOKIE

FAILING = 150
SKIP = [101, FAILING + 200]


async def _trains_to(tl: Timeline, step: int) -> None:
    """The ranks train again from the checkpoint (step 100) up to ``step``; the open
    incident resolves."""
    tl.step = 100
    while tl.step < step:
        tl.clock.advance(10)
        await tl.beats()
        await tl.watchdog()
        await tl.loops()
    assert tl.step == step
    assert all(i.state == "resolved" for i in await tl.incidents())


async def _fails_at_150_then_again(tl: Timeline) -> None:
    tl.step = FAILING - 5
    await tl.beats()  # the ranks' last beat before the crash: step 150
    first = await _crash(tl)
    assert first.outcome["failed_at_step"] == FAILING
    if first.action == "restart_in_place":
        await _ack(tl, first)
    else:
        for _ in range(3):  # requeued: the ranks are down a while, their hosts' agents report
            tl.clock.advance(10)
            await tl.alive()
        await tl.watchdog()
    await _trains_to(tl, FAILING)


async def test_the_launcher_restarts_skipping_the_data_where_the_same_step_fails(
    tl: Timeline,
) -> None:
    _in_place(tl, True)
    await _fails_at_150_then_again(tl)
    d = await _crash(tl)  # the same error at the same step
    assert (d.action, d.status, d.rule) == (
        "skip_data",
        "awaiting_ack",
        "SkipTheDataWhereTheSameStepFailsAgain",
    ), d.reason
    assert d.outcome["skip_steps"] == SKIP and "at step 150 (step 150 last time" in d.reason
    assert [s["op"] for s in d.outcome["steps"]] == ["in_place"]
    assert (
        "skipping the batches of steps 101-350 (SENTINEL_SKIP_STEPS)"
        in (d.outcome["steps"][0]["output"])
    )
    advice = await _advice(tl)
    assert (advice["restart_in_place"], advice["restart_decision"]) == (True, str(d.id))
    assert (advice["restart_skip_steps"], advice["skip_steps"]) == (SKIP, SKIP)
    r = await tl.client.get(f"/api/v1/decisions/{d.id}", headers=auth(tl.tokens["viewer"]))
    assert r.json()["skip_steps"] == SKIP
    page = await tl.client.get(
        f"/incidents/{d.incident_id}", headers={"Cookie": f"{TOKEN_COOKIE}={tl.tokens['viewer']}"}
    )
    assert 'skipping the data of steps <b class="mono">101-350</b>' in page.text
    await _ack(tl, d)
    assert (await _advice(tl))["restart_in_place"] is False
    assert await tl.requeues() == 0  # the allocation kept both times

    # The same error at the same step after the skip: not the data's; escalated as before.
    await _trains_to(tl, FAILING)
    last = await _crash(tl)
    assert (last.action, last.rule) == ("escalate", "EscalateRepeatedSoftwareBug"), last.reason
    assert [d.action for d in await tl.decisions()].count("skip_data") == 1


async def test_without_a_launcher_the_skip_is_a_requeue_that_names_the_steps(
    tl: Timeline,
) -> None:
    _in_place(tl, False)
    await _fails_at_150_then_again(tl)
    d = await _crash(tl)
    assert (d.action, d.status) == ("skip_data", "done"), d.reason
    assert [s["op"] for s in d.outcome["steps"]] == ["requeue"] and await tl.requeues() == 2
    # What the job script asks when the requeued job starts: skip these steps' batches.
    advice = await _advice(tl)
    assert (advice["restart_in_place"], advice["skip_steps"]) == (False, SKIP)


async def test_the_same_error_at_another_step_is_escalated_as_before(tl: Timeline) -> None:
    _in_place(tl, True)
    await _fails_at_150_then_again(tl)
    for _ in range(2):  # past the step where it failed (by more than 5): the data went through
        tl.clock.advance(10)
        await tl.beats()
    d = await _crash(tl)
    assert (d.action, d.rule) == ("escalate", "EscalateRepeatedSoftwareBug"), d.reason
