"""Stores groups of batches with a handful of multi-row statements; flushes, never commits.

Dedup keys: a batch is (host, seq) with the digest of its bytes, so an identical resend is a
duplicate and other content under a used seq is a conflict; an event is (host, its id), so no
host can shadow another's event by reusing its id.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from operator import attrgetter
from typing import Any

from sqlalchemy import case, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.db.models import Batch as BatchRow
from sentinel.db.models import Event, Gpu, Host, Job, JobRank
from sentinel.db.rows import execute_rows
from sentinel.db.upsert import dialect_of, insert_for
from sentinel.wire import (
    CRITICAL_KINDS,
    PERIODIC_KINDS,
    Batch,
    GpuSample,
    HeartbeatSummary,
    Observation,
)

_LOST = attrgetter("lost")
# Where an event whose id another host already holds is kept: a name of its own per host.
_HOST_EVENTS = uuid.UUID("5d1f7f0e-4a4e-5e38-9a1c-2b8c3f1e6a07")


def host_scoped_id(host_id: str, event_id: uuid.UUID) -> uuid.UUID:
    """The stored id of host ``host_id``'s event ``event_id`` when another host holds that id."""
    return uuid.uuid5(_HOST_EVENTS, f"{host_id}|{event_id}")


@dataclass
class StoredBatch:
    batch: Batch
    received_at: datetime
    digest: str
    duplicate: bool = False
    conflict: bool = False
    accepted: int = 0
    duplicates: int = 0
    new_event_ids: set[uuid.UUID] = field(default_factory=set)
    # The observations by what becomes of them, sorted once: every store step used to pass
    # over all of them, and the passes cost more than the steps. ``periodic`` keeps their order.
    periodic: list[Observation] = field(init=False, repr=False)
    gpu_samples: list[GpuSample] = field(init=False, repr=False)
    heartbeats: list[HeartbeatSummary] = field(init=False, repr=False)
    events: list[Observation] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        periodic: list[Observation] = []
        gpu_samples: list[GpuSample] = []
        heartbeats: list[HeartbeatSummary] = []
        events: list[Observation] = []
        # By class first: the wire's models are final, and the two common ones need no set.
        for obs in self.batch.observations:
            if type(obs) is GpuSample:
                periodic.append(obs)
                gpu_samples.append(obs)
            elif type(obs) is HeartbeatSummary:
                periodic.append(obs)
                heartbeats.append(obs)
            elif obs.kind in PERIODIC_KINDS:
                periodic.append(obs)
            else:
                events.append(obs)
        self.periodic, self.gpu_samples, self.heartbeats, self.events = (
            periodic,
            gpu_samples,
            heartbeats,
            events,
        )

    def reset(self) -> None:
        self.duplicate = self.conflict = False
        self.accepted = self.duplicates = 0
        self.new_event_ids = set()


def _critical_summary(item: StoredBatch) -> tuple[datetime, str] | None:
    worst: tuple[datetime, str] | None = None
    # In the batch's order (of two at one time, the later is named); without events, only
    # a lost GPU's sample can be critical.
    if not item.events and not any(map(_LOST, item.gpu_samples)):
        return None
    for obs in item.batch.observations if item.events else item.gpu_samples:
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
    """Store new batches; mark the ones seen before (same host, seq and bytes) as duplicates and
    the ones that reuse a stored (host, seq) for other bytes as conflicts."""
    # A batch repeated inside one group is judged against its first copy.
    seen: dict[tuple[str, int], str] = {}
    fresh: list[StoredBatch] = []
    for item in items:
        key = (item.batch.host_id, item.batch.seq)
        if key in seen:
            item.duplicate = seen[key] == item.digest
            item.conflict = not item.duplicate
        else:
            seen[key] = item.digest
            fresh.append(item)
    if fresh and dialect_of(session) == "postgresql":
        # Partitioned by sent_at there (migration 0008): the unique key no longer finds a seq
        # reused with other bytes, this look-up does.
        fresh = await _judge_known(session, fresh)
    if not fresh:
        return

    # Each periodic observation is serialised once: a batch's samples are the array of them,
    # and a GPU's latest sample is one of them.
    dumped: dict[int, bytes] = {}
    batch_rows = [
        {
            "host_id": it.batch.host_id,
            "seq": it.batch.seq,
            "agent_id": it.batch.agent_id,
            "sent_at": it.batch.sent_at,
            "received_at": it.received_at,
            "n_observations": len(it.batch.observations),
            "samples": _samples_json(it, dumped),
            "digest": it.digest,
        }
        for it in fresh
    ]
    result = await session.execute(_insert_batches(dialect_of(session)), batch_rows)
    new_keys = {(h, s) for h, s in result.all()}
    new: list[StoredBatch] = []
    repeats: list[StoredBatch] = []
    for it in fresh:
        (new if (it.batch.host_id, it.batch.seq) in new_keys else repeats).append(it)
    await _judge_repeats(session, repeats)
    if not new:
        return

    await _store_events(session, new)
    await _upsert_hosts(session, new)
    await _upsert_gpus(session, new, dumped)
    await _upsert_heartbeats(session, new)


async def _judge_repeats(session: AsyncSession, repeats: list[StoredBatch]) -> None:
    """Batches whose (host, seq) was stored before: duplicates if the bytes are the same."""
    if repeats:
        _judge(repeats, await _stored_digests(session, [_key(it) for it in repeats]))


async def _judge_known(session: AsyncSession, items: list[StoredBatch]) -> list[StoredBatch]:
    """Judge the batches whose (host, seq) is stored under any sent_at; the others, to insert."""
    stored = await _stored_digests(session, [_key(it) for it in items])
    if not stored:
        return items
    _judge([it for it in items if _key(it) in stored], stored)
    return [it for it in items if _key(it) not in stored]


def _judge(repeats: list[StoredBatch], stored: dict[tuple[str, int], str | None]) -> None:
    for it in repeats:
        # No digest: stored before digests were kept (or pruned meanwhile); trust the resend.
        known = stored.get(_key(it))
        it.conflict = known is not None and known != it.digest
        it.duplicate = not it.conflict


def _key(item: StoredBatch) -> tuple[str, int]:
    return (item.batch.host_id, item.batch.seq)


# The keys as two arrays: one statement whatever their number, prepared once (a tuple IN
# list is a new statement for every group size, each prepared again).
_STORED_DIGESTS_PG = text(
    "SELECT b.host_id, b.seq, b.digest FROM batches AS b "
    "JOIN unnest(CAST(:hosts AS text[]), CAST(:seqs AS bigint[])) AS k(host_id, seq) "
    "ON b.host_id = k.host_id AND b.seq = k.seq"
)


async def _stored_digests(
    session: AsyncSession, keys: list[tuple[str, int]]
) -> dict[tuple[str, int], str | None]:
    """The digest of each of these (host, seq) that is stored (None: stored without one)."""
    if dialect_of(session) == "postgresql":
        rows = await session.execute(
            _STORED_DIGESTS_PG, {"hosts": [h for h, _ in keys], "seqs": [q for _, q in keys]}
        )
    else:
        rows = await session.execute(
            select(BatchRow.host_id, BatchRow.seq, BatchRow.digest).where(
                tuple_(BatchRow.host_id, BatchRow.seq).in_(keys)
            )
        )
    return {(h, q): d for h, q, d in rows.all()}


def event_row(host: str, seq: int, obs: Observation, received_at: datetime) -> dict[str, Any]:
    """The `events` row an event observation is stored as (under the agent's id)."""
    return {
        "id": obs.id,
        "host_id": host,
        "seq": seq,
        "kind": obs.kind,
        "observed_at": obs.observed_at,
        "received_at": received_at,
        "gpu_index": getattr(obs, "gpu_index", None),
        "job_id": getattr(obs, "job_id", None),
        "critical": obs.kind in CRITICAL_KINDS,
        "payload": obs.model_dump(mode="json", exclude_none=True),
    }


async def _store_events(session: AsyncSession, items: list[StoredBatch]) -> None:
    rows: list[dict[str, Any]] = []
    # Each row's (host, the agent's event id), in row order.
    keys: list[tuple[str, uuid.UUID]] = []
    owner: dict[tuple[str, uuid.UUID], StoredBatch] = {}
    holder: dict[uuid.UUID, str] = {}
    for it in items:
        host = it.batch.host_id
        for obs in it.events:
            if (host, obs.id) in owner:
                continue
            owner[(host, obs.id)] = it
            keys.append((host, obs.id))
            # Two hosts with one id in this group: the first keeps it, as it would across groups.
            own = holder.setdefault(obs.id, host) == host
            row = event_row(host, it.batch.seq, obs, it.received_at)
            rows.append(row if own else row | {"id": host_scoped_id(host, obs.id)})
    stored: set[tuple[str, uuid.UUID]] = set()
    if rows:
        stored = await _insert_events_per_host(session, rows, keys)
    for it in items:
        host = it.batch.host_id
        events = [o.id for o in it.events]
        mine = {e for e in events if (host, e) in stored and owner.get((host, e)) is it}
        it.new_event_ids = mine
        it.accepted = len(it.periodic) + len(mine)
        it.duplicates = len(events) - len(mine)


async def _insert_events_per_host(
    session: AsyncSession, rows: list[dict[str, Any]], keys: list[tuple[str, uuid.UUID]]
) -> set[tuple[str, uuid.UUID]]:
    """Insert the rows; the (host, event id) of each one stored now.

    An event keeps the agent's id unless another host's event holds it; then it is stored under
    its host-scoped id, so a resend of either host's event is still found as a duplicate.
    """
    stmt = _insert_events(dialect_of(session))
    if dialect_of(session) == "postgresql":
        # Keyed by (id, observed_at) there (migration 0008): ids held are looked up first.
        await _scope_held_ids(session, rows, keys)
        if not rows:
            return set()
    stored_ids = {row[0] for row in (await session.execute(stmt, rows)).all()}
    taken = [i for i, row in enumerate(rows) if row["id"] not in stored_ids]
    if taken:
        ids = [rows[i]["id"] for i in taken]
        holders = dict(
            (await session.execute(select(Event.id, Event.host_id).where(Event.id.in_(ids)))).all()
        )
        moved = [
            i
            for i in taken
            if rows[i]["id"] == keys[i][1]
            and holders.get(rows[i]["id"], rows[i]["host_id"]) != rows[i]["host_id"]
        ]
        for i in moved:
            rows[i]["id"] = host_scoped_id(*keys[i])
        if moved:
            result = await session.execute(stmt, [rows[i] for i in moved])
            stored_ids |= {row[0] for row in result.all()}
    return {key for key, row in zip(keys, rows, strict=True) if row["id"] in stored_ids}


async def _scope_held_ids(
    session: AsyncSession, rows: list[dict[str, Any]], keys: list[tuple[str, uuid.UUID]]
) -> None:
    """Where the key includes the event's time: a row whose id its own host already stored is
    dropped (a resend), one whose id another host holds takes its host-scoped id."""
    held = dict(
        (
            await session.execute(
                select(Event.id, Event.host_id).where(Event.id.in_([r["id"] for r in rows]))
            )
        ).all()
    )
    if not held:
        return
    keep = [i for i, row in enumerate(rows) if held.get(row["id"]) != row["host_id"]]
    rows[:] = [rows[i] for i in keep]
    keys[:] = [keys[i] for i in keep]
    for row, key in zip(rows, keys, strict=True):
        if row["id"] in held:
            row["id"] = host_scoped_id(*key)


async def _upsert_hosts(session: AsyncSession, items: list[StoredBatch]) -> None:
    latest: dict[str, dict[str, Any]] = {}
    for it in items:
        b = it.batch
        crit = _critical_summary(it)
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
    await execute_rows(session, _upsert_hosts_stmt(dialect_of(session)), list(latest.values()))


def _samples_json(item: StoredBatch, dumped: dict[int, bytes]) -> str:
    """The batch's periodic observations as a JSON array (what the `samples` column holds);
    each one's JSON is kept in ``dumped`` under its id(), for a GPU's latest sample."""
    # model_dump_json's own call, without its Python wrapper (16 times a batch).
    parts = [obs.__pydantic_serializer__.to_json(obs, exclude_none=True) for obs in item.periodic]
    dumped.update(zip(map(id, item.periodic), parts, strict=True))
    return (b"[" + b",".join(parts) + b"]").decode()


def _sample_json(sample: GpuSample) -> str:
    return sample.model_dump_json(exclude_none=True)


async def _upsert_gpus(
    session: AsyncSession, items: list[StoredBatch], dumped: dict[int, bytes]
) -> None:
    latest: dict[tuple[str, int], tuple[datetime, GpuSample]] = {}
    for it in items:
        for obs in it.gpu_samples:
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
            "serial": s.serial,
            "lost": s.lost,
            "remap_failure": bool(s.remap_failure),
            "ecc_uncorrected": s.ecc_volatile_uncorrected,
            "temperature_c": s.temperature_c,
            "clock_event_reasons": s.clock_event_reasons,
            "sample": dumped[id(s)].decode() if id(s) in dumped else _sample_json(s),
            "updated_at": at,
        }
        for (host, idx), (at, s) in latest.items()
    ]
    await execute_rows(session, _upsert_gpus_stmt(dialect_of(session)), rows)


async def _upsert_heartbeats(session: AsyncSession, items: list[StoredBatch]) -> None:
    ranks: dict[tuple[str, int], tuple[str, datetime, HeartbeatSummary]] = {}
    jobs: dict[str, dict[str, Any]] = {}
    for it in items:
        for obs in it.heartbeats:
            key = (obs.job_id, obs.rank)
            if key not in ranks or obs.last_beat_at >= ranks[key][2].last_beat_at:
                ranks[key] = (it.batch.host_id, it.received_at, obs)
            job = jobs.get(obs.job_id)
            if job is None:
                jobs[obs.job_id] = {
                    "id": obs.job_id,
                    "first_seen": it.received_at,
                    "last_seen": it.received_at,
                    "world_size": obs.world_size,
                    "state": "running",
                }
            else:
                job["last_seen"] = max(job["last_seen"], it.received_at)
                job["world_size"] = obs.world_size or job["world_size"]
    if not jobs:
        return
    await execute_rows(session, _upsert_jobs_stmt(dialect_of(session)), list(jobs.values()))
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
            "code_version": hb.code_version,
            "checkpoint_version": hb.code_version if hb.checkpoint_step is not None else None,
            "startup_s": hb.startup_s,
            "checkpoint_save_s": hb.checkpoint_save_s,
            "checkpoint_write_s": hb.checkpoint_write_s,
        }
        for (job_id, rank), (host, _received, hb) in ranks.items()
    ]
    await execute_rows(session, _upsert_ranks_stmt(dialect_of(session)), rows)


# Statements are built once per dialect: building them (and their cache keys) per group
# cost more CPU than running them.
@cache
def _insert_batches(dialect: str) -> Any:
    ins = insert_for(dialect, BatchRow)
    # No conflict target: the key is (host, seq) on SQLite, (host, seq, sent_at) on partitioned
    # PostgreSQL; either way it is the table's only unique key.
    return ins.on_conflict_do_nothing().returning(ins.table.c.host_id, ins.table.c.seq)


@cache
def _insert_events(dialect: str) -> Any:
    ins = insert_for(dialect, Event)
    # (id) on SQLite, (id, observed_at) on partitioned PostgreSQL: the only unique key.
    return ins.on_conflict_do_nothing().returning(ins.table.c.id)


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
    "serial",
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
    # A late (older) sample never overwrites a newer one; the uuid, bus id and serial keep their
    # last known value when a lost GPU stops reporting them (the serial is what its RMA needs).
    set_ = {c: case((newer, ex[c]), else_=table.c[c]) for c in _GPU_COLUMNS}
    for c in ("uuid", "pci_bus_id", "serial"):
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
    set_["code_version"] = case(
        (newer & ex.code_version.is_not(None), ex.code_version), else_=rt.c.code_version
    )
    # The version that trained: the one reported when the checkpoint advanced (the agent
    # repeats a rank's last checkpoint step, so a new version restarted from it is not one).
    advanced = rt.c.checkpoint_step.is_(None) | (ex.checkpoint_step > rt.c.checkpoint_step)
    set_["checkpoint_version"] = case(
        (newer & ex.code_version.is_not(None) & advanced, ex.checkpoint_version),
        else_=rt.c.checkpoint_version,
    )
    # What the rank measured: the latest it said (a restarted rank measures its startup anew).
    for c in ("startup_s", "checkpoint_save_s", "checkpoint_write_s"):
        set_[c] = case((newer & ex[c].is_not(None), ex[c]), else_=rt.c[c])
    return ins.on_conflict_do_update(index_elements=["job_id", "rank"], set_=set_)
