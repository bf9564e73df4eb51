"""Alerts from Prometheus/Alertmanager as evidence, an input like the agents' batches: the
webhook payload (version "4"), stored as ``Event`` rows of kind "alertmanager". Triage reads
them from the events table as it reads every other event. A redelivery of the same alert
(Alertmanager repeats a group every repeat_interval) maps to the same event id and is not
stored twice.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.alerting.model import LABELS_SCHEMA, check_labels
from sentinel.alerting.notifiers.alertmanager import GENERATOR_LABEL
from sentinel.db.models import Event
from sentinel.db.partitions import insert_events_once
from sentinel.inputs import NO_NUL, EndTime, ForeignText, Time
from sentinel.wire.severity import Severity

EVENT_KIND = "alertmanager"
# The machine an alert is about: dcgm-exporter's Hostname first, then the usual node labels;
# instance (the scrape target, often an exporter's address) only when nothing better exists.
HOST_LABELS = ("Hostname", "hostname", "node", "nodename", "host", "kubernetes_node", "instance")
# Label names as Prometheus has them and bounded values: they reach events, alerts and Slack.
AmLabels = Annotated[dict[str, str], AfterValidator(check_labels), WithJsonSchema(LABELS_SCHEMA)]
AmAnnotations = dict[
    Annotated[str, StringConstraints(max_length=1024, pattern=NO_NUL)], ForeignText
]
# The job an event may be linked to is a jobs row's id: a longer label cannot name one.
_JOB_ID_MAX = 128
_NAMESPACE = uuid.UUID("6f1f7c8e-3c59-4a55-9d0e-8f6a1e0e7a41")


class _Model(BaseModel):
    # Alertmanager adds fields over time; unknown ones are ignored, not refused (nor stored:
    # what is stored is what was checked).
    model_config = ConfigDict(extra="ignore")


class AmAlert(_Model):
    status: Literal["firing", "resolved"]
    labels: AmLabels
    annotations: AmAnnotations = Field(default_factory=dict)
    startsAt: Time
    endsAt: EndTime | None = None
    generatorURL: ForeignText = ""
    fingerprint: str = Field(min_length=1, max_length=64, pattern=NO_NUL)


class AmWebhook(_Model):
    """Alertmanager's webhook payload, version 4."""

    version: Literal["4"]
    receiver: ForeignText
    status: Literal["firing", "resolved"]
    alerts: list[AmAlert] = Field(max_length=10_000)
    groupLabels: AmLabels = Field(default_factory=dict)
    commonLabels: AmLabels = Field(default_factory=dict)
    commonAnnotations: AmAnnotations = Field(default_factory=dict)
    externalURL: ForeignText = ""
    groupKey: ForeignText
    truncatedAlerts: int = Field(0, ge=0)


def host_of(labels: dict[str, str]) -> str:
    for name in HOST_LABELS:
        value = labels.get(name)
        if value:
            # instance is host:port; keep the host (IPv6 in brackets keeps its brackets).
            return re.sub(r":\d+$", "", value) if name == "instance" else value
    return "unknown"


def _gpu(labels: dict[str, str]) -> int | None:
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    value = labels.get("gpu")
    return int(value) if value is not None and re.fullmatch(r"[0-9]{1,3}", value) else None


def _job(labels: dict[str, str]) -> str | None:
    value = labels.get("job_id")
    return value if value is not None and len(value) <= _JOB_ID_MAX else None


def _observed_at(alert: AmAlert, now: datetime) -> datetime:
    if alert.status == "firing":
        return alert.startsAt
    # Alertmanager writes the zero time (0001-01-01) for "no end"; then it ended by now.
    return alert.endsAt if alert.endsAt is not None and alert.endsAt.year > 1 else now


def event_rows(payload: AmWebhook, now: datetime) -> list[dict[str, Any]]:
    rows = []
    for alert in payload.alerts:
        if alert.labels.get(GENERATOR_LABEL) == "true":
            # Sentinel's own alert, back from a site Alertmanager that routes everything here:
            # our conclusion, not evidence (and taking it as evidence would feed on itself).
            continue
        body = alert.model_dump(mode="json")
        body["receiver"] = payload.receiver
        body["groupKey"] = payload.groupKey
        rows.append(
            {
                "id": uuid.uuid5(
                    _NAMESPACE, f"{alert.fingerprint}|{alert.startsAt.isoformat()}|{alert.status}"
                ),
                "host_id": host_of(alert.labels)[:128],
                "seq": 0,
                "kind": EVENT_KIND,
                "observed_at": _observed_at(alert, now),
                "received_at": now,
                "gpu_index": _gpu(alert.labels),
                "job_id": _job(alert.labels),
                "critical": alert.labels.get("severity") == Severity.CRITICAL,
                "payload": body,
            }
        )
    return rows


async def store_events(session: AsyncSession, payload: AmWebhook, now: datetime) -> list[Event]:
    """Insert the payload's alerts as events; returns only the ones not seen before."""
    rows = event_rows(payload, now)
    if not rows:
        return []
    # A resolved alert's time may be now (no end given): ids are looked up first.
    new = await insert_events_once(session, rows)
    return [Event(**row) for row in rows if row["id"] in new]
