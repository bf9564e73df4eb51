"""One agent: collectors feeding the outbox, a sender draining it, metrics beside them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import uuid
from collections.abc import Mapping, Sequence

import httpx
import pydantic

from sentinel.wire import CRITICAL_KINDS, AgentStatus, LogRecord, Observation
from sentinel.wire.severity import Severity
from sentinel_agent import __version__
from sentinel_agent.advice import AdviceBoard, http_fetcher
from sentinel_agent.clock import Clock, SystemClock
from sentinel_agent.collectors.base import Collector, Context, HostState, Positioned
from sentinel_agent.collectors.cloud import CloudMaintenanceCollector
from sentinel_agent.collectors.cloud import connect as cloud_metadata
from sentinel_agent.collectors.dcgm import DcgmDiagCollector, DcgmHealthCollector, dcgmi_installed
from sentinel_agent.collectors.devlink import DevlinkHealthCollector, devlink_installed
from sentinel_agent.collectors.edac import EdacCollector
from sentinel_agent.collectors.flight_recorder import FlightRecorderCollector
from sentinel_agent.collectors.heartbeat import HeartbeatCollector
from sentinel_agent.collectors.infiniband import InfinibandCollector
from sentinel_agent.collectors.ipmi import (
    IpmiSelCollector,
    IpmiSensorCollector,
    ipmitool_installed,
    local_bmc_present,
)
from sentinel_agent.collectors.kernel_log import KernelLogCollector
from sentinel_agent.collectors.logs import LogOptions
from sentinel_agent.collectors.mcelog import McelogCollector
from sentinel_agent.collectors.nvml import NvmlCollector
from sentinel_agent.collectors.rasdaemon import RasdaemonCollector
from sentinel_agent.collectors.redfish import Credentials, RedfishCollector, connect
from sentinel_agent.collectors.spool import SpoolCollector, spool_dir
from sentinel_agent.collectors.training_log import TrainingLogCollector
from sentinel_agent.config import AgentConfig, KernelLogConfig, TrainingLogsConfig
from sentinel_agent.metrics import AgentMetrics
from sentinel_agent.providers.base import GpuProvider
from sentinel_agent.transport.outbox import WRITE_ERRORS, Outbox, OutboxBusy, Row, encode
from sentinel_agent.transport.sender import OUTBOX_RETRY_S, Backoff, Sender
from sentinel_agent.transport.spill import Spill

log = logging.getLogger(__name__)

# A collector that keeps failing is retried at its interval doubled per failure, up to this.
MAX_COLLECTOR_BACKOFF_S = 300.0
# How AgentStatus names the outbox among the collectors: failing while it refuses writes.
OUTBOX_COMPONENT = "outbox"


def _urgent(observation: Observation) -> bool:
    """XIDs, and log lines whose pattern is critical (a GPU off the bus, an uncorrectable
    DIMM error, a watchdog timeout): the job is likely down, so triage should know now."""
    return observation.kind in CRITICAL_KINDS or (
        isinstance(observation, LogRecord) and observation.severity == Severity.CRITICAL
    )


def _log_options(section: KernelLogConfig | TrainingLogsConfig) -> LogOptions:
    """How a log collector reads, as its section of the configuration says."""
    return {"from_start": section.from_start, "unmatched": section.unmatched.limit()}


class ConfigError(Exception):
    """The configuration is valid YAML but names something unusable (a bad scenario file)."""


def make_provider(config: AgentConfig, clock: Clock) -> GpuProvider:
    nvml = config.collectors.nvml
    if nvml.provider == "fake":
        from sentinel_agent.providers.fake import FakeProvider, Scenario

        assert nvml.scenario is not None
        try:
            scenario = Scenario.load(nvml.scenario)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"collectors.nvml.scenario: {exc}") from exc
        return FakeProvider(scenario, clock, seed=config.host_id)
    from sentinel_agent.providers.nvml import NvmlProvider

    return NvmlProvider()


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Clock | None = None,
        provider: GpuProvider | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = AgentMetrics(config.host_id, config.metrics.mode)
        self.state = HostState()
        try:
            self.token = config.service.read_token()
        except OSError as exc:
            raise ConfigError(f"service.token_file: {exc}") from exc
        try:
            self.outbox = Outbox(
                config.outbox.path,
                host_id=config.host_id,
                clock=self.clock,
                max_bytes=config.outbox.max_bytes,
                max_batch_observations=config.outbox.max_batch_observations,
                max_batch_bytes=config.outbox.max_batch_bytes,
                metrics=self.metrics,
            )
            saved_positions = self.outbox.positions()
        except (OutboxBusy, OSError, sqlite3.Error) as exc:
            raise ConfigError(f"outbox.path: {exc}") from exc
        # What the outbox refused to store (a full disk) waits here, in order, for it.
        self._spill = Spill(config.outbox.spill_max_bytes)
        self._store_lock = threading.Lock()
        self.metrics.outbox_degraded.set_function(lambda: float(self.degraded))
        self.metrics.spilled.set_function(lambda: len(self._spill.rows))
        self._stored_positions: dict[str, str | None] = dict(saved_positions)
        # Only the flight-recorder watcher uploads; a simulated fleet runs without one.
        self._upload_client: httpx.Client | None = None
        self._advice_client: httpx.Client | None = None
        self._sender: Sender | None = None
        self._failing: dict[str, int] = {}
        self.collectors = self._build_collectors(provider, saved_positions)

    def _build_collectors(
        self, provider: GpuProvider | None, positions: Mapping[str, str]
    ) -> list[Collector]:
        c, i = self.config.collectors, self.config.intervals
        ctx = Context(
            host_id=self.config.host_id,
            clock=self.clock,
            emit=self.emit,
            metrics=self.metrics,
            state=self.state,
            positions=positions,
        )
        out: list[Collector] = []
        if c.nvml.enabled:
            out.append(
                NvmlCollector(
                    provider or make_provider(self.config, self.clock),
                    ctx,
                    interval_s=i.gpu_s,
                    xid_events=c.nvml.xid_events,
                )
            )
        if c.kernel_log.enabled:
            kernel, options = c.kernel_log, _log_options(c.kernel_log)
            out.append(KernelLogCollector(ctx, path=kernel.path, interval_s=i.logs_s, **options))
        if c.training_logs.enabled:
            paths, options = c.training_logs.paths, _log_options(c.training_logs)
            out.append(TrainingLogCollector(ctx, paths=paths, interval_s=i.logs_s, **options))
        if c.heartbeat.enabled:
            # The service's advice for the jobs beating here, passed on in the replies.
            advice_client = httpx.Client(timeout=self.config.service.timeout_s)
            self._advice_client = advice_client
            board = AdviceBoard(
                http_fetcher(advice_client, self.config.service.base_url, self.token)
            )
            out.append(
                HeartbeatCollector(
                    ctx, address=c.heartbeat.address, interval_s=i.heartbeat_s, advice=board
                )
            )
        if c.flight_recorder.enabled:
            fr = c.flight_recorder
            client = httpx.Client(timeout=max(60.0, self.config.service.timeout_s))
            self._upload_client = client
            out.append(
                FlightRecorderCollector(
                    ctx,
                    outbox=self.outbox,
                    client=client,
                    base_url=self.config.service.base_url,
                    token=self.token,
                    prefix=fr.prefix,
                    max_bytes=fr.max_bytes,
                    settle_s=fr.settle_s,
                    interval_s=i.flight_recorder_s,
                    job_id=fr.job_id,
                )
            )
        out.extend(self._hardware_collectors(ctx))
        # What the Slurm epilog (another process) leaves for the agent to send.
        out.append(SpoolCollector(folder=spool_dir(self.config.outbox.path), interval_s=i.logs_s))
        return out

    def _hardware_collectors(self, ctx: Context) -> list[Collector]:
        """The sources of machine checks, memory errors and link faults; each one absent on
        this host (no rasdaemon, no mcelog, no HCA) simply finds nothing."""
        c, every = self.config.collectors, self.config.intervals.hardware_s
        out: list[Collector] = []
        if c.rasdaemon.enabled:
            out.append(
                RasdaemonCollector(
                    ctx, path=c.rasdaemon.path, interval_s=every, from_start=c.rasdaemon.from_start
                )
            )
        if c.mcelog.enabled:
            out.append(
                McelogCollector(
                    ctx, path=c.mcelog.path, interval_s=every, from_start=c.mcelog.from_start
                )
            )
        if c.edac.enabled:
            out.append(EdacCollector(ctx, root=c.edac.root, interval_s=every))
        if c.infiniband.enabled:
            out.append(
                InfinibandCollector(
                    ctx,
                    root=c.infiniband.root,
                    interval_s=every,
                    thresholds=c.infiniband.thresholds,
                    window_s=c.infiniband.window_s,
                )
            )
        if c.devlink.enabled:
            if devlink_installed():
                out.append(DevlinkHealthCollector(ctx, interval_s=every))
            else:
                log.info("devlink is not installed: no mlx5 health reporters")
        if c.redfish.enabled:
            out.append(self._redfish(ctx))
        if c.ipmi.enabled:
            if not ipmitool_installed():
                log.info("ipmitool is not installed: no BMC event log over IPMI")
            elif c.ipmi.host is None and not local_bmc_present():
                log.info("no /dev/ipmi0 (ipmi_devintf not loaded, or no BMC): no IPMI SEL")
            else:
                out.append(
                    IpmiSelCollector(
                        ctx, bmc=c.ipmi.bmc(), interval_s=every, from_start=c.ipmi.from_start
                    )
                )
                if c.ipmi.sensors_s > 0:
                    out.append(
                        IpmiSensorCollector(ctx, bmc=c.ipmi.bmc(), interval_s=c.ipmi.sensors_s)
                    )
        if c.dcgm.enabled:
            if not dcgmi_installed():
                log.info("dcgmi is not installed: no DCGM health watches")
            else:
                out.append(DcgmHealthCollector(ctx, interval_s=c.dcgm.health_s))
                if c.dcgm.diag_s:
                    out.append(DcgmDiagCollector(ctx, interval_s=c.dcgm.diag_s))
        if c.cloud.enabled:
            assert c.cloud.provider is not None  # the config checks
            client = cloud_metadata(
                c.cloud.provider,
                str(c.cloud.endpoint) if c.cloud.endpoint else None,
                timeout_s=c.cloud.timeout_s,
            )
            out.append(
                CloudMaintenanceCollector(
                    ctx, provider=c.cloud.provider, client=client, interval_s=c.cloud.interval_s
                )
            )
        return out

    def _redfish(self, ctx: Context) -> RedfishCollector:
        rf = self.config.collectors.redfish
        assert rf.url is not None and rf.credentials_file is not None  # the config checks
        client = connect(
            str(rf.url),
            Credentials.read(rf.credentials_file),
            ca_bundle=rf.ca_bundle,
            insecure=rf.insecure,
            timeout_s=rf.timeout_s,
        )
        return RedfishCollector(
            ctx, client=client, interval_s=self.config.intervals.redfish_s, from_start=rf.from_start
        )

    def emit(self, observations: Sequence[Observation], *, critical: bool = False) -> None:
        """Durably queue observations; wake the sender for critical ones. Thread-safe."""
        if observations:
            self._store(
                encode(observations), {}, urgent=critical or any(map(_urgent, observations))
            )

    def _store(
        self, rows: Sequence[Row], positions: Mapping[str, str | None], *, urgent: bool
    ) -> None:
        """Write rows and read positions to the outbox, or hold them while it refuses.

        Never raises for a failing disk: a collector's lines must not be lost because the
        outbox could not take them (their positions wait with them, so a crash meanwhile
        makes the collector read them again).
        """
        with self._store_lock:
            changed = {k: v for k, v in positions.items() if self._stored_positions.get(k) != v}
            if not rows and not changed:
                return
            if self._spill:  # older observations wait in memory: keep the order
                self._hold(rows, changed, urgent=urgent)
                return
            try:
                dropped = self.outbox.write(rows, changed)
            except WRITE_ERRORS:  # logged and counted by the outbox
                self._hold(rows, changed, urgent=urgent)
                return
            self._stored_positions.update(changed)
        if dropped:
            self.metrics.dropped_samples.inc(dropped)
        self.metrics.outbox_depth.set(self.outbox.depth)
        if urgent and self._sender is not None:
            self._sender.wake()

    def _hold(
        self, rows: Sequence[Row], positions: Mapping[str, str | None], *, urgent: bool
    ) -> None:
        dropped = self._spill.add(rows, positions, urgent=urgent)
        if dropped.samples:
            self.metrics.dropped_samples.inc(dropped.samples)
        if dropped.events:
            self.metrics.dropped_events.inc(dropped.events)
            log.error(
                "the outbox has refused writes for so long that %d events did not fit in the "
                "%d bytes held for it in memory: they are lost",
                dropped.events,
                self._spill.max_bytes,
            )

    def _write_spill(self) -> None:
        """Try to store what waits in memory; on success the agent is healthy again."""
        with self._store_lock:
            if not self._spill:
                return
            spill = self._spill
            try:
                self.outbox.write(
                    spill.rows, spill.positions, dropped_elsewhere=spill.dropped_samples
                )
            except WRITE_ERRORS:
                return
            log.warning(
                "outbox %s stored the %d observations held in memory while it refused writes",
                self.config.outbox.path,
                len(spill.rows),
            )
            self._stored_positions.update(spill.positions)
            urgent = spill.urgent
            spill.clear()
        self.metrics.outbox_depth.set(self.outbox.depth)
        if urgent and self._sender is not None:
            self._sender.wake()

    @property
    def degraded(self) -> bool:
        """The outbox refuses writes, or observations wait in memory for it."""
        return self.outbox.refusing_writes or bool(self._spill)

    def status(self) -> AgentStatus:
        names = [c.name for c in self.collectors]
        failing = {n for n in names if n in self._failing}
        if self.degraded:
            failing.add(OUTBOX_COMPONENT)
        return AgentStatus(
            id=uuid.uuid4(),
            observed_at=self.clock.now(),
            version=__version__,
            collectors_ok=[n for n in [*names, OUTBOX_COMPONENT] if n not in failing],
            collectors_failing=[n for n in [*names, OUTBOX_COMPONENT] if n in failing],
            outbox_depth=self.outbox.depth,
            outbox_dropped_samples=self.outbox.dropped_samples + self._spill.dropped_samples,
        )

    @staticmethod
    def _poll(collector: Collector) -> tuple[Sequence[Observation], Mapping[str, str | None]]:
        observations = collector.poll()
        positions = collector.positions() if isinstance(collector, Positioned) else {}
        return observations, positions

    async def _run_collector(self, collector: Collector, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                observations, positions = await asyncio.to_thread(self._poll, collector)
                self._store(encode(observations), positions, urgent=any(map(_urgent, observations)))
                if failures:
                    log.info("collector %s recovered after %d failures", collector.name, failures)
                failures = 0
                self._failing.pop(collector.name, None)
                delay = collector.interval_s
            except Exception:
                failures += 1
                self._failing[collector.name] = failures
                self.metrics.collector_errors.labels(collector.name).inc()
                delay = min(MAX_COLLECTOR_BACKOFF_S, collector.interval_s * 2**failures)
                log.exception(
                    "collector %s failed (%d in a row); retrying in %.0f s",
                    collector.name,
                    failures,
                    delay,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def _retry_spill(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self._spill:
                await asyncio.to_thread(self._write_spill)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=OUTBOX_RETRY_S)

    async def _report_status(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self.emit([self.status()])
            except (OSError, pydantic.ValidationError):
                log.exception("could not queue the agent status")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.config.intervals.status_s)

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.config
        if cfg.metrics.enabled:
            try:
                self.metrics.serve(cfg.metrics.address, cfg.metrics.port)
            except OSError as exc:
                log.error(
                    "metrics server on %s:%d failed: %s", cfg.metrics.address, cfg.metrics.port, exc
                )
        timeout = httpx.Timeout(cfg.service.timeout_s)
        async with httpx.AsyncClient(timeout=timeout) as client:
            self._sender = Sender(
                self.outbox,
                client,
                base_url=cfg.service.base_url,
                token=self.token,
                clock=self.clock,
                metrics=self.metrics,
                send_interval_s=cfg.intervals.send_s,
                backoff=Backoff(cfg.outbox.backoff_initial_s, cfg.outbox.backoff_max_s),
                compress=cfg.service.compress,
            )
            log.info(
                "agent %s started: %d collectors, service %s, outbox %s (%d waiting)",
                cfg.host_id,
                len(self.collectors),
                cfg.service.base_url,
                cfg.outbox.path,
                self.outbox.depth,
            )
            sender = asyncio.create_task(self._sender.run(), name="sender")
            tasks = [
                asyncio.create_task(self._report_status(stop), name="status"),
                asyncio.create_task(self._retry_spill(stop), name="spill"),
            ]
            tasks += [
                asyncio.create_task(self._run_collector(c, stop), name=c.name)
                for c in self.collectors
            ]
            await stop.wait()
            # Collectors finish their current poll first, so the sender's final drain
            # includes what they saw last.
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(self._write_spill)
            self._sender.stop()
            await asyncio.gather(sender, return_exceptions=True)
            self._sender = None
        for collector in self.collectors:
            try:
                await asyncio.to_thread(collector.close)
            except Exception:
                log.exception("closing collector %s failed", collector.name)
        if self._upload_client is not None:
            self._upload_client.close()
        if self._advice_client is not None:
            self._advice_client.close()
        if self._spill:
            # Lines behind them are read again at the next start (their positions were not
            # stored either); other observations are lost.
            log.error(
                "stopping with %d observations the outbox never accepted", len(self._spill.rows)
            )
        # Closing checkpoints the WAL (fsyncs): off the event loop, so that agents sharing one
        # (the demo's, a simulated fleet) close their outboxes at once, not one by one.
        await asyncio.to_thread(self.outbox.close)
        log.info("agent %s stopped", cfg.host_id)
