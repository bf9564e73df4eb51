"""The dashboard's goodput page: where the window's interruptions spent their time, per category
and per day, and each job's ETTR measured from its heartbeats (the report's own tables)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from sentinel.reports.frames import load_window
from sentinel.reports.goodput import breakdown_by_category, breakdown_by_day, measured_ettr, phases
from sentinel.reports.tables import ReportParams, interruptions

# (column, header) in the order a reader follows an interruption.
COLUMNS = (
    ("detection_h", "detection"),
    ("decision_h", "decision"),
    ("execution_h", "execution"),
    ("waiting_h", "waiting for nodes"),
    ("restart_h", "restart"),
    ("lost_h", "lost work"),
    ("other_h", "not recorded"),
)


@dataclass(frozen=True)
class Goodput:
    since: datetime
    until: datetime
    by_category: list[dict[str, Any]]
    by_day: list[dict[str, Any]]
    measured: list[dict[str, Any]]
    columns: tuple[tuple[str, str], ...] = COLUMNS

    @property
    def total_h(self) -> float:
        return sum(float(r["total_h"]) for r in self.by_category)


async def goodput(session: AsyncSession, since: datetime, until: datetime) -> Goodput:
    history = await load_window(session, since, until)
    start, end = since.timestamp(), until.timestamp()
    per_phase = phases(interruptions(history, ReportParams(), start, end), history.progress)
    return Goodput(
        since,
        until,
        breakdown_by_category(per_phase).to_dicts(),
        breakdown_by_day(per_phase).to_dicts(),
        measured_ettr(history.progress, start, end, history.jobs).to_dicts(),
    )
