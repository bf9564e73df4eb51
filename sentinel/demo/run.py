"""Run the demo: a service process, N real agents (scripted NVML) in this process, and a fault
injector that writes real-format log lines into the hosts' kernel and training logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

from sentinel.demo.faults import FAULTS, Fault, Injection
from sentinel.demo.service import LiveService
from sentinel.triage.taxonomy import llama3_share
from sentinel.wire import HeartbeatSummary
from sentinel_agent.agent import Agent
from sentinel_agent.config import AgentConfig, KernelLogConfig, TrainingLogsConfig
from sentinel_agent.sim import fleet_configs

JOB = "llama3-405b-demo"
# Real agents run in this process, each a few threads and an outbox: 256 fit on two cores.
# Hosts beyond them post the same wire batches from one light loop (no collectors).
MAX_AGENTS = 256
RACK = 8  # hosts per rack: a fabric fault hits a rack at once
FIRST_FAULT_AFTER_S = 12.0  # by then the agents have usually reported the job's ranks
# Each host's ranks beat every BEAT_S through its agent, which sends every BEAT_S: a beat
# reaches the service up to two of them after it was made. The service is told so (its
# heartbeat interval, the Sentinel default): a training job is not taken for stalled (no step
# for 1.5 intervals) between two deliveries, which would also keep its incidents from resolving.
BEAT_S = 5.0
SERVICE_HEARTBEAT_S = 2 * BEAT_S
# A job comes back no sooner than this after its fault: the service must have seen it stopped
# (no step for 1.5 heartbeat intervals, swept every quarter interval) for its incident to
# resolve once the restarted ranks advance (sentinel/incidents/watchdog.py, _resolve_recovered).
DOWN_AT_LEAST_S = 2 * SERVICE_HEARTBEAT_S
# A job stopped this long with no decision (a fault triage missed) is restarted by hand.
BY_HAND_AFTER_S = 120.0
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
    """One simulated training job on its own hosts: it advances, stops at a fault, restarts
    from its checkpoint once Sentinel decided (or by hand, if no decision comes)."""

    name: str = JOB
    # The job's hosts (fleet indices), those with a real agent first; local index i is
    # hosts[i], its ranks i * 8 .. i * 8 + 7.
    hosts: tuple[int, ...] = ()
    agents: int = 0  # how many of `hosts` run a real agent (faults go only to those)
    step: int = 0
    checkpoint: int = 0
    stalled_since: float | None = None  # monotonic
    stalled_at: float | None = None  # wall clock of the fault that stopped it
    restart_at: float | None = None  # monotonic
    running_since: float = 0.0  # monotonic: when it (re)started
    last_fault: float | None = None  # monotonic
    faults: int = 0
    restarts: int = 0
    restarts_by_hand: int = 0

    @property
    def world_size(self) -> int:
        return len(self.hosts) * 8

    @property
    def running(self) -> bool:
        return self.stalled_since is None and self.restart_at is None

    def tick(self, now: float, steps: int) -> None:
        if self.restart_at is not None and now >= self.restart_at:
            self.step, self.stalled_since, self.restart_at = self.checkpoint, None, None
            self.stalled_at, self.running_since = None, now
            self.restarts += 1
        if self.stalled_since is None:
            self.step += steps
            if self.step - self.checkpoint >= 50:
                self.checkpoint = self.step - self.step % 50

    def interrupt(self, now: float, wall: float) -> None:
        """A fault: the ranks stop advancing (every failure in the mix interrupts the job)."""
        self.stalled_since = self.stalled_since or now
        self.stalled_at = self.stalled_at or wall
        self.last_fault = now
        self.faults += 1

    def restart_after(self, now: float, delay_s: float) -> bool:
        """Come back from the checkpoint delay_s from now; never before the service could see
        the job stopped (its stall rule), so that the incident can resolve once the restarted
        ranks advance. False if it is not down or already coming back."""
        if self.stalled_since is None or self.restart_at is not None:
            return False
        self.restart_at = max(now + delay_s, self.stalled_since + DOWN_AT_LEAST_S)
        return True

    def eligible(self, now: float, min_gap_s: float, resumed_s: float) -> bool:
        """Can a fault interrupt it now: it trains (not stalled, not waiting for its restart),
        has trained for resumed_s since it came back, and its last fault is min_gap_s old."""
        return (
            self.running
            and self.agents > 0
            and now - self.running_since >= resumed_s
            and (self.last_fault is None or now - self.last_fault >= min_gap_s)
        )

    def victims(self, culprit: int, spread: str) -> list[int]:
        """The job's local host indices whose logs get a fault's lines: the culprit, its rack
        (within the job), or every host of the job; only hosts with a real agent."""
        if spread == "all":
            return list(range(self.agents))
        if spread == "rack":
            start = (culprit // RACK) * RACK
            return list(range(start, min(start + RACK, self.agents)))
        return [culprit]


def pick_job(
    rng: random.Random, jobs: Sequence[Job], now: float, min_gap_s: float, resumed_s: float
) -> Job | None:
    """Uniformly among the jobs a fault can interrupt now (Job.eligible); None if none can."""
    ready = [j for j in jobs if j.eligible(now, min_gap_s, resumed_s)]
    if len(ready) <= 1:  # no draw: one job gets today's fault sequence from the seed
        return ready[0] if ready else None
    return rng.choice(ready)


def layout(hosts: int, agents: int, jobs: int) -> list[tuple[int, ...]]:
    """Disjoint jobs over the whole fleet: the real-agent hosts (0 .. agents-1) and the light
    ones split alike, each job contiguous slices of both (256 hosts, 8 jobs: 32 hosts each,
    4 racks of 8; 2,048 hosts: 32 real + 224 light each)."""
    if not 1 <= jobs <= agents:
        raise ValueError(f"jobs must be 1 .. {agents} (each needs a host with a real agent)")

    def part(start: int, n: int, k: int) -> range:
        return range(start + n * k // jobs, start + n * (k + 1) // jobs)

    light = hosts - agents
    return [(*part(0, agents, k), *part(agents, light, k)) for k in range(jobs)]


@dataclass
class Demo:
    hosts: int
    port: int
    data_dir: Path
    duration_s: float | None
    fault_every_s: float
    seed: int
    console: Console
    # Training jobs on disjoint hosts (layout()): 1 is one job, JOB, on every host.
    jobs: int = 1
    # A fault goes to a job that trains (Job.eligible) and whose last fault is min_job_gap_s
    # old (None: 4 beats: time for the previous incident to be decided, the job restarted and
    # the incident resolved as training resumes), back for resumed_s since its restart (the
    # service has seen its ranks advance past the interruption and one heartbeat interval).
    min_job_gap_s: float | None = None
    resumed_s: float = 20.0
    # Told of each fault as it is written (the soak benchmark keeps the list).
    on_inject: Callable[[Injection], None] | None = None
    # Stop injecting this long after the first fault (None: never); the fleet keeps running.
    inject_for_s: float | None = None
    # Then also wait (up to this long) until the service knows every rank of the jobs.
    ranks_wait_s: float = 0.0
    banner: bool = True
    ranks_at_first_fault: int | None = None  # what the service knew (when ranks_wait_s > 0)
    injecting_done: asyncio.Event = field(default_factory=asyncio.Event)
    # Beats that found no job to interrupt: how long each waited for one (seconds).
    late_beats: list[float] = field(default_factory=list)
    skipped_beats: int = 0  # beats that found none before injecting ended
    sims: list[Job] = field(init=False)  # the jobs, in layout order
    _member: list[tuple[Job, int]] = field(init=False)  # by fleet host: its job, local index

    def __post_init__(self) -> None:
        names = [JOB] if self.jobs == 1 else [f"{JOB}-{k}" for k in range(self.jobs)]
        self.sims = []
        member: dict[int, tuple[Job, int]] = {}
        for name, hosts in zip(names, layout(self.hosts, self.agents, self.jobs), strict=True):
            job = Job(name=name, hosts=hosts, agents=sum(h < self.agents for h in hosts))
            self.sims.append(job)
            member.update({h: (job, i) for i, h in enumerate(hosts)})
        self._member = [member[h] for h in range(self.hosts)]

    @property
    def agents(self) -> int:
        return min(self.hosts, MAX_AGENTS)

    @property
    def gap_s(self) -> float:
        return 4 * self.fault_every_s if self.min_job_gap_s is None else self.min_job_gap_s

    def job_of(self, name: str | None) -> Job | None:
        """The job a decision is about; a decision naming no job is the only job's, if one."""
        if name is None:
            return self.sims[0] if len(self.sims) == 1 else None
        return next((j for j in self.sims if j.name == name), None)

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
            send_interval_s=BEAT_S,
            heartbeat_interval_s=BEAT_S,
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

    def inject(self, rng: random.Random, fault: Fault, job: Job) -> Injection:
        """Write the fault's lines into the logs of its hosts in `job`: its culprit is one of
        the job's hosts with a real agent (their lines take the real parsing path)."""
        culprit = rng.randrange(job.agents)
        gpu = rng.randrange(8)
        victims = job.victims(culprit, fault.spread)
        at = time.time()
        job.interrupt(time.monotonic(), at)
        stamp = datetime.fromtimestamp(at, UTC).strftime("%b %d %H:%M:%S")
        for i in victims:
            h = job.hosts[i]
            host = self.host(h)
            kern, train = self.logs(host)
            values = {
                "host": host,
                "bus": BUSES[gpu],
                "pid": 4000 + h,
                "rank": i * 8 + gpu,
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
        name = self.host(job.hosts[culprit])
        where = (
            name
            if fault.spread == "culprit"
            else (f"rack of {name}" if fault.spread == "rack" else "every host")
        )
        return Injection(
            at=at,
            fault=fault,
            culprit=name if fault.spread == "culprit" else None,
            hosts=tuple(self.host(job.hosts[i]) for i in victims),
            where=where,
            job_id=job.name,
        )

    async def ranks_known(self, service: LiveService, stop: asyncio.Event) -> int | None:
        """Wait until the service has the jobs' rank maps (every host's ranks), or ranks_wait_s.
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
                    r = await client.get("/api/v1/jobs")
                    if r.status_code == 200:
                        ours = {j.name for j in self.sims}
                        known = sum(int(j["ranks_reporting"]) for j in r.json() if j["id"] in ours)
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
            # Llama 3's mix is per interruption of a running job: one that is down (stalled,
            # waiting for its restart) cannot be interrupted again. Wait for one if none is.
            job = pick_job(rng, self.sims, time.monotonic(), self.gap_s, self.resumed_s)
            if job is None:
                job = await self._wait_for_job(rng, stop, first)
                if job is None:
                    self.skipped_beats += 1
                    return
                self.late_beats.append(time.monotonic() - due)
            injection = self.inject(rng, fault, job)
            if self.on_inject is not None:
                self.on_inject(injection)
            self.console.print(
                f"[dim]{time.strftime('%H:%M:%S')}  injected: {escape(injection.describe())}[/dim]"
            )

    async def _wait_for_job(
        self, rng: random.Random, stop: asyncio.Event, first: float
    ) -> Job | None:
        """The first job a fault can interrupt; None if the demo stops or injecting ends."""
        end = math.inf if self.inject_for_s is None else first + self.inject_for_s
        while not stop.is_set() and time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.25)
            job = pick_job(rng, self.sims, time.monotonic(), self.gap_s, self.resumed_s)
            if job is not None and not stop.is_set():
                return job
        return None

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
                        self._restart_after(d, inc)
                        # What the service says came from logs: print it as text, not markup.
                        culprit = escape(inc["culprit_host"] or "-")
                        self.console.print(
                            f"{time.strftime('%H:%M:%S')}  [bold]{escape(inc['category'])}"
                            f"[/bold] culprit [cyan]{culprit}[/cyan] → {escape(d['action'])} "
                            f"({escape(d['status'])}): {escape(d['reason'][:90])}"
                        )

    def _restart_after(self, decision: dict[str, Any], incident: dict[str, Any]) -> None:
        """The decision's job comes back: a few seconds after an automatic restart, later after
        a human. Only a decision made after the fault that stopped it: a late word on an older
        incident of the job does not restart it."""
        job = self.job_of(decision.get("job_id") or incident.get("job_id"))
        if job is None or job.stalled_at is None:
            return
        made = datetime.fromisoformat(str(decision["created_at"]))
        if made.tzinfo is None:  # the API's times are UTC
            made = made.replace(tzinfo=UTC)
        if made.timestamp() < job.stalled_at:
            return
        human = decision["action"] in ("escalate", "hold")
        job.restart_after(time.monotonic(), 30.0 if human else 5.0)

    def _by_hand(self, now: float) -> None:
        """A job down with no decision for BY_HAND_AFTER_S: an operator restarts it."""
        for job in self.sims:
            down = job.stalled_since
            if down is not None and job.restart_at is None and now - down >= BY_HAND_AFTER_S:
                job.restart_after(now, 0.0)
                job.restarts_by_hand += 1
                self.console.print(
                    f"[dim]{time.strftime('%H:%M:%S')}  no decision for {job.name} in "
                    f"{BY_HAND_AFTER_S:g} s: restarted by hand[/dim]"
                )

    async def fleet(self, configs: list[AgentConfig], stop: asyncio.Event) -> None:
        agents = [Agent(config) for config in configs]
        tasks = [asyncio.create_task(agent.run(stop)) for agent in agents]
        tasks.append(asyncio.create_task(self.train(agents, stop)))
        await asyncio.gather(*tasks)

    async def train(self, agents: list[Agent], stop: asyncio.Event, every: float = BEAT_S) -> None:
        """Each host's 8 ranks beat through its agent, as the heartbeat client would; ranks
        are numbered within the host's job."""
        while not stop.is_set():
            mono = time.monotonic()
            self._by_hand(mono)
            for job in self.sims:
                job.tick(mono, steps=int(every))
            now = datetime.now(UTC)
            for h, agent in enumerate(agents):
                job, i = self._member[h]
                if not job.running:  # hung ranks do not beat
                    continue
                agent.emit(
                    [
                        HeartbeatSummary(
                            id=uuid.uuid4(),
                            observed_at=now,
                            job_id=job.name,
                            rank=i * 8 + g,
                            local_rank=g,
                            gpu_index=g,
                            step=job.step,
                            step_time_s=1.0,
                            checkpoint_step=job.checkpoint,
                            checkpoint_path=f"/checkpoints/{job.name}/step-{job.checkpoint}",
                            beats=int(every),
                            last_beat_at=now,
                            world_size=job.world_size,
                        )
                        for g in range(8)
                    ]
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)

    async def light_hosts(
        self, service: LiveService, stop: asyncio.Event, every: float = BEAT_S
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
        job, i = self._member[h]
        if job.running:
            obs += [
                {
                    "kind": "heartbeat",
                    "id": str(uuid.uuid4()),
                    "observed_at": now,
                    "job_id": job.name,
                    "rank": i * 8 + g,
                    "local_rank": g,
                    "gpu_index": g,
                    "step": job.step,
                    "step_time_s": 1.0,
                    "checkpoint_step": job.checkpoint,
                    "beats": int(BEAT_S),
                    "last_beat_at": now,
                    "world_size": job.world_size,
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
                "SENTINEL_TRIAGE__HEARTBEAT_INTERVAL_S": f"{SERVICE_HEARTBEAT_S:g}",
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
                began = time.monotonic()
                self._say_stopping(f"stopping: {self.agents} agents (each ships what it holds)...")
                # Each agent closes its NVML collector in a thread, which waits for its XID
                # watcher (up to half a second); through asyncio's default pool (a few threads
                # on a small machine) 256 agents took 20 s to stop. All at once, one wait.
                asyncio.get_running_loop().set_default_executor(
                    ThreadPoolExecutor(max_workers=self.agents + 8, thread_name_prefix="stop")
                )
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                self._say_stopping(f"agents stopped in {time.monotonic() - began:.1f} s")
        finally:
            began = time.monotonic()
            self._say_stopping("stopping the service...")
            service.stop()
            self._say_stopping(f"service stopped in {time.monotonic() - began:.1f} s")
            self.console.print("demo stopped: service and agents are down")

    def _say_stopping(self, text: str) -> None:
        if self.banner:
            self.console.print(f"[dim]{text}[/dim]")

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
            + (
                f"; job {JOB} on all of them"
                if len(self.sims) == 1
                else f"; {len(self.sims)} jobs ({self.sims[0].name} .. {self.sims[-1].name}) "
                f"of {len(self.sims[0].hosts)} hosts"
            )
        )
        c.print(
            f"failures:       one every {self.fault_every_s:g} s into a job that is training "
            f"(none again within {self.gap_s:g} s), drawn from Llama 3's root-cause mix, "
            "written into the hosts' kernel and training logs"
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
