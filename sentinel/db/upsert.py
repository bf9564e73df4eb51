"""INSERT ... ON CONFLICT for both dialects (the statements are otherwise identical)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert_for(session: AsyncSession, model: type[Any]) -> Any:
    """The dialect's insert construct, which has ``on_conflict_do_nothing/update``."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise RuntimeError(f"unsupported dialect {dialect}")
