"""Stores groups of batches with a handful of multi-row statements; flushes, never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import case
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.db.models import Batch as BatchRow
from sentinel.db.models import Event, Gpu, Host, Job, JobRank
from sentinel.db.upsert import dialect_of, insert_for
from sentinel.wire import (
    CRITICAL_KINDS,
    PERIODIC_KINDS,
    Batch,
    GpuSample,
    HeartbeatSummary,
    Observation,
)

_SAMPLES: TypeAdapter[list[Observation]] = TypeAdapter(list[Observation])


@dataclass
class StoredBatch:
    batch: Batch
    received_at: datetime
    duplicate: bool = False
    accepted: int = 0
    duplicates: int = 0
    new_event_ids: set[uuid.UUID] = field(default_factory=set)


def _critical_summary(batch: Batch) -> tuple[datetime, str] | None:
    worst: tuple[datetime, str] | None = None
    for obs in batch.observations:
        if obs.kind in CRITICAL_KINDS or (isinstance(obs, GpuSample) and obs.lost):
            what = (
                f"GPU {obs.gpu_index} lost"
                if isinstance(obs, GpuSample)
                else f"XID {getattr(obs, 'xid', '?')} on GPU {getattr(obs, 'gpu_index', '?')}"
            )
            if worst is None or obs.observed_at >= worst[0]:
                worst = (obs.observed_at, what)
    return worst


async def store_group(session: AsyncSession, items: Sequence[StoredBatch]) -> None:
    """Store new batches, marking the ones seen before (same host and seq) as duplicates."""
    # A batch repeated inside one group is a duplicate of its first copy.
    seen: set[tuple[str, int]] = set()
    fresh: list[StoredBatch] = []
    for item in items:
        key = (item.batch.host_id, item.batch.seq)
        if key in seen:
            item.duplicate = True
        else:
            seen.add(key)
            fresh.append(item)
    if not fresh:
        return

    batch_rows = [
        {
            "host_id": it.batch.host_id,
            "seq": it.batch.seq,
            "agent_id": it.batch.agent_id,
            "sent_at": it.batch.sent_at,
            "received_at": it.received_at,
            "n_observations": len(it.batch.observations),
            "samples": _SAMPLES.dump_json(
                [o for o in it.batch.observations if o.kind in PERIODIC_KINDS], exclude_none=True
            ).decode(),
        }
        for it in fresh
    ]
    result = await session.execute(_insert_batches(dialect_of(session)), batch_rows)
    new_keys = {(h, s) for h, s in result.all()}
    new: list[StoredBatch] = []
    for it in fresh:
        if (it.batch.host_id, it.batch.seq) in new_keys:
            new.append(it)
        else:
            it.duplicate = True
    if not new:
        return

    await _store_events(session, new)
    await _upsert_hosts(session, new)
    await _upsert_gpus(session, new)
    await _upsert_heartbeats(session, new)


async def _store_events(session: AsyncSession, items: list[StoredBatch]) -> None:
    rows: list[dict[str, Any]] = []
    owner: dict[uuid.UUID, StoredBatch] = {}
    for it in items:
        for obs in it.batch.observations:
            if obs.kind in PERIODIC_KINDS or obs.id in owner:
                continue
            owner[obs.id] = it
            rows.append(
                {
                    "id": obs.id,
                    "host_id": it.batch.host_id,
                    "seq": it.batch.seq,
                    "kind": obs.kind,
                    "observed_at": obs.observed_at,
                    "received_at": it.received_at,
                    "gpu_index": getattr(obs, "gpu_index", None),
                    "job_id": getattr(obs, "job_id", None),
                    "critical": obs.kind in CRITICAL_KINDS,
                    "payload": obs.model_dump(mode="json", exclude_none=True),
                }
            )
    stored: set[uuid.UUID] = set()
    if rows:
        result = await session.execute(_insert_events(dialect_of(session)), rows)
        stored = {row[0] for row in result.all()}
    for it in items:
        periodic = sum(1 for o in it.batch.observations if o.kind in PERIODIC_KINDS)
        events = [o.id for o in it.batch.observations if o.kind not in PERIODIC_KINDS]
        mine = {e for e in events if e in stored and owner.get(e) is it}
        it.new_event_ids = mine
        it.accepted = periodic + len(mine)
        it.duplicates = len(events) - len(mine)


async def _upsert_hosts(session: AsyncSession, items: list[StoredBatch]) -> None:
    latest: dict[str, dict[str, Any]] = {}
    for it in items:
        b = it.batch
        crit = _critical_summary(b)
        row = latest.get(b.host_id)
        if row is None:
            row = latest[b.host_id] = {
                "id": b.host_id,
                "agent_id": b.agent_id,
                "first_seen": it.received_at,
                "last_seen": it.received_at,
                "last_seq": b.seq,
                "last_critical_at": None,
                "last_critical": None,
            }
        row["last_seen"] = max(row["last_seen"], it.received_at)
        row["last_seq"] = max(row["last_seq"], b.seq)
        row["agent_id"] = b.agent_id
        if crit is not None and (
            row["last_critical_at"] is None or crit[0] >= row["last_critical_at"]
        ):
            row["last_critical_at"], row["last_critical"] = crit
    await session.execute(_upsert_hosts_stmt(dialect_of(session)), list(latest.values()))


async def _upsert_gpus(session: AsyncSession, items: list[StoredBatch]) -> None:
    latest: dict[tuple[str, int], tuple[datetime, GpuSample]] = {}
    for it in items:
        for obs in it.batch.observations:
            if isinstance(obs, GpuSample):
                key = (it.batch.host_id, obs.gpu_index)
                if key not in latest or obs.observed_at >= latest[key][0]:
                    latest[key] = (obs.observed_at, obs)
    if not latest:
        return
    rows = [
        {
            "host_id": host,
            "gpu_index": idx,
            "uuid": s.uuid,
            "pci_bus_id": s.pci_bus_id,
            "lost": s.lost,
            "remap_failure": bool(s.remap_failure),
            "ecc_uncorrected": s.ecc_volatile_uncorrected,
            "temperature_c": s.temperature_c,
            "clock_event_reasons": s.clock_event_reasons,
            "sample": s.model_dump_json(exclude_none=True),
            "updated_at": at,
        }
        for (host, idx), (at, s) in latest.items()
    ]
    await session.execute(_upsert_gpus_stmt(dialect_of(session)), rows)


async def _upsert_heartbeats(session: AsyncSession, items: list[StoredBatch]) -> None:
    ranks: dict[tuple[str, int], tuple[str, datetime, HeartbeatSummary]] = {}
    jobs: dict[str, dict[str, Any]] = {}
    for it in items:
        for obs in it.batch.observations:
            if not isinstance(obs, HeartbeatSummary):
                continue
            key = (obs.job_id, obs.rank)
            if key not in ranks or obs.last_beat_at >= ranks[key][2].last_beat_at:
                ranks[key] = (it.batch.host_id, it.received_at, obs)
            job = jobs.setdefault(
                obs.job_id,
                {
                    "id": obs.job_id,
                    "first_seen": it.received_at,
                    "last_seen": it.received_at,
                    "world_size": obs.world_size,
                    "state": "running",
                },
            )
            job["last_seen"] = max(job["last_seen"], it.received_at)
            job["world_size"] = obs.world_size or job["world_size"]
    if not jobs:
        return
    await session.execute(_upsert_jobs_stmt(dialect_of(session)), list(jobs.values()))
    rows = [
        {
            "job_id": job_id,
            "rank": rank,
            "host_id": host,
            "local_rank": hb.local_rank,
            "gpu_index": hb.gpu_index,
            "step": hb.step,
            "step_time_s": hb.step_time_s,
            "checkpoint_step": hb.checkpoint_step,
            "checkpoint_path": hb.checkpoint_path,
            "last_beat_at": hb.last_beat_at,
            "step_changed_at": hb.last_beat_at,
        }
        for (job_id, rank), (host, _received, hb) in ranks.items()
    ]
    await session.execute(_upsert_ranks_stmt(dialect_of(session)), rows)


# Statements are built once per dialect: building them (and their cache keys) per group
# cost more CPU than running them.
@cache
def _insert_batches(dialect: str) -> Any:
    ins = insert_for(dialect, BatchRow)
    return ins.on_conflict_do_nothing(index_elements=["host_id", "seq"]).returning(
        ins.table.c.host_id, ins.table.c.seq
    )


@cache
def _insert_events(dialect: str) -> Any:
    ins = insert_for(dialect, Event)
    return ins.on_conflict_do_nothing(index_elements=["id"]).returning(ins.table.c.id)


@cache
def _upsert_hosts_stmt(dialect: str) -> Any:
    table = Host.__table__
    ins = insert_for(dialect, Host)
    ex = ins.excluded
    stmt = ins.on_conflict_do_update(
        index_elements=["id"],
        set_={
            "agent_id": ex.agent_id,
            "last_seen": case(
                (ex.last_seen > table.c.last_seen, ex.last_seen), else_=table.c.last_seen
            ),
            "last_seq": case((ex.last_seq > table.c.last_seq, ex.last_seq), else_=table.c.last_seq),
            "last_critical_at": case(
                (ex.last_critical_at.is_(None), table.c.last_critical_at),
                (table.c.last_critical_at.is_(None), ex.last_critical_at),
                (ex.last_critical_at > table.c.last_critical_at, ex.last_critical_at),
                else_=table.c.last_critical_at,
            ),
            "last_critical": case(
                (ex.last_critical_at.is_(None), table.c.last_critical),
                (table.c.last_critical_at.is_(None), ex.last_critical),
                (ex.last_critical_at > table.c.last_critical_at, ex.last_critical),
                else_=table.c.last_critical,
            ),
        },
    )
    return stmt


_GPU_COLUMNS = (
    "uuid",
    "pci_bus_id",
    "lost",
    "remap_failure",
    "ecc_uncorrected",
    "temperature_c",
    "clock_event_reasons",
    "sample",
    "updated_at",
)


@cache
def _upsert_gpus_stmt(dialect: str) -> Any:
    ins = insert_for(dialect, Gpu)
    table, ex = ins.table, ins.excluded
    newer = ex.updated_at >= table.c.updated_at
    # A late (older) sample never overwrites a newer one; the uuid and bus id keep their last
    # known value when a lost GPU stops reporting them.
    set_ = {c: case((newer, ex[c]), else_=table.c[c]) for c in _GPU_COLUMNS}
    for c in ("uuid", "pci_bus_id"):
        set_[c] = case((newer & ex[c].is_not(None), ex[c]), else_=table.c[c])
    return ins.on_conflict_do_update(index_elements=["host_id", "gpu_index"], set_=set_)


@cache
def _upsert_jobs_stmt(dialect: str) -> Any:
    ins = insert_for(dialect, Job)
    table, ex = ins.table, ins.excluded
    return ins.on_conflict_do_update(
        index_elements=["id"],
        set_={
            "last_seen": case(
                (ex.last_seen > table.c.last_seen, ex.last_seen), else_=table.c.last_seen
            ),
            "world_size": case(
                (ex.world_size.is_not(None), ex.world_size), else_=table.c.world_size
            ),
        },
    )


@cache
def _upsert_ranks_stmt(dialect: str) -> Any:
    ins = insert_for(dialect, JobRank)
    rt, ex = ins.table, ins.excluded
    newer = ex.last_beat_at >= rt.c.last_beat_at
    set_ = {
        c: case((newer, ex[c]), else_=rt.c[c])
        for c in ("host_id", "local_rank", "gpu_index", "step", "step_time_s", "last_beat_at")
    }
    # The durable checkpoint only moves forward; a rank that stops advancing keeps the time its
    # step last changed, which is what the hang watchdog reads.
    set_["checkpoint_step"] = case(
        (newer & ex.checkpoint_step.is_not(None), ex.checkpoint_step), else_=rt.c.checkpoint_step
    )
    set_["checkpoint_path"] = case(
        (newer & ex.checkpoint_path.is_not(None), ex.checkpoint_path), else_=rt.c.checkpoint_path
    )
    set_["step_changed_at"] = case(
        (newer & (ex.step != rt.c.step), ex.last_beat_at), else_=rt.c.step_changed_at
    )
    return ins.on_conflict_do_update(index_elements=["job_id", "rank"], set_=set_)
