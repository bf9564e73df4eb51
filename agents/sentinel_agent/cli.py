"""``sentinel-agent``: run the node agent."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import pydantic
import typer

from sentinel_agent import __version__
from sentinel_agent.agent import Agent, ConfigError
from sentinel_agent.config import AgentConfig, load_config

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Sentinel node agent: GPU health, logs, heartbeats -> the service.",
)

EXIT_BAD_CONFIG = 2


def _fail_config(lines: list[str]) -> typer.Exit:
    for line in lines:
        typer.echo(f"sentinel-agent: bad config: {line}", err=True)
    return typer.Exit(EXIT_BAD_CONFIG)


def _load(path: Path | None) -> AgentConfig:
    try:
        return load_config(path)
    except pydantic.ValidationError as exc:
        raise _fail_config(
            [
                f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
                for err in exc.errors()
            ]
        ) from exc
    except (OSError, ValueError) as exc:  # unreadable file or bad YAML
        raise _fail_config([str(exc)]) from exc


async def _serve(agent: Agent) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.run(stop)


@app.command()
def run(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="SENTINEL_AGENT_CONFIG",
            help="YAML config file; SENTINEL_AGENT_* variables override it.",
        ),
    ] = None,
) -> None:
    """Run the agent until SIGTERM or SIGINT."""
    cfg = _load(config)
    logging.basicConfig(
        level=cfg.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        agent = Agent(cfg)
    except ConfigError as exc:
        raise _fail_config([str(exc)]) from exc
    asyncio.run(_serve(agent))


@app.command()
def check_config(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", envvar="SENTINEL_AGENT_CONFIG")
    ] = None,
) -> None:
    """Validate the configuration and print it (token hidden); exit 2 if it is bad."""
    cfg = _load(config)
    typer.echo(cfg.model_dump_json(indent=2, exclude={"service": {"token"}}))


@app.command()
def version() -> None:
    """Print the agent version."""
    typer.echo(__version__)


def main() -> None:
    app()
