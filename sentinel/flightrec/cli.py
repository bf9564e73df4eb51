"""`sentinel fr`: analyse a folder of flight-recorder dumps from the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

# The analysis imports polars and numba: loaded when a command runs, so that `sentinel --help`
# and `sentinel classify` work where only the agent's dependencies are installed.
if TYPE_CHECKING:
    from sentinel.flightrec.analyze import RankMap
    from sentinel.flightrec.models import FrVerdict

app = typer.Typer(help="Flight-recorder dumps: which rank and collective stopped the job.")

EXIT_HEALTHY, EXIT_PROBLEM, EXIT_ERROR = 0, 1, 2


def load_rank_map(path: Path) -> RankMap:
    """A JSON object {"<rank>": ["<host>", <gpu index>], ...}."""
    from sentinel.flightrec.models import FrParseError

    try:
        raw = json.loads(path.read_bytes())
        return {int(rank): (str(host), int(gpu)) for rank, (host, gpu) in raw.items()}
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise FrParseError(f"{path}: not a rank map {{rank: [host, gpu]}}: {exc}") from None


@app.command()
def analyze(
    directory: Annotated[Path, typer.Argument(help="Folder with one dump file per rank.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
    rank_map: Annotated[
        Path | None, typer.Option(help='JSON {"rank": ["host", gpu]} to name hosts and GPUs.')
    ] = None,
    workers: Annotated[int, typer.Option(help="Processes that parse dumps.")] = min(
        2, os.cpu_count() or 1
    ),
) -> None:
    """Exit 0 when healthy, 1 when a problem is found, 2 on bad input."""
    from sentinel.flightrec.dumpfiles import dump_paths
    from sentinel.flightrec.models import FrParseError
    from sentinel.flightrec.pool_settings import pooled, start_pool

    err = Console(stderr=True, soft_wrap=True, emoji=False)
    pool = None
    try:
        paths = dump_paths(directory)
        # The parsing workers start (and import) while this process imports the analysis
        # and warms it up.
        pool = start_pool(workers) if pooled(len(paths), workers) else None
        from sentinel.flightrec.analyze import analyze_dumps
        from sentinel.flightrec.parse import read_dump_set

        mapping = load_rank_map(rank_map) if rank_map else None
        _compile_fast_path(err)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task("reading dumps", total=len(paths))
            dumps = read_dump_set(paths, workers, lambda n: progress.advance(task, n), pool=pool)
        verdict = analyze_dumps(dumps, mapping)
    except FrParseError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
        raise typer.Exit(EXIT_ERROR) from None
    finally:
        if pool is not None:  # the read shut it down, unless it never got that far
            pool.shutdown(wait=False, cancel_futures=True)
    if as_json:
        typer.echo(verdict.model_dump_json(indent=2))
    else:
        _print(verdict, Console(soft_wrap=True, emoji=False))
    raise typer.Exit(EXIT_HEALTHY if verdict.healthy else EXIT_PROBLEM)


def _compile_fast_path(err: Console) -> None:
    """Compile the fast path here, on a tiny synthesized job, before the dumps are read: the
    first run after an install compiles for tens of seconds (each parsing process would
    otherwise compile it at once, in silence), and says so; later runs load it from numba's
    disk cache and print nothing."""
    from sentinel.flightrec import jit
    from sentinel.flightrec.analyze import warm_up

    if not jit.AVAILABLE:
        return
    with jit.announce_compiles(
        lambda: err.print("compiling the flight-recorder fast path, once, ~25 s...", end=""),
        lambda s: err.print(f" done in {s:.0f} s (kept in numba's cache for later runs)"),
    ):
        warm_up()


def _print(verdict: FrVerdict, out: Console) -> None:
    if verdict.healthy:
        out.print(
            f"[green]healthy[/green]: {verdict.ranks_analysed} ranks, "
            f"{verdict.entries_analysed} entries; " + "; ".join(verdict.evidence)
        )
        return
    where = f" in group {verdict.group} ({verdict.group_desc}) #{verdict.seq} {verdict.op}"
    out.print(f"[bold red]{verdict.kind.value}[/bold red]{where if verdict.group else ''}")
    out.print(f"culprit rank(s): {verdict.culprit_ranks}", highlight=False)
    for loc in verdict.culprit_locations:
        out.print(f"  rank {loc.rank}: host {loc.host} gpu {loc.gpu}", highlight=False)
    if verdict.victim_ranks:
        out.print(
            f"victim rank(s) (waited on the culprit): {verdict.victim_ranks}", highlight=False
        )
    for line in verdict.evidence:
        out.print(f"  - {line}", highlight=False, markup=False)
