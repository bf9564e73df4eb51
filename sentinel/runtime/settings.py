"""Retention settings (the ``retention`` section): how long the retention pass keeps rows."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RetentionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    samples_hours: float = Field(
        24.0, gt=0, description="Periodic samples (GPU readings, heartbeats) older than this go."
    )
    events_days: float = Field(
        90.0, gt=0, description="XID, ECC and log events older than this go."
    )
    interval_s: float = Field(300.0, gt=0)
