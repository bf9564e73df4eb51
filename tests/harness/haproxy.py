"""A real haproxy (Debian's) in front of service replicas, for scale-out tests and benchmarks.

It runs in the foreground (-db) as the current user, from a generated config in a temporary
folder, on a free loopback port, and takes a replica out of rotation when its /readyz fails.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from sentinel.demo.service import stop_process, wait_ready
from tests.harness.postgres import free_port

INSTALL_HINT = "haproxy not found: 'apt-get install -y haproxy' (make system-deps does this)"


class HaproxyUnavailable(RuntimeError):
    pass


def config(port: int, backends: list[int], balance: str = "leastconn") -> str:
    servers = "\n".join(
        f"    server r{i} 127.0.0.1:{p} check inter 1s fall 3 rise 2"
        for i, p in enumerate(backends)
    )
    # One thread: the cores are few, and the replicas and the database are what is measured.
    return f"""global
    maxconn 8192
    nbthread 1
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend agents
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance {balance}
    option httpchk GET /readyz
    http-check expect status 200
{servers}
"""


class Haproxy:
    def __init__(self, backends: list[int], balance: str = "leastconn") -> None:
        exe = shutil.which("haproxy")
        if exe is None:
            raise HaproxyUnavailable(INSTALL_HINT)
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="sentinel-haproxy-"))
        self.config = self.root / "haproxy.cfg"
        self.config.write_text(config(self.port, backends, balance))
        self.log = self.root / "haproxy.log"
        subprocess.run([exe, "-c", "-q", "-f", str(self.config)], check=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [exe, "-db", "-f", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 15.0) -> None:
        if wait_ready(f"{self.url}/readyz", [self.proc], timeout, poll_s=0.2):
            return
        if self.proc.poll() is not None:
            raise HaproxyUnavailable(f"haproxy exited: {self.log.read_text()[-2000:]}")
        self.stop()
        raise HaproxyUnavailable(f"haproxy did not reach a ready replica within {timeout:g} s")

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.root, ignore_errors=True)
