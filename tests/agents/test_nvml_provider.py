"""The real provider's calls into the binding, checked against stand-ins (no GPU here).

Each stand-in asserts it got the binding's constants in the right places, so a swapped
argument or a wrong constant fails here rather than on the first GPU host.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest
from agent_helpers import context

from sentinel.wire import GpuSample
from sentinel_agent.clock import ManualClock
from sentinel_agent.collectors.nvml import NvmlCollector
from sentinel_agent.providers.nvml import NvmlProvider


class Handle:
    def __init__(self, index: int) -> None:
        self.index = index


@pytest.fixture
def binding(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {"lost": set(), "events": [], "registered": []}
    handles = [Handle(0), Handle(1)]

    def check(h: Any) -> Handle:
        assert isinstance(h, Handle)
        if h.index in state["lost"]:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return h

    def ecc(h: Any, error_type: int, counter: int) -> int:
        check(h)
        assert error_type in (
            pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED,
            pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
        )
        assert counter in (pynvml.NVML_VOLATILE_ECC, pynvml.NVML_AGGREGATE_ECC)
        return 10 * error_type + counter  # corr/vol 0, corr/agg 1, unc/vol 10, unc/agg 11

    def nvlink_state(h: Any, link: int) -> int:
        check(h)
        if link >= 4:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return 0 if link == 3 else 1  # link 3 exists but is down

    def nvlink_counter(h: Any, link: int, counter: int) -> int:
        check(h)
        assert link < 3 and counter in (
            pynvml.NVML_NVLINK_ERROR_DL_CRC_FLIT,
            pynvml.NVML_NVLINK_ERROR_DL_CRC_DATA,
            pynvml.NVML_NVLINK_ERROR_DL_REPLAY,
            pynvml.NVML_NVLINK_ERROR_DL_RECOVERY,
        )
        return {pynvml.NVML_NVLINK_ERROR_DL_CRC_FLIT: 5}.get(counter, 1)

    def retired(h: Any, cause: int) -> list[int]:
        check(h)
        if cause == pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR:
            return [0x1000]
        assert cause == pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def temperature(h: Any, sensor: int) -> int:
        check(h)
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return 71

    def serial(h: Any) -> str:
        if check(h).index == 1:  # a board without an inforom
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return "1654922010100"

    def register(h: Any, types: int, event_set: Any) -> None:
        assert types == pynvml.nvmlEventTypeXidCriticalError and event_set == "set"
        state["registered"].append(h.index)

    def wait(event_set: Any, timeout_ms: int) -> Any:
        assert event_set == "set" and timeout_ms > 0
        if not state["events"]:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)
        return state["events"].pop(0)

    fakes = {
        "nvmlInit": lambda: None,
        "nvmlShutdown": lambda: None,
        "nvmlDeviceGetCount": lambda: 2,
        "nvmlDeviceGetHandleByIndex": lambda i: handles[i],
        "nvmlDeviceGetIndex": lambda h: h.index,
        "nvmlDeviceGetUUID": lambda h: f"GPU-{check(h).index:08d}",
        "nvmlDeviceGetPciInfo": lambda h: SimpleNamespace(busId=f"00000000:{check(h).index}A:00.0"),
        "nvmlDeviceGetSerial": serial,
        "nvmlDeviceGetTemperature": temperature,
        "nvmlDeviceGetPowerUsage": lambda h: check(h) and 512_345,  # milliwatts
        "nvmlDeviceGetCurrentClocksEventReasons": lambda h: check(h) and 0x40,
        "nvmlDeviceGetUtilizationRates": lambda h: check(h) and SimpleNamespace(gpu=97, memory=40),
        "nvmlDeviceGetMemoryInfo": lambda h: check(h) and SimpleNamespace(used=7 << 30),
        "nvmlDeviceGetTotalEccErrors": ecc,
        "nvmlDeviceGetRemappedRows": lambda h: check(h) and (2, 1, 0, 1),
        "nvmlDeviceGetRetiredPages": retired,
        "nvmlDeviceGetNvLinkState": nvlink_state,
        "nvmlDeviceGetNvLinkErrorCounter": nvlink_counter,
        "nvmlDeviceGetPcieReplayCounter": lambda h: check(h) and 3,
        "nvmlEventSetCreate": lambda: "set",
        "nvmlDeviceRegisterEvents": register,
        "nvmlEventSetWait_v2": wait,
        "nvmlEventSetFree": lambda s: None,
    }
    for name, fake in fakes.items():
        assert hasattr(pynvml, name), f"the binding has no {name}"
        monkeypatch.setattr(pynvml, name, fake)
    state["handles"] = handles
    return state


def test_sample_maps_every_nvml_call(binding: dict[str, Any], tmp_path: Path) -> None:
    ctx, _ = context(ManualClock())
    collector = NvmlCollector(NvmlProvider(), ctx, interval_s=10, xid_events=False)
    s0 = collector.poll()[0]
    assert isinstance(s0, GpuSample)
    assert (
        s0.uuid,
        s0.pci_bus_id,
        s0.temperature_c,
        s0.power_w,
        s0.clock_event_reasons,
        s0.utilization_pct,
        s0.memory_used_bytes,
    ) == ("GPU-00000000", "00000000:0A:00.0", 71.0, 512.345, 0x40, 97.0, 7 << 30)
    assert (
        s0.ecc_volatile_corrected,
        s0.ecc_aggregate_corrected,
        s0.ecc_volatile_uncorrected,
        s0.ecc_aggregate_uncorrected,
    ) == (0, 1, 10, 11)
    assert (
        s0.remapped_rows_correctable,
        s0.remapped_rows_uncorrectable,
        s0.remap_pending,
        s0.remap_failure,
    ) == (2, 1, False, True)
    assert (s0.retired_pages_sbe, s0.retired_pages_dbe) == (None, 1)  # SBE: not supported
    assert s0.nvlink is not None and (s0.nvlink.crc_flit, s0.nvlink.replay) == (15, 3)  # 3 up
    assert s0.pcie_replay_count == 3
    assert ctx.state.gpu_by_pci == {"00000000:0A:00.0": 0, "00000000:1A:00.0": 1}
    s1 = collector.poll()[1]
    assert isinstance(s1, GpuSample)
    assert (s0.serial, s1.serial) == ("1654922010100", None)  # nvmlDeviceGetSerial


def test_lost_gpu_and_xid_event(binding: dict[str, Any]) -> None:
    ctx, sink = context(ManualClock())
    collector = NvmlCollector(NvmlProvider(), ctx, interval_s=10, xid_events=False)
    collector.poll()
    binding["lost"].add(1)
    collector.poll()
    (lost,) = sink.critical
    assert isinstance(lost, GpuSample) and lost.lost and lost.uuid == "GPU-00000001"

    events = NvmlProvider().xid_events({0: binding["handles"][0], 1: binding["handles"][1]})
    assert binding["registered"] == [0, 1]
    assert events.wait(100) is None  # NVML_ERROR_TIMEOUT
    binding["events"].append(
        SimpleNamespace(
            device=binding["handles"][1],
            eventType=pynvml.nvmlEventTypeXidCriticalError,
            eventData=79,
            gpuInstanceId=0,
            computeInstanceId=0,
        )
    )
    notice = events.wait(100)
    assert notice is not None and (notice.gpu_index, notice.xid) == (1, 79)
    events.close()


def test_gpu_lost_before_the_agent_started(binding: dict[str, Any]) -> None:
    binding["lost"].add(1)  # the handle comes back, every query says GPU_IS_LOST
    ctx, sink = context(ManualClock())
    collector = NvmlCollector(NvmlProvider(), ctx, interval_s=10, xid_events=False)
    healthy = collector.poll()
    assert [s.gpu_index for s in healthy if isinstance(s, GpuSample)] == [0]
    (lost,) = sink.critical
    assert isinstance(lost, GpuSample) and lost.gpu_index == 1 and lost.lost
