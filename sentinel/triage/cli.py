"""`sentinel classify`: name the root cause of a pasted failure log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sentinel.triage.classify import classify_all
from sentinel.triage.verdict import Verdict

app = typer.Typer(help="Failure triage: classify log excerpts into root-cause categories.")

EXIT_UNREADABLE = 2


def _read(file: str) -> str:
    data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    # Pasted logs carry stray bytes (terminal colours, truncated UTF-8): keep going.
    return data.decode("utf-8", errors="replace")


def _print_verdict(console: Console, verdict: Verdict, title: str) -> None:
    culprit = ", ".join(
        part
        for part in (
            f"host {verdict.culprit_host}" if verdict.culprit_host else "",
            f"GPU {verdict.culprit_gpu}" if verdict.culprit_gpu else "",
            f"rank {verdict.culprit_rank}" if verdict.culprit_rank is not None else "",
        )
        if part
    )
    console.print(
        f"[bold]{title}:[/bold] [bold cyan]{verdict.category.value}[/bold cyan] "
        f"(confidence {verdict.confidence:.2f})"
        + (f" — culprit: {escape(culprit)}" if culprit else "")
    )
    console.print(f"  {escape(verdict.reason)}")
    if verdict.evidence:
        table = Table("role", "family", "pattern", "host", "evidence", show_lines=False)
        for item in verdict.evidence[:20]:
            first_line = item.text.strip().splitlines()[0] if item.text.strip() else ""
            table.add_row(
                item.role,
                item.family,
                item.pattern or "",
                item.host or "",
                escape(first_line[:160]),
            )
        console.print(table)
    if verdict.symptoms_total:
        console.print(f"  symptoms explained: {verdict.symptoms_total}")
    console.print(f"  rules fired: {' → '.join(verdict.rules_fired)}")


@app.command()
def classify(
    file: str = typer.Argument("-", help="Log excerpt to classify; '-' reads standard input."),
    json_out: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
) -> None:
    """Classify a log excerpt: category, confidence, culprit, evidence and rules fired."""
    try:
        text = _read(file)
    except OSError as exc:
        typer.echo(f"error: cannot read {file}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_UNREADABLE) from exc
    primary, *secondary = classify_all(text)
    if json_out:
        document = primary.model_dump(mode="json")
        document["secondary"] = [v.model_dump(mode="json") for v in secondary]
        typer.echo(json.dumps(document, indent=2))
        return
    console = Console(emoji=False)  # PCI addresses like 0000:ab:00 are not emoji codes
    _print_verdict(console, primary, "Root cause")
    for verdict in secondary:
        _print_verdict(console, verdict, "Also")


if __name__ == "__main__":  # pragma: no cover
    app()
