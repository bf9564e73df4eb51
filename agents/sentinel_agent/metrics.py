"""The agent's Prometheus metrics, on its own registry.

GPU gauges carry dcgm-exporter's names and labels (gpu, UUID, pci_bus_id, Hostname), so
dashboards and alert rules written for dcgm-exporter work on Sentinel hosts unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from sentinel.wire import GpuSample

GPU_LABELS = ("gpu", "UUID", "pci_bus_id", "Hostname")
MiB = 1024 * 1024


@dataclass(frozen=True)
class GpuGauge:
    metric: str
    field: str
    help: str
    scale: float = 1.0


# Sample field -> metric. dcgm-exporter's name wherever it has one (its default-counters.csv).
GPU_GAUGES: tuple[GpuGauge, ...] = (
    GpuGauge("DCGM_FI_DEV_GPU_TEMP", "temperature_c", "GPU temperature (in C)."),
    GpuGauge("DCGM_FI_DEV_POWER_USAGE", "power_w", "Power draw (in W)."),
    GpuGauge("DCGM_FI_DEV_GPU_UTIL", "utilization_pct", "GPU utilization (in %)."),
    GpuGauge(
        "DCGM_FI_DEV_FB_USED", "memory_used_bytes", "Framebuffer memory used (in MiB).", 1 / MiB
    ),
    GpuGauge(
        "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
        "clock_event_reasons",
        "Current clock event (throttle) reasons, NVML bitmask.",
    ),
    GpuGauge(
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "ecc_volatile_corrected",
        "Total number of single-bit volatile ECC errors.",
    ),
    GpuGauge(
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "ecc_volatile_uncorrected",
        "Total number of double-bit volatile ECC errors.",
    ),
    GpuGauge(
        "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
        "ecc_aggregate_corrected",
        "Total number of single-bit persistent ECC errors.",
    ),
    GpuGauge(
        "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
        "ecc_aggregate_uncorrected",
        "Total number of double-bit persistent ECC errors.",
    ),
    GpuGauge(
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        "remapped_rows_correctable",
        "Number of remapped rows for correctable errors.",
    ),
    GpuGauge(
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "remapped_rows_uncorrectable",
        "Number of remapped rows for uncorrectable errors.",
    ),
    GpuGauge(
        "DCGM_FI_DEV_ROW_REMAP_PENDING",
        "remap_pending",
        "Whether a row remapping is pending (1) or not (0).",
    ),
    GpuGauge(
        "DCGM_FI_DEV_ROW_REMAP_FAILURE",
        "remap_failure",
        "Whether remapping of rows has failed (1) or not (0).",
    ),
    GpuGauge(
        "DCGM_FI_DEV_RETIRED_SBE",
        "retired_pages_sbe",
        "Total number of retired pages due to single-bit errors.",
    ),
    GpuGauge(
        "DCGM_FI_DEV_RETIRED_DBE",
        "retired_pages_dbe",
        "Total number of retired pages due to double-bit errors.",
    ),
    GpuGauge(
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "pcie_replay_count", "Total number of PCIe retries."
    ),
)

NVLINK_GAUGES: tuple[GpuGauge, ...] = (
    GpuGauge(
        "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
        "crc_flit",
        "Total number of NVLink flow-control CRC errors.",
    ),
    GpuGauge(
        "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
        "crc_data",
        "Total number of NVLink data CRC errors.",
    ),
    GpuGauge(
        "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", "replay", "Total number of NVLink retries."
    ),
    GpuGauge(
        "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
        "recovery",
        "Total number of NVLink recovery errors.",
    ),
)


class AgentMetrics:
    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._gpu = {
            g.field: (g, Gauge(g.metric, g.help, GPU_LABELS, registry=r)) for g in GPU_GAUGES
        }
        self._nvlink = {
            g.field: (g, Gauge(g.metric, g.help, GPU_LABELS, registry=r)) for g in NVLINK_GAUGES
        }
        self.xid = Gauge(
            "DCGM_FI_DEV_XID_ERRORS",
            "Value of the last XID error encountered.",
            GPU_LABELS,
            registry=r,
        )
        self.gpu_lost = Gauge(
            "sentinel_agent_gpu_lost",
            "1 when NVML reports the GPU lost or its handle fails.",
            GPU_LABELS,
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
        for field, (spec, gauge) in self._gpu.items():
            value = getattr(sample, field)
            if value is not None:
                gauge.labels(*labels).set(float(value) * spec.scale)
        if sample.nvlink is not None:
            for field, (spec, gauge) in self._nvlink.items():
                gauge.labels(*labels).set(float(getattr(sample.nvlink, field)) * spec.scale)

    def observe_xid(self, gpu_index: int, xid: int) -> None:
        labels = self._gpu_labels.get(gpu_index, (str(gpu_index), "", "", self.hostname))
        self.xid.labels(*labels).set(xid)

    def serve(self, address: str, port: int) -> None:
        start_http_server(port, addr=address, registry=self.registry)
