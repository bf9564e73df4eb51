"""rasdaemon's database: memory-controller events, machine checks, memory failures, devlink.

rasdaemon (`rasdaemon --record`) keeps what the kernel's RAS tracepoints report in SQLite,
one table per kind of event, each row with an increasing `id`. The collector reads the rows
after the last id it shipped, read-only, and ships each as `ras-mc-ctl --errors` prints it,
so triage reads the agent's record and a pasted `ras-mc-ctl` excerpt alike.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from sentinel.knowledge import PatternCatalog
from sentinel.wire import Observation
from sentinel_agent.collectors.base import Context
from sentinel_agent.collectors.hardware import HardwareRecords

log = logging.getLogger(__name__)

DEFAULT_PATH: Final = Path("/var/lib/rasdaemon/ras-mc_event.db")
# Rows read per table and poll: a backlog after a storm goes out over several polls.
MAX_ROWS: Final = 500
_U64: Final = (1 << 64) - 1


def _hex(value: Any) -> str:
    # SQLite keeps the 64-bit registers signed; ras-mc-ctl prints them unsigned.
    return f"0x{int(value) & _U64:08x}"


def _mc_event(r: Mapping[str, Any]) -> str:
    return (
        f"{r['id']} {r['timestamp']} {r['err_count']} {r['err_type']} error(s): {r['err_msg']}"
        f" at {r['label'] or ''} location: {r['mc']}:{r['top_layer']}:{r['middle_layer']}:"
        f"{r['lower_layer']}, addr {r['address']}, grain {r['grain']}, syndrome {r['syndrome']}"
        f" {r['driver_detail'] or ''}"
    ).rstrip()


_MCE_TEXT: Final = (
    ("cpuvendor", "CPU"),
    ("bank_name", "bank"),
    ("mcgstatus_msg", "mcg"),
    ("mcistatus_msg", "mci"),
    ("mcastatus_msg", "mca"),
)
_MCE_REGISTERS: Final = (
    "mcgcap", "mcgstatus", "status", "addr", "misc", "ip", "tsc", "walltime", "ppin", "cpu",
    "cpuid", "apicid", "socketid", "cs", "bank", "microcode",
)  # fmt: skip


def _mce_record(r: Mapping[str, Any]) -> str:
    # As ras-mc-ctl --errors: a field is printed only when set (Perl's truth: not 0, not "").
    out = f"{r['id']} {r['timestamp']} error: {r.get('error_msg') or ''}"
    for column, label in _MCE_TEXT:
        if r.get(column):
            out += f", {label} {r[column]}"
    for column in ("mc_location", "user_action"):
        if r.get(column):
            out += f", {r[column]}"
    for column in _MCE_REGISTERS:
        if r.get(column):
            out += f", {column}={_hex(r[column])}"
    return out


def _memory_failure(r: Mapping[str, Any]) -> str:
    return (
        f"{r['id']} {r['timestamp']} error: pfn={r['pfn']}, page_type={r['page_type']}, "
        f"action_result={r['action_result']}"
    )


def _devlink(r: Mapping[str, Any]) -> str:
    return (
        f"{r['id']} {r['timestamp']} error: bus_name={r['bus_name']}, dev_name={r['dev_name']}, "
        f"driver_name={r['driver_name']}, reporter_name={r['reporter_name']}, "
        f"message='{r['msg']}', "
    )


# The tables read, each with how ras-mc-ctl prints its rows.
TABLES: Final[Mapping[str, Callable[[Mapping[str, Any]], str]]] = {
    "mc_event": _mc_event,
    "mce_record": _mce_record,
    "memory_failure_event": _memory_failure,
    "devlink_event": _devlink,
}


class RasdaemonCollector:
    name = "rasdaemon"

    def __init__(
        self,
        ctx: Context,
        *,
        path: Path = DEFAULT_PATH,
        interval_s: float,
        from_start: bool = False,
        patterns: PatternCatalog | None = None,
    ) -> None:
        self.interval_s = interval_s
        self._path = path
        self._from_start = from_start
        self._records = HardwareRecords(ctx, "rasdaemon", patterns)
        self._key = f"{self.name}:{path}"
        self._last: dict[str, int] | None = _restore(ctx.positions.get(self._key))

    def poll(self) -> Sequence[Observation]:
        if not self._path.exists():
            return []  # rasdaemon not installed, or not recording yet
        db = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, timeout=1.0)
        try:
            db.row_factory = sqlite3.Row
            tables = {
                name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            } & set(TABLES)
            if self._last is None:
                # First start: what is already recorded is history, not news (unless asked).
                self._last = {t: 0 if self._from_start else _max_id(db, t) for t in tables}
            out: list[Observation] = []
            for table in sorted(tables):
                out.extend(self._new_rows(db, table))
            return out
        finally:
            db.close()

    def _new_rows(self, db: sqlite3.Connection, table: str) -> list[Observation]:
        assert self._last is not None
        last = self._last.get(table, 0)
        if _max_id(db, table) < last:
            log.warning("%s: %s was recreated; reading it from its start", self._path, table)
            last = 0
        rows = db.execute(
            f"SELECT * FROM {table} WHERE id > ? ORDER BY id LIMIT ?",
            (last, MAX_ROWS),
        ).fetchall()
        out: list[Observation] = []
        for row in rows:
            message = TABLES[table](dict(zip(row.keys(), row, strict=True)))
            out.append(self._records.record([message], path=f"{self._path}:{table}"))
            last = int(row["id"])
        self._last[table] = last
        return out

    def positions(self) -> Mapping[str, str | None]:
        if self._last is None:
            return {}
        return {self._key: json.dumps(self._last, sort_keys=True, separators=(",", ":"))}

    def close(self) -> None:
        pass


def _max_id(db: sqlite3.Connection, table: str) -> int:
    (value,) = db.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()
    return int(value)


def _restore(saved: str | None) -> dict[str, int] | None:
    if not saved:
        return None
    try:
        data = json.loads(saved)
        return {str(k): int(v) for k, v in data.items()}
    except (ValueError, TypeError, AttributeError):
        log.warning("ignoring the unreadable rasdaemon position %r", saved)
        return None
