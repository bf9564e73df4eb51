"""The goodput page: the window's interruptions split into their phases, and measured ETTR."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import select
from web_scenario import CULPRIT, client_for

from sentinel.db.engine import unit_of_work
from sentinel.db.models import Incident, Job, JobProgress


async def test_the_page_splits_each_interruption_and_measures_ettr(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    async with unit_of_work(web_app.state.ctx.sessions) as session:
        incident = await session.scalar(select(Incident).where(Incident.culprit_host == CULPRIT))
        assert incident is not None and incident.job_id is not None
        job = await session.get(Job, incident.job_id)
        assert job is not None
        # The job's ranks as the watchdog sampled them: training, then back from the
        # checkpoint ten minutes after the fault, an hour of training later.
        opened = incident.opened_at
        session.add_all(
            [
                JobProgress(job_id=job.id, at=opened - timedelta(minutes=5), step=1000,
                            step_time_s=2.0, ranks=16),
                JobProgress(job_id=job.id, at=opened + timedelta(minutes=10), step=950,
                            step_time_s=2.0, ranks=16),
                JobProgress(job_id=job.id, at=opened + timedelta(minutes=70), step=2750,
                            step_time_s=2.0, ranks=16),
            ]
        )  # fmt: skip
        category = incident.category
        job_id = job.id
    async with client_for(web_app, tokens["viewer"]) as client:
        r = await client.get("/goodput?days=54")
    async with client_for(web_app, None) as nobody:
        anonymous = await nobody.get("/goodput")
    assert r.status_code == 200, r.text[:500]
    html = r.text
    assert 'href="/goodput"' in html  # in the navigation
    assert "Where the time went" in html and category in html
    for header in ("detection", "decision", "waiting for nodes", "restart", "lost work"):
        assert f"<th>{header}</th>" in html
    measured = re.search(rf"<td>{re.escape(job_id)}</td><td>(\d+)</td>", html)
    assert measured is not None, html
    assert int(measured.group(1)) >= 3
    assert anonymous.status_code in (303, 401)


async def test_a_window_without_interruptions_says_so(
    web_app: FastAPI, tokens: dict[str, str]
) -> None:
    async with client_for(web_app, tokens["viewer"]) as client:
        r = await client.get("/goodput?days=0.0001")
        bad = await client.get("/goodput?days=-1")
    assert r.status_code == 200
    assert "No interruptions in this window." in r.text
    assert bad.status_code == 422
