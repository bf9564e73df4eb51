"""An mcelog record is dated by its TIME line (when the machine check was logged), not by the
poll that read it up to hardware_s later; a TIME ahead of the agent's clock or long past keeps
the read time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sentinel.wire import LogRecord
from sentinel_agent.clock import ManualClock
from sentinel_agent.collectors.mcelog import MAX_RECORD_AGE, McelogCollector
from tests.agents.agent_helpers import context

NOW = datetime(2026, 3, 2, 4, 2, tzinfo=UTC)
RECORD = """Hardware event. This is not a software error.
MCE 0
CPU 26 BANK 13 TSC 2c2c2ee4b2c0e
TIME {epoch} Mon Mar  2 04:01:51 2026
MCG status:RIPV MCIP
MCi status:
Uncorrected error
Error enabled
MCA: MEMORY CONTROLLER RD_CHANNEL2_ERR
STATUS bd800000000c0092 MCGSTATUS 5
Location SOCKET:1 CHANNEL:2 DIMM:0 [C1 CPU1_DIMM_C1]
"""


def _read(tmp_path: Path, logged: datetime) -> LogRecord:
    clock = ManualClock(NOW)
    ctx, _ = context(clock)
    log = tmp_path / "mcelog"
    log.write_text("")
    collector = McelogCollector(ctx, path=log, interval_s=10)
    assert collector.poll() == [], "what the log held at start is history"
    with log.open("a") as f:
        f.write(RECORD.format(epoch=int(logged.timestamp())))
    assert collector.poll() == [], "open until mcelog's log is quiet"
    clock.advance(2.0)
    [record] = collector.poll()
    assert isinstance(record, LogRecord) and record.source == "mcelog"
    return record


def test_a_record_read_late_is_dated_by_its_time_line(tmp_path: Path) -> None:
    logged = NOW - timedelta(seconds=9)
    assert _read(tmp_path, logged).observed_at == logged


@pytest.mark.parametrize("offset", [timedelta(minutes=5), -MAX_RECORD_AGE - timedelta(seconds=3)])
def test_a_time_the_agent_cannot_trust_keeps_the_read_time(
    tmp_path: Path, offset: timedelta
) -> None:
    assert _read(tmp_path, NOW + offset).observed_at == NOW + timedelta(seconds=2)
