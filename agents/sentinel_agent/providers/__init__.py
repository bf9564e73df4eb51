"""GPU hardware behind a protocol: the real NVML binding and a scripted fake."""
