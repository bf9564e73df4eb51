"""The BMC over Redfish: new entries of its logs (SEL, event log) and health changes of the
power supplies, fans, temperatures and each chassis' rollup.

Each poll walks the service from `/redfish/v1`: the LogServices of every Manager and System
(their `Entries`, following `Members@odata.nextLink`) and every Chassis with its `Power`
(`PowerSupplies`) or `PowerSubsystem`, its `Thermal` (`Fans`, `Temperatures`) or
`ThermalSubsystem` (its `Fans`). A log entry is shipped once: each log keeps the newest entry
shipped (its `Created` time, then its `Id`), stored with the read positions, so a restart
re-ships nothing; on the first start a log's existing entries are only learned unless
`from_start`. Where the service root says it takes `$filter` (ProtocolFeaturesSupported.
FilterQuery), a log known before is read from its newest entry shipped on
(`$filter=Created ge '...'`), not whole; a BMC that says so but refuses the query is read whole
from then on. A component is shipped when its `Health` differs from the last one seen (at
first: from OK). A poll that fails part way (the BMC stops answering) ships nothing and moves
no position.

Records are the resource as the BMC serves it, one compact JSON line (a pasted `curl` of the
entry reads the same): the entry's Message, MessageId, Severity, SensorType and Created; a
component's @odata.id, Name and Status.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import httpx

from sentinel.knowledge import PatternCatalog
from sentinel.wire import LogRecord, Observation
from sentinel.wire.severity import Severity
from sentinel_agent.collectors.base import Context
from sentinel_agent.collectors.hardware import HardwareRecords
from sentinel_agent.collectors.logs import UNMATCHED

log = logging.getLogger(__name__)

ROOT: Final = "/redfish/v1"
# A log read in one poll stops after this many pages (a BMC's log holds a few thousand).
_MAX_PAGES: Final = 50
# What a record no pattern knows is, by the BMC's own word (LogEntry.Severity, Status.Health).
_SEVERITY: Final[Mapping[str, Severity]] = {
    "Critical": Severity.ERROR,
    "Warning": Severity.WARNING,
    "OK": Severity.INFO,
}
_HEALTHY: Final = "OK"
# An entry is dated by its `Created` (when the BMC logged it, which a poll reads up to
# redfish_s later: a power supply's failure is then seen before the GPUs it took down, not
# after) unless that is further back than this, or ahead of now: a BMC clock that is off.
MAX_ENTRY_AGE: Final = timedelta(minutes=10)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    @classmethod
    def read(cls, path: Path) -> Credentials:
        """The file's first line, `user:password` (curl -u's form; the password may hold ':')."""
        lines = path.read_text().splitlines()
        username, sep, password = (lines[0] if lines else "").partition(":")
        if not sep or not username:
            raise ValueError(f"{path}: the first line must be user:password")
        return cls(username, password)


def connect(
    url: str,
    credentials: Credentials,
    *,
    ca_bundle: Path | None = None,
    insecure: bool = False,
    timeout_s: float = 10.0,
) -> httpx.Client:
    """An HTTP client for the BMC: TLS verified (by the system's CAs or `ca_bundle`) unless
    `insecure`, which is logged as a warning each start."""
    verify: ssl.SSLContext | bool
    if insecure:
        log.warning("Redfish at %s: TLS verification is off (collectors.redfish.insecure)", url)
        verify = False
    else:
        verify = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    return httpx.Client(
        base_url=url.rstrip("/"),
        auth=(credentials.username, credentials.password),
        verify=verify,
        timeout=timeout_s,
        headers={"Accept": "application/json"},
    )


def _created(entry: Mapping[str, Any]) -> str:
    """`Created` in a form that sorts by time (UTC ISO), "" when absent or unreadable."""
    raw = entry.get("Created")
    if not isinstance(raw, str):
        return ""
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return ""
    # A BMC without a zone keeps its clock in UTC (IPMI's SEL time has no zone).
    utc = moment if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.replace(tzinfo=None).isoformat()


def _position(entry: Mapping[str, Any]) -> tuple[str, int, str]:
    """Where an entry stands in its log: by Created, then by Id (numeric where it is)."""
    entry_id = str(entry.get("Id", ""))
    return _created(entry), int(entry_id) if entry_id.isdigit() else -1, entry_id


def _line(resource: Mapping[str, Any]) -> str:
    return json.dumps(resource, ensure_ascii=False)


def _link(value: Any) -> str | None:
    if isinstance(value, Mapping) and isinstance(value.get("@odata.id"), str):
        return str(value["@odata.id"])
    return None


class RedfishCollector:
    name = "redfish"

    def __init__(
        self,
        ctx: Context,
        *,
        client: httpx.Client,
        interval_s: float,
        from_start: bool = False,
        patterns: PatternCatalog | None = None,
    ) -> None:
        self.interval_s = interval_s
        self._client = client
        self._from_start = from_start
        self._records = HardwareRecords(ctx, "redfish", patterns)
        self._key = f"{self.name}:{client.base_url}"
        self._logs, self._health = _restore(ctx.positions.get(self._key))
        # Whether the BMC reads its logs from a time on: its root says so, and it has not
        # refused a filtered read since.
        self._filter = False
        self._filter_refused = False

    def _get(self, path: str) -> dict[str, Any]:
        response = self._client.get(path)
        response.raise_for_status()
        body = response.json()
        if not isinstance(body, dict):
            raise ValueError(f"{path}: not a Redfish resource")
        return body

    def _members(self, collection: str) -> Iterator[dict[str, Any]]:
        """The members of a collection, each read where the BMC gave only its link."""
        page: str | None = collection
        for _ in range(_MAX_PAGES):
            if page is None:
                return
            body = self._get(page)
            for member in body.get("Members", []):
                if not isinstance(member, dict):
                    continue
                link = _link(member)
                yield member if len(member) > 1 or link is None else self._get(link)
            next_page = body.get("Members@odata.nextLink")
            page = next_page if isinstance(next_page, str) else None

    def poll(self) -> Sequence[Observation]:
        # A poll that fails half way ships nothing, so it must not have moved on either.
        logs, health = dict(self._logs), dict(self._health)
        try:
            return self._read()
        except BaseException:
            self._logs, self._health = logs, health
            raise

    def _read(self) -> list[Observation]:
        root = self._get(ROOT)
        features = root.get("ProtocolFeaturesSupported")
        self._filter = (
            isinstance(features, Mapping)
            and features.get("FilterQuery") is True
            and not self._filter_refused
        )
        out: list[Observation] = []
        for owner in ("Managers", "Systems"):
            owned = _link(root.get(owner))
            for resource in self._members(owned) if owned is not None else ():
                services = _link(resource.get("LogServices"))
                if services is None:
                    continue
                for service in self._members(services):
                    entries = _link(service.get("Entries"))
                    if entries is not None:
                        out.extend(self._new_entries(entries))
        chassis = _link(root.get("Chassis"))
        if chassis is not None:
            for component in self._components(chassis):
                out.extend(self._health_change(component))
        return out

    def _since(self, entries: str, mark: tuple[str, int, str] | None) -> list[dict[str, Any]]:
        """A log's entries, from the newest one shipped on where the BMC filters by time
        (entries of the same second share its Created: `ge`, the ones shipped dropped by
        the caller), else all of them."""
        if self._filter and mark is not None and mark[0]:
            query = urlencode({"$filter": f"Created ge '{mark[0]}Z'"})
            try:
                return list(self._members(f"{entries}?{query}"))
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code not in (400, 403, 405, 501):
                    raise
                log.warning(
                    "Redfish at %s refused $filter on %s (%s): reading its logs whole",
                    self._client.base_url,
                    entries,
                    exc.response.status_code,
                )
                self._filter = False
                self._filter_refused = True
        return list(self._members(entries))

    def _new_entries(self, entries: str) -> list[LogRecord]:
        mark = self._logs.get(entries)
        found = sorted(self._since(entries, mark), key=_position)
        if mark is None and not self._from_start:
            new: list[dict[str, Any]] = []
        else:
            new = [e for e in found if mark is None or _position(e) > mark]
        if found:
            newest = _position(found[-1])
            if mark is None or newest > mark:
                self._logs[entries] = newest
        return [
            self._dated(self._record(entry, entries, str(entry.get("Severity", ""))), entry)
            for entry in new
        ]

    def _dated(self, record: LogRecord, entry: Mapping[str, Any]) -> LogRecord:
        created = _created(entry)
        if not created:
            return record
        logged = datetime.fromisoformat(created).replace(tzinfo=UTC)
        if not record.observed_at - MAX_ENTRY_AGE <= logged <= record.observed_at:
            return record
        return record.model_copy(update={"observed_at": logged})

    def _components(self, chassis: str) -> Iterator[dict[str, Any]]:
        """Every chassis, its power supplies, fans and temperatures, each with a Status."""
        for one in self._members(chassis):
            yield one
            power, thermal = _link(one.get("Power")), _link(one.get("Thermal"))
            if power is not None:
                yield from self._get(power).get("PowerSupplies", [])
            elif (subsystem := _link(one.get("PowerSubsystem"))) is not None:
                supplies = _link(self._get(subsystem).get("PowerSupplies"))
                if supplies is not None:
                    yield from self._members(supplies)
            if thermal is not None:
                body = self._get(thermal)
                yield from body.get("Fans", [])
                yield from body.get("Temperatures", [])
            elif (subsystem := _link(one.get("ThermalSubsystem"))) is not None:
                fans = _link(self._get(subsystem).get("Fans"))
                if fans is not None:
                    yield from self._members(fans)

    def _health_change(self, component: Any) -> list[LogRecord]:
        if not isinstance(component, dict) or not isinstance(component.get("Status"), dict):
            return []
        where = _link(component)
        status = component["Status"]
        health = status.get("HealthRollup", status.get("Health"))
        if where is None or not isinstance(health, str):
            return []
        if self._health.get(where, _HEALTHY) == health:
            return []
        self._health[where] = health
        return [self._record(component, where, health)]

    def _record(self, resource: Mapping[str, Any], path: str, said: str) -> LogRecord:
        record = self._records.record([_line(resource)], path=path)
        if record.family == UNMATCHED and said in _SEVERITY:
            return record.model_copy(update={"severity": _SEVERITY[said]})
        return record

    def positions(self) -> Mapping[str, str | None]:
        state = {"logs": {k: list(v) for k, v in self._logs.items()}, "health": self._health}
        return {self._key: json.dumps(state, sort_keys=True, separators=(",", ":"))}

    def close(self) -> None:
        self._client.close()


def _restore(
    saved: str | None,
) -> tuple[dict[str, tuple[str, int, str]], dict[str, str]]:
    if not saved:
        return {}, {}
    try:
        state = json.loads(saved)
        logs = {str(k): (str(c), int(n), str(i)) for k, (c, n, i) in state["logs"].items()}
        return logs, {str(k): str(v) for k, v in state["health"].items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("ignoring the unreadable Redfish positions %r", saved)
        return {}, {}
