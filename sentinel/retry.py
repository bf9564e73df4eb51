"""The service's one retry policy for calls to the outside: capped exponential backoff (with
optional jitter), a receiver's Retry-After honoured and parsed here once, and no retry of a
4xx other than 408 and 429 (the receiver has said no; the same request will not improve).

In-process loops (the webhook scheduler's attempts) run on tenacity: its loop takes the sleep
as a parameter, so tests pass a fake one and time stays injected, and its predicates retry on
a returned value, which is how our adapters report failures (values, not exceptions). stamina,
built on tenacity, was the other choice; it hides the sleep behind a global test switch and
retries on exceptions only. Where the retry is not a loop but a persisted "next attempt at"
(the alert dispatcher stores attempts and the next flush in the database), the caller asks
``Backoff.wait_s`` for the same figure instead of running tenacity's loop.
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt

# Delta-seconds as RFC 9110 writes them (digits), and the decimal some receivers send.
_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")


def retryable_status(status: int) -> bool:
    """Whether an HTTP error status is worth another try: 408, 429 and any 5xx."""
    return status in (408, 429) or status >= 500


def retry_after_s(
    value: str | None, now: datetime | None, *, max_s: float | None = None
) -> float | None:
    """A Retry-After header as seconds from ``now``, at most ``max_s``: delta-seconds or an
    HTTP date (RFC 9110 section 10.2.3). ``now`` is the moment the answer was given (the
    caller's clock, or the response's own Date); without it an HTTP date cannot be read.
    None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        if now is None:
            return None
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - now).total_seconds())
    return seconds if max_s is None else min(seconds, max_s)


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts: ``initial_s`` doubling after each failure up to ``max_s``, plus
    a random draw below ``jitter_s`` (spreads callers that failed together); a Retry-After
    the receiver gave wins."""

    initial_s: float
    max_s: float
    jitter_s: float = 0.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def wait_s(self, failures: int, retry_after_s: float | None = None) -> float:
        """The wait after the ``failures``-th failed attempt (1, 2, ...)."""
        if retry_after_s is not None:
            return retry_after_s
        step = float(min(self.initial_s * 2.0 ** min(max(failures - 1, 0), 64), self.max_s))
        return step + self.rng.uniform(0, self.jitter_s) if self.jitter_s else step


class Answer(Protocol):
    """One attempt's outcome as a value: done, worth another try, and how soon."""

    @property
    def ok(self) -> bool: ...
    @property
    def retryable(self) -> bool: ...
    @property
    def retry_after_s(self) -> float | None: ...


A = TypeVar("A", bound=Answer)


async def call_with_retries(
    attempt: Callable[[], Awaitable[A]],
    *,
    backoff: Backoff,
    attempts: int,
    sleep: Callable[[float], Awaitable[None]],
) -> A:
    """Runs ``attempt`` until it is ok, says not to retry, or ``attempts`` were made; returns
    the last answer. An exception from ``attempt`` is a bug and propagates."""

    def wait(state: RetryCallState) -> float:
        assert state.outcome is not None
        answer: A = state.outcome.result()
        return backoff.wait_s(state.attempt_number, answer.retry_after_s)

    def last_answer(state: RetryCallState) -> A:
        assert state.outcome is not None
        answer: A = state.outcome.result()
        return answer

    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait,
        retry=retry_if_result(lambda answer: not answer.ok and answer.retryable),
        sleep=sleep,
        retry_error_callback=last_answer,
    )
    return await retrying(attempt)
