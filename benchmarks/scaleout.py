"""Scale-out benchmark: 1, 2 and 3 service replicas behind haproxy over one PostgreSQL.

Each replica is a real `sentinel serve` process on its own port, all on one database migrated
once (partitioned `batches`/`events`, migration 0008), with the loops on: one replica is elected
leader and runs triage and the other loops while every replica ingests. haproxy (Debian's) runs
in the foreground with a generated config, balancing over the replicas with a health check on
/readyz. The load is benchmarks/ingest.py's: each of --hosts sends a batch every --interval s
over keep-alive connections, from a raw HTTP/1.1 client that costs little CPU.

Per replica count it prints the sustained rate, p50/p99 latency, what was lost, the CPU per
batch of each part (replicas, PostgreSQL, haproxy, the generator) and whether the leader's
loops kept up (sentinel_triage_lag_seconds and _backlog_events from the leader's /metrics),
then what limits the figures: every part shares this machine's cores.

    python benchmarks/scaleout.py --hosts 2048 --seconds 30 [--replicas 1,2,3]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from ingest import pct, proc_cpu_seconds, run_load
from sqlalchemy import create_engine, func, select, text

from sentinel.auth import new_token
from sentinel.db import migrate
from sentinel.db.engine import sync_url
from sentinel.db.models import Batch, Event
from sentinel.incidents.settings import TriageSettings

# The test harnesses (tests/harness) are not installed: import them from this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.harness.haproxy import Haproxy
from tests.harness.postgres import PostgresCluster, start_cluster
from tests.harness.service import LiveService

# The triage lag past which the service alerts (sentinel_triage_lag_seconds).
LAG_ALERT_S = TriageSettings().lag_alert_s


@dataclass
class LoopWatch:
    """Scrapes every replica's /metrics once a second while the load runs."""

    urls: list[str]
    lag: dict[int, float] = field(default_factory=dict)  # replica -> max triage lag seen
    backlog: dict[int, float] = field(default_factory=dict)
    passes: dict[int, tuple[float, float]] = field(default_factory=dict)  # count, sum
    scrape_failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _scrape(self) -> None:
        for i, url in enumerate(self.urls):
            try:
                body = httpx.get(f"{url}/metrics", timeout=5).text
            except httpx.HTTPError:
                self.scrape_failures += 1
                continue
            count = total = 0.0
            for line in body.splitlines():
                name, _, value = line.partition(" ")
                if name == "sentinel_triage_lag_seconds":
                    self.lag[i] = max(self.lag.get(i, 0.0), float(value))
                elif name == "sentinel_triage_backlog_events":
                    self.backlog[i] = max(self.backlog.get(i, 0.0), float(value))
                elif name == "sentinel_triage_pass_seconds_count":
                    count = float(value)
                elif name == "sentinel_triage_pass_seconds_sum":
                    total = float(value)
            self.passes[i] = (count, total)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._scrape()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._scrape()

    def leader(self) -> int | None:
        """The replica that ran triage passes: the elected leader."""
        ran = [i for i, (count, _) in self.passes.items() if count > 0]
        return ran[0] if len(ran) == 1 else None


def postgres_pids(cluster: PostgresCluster) -> int:
    return int((cluster.datadir / "postmaster.pid").read_text().split()[0])


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def stored_rows(url: str) -> tuple[int, int]:
    """Batches, and events from agents' batches (seq > 0: the leader's own synthetic events,
    a hang or a silent host it concluded, have none), in the database."""
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return (
                int(conn.execute(select(func.count()).select_from(Batch)).scalar_one()),
                int(
                    conn.execute(
                        select(func.count()).select_from(Event).where(Event.seq > 0)
                    ).scalar_one()
                ),
            )
    finally:
        engine.dispose()


def table_bytes(url: str) -> dict[str, int]:
    """Bytes of each partitioned table's partitions, with their indexes (and of the indexes)."""
    engine = create_engine(sync_url(url))
    sql = (
        "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0), "
        "coalesce(sum(pg_indexes_size(inhrelid)), 0) FROM pg_inherits "
        "WHERE inhparent = to_regclass(:t)"
    )
    sizes: dict[str, int] = {}
    try:
        with engine.connect() as conn:
            for t in ("batches", "events"):
                total, indexes = conn.execute(text(sql), {"t": t}).one()
                sizes[t], sizes[f"{t}_indexes"] = int(total), int(indexes)
    finally:
        engine.dispose()
    return sizes


def run_one(
    n: int, cluster: PostgresCluster, args: argparse.Namespace, workdir: Path
) -> dict[str, object]:
    db = f"scaleout_{n}"
    cluster.psql(f"CREATE DATABASE {db}")
    url = cluster.url(db)
    migrate.upgrade(url)  # once, before any replica starts
    empty = table_bytes(url)  # the partitions' fixed pages, not counted per row
    tokens = {
        "agent_token": new_token(),
        "operator_token": new_token(),
        "viewer_token": new_token(),
    }
    replicas = [
        LiveService(
            database_url=url,
            data_dir=workdir / f"r{n}-{i}",
            extra_env={"SENTINEL_AUTO_MIGRATE": "false"},
            workers=args.workers,
            **tokens,
        )
        for i in range(n)
    ]
    lb: Haproxy | None = None
    watch = LoopWatch([r.url for r in replicas])
    try:
        for r in replicas:
            r.start(timeout=60)
        lb = Haproxy([r.port for r in replicas], args.balance)
        lb.wait_ready()
        pids = [r.proc.pid for r in replicas if r.proc is not None]
        pg = postgres_pids(cluster)
        time.sleep(2)  # the election settles and the loops start
        cpu0 = (
            sum(proc_cpu_seconds(p) for p in pids),
            proc_cpu_seconds(pg),
            proc_cpu_seconds(lb.proc.pid),
            own_cpu_seconds(),
        )
        load0 = os.getloadavg()[0]
        wal0 = cluster.psql("SELECT pg_current_wal_lsn()").strip()
        watch.start()
        load = {
            "port": lb.port,
            "token": tokens["agent_token"],
            "hosts": args.hosts,
            "seconds": args.seconds,
            "interval": args.interval,
            "connections": args.connections,
            "event_every": args.event_every,
        }
        if "gzipped" in inspect.signature(run_load).parameters:
            load["gzipped"] = True  # as the agent sends them, where the generator can
        results, elapsed = asyncio.run(run_load(**load))  # type: ignore[arg-type]
        cpu1 = (
            sum(proc_cpu_seconds(p) for p in pids),
            proc_cpu_seconds(pg),
            proc_cpu_seconds(lb.proc.pid),
            own_cpu_seconds(),
        )
        load1 = os.getloadavg()[0]
        wal = int(float(cluster.psql(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{wal0}')")))
        # The leader's loops have a moment to catch up with the last events, as they would.
        drain_deadline = time.monotonic() + args.drain
        watch.stop()
        drained = False
        while not drained and time.monotonic() < drain_deadline:
            time.sleep(1)
            watch._scrape()
            leader = watch.leader()
            drained = leader is not None and _backlog_now(watch.urls[leader]) == 0
        drained_in = args.drain - max(0.0, drain_deadline - time.monotonic())
        batches, events = stored_rows(url)
        sizes = table_bytes(url)
    finally:
        if lb is not None:
            lb.stop()
        for r in replicas:
            r.stop()
    leader = watch.leader()
    acked = max(results.acked, 1)
    cpu = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
    return {
        "replicas": n,
        "offered": args.hosts / args.interval,
        "rate": results.acked / elapsed,
        "acked": results.acked,
        # 429: shed by admission (an agent retries after Retry-After); anything else failed.
        "shed": results.statuses.get(429, 0),
        "failed": sum(n for code, n in results.statuses.items() if code not in (202, 429)),
        "statuses": results.statuses,
        "p50": pct(results.latencies, 50) * 1000,
        "p99": pct(results.latencies, 99) * 1000,
        "lost_batches": results.acked - batches,
        "lost_events": results.events_acked - events,
        "cpu_ms": [c / acked * 1000 for c in cpu],
        "cpu_cores": [c / elapsed for c in cpu],
        "leader": leader,
        "lag_max": watch.lag.get(leader, float("nan")) if leader is not None else float("nan"),
        "backlog_max": watch.backlog.get(leader, float("nan")) if leader is not None else 0,
        "passes": watch.passes.get(leader, (0, 0)) if leader is not None else (0, 0),
        "drained_in": drained_in,
        # Kept up: triage never lagged past the lag alert's bound, and caught up after the load.
        "kept_up": drained and watch.lag.get(leader, float("inf")) < LAG_ALERT_S
        if leader is not None
        else False,
        "bytes_per_batch": (sizes["batches"] - empty["batches"]) / max(batches, 1),
        "index_bytes_per_batch": (sizes["batches_indexes"] - empty["batches_indexes"])
        / max(batches, 1),
        "bytes_per_event": (sizes["events"] - empty["events"]) / max(events, 1),
        "load": (load0, load1),
        "wal_per_batch": wal / acked,
        "wal_per_s": wal / elapsed,
    }


def _backlog_now(url: str) -> float:
    try:
        body = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return float("nan")
    for line in body.splitlines():
        if line.startswith("sentinel_triage_backlog_events "):
            return float(line.split()[1])
    return float("nan")


def report(rows: list[dict[str, object]], args: argparse.Namespace) -> None:
    print(
        f"\n{args.hosts} hosts, a batch each every {args.interval:g} s "
        f"(offered {args.hosts / args.interval:.0f} batches/s) for {args.seconds:g} s, "
        f"haproxy {args.balance}, {args.workers} worker(s) per replica\n"
    )
    print(
        "replicas  batches/s  p50 ms  p99 ms  lost b/e  429/failed  "
        "CPU ms/batch: replicas  pg   haproxy  generator   cores used  "
        "leader: lag max s  backlog max  passes (mean s)  drained  kept up"
    )
    for r in rows:
        cpu = r["cpu_ms"]
        cores = sum(r["cpu_cores"])  # type: ignore[arg-type]
        count, total = r["passes"]  # type: ignore[misc]
        mean = total / count if count else float("nan")
        print(
            f"{r['replicas']:>8}  {r['rate']:>9.0f}  {r['p50']:>6.1f}  {r['p99']:>6.1f}  "
            f"{r['lost_batches']:>3}/{r['lost_events']:<3}  {r['shed']:>5}/{r['failed']:<4}  "
            f"{cpu[0]:>21.2f}  {cpu[1]:>4.2f}  {cpu[2]:>7.2f}  {cpu[3]:>9.2f}   "  # type: ignore[index]
            f"{cores:>10.2f}  {r['lag_max']:>17.1f}  {r['backlog_max']:>11.0f}  "
            f"{count:>6.0f} ({mean:.3f})  {r['drained_in']:>5.0f} s  "
            f"{'yes' if r['kept_up'] else 'NO'}"
        )
    for r in rows:
        if r["statuses"] != {202: r["acked"]}:
            print(f"  {r['replicas']} replica(s): statuses {r['statuses']}")
        if r["leader"] is None:
            print(f"  {r['replicas']} replica(s): no single replica ran triage (leader unknown)")
    last = rows[-1]
    print(
        f"\nstorage: {last['bytes_per_batch']:.0f} bytes per batch row "
        f"({last['index_bytes_per_batch']:.0f} of it indexes), "
        f"{last['bytes_per_event']:.0f} per event row "
        "(pg_total_relation_size of the partitions and their indexes, less their size empty)"
    )
    print(
        "WAL: "
        + ", ".join(
            f"{r['replicas']} replica(s) {r['wal_per_batch']:.0f} bytes per batch "
            f"({r['wal_per_s'] / 1e6:.1f} MB/s)"
            for r in rows
        )
    )
    loads = ", ".join(f"{r['load'][0]:.1f}->{r['load'][1]:.1f}" for r in rows)  # type: ignore[index]
    print(
        f"\nWhat limits it: this machine has {os.cpu_count()} CPU(s), shared by the generator, "
        "every replica, PostgreSQL and haproxy (the 'cores used' column is their sum), and by "
        f"whatever else runs (1-minute load average before->after each run: {loads}). More "
        "replicas add ingest capacity only when cores are free for them: on a machine with no "
        "spare core, a replica's CPU per batch is what to scale by (docs/operations.md)."
    )
    for r in rows:
        print(f"  {r['replicas']} replica(s): {limit(r)}")


def limit(r: dict[str, Any]) -> str:
    """Which part held this run back, from its own figures."""
    cpus = os.cpu_count() or 1
    cores = sum(r["cpu_cores"])
    busy = max(r["load"])
    if not r["kept_up"]:
        return "the leader's loops: triage lagged past the alert bound or did not catch up"
    if r["rate"] >= 0.98 * r["offered"] and r["shed"] == 0 and r["failed"] == 0:
        return "nothing reached: every offered batch was carried; offer more (--hosts)"
    if busy >= cpus:
        return (
            f"CPU: the machine was saturated (load average {busy:.1f} on {cpus} CPUs; these "
            f"processes got {cores:.2f} cores)"
            + (f"; admission shed {r['shed']} batches with 429" if r["shed"] else "")
        )
    share = dict(
        zip(("replicas", "PostgreSQL", "haproxy", "generator"), r["cpu_cores"], strict=True)
    )
    top = max(share, key=share.__getitem__)
    return f"with cores to spare, the busiest part was {top} ({share[top]:.2f} cores)"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--hosts", type=int, default=2048)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--interval", type=float, default=5.0, help="seconds between a host's batches")
    p.add_argument("--replicas", default="1,2,3", help="replica counts to run, in order")
    p.add_argument("--balance", choices=["roundrobin", "leastconn"], default="leastconn")
    p.add_argument("--connections", type=int, default=128, help="keep-alive connections")
    p.add_argument("--workers", type=int, default=1, help="worker processes per replica")
    p.add_argument("--event-every", type=int, default=20, help="one batch in N carries an event")
    p.add_argument("--drain", type=float, default=30.0, help="seconds to wait for triage after")
    args = p.parse_args()
    counts = [int(c) for c in args.replicas.split(",") if c.strip()]
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    cluster = start_cluster()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="sentinel-scaleout-") as tmp:
            for n in counts:
                rows.append(run_one(n, cluster, args, Path(tmp)))
    finally:
        cluster.stop()
    report(rows, args)


if __name__ == "__main__":
    main()
