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
from sentinel.api.errors import error_responses
from sentinel.auth import Principal
from sentinel.db.engine import unit_of_work
from sentinel.db.models import OUT_OF_SERVICE, AuditEntry, Decision, Host, JobRank
from sentinel.inputs import NO_NUL, Comment, Detail, Reason
from sentinel.remediation.policy import Action
from sentinel.remediation.service import AWAITING_ACK, fall_back_to_requeue
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


def _out(d: Decision) -> DecisionOut:
    return DecisionOut.model_validate(d, from_attributes=True)


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
    return [_out(d) for d in rows]


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
    return _out(await _decision(session, decision_id))


def _audit(
    ctx: Ctx,
    session: AsyncSession,
    who: Principal,
    action: str,
    target: str,
    detail: dict[str, Any],
) -> None:
    session.add(
        AuditEntry(
            actor=who.name,
            role=who.role,
            action=action,
            target=target,
            detail=detail,
            at=ctx.clock.now(),
        )
    )


def _require(d: Decision, allowed: set[str], verb: str) -> None:
    if d.status not in allowed:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"cannot {verb} a decision that is {d.status!r}; only {sorted(allowed)}",
        )


class Note(BaseModel):
    comment: Comment = ""


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
    _require(d, {"proposed", "held"}, "approve")
    d.status = ctx.remediation.approved_status()
    d.updated_at = ctx.clock.now()
    _audit(ctx, session, who, "decision.approve", f"decision:{d.id}", {"comment": body.comment})
    return _out(d)


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
    # A restart in place awaiting its launcher may be cancelled too (the advice stops saying it).
    _require(d, {"proposed", "held", "approved", "pending", AWAITING_ACK}, "cancel")
    d.status = "cancelled"
    d.reason += f"; cancelled by {who.name}" + (f": {body.comment}" if body.comment else "")
    d.updated_at = ctx.clock.now()
    _audit(ctx, session, who, "decision.cancel", f"decision:{d.id}", {"comment": body.comment})
    return _out(d)


class OverrideIn(BaseModel):
    action: Literal["restart", "exclude_and_restart", "hold", "escalate", "none"]
    exclude_hosts: list[Name] = Field(default_factory=list, max_length=1000)
    reason: Reason


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
    _require(d, {"proposed", "held", "approved", "pending", "escalated"}, "override")
    if body.action == "exclude_and_restart" and not body.exclude_hosts:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "exclude_hosts: exclude_and_restart needs at least one host",
        )
    before = {"action": d.action, "exclude_hosts": d.exclude_hosts, "rule": d.rule}
    d.action = body.action
    d.exclude_hosts = list(body.exclude_hosts) if body.action == "exclude_and_restart" else []
    d.rule = "OperatorOverride"
    d.reason = f"overridden by {who.name}: {body.reason}"
    # The operator names the hosts, not their repair: none is automated (Mark repaired).
    d.outcome = {**d.outcome, "repair": {}}
    # A hold waits as the policy's own holds do: released to a restart once the fabric is quiet,
    # or approved or cancelled by hand before that.
    d.status = {
        Action.escalate.value: "escalated",
        Action.none.value: "noop",
        Action.hold.value: "held",
    }.get(body.action, ctx.remediation.approved_status())
    d.updated_at = ctx.clock.now()
    _audit(
        ctx,
        session,
        who,
        "decision.override",
        f"decision:{d.id}",
        {"before": before, "after": body.model_dump()},
    )
    return _out(d)


class AckIn(BaseModel):
    outcome: Literal["done", "failed"]
    detail: Detail = ""


# The launcher on the job's hosts acknowledges a restart in place with the agent token it
# finds there (bound to those hosts); an operator may acknowledge any decision.
AckBy = Annotated[Principal, Depends(require(auth.OPERATE | auth.REPORT))]


@router.post(
    "/decisions/{decision_id}/ack",
    response_model=DecisionOut,
    summary="An outside scheduler reports the outcome of a pending decision (operator); a "
    "job's launcher reports a restart in place (agent token of one of the job's hosts, or "
    "operator)",
    description="A pending decision becomes done or failed. A restart_in_place decision "
    "awaiting_ack becomes done (the launcher restarted the ranks on the same allocation), or, "
    "with outcome failed, the requeue it would have been without in-place restarts. "
    "Acknowledging a restart in place twice with done answers the decision as it is.",
    responses=error_responses(403, 404, 409),
)
async def ack(
    ctx: Ctx, session: Session, who: AckBy, decision_id: uuid.UUID, body: AckIn
) -> DecisionOut:
    d = await _decision(session, decision_id)
    if d.action == Action.restart_in_place.value or who.role == "agent":
        return await _ack_in_place(ctx, session, who, d, body)
    _require(d, {"pending"}, "acknowledge")
    d.status = body.outcome
    d.error = body.detail if body.outcome == "failed" else None
    d.outcome = {
        **d.outcome,
        "steps": [
            *d.outcome.get("steps", []),
            {"op": "ack", "ok": body.outcome == "done", "adapter": who.name, "output": body.detail},
        ],
    }
    d.updated_at = ctx.clock.now()
    _audit(ctx, session, who, "decision.ack", f"decision:{d.id}", body.model_dump())
    return _out(d)


async def _ack_in_place(
    ctx: Ctx, session: AsyncSession, who: Principal, d: Decision, body: AckIn
) -> DecisionOut:
    # A restart in place that fell back to a requeue is a restart now (its in_place step
    # says what it was): a late launcher is told so (409), not refused (403).
    was_in_place = any(s.get("op") == "in_place" for s in d.outcome.get("steps", []))
    if d.action != Action.restart_in_place.value and not was_in_place:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "an agent token acknowledges restarts in place only"
        )
    if who.role == "agent":
        hosts = (
            await session.scalars(select(JobRank.host_id).where(JobRank.job_id == d.job_id))
        ).all()
        if not any(who.may_speak_for(h) for h in hosts):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"token {who.name!r} speaks for none of job {d.job_id}'s hosts",
            )
    if d.status == "done" and body.outcome == "done" and d.action == "restart_in_place":
        return _out(d)  # a launcher's retry after a lost answer
    if d.action != Action.restart_in_place.value:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"decision {d.id} is no longer a restart in place ({d.action}, {d.status}): "
            "it was not acknowledged in time and the job is requeued",
        )
    _require(d, {AWAITING_ACK}, "acknowledge")
    now = ctx.clock.now()
    step = {"op": "ack", "ok": body.outcome == "done", "adapter": who.name, "output": body.detail}
    if body.outcome == "done":
        d.status = "done"
        d.outcome = {**d.outcome, "steps": [*d.outcome.get("steps", []), step]}
        d.updated_at = now
    else:
        d.outcome = {**d.outcome, "steps": [*d.outcome.get("steps", []), step]}
        why = f"the launcher could not restart in place ({body.detail or 'no detail'})"
        fall_back_to_requeue(d, why, ctx.remediation.approved_status(), now)
    _audit(ctx, session, who, "decision.ack", f"decision:{d.id}", body.model_dump())
    return _out(d)


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


async def _host(session: AsyncSession, host_id: str) -> Host:
    host = await session.get(Host, host_id)
    if host is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no host {host_id!r}")
    return host


@router.post(
    "/hosts/{host_id}/repaired",
    response_model=ExcludedHost,
    summary="Mark a drained host repaired: resume it in the scheduler (operator)",
    responses=error_responses(404, 502),
)
async def repaired(ctx: Ctx, who: Operator, host_id: Name, body: Note) -> ExcludedHost:
    # scontrol runs between two units of work, never inside a transaction.
    async with unit_of_work(ctx.sessions) as session:
        await _host(session, host_id)
    result = await ctx.remediation.scheduler.resume(host_id)
    if not result.ok:
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY,
            f"scheduler {result.adapter} refused to resume {host_id}: {result.error}",
        )
    async with unit_of_work(ctx.sessions) as session:
        host = await _host(session, host_id)
        host.drain_state = "none"
        host.drain_reason = None
        host.last_critical_at = None
        host.last_critical = None
        _audit(
            ctx,
            session,
            who,
            "host.repaired",
            f"host:{host_id}",
            {"comment": body.comment, "commands": list(result.commands)},
        )
    return ExcludedHost(id=host_id, drain_state="none", drain_reason=None)
