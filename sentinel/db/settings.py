"""Database settings (the ``database`` section): which database, and its connection pool."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DatabaseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None,
        description="sqlite:///PATH or postgresql://USER@HOST:PORT/DB; default: a SQLite file "
        "in data_dir.",
    )
    pool_size: int = Field(10, ge=1, le=200)
    echo: bool = False
