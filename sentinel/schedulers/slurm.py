"""Slurm adapter: drains, resumes, requeues and reboots through the Slurm CLI, reads with --json.

Every command is an exec argument list (no shell) with a timeout. slurmrestd v0.0.38 cannot
drain or requeue and 22.05 has no ``scontrol show job --json``, so this is the CLI only. The
JSON of every release from 22.05 to 25.05 is read (tests/schedulers/data/README.md says where
each recorded shape comes from).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import re
import shlex
import shutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

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
    valid_gpu,
    valid_host,
    valid_job_id,
)
from sentinel.schedulers.hostlist import HostlistError, compress, expand

MAX_REASON = 200

# Failures that say "the controller could not be reached", as opposed to "the request is
# wrong": only these are worth repeating.
_TRANSIENT = re.compile(
    r"unable to contact slurm controller|socket timed out|connection refused|"
    r"zero bytes were transmitted|slurm_persist_conn|communication connection failure|"
    r"temporarily unavailable|try again",
    re.IGNORECASE,
)

_JOB_STATES: dict[str, JobState] = {
    "PENDING": "pending",
    "REQUEUED": "pending",
    "REQUEUE_HOLD": "pending",
    "REQUEUE_FED": "pending",
    "RUNNING": "running",
    "CONFIGURING": "running",
    "SUSPENDED": "running",
    "STOPPED": "running",
    "RESIZING": "running",
    "SIGNALING": "running",
    "STAGE_OUT": "running",
    "COMPLETING": "completing",
    "COMPLETED": "completed",
}

_NODE_BASE: dict[str, NodeState] = {
    "idle": "idle",
    "mixed": "mixed",
    "allocated": "allocated",
    "completing": "allocated",
    "down": "down",
    "error": "down",
    "future": "unknown",
    "unknown": "unknown",
}

# slurmd refuses to launch a job whose credential is from the same second as the revocation
# of its previous run ("Job credential revoked") and slurmctld then ends the job for good;
# seen with StartTime=now. Two seconds after the old run is gone keeps the second distinct,
# with room for clock skew between hosts; Slurm's own guard is cred_expire (120 s).
START_AFTER = "now+2"

_GPU_COUNT = re.compile(r"(?:^|,)gpu(?::[^:,(]+)?:(\d+)")


def sanitize_reason(reason: str) -> str:
    """A reason Slurm stores and shows as given: printable ASCII, one line, no quotes."""
    text = "".join(ch if " " <= ch <= "~" else " " for ch in reason)
    text = re.sub(r"[\"'`\\]", "", text)
    text = " ".join(text.split())
    if len(text) > MAX_REASON:
        text = text[: MAX_REASON - 3].rstrip() + "..."
    # Slurm refuses to drain without a reason.
    return text or "sentinel"


def _gpus(gres: str | None) -> int:
    return sum(int(n) for n in _GPU_COUNT.findall(gres or ""))


_JOB_FLAG_PRECEDENCE: Final = (
    "COMPLETING",
    "STAGE_OUT",
    "CONFIGURING",
    "RESIZING",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "SPECIAL_EXIT",
    "STOPPED",
    "REVOKED",
    "RESV_DEL_HOLD",
    "SIGNALING",
)


def _number(value: object) -> object:
    """Slurm's optional numbers as a plain int or None. 22.05 prints a bare number (or null);
    23.02 and later print ``{"set", "infinite", "number"}`` (plain, "Infinity" or null with
    ``--json=complex``): unset and infinite are None."""
    if isinstance(value, dict):
        return value.get("number") if value.get("set") and not value.get("infinite") else None
    if isinstance(value, str) and value.lower() in ("infinity", "infinite", "unlimited"):
        return None
    return value


def _words(value: object) -> object:
    """A state as a list of words: 22.05's single word (``"mixed"``) or 23.02+'s list."""
    return [value] if isinstance(value, str) else value


SlurmNumber = Annotated[int | None, BeforeValidator(_number)]
StateWords = Annotated[list[str], BeforeValidator(_words)]


def job_state_word(words: Sequence[str]) -> str:
    """One word for a job state, as ``job_state_string`` has always printed it: a flag such as
    COMPLETING or REQUEUED outranks the base state (23.11 and later list both)."""
    upper = [w.upper() for w in words]
    for flag in _JOB_FLAG_PRECEDENCE:
        if flag in upper:
            return flag
    return upper[0] if upper else "UNKNOWN"


class _SqueueJob(BaseModel):
    model_config = ConfigDict(extra="ignore")

    job_id: int
    array_job_id: SlurmNumber = None
    array_task_id: SlurmNumber = None
    name: str = ""
    job_state: StateWords
    state_reason: str = ""
    nodes: str | None = ""
    excluded_nodes: str | None = ""
    restart_cnt: int = 0


class _Node(BaseModel):
    """One node as ``sinfo --json`` printed it in 22.05 and ``scontrol show nodes --json``
    prints it from 23.02 on: ``state`` a word plus ``state_flags`` (22.05) or one list of
    words (23.02+, base state first)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    state: StateWords
    state_flags: list[str] = []
    reason: str | None = ""
    reason_set_by_user: str | None = ""
    reason_changed_at: SlurmNumber = None
    reservation: str | None = ""
    cpus: int = 0
    alloc_cpus: int = 0
    gres: str | None = ""
    gres_used: str | None = ""

    def rows(self) -> list[_NodeRow]:
        return [
            _NodeRow(
                self.name,
                [*self.state, *self.state_flags],
                self.reason or "",
                self.reason_set_by_user or "",
                self.reason_changed_at,
                self.reservation or "",
                self.cpus,
                self.alloc_cpus,
                self.gres or "",
                self.gres_used or "",
            )
        ]


class _SinfoNodes(BaseModel):
    model_config = ConfigDict(extra="ignore")

    nodes: list[str] = []


class _SinfoState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    state: StateWords = []


class _SinfoCpus(BaseModel):
    model_config = ConfigDict(extra="ignore")

    allocated: int = 0
    total: int = 0


class _SinfoGres(BaseModel):
    model_config = ConfigDict(extra="ignore")

    total: str | None = ""
    used: str | None = ""


class _SinfoReason(BaseModel):
    model_config = ConfigDict(extra="ignore")

    description: str | None = ""
    time: SlurmNumber = None
    user: str | None = ""


class _SinfoRecord(BaseModel):
    """One record of ``sinfo --json`` from 23.02 on (data_parser v0.0.39 to v0.0.43): the
    nodes that share a state, per partition; one node per record with ``-N``."""

    model_config = ConfigDict(extra="ignore")

    node: _SinfoState = _SinfoState()
    nodes: _SinfoNodes = _SinfoNodes()
    cpus: _SinfoCpus = _SinfoCpus()
    gres: _SinfoGres = _SinfoGres()
    reason: _SinfoReason = _SinfoReason()
    reservation: str | None = ""

    def rows(self) -> list[_NodeRow]:
        # Counts are the record's sums: split evenly when nodes were merged (without -N).
        share = max(len(self.nodes.nodes), 1)
        return [
            _NodeRow(
                name,
                list(self.node.state),
                self.reason.description or "",
                self.reason.user or "",
                self.reason.time or None,
                self.reservation or "",
                self.cpus.total // share,
                self.cpus.allocated // share,
                self.gres.total or "",
                self.gres.used or "",
            )
            for name in self.nodes.nodes
        ]


@dataclass(frozen=True)
class _NodeRow:
    """A node's fields whatever the release printed them as."""

    name: str
    words: list[str]
    reason: str
    reason_by: str
    reason_at: int | None
    reservation: str
    cpus: int
    alloc_cpus: int
    gres: str
    gres_used: str

    def info(self) -> NodeInfo:
        words = [w.upper() for w in self.words]
        base_word = next((w for w in words if w.lower() in _NODE_BASE), "UNKNOWN")
        flags = sorted({w for w in words if w != base_word})
        base = _NODE_BASE.get(base_word.lower(), "unknown")
        state: NodeState = base
        if "DRAIN" in flags and base not in ("down", "unknown"):
            state = "draining" if base in ("mixed", "allocated") else "drained"
        return NodeInfo(
            name=self.name,
            state=state,
            raw_state="+".join([base_word, *flags]),
            reason=self.reason,
            reason_by=self.reason_by,
            reason_at=self.reason_at or None,
            reservation=self.reservation,
            maintenance="MAINTENANCE" in flags,
            responding="NOT_RESPONDING" not in flags,
            cpus=self.cpus,
            cpus_allocated=self.alloc_cpus,
            gpus=_gpus(self.gres),
            gpus_used=_gpus(self.gres_used),
        )


def parse_squeue(text: str) -> list[JobInfo]:
    """Jobs from ``squeue --json``: openapi v0.0.38 (22.05), data_parser v0.0.39 (23.02,
    ``job_state`` a word) to v0.0.43 (25.05, ``job_state`` a list; optional numbers as
    ``{"set", "infinite", "number"}``)."""
    data = json.loads(text)
    jobs: list[JobInfo] = []
    for raw in data.get("jobs", []):
        job = _SqueueJob.model_validate(raw)
        job_id = str(job.job_id)
        if job.array_task_id is not None and job.array_job_id:
            job_id = f"{job.array_job_id}_{job.array_task_id}"
        word = job_state_word(job.job_state)
        jobs.append(
            JobInfo(
                job_id=job_id,
                name=job.name,
                state=_JOB_STATES.get(word, "failed"),
                raw_state=word,
                reason="" if job.state_reason == "None" else job.state_reason,
                nodes=tuple(expand(job.nodes or "")),
                excluded_nodes=tuple(expand(job.excluded_nodes or "")),
                restarts=job.restart_cnt,
            )
        )
    return jobs


def parse_sinfo(text: str) -> list[NodeInfo]:
    """Nodes from ``sinfo [-N] --json`` of any release from 22.05 to 25.05 (``nodes``: one
    entry per node and partition; ``sinfo``: records naming their nodes) or from ``scontrol
    show nodes --json`` (23.02+); each node once."""
    data = json.loads(text)
    rows: list[_NodeRow] = []
    for raw in data.get("nodes", []):
        rows += _Node.model_validate(raw).rows()
    for raw in data.get("sinfo", []):
        rows += _SinfoRecord.model_validate(raw).rows()
    return list({row.name: row.info() for row in rows}.values())


@dataclass(frozen=True)
class _Run:
    command: str
    ok: bool
    output: str
    error: str | None
    retryable: bool


class SlurmScheduler:
    """Drives one Slurm cluster through its CLI (``scontrol``, ``squeue``, ``sinfo``)."""

    name = "slurm"
    # Draining a drained node and resuming a node in service succeed; a reboot already asked
    # for is not asked for again; a GPU reset repeated on an empty node resets it again, which
    # harms nothing. A requeue repeated after the job started again elsewhere would stop it a
    # second time.
    idempotent_steps: frozenset[Operation] = frozenset({"drain", "resume", "reboot", "reset_gpu"})

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        conf: Path | None = None,
        timeout_s: float = 15.0,
        fast_requeue: bool = True,
        settle_s: float = 60.0,
        poll_s: float = 0.25,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        nvidia_smi: str = "nvidia-smi",
    ) -> None:
        self._nvidia_smi = nvidia_smi
        self._bin_dir = bin_dir
        self._conf = conf
        self._timeout_s = timeout_s
        self._fast_requeue = fast_requeue
        self._settle_s = settle_s
        self._poll_s = poll_s
        self._sleep = sleep

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self._conf is not None:
            env["SLURM_CONF"] = str(self._conf)
        return env

    def _binary(self, tool: str) -> str | None:
        if self._bin_dir is not None:
            path = self._bin_dir / tool
            return str(path) if path.exists() else None
        return shutil.which(tool)

    async def _run(self, tool: str, *args: str) -> _Run:
        binary = self._binary(tool)
        command = shlex.join([tool, *args])
        if binary is None:
            where = self._bin_dir or "PATH"
            return _Run(
                command, False, "", f"{tool} not found in {where} (Debian: slurm-client)", False
            )
        try:
            proc = await asyncio.create_subprocess_exec(
                binary,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env(),
            )
        except OSError as exc:
            return _Run(command, False, "", f"{tool}: {exc}", False)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self._timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            # Reap it, so that a hung client never lingers as a zombie.
            await proc.wait()
            return _Run(command, False, "", f"{tool} timed out after {self._timeout_s}s", True)
        stdout = out.decode(errors="replace").strip()
        stderr = err.decode(errors="replace").strip()
        if proc.returncode == 0:
            return _Run(command, True, stdout, None, False)
        message = stderr or stdout or f"{tool} exited with {proc.returncode}"
        return _Run(command, False, stdout, message, bool(_TRANSIENT.search(message)))

    def _result(
        self, op: Operation, runs: Sequence[_Run], *, prior: Sequence[str] = (), note: str = ""
    ) -> OpResult:
        last = runs[-1]
        output = "\n".join(r.output for r in runs if r.output)
        return OpResult(
            adapter=self.name,
            op=op,
            ok=last.ok,
            commands=(*prior, *(r.command for r in runs)),
            output="\n".join(x for x in (output, note) if x),
            error=last.error,
            retryable=last.retryable,
        )

    def _failure(
        self, op: Operation, error: str, *, retryable: bool = False, commands: Sequence[str] = ()
    ) -> OpResult:
        return OpResult(
            adapter=self.name,
            op=op,
            ok=False,
            commands=tuple(commands),
            error=error,
            retryable=retryable,
        )

    async def drain(self, host: str, reason: str) -> OpResult:
        if invalid_hosts([host]):
            return self._failure("drain", f"invalid host name {host!r}")
        run = await self._run(
            "scontrol",
            "update",
            f"NodeName={host}",
            "State=DRAIN",
            f"Reason={sanitize_reason(reason)}",
        )
        return self._result("drain", [run])

    async def resume(self, host: str) -> OpResult:
        if invalid_hosts([host]):
            return self._failure("resume", f"invalid host name {host!r}")
        run = await self._run("scontrol", "update", f"NodeName={host}", "State=RESUME")
        if run.ok or "invalid node state" not in (run.error or "").lower():
            return self._result("resume", [run])
        # Slurm refuses RESUME on a node that is neither drained nor down; for the caller that
        # node is already in service, which is what it asked for.
        listing = await self.nodes()
        node = listing.node(host)
        if node is not None and node.schedulable:
            done = _Run(run.command, True, "", None, False)
            return self._result(
                "resume", [done], prior=listing.commands, note=f"{host} was already in service"
            )
        return self._result("resume", [run])

    async def reboot(self, host: str, reason: str) -> OpResult:
        if invalid_hosts([host]):
            return self._failure("reboot", f"invalid host name {host!r}")
        listing = await self.nodes()
        node = listing.node(host)
        if node is not None and node.rebooting:
            done = _Run("(none)", True, "", None, False)
            note = f"{host} is {node.raw_state}: its reboot was asked for already"
            return self._result("reboot", [done], prior=listing.commands, note=note)
        # ASAP: drain, reboot once the node's jobs have left; nextstate=RESUME: back in
        # service when slurmd registers from the new boot. Unreachable for ResumeTimeout, the
        # node goes DOWN with "reboot timed out".
        run = await self._run(
            "scontrol",
            "reboot",
            "ASAP",
            "nextstate=RESUME",
            f"reason={sanitize_reason(reason)}",
            host,
        )
        return self._result("reboot", [run], prior=listing.commands)

    async def reset_gpu(self, host: str, gpu: str, reason: str) -> OpResult:
        """A drained node takes no job, not even srun's, so the reset runs in a maintenance
        reservation of the node for this user: the node is resumed inside it (no one else's
        work can land), ``nvidia-smi -r`` runs there with srun, and the reservation is deleted,
        which returns the node to service; a failed reset drains the node again first."""
        if invalid_hosts([host]):
            return self._failure("reset_gpu", f"invalid host name {host!r}")
        if not valid_gpu(gpu):
            return self._failure("reset_gpu", f"invalid GPU {gpu!r}")
        resv = f"sentinel-reset-{host}"
        runs = [
            await self._run(
                "scontrol",
                "create",
                "reservation",
                f"ReservationName={resv}",
                f"Nodes={host}",
                f"Users={getpass.getuser()}",
                "StartTime=now",
                "Duration=10",
                "Flags=MAINT,IGNORE_JOBS",
            )
        ]
        if not runs[-1].ok and "duplicate" not in (runs[-1].error or "").lower():
            return self._result("reset_gpu", runs)
        runs[-1] = _Run(runs[-1].command, True, runs[-1].output, None, False)
        resumed = await self.resume(host)
        runs.append(_Run(" ; ".join(resumed.commands), resumed.ok, "", resumed.error, False))
        reset: _Run | None = None
        if resumed.ok:
            reset = await self._run(
                "srun",
                f"--reservation={resv}",
                f"--nodelist={host}",
                "--nodes=1",
                "--ntasks=1",
                "--time=5",
                f"--immediate={max(int(self._timeout_s) - 2, 1)}",
                "--job-name=sentinel-gpu-reset",
                self._nvidia_smi,
                "-r",
                "-i",
                gpu,
            )
            runs.append(reset)
        failed = reset is None or not reset.ok
        if failed:
            why = runs[-1].error or "failed"
            runs.append(
                await self._run(
                    "scontrol",
                    "update",
                    f"NodeName={host}",
                    "State=DRAIN",
                    f"Reason={sanitize_reason(f'sentinel: GPU {gpu} reset failed: {why}')}",
                )
            )
        runs.append(await self._run("scontrol", "delete", f"ReservationName={resv}"))
        result = self._result("reset_gpu", runs)
        if failed:
            # The last command (the cleanup) may have worked: the step did not.
            return result.model_copy(update={"ok": False, "error": f"GPU {gpu} reset: {why}"})
        return result

    async def hold(self, reservation: str, hosts: Sequence[str]) -> OpResult:
        """The spare pool's reservation: updated to exactly ``hosts`` (created when Slurm has
        none of that name), deleted when there are none left to hold. IGNORE_JOBS: a spare
        still finishing a job may be reserved; no new job lands on it outside the
        reservation, and no one asks for the reservation (it is Sentinel's)."""
        if invalid_hosts([*hosts]) or not valid_host(reservation):
            return self._failure("reserve", f"invalid reservation or hosts {reservation!r}")
        missing = "requested reservation is invalid"
        if not hosts:
            run = await self._run("scontrol", "delete", f"ReservationName={reservation}")
            if not run.ok and missing in (run.error or "").lower():
                run = _Run(run.command, True, "no reservation to delete", None, False)
            return self._result("reserve", [run])
        nodes = compress(hosts)
        runs = [
            await self._run(
                "scontrol", "update", f"ReservationName={reservation}", f"Nodes={nodes}"
            )
        ]
        if not runs[-1].ok and missing in (runs[-1].error or "").lower():
            runs.append(
                await self._run(
                    "scontrol",
                    "create",
                    "reservation",
                    f"ReservationName={reservation}",
                    f"Nodes={nodes}",
                    f"Users={getpass.getuser()}",
                    "StartTime=now",
                    "Duration=infinite",
                    "Flags=IGNORE_JOBS",
                )
            )
        return self._result("reserve", runs)

    async def job_state(self, job_id: str) -> JobResult:
        if not valid_job_id(job_id):
            return JobResult(**self._failure("job_state", f"bad job id {job_id!r}").model_dump())
        # 22.05 ignores -j together with --json and lists every job: the filter is ours.
        run = await self._run("squeue", "--json")
        if not run.ok:
            return JobResult(**self._result("job_state", [run]).model_dump())
        try:
            jobs = parse_squeue(run.output)
        except (ValueError, ValidationError, HostlistError) as exc:
            failed = self._failure(
                "job_state", f"unreadable squeue json: {exc}", commands=[run.command]
            )
            return JobResult(**failed.model_dump())
        job = next((j for j in jobs if j.job_id == job_id), None)
        if job is None:
            error = f"unknown job {job_id} (never existed, or ended more than MinJobAge ago)"
            failed = self._failure("job_state", error, commands=[run.command])
            return JobResult(**failed.model_dump())
        return JobResult(
            adapter=self.name, op="job_state", ok=True, commands=(run.command,), job=job
        )

    async def nodes(self) -> NodesResult:
        # -N: one record per node (23.02 and later merge alike nodes into one record).
        run = await self._run("sinfo", "-N", "--json")
        if not run.ok:
            return NodesResult(**self._result("nodes", [run]).model_dump())
        try:
            nodes = parse_sinfo(run.output)
        except (ValueError, ValidationError) as exc:
            failed = self._failure("nodes", f"unreadable sinfo json: {exc}", commands=[run.command])
            return NodesResult(**failed.model_dump())
        return NodesResult(
            adapter=self.name, op="nodes", ok=True, commands=(run.command,), nodes=tuple(nodes)
        )

    async def requeue(self, job_id: str, exclude_hosts: Sequence[str]) -> OpResult:
        bad = invalid_hosts(exclude_hosts)
        if bad:
            return self._failure("requeue", f"invalid host names {bad!r}")
        state = await self.job_state(job_id)
        prior = list(state.commands)
        job = state.job
        if job is None:
            return self._failure(
                "requeue", state.error or "no job", retryable=state.retryable, commands=prior
            )
        if job.state in ("completed", "failed"):
            error = f"job {job_id} is {job.raw_state}: nothing to requeue"
            return self._failure("requeue", error, commands=prior)
        if job.state == "completing":
            # Either it is ending, or a requeue (perhaps ours, timed out) is under way; in a
            # moment it is pending or gone, and the retry knows which.
            error = f"job {job_id} is completing"
            return self._failure("requeue", error, retryable=True, commands=prior)
        if exclude_hosts:
            # ExcNodeList with a name Slurm does not know is refused; finding that out after
            # the requeue would leave the job half-handled, so check first.
            listing = await self.nodes()
            prior.extend(listing.commands)
            if not listing.ok:
                error = listing.error or "sinfo failed"
                return self._failure("requeue", error, retryable=listing.retryable, commands=prior)
            unknown = sorted(set(exclude_hosts) - {n.name for n in listing.nodes})
            if unknown:
                return self._failure(
                    "requeue", f"hosts unknown to Slurm: {unknown}", commands=prior
                )
        runs: list[_Run] = []
        note = ""
        if job.state == "running":
            run = await self._run("scontrol", "requeue", job_id)
            runs.append(run)
            if not run.ok:
                return self._result("requeue", runs, prior=prior)
        else:
            note = f"job {job_id} was pending: exclusion only"
        # A requeued job waits cred_expire (its begin time moves) before it may start again,
        # so the exclusion below is in place before the scheduler can place it.
        if exclude_hosts:
            merged = compress({*job.excluded_nodes, *exclude_hosts})
            run = await self._run("scontrol", "update", f"JobId={job_id}", f"ExcNodeList={merged}")
            runs.append(run)
            if not run.ok:
                return self._result("requeue", runs, prior=prior)
        if self._fast_requeue and job.state == "running":
            started, start_note = await self._start_when_pending(job_id)
            runs.extend(started)
            note = start_note
        elif self._fast_requeue and job.reason == "BeginTime" and job.restarts > 0:
            # A retry of a requeue whose StartTime step did not happen: finish it.
            runs.append(
                await self._run("scontrol", "update", f"JobId={job_id}", f"StartTime={START_AFTER}")
            )
        if not runs:
            return OpResult(
                adapter=self.name, op="requeue", ok=True, commands=tuple(prior), output=note
            )
        return self._result("requeue", runs, prior=prior, note=note)

    async def _start_when_pending(self, job_id: str) -> tuple[list[_Run], str]:
        """Let a just-requeued job start in 2 s instead of after cred_expire (120 s by
        default, the whole job idle). Slurm sets that begin time when the old run has
        finished completing, so moving it only sticks once the job is plainly PENDING."""
        polls = 0
        for _ in range(max(1, int(self._settle_s / self._poll_s))):
            state = await self.job_state(job_id)
            polls += 1
            job = state.job
            if job is None or job.state != "completing":
                break
            await self._sleep(self._poll_s)
        seen = [
            _Run(
                f"squeue --json (x{polls}, until the job stopped completing)", True, "", None, False
            )
        ]
        # From here on the requeue has happened: a problem only costs the early start (the
        # job then starts after cred_expire), so it is a note on a success, not a failure.
        if job is None:
            return seen, f"requeued, but not seen since: {state.error}"
        if job.state == "completing":
            return seen, f"still completing after {self._settle_s}s; starts after cred_expire"
        if job.state != "pending":
            return seen, f"job is {job.raw_state} after the requeue"
        run = await self._run("scontrol", "update", f"JobId={job_id}", f"StartTime={START_AFTER}")
        if run.ok:
            return [*seen, run], ""
        if "no longer pending" in (run.error or "").lower():
            return [*seen, _Run(run.command, True, "", None, False)], "job had already started"
        failed = _Run(run.command, True, run.output, None, False)
        return [*seen, failed], f"start not advanced ({run.error}); starts after cred_expire"
