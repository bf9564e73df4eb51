"""The DCGM collectors: `dcgmi health -c -j` and `dcgmi diag -r 1 -j` in their real JSON shapes
(the excerpts in tests/triage/excerpts), each incident shipped once as the line triage reads,
and a host with no host engine or no dcgmi costing one log line."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from sentinel.triage.classify import classify_text
from sentinel.wire import LogRecord, Observation
from sentinel_agent.collectors.dcgm import (
    HEALTH,
    DcgmDiagCollector,
    DcgmHealthCollector,
    NotReady,
    run_dcgmi,
)
from tests.agents.agent_helpers import context

EXCERPTS = Path(__file__).parents[1] / "triage" / "excerpts"


def _json(name: str) -> str:
    text = (EXCERPTS / name).read_text()
    return text[text.index("{") :]


HEALTHY = json.dumps(
    {"body": {"Overall Health": {"value": "Healthy"}}, "header": ["Health Monitor Report"]}
)
DBE = _json("dcgmi_health_json_dbe.log")
THERMAL = _json("dcgmi_health_json_thermal.log")
DIAG_ROW_REMAP = _json("dcgmi_diag_json_row_remap_failure.log")


def _records(observations: Sequence[Observation]) -> list[LogRecord]:
    assert all(isinstance(o, LogRecord) for o in observations)
    return [o for o in observations if isinstance(o, LogRecord)]


def _scripted(outputs: list[str]):  # type: ignore[no-untyped-def]
    def run(command: Sequence[str], timeout_s: float) -> str:
        return outputs.pop(0)

    return run


def test_a_new_health_incident_is_shipped_once_as_triage_reads_it() -> None:
    ctx, _ = context()
    outputs = [HEALTHY, DBE, DBE.replace("Detected 2", "Detected 3"), THERMAL]
    collector = DcgmHealthCollector(ctx, interval_s=30, run=_scripted(outputs))
    assert collector.poll() == [], "the first check only learns where things stand"
    [record] = _records(collector.poll())
    assert (record.source, record.pattern, record.family) == (
        "dcgm",
        "dcgm_health_incident",
        "dcgm",
    )
    assert record.severity == "critical"  # DCGM_FR_VOLATILE_DBE_DETECTED
    assert record.message.startswith("dcgmi health: GPU 4: Memory system: Failure: Detected 2")
    verdict = classify_text(record.message)
    assert (verdict.category.value, verdict.culprit_gpu) == ("gpu_hbm_memory", "4")
    assert collector.poll() == [], "a count that rises is the same incident"
    [thermal] = _records(collector.poll())
    assert thermal.severity == "warning"
    assert classify_text(thermal.message).category.value == "gpu_thermal"


def test_every_diagnostic_failure_is_shipped_with_its_code() -> None:
    ctx, _ = context()
    collector = DcgmDiagCollector(ctx, interval_s=3600, run=_scripted([DIAG_ROW_REMAP] * 2))
    [record] = _records(collector.poll())
    assert record.message.startswith("dcgmi diag: memory: GPU 3: Fail: DCGM_FR_ROW_REMAP_FAILURE:")
    assert (record.pattern, record.severity) == ("dcgm_diag_error", "critical")
    assert classify_text(record.message).category.value == "gpu_hbm_memory"
    assert collector.poll() == [], "the same failure in the next run is not news"


def test_no_host_engine_is_said_once_and_polled_again(caplog: pytest.LogCaptureFixture) -> None:
    answers: list[str | Exception] = [
        NotReady("Error: unable to establish a connection to the specified host: localhost"),
        NotReady("Error: unable to establish a connection to the specified host: localhost"),
        HEALTHY,
        DBE,
    ]

    def run(command: Sequence[str], timeout_s: float) -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    ctx, _ = context()
    collector = DcgmHealthCollector(ctx, interval_s=30, run=run)
    with caplog.at_level(logging.INFO, logger="sentinel_agent.collectors.dcgm"):
        assert collector.poll() == [] and collector.poll() == []
    assert len([r for r in caplog.records if "unable to establish" in r.message]) == 1
    assert collector.poll() == []
    assert len(collector.poll()) == 1


def _fake_dcgmi(tmp_path: Path, script: str) -> None:
    tool = tmp_path / "dcgmi"
    tool.write_text(f"#!/bin/sh\n{script}\n")
    tool.chmod(0o755)


def test_dcgmi_without_a_host_engine_is_not_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What dcgmi/Command.cpp prints, on stdout, when nv-hostengine is not running.
    _fake_dcgmi(
        tmp_path,
        'echo "Error: unable to establish a connection to the specified host: localhost"\n'
        'echo "Error: Unable to connect to host engine. Host engine connection invalid/'
        'disconnected."\nexit 255',
    )
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(NotReady):
        run_dcgmi(HEALTH, 5)


def test_dcgmi_with_watches_off_is_not_ready_and_other_failures_are_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    _fake_dcgmi(
        tmp_path, 'echo "Error: Health watches not enabled. Please enable watches. "\nexit 1'
    )
    with pytest.raises(NotReady):
        run_dcgmi(HEALTH, 5)
    _fake_dcgmi(tmp_path, 'echo "Error: Unable to check health watches. Return: Timeout"\nexit 1')
    with pytest.raises(RuntimeError, match="exit 1"):
        run_dcgmi(HEALTH, 5)
    _fake_dcgmi(tmp_path, f"cat <<'EOF'\n{DBE}EOF")
    assert json.loads(run_dcgmi(HEALTH, 5))["body"]["Overall Health"]["value"] == "Failure"


def test_a_dcgm_gpu_id_is_the_gpu_nvml_reported_with_its_bus_id() -> None:
    # One identity across sources: DCGM's "GPU 4" is NVML's index 4 and carries its bus id.
    ctx, _ = context()
    ctx.state.gpu_by_pci.update({"00000000:9A:00.0": 4, "00000000:18:00.0": 0})
    collector = DcgmHealthCollector(ctx, interval_s=30, run=_scripted([HEALTHY, DBE]))
    collector.poll()
    [record] = _records(collector.poll())
    assert (record.gpu_index, record.pci_bus_id) == (4, "00000000:9A:00.0")
