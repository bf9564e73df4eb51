"""One alembic chain on SQLite and PostgreSQL: empty → head → base, and no drift from the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from sentinel.db import migrate, partitions
from sentinel.db.engine import sync_url
from sentinel.db.models import Base


def _tables(url: str) -> set[str]:
    engine = create_engine(sync_url(url))
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_empty_to_head_to_base(empty_db_url: str) -> None:
    assert migrate.schema_status_sync(empty_db_url).current is None
    migrate.upgrade(empty_db_url)
    status = migrate.schema_status_sync(empty_db_url)
    assert status.up_to_date
    assert _tables(empty_db_url) == set(Base.metadata.tables)
    migrate.downgrade(empty_db_url, "base")
    assert migrate.schema_status_sync(empty_db_url).current is None
    assert _tables(empty_db_url) == set()
    migrate.upgrade(empty_db_url)
    assert migrate.schema_status_sync(empty_db_url).up_to_date


def test_models_and_migrations_do_not_drift(db_url: str) -> None:
    engine = create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()
    if db_url.startswith("postgresql"):
        # Partitioned events: no foreign key can reference events.id alone (migration 0008).
        diff = [
            d
            for d in diff
            if not (d[0] == "add_fk" and d[1].name == partitions.DROPPED_FOREIGN_KEY)
        ]
    assert diff == []


def test_out_of_date_schema_advice_names_the_command(empty_db_url: str) -> None:
    status = migrate.schema_status_sync(empty_db_url)
    assert not status.up_to_date
    assert "sentinel migrate" in status.advice()
