"""A generic webhook: JSON signed with HMAC-SHA256 so the receiver can tell it came from us.

Headers: ``X-Sentinel-Timestamp: <unix seconds>`` and
``X-Sentinel-Signature: sha256=<hex of HMAC(secret, timestamp + "." + body)>``; a receiver
should reject stale timestamps to stop replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx

from sentinel.alerting.notifiers.base import AlertView, Notification, NotifyResult
from sentinel.alerting.notifiers.http import post

SIGNATURE_HEADER = "X-Sentinel-Signature"
TIMESTAMP_HEADER = "X-Sentinel-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def _alert(a: AlertView, status: str) -> dict[str, Any]:
    return {
        "status": status,
        "fingerprint": a.fingerprint,
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": a.starts_at.isoformat(),
        "endsAt": a.ends_at.isoformat() if a.ends_at else None,
        "incidentId": str(a.incident_id) if a.incident_id else None,
    }


def build_body(group: Notification) -> dict[str, Any]:
    return {
        "version": "sentinel-1",
        "kind": group.kind,
        "status": group.status,
        "receiver": group.receiver,
        "groupKey": group.group_key,
        "dedupKey": group.dedup_key,
        "groupLabels": group.group_labels,
        "commonLabels": group.common_labels,
        "ackedBy": group.acked_by,
        "muted": group.muted,
        "alerts": [_alert(a, "firing") for a in group.firing]
        + ([_alert(a, "resolved") for a in group.resolved] if group.send_resolved else []),
    }


class WebhookNotifier:
    name = "webhook"

    def __init__(self, client: httpx.AsyncClient, url: str, secret: str) -> None:
        self._client = client
        self._url = url
        self._secret = secret

    async def notify(self, group: Notification) -> NotifyResult:
        body = json.dumps(build_body(group)).encode()
        timestamp = str(int(group.at.timestamp()))
        headers = {
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        return await post(self._client, self._url, body, headers)
