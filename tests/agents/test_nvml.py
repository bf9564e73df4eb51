"""The NVML collector on the scripted fake: fields, unsupported ones, ECC changes, loss, XIDs."""

from __future__ import annotations

import time
from pathlib import Path

import pynvml
import pytest
from agent_helpers import SCENARIOS, context

from sentinel.wire import EccEvent, GpuSample, XidEvent
from sentinel_agent.clock import ManualClock
from sentinel_agent.collectors.nvml import NvmlCollector
from sentinel_agent.providers.fake import FakeProvider, Scenario


def _collector(
    scenario: Scenario, clock: ManualClock, xid_events: bool = False
) -> tuple[NvmlCollector, object]:
    ctx, sink = context(clock)
    return NvmlCollector(
        FakeProvider(scenario, clock), ctx, interval_s=10, xid_events=xid_events
    ), sink


def test_every_scenario_file_is_valid() -> None:
    names = {p.stem for p in SCENARIOS.glob("*.yaml")}
    assert names >= {
        "healthy",
        "xid79",
        "hbm_remap_failure",
        "gpu_lost",
        "nvlink_climb",
        "thermal_slowdown",
    }
    for path in SCENARIOS.glob("*.yaml"):
        Scenario.load(path)


def test_healthy_sample_has_every_field() -> None:
    clock = ManualClock()
    collector, _ = _collector(Scenario.load(SCENARIOS / "healthy.yaml"), clock)
    out = collector.poll()
    samples = [o for o in out if isinstance(o, GpuSample)]
    assert len(samples) == 8 and not any(s.lost for s in samples)
    s = samples[3]
    assert s.uuid and s.uuid.startswith("GPU-") and s.pci_bus_id == "00000000:5D:00.0"
    assert (s.temperature_c, s.power_w, s.utilization_pct) == (61, 540, 98)
    assert s.remapped_rows_uncorrectable == 0 and s.remap_failure is False
    assert s.nvlink is not None and s.pcie_replay_count == 0 and s.retired_pages_dbe == 0


def test_unsupported_fields_are_none() -> None:
    scenario = Scenario(gpus=1, unsupported=["retired_pages", "nvlink_errors", "remapped_rows"])
    collector, _ = _collector(scenario, ManualClock())
    (s,) = collector.poll()
    assert isinstance(s, GpuSample)
    assert s.retired_pages_sbe is None and s.nvlink is None and s.remap_pending is None
    assert s.temperature_c is not None and not s.lost


def test_fake_raises_the_bindings_own_errors() -> None:
    scenario = Scenario(
        gpus=1, unsupported=["power_w"], timeline=[{"at": 1, "gpu": 0, "lost": True}]
    )  # type: ignore[list-item]
    clock = ManualClock()
    fake = FakeProvider(scenario, clock)
    handle = fake.handle(0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.power_w(handle)
    clock.advance(1)
    with pytest.raises(pynvml.NVMLError_GpuIsLost) as err:
        fake.temperature_c(handle)
    assert err.value.value == pynvml.NVML_ERROR_GPU_IS_LOST


def test_hbm_errors_become_ecc_events() -> None:
    clock = ManualClock()
    collector, _ = _collector(Scenario.load(SCENARIOS / "hbm_remap_failure.yaml"), clock)
    collector.poll()
    clock.advance(3)
    out = collector.poll()
    changes = {
        (e.gpu_index, e.counter, e.previous, e.current) for e in out if isinstance(e, EccEvent)
    }
    assert changes == {
        (5, "ecc_volatile_uncorrected", 0, 1),
        (5, "remapped_rows_uncorrectable", 0, 1),
        (5, "remap_pending", 0, 1),
        (5, "remap_failure", 0, 1),
    }


def test_gpu_lost_without_xid_is_reported_at_once_and_keeps_its_identity() -> None:
    clock = ManualClock()
    ctx, sink = context(clock)
    collector = NvmlCollector(
        FakeProvider(Scenario.load(SCENARIOS / "gpu_lost.yaml"), clock),
        ctx,
        interval_s=10,
        xid_events=False,
    )
    first = collector.poll()
    uuid6 = next(s.uuid for s in first if isinstance(s, GpuSample) and s.gpu_index == 6)
    clock.advance(1.5)
    out = collector.poll()
    assert not any(isinstance(o, GpuSample) and o.lost for o in out)
    (lost,) = sink.critical  # emitted as critical, not left for the next batch
    assert isinstance(lost, GpuSample) and lost.lost and lost.gpu_index == 6
    assert lost.uuid == uuid6 and lost.temperature_c is None
    clock.advance(1)
    again = [o for o in collector.poll() if isinstance(o, GpuSample) and o.gpu_index == 6]
    assert again[0].lost and len(sink.critical) == 1  # still lost, no second alarm


def test_xid_arrives_through_the_event_thread_without_waiting_for_a_poll(
    tmp_path: Path,
) -> None:
    from sentinel_agent.clock import SystemClock

    ctx, sink = context()
    scenario = Scenario.load(SCENARIOS / "xid79.yaml")
    collector = NvmlCollector(
        FakeProvider(scenario, SystemClock()),
        ctx.__class__(
            host_id="h", clock=SystemClock(), emit=sink, metrics=ctx.metrics, state=ctx.state
        ),
        interval_s=60,
        xid_events=True,
    )
    started = time.monotonic()
    collector.poll()  # starts the event thread; no further polls
    deadline = time.monotonic() + 10
    while not sink.items and time.monotonic() < deadline:
        time.sleep(0.01)
    collector.close()
    (event,) = [o for o in sink.items if isinstance(o, XidEvent)]
    assert event.xid == 79 and event.gpu_index == 3 and event.source == "nvml"
    assert event.pci_bus_id == "00000000:5D:00.0"
    # Scripted at 1 s; the poll interval is 60 s, so only the event thread can be this quick.
    assert 0.9 <= time.monotonic() - started < 10.0


def test_nvlink_climb_and_thermal_slowdown_show_in_samples_and_metrics() -> None:
    clock = ManualClock()
    nv, _ = _collector(Scenario.load(SCENARIOS / "nvlink_climb.yaml"), clock)
    nv.poll()  # scenario time starts at the first NVML call
    clock.advance(3)
    gpu2 = next(o for o in nv.poll() if isinstance(o, GpuSample) and o.gpu_index == 2)
    assert gpu2.nvlink is not None and gpu2.nvlink.crc_flit == 7060
    clock2 = ManualClock()
    ctx, _ = context(clock2)
    th = NvmlCollector(
        FakeProvider(Scenario.load(SCENARIOS / "thermal_slowdown.yaml"), clock2),
        ctx,
        interval_s=10,
        xid_events=False,
    )
    th.poll()
    clock2.advance(2)
    gpu4 = next(o for o in th.poll() if isinstance(o, GpuSample) and o.gpu_index == 4)
    assert gpu4.temperature_c == 92 and gpu4.clock_event_reasons == (
        pynvml.nvmlClocksEventReasonSwThermalSlowdown
        | pynvml.nvmlClocksEventReasonHwThermalSlowdown
    )
    value = ctx.metrics.registry.get_sample_value(
        "sentinel_agent_gpu_temperature_celsius",
        {
            "gpu": "4",
            "uuid": gpu4.uuid or "",
            "pci_bus_id": gpu4.pci_bus_id or "",
            "hostname": "host-1",
        },
    )
    assert value == 92


def test_real_provider_without_a_driver_fails_like_nvml() -> None:
    from sentinel_agent.providers.nvml import NvmlProvider

    with pytest.raises(pynvml.NVMLError):
        NvmlProvider().init()


def test_every_sample_names_the_gpu_by_index_bus_id_uuid_and_serial() -> None:
    clock = ManualClock()
    collector, _ = _collector(Scenario.load(SCENARIOS / "xid79.yaml"), clock)
    samples = [o for o in collector.poll() if isinstance(o, GpuSample)]
    names = {(s.gpu_index, s.pci_bus_id, s.serial) for s in samples}
    assert (3, "00000000:5D:00.0", "1654922010104") in names
    assert len({s.serial for s in samples}) == len({s.uuid for s in samples}) == 8


def test_a_lost_gpu_still_goes_by_its_serial() -> None:
    # The RMA of a GPU that fell off the bus needs its serial; NVML cannot read it any more.
    clock = ManualClock()
    ctx, sink = context(clock)
    collector = NvmlCollector(
        FakeProvider(Scenario.load(SCENARIOS / "xid79.yaml"), clock), ctx, interval_s=10,
        xid_events=False,
    )  # fmt: skip
    collector.poll()
    clock.advance(2)
    collector.poll()
    (lost,) = [o for o in sink.critical if isinstance(o, GpuSample)]
    assert lost.lost and (lost.gpu_index, lost.serial) == (3, "1654922010104")
    assert lost.pci_bus_id == "00000000:5D:00.0" and lost.uuid


def test_a_board_without_a_serial_sends_none() -> None:
    scenario = Scenario(gpus=2, unsupported=["serial"])
    collector, _ = _collector(scenario, ManualClock())
    samples = [o for o in collector.poll() if isinstance(o, GpuSample)]
    assert [s.serial for s in samples] == [None, None]
    assert all(s.uuid and s.pci_bus_id for s in samples)


def test_fake_serials_are_stable_13_digit_numbers_unless_the_scenario_names_them() -> None:
    scenario = Scenario(gpus=3, serials=["1320220012345"])
    one, two = (FakeProvider(scenario, ManualClock(), seed="h1") for _ in range(2))
    serials = [one.serial(one.handle(i)) for i in range(3)]
    assert serials == [two.serial(two.handle(i)) for i in range(3)]
    assert serials[0] == "1320220012345"
    assert all(len(s) == 13 and s.isdigit() for s in serials) and len(set(serials)) == 3
    with pytest.raises(ValueError, match="serials"):
        Scenario(gpus=1, serials=["1", "2"])
