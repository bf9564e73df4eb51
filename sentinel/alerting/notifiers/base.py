"""What a notifier receives (one group's notification) and what it answers."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from sentinel.alerting.model import Labels
from sentinel.wire.severity import Severity

Kind = Literal["firing", "repeat", "acknowledged", "resolved"]


def _urgency(label: str | None) -> int:
    """Most severe first; a label that is no severity after info."""
    severity = Severity.parse(label)
    return -severity.rank if severity else 1


def dedup_key(group_key: str, receiver: str) -> str:
    """The key PagerDuty knows a group by: the same for every notification of the group, on
    every replica; PagerDuty's webhooks name the incident by it (``incident_key``)."""
    digest = hashlib.sha256(f"{group_key}|{receiver}".encode()).hexdigest()
    return f"sentinel-{digest[:32]}"


@dataclass(frozen=True)
class AlertView:
    fingerprint: str
    labels: Labels
    annotations: dict[str, Any]
    starts_at: datetime
    ends_at: datetime | None
    incident_id: uuid.UUID | None


@dataclass(frozen=True)
class Notification:
    """One alert group as it is to be announced; muted alerts are counted, not listed."""

    group_id: uuid.UUID
    group_key: str
    receiver: str
    kind: Kind
    group_labels: Labels
    firing: tuple[AlertView, ...]
    resolved: tuple[AlertView, ...]
    at: datetime
    public_url: str
    muted: int = 0
    acked_by: str | None = None
    send_resolved: bool = True

    @property
    def status(self) -> Literal["firing", "resolved"]:
        return "firing" if self.firing else "resolved"

    @property
    def alerts(self) -> tuple[AlertView, ...]:
        return self.firing + (self.resolved if self.send_resolved else ())

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.group_key, self.receiver)

    @property
    def lead(self) -> AlertView:
        """The alert to headline: a root cause first, then the most severe, then the oldest."""
        pool = self.firing or self.resolved
        return min(
            pool,
            key=lambda a: (
                a.labels.get("role") != "cause",
                _urgency(a.labels.get("severity")),
                a.starts_at,
            ),
        )

    @property
    def common_labels(self) -> Labels:
        alerts = self.alerts
        if not alerts:
            return dict(self.group_labels)
        first = alerts[0].labels
        return {k: v for k, v in first.items() if all(a.labels.get(k) == v for a in alerts[1:])}

    def incident_url(self, alert: AlertView) -> str | None:
        incident = alert.incident_id or alert.labels.get("incident")
        if not incident:
            return None
        return f"{self.public_url.rstrip('/')}/incidents/{incident}"


@dataclass(frozen=True)
class NotifyResult:
    """``retryable`` says whether trying again later may succeed (5xx, 429, timeouts)."""

    ok: bool
    retryable: bool = False
    error: str | None = None
    retry_after: float | None = None

    @classmethod
    def success(cls) -> NotifyResult:
        return cls(ok=True)


class Notifier(Protocol):
    """An integration: a leaf adapter that turns a notification into one outgoing message."""

    name: str

    async def notify(self, group: Notification) -> NotifyResult: ...


def evidence_lines(alert: AlertView) -> list[str]:
    raw = alert.annotations.get("evidence")
    if raw is None:
        return []
    if isinstance(raw, str):
        return raw.splitlines()
    if isinstance(raw, list):
        return [str(line) for line in raw]
    return [str(raw)]


@dataclass(frozen=True)
class CauseLine:
    """The raw line behind a root-cause alert as the host printed it, with where and when.

    Notifiers escape it for their medium; it is never markup."""

    text: str
    host: str | None = None
    source: str | None = None
    at: datetime | None = None

    @property
    def where(self) -> str:
        """``node17 · /var/log/kern.log · 2026-11-28 03:00:03 UTC``: what is known of it."""
        when = f"{self.at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if self.at else None
        return " · ".join(part for part in (self.host, self.source, when) if part)


def cause_line(alert: AlertView) -> CauseLine | None:
    """The alert's ``cause_line`` annotation, if it has a well-formed one (an alert from
    Alertmanager may carry anything under that name)."""
    raw = alert.annotations.get("cause_line")
    if not isinstance(raw, dict) or not isinstance(raw.get("text"), str) or not raw["text"]:
        return None

    def field(name: str) -> str | None:
        value = raw.get(name)
        return value if isinstance(value, str) and value else None

    at = None
    if stamp := field("at"):
        try:
            at = datetime.fromisoformat(stamp)
        except ValueError:
            at = None
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return CauseLine(raw["text"], field("host"), field("source"), at)


def headline(group: Notification) -> str:
    """``faulty_gpu on node1377 GPU 3 (job job-1)``: what and where, in one line."""
    labels = group.lead.labels
    what = labels.get("category") or labels.get("alertname", "alert")
    where = labels.get("host") or labels.get("cluster") or ""
    gpu = labels.get("gpu")
    text = what + (f" on {where}" if where else "") + (f" GPU {gpu}" if gpu else "")
    if labels.get("job"):
        text += f" (job {labels['job']})"
    return text


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
