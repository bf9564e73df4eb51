"""A throwaway single-host Slurm 22.05 cluster (munged, slurmctld, N slurmd) for tests.

All daemons run in the foreground as this process's children (so stopping them leaves no
zombie: we wait on them), on loopback, on free ports, in a temp folder. Nodes are fake 8-GPU
hosts in multiple-slurmd mode; their GPUs are char-device clones of /dev/null.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentinel.schedulers.hostlist import compress, expand
from sentinel.schedulers.settings import SchedulerSettings, SlurmSettings

DEBIAN_PACKAGES = ("slurm-wlm", "munge")
INSTALL_HINT = (
    "Slurm/munge binaries not found ({missing}): install them with "
    "'apt-get install -y slurm-wlm munge' (Debian 12 ships Slurm 22.05)"
)
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("scontrol", "squeue", "sinfo", "sbatch", "scancel")
GPUS_PER_NODE = 8

# The job the tests run: it writes a step counter to its "checkpoint" and, started again,
# says which step it resumed from. It loops, so it stays RUNNING until cancelled.
TRAIN_SCRIPT = """#!/bin/bash
ckpt="$SENTINEL_CKPT_DIR/$SLURM_JOB_ID.step"
step=$(cat "$ckpt" 2>/dev/null || echo 0)
echo "start restart=${SLURM_RESTART_COUNT:-0} nodes=$SLURM_JOB_NODELIST resumed_from_step=$step"
while true; do
  step=$((step + 1))
  echo "$step" > "$ckpt"
  sleep 0.5
done
"""


class SlurmUnavailable(RuntimeError):
    pass


def find_missing() -> list[str]:
    """The Slurm and munge programs this harness needs that are not on PATH."""
    return [tool for tool in (*DAEMONS, *CLIENTS) if shutil.which(tool) is None]


def _port_free(port: int) -> bool:
    # slurmctld 22.05 binds 0.0.0.0 whatever the config says, so check that address.
    for host in ("0.0.0.0", "127.0.0.1"):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def _free_port_block(count: int) -> int:
    """The first of ``count`` consecutive free ports (node ports are written as a range)."""
    for _ in range(200):
        base = random.randrange(20000, 45000)
        if all(_port_free(base + i) for i in range(count)):
            return base
    raise SlurmUnavailable(f"no {count} consecutive free ports found")


def _pid_state(pid: int) -> str | None:
    """The process state letter (R, S, Z, ...) from /proc, or None when it is gone. A dead
    daemon reparented to PID 1 lingers as a zombie here until reaped, so kill -0 lies."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return line.split()[1]
    except OSError:
        return None
    return None


@dataclass
class SlurmCluster:
    root: Path
    node_names: list[str]
    ctld_port: int
    node_port_base: int
    # Lines appended to slurm.conf (a HealthCheckProgram, a Prolog); @ROOT@ is filled in.
    extra_conf: tuple[str, ...] = ()
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
        env["SLURM_CONF"] = str(self.conf)
        return env

    def settings(self) -> SchedulerSettings:
        """Settings that make ``make_scheduler`` drive this cluster."""
        return SchedulerSettings(kind="slurm", slurm=SlurmSettings(conf=self.conf, timeout_s=10))

    # --- start and stop ------------------------------------------------------------------

    def _write_configs(self) -> None:
        for sub in ("etc", "munge", "state", "run", "log", "dev", "jobs", "ckpt"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for name in self.node_names:
            (self.root / "spool" / name).mkdir(parents=True, exist_ok=True)
        # munged refuses a socket whose folders are not all world-searchable (mkdtemp: 0700).
        os.chmod(self.root, 0o755)
        os.chmod(self.root / "munge", 0o755)
        last = self.node_port_base + len(self.node_names) - 1
        values = {
            "@ROOT@": str(self.root),
            "@CTLD_PORT@": str(self.ctld_port),
            # Unused with per-node ports, but slurmd must not fall back to the stock 6818.
            "@SLURMD_PORT@": str(self.ctld_port + 1),
            "@NODES@": compress(self.node_names),
            "@NODE_PORTS@": f"[{self.node_port_base}-{last}]",
            "@PYTHON@": sys.executable,
        }
        templates = Path(__file__).parent / "slurm_conf"
        for name in ("slurm.conf", "gres.conf", "cgroup.conf", "reboot"):
            text = (templates / name).read_text()
            if name == "slurm.conf" and self.extra_conf:
                text += "\n" + "\n".join(self.extra_conf) + "\n"
            for key, value in values.items():
                text = text.replace(key, value)
            (self.root / "etc" / name).write_text(text)
        (self.root / "etc" / "reboot").chmod(0o755)
        for i in range(GPUS_PER_NODE):
            dev = self.root / "dev" / f"nvidia{i}"
            # gres/gpu accepts only character or block devices: clones of /dev/null (c 1 3).
            os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))
            os.chmod(dev, 0o666)
        munge_key = self.root / "munge" / "munge.key"
        munge_key.write_bytes(secrets.token_bytes(1024))
        os.chmod(munge_key, 0o400)

    def _spawn(self, label: str, *argv: str) -> None:
        log = open(self.root / "log" / f"{label}.out", "ab")  # noqa: SIM115 - the child owns it
        try:
            self.procs[label] = subprocess.Popen(
                list(argv),
                cwd=self.root,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def start(self, timeout: float = 30.0) -> None:
        self._write_configs()
        munge = self.root / "munge"
        self._spawn(
            "munged",
            "munged",
            "--foreground",
            f"--socket={munge / 'munge.socket.2'}",
            f"--key-file={munge / 'munge.key'}",
            f"--log-file={self.root / 'log' / 'munged.log'}",
            f"--pid-file={self.root / 'run' / 'munged.pid'}",
            f"--seed-file={munge / 'munged.seed'}",
        )
        self._wait(lambda: (munge / "munge.socket.2").exists(), 5, "munged socket")
        # -i: ignore any saved state (the folder is new anyway).
        self._spawn("slurmctld", "slurmctld", "-D", "-i", "-f", str(self.conf))
        self._wait(self._controller_up, 10, "slurmctld answering")
        for name in self.node_names:
            self._spawn(f"slurmd-{name}", "slurmd", "-D", "-N", name, "-f", str(self.conf))
        self._wait(self._all_idle, timeout, "all nodes idle")

    def _wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [
                label
                for label, p in self.procs.items()
                if p.poll() is not None and not self.rebooted(label.removeprefix("slurmd-"))
            ]
            if dead:
                raise SlurmUnavailable(
                    f"{', '.join(dead)} exited while waiting for {what}\n" + self.log_tail()
                )
            if check():
                return
            time.sleep(0.1)
        raise SlurmUnavailable(f"timed out after {timeout}s waiting for {what}\n" + self.log_tail())

    def rebooted(self, node: str) -> bool:
        """Whether the node's slurmd was restarted by the RebootProgram (a new process)."""
        return (self.root / "run" / f"rebooted-{node}").exists()

    def _controller_up(self) -> bool:
        return self.run("scontrol", "ping", check=False).returncode == 0

    def _all_idle(self) -> bool:
        nodes = self.sinfo()
        return len(nodes) == len(self.node_names) and all(
            n["state"] == "idle" and not n["state_flags"] for n in nodes.values()
        )

    def log_tail(self, lines: int = 15) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def stop(self, *, keep: bool = False) -> None:
        """Cancel jobs, shut Slurm down, stop munged, reap everything, remove the folder."""
        ctld = self.procs.get("slurmctld")
        if ctld is not None and ctld.poll() is None:
            # Jobs outlive slurmd: end them first, while slurmd is there to kill them.
            self.run("scancel", "--full", *self.job_ids(), check=False)
            with contextlib.suppress(SlurmUnavailable):
                self._wait(lambda: not self.job_ids(), 10, "jobs to end")
            self.run("scontrol", "shutdown", check=False)
        for label, proc in reversed(list(self.procs.items())):
            if label == "munged":
                # Slurm needs munge to shut down; stop it last.
                continue
            self._reap(proc)
        if "munged" in self.procs:
            self.procs["munged"].terminate()
            self._reap(self.procs["munged"])
        self._kill_strays()
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def _reap(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def _kill_strays(self) -> None:
        """slurmstepd and job scripts are not our children (slurmd double-forks them); any
        left carry our SLURM_CONF in their environment, which is how they are found."""
        marker = f"SLURM_CONF={self.conf}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0") and _pid_state(int(entry.name)) not in (None, "Z"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)

    # --- using it ------------------------------------------------------------------------

    def run(
        self, *argv: str, check: bool = True, timeout: float = 15
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            list(argv),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def squeue(self) -> dict[str, dict[str, Any]]:
        """Jobs by id, as ``squeue --json`` shows them."""
        proc = self.run("squeue", "--json", check=False)
        if proc.returncode != 0:
            return {}
        return {str(j["job_id"]): j for j in json.loads(proc.stdout)["jobs"]}

    def sinfo(self) -> dict[str, dict[str, Any]]:
        proc = self.run("sinfo", "--json", check=False)
        if proc.returncode != 0:
            return {}
        return {n["name"]: n for n in json.loads(proc.stdout)["nodes"]}

    def job_ids(self) -> list[str]:
        """Jobs not yet ended."""
        ended = {
            "COMPLETED",
            "CANCELLED",
            "FAILED",
            "TIMEOUT",
            "NODE_FAIL",
            "OUT_OF_MEMORY",
            "BOOT_FAIL",
            "DEADLINE",
            "PREEMPTED",
        }
        return [i for i, j in self.squeue().items() if j["job_state"] not in ended]

    def submit_job(self, *, nodes: int = 4, name: str = "train", hold: bool = False) -> str:
        """Submit the looping training job (requeueable, 1 task and 8 GPUs per node); returns
        its id. Its output (appended across restarts) is ``job_output(job_id)``."""
        script = self.jobs_dir / "train.sh"
        script.write_text(TRAIN_SCRIPT)
        argv = [
            "sbatch",
            "--parsable",
            "--requeue",
            f"--nodes={nodes}",
            "--ntasks-per-node=1",
            f"--gres=gpu:{GPUS_PER_NODE}",
            f"--job-name={name}",
            "--open-mode=append",
            f"--output={self.jobs_dir}/%j.out",
            f"--chdir={self.jobs_dir}",
            f"--export=ALL,SENTINEL_CKPT_DIR={self.root / 'ckpt'}",
        ]
        if hold:
            argv.append("--hold")
        proc = self.run(*argv, str(script))
        return proc.stdout.strip().split(";")[0]

    def job_output(self, job_id: str) -> str:
        path = self.jobs_dir / f"{job_id}.out"
        return path.read_text() if path.exists() else ""

    def wait_running(
        self, job_id: str, *, avoid: tuple[str, ...] = (), restarts: int = 0, timeout: float = 20
    ) -> list[str]:
        """Wait until the job runs (again: at least ``restarts`` times requeued) on nodes that
        exclude ``avoid`` and its script has started; returns the nodes."""
        result: list[str] = []

        def running() -> bool:
            job = self.squeue().get(job_id)
            if job is None or job["job_state"] != "RUNNING" or job["restart_cnt"] < restarts:
                return False
            nodes = expand(job["nodes"])
            if set(nodes) & set(avoid):
                return False
            started = self.job_output(job_id).count("start restart=")
            result[:] = nodes
            return started > restarts

        self._wait(running, timeout, f"job {job_id} running")
        return result

    def reset(self) -> None:
        """Between tests: cancel every job and return every node to service."""
        ids = self.job_ids()
        if ids:
            self.run("scancel", *ids, check=False)
        for name, node in self.sinfo().items():
            if node["state_flags"] or node["state"] in ("down", "drained"):
                self.run("scontrol", "update", f"NodeName={name}", "State=RESUME", check=False)
        self._wait(lambda: not self.job_ids() and self._all_idle(), 20, "cluster idle")


def start_slurm(
    nodes: int = 5,
    *,
    root: Path | None = None,
    timeout: float = 30,
    extra_conf: tuple[str, ...] = (),
) -> SlurmCluster:
    """Start a cluster of ``nodes`` fake 8-GPU hosts named node1..nodeN; stop() it after.
    ``extra_conf``: slurm.conf lines of the test's own (``@ROOT@`` is the cluster's folder)."""
    missing = find_missing()
    if missing:
        raise SlurmUnavailable(INSTALL_HINT.format(missing=", ".join(missing)))
    if os.geteuid() != 0:
        raise SlurmUnavailable("the Slurm test cluster runs its daemons as root")
    base = _free_port_block(nodes + 2)
    cluster = SlurmCluster(
        root=root or Path(tempfile.mkdtemp(prefix="sentinel-slurm-")),
        node_names=[f"node{i}" for i in range(1, nodes + 1)],
        ctld_port=base,
        node_port_base=base + 2,
        extra_conf=extra_conf,
    )
    try:
        cluster.start(timeout=timeout)
    except BaseException:
        # The exception carries the daemons' log tails; nothing else is worth keeping.
        cluster.stop()
        raise
    return cluster
