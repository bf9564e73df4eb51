"""``sentinel-agent``: run the node agent."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pydantic
import typer

from sentinel_agent import __version__
from sentinel_agent.config import AgentConfig, load_config

if TYPE_CHECKING:
    from sentinel_agent.agent import Agent

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Sentinel node agent: GPU health, logs, heartbeats -> the service.",
)

EXIT_BAD_CONFIG = 2

# The configuration file, as the commands other than `run` take it.
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", envvar="SENTINEL_AGENT_CONFIG")
]


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
    # Imported here: the one-shot commands slurmd runs (check, epilog) start without it.
    from sentinel_agent.agent import Agent, ConfigError

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
    config: ConfigOption = None,
) -> None:
    """Validate the configuration and print it (token hidden); exit 2 if it is bad."""
    cfg = _load(config)
    typer.echo(cfg.model_dump_json(indent=2, exclude={"service": {"token"}}))


EXIT_UNHEALTHY = 1


@app.command()
def check(
    config: ConfigOption = None,
    drain: Annotated[
        bool,
        typer.Option(
            "--drain",
            help="HealthCheckProgram mode: on failure, drain this node with scontrol "
            "(reason 'sentinel: ...'); the node is SLURMD_NODENAME or the host name.",
        ),
    ] = False,
    node: Annotated[
        str | None, typer.Option(help="The Slurm node to drain (default: SLURMD_NODENAME).")
    ] = None,
    gpus: Annotated[
        int | None, typer.Option(min=0, help="GPUs the node should have; fewer is a failure.")
    ] = None,
    xid_window_s: Annotated[
        float,
        typer.Option(min=0, help="How far back the kernel log is read for a fatal XID."),
    ] = 3600.0,
) -> None:
    """Check this node's GPUs and kernel log now, offline; exit 1 when unhealthy.

    For Slurm's Prolog (a failure drains the node and requeues the job) and, with --drain,
    its HealthCheckProgram."""
    from datetime import timedelta

    from sentinel_agent.check import (
        build_check,
        load_collectors,
        node_name,
        run_command,
    )
    from sentinel_agent.check import drain as drain_node

    try:
        collectors = load_collectors(config)
        health = build_check(
            collectors, expected_gpus=gpus, xid_window=timedelta(seconds=xid_window_s)
        )
    except pydantic.ValidationError as exc:
        raise _fail_config(
            [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        ) from exc
    except (OSError, ValueError) as exc:
        raise _fail_config([str(exc)]) from exc
    result = health.run()
    for skipped in result.skipped:
        typer.echo(f"sentinel-agent check: not checked: {skipped}", err=True)
    if result.healthy:
        typer.echo(f"healthy ({', '.join(result.ran)})")
        return
    for failure in result.failures:
        typer.echo(f"FAIL {failure.rule}: {failure.what}")
    if drain:
        outcome = drain_node(node or node_name(), result.reason, run=run_command)
        typer.echo(outcome.detail, err=not outcome.drained)
    raise typer.Exit(EXIT_UNHEALTHY)


@app.command()
def epilog(
    config: ConfigOption = None,
) -> None:
    """Slurm Epilog: report the job's end (SLURM_JOB_ID, its exit) to the service through
    the agent's spool; returns at once and exits 0 even when it cannot (a failing Epilog
    drains the node)."""
    import os

    from sentinel_agent.clock import SystemClock
    from sentinel_agent.collectors.spool import spool, spool_dir
    from sentinel_agent.epilog import job_end, outbox_path
    from sentinel_agent.oneshot import load_section

    try:
        end = job_end(os.environ, SystemClock().now())
        path = spool(spool_dir(outbox_path(load_section(config, "outbox"))), end)
    except (OSError, ValueError) as exc:  # pydantic's errors are ValueErrors
        typer.echo(f"sentinel-agent epilog: job end not reported: {exc}", err=True)
        return
    typer.echo(f"job {end.job_id} end spooled: {path}")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def launch(
    ctx: typer.Context,
    config: ConfigOption = None,
) -> None:
    """Run the job's command (``launch [--job-id J] [--poll-s S] ... -- torchrun ...``) and
    restart it in place on the same allocation when Sentinel decides so, acknowledging each
    restart; exits with the command's status. Sentinel's URL and the agent token come from the
    agent's config unless --service and --token-file are given; --help lists the options
    (sentinel_agent.launcher, the reference launcher)."""
    from sentinel_agent.launcher import main as launcher_main

    args = list(ctx.args)
    service = token = host = None
    if "--help" not in args and "-h" not in args and "--service" not in args:
        cfg = _load(config)
        service, host = cfg.service.base_url, cfg.host_id
        try:
            token = cfg.service.read_token()
        except OSError as exc:
            raise _fail_config([f"service.token_file: {exc}"]) from exc
    raise typer.Exit(launcher_main(args, service=service, token=token, host=host))


@app.command()
def version() -> None:
    """Print the agent version."""
    typer.echo(__version__)


def main() -> None:
    app()
