"""All ORM models in one place; sentinel/migrations/ must describe exactly these tables."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sentinel.db.types import Json, UtcDateTime

# Stable constraint names so that one alembic chain fits SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: Json, list[Any]: Json}


# Drain states of a host that is out of service (excluded from jobs).
OUT_OF_SERVICE = ("draining", "drained", "repairing")


class Host(Base):
    __tablename__ = "hosts"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(128))
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_critical_at: Mapped[datetime | None]
    last_critical: Mapped[str | None] = mapped_column(String(512))
    # Drain state is owned by remediation: none | draining | drained | repairing (a reboot or a
    # GPU reset asked for; back to none when the host returns healthy).
    drain_state: Mapped[str] = mapped_column(String(16), default="none", server_default="none")
    drain_reason: Mapped[str | None] = mapped_column(Text)


class Gpu(Base):
    """The latest reading of each GPU; the history lives in ``batches.samples``."""

    __tablename__ = "gpus"

    host_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True
    )
    gpu_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str | None] = mapped_column(String(512))
    pci_bus_id: Mapped[str | None] = mapped_column(String(32))
    # The board serial (nvmlDeviceGetSerial): what an RMA asks for.
    serial: Mapped[str | None] = mapped_column(String(512))
    lost: Mapped[bool] = mapped_column(Boolean, default=False)
    remap_failure: Mapped[bool] = mapped_column(Boolean, default=False)
    ecc_uncorrected: Mapped[int | None] = mapped_column(BigInteger)
    temperature_c: Mapped[float | None] = mapped_column(Float)
    clock_event_reasons: Mapped[int | None] = mapped_column(BigInteger)
    # JSON text written straight from pydantic's serializer: the hot ingest path stays in Rust.
    sample: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class Batch(Base):
    """One accepted agent batch: the dedup key (host, seq) and its periodic samples."""

    __tablename__ = "batches"

    host_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(128))
    sent_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(index=True)
    n_observations: Mapped[int] = mapped_column(Integer)
    # A JSON array of the periodic observations, as text (see Gpu.sample).
    samples: Mapped[str] = mapped_column(Text)
    # SHA-256 of the batch's bytes (after gzip): a resend is identical, a reused seq is not.
    digest: Mapped[str | None] = mapped_column(String(64))


class Event(Base):
    """A non-periodic observation (XID, ECC change, log record, dump reference)."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_host_observed", "host_id", "observed_at"),
        Index("ix_events_kind_observed", "kind", "observed_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    host_id: Mapped[str] = mapped_column(String(128))
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    observed_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(index=True)
    gpu_index: Mapped[int | None] = mapped_column(Integer)
    job_id: Mapped[str | None] = mapped_column(String(128))
    critical: Mapped[bool] = mapped_column(Boolean, default=False)
    payload: Mapped[dict[str, Any]]


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    world_size: Mapped[int | None] = mapped_column(Integer)
    scheduler: Mapped[str | None] = mapped_column(String(32))
    scheduler_job_id: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default="running", server_default="running")


class JobRank(Base):
    """The job's rank → host map and each rank's progress, from heartbeats."""

    __tablename__ = "job_ranks"
    __table_args__ = (Index("ix_job_ranks_host", "host_id"),)

    job_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    host_id: Mapped[str] = mapped_column(String(128))
    local_rank: Mapped[int] = mapped_column(Integer)
    gpu_index: Mapped[int | None] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(BigInteger)
    step_time_s: Mapped[float | None] = mapped_column(Float)
    checkpoint_step: Mapped[int | None] = mapped_column(BigInteger)
    checkpoint_path: Mapped[str | None] = mapped_column(String(512))
    last_beat_at: Mapped[datetime]
    step_changed_at: Mapped[datetime]
    # The code the rank runs now, and the code it ran when its checkpoint last advanced: the
    # version under which the job last trained (what a crash loop is rolled back to).
    code_version: Mapped[str | None] = mapped_column(String(128))
    checkpoint_version: Mapped[str | None] = mapped_column(String(128))
    # What the rank measured (seconds): from its launch to its first beat, and its last
    # checkpoint's blocking save and background write (the cadence advice's inputs).
    startup_s: Mapped[float | None] = mapped_column(Float)
    checkpoint_save_s: Mapped[float | None] = mapped_column(Float)
    checkpoint_write_s: Mapped[float | None] = mapped_column(Float)


class JobProgress(Base):
    """The job's progress over time, sampled from its ranks' heartbeats by the watchdog: what
    ETTR is measured from, and when a restarted job came back and trained again."""

    __tablename__ = "job_progress"

    job_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    at: Mapped[datetime] = mapped_column(primary_key=True)
    # The median rank's step: one straggler or one dead rank does not move it.
    step: Mapped[int] = mapped_column(BigInteger)
    step_time_s: Mapped[float | None] = mapped_column(Float)
    ranks: Mapped[int] = mapped_column(Integer)


class FlightRecorderUpload(Base):
    __tablename__ = "fr_uploads"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    host_id: Mapped[str] = mapped_column(String(128))
    job_id: Mapped[str | None] = mapped_column(String(128), index=True)
    rank: Mapped[int] = mapped_column(Integer)
    file_name: Mapped[str] = mapped_column(String(512))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(String(1024))
    received_at: Mapped[datetime]


class Incident(Base):
    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_job_state", "job_id", "state"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[str | None] = mapped_column(String(128))
    cluster: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))  # open | mitigating | resolved
    category: Mapped[str] = mapped_column(String(32))
    confidence: Mapped[float] = mapped_column(Float)
    culprit_host: Mapped[str | None] = mapped_column(String(128))
    culprit_gpu: Mapped[str | None] = mapped_column(String(64))
    culprit_rank: Mapped[int | None] = mapped_column(Integer)
    rule: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    verdict: Mapped[dict[str, Any]]
    opened_at: Mapped[datetime] = mapped_column(index=True)
    detected_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


class EventDisposition(Base):
    """What became of a hard-fault event: linked to an incident (as its cause or a symptom) or
    dismissed with a reason. ``pending`` rows are the ones still owed an answer; the
    accountability query lists those past their bound."""

    __tablename__ = "event_dispositions"
    __table_args__ = (Index("ix_event_dispositions_role_seen", "role", "seen_at"),)

    event_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("events.id", ondelete="CASCADE"), primary_key=True
    )
    host_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    summary: Mapped[str] = mapped_column(Text)
    observed_at: Mapped[datetime]
    seen_at: Mapped[datetime]
    role: Mapped[str] = mapped_column(String(16))  # pending | cause | symptom | dismissed
    incident_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("incidents.id", ondelete="SET NULL"), index=True
    )
    reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None]


class IncidentTransition(Base):
    __tablename__ = "incident_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]


class _CarriedOut:
    """The columns of a decision carried out under an execution lease (a remediation
    decision, a proactive swap), after its own: how it went, the lease, and when."""

    outcome: Mapped[dict[str, Any]]
    error: Mapped[str | None] = mapped_column(Text)
    # The execution lease: the process carrying the decision out and until when; a lease
    # that runs out means that process died, and the remediation loop takes the decision over.
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Decision(Base, _CarriedOut):
    """A remediation decision: one per incident (the unique constraint makes it exactly once)."""

    __tablename__ = "decisions"
    __table_args__ = (UniqueConstraint("incident_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    incident_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("incidents.id", ondelete="CASCADE")
    )
    job_id: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    rule: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    exclude_hosts: Mapped[list[Any]]
    checkpoint_step: Mapped[int | None] = mapped_column(BigInteger)
    steps_lost: Mapped[int | None] = mapped_column(BigInteger)


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("fingerprint"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    fingerprint: Mapped[str] = mapped_column(String(64))
    group_key: Mapped[str] = mapped_column(String(256), index=True)
    incident_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    labels: Mapped[dict[str, Any]]
    annotations: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16))  # firing | resolved
    muted_by: Mapped[str | None] = mapped_column(String(256))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class Silence(Base):
    __tablename__ = "silences"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    matchers: Mapped[list[Any]]
    author: Mapped[str] = mapped_column(String(128))
    comment: Mapped[str] = mapped_column(Text)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime]


class AlertGroup(Base):
    """Alerts grouped by a route's group_by labels; the unit that is notified and acknowledged."""

    __tablename__ = "alert_groups"
    __table_args__ = (UniqueConstraint("group_key", "receiver"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    group_key: Mapped[str] = mapped_column(String(256))
    receiver: Mapped[str] = mapped_column(String(128))
    labels: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16))  # firing | resolved
    first_fired_at: Mapped[datetime]
    last_notified_at: Mapped[datetime | None]
    last_notified_hash: Mapped[str | None] = mapped_column(String(64))
    next_flush_at: Mapped[datetime | None] = mapped_column(index=True)
    acked_by: Mapped[str | None] = mapped_column(String(128))
    acked_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class NotificationLog(Base):
    """Every notification attempt: the dedup record and the audit trail of what was sent."""

    __tablename__ = "notification_log"
    __table_args__ = (Index("ix_notification_log_group", "group_key", "receiver"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_key: Mapped[str] = mapped_column(String(256))
    receiver: Mapped[str] = mapped_column(String(128))
    notifier: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # firing | resolved | repeat
    payload_hash: Mapped[str] = mapped_column(String(64))
    alerts: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # sent | failed | retrying
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    error: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]


class Lease(Base):
    """A named lease held by one process until it expires: leader election, single senders."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    holder: Mapped[str] = mapped_column(String(256))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class Maintenance(Base):
    """Announced maintenance: interruptions of these hosts (or this job) in it are planned."""

    __tablename__ = "maintenance"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    hosts: Mapped[list[Any]]
    job_id: Mapped[str | None] = mapped_column(String(128))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime] = mapped_column(index=True)
    reason: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    # What the window does: "maintenance" takes its hosts down (anything on them is its
    # effect); "restart" only restarts the job's processes (an operator's planned restart in
    # place), which explains what stopping processes causes and no hardware fault.
    kind: Mapped[str] = mapped_column(
        String(16), default="maintenance", server_default="maintenance"
    )


class AuditEntry(Base):
    """Who did what to which job, host, decision or alert, and why."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(256), index=True)
    detail: Mapped[dict[str, Any]]
    at: Mapped[datetime]


class DegradedFinding(Base):
    """A host running on a part that warns before it fails (issue 17): not an interruption,
    a lead for a planned swap. ``open_key`` (host|indicator) is set while the finding is open
    and cleared when it is resolved, so one finding per host and indicator is open at a time
    (NULLs never collide) and two replicas detecting it store it once."""

    __tablename__ = "degraded_findings"
    __table_args__ = (UniqueConstraint("open_key"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    host_id: Mapped[str] = mapped_column(String(128), index=True)
    gpu: Mapped[str | None] = mapped_column(String(64))
    indicator: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    evidence: Mapped[list[Any]]
    open_key: Mapped[str | None] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16))  # open | resolved
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


class Swap(Base, _CarriedOut):
    """A proactive swap decision: one per degraded finding (the unique constraint makes it
    exactly once). waiting (for a durable checkpoint newer than the decision) → approved →
    executing (claimed under a lease) → done | failed; refused is final (a cap said no)."""

    __tablename__ = "swaps"
    __table_args__ = (UniqueConstraint("finding_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    finding_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("degraded_findings.id", ondelete="CASCADE")
    )
    job_id: Mapped[str | None] = mapped_column(String(128), index=True)
    host_id: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    rule: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    decided_step: Mapped[int | None] = mapped_column(BigInteger)
    checkpoint_step: Mapped[int | None] = mapped_column(BigInteger)
    spare_host: Mapped[str | None] = mapped_column(String(128))


class Spare(Base):
    """A host of the hot-spare pool, held in the scheduler's reservation while ``ready``;
    ``used`` once a swap gave it to a job."""

    __tablename__ = "spares"

    host_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # ready | used
    job_id: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    added_at: Mapped[datetime]
    updated_at: Mapped[datetime]
