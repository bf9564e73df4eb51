"""Render a Report as a terminal table, CSV, JSON or Markdown."""

from __future__ import annotations

import io
import json
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

from sentinel.reports.formats import Format
from sentinel.reports.tables import Report

TITLES = {
    "root_causes": "Interruptions by root cause (shares of the unexpected ones; Llama 3 Table 5)",
    "mttf": "Mean time to failure",
    "time_lost": "Time lost per category",
    "ettr": "Effective training time ratio per job",
    "repeat_offenders": "Repeat-offender hosts (culprit of 2 or more incidents)",
    "goodput": "Where the time went, per category (hours: detection, decision, execution, "
    "waiting for nodes, restart, lost work since the checkpoint, other = not recorded)",
    "goodput_by_day": "Where the time went, per day",
    "ettr_measured": "ETTR per job measured from heartbeats (net steps x step time / wall)",
}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def _summary_lines(report: Report) -> list[str]:
    s = report.summary
    lines = [
        f"window: {s['window_start']} .. {s['window_end']} ({s['window_days']} days)",
        f"interruptions: {s['interruptions']} ({s['unexpected']} unexpected, "
        f"{s['planned']} planned)",
        f"MTTF (unexpected): {_cell(s['mttf_h'])} h   (Llama 3: {s['llama3_mttf_h']} h)",
    ]
    lines += [f"ETTR {job}: {value:.2f}%" for job, value in s["ettr_pct"].items()]
    if s["incidents_without_lost_work"]:
        lines.append(
            f"note: {s['incidents_without_lost_work']} job incidents have no steps_lost or "
            "step time: their lost work is not counted"
        )
    return lines


def _table(name: str, frame: pl.DataFrame) -> Table:
    table = Table(title=TITLES.get(name, name), title_justify="left")
    for column, dtype in frame.schema.items():
        table.add_column(column, justify="right" if dtype.is_numeric() else "left")
    for row in frame.iter_rows():
        table.add_row(*(_cell(v) for v in row))
    return table


def _markdown(name: str, frame: pl.DataFrame) -> str:
    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---:" if d.is_numeric() else "---" for d in frame.dtypes) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([f"### {TITLES.get(name, name)}", "", head, rule, *body])


def render(report: Report, fmt: Format, width: int = 120) -> str:
    if fmt == Format.json:
        return json.dumps(
            {"summary": report.summary, **{k: v.to_dicts() for k, v in report.tables.items()}},
            indent=2,
        )
    if fmt == Format.csv:
        parts = [f"# {name}\n{frame.write_csv()}" for name, frame in report.tables.items()]
        return "\n".join(parts)
    if fmt == Format.md:
        summary = "\n".join(f"- {line}" for line in _summary_lines(report))
        tables = "\n\n".join(_markdown(k, v) for k, v in report.tables.items())
        return f"## Sentinel report\n\n{summary}\n\n{tables}\n"
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=False, color_system=None)
    for line in _summary_lines(report):
        console.print(line, highlight=False)
    for name, frame in report.tables.items():
        console.print()
        console.print(_table(name, frame))
    return out.getvalue()
