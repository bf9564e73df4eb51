"""Analyse a job's flight-recorder dumps once they have all arrived; the verdict becomes a signal.

Dumps arrive from many hosts within seconds of a watchdog timeout. Once a job's uploads have
been quiet for ``settle_s``, the leader reads them (gzip, content-addressed on disk), runs the
same analysis as `sentinel fr analyze`, and writes one synthetic ``fr_verdict`` event naming
the culprit rank's host: triage then blames that host instead of the timeouts.

Each job is read and analysed in a process of its own (spawned), which parses the dumps in
a pool of `workers` processes of its own (as `sentinel fr analyze` does), each under an
address-space limit (`memory_budget_bytes` over what the job's process holds once its
imports are done; the pool's processes inherit it) and the whole under a time limit
(`timeout_s`): a hostile or broken dump can fail its own job, never take the service's
memory or its loop. One job is analysed at a time, so the leader runs at most 1 + `workers`
analysis processes. No database transaction stays open while a job is analysed (a minute
for a 16k-rank job on a small machine): the other loops and ingest keep writing.

A dump that cannot be read is left out of its job's analysis
(named in the verdict's evidence); a job whose analysis fails gets a synthetic ``fr_error``
event (no signal: triage ignores the kind), a log line and
``sentinel_flightrec_failures_total{reason}``, and the loop goes on with the other jobs.
Either event is written once per distinct set of dumps, so a failure is not retried every
round; a new upload for the job makes a new set. `GET /api/v1/flight-recorder/analyses`
lists both kinds per job (`analyses`): a verdict that names no culprit, and every failure,
are on no host ("-"), where the hosts' observations cannot show them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import signal
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing import get_context
from multiprocessing.process import BaseProcess
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.clock import Clock
from sentinel.db.models import Event, FlightRecorderUpload, JobRank
from sentinel.flightrec.models import FrVerdict, VerdictKind
from sentinel.incidents.fr_job import FrJobFailure, run_job
from sentinel.incidents.signals import synthetic_id
from sentinel.incidents.watchdog import add_synthetic_events, synthetic_row
from sentinel.metrics import ServiceMetrics

log = logging.getLogger(__name__)

# The events an analysis leaves, one per distinct set of a job's dumps: what it concluded, or
# why it could not.
ANALYSIS_KINDS: Final = ("fr_verdict", "fr_error")

# Kinds that blame a rank for the hang or the mismatch (a straggler only slows the job).
_MISMATCH = frozenset({VerdictKind.mismatch, VerdictKind.p2p})

# A 16,384-rank job peaks at 4.5 GiB in its process (measured); 4 GiB of address space aborted it.
DEFAULT_MEMORY_BUDGET = 8 * 1024**3
DEFAULT_TIMEOUT_S = 300.0
# Parsing processes per analysis: the CLI's default on the 2-core machines it is sized for.
DEFAULT_WORKERS = 2


def analyse_isolated(
    paths: list[tuple[int, str]],
    rank_map: dict[int, tuple[str, int]],
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int = DEFAULT_WORKERS,
) -> tuple[FrVerdict, list[str]]:
    """`fr_job.run_job` in a spawned process under the budget, parsing in `workers`
    processes of its own; FrJobFailure when it fails.

    Spawned, not forked: the service runs threads (polars', the event loop's), and a
    fork of a threaded process can deadlock.
    """
    ctx = get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    # Its parsing processes' table files, removed here however the child ends (a timeout
    # kills it before it could remove them itself).
    try:
        spill_parent: str | None = tempfile.mkdtemp(prefix="sentinel-fr-job-")
    except OSError:
        spill_parent = None  # the tables stay in the child's memory
    proc = ctx.Process(
        target=run_job,
        args=(send, memory_budget_bytes, paths, rank_map, workers, spill_parent),
    )
    try:
        proc.start()
    except BaseException:
        if spill_parent is not None:
            shutil.rmtree(spill_parent, ignore_errors=True)
        raise
    send.close()
    try:
        if not recv.poll(timeout_s):
            raise FrJobFailure("timeout", f"the analysis ran past its {timeout_s:g} s limit")
        try:
            status, value = recv.recv()
        except (EOFError, OSError):
            proc.join(5)
            raise FrJobFailure(
                "worker_died", f"the analysis process died (exit code {proc.exitcode})"
            ) from None
    finally:
        if proc.is_alive():
            _kill_group(proc)
        proc.join()
        recv.close()
        if spill_parent is not None:
            shutil.rmtree(spill_parent, ignore_errors=True)
    if status != "ok":
        raise FrJobFailure(status, value)
    verdict, errors = value
    return verdict, errors


def _kill_group(proc: BaseProcess) -> None:
    """Kill the job's process and the parsing processes it started (its group)."""
    if proc.pid is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # it had not made its group yet
        proc.kill()


@dataclass
class FrJobResult:
    """What one round did for a job: a verdict, or the failure recorded instead."""

    job_id: str
    verdict: FrVerdict | None = None
    failure: FrJobFailure | None = None
    unreadable: list[str] = field(default_factory=list)


class FlightRecorderAnalyzer:
    def __init__(
        self,
        clock: Clock,
        settle_s: float = 10.0,
        *,
        metrics: ServiceMetrics | None = None,
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        self._clock = clock
        self._settle = timedelta(seconds=settle_s)
        self._metrics = metrics
        self.memory_budget_bytes = memory_budget_bytes
        self.timeout_s = timeout_s
        self.workers = workers
        self.last_round: list[FrJobResult] = []

    async def run_once(self, session: AsyncSession) -> list[FrVerdict]:
        now = self._clock.now()
        uploads = (
            await session.scalars(
                select(FlightRecorderUpload).where(FlightRecorderUpload.job_id.is_not(None))
            )
        ).all()
        by_job: dict[str, list[FlightRecorderUpload]] = defaultdict(list)
        for u in uploads:
            by_job[u.job_id or ""].append(u)
        verdicts = []
        self.last_round = []
        for job_id, items in sorted(by_job.items()):
            if now - max(u.received_at for u in items) < self._settle:
                continue  # more dumps may be on their way
            # One analysis per distinct set of dumps: the set's digest names the event.
            digest = hashlib.sha256("".join(sorted(u.sha256 for u in items)).encode()).hexdigest()
            if await session.get(Event, synthetic_id("fr_verdict", job_id, digest)) is not None:
                continue
            if await session.get(Event, synthetic_id("fr_error", job_id, digest)) is not None:
                continue  # failed on this very set: a new upload makes a new one
            result = await self._analyse(session, job_id, items)
            self.last_round.append(result)
            if result.verdict is not None:
                await add_synthetic_events(session, [self._event(job_id, digest, result.verdict)])
                verdicts.append(result.verdict)
            elif result.failure is not None:
                await add_synthetic_events(
                    session, [self._error_event(job_id, digest, result.failure, len(items))]
                )
        return verdicts

    def _count(self, reason: str, n: int = 1) -> None:
        if self._metrics is not None and n:
            self._metrics.flightrec_failures.labels(reason=reason).inc(n)

    async def _analyse(
        self, session: AsyncSession, job_id: str, items: list[FlightRecorderUpload]
    ) -> FrJobResult:
        latest: dict[int, FlightRecorderUpload] = {}
        for u in sorted(items, key=lambda u: u.received_at):
            latest[u.rank] = u  # a rank that dumped twice: its newest dump counts
        ranks = (await session.scalars(select(JobRank).where(JobRank.job_id == job_id))).all()
        rank_map = {
            r.rank: (r.host_id, r.gpu_index if r.gpu_index is not None else r.local_rank)
            for r in ranks
        }
        paths = [(rank, u.path) for rank, u in sorted(latest.items())]
        # End the transaction (and commit the verdicts of the jobs before): held across the
        # analysis, SQLite's write lock would stop ingest and every other loop meanwhile.
        await session.commit()
        try:
            verdict, errors = await asyncio.to_thread(
                analyse_isolated,
                paths,
                rank_map,
                self.memory_budget_bytes,
                self.timeout_s,
                self.workers,
            )
        except FrJobFailure as failure:
            return self._failed(job_id, failure)
        except Exception as exc:  # the worker could not even start: still this job's failure
            log.exception("flight recorder for job %s: the analysis could not run", job_id)
            return self._failed(job_id, FrJobFailure("error", f"{type(exc).__name__}: {exc}"))
        if errors:
            verdict.evidence.extend(f"unreadable dump: {e}" for e in errors[:20])
            log.warning(
                "flight recorder for job %s: %d unreadable dump(s), first: %s",
                job_id,
                len(errors),
                errors[0],
            )
            self._count("unreadable_dump", len(errors))
        log.info(
            "flight recorder for job %s: %s, culprits %s",
            job_id,
            verdict.kind.value,
            verdict.culprit_ranks,
        )
        return FrJobResult(job_id, verdict=verdict, unreadable=errors)

    def _failed(self, job_id: str, failure: FrJobFailure) -> FrJobResult:
        log.error(
            "flight recorder for job %s: analysis failed (%s): %s", job_id, failure.reason, failure
        )
        self._count(failure.reason)
        return FrJobResult(job_id, failure=failure)

    def _error_event(
        self, job_id: str, digest: str, failure: FrJobFailure, dumps: int
    ) -> dict[str, Any]:
        return synthetic_row(
            "fr_error",
            key=(job_id, digest),
            host="-",
            job_id=job_id,
            at=self._clock.now(),
            received=self._clock.now(),
            reason=failure.reason,
            dumps=dumps,
            text=f"flight recorder: analysis of {dumps} dump(s) failed ({failure.reason}): "
            f"{failure}",
        )

    def _event(self, job_id: str, digest: str, verdict: FrVerdict) -> dict[str, Any]:
        culprit = verdict.culprit_locations[0] if verdict.culprit_locations else None
        rank = verdict.culprit_ranks[0] if verdict.culprit_ranks else None
        where = f"rank {rank} on {culprit.host} GPU {culprit.gpu}" if culprit else f"rank {rank}"
        text = (
            f"flight recorder: {verdict.kind.value} in group {verdict.group_desc or verdict.group}"
            f" collective #{verdict.seq} {verdict.op or ''}: {where}"
            + (f"; victims {verdict.victim_ranks[:8]}" if verdict.victim_ranks else "")
        )
        host = culprit.host if culprit else "-"
        return synthetic_row(
            "fr_verdict",
            key=(job_id, digest),
            host=host,
            job_id=job_id,
            gpu_index=culprit.gpu if culprit else None,
            at=self._clock.now(),
            received=self._clock.now(),
            rank=rank,
            mismatch=verdict.kind in _MISMATCH,
            healthy=verdict.healthy,
            text=text,
            verdict=verdict.model_dump(mode="json"),
        )


async def analyses(session: AsyncSession, job_id: str | None, limit: int) -> list[Event]:
    """The analyses' events (`ANALYSIS_KINDS`) of one job, or of every job, newest first."""
    q = select(Event).where(Event.kind.in_(ANALYSIS_KINDS))
    if job_id:
        q = q.where(Event.job_id == job_id)
    return list((await session.scalars(q.order_by(Event.observed_at.desc()).limit(limit))).all())
