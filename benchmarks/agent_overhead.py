"""How much CPU and memory the node agent costs on a busy GPU host, with every collector on.

Runs the real agent (``python -m sentinel_agent run``) as a subprocess with 8 fake GPUs, a training
log receiving --lines-per-s lines (1% of them NCCL warnings, the rest chatter), 8 ranks
beating twice a second, the flight-recorder watcher, /metrics and a stand-in service that
acknowledges every batch; then the host's hardware sources, laid out as a big host has them
(rasdaemon's database, an mcelog log, EDAC with 2 memory controllers of 16 DIMMs, 8 InfiniBand
ports whose traffic counters rise every second, devlink where the kernel has it, DCGM through
a stand-in `dcgmi` printing a healthy `dcgmi health -c -j` where none is installed); then the
BMC, over the network as a real one is read: IPMI against OpenIPMI's `ipmi_sim` over lanplus
(ipmitool, the SEL polled with `sel info` and the sensors with `sdr elist`) and Redfish against
sushy-tools' `sushy-static` serving the tests' DMTF mockup. A source whose tool is missing is
skipped with the reason printed.

Phases share the --seconds budget, each collector set at the default intervals (GPUs every
10 s, hardware and the IPMI SEL every 10 s, IPMI sensors every 60 s, Redfish and DCGM every
30 s, batches every 5 s):

1. base: NVML, the logs, heartbeats, the flight recorder;
2. + host hardware: rasdaemon, mcelog, EDAC, InfiniBand, devlink, DCGM;
3. + BMC: IPMI and Redfish, i.e. every collector;
4. every collector at a 1 s interval (a stress figure, not a target).

CPU is utime+stime from /proc/PID/stat over the phase (after a warm-up), as % of one core, for
the agent process and with the tools it ran (ipmitool, dcgmi, devlink: the children it waited
for); RSS from /proc/PID/status. Targets: < 1% of one core with every collector on at the
defaults, < 100 MiB RSS.

    .venv/bin/python benchmarks/agent_overhead.py --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sentinel_agent.heartbeat import Heartbeat
from tests.harness.ipmi import EMU, LAN_CONF, free_udp_port, sel_add

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


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """The process's own CPU seconds, and with its waited-for children's (the tools it ran)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return own, own + (int(fields[13]) + int(fields[14])) / TICKS  # + cutime, cstime


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


def _hardware(root: Path) -> dict[str, dict[str, Any]]:
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
        "devlink": {"enabled": True},
        "dcgm": {"enabled": True},
    }


# What a healthy host engine answers to `dcgmi health -c -j` (tests/agents/test_dcgm_collector).
_DCGM_HEALTHY = {
    "body": {"Overall Health": {"value": "Healthy"}},
    "header": ["Health Monitor Report"],
}


def _tools(bin_dir: Path) -> list[str]:
    """Stand-ins on the agent's PATH for the tools this machine lacks; what each source uses."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    said = []
    if shutil.which("dcgmi") is None:
        answer = bin_dir / "dcgmi-health.json"
        answer.write_text(json.dumps(_DCGM_HEALTHY))
        (bin_dir / "dcgmi").write_text(f"#!/bin/sh\nexec cat {shlex.quote(str(answer))}\n")
        (bin_dir / "dcgmi").chmod(0o755)
        said.append("dcgm: no dcgmi here; a stand-in prints a healthy `dcgmi health -c -j`")
    else:
        said.append(f"dcgm: {shutil.which('dcgmi')} (a host engine must be running)")
    devlink = shutil.which("devlink") or shutil.which("devlink", path="/usr/sbin:/sbin")
    if devlink is None:
        said.append("devlink: skipped, not installed (Debian: iproute2)")
    else:
        said.append(f"devlink: {devlink} (no mlx5 here: it reports no reporters)")
    return said


_IPMI_PASSWORD = "bench-bmc"
# The simulated BMC's SEL holds one fan entry, so that the first poll has something to read.
_SEL_HISTORY = sel_add(0x04, 0x33, 0x01, 0x00)
MOCKUP = REPO / "tests" / "agents" / "redfish_mockup"


def _wait(ready: Any, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


@contextmanager
def _ipmi_sim(root: Path) -> Iterator[dict[str, Any] | str]:
    """ipmi_sim over lanplus on loopback and the agent's collectors.ipmi for it; or why not."""
    missing = [t for t in ("ipmi_sim", "ipmitool") if shutil.which(t) is None]
    if missing:
        yield f"ipmi: skipped, {' and '.join(missing)} not installed (Debian: openipmi, ipmitool)"
        return
    root.mkdir(parents=True)
    port = free_udp_port()
    (root / "lan.conf").write_text(LAN_CONF.format(port=port, password=_IPMI_PASSWORD))
    (root / "sim.emu").write_text(EMU.format(history=_SEL_HISTORY))
    password = root / "bmc-password"
    password.write_text(_IPMI_PASSWORD)
    password.chmod(0o600)
    (root / "state").mkdir()
    sim = subprocess.Popen(
        ["ipmi_sim", "-c", "lan.conf", "-f", "sim.emu", "-s", "state"],
        cwd=root, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    config = {
        "enabled": True, "host": "127.0.0.1", "port": port, "username": "sentinel",
        "password_file": str(password), "cipher_suite": 3,
    }  # fmt: skip
    ask = ["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(port), "-U", "sentinel"]
    ask += ["-f", str(password), "-C", "3", "sel", "info"]
    try:
        _wait(
            lambda: subprocess.run(ask, capture_output=True, timeout=5).returncode == 0,
            "ipmi_sim to answer over lanplus",
        )
        yield config
    finally:
        sim.terminate()
        sim.wait(10)


@contextmanager
def _sushy_static(root: Path) -> Iterator[dict[str, Any] | str]:
    """sushy-static serving the DMTF mockup and the agent's collectors.redfish; or why not."""
    tool = shutil.which("sushy-static") or str(Path(sys.executable).with_name("sushy-static"))
    if not Path(tool).exists():
        yield "redfish: skipped, sushy-static not installed (pip: sushy-tools)"
        return
    shutil.copytree(MOCKUP, root / "mockup")
    credentials = root / "redfish-credentials"
    credentials.write_text("root:0penBmc\n")
    credentials.chmod(0o600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = subprocess.Popen(
        [tool, "-i", "127.0.0.1", "-p", str(port), "-m", str(root / "mockup" / "redfish" / "v1")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def listening() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    try:
        _wait(listening, "sushy-static to listen")
        yield {
            "enabled": True, "url": f"http://127.0.0.1:{port}",
            "credentials_file": str(credentials),
        }  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)


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
    sources: dict[str, Any],
    seconds: float,
    lines_per_s: int,
    workdir: Path,
    url: str,
) -> dict[str, Any]:
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
            **_off(),
            **(_hardware(phase_dir) if sources["hardware"] else {}),
            **({"ipmi": sources["ipmi"]} if sources.get("ipmi") else {}),
            **({"redfish": sources["redfish"]} if sources.get("redfish") else {}),
        },
        "outbox": {"path": str(phase_dir / "outbox.db")},
        "metrics": {"port": _free_port()},
        "log_level": "WARNING",
    }
    config_path = phase_dir / "agent.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "sentinel_agent", "run", "--config", str(config_path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    # The stand-in tools first; devlink lives in /usr/sbin, off some users' PATH.
    env["PATH"] = os.pathsep.join([str(workdir / "bin"), env.get("PATH", ""), "/usr/sbin", "/sbin"])
    agent = subprocess.Popen(command, cwd=REPO, env=env)
    stop = threading.Event()
    workers = [
        threading.Thread(target=_write_log, args=(train_log, lines_per_s, stop)),
        threading.Thread(target=_beat, args=(f"unix://{phase_dir}/hb.sock", stop)),
    ]
    if sources["hardware"]:
        workers.append(
            threading.Thread(target=_count_traffic, args=(phase_dir / "infiniband", stop))
        )
    for w in workers:
        w.start()
    try:
        time.sleep(WARMUP_S)
        (own0, all0), t0 = _cpu_seconds(agent.pid), time.monotonic()
        rss_peak = 0.0
        rss_samples = []
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            rss = _rss_mib(agent.pid)
            rss_samples.append(rss)
            rss_peak = max(rss_peak, rss)
        (own1, all1), t1 = _cpu_seconds(agent.pid), time.monotonic()
    finally:
        stop.set()
        for w in workers:
            w.join()
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)
    return {
        "cpu_pct_one_core": 100 * (own1 - own0) / (t1 - t0),
        "cpu_pct_with_tools": 100 * (all1 - all0) / (t1 - t0),
        "rss_mib_avg": sum(rss_samples) / max(1, len(rss_samples)),
        "rss_mib_peak": rss_peak,
        "seconds": t1 - t0,
        "command": shlex.join(command),
    }


def _off() -> dict[str, dict[str, bool]]:
    """Every hardware and BMC source off (a phase turns on its own)."""
    names = ("rasdaemon", "mcelog", "edac", "infiniband", "devlink", "dcgm", "ipmi", "redfish")
    return {name: {"enabled": False} for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help="total measuring time, split over the phases",
    )
    parser.add_argument("--lines-per-s", type=int, default=1000)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ack)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    every_1s = {
        "gpu_s": 1.0,
        "logs_s": 1.0,
        "heartbeat_s": 1.0,
        "flight_recorder_s": 1.0,
        "hardware_s": 1.0,
        "redfish_s": 1.0,
        "status_s": 10.0,
        "send_s": 1.0,
    }
    print(f"# {sys.executable} {' '.join(sys.argv)}")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp, ExitStack() as bmcs:
        work = Path(tmp)
        said = _tools(work / "bin")
        ipmi = bmcs.enter_context(_ipmi_sim(work / "ipmi_sim"))
        redfish = bmcs.enter_context(_sushy_static(work / "sushy"))
        for source in (ipmi, redfish):
            if isinstance(source, str):
                said.append(source)
        said.append("ipmi: ipmi_sim over lanplus on loopback" if isinstance(ipmi, dict) else "")
        said.append("redfish: sushy-static, the DMTF mockup" if isinstance(redfish, dict) else "")
        bmc = {
            "ipmi": ipmi if isinstance(ipmi, dict) else None,
            "redfish": redfish if isinstance(redfish, dict) else None,
        }
        phases: dict[str, tuple[dict[str, float], dict[str, Any]]] = {
            "base (defaults)": ({}, {"hardware": False}),
            "+ host hardware (defaults)": ({}, {"hardware": True}),
            "every collector (defaults)": ({}, {"hardware": True, **bmc}),
            "every collector at 1 s": (every_1s, {"hardware": True, **bmc}),
        }
        per_phase = args.seconds / len(phases)
        print(
            f"# 8 fake GPUs, {args.lines_per_s} training-log lines/s, 8 ranks beating at 2 Hz, "
            "32 DIMMs and 8 IB ports, "
            f"{per_phase:.0f} s per phase after {WARMUP_S:.0f} s warm-up"
        )
        for line in filter(None, said):
            print(f"# {line}")
        for n, (name, (intervals, sources)) in enumerate(phases.items()):
            result = run_phase(
                f"phase{n}", intervals, sources, per_phase, args.lines_per_s, work, url
            )
            results[name] = result
            print(f"\n## {name}\nagent command: {result['command']}")
            print(
                f"CPU  {result['cpu_pct_one_core']:6.2f} % of one core "
                f"({result['cpu_pct_with_tools']:.2f} % with the tools it ran)"
            )
            print(
                f"RSS  {result['rss_mib_avg']:6.1f} MiB average, "
                f"{result['rss_mib_peak']:.1f} MiB peak"
            )
    print("\n## CPU % of one core per collector set (agent / with the tools it ran)")
    for name, result in results.items():
        print(f"{name:32s} {result['cpu_pct_one_core']:6.2f} / {result['cpu_pct_with_tools']:6.2f}")
    print(f"\nbatches acknowledged by the stand-in service: {_Ack.batches}")
    print("targets: < 1 % of one core with every collector on at the defaults, < 100 MiB RSS")
    server.shutdown()


if __name__ == "__main__":
    main()
