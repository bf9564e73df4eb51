"""A real Prometheus 2.42 and Alertmanager 0.25 on loopback, for end-to-end alert tests.

A fake DCGM exporter (stdlib HTTP server) serves fixed metrics; Prometheus scrapes it every
second and evaluates a rule that fires at once (``for: 0s``); Alertmanager posts the alert to
Sentinel's webhook with a bearer token. Debian packages: prometheus, prometheus-alertmanager.
Each stack lives in a fresh folder (Alertmanager's saved state would suppress repeats) and its
daemons are stopped by PID.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from sentinel.demo.service import free_port, stop_process, wait_ready

PROMETHEUS_BIN = "prometheus"
ALERTMANAGER_BIN = "prometheus-alertmanager"  # Debian's name for alertmanager
INSTALL_HINT = (
    "Prometheus/Alertmanager not found: apt-get install -y prometheus prometheus-alertmanager "
    "(or set SENTINEL_TEST_SKIP_PROMETHEUS=1 to skip these tests)"
)

XID_RULES = """\
groups:
  - name: sentinel-gpu
    interval: 1s
    rules:
      - alert: GpuXidError
        expr: DCGM_FI_DEV_XID_ERRORS > 0
        for: 0s
        labels:
          severity: critical
        annotations:
          summary: "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} reported Xid {{ $value }}"
"""


class PrometheusUnavailable(RuntimeError):
    pass


def find_binaries() -> tuple[str, str]:
    found = (shutil.which(PROMETHEUS_BIN), shutil.which(ALERTMANAGER_BIN))
    if found[0] is None or found[1] is None:
        raise PrometheusUnavailable(INSTALL_HINT)
    return found[0], found[1]


class FakeExporter:
    """Serves ``/metrics`` in the Prometheus text format; change ``text`` at any time."""

    def __init__(self, text: str) -> None:
        self.text = text
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.text.encode()
                self.send_response(200 if self.path.startswith("/metrics") else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> FakeExporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class PrometheusStack:
    """Exporter → Prometheus → Alertmanager → ``webhook_url`` (with ``bearer_token``)."""

    root: Path
    webhook_url: str
    bearer_token: str
    metrics: str
    rules: str = XID_RULES
    prometheus_port: int = field(default_factory=free_port)
    alertmanager_port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    exporter: FakeExporter | None = None

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    def _write_configs(self, exporter: str) -> tuple[Path, Path]:
        self.root.mkdir(parents=True, exist_ok=True)
        rules = self.root / "rules.yml"
        rules.write_text(self.rules)
        prom = self.root / "prometheus.yml"
        prom.write_text(
            f"""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: ["{rules}"]
alerting:
  alertmanagers:
    - static_configs: [{{targets: ["127.0.0.1:{self.alertmanager_port}"]}}]
scrape_configs:
  - job_name: fake-dcgm
    static_configs: [{{targets: ["{exporter}"]}}]
"""
        )
        am = self.root / "alertmanager.yml"
        am.write_text(
            f"""\
route:
  receiver: sentinel
  group_by: [alertname, Hostname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: sentinel
    webhook_configs:
      - url: "{self.webhook_url}"
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: "{self.bearer_token}"
"""
        )
        return prom, am

    def start(self, timeout: float = 15.0) -> None:
        prometheus, alertmanager = find_binaries()
        self.exporter = FakeExporter(self.metrics).start()
        prom_cfg, am_cfg = self._write_configs(self.exporter.address)
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        commands = {
            "alertmanager": [
                alertmanager,
                f"--config.file={am_cfg}",
                f"--storage.path={self.root / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{self.alertmanager_port}",
                "--cluster.listen-address=",  # else it gossips on 0.0.0.0:9094
            ],
            "prometheus": [
                prometheus,
                f"--config.file={prom_cfg}",
                f"--storage.tsdb.path={self.root / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
            ],
        }
        for name, cmd in commands.items():
            with open(logs / f"{name}.log", "ab") as log:
                self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        for url in (f"{self.alertmanager_url}/-/ready", f"{self.prometheus_url}/-/ready"):
            self._wait_ready(url, timeout)

    def _wait_ready(self, url: str, timeout: float) -> None:
        if wait_ready(url, self.procs, timeout):
            return
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited; see {self.root / 'logs'}")
        raise RuntimeError(f"{url} not ready within {timeout} s; see {self.root / 'logs'}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)  # reap our own child: PID 1 here reaps slowly
        self.procs.clear()
        if self.exporter is not None:
            self.exporter.stop()
            self.exporter = None

    def __enter__(self) -> PrometheusStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Alertmanager:
    """A real Alertmanager alone, as a site runs it, for notifiers that post to its API.

    Its one receiver has no integrations: what arrives is read back from ``/api/v2/alerts``."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> Alertmanager:
        _, binary = find_binaries()
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "alertmanager.yml"
        config.write_text(
            "route:\n  receiver: nowhere\n  group_wait: 0s\nreceivers:\n  - name: nowhere\n"
        )
        with open(self.root / "alertmanager.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.path={self.root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",  # else it gossips on 0.0.0.0:9094
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait_ready(f"{self.url}/-/ready", [self.proc], timeout):
            return self
        if self.proc.poll() is not None:
            raise RuntimeError(f"alertmanager exited; see {self.root / 'alertmanager.log'}")
        self.stop()
        raise RuntimeError(f"alertmanager not ready within {timeout} s")

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts it holds now (active, silenced or inhibited; resolved ones are not)."""
        response = httpx.get(f"{self.url}/api/v2/alerts", timeout=5.0)
        response.raise_for_status()
        alerts: list[dict[str, Any]] = response.json()
        return alerts

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None
