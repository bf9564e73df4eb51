"""The job's durable checkpoint, from what its ranks report."""

from __future__ import annotations

from collections.abc import Iterable


def durable_checkpoint(steps: Iterable[int | None]) -> int | None:
    """A checkpoint is durable for the job only when every rank has reported it: the lowest
    step all ranks have, or None while some rank has reported none."""
    reported = list(steps)
    if not reported or any(s is None for s in reported):
        return None
    return min(s for s in reported if s is not None)
