"""An in-memory scheduler with nodes and jobs, for unit tests and replays (same protocol)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sentinel.schedulers.base import (
    JobInfo,
    JobResult,
    JobState,
    NodeInfo,
    NodesResult,
    NodeState,
    Operation,
    OpResult,
    invalid_hosts,
)


@dataclass
class _Node:
    name: str
    gpus: int
    drain_reason: str | None = None
    down: bool = False
    job: str | None = None
    rebooting: bool = False
    gpu_resets: list[str] = field(default_factory=list)


@dataclass
class _Job:
    job_id: str
    name: str
    size: int
    state: JobState
    nodes: list[str] = field(default_factory=list)
    excluded: set[str] = field(default_factory=set)
    restarts: int = 0
    reason: str = ""


class FakeScheduler:
    """Behaves like a tiny Slurm: a drained node takes no new job, a requeued job starts again
    at once on free nodes it does not exclude, or waits for them."""

    name = "fake"
    # As Slurm: a repeated requeue of a job that started again restarts it again.
    idempotent_steps: frozenset[Operation] = frozenset({"drain", "resume", "reboot", "reset_gpu"})

    def __init__(self, nodes: Iterable[str] = (), *, gpus_per_node: int = 8) -> None:
        self._nodes = {n: _Node(n, gpus_per_node) for n in nodes}
        self._jobs: dict[str, _Job] = {}
        self._failures: dict[Operation, OpResult] = {}
        self.calls: list[tuple[Operation, tuple[object, ...]]] = []
        self.reservations: dict[str, tuple[str, ...]] = {}

    # --- test controls -------------------------------------------------------------------

    def submit(self, job_id: str, size: int, *, name: str = "train") -> JobInfo:
        """Queue a job of ``size`` nodes and start it if it fits."""
        self._jobs[job_id] = _Job(job_id, name, size, "pending", reason="Resources")
        self._schedule()
        return self._info(self._jobs[job_id])

    def run_on(self, job_id: str, nodes: Sequence[str], *, name: str = "train") -> JobInfo:
        """A job already running on exactly ``nodes`` (an allocation made before: a live
        service's fake cluster configured with its jobs)."""
        job = self._jobs[job_id] = _Job(job_id, name, len(nodes), "running", list(nodes))
        for host in nodes:
            self._nodes[host].job = job_id
        return self._info(job)

    def finish(self, job_id: str, state: JobState = "completed") -> None:
        job = self._jobs[job_id]
        self._release(job)
        job.state = state

    def set_down(self, host: str, down: bool = True) -> None:
        self._nodes[host].down = down
        self._schedule()

    def boot(self, host: str) -> None:
        """The node comes back from the reboot it was asked for: in service again, as Slurm's
        nextstate=RESUME does."""
        node = self._nodes[host]
        if node.rebooting:
            node.rebooting = False
            node.drain_reason = None
            node.down = False
            self._schedule()

    def fail_next(self, op: Operation, error: str, *, retryable: bool = False) -> None:
        """Make the next ``op`` call fail like the real scheduler would, without acting."""
        self._failures[op] = OpResult(
            adapter=self.name, op=op, ok=False, error=error, retryable=retryable
        )

    # --- the protocol --------------------------------------------------------------------

    async def drain(self, host: str, reason: str) -> OpResult:
        if (failed := self._begin("drain", host, reason)) is not None:
            return failed
        node = self._nodes.get(host)
        if node is None:
            return self._fail("drain", f"unknown host {host}")
        node.drain_reason = reason or "sentinel"
        return self._ok("drain", f"drain {host}")

    async def resume(self, host: str) -> OpResult:
        if (failed := self._begin("resume", host)) is not None:
            return failed
        node = self._nodes.get(host)
        if node is None:
            return self._fail("resume", f"unknown host {host}")
        node.drain_reason = None
        node.down = False
        self._schedule()
        return self._ok("resume", f"resume {host}")

    async def reboot(self, host: str, reason: str) -> OpResult:
        if (failed := self._begin("reboot", host, reason)) is not None:
            return failed
        node = self._nodes.get(host)
        if node is None:
            return self._fail("reboot", f"unknown host {host}")
        node.rebooting = True
        node.drain_reason = node.drain_reason or reason or "sentinel"
        return self._ok("reboot", f"reboot {host}")

    async def reset_gpu(self, host: str, gpu: str, reason: str) -> OpResult:
        if (failed := self._begin("reset_gpu", host, gpu, reason)) is not None:
            return failed
        node = self._nodes.get(host)
        if node is None:
            return self._fail("reset_gpu", f"unknown host {host}")
        if node.job is not None:
            return self._fail("reset_gpu", f"{host} still runs job {node.job}")
        node.gpu_resets.append(gpu)
        node.drain_reason = None
        self._schedule()
        return self._ok("reset_gpu", f"reset GPU {gpu} of {host}")

    async def requeue(self, job_id: str, exclude_hosts: Sequence[str]) -> OpResult:
        if (failed := self._begin("requeue", job_id, tuple(exclude_hosts))) is not None:
            return failed
        if bad := invalid_hosts(exclude_hosts):
            return self._fail("requeue", f"invalid host names {bad!r}")
        job = self._jobs.get(job_id)
        if job is None:
            return self._fail("requeue", f"unknown job {job_id}")
        if unknown := sorted(set(exclude_hosts) - set(self._nodes)):
            return self._fail("requeue", f"unknown hosts {unknown}")
        if job.state in ("completed", "failed"):
            return self._fail("requeue", f"job {job_id} is {job.state}: nothing to requeue")
        job.excluded.update(exclude_hosts)
        if job.state == "running":
            self._release(job)
            job.restarts += 1
            job.state = "pending"
        self._schedule()
        return self._ok("requeue", f"requeue {job_id} excluding {sorted(exclude_hosts)}")

    async def hold(self, reservation: str, hosts: Sequence[str]) -> OpResult:
        if (failed := self._begin("reserve", reservation, tuple(hosts))) is not None:
            return failed
        if unknown := sorted(set(hosts) - set(self._nodes)):
            return self._fail("reserve", f"unknown hosts {unknown}")
        if hosts:
            self.reservations[reservation] = tuple(hosts)
        else:
            self.reservations.pop(reservation, None)
        self._schedule()
        return self._ok("reserve", f"reservation {reservation}: {sorted(hosts)}")

    async def job_state(self, job_id: str) -> JobResult:
        if (failed := self._begin("job_state", job_id)) is not None:
            return JobResult(**failed.model_dump())
        job = self._jobs.get(job_id)
        if job is None:
            return JobResult(**self._fail("job_state", f"unknown job {job_id}").model_dump())
        return JobResult(adapter=self.name, op="job_state", ok=True, job=self._info(job))

    async def nodes(self) -> NodesResult:
        if (failed := self._begin("nodes")) is not None:
            return NodesResult(**failed.model_dump())
        return NodesResult(
            adapter=self.name,
            op="nodes",
            ok=True,
            nodes=tuple(self._node_info(n) for n in self._nodes.values()),
        )

    # --- internals -----------------------------------------------------------------------

    def _begin(self, op: Operation, *args: object) -> OpResult | None:
        self.calls.append((op, args))
        return self._failures.pop(op, None)

    def _ok(self, op: Operation, command: str) -> OpResult:
        return OpResult(adapter=self.name, op=op, ok=True, commands=(command,))

    def _fail(self, op: Operation, error: str) -> OpResult:
        return OpResult(adapter=self.name, op=op, ok=False, error=error)

    def _release(self, job: _Job) -> None:
        for name in job.nodes:
            self._nodes[name].job = None
        job.nodes = []

    def _schedule(self) -> None:
        reserved = {h for hosts in self.reservations.values() for h in hosts}
        for job in self._jobs.values():
            if job.state != "pending":
                continue
            free = [
                n.name
                for n in self._nodes.values()
                if n.job is None
                and n.drain_reason is None
                and not n.down
                and n.name not in job.excluded
                and n.name not in reserved
            ]
            if len(free) < job.size:
                job.reason = "Resources"
                continue
            job.nodes = free[: job.size]
            for name in job.nodes:
                self._nodes[name].job = job.job_id
            job.state = "running"
            job.reason = ""

    def _info(self, job: _Job) -> JobInfo:
        return JobInfo(
            job_id=job.job_id,
            name=job.name,
            state=job.state,
            raw_state=job.state.upper(),
            reason=job.reason,
            nodes=tuple(job.nodes),
            excluded_nodes=tuple(sorted(job.excluded)),
            restarts=job.restarts,
        )

    def _node_info(self, node: _Node) -> NodeInfo:
        state: NodeState
        if node.down:
            state = "down"
        elif node.drain_reason is not None:
            state = "draining" if node.job else "drained"
        else:
            state = "allocated" if node.job else "idle"
        return NodeInfo(
            name=node.name,
            state=state,
            raw_state="+".join([state.upper(), *(["REBOOT_REQUESTED"] if node.rebooting else [])]),
            reason=node.drain_reason or "",
            cpus=node.gpus,
            cpus_allocated=node.gpus if node.job else 0,
            gpus=node.gpus,
            gpus_used=node.gpus if node.job else 0,
        )
