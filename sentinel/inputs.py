"""Types for what operators and outside systems send the API: bounded, NUL-free, storable times.

The wire contract (``sentinel.wire.v1``) holds agents to the database's limits; these hold the
API's other inputs to the same ones. PostgreSQL text and JSONB hold no NUL character, and a
time column holds no naive time nor one whose UTC conversion leaves the calendar: such a value
is a 422 naming the field here, not a failed INSERT or a comparison that raises (a 500) later.
Naive times are refused, not guessed: "12:00" on an operator's laptop is not 12:00 UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, StringConstraints

from sentinel.wire.v1 import EARLIEST, LATEST, Timestamp

NO_NUL = r"^[^\x00]*$"

# What an operator writes: an optional note, a reason (required), a scheduler's report.
Comment = Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL)]
Reason = Annotated[str, StringConstraints(min_length=3, max_length=2000, pattern=NO_NUL)]
Detail = Annotated[str, StringConstraints(max_length=10_000, pattern=NO_NUL)]
# Text from another system (Alertmanager): bounded like the wire's longest text.
ForeignText = Annotated[str, StringConstraints(max_length=65_536, pattern=NO_NUL)]


def _not_a_number(value: object) -> object:
    # Lax pydantic reads a number as seconds since 1970; the schema promises an ISO string.
    if isinstance(value, int | float):
        raise ValueError("a time is an ISO 8601 string with a UTC offset, not a number")
    return value


# An aware time within the calendar in any offset (the wire's Timestamp).
Time = Annotated[Timestamp, BeforeValidator(_not_a_number)]


def _clamped(value: datetime) -> datetime:
    return min(max(value, EARLIEST), LATEST)


# A time a query compares with, never stored: one past the calendar's storable days selects
# what its nearest storable day does, so it is moved there rather than refused.
TimeBound = Annotated[AwareDatetime, BeforeValidator(_not_a_number), AfterValidator(_clamped)]
# A stored time, but also Alertmanager's zero time (0001-01-01T00:00:00Z) for "no end".
EndTime = Annotated[
    AwareDatetime,
    Field(ge=datetime(1, 1, 1, tzinfo=UTC), le=LATEST),
    BeforeValidator(_not_a_number),
]
