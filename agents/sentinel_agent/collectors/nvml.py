"""GPU health from NVML: a sample per GPU per interval, ECC changes, and XIDs at once."""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import TypedDict, TypeVar

import pynvml

from sentinel.wire import ECC_COUNTERS, EccEvent, GpuSample, NvlinkCounters, Observation, XidEvent
from sentinel.wire.identity import GpuIdentity, normalize_pci
from sentinel_agent.collectors.base import Context
from sentinel_agent.providers.base import GpuProvider, XidEventSource

log = logging.getLogger(__name__)

T = TypeVar("T")

_EVENT_WAIT_MS = 500  # how long the XID thread blocks in NVML before checking for stop


class GpuLost(Exception):
    pass


def _read(fn: Callable[[], T]) -> T | None:
    """A field this GPU cannot report is None; a lost GPU ends the whole sample."""
    try:
        return fn()
    except pynvml.NVMLError_GpuIsLost as exc:
        raise GpuLost from exc
    except pynvml.NVMLError_NotSupported:
        return None
    except pynvml.NVMLError as exc:
        log.debug("NVML read failed: %s", exc)
        return None


class _Names(TypedDict):
    gpu_index: int
    uuid: str | None
    pci_bus_id: str | None
    serial: str | None


def _names(gpu: GpuIdentity) -> _Names:
    """The names a sample gives its GPU, lost or not: those NVML reported when it was found."""
    return {
        "gpu_index": gpu.index,
        "uuid": gpu.uuid,
        "pci_bus_id": gpu.pci_bus_id,
        "serial": gpu.serial,
    }


class NvmlCollector:
    name = "nvml"

    def __init__(
        self, provider: GpuProvider, ctx: Context, *, interval_s: float, xid_events: bool = True
    ) -> None:
        self.interval_s = interval_s
        self._provider = provider
        self._ctx = ctx
        self._want_xid_events = xid_events
        self._count: int | None = None
        self._handles: dict[int, object] = {}
        # What NVML calls each GPU, read once per handle: every sample names it by all four.
        self._identity: dict[int, GpuIdentity] = {}
        self._previous: dict[int, GpuSample] = {}
        self._lost: set[int] = set()
        self._stop = threading.Event()
        self._xid_thread: threading.Thread | None = None

    @property
    def lost_gpus(self) -> frozenset[int]:
        """GPUs the last poll found lost (a simulator stops their ranks' heartbeats)."""
        return frozenset(self._lost)

    def _start(self) -> None:
        self._provider.init()
        self._count = self._provider.device_count()
        log.info("NVML sees %d GPUs", self._count)
        for index in range(self._count):
            try:
                self._handle(index)  # the event set needs the handles up front
            except (GpuLost, pynvml.NVMLError):
                continue  # reported as lost by the first poll
        if self._want_xid_events:
            self._xid_thread = threading.Thread(
                target=self._watch_xids, name=f"xid-events-{self._ctx.host_id}", daemon=True
            )
            self._xid_thread.start()

    def poll(self) -> Sequence[Observation]:
        if self._count is None:
            self._start()
        assert self._count is not None
        out: list[Observation] = []
        for index in range(self._count):
            was_lost = index in self._lost
            sample = self._sample(index)
            self._ctx.metrics.observe_gpu(sample)
            if sample.lost and not was_lost:
                self._ctx.emit([sample], critical=True)  # as urgent as an XID
            else:
                out.append(sample)
            out.extend(self._ecc_changes(sample))
            if not sample.lost:
                self._previous[index] = sample
                self._lost.discard(index)
        return out

    def _handle(self, index: int) -> object:
        if index not in self._handles:
            handle = self._provider.handle(index)
            uuid_ = _read(lambda: self._provider.uuid(handle))
            pci = _read(lambda: self._provider.pci_bus_id(handle))
            pci = normalize_pci(pci) if pci is not None else None
            # A board whose inforom holds no serial answers NotSupported, or an empty string.
            serial = (_read(lambda: self._provider.serial(handle)) or "").strip() or None
            self._identity[index] = GpuIdentity(index, pci, uuid_, serial)
            if pci is not None:
                self._ctx.state.gpu_by_pci[pci] = index
            self._handles[index] = handle
        return self._handles[index]

    def _sample(self, index: int) -> GpuSample:
        now = self._ctx.clock.now()
        try:
            handle = self._handle(index)
            p = self._provider
            rows = _read(lambda: p.remapped_rows(handle))
            nvlink = _read(lambda: p.nvlink_errors(handle))
            return GpuSample(
                id=uuid.uuid4(),
                observed_at=now,
                **_names(self._identity[index]),
                temperature_c=_read(lambda: p.temperature_c(handle)),
                power_w=_read(lambda: p.power_w(handle)),
                clock_event_reasons=_read(lambda: p.clock_event_reasons(handle)),
                utilization_pct=_read(lambda: p.utilization_pct(handle)),
                memory_used_bytes=_read(lambda: p.memory_used_bytes(handle)),
                ecc_volatile_corrected=_read(
                    lambda: p.ecc_errors(handle, uncorrected=False, aggregate=False)
                ),
                ecc_volatile_uncorrected=_read(
                    lambda: p.ecc_errors(handle, uncorrected=True, aggregate=False)
                ),
                ecc_aggregate_corrected=_read(
                    lambda: p.ecc_errors(handle, uncorrected=False, aggregate=True)
                ),
                ecc_aggregate_uncorrected=_read(
                    lambda: p.ecc_errors(handle, uncorrected=True, aggregate=True)
                ),
                remapped_rows_correctable=rows.correctable if rows else None,
                remapped_rows_uncorrectable=rows.uncorrectable if rows else None,
                remap_pending=rows.pending if rows else None,
                remap_failure=rows.failure if rows else None,
                retired_pages_sbe=_read(lambda: p.retired_pages(handle, double_bit=False)),
                retired_pages_dbe=_read(lambda: p.retired_pages(handle, double_bit=True)),
                nvlink=NvlinkCounters(
                    crc_flit=nvlink.crc_flit,
                    crc_data=nvlink.crc_data,
                    replay=nvlink.replay,
                    recovery=nvlink.recovery,
                )
                if nvlink
                else None,
                pcie_replay_count=_read(lambda: p.pcie_replay_count(handle)),
            )
        except (GpuLost, pynvml.NVMLError) as exc:
            # No handle, or GPU_IS_LOST: the GPU is gone whether or not an XID said so.
            self._handles.pop(index, None)
            # A lost GPU still goes by the names it had: its serial is what the RMA needs.
            gpu = self._identity.get(index, GpuIdentity(index))
            if index not in self._lost:
                log.error(
                    "GPU %d (%s, serial %s) is lost: %s",
                    index,
                    gpu.pci_bus_id,
                    gpu.serial,
                    exc.__cause__ or exc,
                )
                self._lost.add(index)
            return GpuSample(id=uuid.uuid4(), observed_at=now, **_names(gpu), lost=True)

    def _ecc_changes(self, sample: GpuSample) -> list[EccEvent]:
        before = self._previous.get(sample.gpu_index)
        if before is None or sample.lost:
            return []
        events = []
        for counter in ECC_COUNTERS:
            old, new = getattr(before, counter), getattr(sample, counter)
            if old is not None and new is not None and old != new:
                events.append(
                    EccEvent(
                        id=uuid.uuid4(),
                        observed_at=sample.observed_at,
                        gpu_index=sample.gpu_index,
                        pci_bus_id=sample.pci_bus_id,
                        counter=counter,
                        previous=int(old),
                        current=int(new),
                    )
                )
        return events

    # -- XID events, in their own thread ---------------------------------------------------

    def _watch_xids(self) -> None:
        failures = 0
        while not self._stop.is_set():
            source: XidEventSource | None = None
            try:
                source = self._provider.xid_events(dict(self._handles))
                failures = 0
                while not self._stop.is_set():
                    notice = source.wait(_EVENT_WAIT_MS)
                    if notice is not None:
                        self._on_xid(notice.gpu_index, notice.xid)
            except pynvml.NVMLError_NotSupported:
                log.info("NVML XID events are not supported here; relying on the kernel log")
                return
            except Exception:
                failures += 1
                self._ctx.metrics.collector_errors.labels("nvml_events").inc()
                log.exception("NVML XID event watch failed; retrying")
                self._stop.wait(min(60.0, 2.0**failures))
            finally:
                if source is not None:
                    with contextlib.suppress(pynvml.NVMLError):
                        source.close()

    def _on_xid(self, gpu_index: int, xid: int) -> None:
        pci = self._identity.get(gpu_index, GpuIdentity(gpu_index)).pci_bus_id
        log.warning("XID %d on GPU %d (%s)", xid, gpu_index, pci)
        self._ctx.metrics.observe_xid(gpu_index, xid)
        self._ctx.emit(
            [
                XidEvent(
                    id=uuid.uuid4(),
                    observed_at=self._ctx.clock.now(),
                    xid=xid,
                    gpu_index=gpu_index,
                    pci_bus_id=pci,
                    source="nvml",
                    message=f"XID {xid} reported by NVML event",
                )
            ]
        )

    def close(self) -> None:
        self._stop.set()
        if self._xid_thread is not None:
            self._xid_thread.join(timeout=2 * _EVENT_WAIT_MS / 1000 + 1)
        if self._count is not None:
            with contextlib.suppress(pynvml.NVMLError):
                self._provider.shutdown()
