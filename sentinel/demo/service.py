"""Run the real service in a subprocess (uvicorn on loopback) with its own tokens: the demo's
service, and the one the end-to-end tests drive (tests/harness/service.py re-exports it).
It lives in the product because `sentinel demo` runs it; the test harnesses are not shipped."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sentinel.auth import new_token


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(
    url: str, procs: Sequence[subprocess.Popen[bytes]], timeout: float, poll_s: float = 0.1
) -> bool:
    """Poll `url` until it answers 200 (True); False when one of `procs` exits first or
    `timeout` s pass (their `poll()` tells which)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(proc.poll() is not None for proc in procs):
            return False
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(poll_s)
    return False


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `grace_s`; reaped either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _die_with_parent() -> None:
    """In the child: be sent SIGTERM if the process that started us dies (Linux), so that a
    killed test run or demo never leaves a service behind."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class LiveService:
    database_url: str
    data_dir: Path
    port: int = field(default_factory=free_port)
    agent_token: str = field(default_factory=new_token)
    operator_token: str = field(default_factory=new_token)
    viewer_token: str = field(default_factory=new_token)
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        tokens = [
            {"name": "agent", "role": "agent", "token": self.agent_token},
            {"name": "operator", "role": "operator", "token": self.operator_token},
            {"name": "viewer", "role": "viewer", "token": self.viewer_token},
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
        env.update(
            SENTINEL_DATABASE__URL=self.database_url,
            SENTINEL_DATA_DIR=str(self.data_dir),
            SENTINEL_AUTH__TOKENS=json.dumps(tokens),
            SENTINEL_AUTO_MIGRATE="true",
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path or self.data_dir / "service.log"
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sentinel.cli",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                ],
                env=self.env(),
                preexec_fn=_die_with_parent,  # only a prctl: safe between fork and exec
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait_ready(f"{self.url}/readyz", [self.proc], timeout):
            return
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"service exited with {self.proc.returncode}; see {log_path}:\n"
                + log_path.read_text()[-4000:]
            )
        self.stop()
        raise RuntimeError(f"service not ready within {timeout} s; see {log_path}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None

    def headers(self, role: str = "viewer") -> dict[str, str]:
        token = {
            "agent": self.agent_token,
            "operator": self.operator_token,
            "viewer": self.viewer_token,
        }[role]
        return {"Authorization": f"Bearer {token}"}
