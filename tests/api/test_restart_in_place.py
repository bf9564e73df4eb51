"""POST /api/v1/jobs/{id}/restart-in-place: who may ask, what the body must say, and the
refusals that keep a planned restart from being carried out otherwise than asked."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import auth
from remediation.timeline import Timeline

URL = "/api/v1/jobs/job-1/restart-in-place"
BODY = {"reason": "configuration update: new LR schedule"}


def _in_place_on(tl: Timeline, **more: Any) -> None:
    update = {"in_place": True, **more}
    tl.ctx.remediation._settings = tl.ctx.settings.remediation.model_copy(update=update)


async def test_an_operator_may_ask_a_viewer_or_an_agent_may_not(tl: Timeline) -> None:
    _in_place_on(tl)
    for role in ("viewer", "agent"):
        r = await tl.client.post(URL, json=BODY, headers=auth(tl.tokens[role]))
        assert r.status_code == 403, r.text
    assert await tl.decisions() == []
    r = await tl.client.post(URL, json=BODY, headers=auth(tl.tokens["operator"]))
    assert r.status_code == 201, r.text
    assert r.json()["rule"] == "OperatorRestartInPlace"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"reason": ""},
        {"reason": "ok\u0000"},
        {"reason": "dataset update", "code_version": "-bad"},
        {"reason": "dataset update", "code_version": "has space"},
        {"reason": "dataset update", "code_version": 3},
    ],
)
async def test_a_bad_body_is_refused(tl: Timeline, body: dict[str, Any]) -> None:
    _in_place_on(tl)
    r = await tl.client.post(URL, json=body, headers=auth(tl.tokens["operator"]))
    assert r.status_code == 422, r.text
    assert await tl.decisions() == []


async def test_an_unknown_job_is_404(tl: Timeline) -> None:
    _in_place_on(tl)
    r = await tl.client.post(
        "/api/v1/jobs/nope/restart-in-place", json=BODY, headers=auth(tl.tokens["operator"])
    )
    assert r.status_code == 404 and "no job 'nope'" in r.json()["detail"]


async def test_refused_where_it_cannot_be_carried_out_as_asked(tl: Timeline) -> None:
    op = auth(tl.tokens["operator"])
    r = await tl.client.post(URL, json=BODY, headers=op)  # in-place restarts off
    assert r.status_code == 409 and "remediation.in_place is off" in r.json()["detail"]
    _in_place_on(tl, mode="dry_run")
    r = await tl.client.post(URL, json=BODY, headers=op)
    assert r.status_code == 409 and "dry_run" in r.json()["detail"]
    _in_place_on(tl)
    assert (await tl.client.post(URL, json=BODY, headers=op)).status_code == 201
    # The job's planned incident is open: a second request waits for it.
    r = await tl.client.post(URL, json=BODY, headers=op)
    assert r.status_code == 409 and "planned" in r.json()["detail"], r.text
    assert len(await tl.decisions()) == 1 and len(await tl.incidents()) == 1
