"""How much CPU and memory the node agent costs on a busy GPU host.

Runs the real agent (``python -m sentinel_agent run``) as a subprocess with 8 fake GPUs, a training
log receiving --lines-per-s lines (1% of them NCCL warnings, the rest chatter), 8 ranks
beating twice a second, the flight-recorder watcher, /metrics, the hardware collectors on
trees laid out as a big host's (rasdaemon's database, an mcelog log, EDAC with 2 memory
controllers of 16 DIMMs, 8 InfiniBand ports with their counters; the InfiniBand counters
rise every second) and a stand-in service that acknowledges every batch. devlink is polled
only where the tool and the kernel have it. Two phases share the --seconds budget:

1. every collector at a 1 s interval (8 GPUs sampled per second, a batch per second);
2. the defaults (GPUs every 10 s, batches every 5 s), same log and heartbeat load.

CPU is utime+stime from /proc/PID/stat over the phase (after a warm-up), as % of one core;
RSS from /proc/PID/status. Targets: < 1% of one core at the defaults, < 100 MiB RSS.

    .venv/bin/python benchmarks/agent_overhead.py --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sentinel_agent.heartbeat import Heartbeat  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
WARMUP_S = 3.0
NCCL_WARN = (
    "gpu-0042:881:1020 [3] misc/socket.cc:484 NCCL WARN socketStartConnect: "
    "Connect to 10.1.4.22<40427> failed : Software caused connection abort"
)
CHATTER = (
    "gpu-0042:881:1020 [3] NCCL INFO Channel 07/0 : 3[3] -> 4[4] via P2P/IPC/read "
    "| step {n} loss 2.3141 lr 2.9e-4 grad_norm 0.93 tokens/s 412345"
)


class _Ack(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    batches = 0

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        _Ack.batches += 1
        body = json.dumps(
            {
                "host_id": "bench",
                "seq": 0,
                "duplicate": False,
                "accepted": 0,
                "duplicates": 0,
                "received_at": "2026-01-01T00:00:00+00:00",
            }
        ).encode()
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _write_log(path: Path, lines_per_s: int, stop: threading.Event) -> None:
    n = 0
    with path.open("a", buffering=1) as out:
        start = time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - start) * lines_per_s)
            chunk = []
            while n < due:
                n += 1
                chunk.append(NCCL_WARN if n % 100 == 0 else CHATTER.format(n=n))
            if chunk:
                out.write("\n".join(chunk) + "\n")
            time.sleep(0.01)


def _beat(address: str, stop: threading.Event) -> None:
    ranks = [Heartbeat("bench-job", r, r, 8, gpu_index=r, address=address) for r in range(8)]
    step = 0
    while not stop.wait(0.5):
        step += 1
        for hb in ranks:
            hb.beat(step, step_time_s=0.5, tokens=65536, loss=2.3)


_IB_COUNTERS = (
    "excessive_buffer_overrun_errors", "link_downed", "link_error_recovery",
    "local_link_integrity_errors", "port_rcv_constraint_errors", "port_rcv_data",
    "port_rcv_errors", "port_rcv_packets", "port_rcv_remote_physical_errors",
    "port_rcv_switch_relay_errors", "port_xmit_constraint_errors", "port_xmit_data",
    "port_xmit_discards", "port_xmit_packets", "port_xmit_wait", "symbol_error",
    "VL15_dropped",
)  # fmt: skip


def _hardware(root: Path) -> dict[str, dict[str, str]]:
    """Machine-check, memory and link sources as a big host has them; their config."""
    edac = root / "edac" / "mc"
    for mc in range(2):
        for name in ("ce_count", "ue_count", "ce_noinfo_count", "ue_noinfo_count"):
            (edac / f"mc{mc}").mkdir(parents=True, exist_ok=True)
            (edac / f"mc{mc}" / name).write_text("0\n")
        for d in range(16):
            dimm = edac / f"mc{mc}" / f"dimm{d}"
            dimm.mkdir()
            (dimm / "dimm_label").write_text(f"CPU_SrcID#{mc}_MC#{d // 8}_Chan#{d % 8}_DIMM#0\n")
            (dimm / "dimm_ce_count").write_text("0\n")
            (dimm / "dimm_ue_count").write_text("0\n")
    ib = root / "infiniband"
    for hca in range(8):
        port = ib / f"mlx5_{hca}" / "ports" / "1"
        (port / "counters").mkdir(parents=True)
        (port / "state").write_text("4: ACTIVE\n")
        (port / "phys_state").write_text("5: LinkUp\n")
        (port / "rate").write_text("400 Gb/sec (4X NDR)\n")
        for name in _IB_COUNTERS:
            (port / "counters" / name).write_text("0\n")
    ras = sqlite3.connect(root / "ras-mc_event.db")
    ras.execute(
        "CREATE TABLE mc_event (id INTEGER PRIMARY KEY, timestamp TEXT, err_count INTEGER, "
        "err_type TEXT, err_msg TEXT, label TEXT, mc INTEGER, top_layer INTEGER, "
        "middle_layer INTEGER, lower_layer INTEGER, address INTEGER, grain INTEGER, "
        "syndrome INTEGER, driver_detail TEXT)"
    )
    ras.commit()
    ras.close()
    (root / "mcelog").write_text("")
    return {
        "rasdaemon": {"path": str(root / "ras-mc_event.db")},
        "mcelog": {"path": str(root / "mcelog")},
        "edac": {"root": str(edac)},
        "infiniband": {"root": str(ib)},
    }


def _count_traffic(ib: Path, stop: threading.Event) -> None:
    """The data and packet counters of busy ports, rising (the error counters stay still)."""
    n = 0
    while not stop.wait(1.0):
        n += 1
        for port in ib.glob("*/ports/1/counters"):
            for name in ("port_rcv_data", "port_xmit_data", "port_rcv_packets"):
                (port / name).write_text(f"{n * 1_000_000}\n")


def run_phase(
    name: str,
    intervals: dict[str, float],
    seconds: float,
    lines_per_s: int,
    workdir: Path,
    url: str,
) -> dict[str, float]:
    phase_dir = workdir / name
    (phase_dir / "fr").mkdir(parents=True)
    train_log = phase_dir / "train.log"
    train_log.write_text("")
    (phase_dir / "kern.log").write_text("")
    scenario = REPO / "agents" / "sentinel_agent" / "scenarios" / "healthy.yaml"
    config = {
        "host_id": "bench-host",
        "service": {"url": url, "token": "bench-token"},
        "intervals": intervals,
        "collectors": {
            "nvml": {"provider": "fake", "scenario": str(scenario)},
            "kernel_log": {"path": str(phase_dir / "kern.log")},
            "training_logs": {"enabled": True, "paths": [str(train_log)]},
            "heartbeat": {"address": f"unix://{phase_dir}/hb.sock"},
            "flight_recorder": {"prefix": str(phase_dir / "fr" / "nccl_trace_rank_")},
            **_hardware(phase_dir),
        },
        "outbox": {"path": str(phase_dir / "outbox.db")},
        "metrics": {"port": _free_port()},
        "log_level": "WARNING",
    }
    config_path = phase_dir / "agent.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "sentinel_agent", "run", "--config", str(config_path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    agent = subprocess.Popen(command, cwd=REPO, env=env)
    stop = threading.Event()
    workers = [
        threading.Thread(target=_write_log, args=(train_log, lines_per_s, stop)),
        threading.Thread(target=_beat, args=(f"unix://{phase_dir}/hb.sock", stop)),
        threading.Thread(target=_count_traffic, args=(phase_dir / "infiniband", stop)),
    ]
    for w in workers:
        w.start()
    try:
        time.sleep(WARMUP_S)
        cpu0, t0 = _cpu_seconds(agent.pid), time.monotonic()
        rss_peak = 0.0
        rss_samples = []
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            rss = _rss_mib(agent.pid)
            rss_samples.append(rss)
            rss_peak = max(rss_peak, rss)
        cpu1, t1 = _cpu_seconds(agent.pid), time.monotonic()
    finally:
        stop.set()
        for w in workers:
            w.join()
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)
    return {
        "cpu_pct_one_core": 100 * (cpu1 - cpu0) / (t1 - t0),
        "rss_mib_avg": sum(rss_samples) / max(1, len(rss_samples)),
        "rss_mib_peak": rss_peak,
        "seconds": t1 - t0,
        "command": shlex.join(command),  # type: ignore[dict-item]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help="total measuring time, split over the two phases",
    )
    parser.add_argument("--lines-per-s", type=int, default=1000)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ack)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    phases = {
        "1s-interval": {
            "gpu_s": 1.0,
            "logs_s": 1.0,
            "heartbeat_s": 1.0,
            "flight_recorder_s": 1.0,
            "hardware_s": 1.0,
            "status_s": 10.0,
            "send_s": 1.0,
        },
        "10s-default": {},
    }
    per_phase = args.seconds / len(phases)
    print(f"# {sys.executable} {' '.join(sys.argv)}")
    print(
        f"# 8 fake GPUs, {args.lines_per_s} training-log lines/s, 8 ranks beating at 2 Hz, "
        "32 DIMMs and 8 IB ports, "
        f"{per_phase:.0f} s per phase after {WARMUP_S:.0f} s warm-up"
    )
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp:
        for name, intervals in phases.items():
            result = run_phase(name, intervals, per_phase, args.lines_per_s, Path(tmp), url)
            print(f"\n## {name}\nagent command: {result['command']}")
            print(f"CPU  {result['cpu_pct_one_core']:6.2f} % of one core")
            print(
                f"RSS  {result['rss_mib_avg']:6.1f} MiB average, "
                f"{result['rss_mib_peak']:.1f} MiB peak"
            )
    print(f"\nbatches acknowledged by the stand-in service: {_Ack.batches}")
    print("targets: < 1 % of one core at the 10 s default, < 100 MiB RSS")
    server.shutdown()


if __name__ == "__main__":
    main()
