"""The job's durable checkpoint, the code versions it ran and how long it takes to start and to
checkpoint, from what its ranks report."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


def durable_checkpoint(steps: Iterable[int | None]) -> int | None:
    """A checkpoint is durable for the job only when every rank has reported it: the lowest
    step all ranks have, or None while some rank has reported none."""
    reported = list(steps)
    if not reported or any(s is None for s in reported):
        return None
    return min(s for s in reported if s is not None)


def checkpoint_since(durable: int | None, before: int | None, reached: int | None) -> bool:
    """Whether the job's durable checkpoint is one saved since a request was made: newer than
    the one durable then (``before``), and at or past the step the job had reached then."""
    if durable is None:
        return False
    if before is not None and durable <= before:
        return False
    return reached is None or durable >= reached


class RankReport(Protocol):
    """What a rank's heartbeats left (a job_ranks row)."""

    @property
    def checkpoint_step(self) -> int | None: ...
    @property
    def checkpoint_version(self) -> str | None: ...
    @property
    def code_version(self) -> str | None: ...
    @property
    def last_beat_at(self) -> datetime: ...


@dataclass(frozen=True)
class CodeVersions:
    """The version the job runs now (its latest beat's) and the last version that trained (the
    one the durable checkpoint was written under); None where the ranks do not say, or (for the
    trained one) disagree."""

    current: str | None
    trained: str | None


def code_versions(ranks: Sequence[RankReport]) -> CodeVersions:
    latest = max((r for r in ranks if r.code_version), key=lambda r: r.last_beat_at, default=None)
    durable = durable_checkpoint(r.checkpoint_step for r in ranks)
    written = {
        r.checkpoint_version
        for r in ranks
        if durable is not None and r.checkpoint_step == durable and r.checkpoint_version
    }
    return CodeVersions(
        latest.code_version if latest is not None else None,
        written.pop() if len(written) == 1 else None,
    )


class RankTimings(Protocol):
    """What a rank measured (a job_ranks row): seconds, or None where it did not say."""

    @property
    def startup_s(self) -> float | None: ...
    @property
    def checkpoint_save_s(self) -> float | None: ...
    @property
    def checkpoint_write_s(self) -> float | None: ...


@dataclass(frozen=True)
class JobTimings:
    """The job's, from its ranks': the slowest rank's each time (the others wait for it at the
    next collective), None where no rank said."""

    startup_s: float | None
    checkpoint_save_s: float | None
    checkpoint_write_s: float | None


def job_timings(ranks: Sequence[RankTimings]) -> JobTimings:
    def slowest(values: Iterable[float | None]) -> float | None:
        return max((v for v in values if v is not None), default=None)

    return JobTimings(
        slowest(r.startup_s for r in ranks),
        slowest(r.checkpoint_save_s for r in ranks),
        slowest(r.checkpoint_write_s for r in ranks),
    )
