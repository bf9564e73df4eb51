"""The jobs page's form for an operator's restart in place (planned work): shown to operators
only, behind the CSRF check as the other forms, and its refusals shown as pages."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import select
from web_scenario import client_for

from sentinel.db.engine import unit_of_work
from sentinel.db.models import Decision, Incident, Job
from sentinel.web.routes import CSRF_COOKIE

CSRF = "k" * 32
FORM = "/jobs/restart-in-place"


async def _job(app: FastAPI) -> Job:
    async with unit_of_work(app.state.ctx.sessions) as session:
        job = await session.scalar(select(Job).order_by(Job.id).limit(1))
    assert job is not None, "the scenario has no job"
    return job


async def _decisions(app: FastAPI) -> list[Decision]:
    async with unit_of_work(app.state.ctx.sessions) as session:
        return list(
            (
                await session.scalars(
                    select(Decision).where(Decision.rule == "OperatorRestartInPlace")
                )
            ).all()
        )


async def test_viewers_see_no_form_and_are_refused(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    job = await _job(web_app)
    async with client_for(web_app, tokens["viewer"]) as client:
        client.cookies.set(CSRF_COOKIE, CSRF)
        assert 'action="/jobs/restart-in-place"' not in (await client.get("/jobs")).text
        r = await client.post(FORM, data={"csrf": CSRF, "job_id": job.id, "reason": "mine"})
        assert r.status_code == 403
    assert await _decisions(web_app) == []


async def test_an_operator_restarts_a_job_in_place_from_the_jobs_page(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    ctx = web_app.state.ctx
    job = await _job(web_app)
    form = {"csrf": CSRF, "job_id": job.id, "reason": "dataset update: new shards"}
    async with client_for(web_app, tokens["operator"]) as client:
        client.cookies.set(CSRF_COOKIE, CSRF)
        page = (await client.get("/jobs")).text
        assert 'action="/jobs/restart-in-place"' in page and f'value="{CSRF}"' in page
        assert 'name="at_checkpoint" value="1" checked> at the next checkpoint' in page
        assert (await client.post(FORM, data={**form, "csrf": "wrong"})).status_code == 403
        r = await client.post(FORM, data=form)  # in-place restarts off: refused, shown
        assert r.status_code == 409 and "remediation.in_place is off" in r.text
        ctx.remediation._settings = ctx.settings.remediation.model_copy(update={"in_place": True})
        async with unit_of_work(ctx.sessions) as session:
            open_ = (
                await session.scalars(
                    select(Incident).where(Incident.job_id == job.id, Incident.state != "resolved")
                )
            ).all()
        for incident in open_:  # the job's own fault first: its decision restarts it
            r = await client.post(FORM, data=form)
            assert r.status_code == 409 and str(incident.id) in r.text
            r = await client.post(
                f"/incidents/{incident.id}/resolve", data={"csrf": CSRF, "reason": "fixed"}
            )
            assert r.status_code == 303
        r = await client.post(FORM, data={**form, "code_version": "not a version"})
        assert r.status_code == 422 and "code_version" in r.text
        r = await client.post(FORM, data={**form, "code_version": "v7", "at_checkpoint": "1"})
        [d] = await _decisions(web_app)
        assert (d.action, d.job_id, d.outcome["code_version"]) == ("restart_in_place", job.id, "v7")
        assert "asked by operator: dataset update: new shards" in d.reason
        # The box checked: held for the job's next checkpoint, the ranks asked to save one.
        assert d.status == "held" and "held for the job's next durable checkpoint" in d.reason
        # The operator lands on the planned incident: planned work, who asked and why.
        where = f"/incidents/{d.incident_id}?ok=job.restart_in_place"
        assert r.status_code == 303 and r.headers["location"] == where
        page = (await client.get(where)).text
        assert "Restart in place asked" in page
        assert "planned" in page and "OperatorRestartInPlace" in page
        assert "dataset update: new shards" in page
