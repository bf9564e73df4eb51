"""A reference launcher wrapper around torchrun: restart in place when Sentinel says so.
Standard library only (copy it next to the job script, like heartbeat.py).

    sentinel-agent launch --config /etc/sentinel-agent/agent.yaml -- torchrun ... train.py
    python -m sentinel_agent.launcher --service https://sentinel:8000 \\
        --token-file /etc/sentinel/agent.token --job-id "$SLURM_JOB_ID" -- torchrun ...

It runs the command in its own process group and asks Sentinel for the job's advice
(``GET /api/v1/jobs/{job}/advice``) every ``--poll-s``. When the advice says
``restart_in_place`` for a decision it has not acted on yet (a transient fault, no host to
blame), it stops the command (SIGTERM to its group, SIGKILL after ``--grace-s``) and starts it
again on the same allocation (``SENTINEL_RESTART_COUNT`` tells the ranks which run this is,
``SENTINEL_LAUNCHED_AT`` when it started, for the heartbeat client's startup time):
no requeue, no wait in the queue. A rollback (a crash loop that came with a new code version)
is the same restart with ``SENTINEL_CODE_VERSION`` set to the version that last trained, for
this and every later run: the job script checks that version out, or picks that image. A data
skip (the same error at the same step again: a bad batch, a loss spike) is the same restart
with ``SENTINEL_SKIP_STEPS`` naming the steps whose batches the job's data loader skips
(``first-last``, inclusive, comma-separated once there are several), for this and every later
run (a restart from a checkpoint before them must not meet them again). It
then acknowledges the decision (``POST /api/v1/decisions/{id}/ack``, outcome done; with the
agent token of the host it runs on); a decision it cannot carry out (``--max-restarts``
reached) is acknowledged as failed, and Sentinel requeues the job instead. The command failing
on its own waits up to ``--decide-s`` for such a decision; without one, the wrapper exits with
the command's status and the scheduler's usual path (requeue) applies. The command succeeding
ends the wrapper with 0.

An exclusion carried out in the job (the job holds standby hosts in its allocation): the advice
names the excluded hosts and the standby taking their place. The launcher on an excluded host
(``--host``, the agent's host id) stops its command and waits, without restarting it (the host
is drained); the others restart it with ``SENTINEL_EXCLUDED_HOSTS`` and
``SENTINEL_STANDBY_HOST`` set, for the job script's rendezvous; a launcher started with
``--standby`` runs nothing until a decision names its host the standby, then starts the command
with the same variables. Every launcher that restarted acknowledges (the first one makes the
decision done).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from sentinel_agent.heartbeat import CODE_VERSION

Advice = Callable[[], dict[str, Any] | None]
# (decision id, "done" or "failed", detail): tells Sentinel what came of a restart in place.
Ack = Callable[[str, str, str], None]
# A host name as the scheduler adapters accept it (sentinel.schedulers.base.HOST_RE).
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _exclusion(advice: dict[str, Any]) -> tuple[list[str], str | None]:
    """An exclusion carried out in the job: the hosts excluded and the standby taking their
    place (none: a restart in place of the same hosts)."""
    standby = advice.get("restart_standby_host")
    if not isinstance(standby, str) or not _HOST.match(standby):
        return [], None
    hosts = advice.get("restart_exclude_hosts")
    return [h for h in hosts or [] if isinstance(h, str) and _HOST.match(h)], standby


def _skip_range(value: object) -> tuple[int, int] | None:
    """The advice's restart_skip_steps, [first, last], when it is one (it goes into the
    command's environment)."""
    if not isinstance(value, list) or len(value) != 2:
        return None
    first, last = value
    if not all(type(v) is int for v in (first, last)) or not 0 <= first <= last:
        return None
    return first, last


class Service:
    """Sentinel's API as the launcher uses it: the job's advice, and acknowledgments."""

    def __init__(self, service: str, token: str, job_id: str, timeout_s: float = 5.0) -> None:
        if urllib.parse.urlsplit(service).scheme not in ("http", "https"):
            raise ValueError(f"--service must be an http(s) URL, not {service!r}")
        self._base = service.rstrip("/")
        self._job = urllib.parse.quote(job_id, safe="")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout_s = timeout_s

    def advice(self) -> dict[str, Any] | None:
        url = f"{self._base}/api/v1/jobs/{self._job}/advice"
        request = urllib.request.Request(url, headers=self._headers)  # noqa: S310 - http(s)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as r:  # noqa: S310
                body = json.loads(r.read())
        except (OSError, ValueError, urllib.error.URLError):
            return None  # Sentinel unreachable: the command runs on, as without it
        return body if isinstance(body, dict) else None

    def ack(self, decision: str, outcome: str, detail: str) -> None:
        """Best effort: an acknowledgment that does not arrive lets the decision fall back
        to a requeue on the service (remediation.in_place_ack_s); a 409 says it already has."""
        url = f"{self._base}/api/v1/decisions/{urllib.parse.quote(decision, safe='')}/ack"
        body = json.dumps({"outcome": outcome, "detail": detail[:500]}).encode()
        request = urllib.request.Request(  # noqa: S310 - http(s), checked
            url,
            data=body,
            method="POST",
            headers={**self._headers, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s):  # noqa: S310
                pass
        except urllib.error.HTTPError as exc:
            print(
                f"sentinel-launcher: acknowledging {decision}: HTTP {exc.code} "
                f"{exc.read()[:300].decode(errors='replace')}",
                file=sys.stderr,
                flush=True,
            )
        except OSError as exc:
            print(f"sentinel-launcher: acknowledging {decision}: {exc}", file=sys.stderr)


def http_advice(service: str, token: str, job_id: str, timeout_s: float = 5.0) -> Advice:
    return Service(service, token, job_id, timeout_s).advice


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
        ack: Ack | None = None,
        log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
        host: str | None = None,
        standby: bool = False,
    ) -> None:
        self._command = list(command)
        self._advice = advice
        self._ack = ack or (lambda _decision, _outcome, _detail: None)
        self._poll_s = poll_s
        self._decide_s = decide_s
        self._grace_s = grace_s
        self._max_restarts = max_restarts
        self._log = log
        self._acted: set[str] = set()
        self.runs = 0
        # Set by a rollback: the code version every later run is started on.
        self.code_version: str | None = None
        # This launcher's host, and whether it waits as a standby until a decision names it.
        self.host = host or socket.gethostname().split(".")[0]
        self.standby = standby
        # Set by exclusions carried out in the job: every host excluded so far and the latest
        # standby that took an excluded host's place (the runs' environment); whether this
        # host is excluded (its command stopped for good).
        self.excluded_hosts: list[str] = []
        self.standby_host: str | None = None
        self.excluded = False
        self.stop_waiting = threading.Event()  # ends an excluded host's wait (tests)
        self.proc: subprocess.Popen[bytes] | None = None  # the command's current run
        # Added by each data skip: the steps whose batches every later run skips.
        self.skip_steps: list[tuple[int, int]] = []

    def _in_place(self) -> str | None:
        """A restart-in-place decision not acted on yet, else None."""
        advice = self._advice()
        # A restart stays published once a launcher acknowledged it (restart_in_place false,
        # restart_decision still naming it) for the other hosts' launchers that have not acted
        # on it yet: each acts once per decision.
        if not advice or not (advice.get("restart_in_place") or advice.get("restart_decision")):
            return None
        decision = str(advice.get("restart_decision") or "")
        if decision in self._acted:
            return None
        excluded, standby = _exclusion(advice)
        if self.host in excluded:
            self._log(f"sentinel-launcher: {self.host} excluded ({advice.get('restart_reason')})")
            self.excluded = True
            return decision
        if self.standby and self.runs == 0 and standby != self.host:
            return None  # a standby not named keeps waiting
        if standby is not None:
            self.excluded_hosts += [h for h in excluded if h not in self.excluded_hosts]
            self.standby_host = standby
        version = advice.get("restart_code_version")
        if isinstance(version, str) and CODE_VERSION.match(version):
            self.code_version = version
        skip = _skip_range(advice.get("restart_skip_steps"))
        if skip is not None and skip not in self.skip_steps:
            self.skip_steps.append(skip)
        self._log(f"sentinel-launcher: restart in place ({advice.get('restart_reason')})")
        return decision

    def _start(self) -> subprocess.Popen[bytes]:
        # SENTINEL_LAUNCHED_AT: the heartbeat client measures the run's startup from it (the
        # cadence advice's restart time), torchrun's rendezvous and imports included. repr, not
        # a rounded format: rounded up it could read as later than the command's own clock.
        env = {
            **os.environ,
            "SENTINEL_RESTART_COUNT": str(self.runs),
            "SENTINEL_LAUNCHED_AT": repr(time.time()),
        }
        if self.code_version is not None:
            env["SENTINEL_CODE_VERSION"] = self.code_version
        if self.standby_host is not None:
            # The job script's rendezvous forms the world without these, with the standby.
            env["SENTINEL_EXCLUDED_HOSTS"] = ",".join(self.excluded_hosts)
            env["SENTINEL_STANDBY_HOST"] = self.standby_host
        if self.skip_steps:
            env["SENTINEL_SKIP_STEPS"] = self._skips()
        self.runs += 1
        self.proc = subprocess.Popen(self._command, env=env, start_new_session=True)
        return self.proc

    def _skips(self) -> str:
        return ",".join(f"{first}-{last}" for first, last in self.skip_steps)

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(self._grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def forward_stop(self) -> None:
        """The scheduler ends the job (scancel, the time limit: SIGTERM to the launcher). The
        command runs in its own session, which the scheduler's signal to the launcher's process
        group does not reach: it is told here, and given grace_s before SIGKILL."""
        if self.proc is not None and self.proc.poll() is None:
            self._log(f"sentinel-launcher: stopping the command (pid {self.proc.pid})")
            self._stop(self.proc)
        self.stop_waiting.set()

    def run(self) -> int:
        if self.standby:
            self._log(f"sentinel-launcher: {self.host} waits as a standby")
            joined = self._wait_to_join()
            self._acted.add(joined)
            proc = self._start()
            self._ack(
                joined,
                "done",
                f"standby {self.host} joined the job in its allocation without "
                f"{', '.join(self.excluded_hosts)}: run {self.runs} of the command "
                f"(pid {proc.pid})",
            )
        else:
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
            self._acted.add(decision)
            if self.excluded:
                if code is None:
                    self._stop(proc)
                return self._wait_drained()
            if self.runs > self._max_restarts:
                why = f"{self._max_restarts} restarts done"
                self._log(f"sentinel-launcher: {why}; giving up")
                self._ack(decision, "failed", why)  # Sentinel requeues the job instead
                if code is None:
                    self._stop(proc)
                return code if code is not None else 1
            if code is None:
                self._stop(proc)
            proc = self._start()
            on = f" on code version {self.code_version}" if self.code_version else ""
            if self.standby_host is not None:
                on += f" without {', '.join(self.excluded_hosts)}, with {self.standby_host}"
            on += f", skipping the batches of steps {self._skips()}" if self.skip_steps else ""
            self._ack(
                decision,
                "done",
                f"restarted in place on the same allocation{on}: run {self.runs} of the "
                f"command (pid {proc.pid})",
            )

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

    def _wait_to_join(self) -> str:
        """A standby: the decision that names this host the standby (it waits for one)."""
        while True:
            decision = self._in_place()
            if decision is not None and not self.excluded:
                return decision
            time.sleep(self._poll_s)

    def _wait_drained(self) -> int:
        """This host was excluded and drained: the job goes on without it. Its command is not
        started again; the launcher waits for the job's end (the scheduler's SIGTERM)."""
        self._log(f"sentinel-launcher: {self.host} is drained; waiting for the job's end")
        while not self.stop_waiting.wait(max(self._poll_s, 1.0)):
            pass
        return 0


def main(
    argv: Sequence[str] | None = None,
    *,
    service: str | None = None,
    token: str | None = None,
    host: str | None = None,
) -> int:
    """The command line; ``sentinel-agent launch`` passes the service, token and host id from
    the agent's config, which --service, --token-file and --host override."""
    parser = argparse.ArgumentParser(prog="sentinel-launcher", description=__doc__.split("\n")[0])
    parser.add_argument("--service", default=service, help="Sentinel's URL")
    parser.add_argument(
        "--token-file", help="a file holding the host's agent token (or an operator's)"
    )
    parser.add_argument("--job-id", default=os.environ.get("SLURM_JOB_ID"))
    parser.add_argument("--poll-s", type=float, default=2.0)
    parser.add_argument("--decide-s", type=float, default=60.0)
    parser.add_argument("--grace-s", type=float, default=30.0)
    parser.add_argument("--max-restarts", type=int, default=3)
    parser.add_argument(
        "--host", default=host, help="this host's name as Sentinel knows it (the agent's host id)"
    )
    parser.add_argument(
        "--standby",
        action="store_true",
        help="a standby host of the allocation: run the command only once a decision names "
        "this host the standby of an excluded one",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or not args.job_id:
        parser.error("give --job-id (or SLURM_JOB_ID) and the command after --")
    if args.token_file:
        try:
            with open(args.token_file) as f:
                token = f.read().strip()
        except OSError as exc:
            parser.error(f"--token-file: {exc}")
    if not args.service or not token:
        parser.error("give --service and --token-file (or run it as sentinel-agent launch)")
    try:
        sentinel = Service(args.service, token, args.job_id)
    except ValueError as exc:
        parser.error(str(exc))
    launcher = Launcher(
        command,
        sentinel.advice,
        poll_s=args.poll_s,
        decide_s=args.decide_s,
        grace_s=args.grace_s,
        max_restarts=args.max_restarts,
        ack=sentinel.ack,
        host=args.host,
        standby=args.standby,
    )

    def stop(signum: int, _frame: object) -> None:
        launcher.forward_stop()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return launcher.run()


if __name__ == "__main__":
    sys.exit(main())
