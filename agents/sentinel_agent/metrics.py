"""The agent's Prometheus metrics, on its own registry.

Two namings of the GPU gauges (metrics.mode in the config):

- `sentinel` (the default): the agent's own names, `sentinel_agent_gpu_*` in base units, with
  labels gpu, uuid, pci_bus_id, hostname, served on the agent's own port (8601). A host that
  also runs dcgm-exporter (9400, DCGM_FI_*) keeps both: no port clash, no two series of one
  name from two exporters.
- `replace-dcgm-exporter`: dcgm-exporter's names and labels (DCGM_FI_*, gpu, UUID, pci_bus_id,
  Hostname; its default-counters.csv) on its port, 9400, so that dashboards and alert rules
  written for dcgm-exporter work unchanged on hosts that run the agent instead of it.

The agent's own health metrics (outbox, sends, collectors) are `sentinel_agent_*` in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from sentinel.wire import GpuSample

MetricsMode = Literal["sentinel", "replace-dcgm-exporter"]
SENTINEL: Final = "sentinel"
REPLACE_DCGM_EXPORTER: Final = "replace-dcgm-exporter"
# The default port of each mode: the agent's own (not dcgm-exporter's 9400, node-exporter's
# 9100 or the Sentinel service's 8600), or dcgm-exporter's where the agent takes its place.
DEFAULT_PORT: Final[dict[str, int]] = {SENTINEL: 8601, REPLACE_DCGM_EXPORTER: 9400}
GPU_LABELS: Final[dict[str, tuple[str, str, str, str]]] = {
    SENTINEL: ("gpu", "uuid", "pci_bus_id", "hostname"),
    REPLACE_DCGM_EXPORTER: ("gpu", "UUID", "pci_bus_id", "Hostname"),
}
MiB = 1024 * 1024


@dataclass(frozen=True)
class GpuGauge:
    """A GpuSample field as a gauge: its own name (base units) and dcgm-exporter's (whose unit
    may differ: dcgm_scale converts the sample's value to it)."""

    field: str
    name: str
    dcgm: str
    help: str
    dcgm_scale: float = 1.0

    def metric(self, mode: str) -> str:
        return self.name if mode == SENTINEL else self.dcgm

    def scale(self, mode: str) -> float:
        return 1.0 if mode == SENTINEL else self.dcgm_scale


def _g(field: str, name: str, dcgm: str, help: str, dcgm_scale: float = 1.0) -> GpuGauge:
    return GpuGauge(field, f"sentinel_agent_gpu_{name}", dcgm, help, dcgm_scale)


# Sample field -> metric. dcgm-exporter's name wherever it has one (its default-counters.csv).
GPU_GAUGES: tuple[GpuGauge, ...] = (
    _g("temperature_c", "temperature_celsius", "DCGM_FI_DEV_GPU_TEMP", "GPU temperature (C)."),
    _g("power_w", "power_watts", "DCGM_FI_DEV_POWER_USAGE", "Power draw (W)."),
    _g("utilization_pct", "utilization_percent", "DCGM_FI_DEV_GPU_UTIL", "GPU utilization (%)."),
    _g(
        "memory_used_bytes",
        "memory_used_bytes",
        "DCGM_FI_DEV_FB_USED",
        "Framebuffer memory used (bytes; dcgm-exporter's name: MiB).",
        1 / MiB,
    ),
    _g(
        "clock_event_reasons",
        "clock_event_reasons",
        "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
        "Current clock event (throttle) reasons, NVML bitmask.",
    ),
    _g(
        "ecc_volatile_corrected",
        "ecc_volatile_corrected_errors",
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "Single-bit (corrected) volatile ECC errors since the driver loaded.",
    ),
    _g(
        "ecc_volatile_uncorrected",
        "ecc_volatile_uncorrected_errors",
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "Double-bit (uncorrected) volatile ECC errors since the driver loaded.",
    ),
    _g(
        "ecc_aggregate_corrected",
        "ecc_aggregate_corrected_errors",
        "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
        "Single-bit (corrected) ECC errors over the GPU's life.",
    ),
    _g(
        "ecc_aggregate_uncorrected",
        "ecc_aggregate_uncorrected_errors",
        "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
        "Double-bit (uncorrected) ECC errors over the GPU's life.",
    ),
    _g(
        "remapped_rows_correctable",
        "remapped_rows_correctable",
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        "Rows remapped for correctable errors.",
    ),
    _g(
        "remapped_rows_uncorrectable",
        "remapped_rows_uncorrectable",
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "Rows remapped for uncorrectable errors.",
    ),
    _g(
        "remap_pending",
        "row_remap_pending",
        "DCGM_FI_DEV_ROW_REMAP_PENDING",
        "Whether a row remapping is pending (1) or not (0).",
    ),
    _g(
        "remap_failure",
        "row_remap_failure",
        "DCGM_FI_DEV_ROW_REMAP_FAILURE",
        "Whether remapping of rows has failed (1) or not (0).",
    ),
    _g(
        "retired_pages_sbe",
        "retired_pages_sbe",
        "DCGM_FI_DEV_RETIRED_SBE",
        "Pages retired for single-bit errors.",
    ),
    _g(
        "retired_pages_dbe",
        "retired_pages_dbe",
        "DCGM_FI_DEV_RETIRED_DBE",
        "Pages retired for double-bit errors.",
    ),
    _g(
        "pcie_replay_count",
        "pcie_replays",
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        "PCIe retries.",
    ),
)

NVLINK_GAUGES: tuple[GpuGauge, ...] = (
    _g(
        "crc_flit",
        "nvlink_crc_flit_errors",
        "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
        "NVLink flow-control CRC errors, all links.",
    ),
    _g(
        "crc_data",
        "nvlink_crc_data_errors",
        "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
        "NVLink data CRC errors, all links.",
    ),
    _g(
        "replay",
        "nvlink_replay_errors",
        "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
        "NVLink retries, all links.",
    ),
    _g(
        "recovery",
        "nvlink_recovery_errors",
        "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
        "NVLink recovery errors, all links.",
    ),
)
XID_GAUGE = _g("xid", "last_xid", "DCGM_FI_DEV_XID_ERRORS", "The last XID error of the GPU.")


class AgentMetrics:
    def __init__(self, hostname: str, mode: MetricsMode = SENTINEL) -> None:
        self.hostname = hostname
        self.mode = mode
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        labels = GPU_LABELS[mode]

        def gauge(spec: GpuGauge) -> tuple[float, Gauge]:
            return spec.scale(mode), Gauge(spec.metric(mode), spec.help, labels, registry=r)

        self._gpu = {g.field: gauge(g) for g in GPU_GAUGES}
        self._nvlink = {g.field: gauge(g) for g in NVLINK_GAUGES}
        _, self.xid = gauge(XID_GAUGE)
        self.gpu_lost = Gauge(
            "sentinel_agent_gpu_lost",
            "1 when NVML reports the GPU lost or its handle fails.",
            labels,
            registry=r,
        )
        self.outbox_depth = Gauge(
            "sentinel_agent_outbox_depth", "Observations on disk not yet acknowledged.", registry=r
        )
        self.outbox_bytes = Gauge(
            "sentinel_agent_outbox_bytes", "Bytes of queued JSON in the outbox.", registry=r
        )
        self.send_failures = Counter(
            "sentinel_agent_send_failures", "Batch sends that were not acknowledged.", registry=r
        )
        self.batches_sent = Counter(
            "sentinel_agent_batches_sent", "Batches the service acknowledged.", registry=r
        )
        self.dead_letters = Counter(
            "sentinel_agent_dead_letters",
            "Batches refused as poison (moved to dead letters).",
            registry=r,
        )
        self.seq_conflicts = Counter(
            "sentinel_agent_seq_conflicts",
            "Batches dead-lettered because the service holds their sequence number for other "
            "content: another agent posting as this host, or an outbox restored from a copy.",
            registry=r,
        )
        self.collector_errors = Counter(
            "sentinel_agent_collector_errors",
            "Collector runs that raised.",
            ["collector"],
            registry=r,
        )
        self.dropped_samples = Counter(
            "sentinel_agent_dropped_samples",
            "Periodic samples dropped because the outbox (or the memory held for it) was full.",
            registry=r,
        )
        self.outbox_write_errors = Counter(
            "sentinel_agent_outbox_write_errors",
            "Outbox writes that failed (a full or failing disk); each was rolled back.",
            registry=r,
        )
        self.outbox_degraded = Gauge(
            "sentinel_agent_outbox_degraded",
            "1 while the outbox refuses writes or observations wait in memory for it.",
            registry=r,
        )
        self.spilled = Gauge(
            "sentinel_agent_spilled_observations",
            "Observations held in memory because the outbox refused to store them.",
            registry=r,
        )
        self.dropped_events = Counter(
            "sentinel_agent_dropped_events",
            "Events (XIDs, log lines...) dropped because the outbox refused writes for so long "
            "that the memory held for them was full.",
            registry=r,
        )
        self.batches_split = Counter(
            "sentinel_agent_batches_split",
            "Batches the service refused as too large or invalid, resent as two halves.",
            registry=r,
        )
        self.heartbeats_bad = Counter(
            "sentinel_agent_heartbeats_rejected",
            "Heartbeat datagrams that could not be parsed.",
            registry=r,
        )
        self._gpu_labels: dict[int, tuple[str, str, str, str]] = {}

    def _labels(self, sample: GpuSample) -> tuple[str, str, str, str]:
        known = self._gpu_labels.get(sample.gpu_index)
        if sample.uuid is None and known is not None:
            return known  # a lost GPU keeps the labels it had while it answered
        labels = (str(sample.gpu_index), sample.uuid or "", sample.pci_bus_id or "", self.hostname)
        self._gpu_labels[sample.gpu_index] = labels
        return labels

    def observe_gpu(self, sample: GpuSample) -> None:
        labels = self._labels(sample)
        self.gpu_lost.labels(*labels).set(1 if sample.lost else 0)
        for field, (scale, gauge) in self._gpu.items():
            value = getattr(sample, field)
            if value is not None:
                gauge.labels(*labels).set(float(value) * scale)
        if sample.nvlink is not None:
            for field, (scale, gauge) in self._nvlink.items():
                gauge.labels(*labels).set(float(getattr(sample.nvlink, field)) * scale)

    def observe_xid(self, gpu_index: int, xid: int) -> None:
        labels = self._gpu_labels.get(gpu_index, (str(gpu_index), "", "", self.hostname))
        self.xid.labels(*labels).set(xid)

    def serve(self, address: str, port: int) -> None:
        start_http_server(port, addr=address, registry=self.registry)
