"""Ingest benchmark: N simulated hosts post realistic batches to a real uvicorn server.

Each host sends a batch every --interval seconds (8 GPU samples, 8 ranks' heartbeats, and now
and then an event), on a fixed schedule staggered across the interval. The load generator is a
small raw HTTP/1.1 client over keep-alive connections so that it costs the 2-core machine as
little as possible; the server runs in its own process and its CPU time is read from /proc.

    python benchmarks/ingest.py --hosts 2048 --seconds 30 [--db sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, func, select

from sentinel.db import migrate
from sentinel.db.engine import sync_url
from sentinel.db.models import Event
from sentinel.testing.postgres import start_cluster
from sentinel.testing.service import LiveService

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """The service process and its children (uvicorn's workers, when there are several)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return [pid, *kids]


def proc_cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def proc_rss_mib(pid: int) -> tuple[float, float]:
    """Resident memory of the process tree: now, and the sum of each process's peak."""
    rss = hwm = 0.0
    for p in _tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm += int(line.split()[1]) / 1024
    return rss, hwm


def make_batch(host: int, seq: int, event_every: int) -> tuple[bytes, int]:
    now = datetime.now(UTC).isoformat()
    host_id = f"gpu-host-{host:05d}"
    obs: list[dict[str, object]] = []
    for g in range(8):
        obs.append(
            {
                "kind": "gpu_sample",
                "id": str(uuid.uuid4()),
                "observed_at": now,
                "gpu_index": g,
                "uuid": f"GPU-{host:05d}-{g}",
                "pci_bus_id": f"00000000:{0x18 + g * 0x10:02X}:00.0",
                "temperature_c": 60.0 + random.random() * 10,
                "power_w": 600.0 + random.random() * 80,
                "clock_event_reasons": 0,
                "utilization_pct": 97.0,
                "memory_used_bytes": 70_000_000_000,
                "ecc_volatile_corrected": 0,
                "ecc_volatile_uncorrected": 0,
                "ecc_aggregate_corrected": 3,
                "ecc_aggregate_uncorrected": 0,
                "remapped_rows_correctable": 0,
                "remapped_rows_uncorrectable": 0,
                "remap_pending": False,
                "remap_failure": False,
                "pcie_replay_count": 0,
                "nvlink": {"crc_flit": 0, "crc_data": 0, "replay": 0, "recovery": 0},
            }
        )
        obs.append(
            {
                "kind": "heartbeat",
                "id": str(uuid.uuid4()),
                "observed_at": now,
                "job_id": "llama3-405b",
                "rank": host * 8 + g,
                "local_rank": g,
                "gpu_index": g,
                "step": seq * 5,
                "step_time_s": 4.9,
                "tokens": 16_000_000,
                "loss": 1.9,
                "checkpoint_step": 0,
                "beats": 5,
                "last_beat_at": now,
                "world_size": 16384,
            }
        )
    events = 0
    if event_every and random.randrange(event_every) == 0:
        events = 1
        obs.append(
            {
                "kind": "log",
                "id": str(uuid.uuid4()),
                "observed_at": now,
                "source": "kernel",
                "pattern": "pcie_aer_corrected",
                "family": "pcie",
                "severity": "warning",
                "message": "pcieport 0000:00:01.0: AER: Corrected error received: 0000:01:00.0",
            }
        )
    body = json.dumps(
        {
            "version": 1,
            "host_id": host_id,
            "agent_id": f"{host_id}-agent",
            "seq": seq,
            "sent_at": now,
            "observations": obs,
        }
    ).encode()
    return body, events


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    schedule_lag: list[float] = field(default_factory=list)
    acked: int = 0
    failed: int = 0
    events_acked: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


class Conn:
    """One keep-alive HTTP/1.1 connection; just enough protocol for POST and a JSON answer."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.head = (
            f"POST /api/v1/reports HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(f"{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await self.reader.readexactly(length)
        return int(status_line.split()[1])


async def run_load(
    port: int,
    token: str,
    hosts: int,
    seconds: float,
    interval: float,
    connections: int,
    event_every: int,
) -> tuple[Results, float]:
    results = Results()
    pool: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(Conn(port, token))
    start = time.perf_counter() + 0.5
    end = start + seconds
    tasks: set[asyncio.Task[None]] = set()

    async def send(host: int, seq: int, due: float) -> None:
        body, events = make_batch(host, seq, event_every)
        conn = await pool.get()
        sent = time.perf_counter()
        try:
            status = await conn.post(body)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            status = 0
            conn = Conn(port, token)
        finally:
            pool.put_nowait(conn)
        done = time.perf_counter()
        results.statuses[status] = results.statuses.get(status, 0) + 1
        if status == 202:
            results.acked += 1
            results.events_acked += events
            results.latencies.append(done - sent)
            results.schedule_lag.append(done - due)
        else:
            results.failed += 1

    # Every host on its own fixed schedule, offsets spread over one interval.
    schedule = sorted((start + (h / hosts) * interval, h) for h in range(hosts))
    seq = dict.fromkeys(range(hosts), 0)
    i = 0
    while True:
        due, host = schedule[i % hosts]
        due += (i // hosts) * interval
        if due >= end:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        seq[host] += 1
        task = asyncio.create_task(send(host, seq[host], due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.wait(tasks, timeout=60)
    return results, time.perf_counter() - start


def stored_events(url: str) -> int:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Event)).scalar_one())
    finally:
        engine.dispose()


def pct(data: list[float], q: float) -> float:
    if not data:
        return float("nan")
    return statistics.quantiles(data, n=1000)[int(q * 10) - 1] if len(data) > 1 else data[0]


def bench(db: str, args: argparse.Namespace, workdir: Path) -> None:
    cluster = None
    if db == "postgresql":
        cluster = start_cluster()
        cluster.psql("CREATE DATABASE bench")
        url = cluster.url("bench")
    else:
        url = f"sqlite:///{workdir / 'bench.db'}"
    migrate.upgrade(url)
    service = LiveService(
        database_url=url,
        data_dir=workdir / f"data-{db}",
        extra_env={"SENTINEL_RUN_LOOPS": "false"},
        workers=args.workers,
    )
    service.start()
    assert service.proc is not None
    pid = service.proc.pid
    try:
        cpu0 = proc_cpu_seconds(pid)
        results, elapsed = asyncio.run(
            run_load(
                service.port,
                service.agent_token,
                args.hosts,
                args.seconds,
                args.interval,
                args.connections,
                args.event_every,
            )
        )
        cpu = proc_cpu_seconds(pid) - cpu0
        rss, hwm = proc_rss_mib(pid)
        events = stored_events(url)
    finally:
        service.stop()
        if cluster is not None:
            cluster.stop()
    offered = args.hosts / args.interval
    lat = results.latencies
    print(
        f"\n== {db}: {args.hosts} hosts, a batch each every {args.interval:g} s "
        f"(offered {offered:.0f} batches/s) for {args.seconds:g} s =="
    )
    print(
        f"  batches acknowledged  {results.acked}  ({results.acked / elapsed:.0f}/s sustained); "
        f"failed {results.failed}; statuses {results.statuses}"
    )
    print(
        f"  latency (send→202)    p50 {pct(lat, 50) * 1000:.1f} ms   "
        f"p99 {pct(lat, 99) * 1000:.1f} ms"
        f"   max {max(lat, default=float('nan')) * 1000:.1f} ms"
    )
    print(
        f"  latency (due→202)     p50 {pct(results.schedule_lag, 50) * 1000:.1f} ms   "
        f"p99 {pct(results.schedule_lag, 99) * 1000:.1f} ms  (includes client-side queueing)"
    )
    print(
        f"  service CPU           {cpu:.1f} s = {cpu / elapsed * 100:.0f}% of one core; "
        f"{cpu / max(results.acked, 1) * 1e3:.2f} ms per batch"
    )
    print(f"  service RSS           {rss:.0f} MiB now, {hwm:.0f} MiB peak")
    print(
        f"  events sent (202)     {results.events_acked}; stored {events}; "
        f"lost {results.events_acked - events}"
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--hosts", type=int, default=2048)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--interval", type=float, default=5.0, help="seconds between a host's batches")
    p.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--connections", type=int, default=128, help="keep-alive connections")
    p.add_argument("--workers", type=int, default=1, help="service worker processes")
    p.add_argument("--event-every", type=int, default=20, help="one batch in N carries an event")
    args = p.parse_args()
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(
        f"machine: {os.cpu_count()} CPUs; server: uvicorn (uvloop, httptools), "
        f"{args.workers} worker process(es)"
    )
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-") as tmp:
        for db in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
            bench(db, args, Path(tmp))


if __name__ == "__main__":
    main()
