"""Ingest benchmark: N simulated hosts post realistic batches to a real uvicorn server.

Each host sends a batch every --interval seconds (8 GPU samples, 8 ranks' heartbeats, and now
and then an event), on a fixed schedule staggered across the interval, gzipped as the agent
sends it. The load generator costs the 2-core machine as little as it can: each host's body is
encoded once as a template (a send fills in its seq, times and ids with one bytes format, then
gzip at level 1), and a small raw HTTP/1.1 client posts it over keep-alive connections. The
server runs in its own processes; their CPU time, read from /proc, over the batches answered
202 is the service's CPU per batch, the figure that says how many batches one core carries
whatever else runs on the machine.

    python benchmarks/ingest.py --hosts 2048 --interval 1 --db postgresql --workers 1,2
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import importlib.util
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

from sentinel.db.engine import sync_url
from sentinel.db.models import Batch, Event

# The test harnesses (tests/harness) are not installed: import them from this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import bench_database

from tests.harness.service import LiveService

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


class Templates:
    """Each host's batch body encoded once; a send fills in what changes from one to the next
    (seq, times, observation ids) with a single bytes format."""

    def __init__(self, hosts: int) -> None:
        self._plain = [self._template(h, event=False) for h in range(hosts)]
        self._event = [self._template(h, event=True) for h in range(hosts)]

    @staticmethod
    def _template(host: int, event: bool) -> str:
        body, _ = make_batch(host, 0, 1 if event else 0)
        doc = json.loads(body)
        doc["seq"] = "@SEQ@"
        doc["sent_at"] = "@NOW@"
        for i, obs in enumerate(doc["observations"]):
            obs["id"] = f"@ID{i}@"
            obs["observed_at"] = "@NOW@"
            if "last_beat_at" in obs:
                obs["last_beat_at"] = "@NOW@"
            if "step" in obs:
                obs["step"] = "@STEP@"
        text = json.dumps(doc).replace("%", "%%")
        text = text.replace('"@SEQ@"', "%(seq)d").replace('"@STEP@"', "%(step)d")
        text = text.replace("@NOW@", "%(now)s")
        n = len(doc["observations"])
        for i in range(n):
            text = text.replace(f"@ID{i}@", f"%(host)08x-%(seq)04x-4{i:03x}-8000-%(seq)012x")
        return text

    def body(self, host: int, seq: int, event_every: int) -> tuple[bytes, int]:
        events = 1 if event_every and random.randrange(event_every) == 0 else 0
        template = (self._event if events else self._plain)[host]
        values: dict[str, object] = {
            "seq": seq,
            "step": seq * 5,
            "now": datetime.now(UTC).isoformat(),
            "host": host,
        }
        return (template % values).encode(), events


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    schedule_lag: list[float] = field(default_factory=list)
    acked: int = 0
    shed: int = 0
    failed: int = 0
    unanswered: int = 0
    events_acked: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


class Conn:
    """One keep-alive HTTP/1.1 connection; just enough protocol for POST and a JSON answer."""

    def __init__(self, port: int, token: str, gzipped: bool) -> None:
        self.port = port
        self.head = (
            f"POST /api/v1/reports HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            + ("Content-Encoding: gzip\r\n" if gzipped else "")
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> int:
        reused = self.writer is not None
        try:
            return await self._post(body)
        except (OSError, asyncio.IncompleteReadError, IndexError):
            if not reused:
                raise
            # The server closed an idle keep-alive connection: once more on a new one, as an
            # agent would (a resend of the same bytes is answered as a duplicate at worst).
            self.reader = self.writer = None
            return await self._post(body)

    async def _post(self, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(f"{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise asyncio.IncompleteReadError(b"", None)
        length = 0
        close = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            lower = line.lower()
            if lower.startswith(b"content-length:"):
                length = int(line.split(b":")[1])
            elif lower.startswith(b"connection:") and b"close" in lower:
                close = True
        await self.reader.readexactly(length)
        if close:
            # A refusal before the body was read (429, 413) closes the connection.
            self.writer.close()
            self.reader = self.writer = None
        return int(status_line.split()[1])


async def run_load(
    port: int,
    token: str,
    hosts: int,
    seconds: float,
    interval: float,
    connections: int,
    event_every: int,
    gzipped: bool,
) -> tuple[Results, float]:
    results = Results()
    templates = Templates(hosts)
    pool: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(Conn(port, token, gzipped))
    start = time.perf_counter() + 0.5
    end = start + seconds
    tasks: set[asyncio.Task[None]] = set()

    async def send(host: int, seq: int, due: float) -> None:
        body, events = templates.body(host, seq, event_every)
        if gzipped:
            body = gzip.compress(body, compresslevel=1, mtime=0)
        conn = await pool.get()
        sent = time.perf_counter()
        try:
            status = await conn.post(body)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            status = 0
            conn = Conn(port, token, gzipped)
        finally:
            pool.put_nowait(conn)
        done = time.perf_counter()
        results.statuses[status] = results.statuses.get(status, 0) + 1
        if status == 202:
            results.acked += 1
            results.events_acked += events
            results.latencies.append(done - sent)
            results.schedule_lag.append(done - due)
        elif status == 429:
            results.shed += 1
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
        _, pending = await asyncio.wait(tasks, timeout=60)
        # Still unanswered a minute after the last send: counted, then given up.
        results.unanswered = len(pending)
        for task in pending:
            task.cancel()
    return results, time.perf_counter() - start


def stored(url: str) -> tuple[int, int]:
    """Batches and events in the database."""
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return (
                int(conn.execute(select(func.count()).select_from(Batch)).scalar_one()),
                int(conn.execute(select(func.count()).select_from(Event)).scalar_one()),
            )
    finally:
        engine.dispose()


def pct(data: list[float], q: float) -> float:
    if not data:
        return float("nan")
    return statistics.quantiles(data, n=1000)[int(q * 10) - 1] if len(data) > 1 else data[0]


# --admit-all: no upload is shed (429), whatever the latency, so that the CPU per batch is not
# mixed with the cost of refusals (and reconnections) on a machine too busy to keep up.
ADMIT_ALL = {
    "SENTINEL_INGEST__MAX_INFLIGHT_REQUESTS": "100000",
    "SENTINEL_INGEST__START_INFLIGHT_REQUESTS": "100000",
    "SENTINEL_INGEST__TARGET_LATENCY_S": "3600",
}


@dataclass
class Figures:
    db: str
    workers: int
    offered: float
    sustained: float
    cpu_ms: float
    p50_ms: float
    p99_ms: float
    shed: int
    failed: int
    lost: int


def bench(db: str, workers: int, args: argparse.Namespace, workdir: Path) -> Figures:
    url, cluster = bench_database(db, workdir / f"bench-{workers}.db")
    service = LiveService(
        database_url=url,
        data_dir=workdir / f"data-{db}-{workers}",
        extra_env={"SENTINEL_RUN_LOOPS": "false", **(ADMIT_ALL if args.admit_all else {})},
        workers=workers,
    )
    service.start()
    assert service.proc is not None
    pid = service.proc.pid
    try:
        load0 = os.getloadavg()[0]
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
                not args.no_gzip,
            )
        )
        cpu = proc_cpu_seconds(pid) - cpu0
        load1 = os.getloadavg()[0]
        rss, hwm = proc_rss_mib(pid)
        batches, events = stored(url)
    finally:
        service.stop()
        if cluster is not None:
            cluster.stop()
    offered = args.hosts / args.interval
    lat = results.latencies
    # A batch answered 202 is durable: every one must be in the database, and its events.
    lost = max(0, results.acked - batches) + max(0, results.events_acked - events)
    print(
        f"\n== {db}, {workers} worker(s): {args.hosts} hosts, a batch each every "
        f"{args.interval:g} s (offered {offered:.0f} batches/s) for {args.seconds:g} s =="
    )
    print(
        f"  batches answered 202  {results.acked}  ({results.acked / elapsed:.0f}/s sustained); "
        f"shed (429) {results.shed}; failed {results.failed}; "
        f"unanswered after 60 s {results.unanswered}; statuses {results.statuses}"
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
    cpu_ms = cpu / max(results.acked, 1) * 1e3
    print(
        f"  service CPU           {cpu:.1f} s = {cpu / elapsed * 100:.0f}% of one core; "
        f"{cpu_ms:.2f} ms per batch answered 202 "
        f"(one core: {1000 / cpu_ms if cpu_ms else float('inf'):.0f} batches/s)"
    )
    answered = results.acked + results.shed + results.failed
    print(
        f"  service CPU/request   {cpu / max(answered, 1) * 1e3:.2f} ms over all {answered} "
        "requests answered (refusals are cheaper, but many of them are not free)"
    )
    print(f"  service RSS           {rss:.0f} MiB now, {hwm:.0f} MiB peak")
    print(
        f"  stored                batches {batches} (answered 202: {results.acked}); events "
        f"{events} (sent in batches answered 202: {results.events_acked}); lost {lost}"
    )
    print(f"  machine load average  {load0:.1f} at the start, {load1:.1f} at the end")
    return Figures(
        db,
        workers,
        offered,
        results.acked / elapsed,
        cpu_ms,
        pct(lat, 50) * 1000,
        pct(lat, 99) * 1000,
        results.shed,
        results.failed + results.unanswered,
        lost,
    )


def _server() -> str:
    """What `sentinel serve` runs on here: uvicorn's default loop and HTTP parser are uvloop
    and httptools where they are installed (uvicorn[standard], the server extra, installs both)."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"uvicorn ({loop}, {http}; access log off)"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--hosts", type=int, default=2048)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--interval", type=float, default=5.0, help="seconds between a host's batches")
    p.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--connections", type=int, default=128, help="keep-alive connections")
    p.add_argument(
        "--workers", default="1", help="service worker processes; a list (1,2) runs each"
    )
    p.add_argument("--event-every", type=int, default=20, help="one batch in N carries an event")
    p.add_argument("--no-gzip", action="store_true", help="send plain JSON (agents gzip)")
    p.add_argument(
        "--admit-all",
        action="store_true",
        help="turn off load shedding: every batch is stored, so CPU per batch is the store path's",
    )
    args = p.parse_args()
    worker_counts = [int(w) for w in str(args.workers).split(",")]
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"server: {_server()}"
    )
    figures = []
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-") as tmp:
        for db in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
            for workers in worker_counts:
                figures.append(bench(db, workers, args, Path(tmp)))
    print(
        "\n  database    workers  offered/s  sustained/s  CPU ms/batch  p50 ms  p99 ms"
        "  shed  failed  lost"
    )
    for f in figures:
        print(
            f"  {f.db:<10}  {f.workers:>7}  {f.offered:>9.0f}  {f.sustained:>11.0f}  "
            f"{f.cpu_ms:>12.2f}  {f.p50_ms:>6.1f}  {f.p99_ms:>6.1f}  {f.shed:>4}  "
            f"{f.failed:>6}  {f.lost:>4}"
        )


if __name__ == "__main__":
    main()
