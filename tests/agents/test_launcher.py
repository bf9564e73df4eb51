"""The reference launcher around torchrun (a fake one here): restart in place when Sentinel's
advice says so, once per decision; otherwise the command's own exit stands."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sentinel_agent.launcher import Launcher, Service

# What the fake torchrun does on each run, read from plan.json: "fail", "hang" or "ok"; it
# logs the run and the SENTINEL_RESTART_COUNT it was given (and SENTINEL_CODE_VERSION,
# SENTINEL_SKIP_STEPS).
FAKE_TORCHRUN = """
import json, os, sys, time
here = os.path.dirname(os.path.abspath(__file__))
plan = json.load(open(os.path.join(here, "plan.json")))
runs = os.path.join(here, "runs.log")
n = sum(1 for _ in open(runs)) if os.path.exists(runs) else 0
with open(runs, "a") as f:
    f.write(os.environ.get("SENTINEL_RESTART_COUNT", "?") + "\\n")
with open(os.path.join(here, "versions.log"), "a") as f:
    f.write(os.environ.get("SENTINEL_CODE_VERSION", "-") + "\\n")
with open(os.path.join(here, "skips.log"), "a") as f:
    f.write(os.environ.get("SENTINEL_SKIP_STEPS", "-") + "\\n")
with open(os.path.join(here, "launched.log"), "a") as f:
    f.write(os.environ.get("SENTINEL_LAUNCHED_AT", "-") + " " + str(time.time()) + "\\n")
what = plan[min(n, len(plan) - 1)]
if what == "hang":
    time.sleep(600)
sys.exit(0 if what == "ok" else 3)
"""


class Advice:
    """Stands in for GET /api/v1/jobs/{job}/advice."""

    def __init__(self) -> None:
        self.body: dict[str, Any] = {"checkpoint_now": False, "restart_in_place": False}
        self.asked = 0
        self.acks: list[tuple[str, dict[str, Any]]] = []
        advice = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                advice.asked += 1
                ok = self.headers.get("Authorization") == "Bearer t0ken"
                body = json.dumps(advice.body).encode()
                self.send_response(200 if ok and self.path == "/api/v1/jobs/77/advice" else 403)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # POST /api/v1/decisions/{id}/ack
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ok = self.headers.get("Authorization") == "Bearer t0ken"
                if ok:
                    advice.acks.append((self.path, body))
                self.send_response(200 if ok else 403)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def in_place(self, decision: str) -> None:
        self.body = {
            "checkpoint_now": False,
            "restart_in_place": True,
            "restart_decision": decision,
            "restart_reason": "nccl_watchdog_timeout, no host to blame",
        }


@pytest.fixture
def advice() -> Iterator[Advice]:
    a = Advice()
    yield a
    a.server.shutdown()
    a.server.server_close()


def fake(tmp_path: Path, plan: list[str]) -> list[str]:
    (tmp_path / "torchrun.py").write_text(FAKE_TORCHRUN)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    return [sys.executable, str(tmp_path / "torchrun.py")]


def runs(tmp_path: Path) -> list[str]:
    return (tmp_path / "runs.log").read_text().split()


def launcher(command: list[str], advice: Advice, **kw: Any) -> Launcher:
    settings: dict[str, Any] = {"poll_s": 0.1, "decide_s": 5.0, "grace_s": 2.0, **kw}
    service = Service(advice.url, "t0ken", "77")
    return Launcher(command, service.advice, ack=service.ack, log=lambda _: None, **settings)


def test_a_failed_run_restarts_in_place_when_sentinel_decides_so(
    tmp_path: Path, advice: Advice
) -> None:
    advice.in_place("d-1")
    assert launcher(fake(tmp_path, ["fail", "ok"]), advice).run() == 0
    assert runs(tmp_path) == ["0", "1"]
    # The restart is acknowledged once, for its decision.
    [(path, body)] = advice.acks
    assert path == "/api/v1/decisions/d-1/ack" and body["outcome"] == "done"
    assert "run 2" in body["detail"]


def test_an_acknowledged_restart_still_reaches_a_launcher_that_has_not_acted(
    tmp_path: Path, advice: Advice
) -> None:
    """Another host's launcher acknowledged it first: the advice says restart_in_place false
    but still names the decision; this host's launcher restarts its command once."""
    advice.in_place("d-3")
    advice.body["restart_in_place"] = False
    assert launcher(fake(tmp_path, ["fail", "ok"]), advice).run() == 0
    assert runs(tmp_path) == ["0", "1"]


def test_each_run_is_told_when_it_was_launched(tmp_path: Path, advice: Advice) -> None:
    """The heartbeat client measures the run's startup from SENTINEL_LAUNCHED_AT."""
    advice.in_place("d-2")
    before = time.time()
    assert launcher(fake(tmp_path, ["fail", "ok"]), advice).run() == 0
    lines = [line.split() for line in (tmp_path / "launched.log").read_text().splitlines()]
    launched = [float(at) for at, _ in lines]
    assert len(launched) == 2 and before <= launched[0] < launched[1]
    assert all(float(at) <= float(ran) for at, ran in lines)  # set before the command runs


def test_a_rollback_restarts_every_later_run_on_the_version_that_trained(
    tmp_path: Path, advice: Advice
) -> None:
    advice.in_place("d-6")
    advice.body["restart_code_version"] = "3f2a9c1"
    command = fake(tmp_path, ["fail", "fail", "ok"])
    launched = launcher(command, advice, decide_s=2.0)
    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(launched.run()))
    t.start()
    for _ in range(200):  # the rollback's run started: the next decision is a plain restart
        if len(advice.acks) == 1:
            break
        threading.Event().wait(0.05)
    advice.in_place("d-7")
    t.join(timeout=30)
    assert done == [0] and runs(tmp_path) == ["0", "1", "2"]
    assert (tmp_path / "versions.log").read_text().split() == ["-", "3f2a9c1", "3f2a9c1"]
    assert "on code version 3f2a9c1" in advice.acks[0][1]["detail"]


def test_a_version_outside_the_wires_alphabet_is_not_put_in_the_environment(
    tmp_path: Path, advice: Advice
) -> None:
    advice.in_place("d-8")
    advice.body["restart_code_version"] = "v1; reboot"
    assert launcher(fake(tmp_path, ["fail", "ok"]), advice).run() == 0
    assert (tmp_path / "versions.log").read_text().split() == ["-", "-"]


def test_a_data_skip_is_passed_to_every_later_run(tmp_path: Path, advice: Advice) -> None:
    """Each skip_data decision adds its steps; every run after it is told all of them."""
    advice.in_place("d-11")
    advice.body["restart_skip_steps"] = [101, 350]
    launched = launcher(fake(tmp_path, ["fail", "fail", "ok"]), advice, decide_s=2.0)
    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(launched.run()))
    t.start()
    for _ in range(200):  # the skip's run started: the next decision skips further on
        if len(advice.acks) == 1:
            break
        threading.Event().wait(0.05)
    advice.in_place("d-12")
    advice.body["restart_skip_steps"] = [900, 1100]
    t.join(timeout=30)
    assert done == [0] and runs(tmp_path) == ["0", "1", "2"]
    skips = (tmp_path / "skips.log").read_text().split()
    assert skips == ["-", "101-350", "101-350,900-1100"]
    assert "skipping the batches of steps 101-350" in advice.acks[0][1]["detail"]


@pytest.mark.parametrize("bad", [[350, 101], [-1, 5], ["1", "2"], [1.0, 2], [True, 3], [1]])
def test_a_skip_that_is_not_a_range_of_steps_is_not_put_in_the_environment(
    tmp_path: Path, advice: Advice, bad: list[object]
) -> None:
    advice.in_place("d-13")
    advice.body["restart_skip_steps"] = bad
    assert launcher(fake(tmp_path, ["fail", "ok"]), advice).run() == 0
    assert (tmp_path / "skips.log").read_text().split() == ["-", "-"]


def test_without_a_decision_the_commands_status_stands(tmp_path: Path, advice: Advice) -> None:
    assert launcher(fake(tmp_path, ["fail", "ok"]), advice, decide_s=0.5).run() == 3
    assert runs(tmp_path) == ["0"] and advice.asked >= 1


def test_a_hung_run_is_stopped_and_restarted(tmp_path: Path, advice: Advice) -> None:
    command = fake(tmp_path, ["hang", "ok"])
    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(launcher(command, advice).run()))
    t.start()
    # The hang goes on until Sentinel decides (the watchdog saw it, triage named no host).
    for _ in range(100):
        if (tmp_path / "runs.log").exists():
            break
        threading.Event().wait(0.05)
    advice.in_place("d-2")
    t.join(timeout=30)
    assert done == [0] and runs(tmp_path) == ["0", "1"]


def test_one_restart_per_decision(tmp_path: Path, advice: Advice) -> None:
    advice.in_place("d-3")
    code = launcher(fake(tmp_path, ["fail", "fail", "ok"]), advice, decide_s=0.5).run()
    assert code == 3 and runs(tmp_path) == ["0", "1"]  # the same decision is not acted twice


def test_the_cli_needs_a_job_and_a_command(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sentinel_agent.launcher",
            "--service",
            "http://127.0.0.1:9",
            "--token-file",
            str(token),
            "--job-id",
            "77",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "command after --" in proc.stderr


def test_a_restart_past_the_limit_is_acknowledged_as_failed(tmp_path: Path, advice: Advice) -> None:
    advice.in_place("d-4")
    assert launcher(fake(tmp_path, ["fail", "ok"]), advice, max_restarts=0).run() == 3
    assert runs(tmp_path) == ["0"]
    assert advice.acks == [
        ("/api/v1/decisions/d-4/ack", {"outcome": "failed", "detail": "0 restarts done"})
    ]


def test_sentinel_agent_launch_takes_the_service_and_token_from_the_agent_config(
    tmp_path: Path, advice: Advice
) -> None:
    advice.in_place("d-5")
    config = tmp_path / "agent.yaml"
    config.write_text(f"host_id: h1\nservice: {{url: '{advice.url}', token: t0ken}}\n")
    command = fake(tmp_path, ["fail", "ok"])
    launch = [sys.executable, "-m", "sentinel_agent", "launch", "--config", str(config)]
    options = ["--job-id", "77", "--poll-s", "0.1", "--decide-s", "5"]
    proc = subprocess.run(
        [*launch, *options, "--", *command],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert runs(tmp_path) == ["0", "1"] and advice.acks[0][0] == "/api/v1/decisions/d-5/ack"


def test_the_schedulers_sigterm_reaches_the_command_in_its_own_session(
    tmp_path: Path, advice: Advice
) -> None:
    """scancel (or the time limit) sends SIGTERM to the launcher; the command, started in a
    session of its own, would not hear it: the launcher passes it on and exits 128 + 15."""
    import os
    import signal

    (tmp_path / "token").write_text("t0ken")
    sleeper = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (open('stopped', 'w').close(), sys.exit(0)))\n"
        "open('pid', 'w').write(str(os.getpid()))\n"
        "time.sleep(600)\n"
    )
    agents = str(Path(__file__).resolve().parents[2] / "agents")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sentinel_agent.launcher", "--service", advice.url,
         "--token-file", str(tmp_path / "token"), "--job-id", "77", "--poll-s", "0.1",
         "--grace-s", "5", "--", sys.executable, "-c", sleeper],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": agents},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = int((tmp_path / "pid").read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        assert (tmp_path / "stopped").exists()  # the command heard it and stopped cleanly
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
