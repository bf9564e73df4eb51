"""A cloud's scheduled maintenance of this instance, from its instance metadata service.

Where the host is a cloud instance, the provider announces what it will do to it (reboot,
migrate, retire, stop it) through the metadata service, in the shapes its public docs give:

- AWS: `GET /latest/meta-data/events/maintenance/scheduled` (IMDSv2: a session token from
  `PUT /latest/api/token` first), a JSON list of `{"NotBefore", "Code", "Description",
  "EventId", "NotAfter", "State"}`; a completed or canceled event stays listed a while.
- GCP: `GET /computeMetadata/v1/instance/maintenance-event` (header `Metadata-Flavor: Google`),
  `NONE`, or what the host will do: `MIGRATE_ON_HOST_MAINTENANCE`,
  `TERMINATE_ON_HOST_MAINTENANCE`.
- Azure: `GET /metadata/scheduledevents?api-version=2020-07-01` (header `Metadata: true`),
  `{"DocumentIncarnation", "Events": [{"EventId", "EventType", "ResourceType", "Resources",
  "EventStatus", "NotBefore", "Description", "EventSource", "DurationInSeconds"}]}`.

Each event is shipped once (source `cloud`) as one line naming the provider, the event and its
fields as the provider wrote them, which the knowledge reads as planned work: the host going
away at that time is the provider's maintenance, not a fault. Off by default
(`collectors.cloud`), since the metadata address means nothing outside that cloud.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import httpx

from sentinel.knowledge import PatternCatalog
from sentinel.wire import Observation
from sentinel_agent.collectors.base import Context
from sentinel_agent.collectors.hardware import HardwareRecords

log = logging.getLogger(__name__)

Provider = Literal["aws", "gcp", "azure"]
# Each provider's metadata service (link-local; GCP's name resolves inside GCP only).
ENDPOINTS: Final[Mapping[Provider, str]] = {
    "aws": "http://169.254.169.254",
    "gcp": "http://metadata.google.internal",
    "azure": "http://169.254.169.254",
}
AWS_TOKEN_TTL_S: Final = 21600
# AWS events that are over: listed for a while after, never news.
_AWS_OVER: Final = frozenset({"completed", "canceled"})
_AWS_OVER_PREFIXES: Final = ("[Completed]", "[Canceled]")


@dataclass(frozen=True)
class Scheduled:
    """One announced event: what identifies it across polls, and the line shipped for it."""

    key: str
    line: str


class MetadataError(ValueError):
    """The metadata service answered something that is not its documented shape."""


def _quoted(value: Any) -> str:
    return json.dumps(str(value))


def aws_events(body: str) -> list[Scheduled]:
    events = _json(body, "aws", list)
    out = []
    for event in events:
        if not isinstance(event, dict) or not event.get("EventId") or not event.get("Code"):
            raise MetadataError(f"aws: an event without EventId and Code: {event!r:.200}")
        description = str(event.get("Description", ""))
        if str(event.get("State", "")).lower() in _AWS_OVER or description.startswith(
            _AWS_OVER_PREFIXES
        ):
            continue
        line = (
            f"AWS EC2 scheduled event {event['EventId']}: {event['Code']} "
            f"Description={_quoted(description)} NotBefore={event.get('NotBefore', '')} "
            f"NotAfter={event.get('NotAfter', '')} State={event.get('State', '')}"
        )
        out.append(Scheduled(f"aws:{event['EventId']}", line))
    return out


def gcp_events(body: str) -> list[Scheduled]:
    value = body.strip()
    if not value or any(c.isspace() for c in value):
        raise MetadataError(f"gcp: maintenance-event is one word, not {value!r:.200}")
    if value == "NONE":
        return []
    return [Scheduled(f"gcp:{value}", f"GCE maintenance-event: {value}")]


def azure_events(body: str) -> list[Scheduled]:
    document = _json(body, "azure", dict)
    events = document.get("Events")
    if not isinstance(events, list):
        raise MetadataError(f"azure: no Events list in {body!r:.200}")
    out = []
    for event in events:
        if not isinstance(event, dict) or not event.get("EventId") or not event.get("EventType"):
            raise MetadataError(f"azure: an event without EventId and EventType: {event!r:.200}")
        resources = ",".join(str(r) for r in event.get("Resources") or [])
        line = (
            f"Azure scheduled event {event['EventId']}: {event['EventType']} "
            f"EventSource={event.get('EventSource', '')} "
            f"EventStatus={event.get('EventStatus', '')} "
            f"NotBefore={_quoted(event.get('NotBefore', ''))} "
            f"DurationInSeconds={event.get('DurationInSeconds', '')} Resources={resources} "
            f"Description={_quoted(event.get('Description', ''))}"
        )
        out.append(Scheduled(f"azure:{event['EventId']}", line))
    return out


PARSERS: Final[Mapping[Provider, Callable[[str], list[Scheduled]]]] = {
    "aws": aws_events,
    "gcp": gcp_events,
    "azure": azure_events,
}


def _json(body: str, provider: str, shape: type) -> Any:
    try:
        data = json.loads(body)
    except ValueError:
        raise MetadataError(f"{provider}: not JSON: {body!r:.200}") from None
    if not isinstance(data, shape):
        raise MetadataError(f"{provider}: expected a JSON {shape.__name__}: {body!r:.200}")
    return data


def connect(
    provider: Provider, endpoint: str | None = None, timeout_s: float = 2.0
) -> httpx.Client:
    """A client for the provider's metadata service; never through a proxy (the address is
    the instance's own, and a proxy would answer for another)."""
    return httpx.Client(
        base_url=(endpoint or ENDPOINTS[provider]).rstrip("/"), timeout=timeout_s, trust_env=False
    )


class CloudMaintenanceCollector:
    name = "cloud"

    def __init__(
        self,
        ctx: Context,
        *,
        provider: Provider,
        client: httpx.Client,
        interval_s: float,
        patterns: PatternCatalog | None = None,
    ) -> None:
        self.interval_s = interval_s
        self._ctx = ctx
        self._provider: Provider = provider
        self._client = client
        self._records = HardwareRecords(ctx, "cloud", patterns)
        self._key = f"{self.name}:{provider}"
        self._seen: set[str] = _restore(ctx.positions.get(self._key))
        self._token: str | None = None
        self._token_until = 0.0

    def poll(self) -> Sequence[Observation]:
        events = PARSERS[self._provider](self._fetch())
        now = {e.key for e in events}
        new = [e for e in events if e.key not in self._seen]
        # An event no longer listed is forgotten: announced again, it is news again.
        self._seen = now
        path = f"{self._client.base_url}{self._path()}"
        return [self._records.record([e.line], path=path) for e in new]

    def _path(self) -> str:
        return {
            "aws": "/latest/meta-data/events/maintenance/scheduled",
            "gcp": "/computeMetadata/v1/instance/maintenance-event",
            "azure": "/metadata/scheduledevents?api-version=2020-07-01",
        }[self._provider]

    def _fetch(self) -> str:
        headers = {
            "aws": lambda: {"X-aws-ec2-metadata-token": self._aws_token()},
            "gcp": lambda: {"Metadata-Flavor": "Google"},
            "azure": lambda: {"Metadata": "true"},
        }[self._provider]()
        response = self._client.get(self._path(), headers=headers)
        if self._provider == "aws" and response.status_code == 401:
            self._token = None  # expired early (the instance was stopped and started)
            response = self._client.get(
                self._path(), headers={"X-aws-ec2-metadata-token": self._aws_token()}
            )
        response.raise_for_status()
        return response.text

    def _aws_token(self) -> str:
        """IMDSv2's session token, kept until shortly before it expires."""
        now = self._ctx.clock.monotonic()
        if self._token is None or now >= self._token_until:
            response = self._client.put(
                "/latest/api/token",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(AWS_TOKEN_TTL_S)},
            )
            response.raise_for_status()
            self._token = response.text.strip()
            self._token_until = now + AWS_TOKEN_TTL_S - 60
        return self._token

    def positions(self) -> Mapping[str, str | None]:
        return {self._key: json.dumps(sorted(self._seen)) if self._seen else None}

    def close(self) -> None:
        self._client.close()


def _restore(saved: str | None) -> set[str]:
    if not saved:
        return set()
    try:
        return {str(key) for key in json.loads(saved)}
    except (ValueError, TypeError):
        log.warning("ignoring the unreadable cloud events seen %r", saved)
        return set()
