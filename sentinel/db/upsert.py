"""INSERT ... ON CONFLICT for both dialects (the statements are otherwise identical)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def dialect_of(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def insert_for(dialect: str, model: type[Any]) -> Any:
    """The dialect's insert construct, which has ``on_conflict_do_nothing/update``.

    Built on the Core table, not the ORM class: the ORM's bulk path costs several times the
    CPU per row, and ingest writes thousands of rows a second.
    """
    table = model.__table__
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported dialect {dialect}")
