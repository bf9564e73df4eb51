"""The demo's default adapter: says what it would do, records it, and changes nothing."""

from __future__ import annotations

from collections.abc import Sequence

from sentinel.schedulers.base import (
    JobResult,
    NodesResult,
    Operation,
    OpResult,
    SchedulerAdapter,
    invalid_hosts,
    valid_gpu,
)

_NO_READS = "dry run: no scheduler to read from"


class DryRunScheduler:
    """Changes are recorded in ``planned`` and reported as done; reads go to ``reads_from``
    when given (a dry run over a real cluster), else fail, since there is nothing to read."""

    name = "dryrun"
    # Nothing is changed, so nothing can happen twice.
    idempotent_steps: frozenset[Operation] = frozenset(
        {"drain", "resume", "requeue", "reboot", "reset_gpu"}
    )

    def __init__(self, reads_from: SchedulerAdapter | None = None) -> None:
        self._reads_from = reads_from
        self.planned: list[OpResult] = []

    def _plan(self, op: Operation, command: str) -> OpResult:
        result = OpResult(
            adapter=self.name,
            op=op,
            ok=True,
            commands=(command,),
            output=f"dry run, not done: {command}",
        )
        self.planned.append(result)
        return result

    def _refuse(self, op: Operation, error: str) -> OpResult:
        return OpResult(adapter=self.name, op=op, ok=False, error=error)

    async def drain(self, host: str, reason: str) -> OpResult:
        if invalid_hosts([host]):
            return self._refuse("drain", f"invalid host name {host!r}")
        return self._plan("drain", f"drain {host} reason={reason!r}")

    async def resume(self, host: str) -> OpResult:
        if invalid_hosts([host]):
            return self._refuse("resume", f"invalid host name {host!r}")
        return self._plan("resume", f"resume {host}")

    async def requeue(self, job_id: str, exclude_hosts: Sequence[str]) -> OpResult:
        if bad := invalid_hosts(exclude_hosts):
            return self._refuse("requeue", f"invalid host names {bad!r}")
        excluded = ",".join(sorted(exclude_hosts)) or "-"
        return self._plan("requeue", f"requeue job {job_id} excluding {excluded}")

    async def reboot(self, host: str, reason: str) -> OpResult:
        if invalid_hosts([host]):
            return self._refuse("reboot", f"invalid host name {host!r}")
        return self._plan("reboot", f"reboot {host} reason={reason!r}")

    async def reset_gpu(self, host: str, gpu: str, reason: str) -> OpResult:
        if invalid_hosts([host]) or not valid_gpu(gpu):
            return self._refuse("reset_gpu", f"invalid host or GPU {host!r} {gpu!r}")
        return self._plan("reset_gpu", f"reset GPU {gpu} of {host} reason={reason!r}")

    async def job_state(self, job_id: str) -> JobResult:
        if self._reads_from is not None:
            return await self._reads_from.job_state(job_id)
        return JobResult(adapter=self.name, op="job_state", ok=False, error=_NO_READS)

    async def nodes(self) -> NodesResult:
        if self._reads_from is not None:
            return await self._reads_from.nodes()
        return NodesResult(adapter=self.name, op="nodes", ok=False, error=_NO_READS)
