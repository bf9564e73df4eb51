"""Engines and sessions: one URL in, the async driver for the service, the sync one for alembic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}


def _backend(url: URL) -> str:
    name = url.get_backend_name()
    if name == "postgres":
        name = "postgresql"
    if name not in _ASYNC_DRIVERS:
        raise ValueError(
            f"unsupported database {url.render_as_string(hide_password=True)!r}: "
            "use sqlite:///PATH or postgresql://..."
        )
    return name


def async_url(url: str) -> URL:
    parsed = make_url(url)
    return parsed.set(drivername=_ASYNC_DRIVERS[_backend(parsed)])


def sync_url(url: str) -> URL:
    parsed = make_url(url)
    return parsed.set(drivername=_SYNC_DRIVERS[_backend(parsed)])


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers run beside the single writer; NORMAL sync is durable across a process
    # crash (not a power cut), which is the usual trade for a local service.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def ensure_sqlite_dir(url: URL) -> None:
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    target = async_url(url)
    ensure_sqlite_dir(target)
    if target.get_backend_name() == "sqlite":
        engine = create_async_engine(target, echo=echo)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(
            target, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
        )
    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """The boundary that commits: repositories inside only flush."""
    async with sessions() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
