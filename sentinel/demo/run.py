"""Run the demo: a service process, N real agents (scripted NVML) in this process, and a fault
injector that writes real-format log lines into the hosts' kernel and training logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console
from rich.markup import escape

from agents.agent import Agent
from agents.config import AgentConfig, KernelLogConfig, TrainingLogsConfig
from agents.sim import fleet_configs
from sentinel.demo.faults import FAULTS, Fault, Injection
from sentinel.testing.service import LiveService
from sentinel.triage.taxonomy import llama3_share
from sentinel.wire import HeartbeatSummary

JOB = "llama3-405b-demo"
# Real agents run in this process, each a few threads and an outbox: 256 fit on two cores.
# Hosts beyond them post the same wire batches from one light loop (no collectors).
MAX_AGENTS = 256
RACK = 8  # hosts per rack: a fabric fault hits a rack at once
FIRST_FAULT_AFTER_S = 12.0  # by then the agents have usually reported the job's ranks
# The scripted provider's PCI bus ids (dmesg form) by GPU index: what a culprit GPU is called.
BUSES = (
    "0000:18:00",
    "0000:2a:00",
    "0000:3a:00",
    "0000:5d:00",
    "0000:9a:00",
    "0000:ab:00",
    "0000:ba:00",
    "0000:db:00",
)


def example_batch(host_id: str = "demo-host-001", seq: int = 1) -> dict[str, object]:
    """One agent batch as the wire contract has it: a GPU sample and an XID 79."""
    now = datetime.now(UTC).isoformat()
    return {
        "version": 1,
        "host_id": host_id,
        "agent_id": f"{host_id}-agent",
        "seq": seq,
        "sent_at": now,
        "observations": [
            {
                "kind": "gpu_sample",
                "id": str(uuid.uuid4()),
                "observed_at": now,
                "gpu_index": 0,
                "pci_bus_id": "00000000:3B:00.0",
                "temperature_c": 61.0,
                "power_w": 512.5,
            },
            {
                "kind": "xid",
                "id": str(uuid.uuid4()),
                "observed_at": now,
                "xid": 79,
                "gpu_index": 0,
                "pci_bus_id": "00000000:3B:00.0",
                "source": "kernel_log",
                "message": "NVRM: Xid (PCI:0000:3b:00): 79, pid=2711, name=python, GPU has fallen "
                "off the bus.",
            },
        ],
    }


@dataclass
class Job:
    """The simulated training job: it advances, stops at a fault, restarts from a checkpoint."""

    step: int = 0
    checkpoint: int = 0
    stalled_since: float | None = None
    restart_at: float | None = None

    def tick(self, now: float, steps: int) -> None:
        if self.restart_at is not None and now >= self.restart_at:
            self.step, self.stalled_since, self.restart_at = self.checkpoint, None, None
        if self.stalled_since is None:
            self.step += steps
            if self.step - self.checkpoint >= 50:
                self.checkpoint = self.step - self.step % 50


@dataclass
class Demo:
    hosts: int
    port: int
    data_dir: Path
    duration_s: float | None
    fault_every_s: float
    seed: int
    console: Console
    job: Job = field(default_factory=Job)
    # Told of each fault as it is written (the soak benchmark keeps the list).
    on_inject: Callable[[Injection], None] | None = None
    # Stop injecting this long after the first fault (None: never); the fleet keeps running.
    inject_for_s: float | None = None
    # Then also wait (up to this long) until the service knows every rank of the job.
    ranks_wait_s: float = 0.0
    banner: bool = True
    ranks_at_first_fault: int | None = None  # what the service knew (when ranks_wait_s > 0)
    injecting_done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def agents(self) -> int:
        return min(self.hosts, MAX_AGENTS)

    def host(self, i: int) -> str:
        return f"gpu-{i:04d}"

    def logs(self, host: str) -> tuple[Path, Path]:
        folder = self.data_dir / "logs" / host
        return folder / "kern.log", folder / "train.log"

    def configs(self, service: LiveService) -> list[AgentConfig]:
        configs = fleet_configs(
            self.agents,
            service_url=service.url,
            token=service.agent_token,
            workdir=self.data_dir / "fleet",
            host_prefix="gpu-",
            gpu_interval_s=10.0,
            send_interval_s=5.0,
            heartbeat_interval_s=5.0,
        )
        out = []
        for config in configs:
            kern, train = self.logs(config.host_id)
            kern.parent.mkdir(parents=True, exist_ok=True)
            kern.touch()
            train.touch()
            collectors = config.collectors.model_copy(
                update={
                    "kernel_log": KernelLogConfig(enabled=True, path=kern),
                    "training_logs": TrainingLogsConfig(enabled=True, paths=[str(train)]),
                }
            )
            out.append(config.model_copy(update={"collectors": collectors}))
        return out

    def inject(self, rng: random.Random, fault: Fault) -> Injection:
        # Faults go to hosts with a real agent: their lines take the real parsing path.
        culprit = rng.randrange(self.agents)
        gpu = rng.randrange(8)
        if fault.spread == "all":
            victims = range(self.agents)
        elif fault.spread == "rack":
            start = (culprit // RACK) * RACK
            victims = range(start, min(start + RACK, self.agents))
        else:
            victims = range(culprit, culprit + 1)
        at = time.time()
        stamp = datetime.fromtimestamp(at, UTC).strftime("%b %d %H:%M:%S")
        for h in victims:
            host = self.host(h)
            kern, train = self.logs(host)
            values = {
                "host": host,
                "bus": BUSES[gpu],
                "pid": 4000 + h,
                "rank": h * 8 + gpu,
                "peer": f"{3 + h % 4}.{17 + h % 200}",
            }
            lines = [line.format(**values) for line in fault.lines]
            if fault.log == "kernel":
                text = "".join(f"{stamp} {host} kernel: {line}\n" for line in lines)
                with kern.open("a") as f:
                    f.write(text)
            else:
                with train.open("a") as f:
                    f.write("".join(line + "\n" for line in lines))
        where = (
            self.host(culprit)
            if fault.spread == "culprit"
            else (f"rack of {self.host(culprit)}" if fault.spread == "rack" else "every host")
        )
        return Injection(
            at=at,
            fault=fault,
            culprit=self.host(culprit) if fault.spread == "culprit" else None,
            hosts=tuple(self.host(h) for h in victims),
            where=where,
        )

    async def ranks_known(self, service: LiveService, stop: asyncio.Event) -> int | None:
        """Wait until the service has the job's rank map (every host's ranks), or ranks_wait_s.
        Returns the ranks it last reported (None: never asked, or never answered)."""
        want = self.hosts * 8
        known: int | None = None
        if self.ranks_wait_s <= 0:
            return known
        deadline = time.monotonic() + self.ranks_wait_s
        async with httpx.AsyncClient(
            base_url=service.url, headers=service.headers(), timeout=5
        ) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                    r = await client.get(f"/api/v1/jobs/{JOB}")
                    if r.status_code == 200:
                        known = int(r.json()["ranks_reporting"])
                        if known >= want:
                            return known
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
        return known

    async def injector(self, service: LiveService, stop: asyncio.Event) -> None:
        try:
            await self._inject_loop(service, stop)
        finally:
            self.injecting_done.set()

    async def _inject_loop(self, service: LiveService, stop: asyncio.Event) -> None:
        rng = random.Random(self.seed)
        weights = [llama3_share(f.category) or 1.0 for f in FAULTS]
        # The first fault comes once the agents have reported their ranks (the job's map).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=FIRST_FAULT_AFTER_S)
        self.ranks_at_first_fault = await self.ranks_known(service, stop)
        # On a fixed beat (fault k at first + k * fault_every_s): writing the lines into
        # hundreds of logs does not stretch the period.
        first = time.monotonic()
        k = 0
        while not stop.is_set():
            due = first + k * self.fault_every_s
            if self.inject_for_s is not None and due - first >= self.inject_for_s:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, due - time.monotonic()))
            if stop.is_set():
                return
            k += 1
            fault = rng.choices(FAULTS, weights=weights)[0]
            injection = self.inject(rng, fault)
            # Every failure in the mix interrupts the job: its ranks stop advancing.
            self.job.stalled_since = self.job.stalled_since or time.monotonic()
            if self.on_inject is not None:
                self.on_inject(injection)
            self.console.print(
                f"[dim]{time.strftime('%H:%M:%S')}  injected: {escape(injection.describe())}[/dim]"
            )

    async def watch(self, service: LiveService, stop: asyncio.Event) -> None:
        """Print each new incident and decision as Sentinel records it."""
        seen: set[str] = set()
        async with httpx.AsyncClient(
            base_url=service.url, headers=service.headers(), timeout=5
        ) as client:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=2.0)
                with contextlib.suppress(httpx.HTTPError):
                    incidents = (await client.get("/api/v1/incidents")).json()
                    decisions = {
                        d["incident_id"]: d for d in (await client.get("/api/v1/decisions")).json()
                    }
                    for inc in reversed(incidents):
                        d = decisions.get(inc["id"])
                        key = f"{inc['id']}:{d['status'] if d else ''}:{inc['category']}"
                        if key in seen or d is None:
                            continue
                        seen.add(key)
                        self._restart_after(d)
                        # What the service says came from logs: print it as text, not markup.
                        culprit = escape(inc["culprit_host"] or "-")
                        self.console.print(
                            f"{time.strftime('%H:%M:%S')}  [bold]{escape(inc['category'])}"
                            f"[/bold] culprit [cyan]{culprit}[/cyan] → {escape(d['action'])} "
                            f"({escape(d['status'])}): {escape(d['reason'][:90])}"
                        )

    def _restart_after(self, decision: dict[str, object]) -> None:
        """The job comes back: a few seconds after an automatic restart, later after a human."""
        if self.job.stalled_since is None or self.job.restart_at is not None:
            return
        human = decision["action"] in ("escalate", "hold")
        self.job.restart_at = time.monotonic() + (30.0 if human else 5.0)

    async def fleet(self, configs: list[AgentConfig], stop: asyncio.Event) -> None:
        agents = [Agent(config) for config in configs]
        tasks = [asyncio.create_task(agent.run(stop)) for agent in agents]
        tasks.append(asyncio.create_task(self.train(agents, stop)))
        await asyncio.gather(*tasks)

    async def train(self, agents: list[Agent], stop: asyncio.Event, every: float = 5.0) -> None:
        """Each host's 8 ranks beat through its agent, as the heartbeat client would."""
        world = self.hosts * 8
        while not stop.is_set():
            self.job.tick(time.monotonic(), steps=int(every))
            if self.job.stalled_since is None:  # hung ranks do not beat
                now = datetime.now(UTC)
                for h, agent in enumerate(agents):
                    agent.emit(
                        [
                            HeartbeatSummary(
                                id=uuid.uuid4(),
                                observed_at=now,
                                job_id=JOB,
                                rank=h * 8 + g,
                                local_rank=g,
                                gpu_index=g,
                                step=self.job.step,
                                step_time_s=1.0,
                                checkpoint_step=self.job.checkpoint,
                                checkpoint_path=f"/checkpoints/{JOB}/step-{self.job.checkpoint}",
                                beats=int(every),
                                last_beat_at=now,
                                world_size=world,
                            )
                            for g in range(8)
                        ]
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)

    async def light_hosts(
        self, service: LiveService, stop: asyncio.Event, every: float = 5.0
    ) -> None:
        """The hosts beyond MAX_AGENTS: GPU samples and their ranks' heartbeats, every 5 s."""
        light = range(self.agents, self.hosts)
        if not light:
            return
        seq = int(time.time())
        gate = asyncio.Semaphore(32)
        headers = {"Authorization": f"Bearer {service.agent_token}"}
        async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=10) as client:

            async def post(body: dict[str, object]) -> None:
                async with gate:
                    with contextlib.suppress(httpx.HTTPError):
                        await client.post("/api/v1/reports", json=body)

            pending: set[asyncio.Task[None]] = set()
            while not stop.is_set():
                seq += 1
                for h in light:
                    if stop.is_set():
                        break
                    task = asyncio.create_task(post(self._light_batch(h, seq)))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    await asyncio.sleep(every / len(light))
            await asyncio.gather(*pending, return_exceptions=True)

    def _light_batch(self, h: int, seq: int) -> dict[str, object]:
        now = datetime.now(UTC).isoformat()
        host = self.host(h)
        obs: list[dict[str, object]] = [
            {
                "kind": "gpu_sample",
                "id": str(uuid.uuid4()),
                "observed_at": now,
                "gpu_index": g,
                "pci_bus_id": f"0000{BUSES[g]}.0".upper(),
                "temperature_c": 60.0 + (h + g) % 9,
                "power_w": 600.0,
                "utilization_pct": 98.0,
                "clock_event_reasons": 0,
                "ecc_volatile_uncorrected": 0,
            }
            for g in range(8)
        ]
        if self.job.stalled_since is None:
            obs += [
                {
                    "kind": "heartbeat",
                    "id": str(uuid.uuid4()),
                    "observed_at": now,
                    "job_id": JOB,
                    "rank": h * 8 + g,
                    "local_rank": g,
                    "gpu_index": g,
                    "step": self.job.step,
                    "step_time_s": 1.0,
                    "checkpoint_step": self.job.checkpoint,
                    "beats": 5,
                    "last_beat_at": now,
                    "world_size": self.hosts * 8,
                }
                for g in range(8)
            ]
        return {
            "version": 1,
            "host_id": host,
            "agent_id": f"{host}-sim",
            "seq": seq,
            "sent_at": now,
            "observations": obs,
        }

    async def run(
        self, driver: Callable[[LiveService, asyncio.Event], Awaitable[None]] | None = None
    ) -> None:
        """Start the service and the fleet, inject faults; stop after duration_s, on Ctrl-C,
        or (with a driver) when the driver returns: it runs beside the demo with the service
        up, e.g. to measure it."""
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        service = LiveService(
            database_url=f"sqlite:///{(self.data_dir / 'sentinel.db').resolve()}",
            data_dir=self.data_dir / "service",
            port=self.port,
            extra_env={
                "SENTINEL_TRIAGE__HEARTBEAT_INTERVAL_S": "5",
                "SENTINEL_ALERTING__PUBLIC_URL": f"http://127.0.0.1:{self.port}",
            },
        )
        service.start()
        stop = asyncio.Event()
        try:
            if self.banner:
                self._banner(service)
            tasks = [
                asyncio.create_task(self.fleet(self.configs(service), stop)),
                asyncio.create_task(self.light_hosts(service, stop)),
                asyncio.create_task(self.injector(service, stop)),
                asyncio.create_task(self.watch(service, stop)),
            ]
            try:
                if driver is not None:
                    await driver(service, stop)
                elif self.duration_s is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=self.duration_s)
                else:
                    await stop.wait()
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            service.stop()
            self.console.print("demo stopped: service and agents are down")

    def _banner(self, service: LiveService) -> None:
        c = self.console
        c.rule("[bold]Sentinel demo")
        c.print(f"dashboard:      [bold]{service.url}/[/bold]   (API docs: {service.url}/docs)")
        c.print(f"viewer token:   {service.viewer_token}")
        c.print(f"operator token: {service.operator_token}")
        c.print(f"agent token:    {service.agent_token}")
        c.print(
            f"fleet:          {self.hosts} hosts x 8 GPUs: {self.agents} real agents with "
            f"scripted NVML"
            + (
                f", {self.hosts - self.agents} light simulated hosts"
                if self.hosts > self.agents
                else ""
            )
            + f"; job {JOB} on all of them"
        )
        c.print(
            f"failures:       one every {self.fault_every_s:g} s, drawn from Llama 3's "
            "root-cause mix, written into the hosts' kernel and training logs"
        )
        c.print("scheduler:      dry run (decisions are recorded and shown, nothing is drained)")
        example = (self.data_dir / "example-batch.json").resolve()
        example.write_text(json.dumps(example_batch(), indent=2))
        c.print("post a report by hand (202; again: a duplicate, stored once):")
        c.print(
            f"  curl -s -X POST {service.url}/api/v1/reports -H 'Authorization: Bearer "
            f"{service.agent_token}' -H 'Content-Type: application/json' --data @{example}",
            soft_wrap=True,
        )
        c.print("Ctrl-C stops everything.\n")
