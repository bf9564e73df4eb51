"""The agent's metrics beside dcgm-exporter (issue 18): by default its own names
(sentinel_agent_gpu_*) and its own port; `metrics.mode: replace-dcgm-exporter` keeps
dcgm-exporter's names, labels, units and port for sites where the agent takes its place."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from sentinel.wire import GpuSample
from sentinel.wire.v1 import NvlinkCounters
from sentinel_agent.config import AgentConfig
from sentinel_agent.metrics import GPU_GAUGES, NVLINK_GAUGES, XID_GAUGE, AgentMetrics

MiB = 1024 * 1024
SAMPLE = GpuSample(
    id=uuid.uuid4(),
    observed_at=datetime(2026, 1, 1, tzinfo=UTC),
    gpu_index=3,
    uuid="GPU-5f1c",
    pci_bus_id="00000000:3B:00.0",
    temperature_c=71.0,
    power_w=600.0,
    memory_used_bytes=2048 * MiB,
    ecc_volatile_uncorrected=2,
    nvlink=NvlinkCounters(crc_flit=7),
)


def _config(**metrics: object) -> AgentConfig:
    return AgentConfig(service={"url": "http://sentinel:8600", "token": "t"}, metrics=metrics)


def test_own_names_and_labels_by_default() -> None:
    m = AgentMetrics("node7")
    m.observe_gpu(SAMPLE)
    m.observe_xid(3, 79)
    labels = {"gpu": "3", "uuid": "GPU-5f1c", "pci_bus_id": "00000000:3B:00.0", "hostname": "node7"}
    value = m.registry.get_sample_value
    assert value("sentinel_agent_gpu_temperature_celsius", labels) == 71.0
    assert value("sentinel_agent_gpu_memory_used_bytes", labels) == 2048 * MiB  # base units
    assert value("sentinel_agent_gpu_ecc_volatile_uncorrected_errors", labels) == 2
    assert value("sentinel_agent_gpu_nvlink_crc_flit_errors", labels) == 7
    assert value("sentinel_agent_gpu_last_xid", labels) == 79
    names = {metric.name for metric in m.registry.collect()}
    assert all(n.startswith("sentinel_agent_") for n in names), names


def test_replace_dcgm_exporter_keeps_its_names_labels_and_units() -> None:
    m = AgentMetrics("node7", "replace-dcgm-exporter")
    m.observe_gpu(SAMPLE)
    m.observe_xid(3, 79)
    labels = {"gpu": "3", "UUID": "GPU-5f1c", "pci_bus_id": "00000000:3B:00.0", "Hostname": "node7"}
    value = m.registry.get_sample_value
    assert value("DCGM_FI_DEV_GPU_TEMP", labels) == 71.0
    assert value("DCGM_FI_DEV_FB_USED", labels) == 2048  # MiB, as dcgm-exporter has it
    assert value("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", labels) == 2
    assert value("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", labels) == 7
    assert value("DCGM_FI_DEV_XID_ERRORS", labels) == 79
    assert value("sentinel_agent_gpu_temperature_celsius", {**labels}) is None


def test_every_gauge_has_both_names_and_no_name_twice() -> None:
    specs = (*GPU_GAUGES, *NVLINK_GAUGES, XID_GAUGE)
    own = [g.name for g in specs]
    dcgm = [g.dcgm for g in specs]
    assert len(set(own)) == len(own) and len(set(dcgm)) == len(dcgm)
    assert all(n.startswith("sentinel_agent_gpu_") for n in own)
    assert all(n.startswith("DCGM_FI_") for n in dcgm)


def test_the_default_port_is_the_agents_own() -> None:
    """Not dcgm-exporter's (9400), node-exporter's (9100) nor the Sentinel service's (8600)."""
    default = _config().metrics
    assert (default.mode, default.port) == ("sentinel", 8601)
    assert default.port not in (9400, 9100, 8600)
    replacing = _config(mode="replace-dcgm-exporter").metrics
    assert replacing.port == 9400  # where dcgm-exporter's scrape configs already point
    assert _config(mode="replace-dcgm-exporter", port=9500).metrics.port == 9500
    assert _config(port=9600).metrics.port == 9600


def test_an_unknown_mode_is_a_config_error_naming_the_field() -> None:
    with pytest.raises(ValidationError, match=r"metrics\.mode"):
        _config(mode="dcgm")
