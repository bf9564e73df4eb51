"""A Redfish log entry is dated by when the BMC logged it (`Created`), not when the agent's
poll read it (up to redfish_s later), so a power supply's failure precedes the GPUs it took
down; a `Created` ahead of the agent's clock or long past (a BMC clock that is off) keeps
the read time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sentinel.replay.sources import RedfishBmc
from sentinel.wire import LogRecord
from sentinel_agent.clock import ManualClock
from sentinel_agent.collectors.redfish import MAX_ENTRY_AGE, RedfishCollector
from tests.agents.agent_helpers import context

NOW = datetime(2026, 3, 2, 4, 2, tzinfo=UTC)


def _entry(created: str, entry_id: str = "1") -> str:
    return json.dumps(
        {
            "@odata.id": f"/redfish/v1/Systems/system/LogServices/EventLog/Entries/{entry_id}",
            "Created": created,
            "EntryType": "Event",
            "Id": entry_id,
            "Message": "Power supply PSU2 failed.",
            "MessageId": "OpenBMC.0.1.PowerSupplyFailed",
            "Severity": "Critical",
        }
    )


def _read(entry: str) -> LogRecord:
    ctx, _ = context(ManualClock(NOW))
    bmc = RedfishBmc()
    client = httpx.Client(base_url="https://bmc", transport=httpx.MockTransport(bmc.handle))
    collector = RedfishCollector(ctx, client=client, interval_s=30, from_start=True)
    assert collector.poll() == []
    bmc.add(entry)
    [record] = collector.poll()
    assert isinstance(record, LogRecord) and record.pattern == "psu_failure"
    return record


def test_an_entry_read_a_poll_late_is_dated_when_the_bmc_logged_it() -> None:
    logged = NOW - timedelta(seconds=24)
    assert _read(_entry(logged.isoformat())).observed_at == logged


def test_a_bmc_in_another_zone_or_without_one_is_read_in_utc() -> None:
    assert _read(_entry("2026-03-02T05:01:36+01:00")).observed_at == NOW - timedelta(seconds=24)
    assert _read(_entry("2026-03-02T04:01:36")).observed_at == NOW - timedelta(seconds=24)


@pytest.mark.parametrize(
    "created",
    [
        (NOW + timedelta(minutes=5)).isoformat(),
        (NOW - MAX_ENTRY_AGE - timedelta(seconds=1)).isoformat(),
        "not a time",
    ],
)
def test_an_entry_time_the_agent_cannot_trust_keeps_the_read_time(created: str) -> None:
    assert _read(_entry(created)).observed_at == NOW
