"""``sentinel-agent epilog``: a Slurm job's end, reported from each of its hosts.

slurmd runs the Epilog when a job ends on the node, with SLURM_JOB_ID and the job script's
exit (SLURM_JOB_EXIT_CODE2 ``code:signal``; SLURM_JOB_EXIT_CODE the wait() status). The
report is a ``JobEnd`` observation spooled beside the agent's outbox, which the running agent
sends with everything else: the epilog returns at once, the service may be down, the report
is kept until sent. A failing Epilog drains the node in Slurm, so this never fails the job's
node for its own trouble: it says what went wrong on stderr (slurmd's log) and exits 0.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Final

from sentinel.wire import JobEnd
from sentinel_agent.config import OutboxConfig

_CODE2: Final = re.compile(r"^(\d{1,3}):(\d{1,3})$")


class NotAJob(ValueError):
    """The environment names no job (not run by slurmd as an Epilog)."""


def exit_of(environ: Mapping[str, str]) -> tuple[int | None, int | None]:
    """(exit code, signal) of the job script; (None, None) when Slurm did not say."""
    found = _CODE2.match(environ.get("SLURM_JOB_EXIT_CODE2", ""))
    if found:
        code, signal = int(found.group(1)), int(found.group(2))
        if code <= 255 and signal <= 255:
            return code, signal
    status = environ.get("SLURM_JOB_EXIT_CODE", "")
    if status.isdigit() and int(status) <= 0xFFFF:
        value = int(status)
        return (value >> 8) & 0xFF, value & 0x7F
    return None, None


def job_end(environ: Mapping[str, str], now: datetime) -> JobEnd:
    job_id = environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID")
    if not job_id:
        raise NotAJob("SLURM_JOB_ID is not set: run as slurm.conf's Epilog")
    code, signal = exit_of(environ)
    return JobEnd(id=uuid.uuid4(), observed_at=now, job_id=job_id, exit_code=code, signal=signal)


def outbox_path(section: Mapping[str, object]) -> Path:
    return OutboxConfig.model_validate(section).path
