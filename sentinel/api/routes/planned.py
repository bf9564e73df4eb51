"""An operator's restart in place of a job's ranks for planned work (remediation/planned.py)."""

from __future__ import annotations

from fastapi import APIRouter, status

from sentinel.api.deps import Ctx, Operator
from sentinel.api.errors import error_responses, refusals
from sentinel.api.routes.decisions import DecisionOut, decision_out
from sentinel.remediation.schemas import RestartInPlaceIn
from sentinel.wire.v1 import Name

router = APIRouter(prefix="/api/v1/jobs", tags=["remediation"])


@router.post(
    "/{job_id}/restart-in-place",
    response_model=DecisionOut,
    status_code=status.HTTP_201_CREATED,
    summary="Restart the job's ranks in place for planned work (operator)",
    description="For a configuration or dataset update (or, with code_version, a planned "
    "version change): the job's launchers restart its ranks on the allocation it holds "
    "instead of a requeue. Announces a restart of the job's processes on its hosts (the stop "
    "is planned work; a hardware fault meanwhile is still a fault, with its own incident) and "
    "opens the job's planned incident, whose decision (restart_in_place, rule "
    "OperatorRestartInPlace, its reason naming the operator and why) is published in GET "
    "/api/v1/jobs/{id}/advice as restart_in_place with restart_decision; the launcher "
    "acknowledges it (POST /api/v1/decisions/{id}/ack), or the job is requeued when none does "
    "within remediation.in_place_ack_s. at_checkpoint (default true): the decision is first "
    "held, the advice saying checkpoint_now (with the reason) so that the ranks save a "
    "checkpoint, and released once a durable checkpoint newer than the one at the request "
    "and at or past the step the job had reached is reported, at once if the job's ranks "
    "stopped anyway, or after remediation.planned_checkpoint_wait_s (its reason then says no "
    "checkpoint came and the steps lost); the job trains meanwhile. at_checkpoint false: "
    "restart now, from the last durable checkpoint. 409 in a dry run, with "
    "remediation.in_place off, for a job not running, or while the job has an incident open.",
    responses=error_responses(404, 409),
)
async def restart_in_place(
    ctx: Ctx, who: Operator, job_id: Name, body: RestartInPlaceIn
) -> DecisionOut:
    with refusals():
        done = await ctx.remediation.restart_in_place(
            ctx.sessions, who, job_id, body.reason, body.code_version, body.at_checkpoint
        )
    await ctx.stages.run(done.changes)
    return decision_out(done.decision)
