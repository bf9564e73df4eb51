"""Decisions (the pull API for any scheduler, operator approval and overrides) and host repair."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel import auth
from sentinel.api.deps import Ctx, Operator, Session, Viewer, require
from sentinel.api.errors import error_responses, refusals
from sentinel.api.routes.swaps import SwapOut
from sentinel.auth import Principal
from sentinel.db.models import OUT_OF_SERVICE, Decision, Host, JobRank, Swap
from sentinel.inputs import NO_NUL, Detail
from sentinel.remediation.decisions import DecisionOperations, mark_repaired, with_the_launcher
from sentinel.remediation.policy import Action
from sentinel.remediation.schemas import Note, OverrideIn
from sentinel.remediation.swap import swap_out
from sentinel.schedulers.hostlist import compress
from sentinel.wire.v1 import Name

router = APIRouter(prefix="/api/v1", tags=["remediation"])


class DecisionOut(BaseModel):
    id: uuid.UUID
    incident_id: uuid.UUID
    job_id: str | None
    action: str
    status: str
    rule: str
    reason: str
    exclude_hosts: list[str]
    checkpoint_step: int | None
    steps_lost: int | None
    outcome: dict[str, Any]
    error: str | None
    created_at: datetime
    updated_at: datetime
    code_version: str | None = Field(
        None, description="roll_back: the code version the job restarts on (the last that trained)."
    )
    skip_steps: tuple[int, int] | None = Field(
        None,
        description="skip_data: the first and last step (inclusive) whose data batches the job "
        "skips when it restarts from its checkpoint.",
    )
    standby_host: str | None = Field(
        None,
        description="exclude_and_restart carried out in the job: the standby host of the job's "
        "allocation that took the excluded host's place (no requeue).",
    )


def decision_out(d: Decision) -> DecisionOut:
    out = DecisionOut.model_validate(d, from_attributes=True)
    skip = d.outcome.get("skip_steps")
    return out.model_copy(
        update={
            "code_version": d.outcome.get("code_version"),
            "skip_steps": tuple(skip) if skip else None,
            "standby_host": d.outcome.get("standby_host"),
        }
    )


@router.get(
    "/decisions",
    response_model=list[DecisionOut],
    summary="Decisions; an outside scheduler polls status=pending",
)
async def list_decisions(
    session: Session,
    _: Viewer,
    status_: Annotated[str | None, Query(alias="status", max_length=16, pattern=NO_NUL)] = None,
    job_id: Annotated[str | None, Query(max_length=128, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[DecisionOut]:
    q = select(Decision)
    if status_:
        q = q.where(Decision.status == status_)
    if job_id:
        q = q.where(Decision.job_id == job_id)
    rows = (await session.scalars(q.order_by(Decision.created_at.desc()).limit(limit))).all()
    return [decision_out(d) for d in rows]


async def _decision(session: Session, decision_id: uuid.UUID) -> Decision:
    d = await session.get(Decision, decision_id)
    if d is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no decision {decision_id}")
    return d


@router.get(
    "/decisions/{decision_id}",
    response_model=DecisionOut,
    summary="One decision",
    responses=error_responses(404),
)
async def get_decision(session: Session, _: Viewer, decision_id: uuid.UUID) -> DecisionOut:
    return decision_out(await _decision(session, decision_id))


def _operations(ctx: Ctx) -> DecisionOperations:
    return DecisionOperations(ctx.clock, ctx.remediation.approved_status())


@router.post(
    "/decisions/{decision_id}/approve",
    response_model=DecisionOut,
    summary="Approve a proposed decision (operator)",
    responses=error_responses(404, 409),
)
async def approve(
    ctx: Ctx, session: Session, who: Operator, decision_id: uuid.UUID, body: Note
) -> DecisionOut:
    d = await _decision(session, decision_id)
    with refusals():
        _operations(ctx).approve(session, d, who, body.comment)
    return decision_out(d)


@router.post(
    "/decisions/{decision_id}/cancel",
    response_model=DecisionOut,
    summary="Cancel a decision that has not started (operator)",
    responses=error_responses(404, 409),
)
async def cancel(
    ctx: Ctx, session: Session, who: Operator, decision_id: uuid.UUID, body: Note
) -> DecisionOut:
    d = await _decision(session, decision_id)
    with refusals():
        _operations(ctx).cancel(session, d, who, body.comment)
    return decision_out(d)


@router.post(
    "/decisions/{decision_id}/override",
    response_model=DecisionOut,
    summary="Replace a decision that has not started with the operator's (operator)",
    responses=error_responses(404, 409),
)
async def override(
    ctx: Ctx, session: Session, who: Operator, decision_id: uuid.UUID, body: OverrideIn
) -> DecisionOut:
    d = await _decision(session, decision_id)
    with refusals():
        _operations(ctx).override(
            session, d, who, Action(body.action), body.exclude_hosts, body.reason
        )
    return decision_out(d)


class AckIn(BaseModel):
    outcome: Literal["done", "failed"]
    detail: Detail = ""


# The launcher on the job's hosts acknowledges a restart in place with the agent token it
# finds there (bound to those hosts); an operator may acknowledge any decision.
AckBy = Annotated[Principal, Depends(require(auth.OPERATE | auth.REPORT))]


@router.post(
    "/decisions/{decision_id}/ack",
    response_model=DecisionOut | SwapOut,
    summary="An outside scheduler reports the outcome of a pending decision (operator); a "
    "job's launcher reports a restart in place (agent token of one of the job's hosts, or "
    "operator)",
    description="A pending decision becomes done or failed. A restart_in_place decision "
    "awaiting_ack becomes done (the launcher restarted the ranks on the same allocation), or, "
    "with outcome failed, the requeue it would have been without in-place restarts; so does "
    "a roll_back published to the launcher (restarted on the code version it names), a "
    "skip_data (restarted skipping the data batches of the steps it names), and an "
    "exclude_and_restart carried out in the job (restarted without the excluded host, with "
    "the standby host of the allocation its outcome names). "
    "Acknowledging a restart in place twice with done answers the decision as it is. "
    "A proactive swap carried out in the job (the advice's restart_decision names its id) is "
    "acknowledged here too and answered as the swap: awaiting_ack becomes done, or with "
    "outcome failed, the requeue onto a spare of the pool it would have been without a "
    "standby.",
    responses=error_responses(403, 404, 409),
)
async def ack(
    ctx: Ctx, session: Session, who: AckBy, decision_id: uuid.UUID, body: AckIn
) -> DecisionOut | SwapOut:
    if await session.get(Decision, decision_id) is None:
        # A swap carried out in the job is named to the launchers by its id, as a decision
        # is (jobs.job_advice says why), and so acknowledged by them here.
        swap = await session.get(Swap, decision_id)
        if swap is not None:
            standby = swap.outcome.get("standby_host")
            await _speaks_for_the_job(session, who, swap.job_id, standby)
            with refusals():
                ctx.remediation.swaps.acknowledge(session, swap, who, body.outcome, body.detail)
            return SwapOut.model_validate(swap_out(swap))
    d = await _decision(session, decision_id)
    operations = _operations(ctx)
    if with_the_launcher(d) or who.role == "agent":
        await _may_ack_in_place(session, who, d)
        with refusals():
            operations.acknowledge_in_place(session, d, who, body.outcome, body.detail)
    else:
        with refusals():
            operations.acknowledge(session, d, who, body.outcome, body.detail)
    return decision_out(d)


async def _may_ack_in_place(session: AsyncSession, who: Principal, d: Decision) -> None:
    """Who may acknowledge a restart in place: an agent token speaks for the job's hosts."""
    # A restart in place that fell back to a requeue is a restart now (its in_place step
    # says what it was): a late launcher is told so (409), not refused (403).
    was_in_place = any(s.get("op") == "in_place" for s in d.outcome.get("steps", []))
    if d.action != Action.restart_in_place.value and not was_in_place:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "an agent token acknowledges restarts in place only"
        )
    await _speaks_for_the_job(session, who, d.job_id, d.outcome.get("standby_host"))


async def _speaks_for_the_job(
    session: AsyncSession, who: Principal, job_id: str | None, standby: object
) -> None:
    """An agent token acknowledges for a job with a rank on one of its hosts, or for the
    standby host taking an excluded one's place (it has no rank until it joins)."""
    if who.role != "agent":
        return
    hosts = list(
        (await session.scalars(select(JobRank.host_id).where(JobRank.job_id == job_id))).all()
    )
    if isinstance(standby, str):
        hosts.append(standby)
    if not any(who.may_speak_for(h) for h in hosts):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"token {who.name!r} speaks for none of job {job_id}'s hosts",
        )


class ExcludedHost(BaseModel):
    id: str
    drain_state: str
    drain_reason: str | None


@router.get(
    "/hosts/excluded",
    response_model=list[ExcludedHost],
    summary="Hosts Sentinel excluded; ?format=hostlist gives a Slurm hostlist for sbatch --exclude",
    responses={200: {"content": {"text/plain": {}}}},
)
async def excluded_hosts(
    session: Session, _: Viewer, format: Literal["json", "hostlist"] = "json"
) -> Any:
    rows = (
        await session.scalars(
            select(Host).where(Host.drain_state.in_(OUT_OF_SERVICE)).order_by(Host.id)
        )
    ).all()
    if format == "hostlist":
        return PlainTextResponse(compress(h.id for h in rows) + "\n")
    return [
        ExcludedHost(id=h.id, drain_state=h.drain_state, drain_reason=h.drain_reason) for h in rows
    ]


@router.post(
    "/hosts/{host_id}/repaired",
    response_model=ExcludedHost,
    summary="Mark a drained host repaired: resume it in the scheduler (operator)",
    responses=error_responses(404, 502),
)
async def repaired(ctx: Ctx, who: Operator, host_id: Name, body: Note) -> ExcludedHost:
    with refusals():
        await mark_repaired(
            ctx.sessions, ctx.remediation.scheduler, ctx.clock, who, host_id, body.comment
        )
    return ExcludedHost(id=host_id, drain_state="none", drain_reason=None)
