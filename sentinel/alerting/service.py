"""Writes on the alert path: push alerts into groups, acknowledge a group, silence, unsilence;
an operator's acknowledgment and silences are audited.

Functions here only flush; the caller's unit of work commits (one request, one loop step).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.alerting.config import Route, RoutingConfig
from sentinel.alerting.model import AlertIn, matcher_of
from sentinel.alerting.notifiers.base import dedup_key
from sentinel.alerting.schemas import SilenceIn
from sentinel.db import audit
from sentinel.db.audit import Actor
from sentinel.db.models import Alert, AlertGroup, Silence
from sentinel.db.upsert import dialect_of, insert_for

_CHUNK = 500
_UPSERTED = (
    "group_key",
    "incident_id",
    "labels",
    "annotations",
    "state",
    "starts_at",
    "ends_at",
    "updated_at",
)


class NotFound(LookupError):
    pass


class NotFiring(ValueError):
    """Only a firing group is acknowledged."""


@dataclass(frozen=True)
class PushResult:
    alerts: int
    newly_firing: int
    groups_activated: int


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def push_alerts(
    session: AsyncSession, config: RoutingConfig, alerts: Sequence[AlertIn], now: datetime
) -> PushResult:
    """Store (or update) alerts and start the timers of the groups they fire in.

    A group that was idle or resolved starts again: it waits ``group_wait`` and forgets its
    acknowledgement. A new alert in a firing group also clears the acknowledgement; the
    group's next tick announces it.
    """
    by_fp = {a.fingerprint: a for a in alerts}
    if not by_fp:
        return PushResult(0, 0, 0)
    fps = sorted(by_fp)
    was_firing: dict[str, bool] = {}
    for chunk in _chunks(fps):
        rows = await session.execute(
            select(Alert.fingerprint, Alert.state).where(Alert.fingerprint.in_(chunk))
        )
        was_firing.update({fp: state == "firing" for fp, state in rows})

    routes: dict[str, list[Route]] = {fp: config.routes_for(a.labels) for fp, a in by_fp.items()}
    rows_out = []
    for fp in fps:
        a = by_fp[fp]
        firing = a.firing_at(now)
        rows_out.append(
            {
                "id": uuid.uuid4(),
                "fingerprint": fp,
                "group_key": routes[fp][0].group_key(a.labels),
                "incident_id": a.incident_id,
                "labels": a.labels,
                "annotations": a.annotations,
                "state": "firing" if firing else "resolved",
                "muted_by": None,
                "starts_at": a.starts_at,
                "ends_at": a.ends_at,
                "updated_at": now,
            }
        )
    ins = insert_for(dialect_of(session), Alert)
    stmt = ins.on_conflict_do_update(
        index_elements=["fingerprint"],
        set_={c: ins.excluded[c] for c in _UPSERTED},
    )
    for chunk in _chunks(rows_out):
        await session.execute(stmt, list(chunk))

    newly = [fp for fp in fps if by_fp[fp].firing_at(now) and not was_firing.get(fp, False)]
    activated: dict[tuple[str, str], tuple[Route, dict[str, str]]] = {}
    for fp in newly:
        for route in routes[fp]:
            labels = by_fp[fp].labels
            activated[(route.group_key(labels), route.receiver)] = (
                route,
                route.group_labels(labels),
            )
    for (key, receiver), (route, group_labels) in sorted(activated.items()):
        await _activate_group(session, key, receiver, route, group_labels, now)
    return PushResult(len(by_fp), len(newly), len(activated))


async def _activate_group(
    session: AsyncSession,
    key: str,
    receiver: str,
    route: Route,
    labels: dict[str, str],
    now: datetime,
) -> None:
    first_flush = now + route.group_wait
    ins = insert_for(dialect_of(session), AlertGroup)
    await session.execute(
        ins.on_conflict_do_nothing(index_elements=["group_key", "receiver"]),
        {
            "id": uuid.uuid4(),
            "group_key": key,
            "receiver": receiver,
            "labels": labels,
            "state": "firing",
            "first_fired_at": now,
            "next_flush_at": first_flush,
            "updated_at": now,
        },
    )
    where = (AlertGroup.group_key == key, AlertGroup.receiver == receiver)
    # An idle or resolved group starts a new cycle, as a new Alertmanager aggregation group.
    restarted = await session.execute(
        update(AlertGroup)
        .where(*where, (AlertGroup.state == "resolved") | AlertGroup.next_flush_at.is_(None))
        .values(
            state="firing",
            first_fired_at=now,
            next_flush_at=first_flush,
            last_notified_hash=None,
            acked_by=None,
            acked_at=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if restarted.rowcount == 0:  # type: ignore[attr-defined]
        await session.execute(
            update(AlertGroup)
            .where(*where, AlertGroup.acked_at.is_not(None))
            .values(acked_by=None, acked_at=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )


def _same_trouble(a: AlertGroup, b: AlertGroup) -> bool:
    """Whether two groups tell of the same thing: the same incident, else the same labels."""
    incident = a.labels.get("incident")
    if incident is not None:
        return bool(b.labels.get("incident") == incident)
    return bool(a.labels == b.labels)


async def acknowledge(
    session: AsyncSession, group_id: uuid.UUID, actor: str, now: datetime
) -> list[AlertGroup]:
    """No repeats until the group resolves or fires again; the next flush announces the ack.

    One person acknowledges an incident once: the groups of the same incident at the other
    receivers (Slack and PagerDuty both paged) are acknowledged with it, each announcing it.
    Returns the group asked for, then those.
    """
    group = await session.get(AlertGroup, group_id)
    if group is None:
        raise NotFound(f"no alert group {group_id}")
    if group.state != "firing":
        raise NotFiring(f"alert group {group_id} is {group.state}; only a firing group is acked")
    others = (
        await session.scalars(
            select(AlertGroup).where(
                AlertGroup.state == "firing",
                AlertGroup.acked_by.is_(None),
                AlertGroup.id != group.id,
            )
        )
    ).all()
    acked = [group, *(g for g in others if _same_trouble(group, g))]
    for g in acked:
        g.acked_by = actor
        g.acked_at = now
        g.next_flush_at = now
        g.updated_at = now
    await session.flush()
    return acked


async def acknowledge_by_key(
    session: AsyncSession, key: str, actor: str, now: datetime
) -> list[AlertGroup]:
    """Acknowledge the firing group PagerDuty knows by `key` (its incident_key), and its
    incident's groups elsewhere; none when no unacknowledged firing group has that key (an
    incident from another source, or one acknowledged here first)."""
    firing = (
        await session.scalars(
            select(AlertGroup).where(AlertGroup.state == "firing", AlertGroup.acked_by.is_(None))
        )
    ).all()
    group = next((g for g in firing if dedup_key(g.group_key, g.receiver) == key), None)
    return [] if group is None else await acknowledge(session, group.id, actor, now)


async def create_silence(
    session: AsyncSession,
    matchers: Sequence[Any],
    author: str,
    comment: str,
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
) -> Silence:
    parsed = [matcher_of(m) for m in matchers]
    if not parsed:
        raise ValueError("a silence needs at least one matcher")
    if ends_at <= starts_at:
        raise ValueError("ends_at must be after starts_at")
    if ends_at <= now:
        raise ValueError("ends_at is in the past: the silence would never mute anything")
    silence = Silence(
        matchers=[{"name": m.name, "op": m.op, "value": m.value} for m in parsed],
        author=author,
        comment=comment,
        starts_at=starts_at,
        ends_at=ends_at,
        created_at=now,
    )
    session.add(silence)
    await session.flush()
    return silence


async def expire_silence(session: AsyncSession, silence_id: uuid.UUID, now: datetime) -> Silence:
    silence = await session.get(Silence, silence_id)
    if silence is None:
        raise NotFound(f"no silence {silence_id}")
    if silence.ends_at > now:
        silence.ends_at = now
        silence.starts_at = min(silence.starts_at, now)
    await session.flush()
    return silence


async def ack_group(
    session: AsyncSession, group_id: uuid.UUID, who: Actor, comment: str | None, now: datetime
) -> AlertGroup:
    """An operator acknowledges a group (and its incident's groups elsewhere), audited."""
    group, *also = await acknowledge(session, group_id, who.name, now)
    audit.record(
        session,
        who,
        "alert_group.ack",
        f"alert_group:{group_id}",
        {
            "group_key": group.group_key,
            "receiver": group.receiver,
            "also": [{"id": str(g.id), "receiver": g.receiver} for g in also],
            "comment": comment,
        },
        now,
    )
    return group


async def add_silence(session: AsyncSession, body: SilenceIn, who: Actor, now: datetime) -> Silence:
    """An operator's silence, audited; a ValueError names what is wrong with it."""
    starts = body.starts_at or now
    ends = body.ends_at or starts + body.duration  # type: ignore[operator]
    silence = await create_silence(
        session,
        [m if isinstance(m, str) else m.model_dump() for m in body.matchers],
        who.name,
        body.comment,
        starts,
        ends,
        now,
    )
    audit.record(
        session,
        who,
        "silence.create",
        f"silence:{silence.id}",
        {"matchers": silence.matchers, "comment": silence.comment, "ends_at": ends.isoformat()},
        now,
    )
    return silence


async def end_silence(
    session: AsyncSession, silence_id: uuid.UUID, who: Actor, now: datetime
) -> Silence:
    """An operator expires a silence now, audited."""
    silence = await expire_silence(session, silence_id, now)
    audit.record(session, who, "silence.expire", f"silence:{silence_id}", {}, now)
    return silence
