"""The `sentinel` command: serve · migrate · token · demo (and the domain sub-commands)."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(
    name="sentinel",
    help="Failure triage and remediation for very large GPU training jobs.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)


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
) -> None:
    """Run the service (uvicorn, one process)."""
    import uvicorn
    from sqlalchemy.exc import OperationalError

    from sentinel.api.app import create_app
    from sentinel.db import migrate as m

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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        create_app(settings),
        host=host or settings.server.host,
        port=port if port is not None else settings.server.port,
        log_level="warning",
        access_log=False,
    )


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


def example_batch(host_id: str = "demo-host-001", seq: int = 1) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "version": 1,
        "host_id": host_id,
        "agent_id": f"{host_id}-agent",
        "seq": seq,
        "sent_at": now,
        "observations": [
            {
                "kind": "gpu_sample",
                "id": str(uuid.uuid4()),
                "observed_at": now,
                "gpu_index": 0,
                "pci_bus_id": "00000000:3B:00.0",
                "temperature_c": 61.0,
                "power_w": 512.5,
                "utilization_pct": 98.0,
                "ecc_volatile_uncorrected": 0,
            },
            {
                "kind": "xid",
                "id": str(uuid.uuid4()),
                "observed_at": now,
                "xid": 79,
                "gpu_index": 0,
                "pci_bus_id": "00000000:3B:00.0",
                "source": "kernel_log",
                "message": "NVRM: Xid (PCI:0000:3b:00): 79, pid=2711, name=python, "
                "GPU has fallen off the bus.",
            },
        ],
    }


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port for the demo service.")] = 8600,
    data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its SQLite file.")] = Path(
        "./data/demo"
    ),
) -> None:
    """Start the service on SQLite with fresh tokens and show how to post a report."""
    import uvicorn

    from sentinel.api.app import create_app
    from sentinel.auth import new_token
    from sentinel.db import migrate as m
    from sentinel.settings import TokenSpec

    data_dir.mkdir(parents=True, exist_ok=True)
    tokens = {role: new_token() for role in ("agent", "operator", "viewer")}
    settings = _settings(
        data_dir=data_dir,
        auth={"tokens": [TokenSpec(name=f"demo-{r}", role=r, token=t) for r, t in tokens.items()]},
    )
    m.upgrade(settings.database_url())
    batch_file = data_dir / "example-batch.json"
    batch_file.write_text(json.dumps(example_batch(), indent=2))
    url = f"http://127.0.0.1:{port}"
    console.rule("[bold]Sentinel demo")
    console.print(f"service:        [bold]{url}[/bold]   (API docs: {url}/docs)")
    console.print(f"database:       {settings.database_url()}")
    for role, secret in tokens.items():
        console.print(f"{role + ' token:':15} {secret}")
    console.print("\npost a report (202; run it twice and the second is a duplicate):")
    console.print(
        f"  curl -s -X POST {url}/api/v1/reports -H 'Authorization: Bearer {tokens['agent']}' "
        f"-H 'Content-Type: application/json' --data @{batch_file}",
        soft_wrap=True,
    )
    console.print("\nsee the host:")
    console.print(
        f"  curl -s {url}/api/v1/hosts -H 'Authorization: Bearer {tokens['viewer']}'",
        soft_wrap=True,
    )
    console.print("\nCtrl-C stops the service.")
    sys.stdout.flush()
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
