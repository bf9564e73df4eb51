"""Analyse a job's flight-recorder dumps once they have all arrived; the verdict becomes a signal.

Dumps arrive from many hosts within seconds of a watchdog timeout. Once a job's uploads have
been quiet for ``settle_s``, the leader reads them (gzip, content-addressed on disk), runs the
same analysis as `sentinel fr analyze` in a thread, and writes one synthetic ``fr_verdict``
event naming the culprit rank's host: triage then blames that host instead of the timeouts.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.clock import Clock
from sentinel.db.models import Event, FlightRecorderUpload, JobRank
from sentinel.flightrec.analyze import analyze_dumps
from sentinel.flightrec.models import DumpSet, FrParseError, FrVerdict, VerdictKind
from sentinel.flightrec.parse import DumpSetBuilder
from sentinel.incidents.signals import synthetic_id
from sentinel.incidents.watchdog import add_synthetic_events, synthetic_row

log = logging.getLogger(__name__)

# Kinds that blame a rank for the hang or the mismatch (a straggler only slows the job).
_MISMATCH = frozenset({VerdictKind.mismatch, VerdictKind.p2p})


def _load(paths: list[tuple[int, str]]) -> tuple[DumpSet, list[str]]:
    """The job's dumps as one set (no DataFrame per rank), and what could not be read."""
    builder = DumpSetBuilder()
    errors: list[str] = []
    for rank, path in paths:
        try:
            data = gzip.decompress(Path(path).read_bytes())
            builder.add(data, f"nccl_trace_rank_{rank}")
        except (OSError, EOFError, FrParseError, ValueError) as exc:
            errors.append(f"rank {rank}: {exc}")
    return builder.build(), errors


class FlightRecorderAnalyzer:
    def __init__(self, clock: Clock, settle_s: float = 10.0) -> None:
        self._clock = clock
        self._settle = timedelta(seconds=settle_s)

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
        for job_id, items in sorted(by_job.items()):
            if now - max(u.received_at for u in items) < self._settle:
                continue  # more dumps may be on their way
            # One analysis per distinct set of dumps: the set's digest names the event.
            digest = hashlib.sha256("".join(sorted(u.sha256 for u in items)).encode()).hexdigest()
            event_id = synthetic_id("fr_verdict", job_id, digest)
            if await session.get(Event, event_id) is not None:
                continue
            verdict = await self._analyse(session, job_id, items)
            await add_synthetic_events(session, [self._event(job_id, digest, verdict)])
            verdicts.append(verdict)
        return verdicts

    async def _analyse(
        self, session: AsyncSession, job_id: str, items: list[FlightRecorderUpload]
    ) -> FrVerdict:
        latest: dict[int, FlightRecorderUpload] = {}
        for u in sorted(items, key=lambda u: u.received_at):
            latest[u.rank] = u  # a rank that dumped twice: its newest dump counts
        ranks = (await session.scalars(select(JobRank).where(JobRank.job_id == job_id))).all()
        rank_map = {
            r.rank: (r.host_id, r.gpu_index if r.gpu_index is not None else r.local_rank)
            for r in ranks
        }
        paths = [(rank, u.path) for rank, u in sorted(latest.items())]
        dumps, errors = await asyncio.to_thread(_load, paths)
        verdict = await asyncio.to_thread(analyze_dumps, dumps, rank_map)
        if errors:
            verdict.evidence.extend(f"unreadable dump: {e}" for e in errors[:20])
        log.info(
            "flight recorder for job %s: %s, culprits %s",
            job_id,
            verdict.kind.value,
            verdict.culprit_ranks,
        )
        return verdict

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
