"""The ECC counters the agent watches are GpuSample's fields, and an EccEvent names each."""

from __future__ import annotations

from sentinel.wire import ECC_COUNTERS, GpuSample


def test_each_counter_is_a_field_of_a_gpu_sample() -> None:
    assert len(ECC_COUNTERS) == 8
    assert set(ECC_COUNTERS) <= set(GpuSample.model_fields)
