"""`sentinel report` over a database, and `sentinel simulate`: a history to try it on."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from sentinel.reports.formats import Format

console = Console(highlight=False, emoji=False)
err = Console(stderr=True, emoji=False, soft_wrap=True)  # paths are not wrapped


def _when(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _database_url(database_url: str | None) -> str:
    if database_url:
        return database_url
    from sentinel.settings import load_settings

    return load_settings().database_url()


def _missing_sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names, when it does not exist (None for other databases)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)
    return None if path.exists() else path


def report(
    since: Annotated[
        datetime | None, typer.Option(help="Start of the window (UTC); default: the data's start.")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(help="End of the window (UTC); default: the data's end.")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="Overrides SENTINEL_DATABASE__URL.")
    ] = None,
    restart_s: Annotated[
        float,
        typer.Option(
            help="Restart time counted after a carried-out decision when an incident "
            "was never marked resolved."
        ),
    ] = 300.0,
) -> None:
    """Interruptions by root cause (beside Llama 3's), MTTF, time lost, ETTR, repeat hosts."""
    from sqlalchemy.exc import SQLAlchemyError

    from sentinel.reports.frames import load_history
    from sentinel.reports.tables import ReportParams, build_report

    start, end = _when(since), _when(until)
    if start is not None and end is not None and end <= start:
        err.print("[red]--until must be after --since[/red]")
        raise typer.Exit(2)
    url = _database_url(database_url)
    missing = _missing_sqlite_file(url)
    if missing is not None:
        # SQLite would create an empty file and the report would fail on its missing tables.
        err.print(f"[red]no database at {missing}[/red]: pass --database-url or run sentinel there")
        raise typer.Exit(2)
    try:
        history = load_history(url, start, end)
    except (SQLAlchemyError, ValueError) as exc:
        # The driver's message, not the statement it ran.
        reason = getattr(exc, "orig", None) or exc
        err.print(f"[red]cannot read the database:[/red] {str(reason).splitlines()[0]}")
        raise typer.Exit(2) from None
    result = build_report(history, ReportParams(restart_s=restart_s), time.time())
    from sentinel.reports.render import render

    console.out(render(result, fmt), end="")


# The simulation's options default to its assumptions (printed with their sources), which are
# not imported here: the CLI starts on hosts with the agent's install alone.
_DEFAULT = " Default: the simulation's assumption, printed with its source."


def simulate(
    database: Annotated[Path, typer.Argument(help="SQLite file to write (replaced if present).")],
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same history.")] = 405,
    days: Annotated[float | None, typer.Option(help="Length of the run." + _DEFAULT)] = None,
    checkpoint_interval_s: Annotated[
        float | None,
        typer.Option(help="Seconds between checkpoints, as the job is configured." + _DEFAULT),
    ] = None,
    checkpoint_save_s: Annotated[
        float | None, typer.Option(help="Seconds a checkpoint save blocks training." + _DEFAULT)
    ] = None,
    requeue_s: Annotated[
        float | None,
        typer.Option(help="Scheduler requeue onto the same or replacement nodes." + _DEFAULT),
    ] = None,
    init_s: Annotated[
        float | None, typer.Option(help="NCCL init and checkpoint load, per restart." + _DEFAULT)
    ] = None,
    manual_triage_s: Annotated[
        float | None,
        typer.Option(help="Baseline: a human finds the cause and restarts the job." + _DEFAULT),
    ] = None,
    max_restarts: Annotated[
        int | None,
        typer.Option(help="Override the policy's restarts per job per window (max_restarts)."),
    ] = None,
) -> None:
    """ETTR of a 54-day, 16,384-GPU run at Llama 3's failure rates, without Sentinel and with
    each of its mechanisms, through the real triage and policy; the reactive run is written to
    a SQLite file for `sentinel report`."""
    import sys
    from dataclasses import replace

    from sentinel.remediation.settings import RemediationSettings
    from sentinel.reports.simulation import Assumptions, describe, run, sensitivity, write

    started = time.monotonic()
    remediation = RemediationSettings(
        **({"max_restarts": max_restarts} if max_restarts is not None else {})
    )
    given = {
        "days": days,
        "checkpoint_interval_s": checkpoint_interval_s,
        "checkpoint_save_s": checkpoint_save_s,
        "requeue_s": requeue_s,
        "init_s": init_s,
        "manual_triage_s": manual_triage_s,
    }
    assumptions: Any = Assumptions(remediation=remediation)
    assumptions = replace(assumptions, **{k: v for k, v in given.items() if v is not None})
    outcome = run(assumptions, seed)
    rows = sensitivity(outcome)
    write(outcome, database)
    console.print("$ sentinel " + " ".join(sys.argv[1:]), markup=False)
    for line in describe(outcome, rows):
        console.print(line, soft_wrap=True, markup=False)
    console.print(
        f"\nsimulated in {time.monotonic() - started:.1f} s; the reactive run is written to "
        f"{database}; see it with:\n  sentinel report --database-url sqlite:///{database}"
    )
