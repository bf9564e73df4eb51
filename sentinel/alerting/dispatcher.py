"""The alert sender: every due group goes through a pipeline of stages, once, on one replica.

A flush finds the groups whose timer is due, then for each one: takes the group's lease (one
sender per group across replicas) and re-reads the group and its notification log in that
same transaction; runs the stages (mute → dedup → notify) with no transaction open while
the network is slow; then records what happened (each alert's ``muted_by``, the log entry,
the group's next tick or retry) and gives the lease back. A group ticks every
``group_interval`` while it has firing alerts; the dedup stage decides whether a tick sends.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentinel.alerting.config import ReceiverSpec, Route, RoutingConfig
from sentinel.alerting.muting import Candidate, Inhibitor, Muter, Silencer, mute_reason
from sentinel.alerting.notifiers.base import AlertView, Kind, Notification, Notifier, NotifyResult
from sentinel.alerting.settings import RetryPolicy
from sentinel.db import leases
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Alert, AlertGroup, NotificationLog, Silence

log = logging.getLogger(__name__)

# Resolved alerts are kept in view this long, so that their group can announce them.
RESOLVED_KEEP = timedelta(hours=24)


@dataclass
class Member:
    """An alert as one group sees it at this flush."""

    view: AlertView
    firing: bool
    stored_state: str
    stored_muted_by: str | None
    muted_by: str | None = None

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.view.fingerprint, self.view.labels, self.firing)


@dataclass
class LastAttempt:
    status: str
    payload_hash: str
    attempts: int
    at: datetime


@dataclass
class FlushContext:
    """What the stages share for one group at one flush; stages fill in the decision."""

    now: datetime
    group: AlertGroup
    route: Route
    receiver: ReceiverSpec
    public_url: str
    last_attempt: LastAttempt | None
    members: list[Member]
    kind: Kind | None = None
    content_hash: str | None = None
    notification: Notification | None = None
    result: NotifyResult | None = None

    @property
    def any_firing(self) -> bool:
        return any(m.firing for m in self.members)


class Stage(Protocol):
    """One step of the pipeline; an empty answer stops it (nothing to send)."""

    async def __call__(self, ctx: FlushContext, alerts: list[Member]) -> list[Member]: ...


class MuteStage:
    """Inhibition and silences: a muted alert is dropped here and records why."""

    def __init__(self, muters: Sequence[Muter]) -> None:
        self._muters = muters

    async def __call__(self, ctx: FlushContext, alerts: list[Member]) -> list[Member]:
        for m in alerts:
            m.muted_by = mute_reason(self._muters, m.candidate)
        return [m for m in alerts if m.muted_by is None]


def _digest(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


class DedupStage:
    """Alertmanager's dedup against the notification log: send what changed, repeat after
    ``repeat_interval`` unless acknowledged, announce the resolution of what was announced.
    Content that failed for good (a 400, or out of attempts) waits for ``repeat_interval``."""

    async def __call__(self, ctx: FlushContext, alerts: list[Member]) -> list[Member]:
        group = ctx.group
        firing = sorted(m.view.fingerprint for m in alerts if m.firing)
        resolved = sorted(m.view.fingerprint for m in alerts if not m.firing)
        if not firing:
            if not resolved or group.last_notified_hash is None:
                return []  # nothing was announced in this cycle, so nothing to take back
            if not ctx.receiver.send_resolved:
                return []
            kind: Kind = "resolved"
            content: dict[str, Any] = {"resolved": resolved}
        elif group.acked_at is not None:
            if group.last_notified_hash is None:
                return []  # acknowledged before it was ever announced: nobody to tell
            kind, content = "acknowledged", {"acked": group.acked_at.isoformat()}
        else:
            kind, content = "firing", {"firing": firing, "resolved": resolved}
        digest = _digest(content)
        last = ctx.last_attempt
        if (
            last is not None
            and last.status == "failed"
            and last.payload_hash == digest
            and ctx.now - last.at < ctx.route.repeat_interval
        ):
            return []  # given up on this content (rejected, or out of attempts): not every tick
        if digest == group.last_notified_hash:
            due = group.last_notified_at is None or (
                ctx.now - group.last_notified_at >= ctx.route.repeat_interval
            )
            if kind != "firing" or not due:
                return []
            kind = "repeat"
        ctx.kind, ctx.content_hash = kind, digest
        return alerts


class NotifyStage:
    """Hands the group to the receiver's integration; never raises (a bug is retryable)."""

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    async def __call__(self, ctx: FlushContext, alerts: list[Member]) -> list[Member]:
        assert ctx.kind is not None
        muted = sum(1 for m in ctx.members if m.muted_by is not None and m.firing)
        ctx.notification = Notification(
            group_id=ctx.group.id,
            group_key=ctx.group.group_key,
            receiver=ctx.group.receiver,
            kind=ctx.kind,
            group_labels=dict(ctx.group.labels),
            firing=tuple(m.view for m in alerts if m.firing),
            resolved=tuple(m.view for m in alerts if not m.firing),
            at=ctx.now,
            public_url=ctx.public_url,
            muted=muted,
            acked_by=ctx.group.acked_by,
            send_resolved=ctx.receiver.send_resolved,
        )
        try:
            ctx.result = await self._notifier.notify(ctx.notification)
        except Exception as exc:
            log.exception("notifier %s failed on group %s", self._notifier.name, ctx.group.id)
            ctx.result = NotifyResult(ok=False, retryable=True, error=f"notifier crashed: {exc!r}")
        return alerts if ctx.result.ok else []


async def run_pipeline(stages: Sequence[Stage], ctx: FlushContext, alerts: list[Member]) -> None:
    for stage in stages:
        alerts = await stage(ctx, alerts)
        if not alerts:
            return


@dataclass
class FlushReport:
    due: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    quiet: int = 0
    busy: int = 0
    errors: int = 0
    notifications: list[Notification] = field(default_factory=list)


class Dispatcher:
    """Flushes due alert groups; safe to run on several replicas at once (see module doc)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        config: RoutingConfig,
        notifiers: Mapping[str, Notifier],
        *,
        public_url: str,
        retry: RetryPolicy | None = None,
        lease_ttl: timedelta = timedelta(seconds=60),
        identity: str | None = None,
        max_concurrent: int = 8,
    ) -> None:
        missing = set(config.receivers) - set(notifiers)
        if missing:
            raise ValueError(f"no notifier for receivers {sorted(missing)}")
        self.sessions = sessions
        self.config = config
        self.notifiers = dict(notifiers)
        self.public_url = public_url
        self.retry = retry or RetryPolicy()
        self.lease_ttl = lease_ttl
        self.identity = identity or leases.process_identity()
        self.max_concurrent = max_concurrent

    async def flush(self, now: datetime) -> FlushReport:
        report = FlushReport()
        async with unit_of_work(self.sessions) as session:
            due = list(
                await session.scalars(
                    select(AlertGroup.id)
                    .where(AlertGroup.next_flush_at <= now)
                    .order_by(AlertGroup.next_flush_at)
                )
            )
            if not due:
                return report
            alerts = (
                await session.scalars(
                    select(Alert).where(
                        or_(Alert.state == "firing", Alert.updated_at >= now - RESOLVED_KEEP)
                    )
                )
            ).all()
            silences = (await session.scalars(select(Silence).where(Silence.ends_at > now))).all()
        report.due = len(due)
        groups: dict[tuple[str, str], list[Member]] = {}
        for alert in alerts:
            for route in self.config.routes_for(alert.labels):
                groups.setdefault((route.group_key(alert.labels), route.receiver), []).append(
                    _member(alert, now)
                )
        candidates = list(
            {m.view.fingerprint: m.candidate for ms in groups.values() for m in ms}.values()
        )
        muters: list[Muter] = [
            Inhibitor(self.config.inhibit_rules, candidates),
            Silencer(silences, now),
        ]
        # Groups are independent: a slow receiver must not hold up the others' messages.
        gate = asyncio.Semaphore(self.max_concurrent)

        async def one(group_id: uuid.UUID) -> None:
            async with gate:
                try:
                    await self._flush_group(group_id, groups, muters, now, report)
                except SQLAlchemyError:
                    # The lease (if taken) expires; the group is tried again then.
                    log.exception("alert group %s: database error during flush", group_id)
                    report.errors += 1

        await asyncio.gather(*(one(g) for g in due))
        return report

    async def _flush_group(
        self,
        group_id: uuid.UUID,
        groups: Mapping[tuple[str, str], list[Member]],
        muters: Sequence[Muter],
        now: datetime,
        report: FlushReport,
    ) -> None:
        lease = f"alert-group:{group_id}"
        async with unit_of_work(self.sessions) as session:
            if not await leases.try_acquire(session, lease, self.identity, now, self.lease_ttl):
                report.busy += 1
                return
            group = await session.get(AlertGroup, group_id, populate_existing=True)
            if group is None or group.next_flush_at is None or group.next_flush_at > now:
                # Another replica flushed it between our look and our lease.
                await leases.release(session, lease, self.identity)
                report.busy += 1
                return
            row = (
                await session.execute(
                    select(
                        NotificationLog.status,
                        NotificationLog.payload_hash,
                        NotificationLog.attempts,
                        NotificationLog.at,
                    )
                    .where(
                        NotificationLog.group_key == group.group_key,
                        NotificationLog.receiver == group.receiver,
                    )
                    .order_by(NotificationLog.id.desc())
                    .limit(1)
                )
            ).first()
        receiver = self.config.receivers.get(group.receiver)
        route = self.config.route(group.group_key.split(":", 1)[0]) or self.config.root
        members = [
            Member(m.view, m.firing, m.stored_state, m.stored_muted_by)
            for m in groups.get((group.group_key, group.receiver), [])
        ]
        ctx = FlushContext(
            now=now,
            group=group,
            route=route,
            receiver=receiver or ReceiverSpec(name=group.receiver, type="log"),
            public_url=self.public_url,
            last_attempt=LastAttempt(*row) if row else None,
            members=members,
        )
        if receiver is None:
            log.warning(
                "alert group %s: receiver %r no longer configured", group.id, group.receiver
            )
            ctx.members = []
        else:
            stages: list[Stage] = [
                MuteStage(muters),
                DedupStage(),
                NotifyStage(self.notifiers[receiver.name]),
            ]
            await run_pipeline(stages, ctx, list(ctx.members))
        async with unit_of_work(self.sessions) as session:
            await _persist_members(session, ctx.members, now)
            await self._record(session, ctx, report)
            await leases.release(session, lease, self.identity)

    async def _record(self, session: AsyncSession, ctx: FlushContext, report: FlushReport) -> None:
        now, group, result = ctx.now, ctx.group, ctx.result
        tick = now + ctx.route.group_interval
        values: dict[str, Any] = {"updated_at": now}
        if result is None:
            report.quiet += 1
            if ctx.any_firing:
                values["next_flush_at"] = tick
            else:
                values.update(state="resolved", next_flush_at=None)
        else:
            assert ctx.kind is not None and ctx.content_hash is not None
            if result.ok:
                status, attempts = "sent", 1
                values.update(
                    last_notified_hash=ctx.content_hash,
                    last_notified_at=now,
                    next_flush_at=tick if ctx.any_firing else None,
                )
                if not ctx.any_firing:
                    values["state"] = "resolved"
                report.sent += 1
                assert ctx.notification is not None
                report.notifications.append(ctx.notification)
            else:
                last = ctx.last_attempt
                attempts = (
                    last.attempts + 1
                    if last and last.status == "retrying" and last.payload_hash == ctx.content_hash
                    else 1
                )
                if result.retryable and attempts < self.retry.max_attempts:
                    status = "retrying"
                    wait = self.retry.backoff_s(attempts, result.retry_after)
                    values["next_flush_at"] = now + timedelta(seconds=wait)
                    report.retrying += 1
                else:
                    status = "failed"
                    values["next_flush_at"] = tick
                    report.failed += 1
                log.warning(
                    "alert group %s to %s: %s (%s, attempt %d)",
                    group.group_key,
                    group.receiver,
                    result.error,
                    status,
                    attempts,
                )
            session.add(
                NotificationLog(
                    group_key=group.group_key,
                    receiver=group.receiver,
                    notifier=ctx.receiver.type,
                    kind=ctx.kind,
                    payload_hash=ctx.content_hash,
                    alerts=len(ctx.notification.alerts) if ctx.notification else 0,
                    status=status,
                    attempts=attempts,
                    error=result.error,
                    at=now,
                )
            )
        await session.execute(
            update(AlertGroup)
            .where(AlertGroup.id == group.id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )


def _member(alert: Alert, now: datetime) -> Member:
    firing = alert.state == "firing" and (alert.ends_at is None or alert.ends_at > now)
    view = AlertView(
        fingerprint=alert.fingerprint,
        labels=dict(alert.labels),
        annotations=dict(alert.annotations),
        starts_at=alert.starts_at,
        ends_at=alert.ends_at,
        incident_id=alert.incident_id,
    )
    return Member(view, firing, alert.state, alert.muted_by)


_UPDATE_ALERT = (
    update(Alert.__table__)  # type: ignore[arg-type]
    .where(Alert.__table__.c.fingerprint == bindparam("b_fp"))
    .values(muted_by=bindparam("b_muted"), state=bindparam("b_state"), updated_at=bindparam("b_at"))
)


async def _persist_members(session: AsyncSession, members: Sequence[Member], now: datetime) -> None:
    """Write each alert's mute reason and state where they changed (sorted: no deadlocks)."""
    changed = sorted(
        (
            {
                "b_fp": m.view.fingerprint,
                "b_muted": m.muted_by,
                "b_state": "firing" if m.firing else "resolved",
                "b_at": now,
            }
            for m in members
            if m.muted_by != m.stored_muted_by
            or ("firing" if m.firing else "resolved") != m.stored_state
        ),
        key=lambda r: str(r["b_fp"]),
    )
    if changed:
        await session.execute(_UPDATE_ALERT, changed)
