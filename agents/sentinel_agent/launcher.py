"""A reference launcher wrapper around torchrun: restart in place when Sentinel says so.
Standard library only (copy it next to the job script, like heartbeat.py).

    python -m sentinel_agent.launcher --service https://sentinel:8000 \\
        --token-file /etc/sentinel/viewer.token --job-id "$SLURM_JOB_ID" -- \\
        torchrun --nnodes ... train.py

It runs the command in its own process group and asks Sentinel for the job's advice
(``GET /api/v1/jobs/{job}/advice``) every ``--poll-s``. When the advice says
``restart_in_place`` for a decision it has not acted on yet (a transient fault, no host to
blame), it stops the command (SIGTERM to its group, SIGKILL after ``--grace-s``) and starts it
again on the same allocation (``SENTINEL_RESTART_COUNT`` tells the ranks which run this is):
no requeue, no wait in the queue. The command failing on its own waits up to ``--decide-s`` for
such a decision; without one, the wrapper exits with the command's status and the scheduler's
usual path (requeue) applies. The command succeeding ends the wrapper with 0. At most
``--max-restarts`` restarts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

Advice = Callable[[], dict[str, Any] | None]


def http_advice(service: str, token: str, job_id: str, timeout_s: float = 5.0) -> Advice:
    if urllib.parse.urlsplit(service).scheme not in ("http", "https"):
        raise ValueError(f"--service must be an http(s) URL, not {service!r}")
    url = f"{service.rstrip('/')}/api/v1/jobs/{urllib.parse.quote(job_id, safe='')}/advice"
    headers = {"Authorization": f"Bearer {token}"}

    def ask() -> dict[str, Any] | None:
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s), checked
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as r:  # noqa: S310
                body = json.loads(r.read())
        except (OSError, ValueError, urllib.error.URLError):
            return None  # Sentinel unreachable: the command runs on, as without it
        return body if isinstance(body, dict) else None

    return ask


class Launcher:
    def __init__(
        self,
        command: Sequence[str],
        advice: Advice,
        *,
        poll_s: float = 2.0,
        decide_s: float = 60.0,
        grace_s: float = 30.0,
        max_restarts: int = 3,
        log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    ) -> None:
        self._command = list(command)
        self._advice = advice
        self._poll_s = poll_s
        self._decide_s = decide_s
        self._grace_s = grace_s
        self._max_restarts = max_restarts
        self._log = log
        self._acted: set[str] = set()
        self.runs = 0

    def _in_place(self) -> str | None:
        """A restart-in-place decision not acted on yet, else None."""
        advice = self._advice()
        if not advice or not advice.get("restart_in_place"):
            return None
        decision = str(advice.get("restart_decision") or "")
        if decision in self._acted:
            return None
        self._log(f"sentinel-launcher: restart in place ({advice.get('restart_reason')})")
        return decision

    def _start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "SENTINEL_RESTART_COUNT": str(self.runs)}
        self.runs += 1
        return subprocess.Popen(self._command, env=env, start_new_session=True)

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(self._grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def run(self) -> int:
        proc = self._start()
        while True:
            code = self._watch(proc)
            if code == 0:
                return 0
            decision = self._in_place() if code is None else self._wait_for_decision()
            if decision is None:
                if code is None:
                    continue
                return code
            if self.runs > self._max_restarts:
                self._log(f"sentinel-launcher: {self._max_restarts} restarts done; giving up")
                if code is None:
                    self._stop(proc)
                return code if code is not None else 1
            self._acted.add(decision)
            if code is None:
                self._stop(proc)
            proc = self._start()

    def _watch(self, proc: subprocess.Popen[bytes]) -> int | None:
        """The command's exit status, or None when it is time to ask Sentinel again."""
        try:
            return proc.wait(self._poll_s)
        except subprocess.TimeoutExpired:
            return None

    def _wait_for_decision(self) -> str | None:
        deadline = time.monotonic() + self._decide_s
        while True:
            decision = self._in_place()
            if decision is not None or time.monotonic() >= deadline:
                return decision
            time.sleep(min(self._poll_s, max(deadline - time.monotonic(), 0)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sentinel-launcher", description=__doc__.split("\n")[0])
    parser.add_argument("--service", required=True, help="Sentinel's URL")
    parser.add_argument("--token-file", required=True, help="a file holding a reading token")
    parser.add_argument("--job-id", default=os.environ.get("SLURM_JOB_ID"))
    parser.add_argument("--poll-s", type=float, default=2.0)
    parser.add_argument("--decide-s", type=float, default=60.0)
    parser.add_argument("--grace-s", type=float, default=30.0)
    parser.add_argument("--max-restarts", type=int, default=3)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or not args.job_id:
        parser.error("give --job-id (or SLURM_JOB_ID) and the command after --")
    with open(args.token_file) as f:
        token = f.read().strip()
    try:
        advice = http_advice(args.service, token, args.job_id)
    except ValueError as exc:
        parser.error(str(exc))
    launcher = Launcher(
        command,
        advice,
        poll_s=args.poll_s,
        decide_s=args.decide_s,
        grace_s=args.grace_s,
        max_restarts=args.max_restarts,
    )
    return launcher.run()


if __name__ == "__main__":
    sys.exit(main())
