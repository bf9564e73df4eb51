"""PagerDuty Events API v2: trigger, acknowledge and resolve one alert per group.

The ``dedup_key`` is derived from the group, so every replica and every repeat talks about the
same PagerDuty alert. Answers: 202 accepted; 400 invalid (no retry); 429 and 5xx retry.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from sentinel.alerting.notifiers.base import (
    Notification,
    NotifyResult,
    cause_line,
    evidence_lines,
    headline,
    truncate,
)
from sentinel.alerting.notifiers.http import post
from sentinel.wire.severity import Severity

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_MAX = 1024
# PagerDuty takes up to 512 KB an event; a line this long is still read whole on a phone.
CAUSE_LINE_MAX = 2000
# Severity labels that are not PagerDuty's own words.
SEVERITY_ALIASES = {
    "page": Severity.CRITICAL,
    "high": Severity.ERROR,
    "medium": Severity.WARNING,
    "low": Severity.INFO,
}
_ACTIONS = {
    "firing": "trigger",
    "repeat": "trigger",
    "acknowledged": "acknowledge",
    "resolved": "resolve",
}


def pd_severity(label: str | None) -> Severity:
    """PagerDuty's severities are ours."""
    value = (label or "").lower()
    return SEVERITY_ALIASES.get(value) or Severity.parse(value, Severity.WARNING)


def build_event(group: Notification, routing_key: str) -> dict[str, Any]:
    action = _ACTIONS[group.kind]
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": group.dedup_key,
    }
    if action != "trigger":
        return event
    lead = group.lead
    labels = lead.labels
    summary = str(lead.annotations.get("summary") or headline(group))
    details: dict[str, Any] = {
        "firing": len(group.firing),
        "resolved": len(group.resolved),
        "muted": group.muted,
        "group_key": group.group_key,
        "labels": labels,
    }
    cause = cause_line(lead)
    if cause:
        # JSON carries the line as printed; PagerDuty shows custom details as text.
        details["cause_line"] = {
            "text": truncate(cause.text, CAUSE_LINE_MAX),
            "where": cause.where,
        }
    if evidence_lines(lead):
        details["evidence"] = evidence_lines(lead)[:50]
    if lead.annotations.get("decision"):
        details["decision"] = lead.annotations["decision"]
    event.update(
        client="Sentinel",
        client_url=group.public_url,
        payload={
            "summary": truncate(summary, SUMMARY_MAX),
            "source": labels.get("host") or labels.get("cluster") or "sentinel",
            "severity": pd_severity(labels.get("severity")),
            "timestamp": lead.starts_at.isoformat(),
            "component": f"GPU {labels['gpu']}"
            if labels.get("gpu")
            else labels.get("category", ""),
            "group": labels.get("job") or labels.get("cluster") or "",
            "class": labels.get("category") or labels.get("alertname", ""),
            "custom_details": details,
        },
    )
    link = group.incident_url(lead)
    if link:
        event["links"] = [{"href": link, "text": "Sentinel incident"}]
    return event


class PagerDutyNotifier:
    name = "pagerduty"

    def __init__(self, client: httpx.AsyncClient, routing_key: str, url: str = DEFAULT_URL) -> None:
        self._client = client
        self._key = routing_key
        self._url = url

    async def notify(self, group: Notification) -> NotifyResult:
        body = json.dumps(build_event(group, self._key)).encode()
        return await post(self._client, self._url, body, {})
