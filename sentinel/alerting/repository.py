"""Reads on the alert path: alerts, groups and silences, as the API and the dashboard list them."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.db.models import Alert, AlertGroup, Silence


async def list_alerts(
    session: AsyncSession,
    *,
    state: str | None = None,
    muted: bool | None = None,
    incident: uuid.UUID | None = None,
    limit: int = 1000,
) -> list[Alert]:
    """Newest first."""
    query = select(Alert).order_by(Alert.updated_at.desc(), Alert.fingerprint).limit(limit)
    if state is not None:
        query = query.where(Alert.state == state)
    if muted is not None:
        query = query.where(Alert.muted_by.is_not(None) if muted else Alert.muted_by.is_(None))
    if incident is not None:
        query = query.where(Alert.incident_id == incident)
    return list((await session.scalars(query)).all())


async def list_groups(session: AsyncSession, state: str | None = None) -> list[AlertGroup]:
    """Newest first."""
    query = select(AlertGroup).order_by(AlertGroup.first_fired_at.desc())
    if state is not None:
        query = query.where(AlertGroup.state == state)
    return list((await session.scalars(query)).all())


async def list_silences(session: AsyncSession) -> list[Silence]:
    """Expired ones included, newest first."""
    return list((await session.scalars(select(Silence).order_by(Silence.created_at.desc()))).all())
