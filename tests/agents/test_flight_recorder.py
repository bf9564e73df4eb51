"""Flight-recorder dumps: found when complete, shipped gzipped once, refused when too big."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
from agent_helpers import Receiver, context

from sentinel.wire import FlightRecorderDump, LogRecord
from sentinel_agent.clock import ManualClock
from sentinel_agent.collectors.flight_recorder import FlightRecorderCollector
from sentinel_agent.transport.outbox import Outbox

# Not a real pickle on purpose: the agent must never look inside.
DUMP = b"\x80\x05" + os.urandom(64 * 1024) + b"." * 200_000


def _collector(
    tmp_path: Path, receiver: Receiver, clock: ManualClock, max_bytes: int = 10 << 20
) -> tuple[FlightRecorderCollector, Outbox]:
    ctx, _ = context(clock)
    ctx.state.job_id = "job-5"
    outbox = Outbox(tmp_path / "o.db", host_id="host-1", clock=clock, max_bytes=1 << 20)
    collector = FlightRecorderCollector(
        ctx,
        outbox=outbox,
        client=httpx.Client(timeout=5),
        base_url=receiver.url,
        token=receiver.agent_token,
        prefix=str(tmp_path / "fr" / "nccl_trace_rank_"),
        max_bytes=max_bytes,
        settle_s=1.0,
        interval_s=1.0,
    )
    return collector, outbox


def test_complete_dump_is_uploaded_once_and_reported(tmp_path: Path, receiver: Receiver) -> None:
    (tmp_path / "fr").mkdir()
    dump = tmp_path / "fr" / "nccl_trace_rank_12"
    dump.write_bytes(DUMP[:1000])
    (tmp_path / "fr" / "nccl_trace_rank_x").write_bytes(b"not a dump name")
    clock = ManualClock()
    collector, outbox = _collector(tmp_path, receiver, clock)
    assert collector.poll() == []  # first sight
    dump.write_bytes(DUMP)  # still being written
    clock.advance(1.5)
    assert collector.poll() == []  # size changed: wait again
    clock.advance(0.5)
    assert collector.poll() == []  # stable, but not yet for settle_s since the change
    clock.advance(1.0)
    (report,) = collector.poll()
    digest = hashlib.sha256(DUMP).hexdigest()
    assert isinstance(report, FlightRecorderDump)
    assert (
        report.rank,
        report.job_id,
        report.sha256,
        report.upload_id,
        report.size_bytes,
        report.file_name,
    ) == (12, "job-5", digest, digest, len(DUMP), "nccl_trace_rank_12")
    assert receiver.dumps[digest] == DUMP
    assert receiver.dump_params == [
        {"host_id": "host-1", "rank": "12", "job_id": "job-5", "file_name": "nccl_trace_rank_12"}
    ]
    clock.advance(5)
    assert collector.poll() == []
    outbox.close()
    again, _ = _collector(tmp_path, receiver, clock)  # an agent restart ships nothing twice
    for _ in range(3):
        clock.advance(2)
        assert again.poll() == []
    assert len(receiver.dump_params) == 1


def test_upload_is_retried_until_the_service_takes_it(tmp_path: Path, receiver: Receiver) -> None:
    (tmp_path / "fr").mkdir()
    (tmp_path / "fr" / "nccl_trace_rank_3").write_bytes(DUMP)
    clock = ManualClock()
    collector, _ = _collector(tmp_path, receiver, clock)
    collector.poll()
    receiver.fail(503, 1)
    clock.advance(1.5)
    assert collector.poll() == []  # 503: later
    assert collector.poll() == []  # still backing off (full jitter: somewhere below 1 s)
    clock.advance(5)
    out = collector.poll()
    assert len(out) == 1 and isinstance(out[0], FlightRecorderDump)


def test_oversized_dump_is_refused_loudly(tmp_path: Path, receiver: Receiver) -> None:
    (tmp_path / "fr").mkdir()
    (tmp_path / "fr" / "nccl_trace_rank_0").write_bytes(DUMP)
    clock = ManualClock()
    collector, _ = _collector(tmp_path, receiver, clock, max_bytes=1000)
    collector.poll()
    clock.advance(1.5)
    (record,) = collector.poll()
    assert isinstance(record, LogRecord) and record.severity == "error"
    assert record.pattern == "flight_recorder_refused" and "cap" in record.message
    assert receiver.dumps == {}
    clock.advance(5)
    assert collector.poll() == []  # refused once, not every poll
