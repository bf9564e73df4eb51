"""The service's flight-recorder analysis runs in worker processes: while a job is being
analysed the leader's other loops go on, and the verdict it writes is the CLI's."""

from __future__ import annotations

import asyncio
import gzip
import os
from pathlib import Path

import httpx
from builders import batch
from conftest import auth
from fr_cli import cli_verdict
from sqlalchemy import select

from sentinel.clock import VirtualClock
from sentinel.db.engine import unit_of_work
from sentinel.db.models import Event, FlightRecorderUpload

FIXTURES = Path(__file__).parents[1] / "fixtures" / "flight-recorder"
# Two jobs with different dumps (uploads are content-addressed): "a" sorts, and is
# analysed, first; "b"'s rank 7 is a pipe the test holds, so its analysis waits on it.
JOBS = {"a-hang": FIXTURES / "hang" / "raw", "b-mismatch": FIXTURES / "mismatch" / "raw"}


def _rank(path: Path) -> int:
    return int(path.name.rsplit("_", 1)[1])


async def _committed_verdict(ctx: object, job: str) -> dict[str, object] | None:
    async with unit_of_work(ctx.sessions) as s:  # type: ignore[attr-defined]
        event = (
            await s.scalars(select(Event).where(Event.kind == "fr_verdict", Event.job_id == job))
        ).one_or_none()
    return None if event is None else event.payload["verdict"]


async def test_other_loops_tick_while_a_job_is_analysed_and_the_verdict_is_the_clis(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> None:
    ctx = app_client.app.state.ctx  # type: ignore[attr-defined]
    agent = auth(tokens["agent"])
    for job, folder in JOBS.items():
        for path in sorted(folder.iterdir()):
            r = await app_client.post(
                "/api/v1/flight-recorder/dumps",
                content=gzip.compress(path.read_bytes()),
                params={
                    "host_id": "fr-host",
                    "rank": _rank(path),
                    "job_id": job,
                    "file_name": path.name,
                },
                headers=agent | {"Content-Type": "application/gzip"},
            )
            assert r.status_code == 201, r.text
    async with unit_of_work(ctx.sessions) as s:
        [held] = (
            await s.scalars(
                select(FlightRecorderUpload).where(
                    FlightRecorderUpload.job_id == "b-mismatch", FlightRecorderUpload.rank == 7
                )
            )
        ).all()
    stored = Path(held.path)
    body = stored.read_bytes()
    stored.unlink()
    os.mkfifo(stored)
    clock.advance(11)

    async def flight_recorder_loop() -> list[object]:
        async with unit_of_work(ctx.sessions) as s:  # as the leader's scheduler runs it
            return list(await ctx.flight_recorder.run_once(s))

    analysis = asyncio.create_task(flight_recorder_loop())
    # Opening the pipe for writing returns once the analysis has opened it to read: job b
    # is being analysed now, and stays so until the test writes its dump.
    pipe = await asyncio.to_thread(open, stored, "wb")
    try:
        # Job a's verdict is committed (no transaction is held across b's analysis)...
        assert await _committed_verdict(ctx, "a-hang") is not None
        # ...and the leader's other loops each complete a round meanwhile.
        async with unit_of_work(ctx.sessions) as s:
            resolved = await ctx.watchdog.run_once(s)
        await ctx.stages.run(resolved)
        await ctx.triage_worker.run_once()
        assert (
            await app_client.post(
                "/api/v1/reports",
                json=batch("fr-host", 1, []),
                headers=agent,
            )
        ).status_code == 202
        assert not analysis.done()
        pipe.write(body)
    finally:
        pipe.close()
    verdicts = await analysis
    assert len(verdicts) == 2
    for job, folder in JOBS.items():
        assert await _committed_verdict(ctx, job) == cli_verdict(folder), job
