"""The alert API's request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from sentinel.alerting.model import DURATION_PART, LABEL_VALUE_MAX, matcher_of, parse_duration
from sentinel.alerting.muting import silence_active
from sentinel.db.models import Silence
from sentinel.inputs import NO_NUL, Comment, Time
from sentinel.wire.v1 import LATEST

# Longer than any silence anyone means; past it, "now + duration" could leave the calendar.
MAX_SILENCE = timedelta(days=3660)


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


def silence_out(silence: Silence, now: datetime) -> SilenceOut:
    out = SilenceOut.model_validate(silence)
    out.active = silence_active(silence, now)
    return out


def _parses(value: str) -> str:
    matcher_of(value)  # a bad syntax or regular expression is a ValueError naming it
    return value


MatcherValue = Annotated[str, StringConstraints(max_length=LABEL_VALUE_MAX, pattern=NO_NUL)]


class MatcherIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    op: str = Field("=", pattern=r"^(=|!=|=~|!~)$")
    value: MatcherValue

    @model_validator(mode="after")
    def _compiles(self) -> MatcherIn:
        matcher_of(self.model_dump())  # a regular expression that does not compile is named
        return self


# The string form, as Matcher.parse reads it; a regular expression must also compile.
MatcherText = Annotated[
    str,
    StringConstraints(
        max_length=2 * LABEL_VALUE_MAX,
        pattern=r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*(=~|!~|!=|=)\s*"
        r'("(?:[^"\\\x00]|\\[^\x00])*"|[^\s"\x00]*)\s*$',
    ),
    AfterValidator(_parses),
]


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    Field(le=MAX_SILENCE),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": f"^{DURATION_PART}+$", "examples": ["4h", "1h30m"]},
                {"type": "number", "minimum": 0, "maximum": MAX_SILENCE.total_seconds()},
            ],
            "description": "30s, 5m, 4h, 1h30m, 2d, or a number of seconds",
        }
    ),
]


class SilenceIn(BaseModel):
    """Matchers as strings (``host=~"node1[0-9]"``) or objects; an end time or a duration."""

    model_config = ConfigDict(extra="forbid")

    matchers: list[MatcherText | MatcherIn] = Field(min_length=1, max_length=50)
    comment: Annotated[Comment, Field(min_length=1)]
    starts_at: Time | None = None
    ends_at: Time | None = None
    duration: Duration | None = None

    @model_validator(mode="after")
    def _one_end(self) -> SilenceIn:
        if (self.ends_at is None) == (self.duration is None):
            raise ValueError("give exactly one of 'ends_at' or 'duration'")
        starts, duration = self.starts_at, self.duration
        if starts is not None and duration is not None and starts > LATEST - duration:
            raise ValueError(f"starts_at + duration is past {LATEST.isoformat()}")
        return self


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: Comment | None = None


class _PdPart(BaseModel):
    # PagerDuty's payload carries much more; only what is read here is held to a type.
    model_config = ConfigDict(extra="ignore")


class PdAgent(_PdPart):
    summary: Annotated[str, StringConstraints(max_length=512, pattern=NO_NUL)] | None = None


class PdIncident(_PdPart):
    incident_key: Annotated[str, StringConstraints(max_length=255, pattern=NO_NUL)] | None = None


class PdEvent(_PdPart):
    event_type: Annotated[str, StringConstraints(max_length=64, pattern=NO_NUL)]
    agent: PdAgent | None = None
    data: PdIncident


class PdWebhook(_PdPart):
    """A PagerDuty V3 webhook (a webhook subscription's POST); only incident.acknowledged acts."""

    event: PdEvent


class PdAccepted(BaseModel):
    event_type: str
    acknowledged: list[str] = Field(description="The receivers whose alert groups were acked.")


class WebhookAccepted(BaseModel):
    alerts: int
    new_events: int
