"""Many rows through one cached INSERT without SQLAlchemy's per-row parameter work.

`session.execute(stmt, rows)` builds, for every row of an executemany, a parameter dict and
runs every column's bind processor in Python (the UTC datetime one first converts, then the
SQLite one formats): at ingest's 16 rows per batch that cost more CPU than the rest of storing
the batch. Here the statement is compiled once per dialect and set of columns, and each row
becomes a tuple in one C call; only the columns whose type has a bind processor are converted,
a column at a time, the UTC datetimes by a direct equivalent of the two processors, once per
distinct time. The driver then gets the rows
as they are (asyncpg: its prepared-statement executemany; SQLite: sqlite3's executemany), on
the session's connection, in its transaction.

Only for statements whose parameters are the rows' columns (plus constant column defaults);
anything else (SQL-side defaults computed per row, RETURNING) goes through `session.execute`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Boolean, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from sentinel.db.types import UtcDateTime

Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class _Plan:
    sql: str
    # The rows' values in the statement's parameter order, and the converters by position.
    take: Callable[[dict[str, Any]], tuple[Any, ...]]
    constants: tuple[tuple[int, Any], ...]
    # (position, converter, whether its results may be remembered for equal values: times
    # and flags, few distinct ones in a group).
    converters: tuple[tuple[int, Converter, bool], ...]


_PLANS: dict[tuple[int, str, tuple[str, ...]], _Plan | None] = {}


async def execute_rows(session: AsyncSession, stmt: Any, rows: Sequence[dict[str, Any]]) -> None:
    """``session.execute(stmt, rows)`` for an INSERT (or upsert) without RETURNING; every row
    has the same keys."""
    if not rows:
        return
    conn = await session.connection()
    keys = tuple(rows[0])
    cache_key = (id(stmt), conn.dialect.name, keys)
    if cache_key not in _PLANS:
        _PLANS[cache_key] = _plan(stmt, conn.dialect, keys)
    plan = _PLANS[cache_key]
    if plan is None:
        await session.execute(stmt, list(rows))
        return
    params: list[tuple[Any, ...]] = list(map(plan.take, rows))
    if plan.constants or plan.converters:
        params = _finish(params, plan)
    await conn.exec_driver_sql(plan.sql, params)


def _finish(params: list[tuple[Any, ...]], plan: _Plan) -> list[tuple[Any, ...]]:
    """The constants put in and the converters applied column by column: each column is one
    C-level pass, and a time is converted once per distinct value (the rows of a group share
    few)."""
    columns: list[Sequence[Any]] = list(zip(*params, strict=True))
    n = len(params)
    for i, value in plan.constants:
        columns.insert(i, (value,) * n)
    for i, convert, pure in plan.converters:
        if pure:
            done = {value: convert(value) for value in set(columns[i])}
            columns[i] = list(map(done.__getitem__, columns[i]))
        else:
            columns[i] = list(map(convert, columns[i]))
    return list(zip(*columns, strict=True))


def _plan(stmt: Any, dialect: Dialect, keys: tuple[str, ...]) -> _Plan | None:
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
    if compiled.effective_returning or not compiled.positional:
        return None
    order: list[str] = list(compiled.positiontup or ())
    table: Table = stmt.table
    binds = compiled.binds
    if len(set(order)) != len(order):
        return None
    from_rows: list[str] = []
    constants: list[tuple[int, Any]] = []
    converters: list[tuple[int, Converter, bool]] = []
    for i, name in enumerate(order):
        column = table.c.get(name)
        if name not in binds or column is None:
            return None
        if name in keys:
            from_rows.append(name)
        else:
            # A constant default (``default="none"``) is filled in here as SQLAlchemy would.
            default = column.default
            if not isinstance(default, ScalarElementColumnDefault):
                return None
            constants.append((i, default.arg))
        convert = _converter(column.type, dialect)
        if convert is not None:
            converters.append((i, convert, isinstance(column.type, UtcDateTime | Boolean)))
    if set(from_rows) != set(keys):
        return None
    return _Plan(
        sql=compiled.string,
        take=_taker(from_rows),
        constants=tuple(constants),
        converters=tuple(converters),
    )


def _taker(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(names) == 1:
        name = names[0]
        return lambda row: (row[name],)
    return itemgetter(*names)


def _converter(type_: Any, dialect: Dialect) -> Converter | None:
    if isinstance(type_, UtcDateTime):
        return _sqlite_utc if dialect.name == "sqlite" else _utc
    processor: Converter | None = type_._cached_bind_processor(dialect)
    return processor


def _utc(value: datetime | None) -> datetime | None:
    """UtcDateTime's bind processor on PostgreSQL."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC)


def _sqlite_utc(value: datetime | None) -> str | None:
    """UtcDateTime's then SQLite DATETIME's bind processors: the UTC time as
    'YYYY-MM-DD HH:MM:SS.ffffff'."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
