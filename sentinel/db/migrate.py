"""Run and check the alembic chain in sentinel/migrations/ from code (the CLI, the server, the
tests). The chain ships inside the package, so an installed wheel finds it as a checkout does."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine

from sentinel.db.engine import ensure_sqlite_dir, sync_url

MIGRATIONS_DIR = Path(str(resources.files("sentinel") / "migrations"))


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' would be read as interpolation by configparser.
    cfg.set_main_option(
        "sqlalchemy.url", sync_url(url).render_as_string(hide_password=False).replace("%", "%%")
    )
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None, "the migration chain is empty"
    return head


def upgrade(url: str, revision: str = "head") -> None:
    ensure_sqlite_dir(sync_url(url))
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    def advice(self) -> str:
        return (
            f"database schema is at {self.current or 'nothing (empty database)'}, this Sentinel "
            f"needs {self.head}: run 'sentinel migrate' (or set SENTINEL_AUTO_MIGRATE=true)"
        )


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


async def schema_status(engine: AsyncEngine) -> SchemaStatus:
    async with engine.connect() as conn:
        current = await conn.run_sync(_current)
    return SchemaStatus(current=current, head=head_revision())


def schema_status_sync(url: str) -> SchemaStatus:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return SchemaStatus(current=_current(conn), head=head_revision())
    finally:
        engine.dispose()
