"""Server time of the dashboard's fleet page for the full fleet: 2,048 hosts x 8 GPUs.

Fills a fresh SQLite database (or --database-url) with the fleet, a few percent of it degraded,
unhealthy, silent or drained and a few open incidents, then requests /fleet through the ASGI app
in process (no socket) --requests times and prints the median and the worst. Target: < 300 ms.

    .venv/bin/python benchmarks/dashboard.py --hosts 2048 --requests 30
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sentinel.auth import TokenSpec, new_token
from sentinel.clock import VirtualClock
from sentinel.db import migrate
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Gpu, Host, Incident
from sentinel.runtime.app import create_app
from sentinel.settings import Settings
from sentinel.web.routes import TOKEN_COOKIE

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


def fleet_rows(
    hosts: int, now: datetime, seed: int = 0, first: int = 0
) -> tuple[list[Host], list[Gpu]]:
    """A fleet like a real one at 3 a.m.: nearly all healthy, a handful of each kind of trouble."""
    rng = random.Random(seed)
    host_rows: list[Host] = []
    gpu_rows: list[Gpu] = []
    for h in range(first, first + hosts):
        name = f"node-{h:04d}"
        roll = rng.random()
        silent = roll < 0.003
        drained = 0.003 <= roll < 0.008
        host_rows.append(
            Host(
                id=name,
                agent_id=f"{name}-agent",
                first_seen=now - timedelta(days=3),
                last_seen=now - timedelta(seconds=600 if silent else rng.uniform(0, 5)),
                last_seq=1000,
                drain_state="drained" if drained else "none",
                drain_reason="XID 79 on GPU 3 (ExcludeHostOnHardGpuFault)" if drained else None,
            )
        )
        for g in range(8):
            lost = 0.008 <= roll < 0.011 and g == 3
            throttled = 0.011 <= roll < 0.025 and g in (1, 2)
            gpu_rows.append(
                Gpu(
                    host_id=name,
                    gpu_index=g,
                    uuid=f"GPU-{h:04d}{g:02d}",
                    pci_bus_id=f"00000000:{0x18 + 0x10 * g:02X}:00.0",
                    lost=lost,
                    remap_failure=False,
                    ecc_uncorrected=0,
                    temperature_c=round(rng.uniform(52, 68), 1),
                    clock_event_reasons=0x40 if throttled else 0,
                    sample="{}",
                    updated_at=now,
                )
            )
    return host_rows, gpu_rows


def incident_rows(hosts: list[Host], now: datetime) -> list[Incident]:
    bad = [h.id for h in hosts if h.drain_state == "drained"][:5]
    return [
        Incident(
            id=uuid.uuid4(),
            job_id="llama3-405b",
            state="open",
            category="faulty_gpu",
            confidence=0.95,
            culprit_host=host,
            culprit_gpu="00000000:48:00.0",
            rule="XidFallenOffTheBus",
            reason=f"XID 79 on {host} GPU 3: the GPU fell off the bus",
            verdict={},
            opened_at=now,
            detected_at=now,
            updated_at=now,
        )
        for host in bad
    ]


async def seed(settings: Settings, hosts: int, now: datetime) -> None:
    app = create_app(settings, VirtualClock(now))
    host_rows, gpu_rows = fleet_rows(hosts, now)
    async with (
        app.router.lifespan_context(app),
        unit_of_work(app.state.ctx.sessions) as session,
    ):
        session.add_all(host_rows)
        await session.flush()
        session.add_all(gpu_rows)
        session.add_all(incident_rows(host_rows, now))


async def measure(settings: Settings, token: str, requests: int, now: datetime) -> list[float]:
    app = create_app(settings, VirtualClock(now + timedelta(seconds=5)))
    times: list[float] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", cookies={TOKEN_COOKIE: token}
        ) as client:
            for i in range(requests + 2):
                start = time.perf_counter()
                r = await client.get("/fleet")
                elapsed = time.perf_counter() - start
                r.raise_for_status()
                if i >= 2:  # the first requests warm caches (templates, statements)
                    times.append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=2048)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--database-url", help="a migrated database to fill (default: SQLite)")
    args = parser.parse_args()
    token = new_token()
    with tempfile.TemporaryDirectory(prefix="sentinel-dash-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'dash.db'}"
        migrate.upgrade(url)
        settings = Settings(
            data_dir=Path(tmp),
            database={"url": url},
            run_loops=False,
            auth={"tokens": [TokenSpec(name="viewer", role="viewer", token=token)]},
        )
        asyncio.run(seed(settings, args.hosts, NOW))
        times = asyncio.run(measure(settings, token, args.requests, NOW))
    ms = sorted(t * 1000 for t in times)
    print("command: .venv/bin/python benchmarks/dashboard.py " + shlex.join(sys.argv[1:]))
    print(f"fleet page, {args.hosts} hosts x 8 GPUs, {len(ms)} requests via ASGI:")
    print(f"  median {statistics.median(ms):.1f} ms  min {ms[0]:.1f} ms  max {ms[-1]:.1f} ms")
    print(f"  target < 300 ms: {'met' if statistics.median(ms) < 300 else 'MISSED'}")


if __name__ == "__main__":
    main()
