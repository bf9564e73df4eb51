"""The alert API's request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from sentinel.alerting.model import parse_duration


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AlertOut(_Out):
    id: uuid.UUID
    fingerprint: str
    group_key: str
    incident_id: uuid.UUID | None
    labels: dict[str, Any]
    annotations: dict[str, Any]
    state: str
    muted_by: str | None = Field(
        description="Why it is not announced: 'silence:<id>' or 'inhibited_by:<fingerprint>'."
    )
    starts_at: datetime
    ends_at: datetime | None
    updated_at: datetime


class AlertGroupOut(_Out):
    id: uuid.UUID
    group_key: str
    receiver: str
    labels: dict[str, Any]
    state: str
    first_fired_at: datetime
    last_notified_at: datetime | None
    next_flush_at: datetime | None
    acked_by: str | None
    acked_at: datetime | None
    updated_at: datetime


class SilenceOut(_Out):
    id: uuid.UUID
    matchers: list[dict[str, Any]]
    author: str
    comment: str
    starts_at: datetime
    ends_at: datetime
    created_at: datetime
    active: bool = False


class MatcherIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    op: str = Field("=", pattern=r"^(=|!=|=~|!~)$")
    value: str


class SilenceIn(BaseModel):
    """Matchers as strings (``host=~"node1[0-9]"``) or objects; an end time or a duration."""

    model_config = ConfigDict(extra="forbid")

    matchers: list[str | MatcherIn] = Field(min_length=1, max_length=50)
    comment: str = Field(min_length=1, max_length=2000)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    duration: Annotated[timedelta, BeforeValidator(parse_duration)] | None = None

    @model_validator(mode="after")
    def _one_end(self) -> SilenceIn:
        if (self.ends_at is None) == (self.duration is None):
            raise ValueError("give exactly one of 'ends_at' or 'duration'")
        return self


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(None, max_length=2000)


class WebhookAccepted(BaseModel):
    alerts: int
    new_events: int
