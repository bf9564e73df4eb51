"""Initial schema: hosts, GPUs, batches, events, jobs and ranks, dumps, incidents, decisions,
alerts and their groups, notifications, silences, leases, maintenance, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 07:56:50.133835
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import sentinel.db.types

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_groups",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("group_key", sa.String(length=256), nullable=False),
        sa.Column("receiver", sa.String(length=128), nullable=False),
        sa.Column(
            "labels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("first_fired_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("last_notified_at", sentinel.db.types.UtcDateTime(), nullable=True),
        sa.Column("last_notified_hash", sa.String(length=64), nullable=True),
        sa.Column("next_flush_at", sentinel.db.types.UtcDateTime(), nullable=True),
        sa.Column("acked_by", sa.String(length=128), nullable=True),
        sa.Column("acked_at", sentinel.db.types.UtcDateTime(), nullable=True),
        sa.Column("updated_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_groups")),
        sa.UniqueConstraint("group_key", "receiver", name=op.f("uq_alert_groups_group_key")),
    )
    with op.batch_alter_table("alert_groups", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_groups_next_flush_at"), ["next_flush_at"], unique=False
        )

    op.create_table(
        "alerts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("group_key", sa.String(length=256), nullable=False),
        sa.Column("incident_id", sa.Uuid(), nullable=True),
        sa.Column(
            "labels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "annotations",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("muted_by", sa.String(length=256), nullable=True),
        sa.Column("starts_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("ends_at", sentinel.db.types.UtcDateTime(), nullable=True),
        sa.Column("updated_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_alerts_fingerprint")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_group_key"), ["group_key"], unique=False)

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=256), nullable=False),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_target"), ["target"], unique=False)

    op.create_table(
        "batches",
        sa.Column("host_id", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("agent_id", sa.String(length=128), nullable=False),
        sa.Column("sent_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("received_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("n_observations", sa.Integer(), nullable=False),
        sa.Column("samples", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("host_id", "seq", name=op.f("pk_batches")),
    )
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_batches_received_at"), ["received_at"], unique=False)

    op.create_table(
        "events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("host_id", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("observed_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("received_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("gpu_index", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.String(length=128), nullable=True),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_host_observed", ["host_id", "observed_at"], unique=False)
        batch_op.create_index("ix_events_kind_observed", ["kind", "observed_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_received_at"), ["received_at"], unique=False)

    op.create_table(
        "fr_uploads",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("host_id", sa.String(length=128), nullable=False),
        sa.Column("job_id", sa.String(length=128), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=512), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("received_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_fr_uploads")),
    )
    with op.batch_alter_table("fr_uploads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fr_uploads_job_id"), ["job_id"], unique=False)

    op.create_table(
        "hosts",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("agent_id", sa.String(length=128), nullable=False),
        sa.Column("first_seen", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("last_seen", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_critical_at", sentinel.db.types.UtcDateTime(), nullable=True),
        sa.Column("last_critical", sa.String(length=512), nullable=True),
        sa.Column("drain_state", sa.String(length=16), server_default="none", nullable=False),
        sa.Column("drain_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hosts")),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.String(length=128), nullable=True),
        sa.Column("cluster", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("culprit_host", sa.String(length=128), nullable=True),
        sa.Column("culprit_gpu", sa.String(length=64), nullable=True),
        sa.Column("culprit_rank", sa.Integer(), nullable=True),
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "verdict",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("opened_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("detected_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("resolved_at", sentinel.db.types.UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.create_index("ix_incidents_job_state", ["job_id", "state"], unique=False)
        batch_op.create_index(batch_op.f("ix_incidents_opened_at"), ["opened_at"], unique=False)

    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("first_seen", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("last_seen", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("world_size", sa.Integer(), nullable=True),
        sa.Column("scheduler", sa.String(length=32), nullable=True),
        sa.Column("scheduler_job_id", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=16), server_default="running", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("holder", sa.String(length=256), nullable=False),
        sa.Column("acquired_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("expires_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "maintenance",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "hosts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("job_id", sa.String(length=128), nullable=True),
        sa.Column("starts_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("ends_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("created_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance")),
    )
    with op.batch_alter_table("maintenance", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_maintenance_ends_at"), ["ends_at"], unique=False)

    op.create_table(
        "notification_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_key", sa.String(length=256), nullable=False),
        sa.Column("receiver", sa.String(length=128), nullable=False),
        sa.Column("notifier", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column("alerts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_log")),
    )
    with op.batch_alter_table("notification_log", schema=None) as batch_op:
        batch_op.create_index("ix_notification_log_group", ["group_key", "receiver"], unique=False)

    op.create_table(
        "silences",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "matchers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("starts_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("ends_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("created_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_silences")),
    )
    with op.batch_alter_table("silences", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_silences_ends_at"), ["ends_at"], unique=False)

    op.create_table(
        "decisions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("incident_id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.String(length=128), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "exclude_hosts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("checkpoint_step", sa.BigInteger(), nullable=True),
        sa.Column("steps_lost", sa.BigInteger(), nullable=True),
        sa.Column(
            "outcome",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_decisions_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
        sa.UniqueConstraint("incident_id", name=op.f("uq_decisions_incident_id")),
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_decisions_status"), ["status"], unique=False)

    op.create_table(
        "gpus",
        sa.Column("host_id", sa.String(length=128), nullable=False),
        sa.Column("gpu_index", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(length=512), nullable=True),
        sa.Column("pci_bus_id", sa.String(length=32), nullable=True),
        sa.Column("lost", sa.Boolean(), nullable=False),
        sa.Column("remap_failure", sa.Boolean(), nullable=False),
        sa.Column("ecc_uncorrected", sa.BigInteger(), nullable=True),
        sa.Column("temperature_c", sa.Float(), nullable=True),
        sa.Column("clock_event_reasons", sa.BigInteger(), nullable=True),
        sa.Column("sample", sa.Text(), nullable=False),
        sa.Column("updated_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_gpus_host_id_hosts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("host_id", "gpu_index", name=op.f("pk_gpus")),
    )
    op.create_table(
        "incident_transitions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Uuid(), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=True),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_transitions_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_transitions")),
    )
    with op.batch_alter_table("incident_transitions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incident_transitions_incident_id"), ["incident_id"], unique=False
        )

    op.create_table(
        "job_ranks",
        sa.Column("job_id", sa.String(length=128), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.String(length=128), nullable=False),
        sa.Column("local_rank", sa.Integer(), nullable=False),
        sa.Column("gpu_index", sa.Integer(), nullable=True),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("step_time_s", sa.Float(), nullable=True),
        sa.Column("checkpoint_step", sa.BigInteger(), nullable=True),
        sa.Column("checkpoint_path", sa.String(length=512), nullable=True),
        sa.Column("last_beat_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.Column("step_changed_at", sentinel.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_ranks_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "rank", name=op.f("pk_job_ranks")),
    )
    with op.batch_alter_table("job_ranks", schema=None) as batch_op:
        batch_op.create_index("ix_job_ranks_host", ["host_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_ranks", schema=None) as batch_op:
        batch_op.drop_index("ix_job_ranks_host")

    op.drop_table("job_ranks")
    with op.batch_alter_table("incident_transitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_transitions_incident_id"))

    op.drop_table("incident_transitions")
    op.drop_table("gpus")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decisions_status"))

    op.drop_table("decisions")
    with op.batch_alter_table("silences", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_silences_ends_at"))

    op.drop_table("silences")
    with op.batch_alter_table("notification_log", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_log_group")

    op.drop_table("notification_log")
    with op.batch_alter_table("maintenance", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_maintenance_ends_at"))

    op.drop_table("maintenance")
    op.drop_table("leases")
    op.drop_table("jobs")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incidents_opened_at"))
        batch_op.drop_index("ix_incidents_job_state")

    op.drop_table("incidents")
    op.drop_table("hosts")
    with op.batch_alter_table("fr_uploads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fr_uploads_job_id"))

    op.drop_table("fr_uploads")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_received_at"))
        batch_op.drop_index("ix_events_kind_observed")
        batch_op.drop_index("ix_events_host_observed")

    op.drop_table("events")
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batches_received_at"))

    op.drop_table("batches")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_target"))

    op.drop_table("audit_log")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_group_key"))

    op.drop_table("alerts")
    with op.batch_alter_table("alert_groups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_groups_next_flush_at"))

    op.drop_table("alert_groups")
