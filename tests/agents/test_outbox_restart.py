"""Real processes: the service goes away, the agent keeps collecting, crashes (SIGKILL) and
is restarted, the service comes back -- every event arrives exactly once, in order."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_helpers import service_observations, start_agent

# Three XIDs and four ECC changes early in each agent run.
SCENARIO = {
    "gpus": 8,
    "timeline": [
        {"at": 0.6, "gpu": 5, "xid": 48, "add": {"ecc_volatile_uncorrected": 1}},
        {
            "at": 0.8,
            "gpu": 5,
            "xid": 63,
            "set": {"remap_pending": True},
            "add": {"remapped_rows_uncorrectable": 1},
        },
        {"at": 1.0, "gpu": 5, "xid": 64, "set": {"remap_failure": True}},
    ],
}
XIDS_PER_RUN, ECC_PER_RUN = 3, 4


def _queued(outbox: Path, kind: str) -> int:
    """Observations of a kind in the agent's outbox, pending or in a formed batch."""
    if not outbox.exists():
        return 0
    db = sqlite3.connect(outbox, timeout=5)
    try:
        pending = db.execute("SELECT COUNT(*) FROM pending WHERE kind = ?", (kind,)).fetchone()[0]
        needle = f'"kind":"{kind}"'.encode()
        formed = sum(bytes(b).count(needle) for (b,) in db.execute("SELECT body FROM batches"))
    except sqlite3.OperationalError:  # tables not created yet
        return 0
    finally:
        db.close()
    return int(pending) + formed


def _wait_queued(outbox: Path, xids: int, eccs: int, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if _queued(outbox, "xid") >= xids and _queued(outbox, "ecc") >= eccs:
            return
        time.sleep(0.1)
    raise AssertionError(f"agent did not queue its events; log:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_events_survive_service_outage_and_agent_restarts(
    live_service: Any, tmp_path: Path
) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "host_id": "restart-host",
                "service": {"url": live_service.url, "token": live_service.agent_token},
                "intervals": {"gpu_s": 0.2, "send_s": 0.2, "status_s": 0.5},
                "collectors": {
                    "nvml": {"provider": "fake", "scenario": str(scenario)},
                    "kernel_log": {"enabled": False},
                    "heartbeat": {"enabled": False},
                    "flight_recorder": {"enabled": False},
                },
                "outbox": {
                    "path": str(tmp_path / "outbox.db"),
                    "backoff_initial_s": 0.1,
                    "backoff_max_s": 0.3,
                },
                "metrics": {"enabled": False},
            }
        )
    )
    log = tmp_path / "agent.log"
    live_service.stop()
    outbox = tmp_path / "outbox.db"
    agent = start_agent(config, log)
    _wait_queued(outbox, XIDS_PER_RUN, ECC_PER_RUN, log)
    agent.send_signal(signal.SIGKILL)  # a crash, not a clean stop
    agent.wait(10)
    agent = start_agent(config, log)  # run 2: same outbox, the scenario plays again
    try:
        _wait_queued(outbox, 2 * XIDS_PER_RUN, 2 * ECC_PER_RUN, log)
        live_service.start()  # the service comes back on the same database and port
        deadline = time.monotonic() + 20
        obs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            obs = service_observations(live_service, "restart-host")
            if sum(o["kind"] == "xid" for o in obs) >= 2 * XIDS_PER_RUN:
                break
            time.sleep(0.3)
        time.sleep(1.0)  # anything still in flight would show up as an extra now
        obs = service_observations(live_service, "restart-host")
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(10) == 0
    kinds = Counter(o["kind"] for o in obs)
    assert kinds["xid"] == 2 * XIDS_PER_RUN, (kinds, log.read_text()[-3000:])
    assert kinds["ecc"] == 2 * ECC_PER_RUN, kinds
    assert len({o["id"] for o in obs}) == len(obs)  # nothing stored twice
    events = sorted((o for o in obs if o["kind"] in ("xid", "ecc")), key=lambda o: o["observed_at"])
    seqs = [o["seq"] for o in events]
    assert seqs == sorted(seqs)  # delivered in the order they were observed
    assert "retrying" in log.read_text()  # the outage was real
