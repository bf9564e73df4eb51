"""The real provider: a thin layer over nvidia-ml-py's ``pynvml`` module."""

from __future__ import annotations

from typing import Any

import pynvml

from sentinel_agent.providers.base import NvlinkTotals, RemappedRows, XidNotice

_NVLINK_COUNTERS = (
    ("crc_flit", pynvml.NVML_NVLINK_ERROR_DL_CRC_FLIT),
    ("crc_data", pynvml.NVML_NVLINK_ERROR_DL_CRC_DATA),
    ("replay", pynvml.NVML_NVLINK_ERROR_DL_REPLAY),
    ("recovery", pynvml.NVML_NVLINK_ERROR_DL_RECOVERY),
)


class NvmlProvider:
    def __init__(self) -> None:
        # Links are probed once per GPU: asking 36 links x 4 counters every interval for
        # links that do not exist would be most of the agent's NVML time.
        self._links: dict[int, list[int]] = {}

    def init(self) -> None:
        pynvml.nvmlInit()

    def shutdown(self) -> None:
        pynvml.nvmlShutdown()

    def device_count(self) -> int:
        return int(pynvml.nvmlDeviceGetCount())

    def handle(self, index: int) -> object:
        return pynvml.nvmlDeviceGetHandleByIndex(index)

    def uuid(self, handle: object) -> str:
        return str(pynvml.nvmlDeviceGetUUID(handle))

    def pci_bus_id(self, handle: object) -> str:
        return str(pynvml.nvmlDeviceGetPciInfo(handle).busId)

    def serial(self, handle: object) -> str:
        return str(pynvml.nvmlDeviceGetSerial(handle))

    def temperature_c(self, handle: object) -> float:
        return float(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))

    def power_w(self, handle: object) -> float:
        return float(pynvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0  # NVML says milliwatts

    def clock_event_reasons(self, handle: object) -> int:
        return int(pynvml.nvmlDeviceGetCurrentClocksEventReasons(handle))

    def utilization_pct(self, handle: object) -> float:
        return float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)

    def memory_used_bytes(self, handle: object) -> int:
        return int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)

    def ecc_errors(self, handle: object, *, uncorrected: bool, aggregate: bool) -> int:
        error_type = (
            pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
            if uncorrected
            else pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED
        )
        counter = pynvml.NVML_AGGREGATE_ECC if aggregate else pynvml.NVML_VOLATILE_ECC
        return int(pynvml.nvmlDeviceGetTotalEccErrors(handle, error_type, counter))

    def remapped_rows(self, handle: object) -> RemappedRows:
        corr, unc, pending, failure = pynvml.nvmlDeviceGetRemappedRows(handle)
        return RemappedRows(int(corr), int(unc), bool(pending), bool(failure))

    def retired_pages(self, handle: object, *, double_bit: bool) -> int:
        cause = (
            pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR
            if double_bit
            else pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS
        )
        return len(pynvml.nvmlDeviceGetRetiredPages(handle, cause))

    def retired_pages_pending(self, handle: object) -> bool:
        pending = pynvml.nvmlDeviceGetRetiredPagesPendingStatus(handle)
        return bool(pending == pynvml.NVML_FEATURE_ENABLED)

    def _active_links(self, handle: object) -> list[int]:
        key = id(handle)
        if key not in self._links:
            links: list[int] = []
            for link in range(pynvml.NVML_NVLINK_MAX_LINKS):
                try:
                    if pynvml.nvmlDeviceGetNvLinkState(handle, link):
                        links.append(link)
                except pynvml.NVMLError_InvalidArgument:
                    break  # past the GPU's last link
                except pynvml.NVMLError_NotSupported:
                    if link == 0:
                        raise
                    break
            self._links[key] = links
        return self._links[key]

    def nvlink_errors(self, handle: object) -> NvlinkTotals:
        links = self._active_links(handle)
        if not links:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        totals = dict.fromkeys((name for name, _ in _NVLINK_COUNTERS), 0)
        for link in links:
            for name, counter in _NVLINK_COUNTERS:
                totals[name] += int(pynvml.nvmlDeviceGetNvLinkErrorCounter(handle, link, counter))
        return NvlinkTotals(**totals)

    def pcie_replay_count(self, handle: object) -> int:
        return int(pynvml.nvmlDeviceGetPcieReplayCounter(handle))

    def xid_events(self, handles: dict[int, object]) -> NvmlXidEvents:
        return NvmlXidEvents(handles)


class NvmlXidEvents:
    """An NVML event set registered for critical XIDs on every GPU that supports them."""

    def __init__(self, handles: dict[int, object]) -> None:
        self._set: Any = pynvml.nvmlEventSetCreate()
        registered = 0
        for handle in handles.values():
            try:
                pynvml.nvmlDeviceRegisterEvents(
                    handle, pynvml.nvmlEventTypeXidCriticalError, self._set
                )
                registered += 1
            except pynvml.NVMLError_NotSupported:
                continue
        if not registered:
            pynvml.nvmlEventSetFree(self._set)
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def wait(self, timeout_ms: int) -> XidNotice | None:
        try:
            data = pynvml.nvmlEventSetWait_v2(self._set, timeout_ms)
        except pynvml.NVMLError_Timeout:
            return None
        if data.eventType != pynvml.nvmlEventTypeXidCriticalError:
            return None
        return XidNotice(
            gpu_index=int(pynvml.nvmlDeviceGetIndex(data.device)), xid=int(data.eventData)
        )

    def close(self) -> None:
        pynvml.nvmlEventSetFree(self._set)
