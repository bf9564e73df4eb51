"""The one protocol every scheduler adapter implements, and the values its calls return."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

Operation = Literal[
    "drain", "resume", "requeue", "reboot", "reset_gpu", "job_state", "nodes", "reserve"
]

# "completing" is kept apart from "running": a requeued Slurm job passes through COMPLETING on
# its old nodes before it is pending again, and a caller polling for "running elsewhere" must
# not mistake that for the restart.
JobState = Literal["pending", "running", "completing", "completed", "failed"]

# "draining": marked to drain but still running work; "drained": marked and empty.
NodeState = Literal["idle", "mixed", "allocated", "draining", "drained", "down", "unknown"]

# Host names reach command lines (as exec arguments, never through a shell) and hostlist
# expressions, where "[", "]" and "," have meaning; this alphabet has none of them.
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
JOB_ID_RE = re.compile(r"^[0-9]{1,18}(_[0-9]{1,9})?$")
# What ``nvidia-smi -i`` takes: an index, a PCI bus id or a UUID.
GPU_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,63}$")
# Flags of a node whose reboot is asked for and not over.
REBOOT_FLAGS = frozenset({"REBOOT_REQUESTED", "REBOOT_ISSUED"})


def valid_host(host: str) -> bool:
    return bool(HOST_RE.match(host))


def valid_job_id(job_id: str) -> bool:
    return bool(JOB_ID_RE.match(job_id))


def valid_gpu(gpu: str) -> bool:
    return bool(GPU_RE.match(gpu))


class OpResult(BaseModel):
    """What one adapter call did: the caller persists it as the outcome of its decision."""

    model_config = ConfigDict(frozen=True)

    adapter: str
    op: Operation
    ok: bool
    # What was run, in order: shell-quoted command lines, or "POST url" for a webhook.
    commands: tuple[str, ...] = ()
    output: str = ""
    error: str | None = None
    # True when the same call may succeed later (timeouts, 5xx, controller unreachable);
    # False when repeating it cannot help (unknown job, invalid host, 4xx).
    retryable: bool = False


class JobInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    job_id: str
    name: str = ""
    state: JobState
    raw_state: str = Field("", description="The scheduler's own word for it, e.g. NODE_FAIL.")
    reason: str = Field("", description="Why it is pending, e.g. BeginTime, Resources.")
    nodes: tuple[str, ...] = ()
    excluded_nodes: tuple[str, ...] = ()
    restarts: int = 0


class JobResult(OpResult):
    job: JobInfo | None = None


class NodeInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    state: NodeState
    raw_state: str = Field("", description="Base state and flags, e.g. IDLE+DRAIN+MAINTENANCE.")
    reason: str = ""
    reason_by: str = Field("", description="Who set the reason: a user name, e.g. root.")
    reason_at: int | None = Field(None, description="When the reason was set (UNIX time).")
    reservation: str = ""
    maintenance: bool = Field(False, description="In a maintenance reservation.")
    responding: bool = True
    cpus: int = 0
    cpus_allocated: int = 0
    gpus: int = 0
    gpus_used: int = 0

    @property
    def schedulable(self) -> bool:
        return self.responding and self.state in ("idle", "mixed", "allocated")

    @property
    def flags(self) -> frozenset[str]:
        return frozenset(self.raw_state.split("+")[1:])

    @property
    def rebooting(self) -> bool:
        return bool(self.flags & REBOOT_FLAGS)


class NodeCounts(BaseModel):
    """The capacity picture a restart decision needs: can the job fit without a bad host?"""

    model_config = ConfigDict(frozen=True)

    total: int
    idle: int = Field(description="Schedulable nodes with nothing running: whole spare hosts.")
    allocated: int = Field(description="Nodes with some work (mixed or allocated).")
    draining: int
    drained: int
    down: int = Field(description="Down, unknown or not responding.")
    spare_gpus: int = Field(description="Unused GPUs on schedulable nodes.")


class NodesResult(OpResult):
    nodes: tuple[NodeInfo, ...] = ()

    def counts(self) -> NodeCounts:
        live = [n for n in self.nodes if n.schedulable]
        return NodeCounts(
            total=len(self.nodes),
            idle=sum(1 for n in live if n.state == "idle"),
            allocated=sum(1 for n in live if n.state in ("mixed", "allocated")),
            draining=sum(1 for n in self.nodes if n.state == "draining"),
            drained=sum(1 for n in self.nodes if n.state == "drained"),
            down=sum(
                1
                for n in self.nodes
                if n.state in ("down", "unknown") or (not n.responding and n.state != "drained")
            ),
            spare_gpus=sum(max(n.gpus - n.gpus_used, 0) for n in live),
        )

    def node(self, name: str) -> NodeInfo | None:
        return next((n for n in self.nodes if n.name == name), None)


class SchedulerAdapter(Protocol):
    """Carries out remediation on a scheduler. An expected failure (unknown job, scheduler
    down, receiver says no) is a result with ``ok=False``, never an exception."""

    @property
    def name(self) -> str: ...

    @property
    def idempotent_steps(self) -> frozenset[Operation]:
        """The steps that may run again when an execution died or raised half-way: running
        one twice leaves the cluster as running it once did. A decision with any other step is
        escalated rather than retried."""
        ...

    async def drain(self, host: str, reason: str) -> OpResult:
        """Stop scheduling new work on ``host``; what runs there is left alone."""
        ...

    async def resume(self, host: str) -> OpResult:
        """Return a repaired ``host`` to service. Resuming a host in service is a success."""
        ...

    async def requeue(self, job_id: str, exclude_hosts: Sequence[str]) -> OpResult:
        """Restart the job from its latest checkpoint, never on ``exclude_hosts``. The job's
        own script resumes from the checkpoint; a pending job only gets the exclusion."""
        ...

    async def reboot(self, host: str, reason: str) -> OpResult:
        """Reboot ``host`` once its work has left and return it to service when it is back
        (Slurm: ``scontrol reboot ASAP nextstate=RESUME``). A reboot already asked for and
        not over is a success."""
        ...

    async def reset_gpu(self, host: str, gpu: str, reason: str) -> OpResult:
        """Reset one GPU (``nvidia-smi -r -i gpu``) of a drained ``host`` whose work has left,
        and return the host to service; a failed reset leaves it drained, saying why."""
        ...

    async def job_state(self, job_id: str) -> JobResult: ...

    async def nodes(self) -> NodesResult: ...


@runtime_checkable
class HoldsSpares(Protocol):
    """An adapter that can hold hot spares out of the queue (Slurm: a reservation that
    Sentinel creates, updates and deletes); adapters without it have no spare pool."""

    async def hold(self, reservation: str, hosts: Sequence[str]) -> OpResult:
        """Make ``reservation`` hold exactly ``hosts`` (none: no reservation), so that no job
        lands on them until they are released to one. Repeating it changes nothing."""
        ...


def invalid_hosts(hosts: Sequence[str]) -> list[str]:
    return [h for h in hosts if not valid_host(h)]
