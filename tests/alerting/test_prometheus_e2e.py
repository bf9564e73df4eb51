"""A real Prometheus and Alertmanager posting to the live service: the alert becomes evidence."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from tests.harness.prometheus import PrometheusStack, PrometheusUnavailable, find_binaries
from tests.harness.service import LiveService

METRICS = """\
# HELP DCGM_FI_DEV_XID_ERRORS Value of the last XID error encountered.
# TYPE DCGM_FI_DEV_XID_ERRORS gauge
DCGM_FI_DEV_XID_ERRORS{gpu="3",Hostname="node7",UUID="GPU-5f1c"} 79
DCGM_FI_DEV_XID_ERRORS{gpu="0",Hostname="node8",UUID="GPU-77aa"} 0
"""


@pytest.fixture(scope="module", autouse=True)
def _binaries() -> None:
    if os.environ.get("SENTINEL_TEST_SKIP_PROMETHEUS") == "1":
        pytest.skip("SENTINEL_TEST_SKIP_PROMETHEUS=1")
    try:
        find_binaries()
    except PrometheusUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


def _events(db: Path) -> list[tuple[str, str, dict[str, object]]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT kind, host_id, payload FROM events WHERE kind = 'alertmanager'"
        ).fetchall()
    return [(kind, host, json.loads(payload)) for kind, host, payload in rows]


@pytest.mark.slow
def test_alertmanager_delivers_xid_alert_firing_then_resolved(
    live_service: LiveService, tmp_path: Path
) -> None:
    db = live_service.data_dir / "sentinel.db"
    stack = PrometheusStack(
        root=tmp_path / "prom",
        webhook_url=f"{live_service.url}/api/v1/alertmanager",
        bearer_token=live_service.agent_token,
        metrics=METRICS,
    )
    started = time.monotonic()
    with stack:
        firing = _wait_for(db, "firing", started)
        assert stack.exporter is not None
        stack.exporter.text = METRICS.replace("} 79", "} 0")  # the XID clears
        resolved = _wait_for(db, "resolved", time.monotonic())
    assert time.monotonic() - started < 40
    (host, payload) = firing  # node8's 0 never fired
    assert host == "node7"
    labels = payload["labels"]
    assert isinstance(labels, dict)
    assert labels["alertname"] == "GpuXidError" and labels["gpu"] == "3"
    assert payload["receiver"] == "sentinel"
    assert "Xid 79" in str(payload["annotations"])
    assert resolved[0] == "node7" and resolved[1]["fingerprint"] == payload["fingerprint"]


def _wait_for(db: Path, status: str, since: float) -> tuple[str, dict[str, object]]:
    while time.monotonic() - since < 20:
        found = [(h, p) for kind, h, p in _events(db) if p["status"] == status]
        if found:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.25)
    raise AssertionError(f"no {status} alert reached Sentinel within 20 s")
