"""Alerts, alert groups, silences, and Alertmanager's webhook in; every write is audited."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, status
from pydantic import ValidationError

from sentinel.alerting import repository, service
from sentinel.alerting.schemas import (
    AckIn,
    AlertGroupOut,
    AlertOut,
    PdAccepted,
    PdWebhook,
    SilenceIn,
    SilenceOut,
    WebhookAccepted,
    silence_out,
)
from sentinel.api.body import read_body
from sentinel.api.deps import Agent, Ctx, Operator, Session, Viewer
from sentinel.api.errors import describe_validation_error, error_responses, refusals
from sentinel.db import audit
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Alert, AlertGroup, Silence
from sentinel.ingest.alertmanager import AmWebhook, store_events

router = APIRouter(prefix="/api/v1", tags=["alerts"])


@router.get("/alerts", response_model=list[AlertOut], summary="Alerts, newest first")
async def list_alerts(
    session: Session,
    _: Viewer,
    state: Annotated[str | None, Query(pattern="^(firing|resolved)$")] = None,
    muted: bool | None = None,
    incident: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[Alert]:
    return await repository.list_alerts(
        session, state=state, muted=muted, incident=incident, limit=limit
    )


@router.get("/alert-groups", response_model=list[AlertGroupOut], summary="Alert groups")
async def list_groups(
    session: Session,
    _: Viewer,
    state: Annotated[str | None, Query(pattern="^(firing|resolved)$")] = None,
) -> list[AlertGroup]:
    return await repository.list_groups(session, state)


@router.post(
    "/alert-groups/{group_id}/ack",
    response_model=AlertGroupOut,
    summary="Acknowledge a group: no repeats until it resolves or fires again",
    responses=error_responses(404, 409),
)
async def ack_group(
    ctx: Ctx,
    session: Session,
    principal: Operator,
    group_id: uuid.UUID,
    body: Annotated[AckIn | None, Body()] = None,
) -> AlertGroup:
    comment = body.comment if body is not None else None
    with refusals():
        return await service.ack_group(session, group_id, principal, comment, ctx.clock.now())


@router.post(
    "/pagerduty",
    response_model=PdAccepted,
    summary="PagerDuty V3 webhook: an incident acknowledged there is acknowledged here (operator)",
    description="Subscribe to `incident.acknowledged` with a custom header "
    "`Authorization: Bearer <operator token>`. The incident's `incident_key` is the dedup key "
    "Sentinel sent; its groups at every receiver are acknowledged, by `pagerduty:<who>`. "
    "Other events and incidents Sentinel did not raise are answered and ignored.",
    responses=error_responses(422),
)
async def pagerduty_webhook(
    ctx: Ctx, session: Session, principal: Operator, body: PdWebhook
) -> PdAccepted:
    event = body.event
    key = event.data.incident_key
    if event.event_type != "incident.acknowledged" or not key:
        return PdAccepted(event_type=event.event_type, acknowledged=[])
    who = f"pagerduty:{event.agent.summary}" if event.agent and event.agent.summary else "pagerduty"
    now = ctx.clock.now()
    acked = await service.acknowledge_by_key(session, key, who[:128], now)
    if acked:
        audit.record(
            session,
            principal,
            "alert_group.ack",
            f"alert_group:{acked[0].id}",
            {
                "group_key": acked[0].group_key,
                "receiver": acked[0].receiver,
                "also": [{"id": str(g.id), "receiver": g.receiver} for g in acked[1:]],
                "source": "pagerduty",
                "acked_by": who[:128],
            },
            now,
        )
    return PdAccepted(event_type=event.event_type, acknowledged=[g.receiver for g in acked])


def _silence_out(silence: Silence, ctx: Ctx) -> SilenceOut:
    return silence_out(silence, ctx.clock.now())


@router.get("/silences", response_model=list[SilenceOut], summary="Silences (expired included)")
async def list_silences(ctx: Ctx, session: Session, _: Viewer) -> list[SilenceOut]:
    return [_silence_out(s, ctx) for s in await repository.list_silences(session)]


@router.post(
    "/silences",
    response_model=SilenceOut,
    status_code=status.HTTP_201_CREATED,
    summary="Mute alerts matching all the matchers until ends_at",
)
async def create_silence(
    ctx: Ctx, session: Session, principal: Operator, body: SilenceIn
) -> SilenceOut:
    try:
        silence = await service.add_silence(session, body, principal, ctx.clock.now())
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return _silence_out(silence, ctx)


@router.delete(
    "/silences/{silence_id}",
    response_model=SilenceOut,
    summary="Expire a silence",
    responses=error_responses(404),
)
async def expire_silence(
    ctx: Ctx, session: Session, principal: Operator, silence_id: uuid.UUID
) -> SilenceOut:
    with refusals():
        silence = await service.end_silence(session, silence_id, principal, ctx.clock.now())
    return _silence_out(silence, ctx)


@router.post(
    "/alertmanager",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookAccepted,
    summary="Alertmanager webhook (version 4): each alert becomes an 'alertmanager' event",
    description="Configure Alertmanager's webhook receiver with an agent token: "
    "`http_config: {authorization: {credentials: <agent token>}}`.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AmWebhook"}}},
        }
    },
    responses=error_responses(
        400, 413, 415, 422, 429, **{"422": "Not an Alertmanager v4 payload; the field is named"}
    ),
)
async def alertmanager_webhook(request: Request, ctx: Ctx, principal: Agent) -> dict[str, Any]:
    body = await read_body(request, ctx.settings.server.max_body_bytes)
    try:
        payload = AmWebhook.model_validate_json(body)
    except ValidationError as exc:
        code, message = describe_validation_error(exc)
        raise HTTPException(code, message) from None
    now = ctx.clock.now()
    async with unit_of_work(ctx.sessions) as session:
        new = await store_events(session, payload, now)
        audit.record(
            session,
            principal,
            "alertmanager.receive",
            f"alertmanager:{payload.groupKey}"[:256],
            {
                "receiver": payload.receiver,
                "status": payload.status,
                "alerts": len(payload.alerts),
                "new_events": len(new),
            },
            now,
        )
    return {"alerts": len(payload.alerts), "new_events": len(new)}
