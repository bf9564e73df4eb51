"""The service's retry policy: Retry-After parsed once, the backoff, the loop on a fake sleep."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from sentinel.retry import Backoff, call_with_retries, retry_after_s, retryable_status

NOW = datetime(2026, 11, 28, 3, 0, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("17", 17.0),
        (" 3 ", 3.0),
        ("1.5", 1.5),
        (format_datetime(NOW + timedelta(seconds=40), usegmt=True), 40.0),
        ("Sat, 28 Nov 2026 03:01:00 -0000", 40.0),  # no zone given: UTC
        (format_datetime(NOW - timedelta(seconds=40), usegmt=True), 0.0),  # past: now
        ("-5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_seconds_or_an_http_date(value: str | None, expected: float | None) -> None:
    assert retry_after_s(value, NOW) == expected


def test_retry_after_is_capped_and_needs_a_now_for_a_date() -> None:
    later = format_datetime(NOW + timedelta(hours=1), usegmt=True)
    assert retry_after_s(later, NOW, max_s=30.0) == 30.0
    assert retry_after_s("600", NOW, max_s=30.0) == 30.0
    assert retry_after_s(later, None) is None
    assert retry_after_s("7", None) == 7.0


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (503, True), (408, True), (429, True), (400, False), (404, False), (302, False)],
)
def test_only_408_429_and_5xx_are_retried(status: int, retryable: bool) -> None:
    assert retryable_status(status) is retryable


def test_backoff_doubles_up_to_its_cap_and_a_retry_after_wins() -> None:
    backoff = Backoff(5.0, 60.0)
    assert [backoff.wait_s(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert backoff.wait_s(10_000) == 60.0
    assert backoff.wait_s(2, retry_after_s=17.0) == 17.0


def test_jitter_spreads_each_wait_above_its_step() -> None:
    backoff = Backoff(1.0, 8.0, jitter_s=2.0, rng=random.Random(7))
    waits = [backoff.wait_s(4) for _ in range(200)]
    assert all(8.0 <= w <= 10.0 for w in waits) and len(set(waits)) > 100


@dataclass(frozen=True)
class Answer:
    ok: bool
    retryable: bool = True
    retry_after_s: float | None = None


class Script:
    """Answers in order and records the sleeps between them (time is not waited for)."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.sleeps: list[float] = []

    async def attempt(self) -> Answer:
        self.calls += 1
        return self.answers.pop(0)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


async def _run(script: Script, attempts: int = 4) -> Answer:
    return await call_with_retries(
        script.attempt, backoff=Backoff(0.5, 10.0), attempts=attempts, sleep=script.sleep
    )


async def test_retries_until_ok_with_the_backoff_and_retry_after() -> None:
    script = Script(Answer(False), Answer(False, retry_after_s=3.0), Answer(False), Answer(True))

    assert (await _run(script)).ok
    assert script.sleeps == [0.5, 3.0, 2.0]


async def test_a_final_answer_stops_at_once() -> None:
    script = Script(Answer(False, retryable=False), Answer(True))

    answer = await _run(script)

    assert not answer.ok and not answer.retryable
    assert script.calls == 1 and script.sleeps == []


async def test_giving_up_returns_the_last_answer() -> None:
    script = Script(Answer(False), Answer(False), Answer(False, retry_after_s=1.0))

    answer = await _run(script, attempts=3)

    assert answer == Answer(False, retry_after_s=1.0)
    assert script.calls == 3 and script.sleeps == [0.5, 1.0]
