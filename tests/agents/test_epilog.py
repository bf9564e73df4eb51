"""``sentinel-agent epilog``: a job's end read from Slurm's Epilog environment, spooled beside
the outbox, sent by the running agent, and recorded on the job by the service."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from agent_helpers import agent_config, running, wait_for
from typer.testing import CliRunner

from sentinel.ingest.job_ends import EndState
from sentinel.wire import JobEnd
from sentinel_agent.agent import Agent
from sentinel_agent.cli import app
from sentinel_agent.collectors.spool import SpoolCollector, spool
from sentinel_agent.epilog import NotAJob, exit_of, job_end
from sentinel_agent.heartbeat import Heartbeat
from tests.harness.service import LiveService

NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SLURM_JOB_EXIT_CODE2": "3:0", "SLURM_JOB_EXIT_CODE": "768"}, (3, 0)),
        ({"SLURM_JOB_EXIT_CODE2": "0:9"}, (0, 9)),
        ({"SLURM_JOB_EXIT_CODE": "768"}, (3, 0)),  # the wait() status alone
        ({"SLURM_JOB_EXIT_CODE": "15"}, (0, 15)),
        ({"SLURM_JOB_EXIT_CODE2": "garbage", "SLURM_JOB_EXIT_CODE": "x"}, (None, None)),
        ({}, (None, None)),
    ],
)
def test_exit_code_and_signal_from_slurms_variables(
    env: dict[str, str], expected: tuple[int | None, int | None]
) -> None:
    assert exit_of(env) == expected


def test_a_job_end_needs_a_job_id() -> None:
    end = job_end({"SLURM_JOB_ID": "4242", "SLURM_JOB_EXIT_CODE2": "3:0"}, NOW)
    assert (end.job_id, end.exit_code, end.signal, end.observed_at) == ("4242", 3, 0, NOW)
    with pytest.raises(NotAJob):
        job_end({}, NOW)


def test_spooled_observations_are_handed_over_then_removed(tmp_path: Path) -> None:
    end = job_end({"SLURM_JOB_ID": "4242"}, NOW)
    path = spool(tmp_path / "spool", end)
    (tmp_path / "spool" / "junk.json").write_text('{"kind": "nonsense"}')
    collector = SpoolCollector(folder=tmp_path / "spool", interval_s=1)

    assert collector.poll() == [end]
    assert path.exists()  # kept until the next poll: the agent stores what poll returned first
    assert (tmp_path / "spool" / "junk.bad").exists()
    assert collector.poll() == []
    assert not path.exists()
    assert sorted(p.name for p in (tmp_path / "spool").iterdir()) == ["junk.bad"]


def test_cli_spools_and_never_fails_the_epilog(tmp_path: Path) -> None:
    env = {
        "SENTINEL_AGENT_OUTBOX__PATH": str(tmp_path / "outbox.db"),
        "SLURM_JOB_ID": "77",
        "SLURM_JOB_EXIT_CODE2": "0:0",
    }
    result = CliRunner().invoke(app, ["epilog"], env=env)
    assert result.exit_code == 0, result.output
    (spooled,) = (tmp_path / "spool").glob("job_end-*.json")
    assert json.loads(spooled.read_text())["job_id"] == "77"

    result = CliRunner().invoke(app, ["epilog"], env={**env, "SLURM_JOB_ID": ""})
    assert result.exit_code == 0
    assert "job end not reported: SLURM_JOB_ID is not set" in result.output


async def test_a_job_end_reaches_the_service_and_ends_the_job(
    live_service: LiveService, tmp_path: Path
) -> None:
    """Heartbeats make the job known and running; the epilog, run as slurmd runs it (a
    separate process, its environment), reports its end through the running agent; the
    service records it on the job and keeps the report as an event on the host."""
    (tmp_path / "kern.log").write_text("")
    config = agent_config(tmp_path, live_service.url, live_service.agent_token)
    db = live_service.data_dir / "sentinel.db"

    def job_state() -> str | None:
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT state FROM jobs WHERE id = '4242'").fetchone()
        return row[0] if row else None

    async with running(Agent(config)):
        hb = Heartbeat("4242", 0, 0, 8, address=f"unix://{tmp_path}/hb.sock")
        await wait_for(lambda: (tmp_path / "hb.sock").exists())
        hb.beat(1, step_time_s=0.1)
        await wait_for(lambda: job_state() == "running", 20)

        env = {
            "PATH": os.environ["PATH"],
            "SENTINEL_AGENT_OUTBOX__PATH": str(tmp_path / "outbox.db"),
            "SLURM_JOB_ID": "4242",
            "SLURM_JOB_EXIT_CODE2": "3:0",
            "SLURM_JOB_EXIT_CODE": "768",
            "SLURMD_NODENAME": "host-1",
        }
        epilog = subprocess.run(
            [sys.executable, "-m", "sentinel_agent", "epilog"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert epilog.returncode == 0, epilog.stderr
        await wait_for(lambda: job_state() == "failed", 20)
        # Once in the outbox, the spooled file goes (on the collector's next poll).
        await wait_for(lambda: not list((tmp_path / "spool").glob("*.json")), 20)
    with sqlite3.connect(db) as conn:
        (payload,) = conn.execute("SELECT payload FROM events WHERE kind = 'job_end'").fetchone()
    stored = JobEnd.model_validate_json(payload, strict=False)
    assert (stored.job_id, stored.exit_code, stored.signal) == ("4242", 3, 0)


@pytest.mark.parametrize(
    ("exit_code", "signal", "state"),
    [
        (0, 0, "completed"),
        (3, 0, "failed"),
        (0, 9, "killed"),
        (137, 9, "killed"),
        (None, None, "ended"),
    ],
)
def test_the_end_state_the_service_records(
    exit_code: int | None, signal: int | None, state: str
) -> None:
    end = JobEnd(id=uuid.uuid4(), observed_at=NOW, job_id="1", exit_code=exit_code, signal=signal)
    assert EndState.of(end).state == state
