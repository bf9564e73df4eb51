"""`sentinel demo` headless for a bounded time: incidents triaged and decided within 60 s."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sentinel.demo.service import free_port


def test_demo_shows_incidents_within_a_minute(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "demo.out"
    with out.open("w") as f:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sentinel.cli",
                "demo",
                "--hosts",
                "32",
                "--port",
                str(port),
                "--duration",
                "75",
                "--fault-every",
                "10",
                "--data-dir",
                str(tmp_path / "demo"),
            ],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=os.environ | {"COLUMNS": "200"},
        )
    started = time.monotonic()
    try:
        token = None
        while token is None and time.monotonic() - started < 30:
            found = re.search(r"viewer token:\s+(\S+)", out.read_text())
            token = found.group(1) if found else None
            time.sleep(0.2)
        assert token, out.read_text()
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}"}
        decided: list[dict[str, object]] = []
        while time.monotonic() - started < 60 and not decided:
            with contextlib.suppress(httpx.HTTPError):
                decided = httpx.get(f"{url}/api/v1/decisions", headers=headers, timeout=5).json()
            time.sleep(1)
        assert decided, "no decision within 60 s:\n" + out.read_text()
        incidents = httpx.get(f"{url}/api/v1/incidents", headers=headers, timeout=5).json()
        assert incidents and incidents[-1]["category"] != "unknown"
        hosts = httpx.get(f"{url}/api/v1/hosts", headers=headers, timeout=5).json()
        assert len(hosts) == 32

        # The example batch the banner offers: accepted once, then a duplicate; a broken one
        # is refused naming the field; a viewer cannot post.
        agent = re.search(r"agent token:\s+(\S+)", out.read_text())
        assert agent is not None
        example = json.loads((tmp_path / "demo" / "example-batch.json").read_text())
        post = {"Authorization": f"Bearer {agent.group(1)}"}
        first = httpx.post(f"{url}/api/v1/reports", json=example, headers=post, timeout=10)
        again = httpx.post(f"{url}/api/v1/reports", json=example, headers=post, timeout=10)
        assert (first.status_code, first.json()["duplicate"]) == (202, False)
        assert (again.status_code, again.json()["duplicate"]) == (202, True)
        bad = httpx.post(
            f"{url}/api/v1/reports", json=example | {"seq": "one"}, headers=post, timeout=10
        )
        assert bad.status_code == 422 and "seq" in bad.json()["detail"]
        viewer = httpx.post(f"{url}/api/v1/reports", json=example, headers=headers, timeout=10)
        assert viewer.status_code == 403
        # Ctrl-C stops everything cleanly: agents, service, and the port is free again.
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "demo stopped" in out.read_text()
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/healthz", timeout=2)
        _goodput_is_accounted(tmp_path / "demo" / "sentinel.db")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _goodput_is_accounted(db: Path) -> None:
    """The report over what the demo's real agents, heartbeats and service recorded: every
    interruption's time split into its phases, and the job's ETTR measured from heartbeats."""
    report = subprocess.run(
        [sys.executable, "-m", "sentinel.cli", "report", "--format", "json",
         "--database-url", f"sqlite:///{db}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    tables = json.loads(report.stdout)
    incidents = sum(r["count"] for r in tables["root_causes"] if r.get("count"))
    goodput = tables["goodput"]
    assert sum(r["interruptions"] for r in goodput) == incidents > 0, goodput
    phases = ("detection_h", "decision_h", "execution_h", "waiting_h", "restart_h", "lost_h")
    for row in goodput:
        parts = sum(row[p] for p in (*phases, "other_h"))
        assert abs(parts - row["total_h"]) < 0.01, row
    measured = {r["job_id"]: r for r in tables["ettr_measured"]}
    assert "llama3-405b-demo" in measured, tables["ettr_measured"]
    assert measured["llama3-405b-demo"]["samples"] >= 2
