"""An existing Alertmanager as a receiver: Sentinel's alerts posted to its v2 API, so a site
routes, silences and inhibits them with the configuration it already runs.

``POST /api/v2/alerts`` takes a list of alerts (labels, annotations, startsAt, endsAt,
generatorURL); Alertmanager dedups them by their labels. A client is expected to post a firing
alert again before its ``endsAt`` passes, or Alertmanager resolves it: each firing alert is
posted with ``endsAt = now + valid_for`` and the route's ``repeat_interval`` (checked at
start-up to be shorter) posts it again. A resolved alert is posted with the incident's end as
``endsAt``, which resolves it at once. Answers: 200 accepted; 400 invalid (no retry); 5xx and
timeouts retry with the dispatcher's backoff, like every notifier.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx

from sentinel.alerting.notifiers.base import AlertView, Notification, NotifyResult
from sentinel.alerting.notifiers.http import post

API_PATH: Final = "/api/v2/alerts"
# Marks the alerts Sentinel posted, so a site whose Alertmanager also sends to Sentinel's
# intake (/api/v1/alertmanager) can route them away, and the intake can ignore them.
GENERATOR_LABEL: Final = "sentinel_generated"
# Alertmanager's annotations are strings; a long evidence list is cut, not refused.
ANNOTATION_MAX: Final = 8000


class CredentialsError(ValueError):
    """A credentials file that cannot be read or has the wrong shape (named in the message)."""


@dataclass(frozen=True)
class AlertmanagerAuth:
    """HTTP credentials for the Alertmanager (or the proxy in front of it), read from files."""

    header: str | None = None

    @classmethod
    def from_files(
        cls, basic_auth_file: Path | None, bearer_token_file: Path | None
    ) -> AlertmanagerAuth:
        if basic_auth_file is not None and bearer_token_file is not None:
            raise CredentialsError("set one of the basic auth file and the bearer token file")
        if basic_auth_file is not None:
            text = _read(basic_auth_file)
            if ":" not in text:
                raise CredentialsError(f"{basic_auth_file}: expected one line user:password")
            return cls("Basic " + base64.b64encode(text.encode()).decode())
        if bearer_token_file is not None:
            return cls("Bearer " + _read(bearer_token_file))
        return cls()

    def headers(self) -> dict[str, str]:
        return {"Authorization": self.header} if self.header else {}


def _read(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise CredentialsError(f"{path}: cannot read: {exc.strerror}") from None
    if not text:
        raise CredentialsError(f"{path}: empty")
    return text


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _annotation(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, list):
        text = "\n".join(str(v) for v in value)
    else:
        text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= ANNOTATION_MAX else text[: ANNOTATION_MAX - 1] + "…"


def postable_alert(
    alert: AlertView, group: Notification, *, resolved: bool, valid_for: timedelta
) -> dict[str, Any]:
    """One alert in the v2 API's ``postableAlert`` shape."""
    # Resolved: when the incident ended. Firing: valid until the next post is due.
    ends_at = (alert.ends_at or group.at) if resolved else group.at + valid_for
    annotations = {k: _annotation(v) for k, v in alert.annotations.items()}
    url = group.incident_url(alert)
    if url is not None:
        annotations.setdefault("incident_url", url)
    return {
        "labels": {**{k: str(v) for k, v in alert.labels.items()}, GENERATOR_LABEL: "true"},
        "annotations": annotations,
        "startsAt": _iso(alert.starts_at),
        "endsAt": _iso(ends_at),
        "generatorURL": url or group.public_url,
    }


def build_body(group: Notification, valid_for: timedelta) -> list[dict[str, Any]]:
    """Every alert of the group that is not muted, firing or resolved: Alertmanager applies
    its own ``send_resolved``, so it is always told of a resolution."""
    return [postable_alert(a, group, resolved=False, valid_for=valid_for) for a in group.firing] + [
        postable_alert(a, group, resolved=True, valid_for=valid_for) for a in group.resolved
    ]


class AlertmanagerNotifier:
    name = "alertmanager"

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        *,
        valid_for: timedelta,
        auth: AlertmanagerAuth | None = None,
    ) -> None:
        self._client = client
        self._url = url.rstrip("/") + API_PATH
        self._valid_for = valid_for
        self._auth = auth or AlertmanagerAuth()

    @property
    def valid_for(self) -> timedelta:
        return self._valid_for

    async def notify(self, group: Notification) -> NotifyResult:
        body = build_body(group, self._valid_for)
        if not body:
            return NotifyResult.success()  # every alert muted: nothing to tell
        return await post(self._client, self._url, json.dumps(body).encode(), self._auth.headers())
