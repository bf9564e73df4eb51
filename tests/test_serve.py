"""`sentinel serve` and `sentinel demo` as a newcomer runs them (issue 18): Ctrl-C stops them
within seconds and says what it is doing; `serve` logs at the level and in the format asked
(text or one JSON object per line), from its options or its settings."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sentinel.demo.service import free_port
from sentinel.logs import JsonFormatter

OPERATOR = "operator-token-0123456789"


def _env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    env.update(
        SENTINEL_DATA_DIR=str(data),
        SENTINEL_AUTO_MIGRATE="true",
        SENTINEL_AUTH__TOKENS=f'[{{"name": "o", "role": "operator", "token": "{OPERATOR}"}}]',
        **extra,
    )
    return env


def _serve_then_interrupt(tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    """Start `sentinel serve`, wait until it is ready, send SIGINT (Ctrl-C), wait for it."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sentinel.cli", "serve", "--port", str(port), *args],
            env=_env(tmp_path / "data", **env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)  # generous: the machine may be busy; the service says its time
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, log.read_text()


@pytest.mark.slow
def test_ctrl_c_stops_serve_and_says_so_in_json_lines(tmp_path: Path) -> None:
    code, output = _serve_then_interrupt(tmp_path, "--log-format", "json")
    assert code == 0, output[-3000:]
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    messages = [r["message"] for r in records if r["logger"] == "sentinel.serve"]
    assert any(m.startswith("stopping: draining 0 request(s)") for m in messages), messages
    assert any(m.startswith("stopping: requests drained") for m in messages), messages
    assert any(m.startswith("stopped in ") for m in messages), messages
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert OPERATOR not in output


@pytest.mark.slow
def test_the_log_level_and_format_come_from_the_settings(tmp_path: Path) -> None:
    code, output = _serve_then_interrupt(
        tmp_path, SENTINEL_LOG__FORMAT="json", SENTINEL_LOG__LEVEL="WARNING"
    )
    assert code == 0, output[-3000:]
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert records  # the migration's warning at least
    assert {r["level"] for r in records} <= {"WARNING", "ERROR", "CRITICAL"}


def test_a_bad_log_level_is_refused() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "sentinel.cli", "serve", "--log-level", "LOUD"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "LOUD" in run.stderr


def test_json_lines_leave_secrets_out() -> None:
    formatter = JsonFormatter(secrets=["s3cret-webhook-token"])
    try:
        raise RuntimeError("posting to https://x/s3cret-webhook-token failed")
    except RuntimeError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "sent %s", ("s3cret-webhook-token",), sys.exc_info()
        )
    line = formatter.format(record)
    parsed = json.loads(line)
    assert "s3cret" not in line
    assert parsed["message"] == "sent [redacted]"
    assert "RuntimeError" in parsed["exception"]
    assert parsed["level"] == "ERROR" and parsed["time"].endswith("+00:00")


@pytest.mark.slow
def test_ctrl_c_stops_the_demo_and_says_so(tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals the whole foreground group: the demo and its service."""
    log = tmp_path / "demo.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sentinel.cli", "demo", "--hosts", "8", "--port",
             str(free_port()), "--data-dir", str(tmp_path / "demo")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "Ctrl-C stops everything" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        time.sleep(3)  # the agents have started and sent
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "stopping: 8 agents" in output
    assert "agents stopped in" in output
    assert "service stopped in" in output
    assert "demo stopped" in output
    assert "Traceback" not in output
