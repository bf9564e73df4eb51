"""The `sentinel` command: serve · migrate · token · demo (and the domain sub-commands)."""

from __future__ import annotations

import contextlib
import json
import logging
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:  # the server's settings need pydantic-settings: not on an agent-only host
    from sentinel.settings import Settings

app = typer.Typer(
    name="sentinel",
    help="Failure triage and remediation for very large GPU training jobs.",
    no_args_is_help=True,
    add_completion=False,
)
# No emoji codes: PCI addresses such as 0000:ab:00.0 would turn into pictures.
console = Console(emoji=False)


def _mount_subcommands() -> None:
    # Imported lazily inside the sub-apps' commands; mounting costs only the typer objects.
    from sentinel.flightrec.cli import app as fr_app
    from sentinel.reports.cli import report, simulate
    from sentinel.triage.cli import classify

    app.add_typer(fr_app, name="fr", help="Flight-recorder dumps: analyse a job's hang.")
    app.command("classify")(classify)
    app.command("report")(report)
    app.command("simulate")(simulate)


_mount_subcommands()
err = Console(stderr=True, emoji=False)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            console.print(f"sentinel {version('sentinel-gpu')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            console.print("sentinel (not installed: version unknown)")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Failure triage and remediation for very large GPU training jobs."""


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As uvicorn binds: connections of a previous run in TIME_WAIT do not make the port
        # taken (they did, for a minute after a demo stopped); a listener still does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


def _settings(**overrides: Any) -> Any:
    from pydantic import ValidationError

    from sentinel.settings import load_settings

    try:
        return load_settings(**overrides)
    except (ValidationError, ValueError) as exc:
        err.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def migrate(
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="Overrides SENTINEL_DATABASE__URL.")
    ] = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Upgrade the database schema (creates a SQLite file when needed)."""
    from sentinel.db import migrate as m

    settings = _settings()
    url = database_url or settings.database_url()
    m.upgrade(url, revision)
    status = m.schema_status_sync(url)
    console.print(f"schema at [bold]{status.current}[/bold] (head {status.head})")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[
        int, typer.Option(help="Worker processes; the loops run in the elected leader only.")
    ] = 1,
    log_level: Annotated[
        LogLevel | None, typer.Option(help="Overrides SENTINEL_LOG__LEVEL (default INFO).")
    ] = None,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(help="text, or json: one object per line. Overrides SENTINEL_LOG__FORMAT."),
    ] = None,
) -> None:
    """Run the service (uvicorn). Ctrl-C or SIGTERM stops it within seconds."""
    from sqlalchemy.exc import OperationalError

    from sentinel.db import migrate as m
    from sentinel.logs import configure_logging
    from sentinel.runtime.app import create_app
    from sentinel.serving import serve as run_server

    settings = _settings()
    if not settings.auto_migrate:
        try:
            status = m.schema_status_sync(settings.database_url())
        except OperationalError as exc:
            err.print(f"[red]cannot reach the database:[/red] {exc.orig}")
            raise typer.Exit(2) from None
        if not status.up_to_date:
            err.print(f"[red]refusing to start:[/red] {status.advice()}")
            raise typer.Exit(2)
    _bootstrap_operator(settings)
    # Here and, through uvicorn, in every worker process: no secret in any line.
    log_config = configure_logging(
        settings,
        level=log_level.value if log_level else None,
        fmt=log_format.value if log_format else None,
    )
    bind = {
        "host": host or settings.server.host,
        "port": port if port is not None else settings.server.port,
        "log_level": "warning",
        "access_log": False,
        "log_config": log_config,
        "timeout_graceful_shutdown": settings.server.shutdown_timeout_s,
    }
    if workers > 1:
        # Each worker builds its app from the same environment; the database elects one of
        # them to run the loop services, so nothing runs twice.
        run_server("sentinel.runtime.app:app_from_environment", workers=workers, **bind)
    else:
        run_server(create_app(settings), **bind)


@app.command()
def token(
    role: Annotated[str, typer.Argument(help="agent, operator or viewer")],
    name: Annotated[str, typer.Option(help="A name for the token's holder.")] = "unnamed",
) -> None:
    """Make a new token: prints the secret once and the line for the tokens file."""
    from sentinel.auth import digest, new_token

    if role not in ("agent", "operator", "viewer"):
        err.print(f"[red]unknown role {role!r}[/red]: use agent, operator or viewer")
        raise typer.Exit(2)
    secret = new_token()
    console.print(f"token (shown once): [bold]{secret}[/bold]")
    console.print("tokens file entry:")
    console.print(f"- {{name: {name}, role: {role}, sha256: {digest(secret)}}}", soft_wrap=True)


def _bootstrap_operator(settings: Settings) -> None:
    """A first start with no operator token: make one and show it, here and only here."""
    from sentinel.auth import bootstrap_operator

    try:
        secret = bootstrap_operator(settings.auth)
    except (OSError, ValueError) as exc:
        err.print(f"[red]cannot read or write the tokens:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    if secret is not None:
        err.print(
            "no operator token was configured, so one was made; it is shown only now:\n"
            f"  operator token: [bold]{secret}[/bold]\n"
            f"Its digest is kept in {settings.auth.bootstrap_file}. Make your own with "
            "`sentinel token operator --name NAME` (and viewer tokens alike), then delete "
            "that file.",
            soft_wrap=True,
            highlight=False,
        )


@app.command()
def demo(
    hosts: Annotated[
        int, typer.Option(help="Simulated GPU hosts (2048: the Llama 3 fleet).")
    ] = 256,
    port: Annotated[int, typer.Option(help="Port for the demo service.")] = 8600,
    data_dir: Annotated[Path, typer.Option(help="Scratch folder (wiped at start).")] = Path(
        "./data/demo"
    ),
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: Ctrl-C).")
    ] = None,
    fault_every: Annotated[
        float,
        typer.Option(
            help="Seconds between injected failures (each into a job that is training, not one "
            "hit in the last 4 of these)."
        ),
    ] = 15.0,
    seed: Annotated[int, typer.Option(help="Seed of the failure draw.")] = 405,
    jobs: Annotated[
        int, typer.Option(help="Training jobs on disjoint hosts (1: one job on every host).")
    ] = 1,
) -> None:
    """The service on SQLite, a simulated fleet of real agents, failures from Llama 3's mix."""
    import asyncio

    from sentinel.demo.run import Demo

    if not _port_free("127.0.0.1", port):
        err.print(
            f"[red]port {port} is taken[/red] (another demo or service?): choose another with "
            f"--port N, or `make demo PORT=N`"
        )
        raise typer.Exit(2)
    logging.basicConfig(level=logging.WARNING)
    try:
        runner = Demo(
            hosts=hosts,
            port=port,
            data_dir=data_dir,
            duration_s=duration,
            fault_every_s=fault_every,
            seed=seed,
            console=console,
            jobs=jobs,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--jobs") from e
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runner.run())


@app.command()
def replay(
    paths: Annotated[list[Path], typer.Argument(help="Case folders (or folders of them).")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the outcomes as JSON.")] = False,
) -> None:
    """Replay recorded failures through ingest and triage on a virtual clock; check verdicts."""
    import asyncio

    from sentinel.replay.recording import RecordingError
    from sentinel.replay.runner import case_dirs
    from sentinel.replay.runner import replay as run_case

    logging.basicConfig(level=logging.WARNING)
    cases = case_dirs(paths)
    if not cases:
        err.print("[red]no replay cases found[/red] (a case is a folder with expect.yaml)")
        raise typer.Exit(2)
    failed = 0
    results = []
    for case in cases:
        try:
            outcome = asyncio.run(run_case(case))
        except (RecordingError, RuntimeError) as exc:
            failed += 1
            err.print(f"[red]ERROR[/red] {case}: {exc}")
            continue
        failed += not outcome.ok
        results.append(outcome)
        if json_out:
            continue
        mark = "[green]PASS[/green]" if outcome.ok else "[red]FAIL[/red]"
        seen = (
            "; ".join(
                f"{o.category}@{o.culprit_host or '-'} at {o.detected_s:.0f}s"
                for o in outcome.observed
            )
            or "no incident"
        )
        console.print(f"{mark} {outcome.name}: {seen}")
        for problem in outcome.problems:
            console.print(f"      {problem}")
    if json_out:
        console.print_json(
            json.dumps(
                [
                    {
                        "name": o.name,
                        "ok": o.ok,
                        "problems": o.problems,
                        "observed": [vars(x) for x in o.observed],
                    }
                    for o in results
                ]
            )
        )
    console.print(f"{len(cases) - failed} passed, {failed} failed")
    raise typer.Exit(1 if failed else 0)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
