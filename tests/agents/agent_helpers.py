"""Builders and a stand-in service shared by the agent tests (imported via conftest's path)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import yaml

from sentinel.wire import Batch, EccEvent, GpuSample, Observation, XidEvent
from sentinel_agent.agent import Agent
from sentinel_agent.clock import ManualClock
from sentinel_agent.collectors.base import Context, HostState
from sentinel_agent.config import HARDWARE_COLLECTORS, AgentConfig
from sentinel_agent.metrics import AgentMetrics

AGENT_TOKEN = "agent-test-token"
REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "agents" / "sentinel_agent" / "scenarios"


@dataclass
class Fault:
    status: int
    times: int
    retry_after: str | None = None
    delay_s: float = 0.0


@dataclass(frozen=True)
class Post:
    """One report as the receiver saw it: when it arrived (monotonic), from whom, and the
    answer it got."""

    at: float
    host_id: str | None
    seq: int | None
    observations: int
    body_bytes: int
    status: int


def _peek(headers: Any, body: bytes) -> tuple[str | None, int | None, int]:
    try:
        raw = gzip.decompress(body) if headers.get("Content-Encoding") == "gzip" else body
        doc = json.loads(raw)
        return doc.get("host_id"), doc.get("seq"), len(doc.get("observations", []))
    except (OSError, ValueError, AttributeError):
        return None, None, 0


@dataclass
class Receiver:
    """Answers like the service: 202 + BatchAck for reports, 201 for flight-recorder dumps."""

    url: str = ""
    agent_token: str = AGENT_TOKEN
    batches: list[Batch] = field(default_factory=list)  # accepted, first delivery only
    raw_posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    dumps: dict[str, bytes] = field(default_factory=dict)
    dump_params: list[dict[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    seen_seqs: dict[tuple[str, int], bytes] = field(default_factory=dict)
    seen_ids: set[str] = field(default_factory=set)
    posts: list[Post] = field(default_factory=list)  # every report, answered or refused
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(
        self, status: int, times: int = 1, *, retry_after: str | None = None, delay_s: float = 0.0
    ) -> None:
        with self.lock:
            self.faults.append(Fault(status, times, retry_after, delay_s))

    def _fault(self) -> Fault | None:
        with self.lock:
            if not self.faults:
                return None
            fault = self.faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self.faults.pop(0)
            return fault

    def observations(self, kind: str | None = None) -> list[Any]:
        with self.lock:
            return [
                o for b in self.batches for o in b.observations if kind is None or o.kind == kind
            ]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s; statuses={self.statuses[-10:]}")


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _answer(
            self,
            status: int,
            payload: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None,
        ) -> None:
            body = json.dumps(payload or {}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            report = getattr(self, "_report_body", None)
            arrived = getattr(self, "_arrived", time.monotonic())
            host, seq, count = (
                _peek(self.headers, report) if report is not None else (None, None, 0)
            )
            with receiver.lock:
                receiver.statuses.append(status)
                if report is not None:
                    receiver.posts.append(Post(arrived, host, seq, count, len(report), status))

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding") == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))

        def do_POST(self) -> None:
            self._arrived = time.monotonic()
            body = self._body()
            self._report_body = body if urlsplit(self.path).path == "/api/v1/reports" else None
            self._post(body)

        def _post(self, body: bytes) -> None:
            fault = receiver._fault()
            if fault is not None:
                time.sleep(fault.delay_s)
                extra = {"Retry-After": fault.retry_after} if fault.retry_after else None
                self._answer(fault.status, {"detail": "injected"}, extra)
                return
            if self.headers.get("Authorization") != f"Bearer {receiver.agent_token}":
                self._answer(401, {"detail": "bad token"})
                return
            path = urlsplit(self.path)
            if path.path == "/api/v1/reports":
                self._report(body)
            elif path.path == "/api/v1/flight-recorder/dumps":
                self._dump(body, {k: v[0] for k, v in parse_qs(path.query).items()})
            else:
                self._answer(404)

        def _report(self, body: bytes) -> None:
            with receiver.lock:
                receiver.raw_posts.append((dict(self.headers), body))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            try:
                batch = Batch.model_validate_json(body)
            except ValueError as exc:
                self._answer(422, {"detail": str(exc)[:500]})
                return
            key = (batch.host_id, batch.seq)
            with receiver.lock:
                duplicate = key in receiver.seen_seqs
                if duplicate:
                    assert receiver.seen_seqs[key] == body, "a resent batch changed its bytes"
                accepted = duplicates = 0
                if not duplicate:
                    receiver.seen_seqs[key] = body
                    receiver.batches.append(batch)
                    for o in batch.observations:
                        if str(o.id) in receiver.seen_ids:
                            duplicates += 1
                        else:
                            receiver.seen_ids.add(str(o.id))
                            accepted += 1
            self._answer(
                202,
                {
                    "host_id": batch.host_id,
                    "seq": batch.seq,
                    "duplicate": duplicate,
                    "accepted": accepted,
                    "duplicates": duplicates,
                    "received_at": datetime.now(UTC).isoformat(),
                },
            )

        def _dump(self, body: bytes, params: dict[str, str]) -> None:
            if self.headers.get("Content-Type") != "application/gzip":
                self._answer(415, {"detail": "want application/gzip"})
                return
            raw = gzip.decompress(body)
            digest = hashlib.sha256(raw).hexdigest()
            with receiver.lock:
                receiver.dumps[digest] = raw
                receiver.dump_params.append(params)
            self._answer(201, {"upload_id": digest, "size_bytes": len(raw)})

    return Handler


class Sink:
    """An Emit that remembers what it was given."""

    def __init__(self) -> None:
        self.items: list[Observation] = []
        self.critical: list[Observation] = []

    def __call__(self, observations: Sequence[Observation], *, critical: bool = False) -> None:
        self.items.extend(observations)
        if critical:
            self.critical.extend(observations)


def context(clock: ManualClock | None = None, host_id: str = "host-1") -> tuple[Context, Sink]:
    sink = Sink()
    ctx = Context(
        host_id=host_id,
        clock=clock or ManualClock(),
        emit=sink,
        metrics=AgentMetrics(host_id),
        state=HostState(),
    )
    return ctx, sink


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def sample(gpu: int = 0) -> GpuSample:
    return GpuSample(id=uuid.uuid4(), observed_at=NOW, gpu_index=gpu, temperature_c=50.0)


def xid(n: int = 79) -> XidEvent:
    return XidEvent(id=uuid.uuid4(), observed_at=NOW, xid=n, gpu_index=0)


def ecc() -> EccEvent:
    return EccEvent(
        id=uuid.uuid4(),
        observed_at=NOW,
        gpu_index=0,
        counter="ecc_volatile_uncorrected",
        previous=0,
        current=1,
    )


def agent_config(tmp_path: Path, url: str, token: str, **over: Any) -> AgentConfig:
    """A fast config: everything on short intervals, nothing on fixed ports."""
    data: dict[str, Any] = {
        "host_id": "host-1",
        "service": {"url": url, "token": token},
        "intervals": {
            "gpu_s": 0.2,
            "logs_s": 0.1,
            "heartbeat_s": 0.2,
            "flight_recorder_s": 0.1,
            "status_s": 0.5,
            "send_s": 0.2,
        },
        "collectors": {
            "nvml": {
                "provider": "fake",
                "scenario": str(
                    Path(__file__).parents[2] / "agents/sentinel_agent/scenarios/healthy.yaml"
                ),
            },
            "kernel_log": {"path": str(tmp_path / "kern.log")},
            "training_logs": {"enabled": True, "paths": [str(tmp_path / "train*.log")]},
            "heartbeat": {"address": f"unix://{tmp_path}/hb.sock"},
            "flight_recorder": {
                "prefix": str(tmp_path / "fr" / "nccl_trace_rank_"),
                "settle_s": 0.2,
            },
            # The machine running the tests has its own hardware; none of it is the host's.
            "rasdaemon": {"path": str(tmp_path / "ras-mc_event.db")},
            "mcelog": {"path": str(tmp_path / "mcelog")},
            "edac": {"root": str(tmp_path / "edac")},
            "infiniband": {"root": str(tmp_path / "infiniband")},
            "devlink": {"enabled": False},
            "ipmi": {"enabled": False},  # the BMC of the machine running the tests
        },
        "outbox": {
            "path": str(tmp_path / "outbox.db"),
            "backoff_initial_s": 0.1,
            "backoff_max_s": 0.5,
        },
        "metrics": {"enabled": False},
    }
    for key, value in over.items():
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return AgentConfig.model_validate(data)


# -- real agent processes against the real service ------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_process_config(tmp_path: Path, service: Any, host_id: str, **over: Any) -> dict[str, Any]:
    """A config for ``python -m sentinel_agent run``: fast intervals, every collector off unless
    turned on in ``over`` (dotted keys, as for agent_config)."""
    data: dict[str, Any] = {
        "host_id": host_id,
        "service": {"url": service.url, "token": service.agent_token, "compress": False},
        "intervals": {"gpu_s": 0.5, "logs_s": 0.1, "status_s": 0.5, "send_s": 0.2},
        "collectors": {
            "nvml": {"enabled": False},
            "kernel_log": {"enabled": False},
            "training_logs": {"enabled": False},
            "heartbeat": {"enabled": False},
            "flight_recorder": {"enabled": False},
            **{name: {"enabled": False} for name in HARDWARE_COLLECTORS},
        },
        "outbox": {
            "path": str(tmp_path / "outbox.db"),
            "backoff_initial_s": 0.1,
            "backoff_max_s": 0.5,
        },
        "metrics": {"enabled": False},
    }
    for key, value in over.items():
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return data


def start_agent(
    config: Path, log: Path, *, argv_prefix: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """``python -m sentinel_agent run --config CONFIG``, its output appended to ``log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    with log.open("ab") as out:
        return subprocess.Popen(
            [*argv_prefix, sys.executable, "-m", "sentinel_agent", "run", "--config", str(config)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@contextlib.contextmanager
def in_place_service(tmp_path: Path, **extra_env: str) -> Iterator[Any]:
    """A live service on SQLite under tmp_path/service with restarts in place on, as the
    launcher's end-to-end tests run it (plus ``extra_env``); stopped at the end."""
    from tests.harness.service import LiveService

    data = tmp_path / "service"
    service = LiveService(
        database_url=f"sqlite:///{data / 'sentinel.db'}",
        data_dir=data,
        extra_env={
            "SENTINEL_REMEDIATION__IN_PLACE": "true",
            # The agent folds beats every second; the watchdog looks every 0.5 s.
            "SENTINEL_TRIAGE__HEARTBEAT_INTERVAL_S": "2",
            **extra_env,
        },
    )
    service.start()
    try:
        yield service
    finally:
        service.stop()


def api_get(service: Any, path: str, **params: Any) -> Any:
    """GET one of the service's API paths as a viewer: its JSON, or its text where the answer
    is not JSON (a hostlist); an error status fails the test."""
    response = httpx.get(
        f"{service.url}{path}",
        # None keeps a query written in the path (params={} would replace it with nothing).
        params=params or None,
        headers={"Authorization": f"Bearer {service.viewer_token}"},
        timeout=10,
    )
    response.raise_for_status()
    if "json" in response.headers.get("content-type", ""):
        return response.json()
    return response.text


def service_observations(service: Any, host: str, kind: str | None = None) -> list[dict[str, Any]]:
    """What the service stored for a host (newest first), as its REST API shows it."""
    params: dict[str, Any] = {"limit": 10_000}
    if kind is not None:
        params["kind"] = kind
    response = httpx.get(
        f"{service.url}/api/v1/hosts/{host}/observations",
        params=params,
        headers={"Authorization": f"Bearer {service.viewer_token}"},
        timeout=10,
    )
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return list(response.json())


def metric(port: int, name: str) -> float | None:
    """One unlabelled sample from an agent's /metrics, or None if absent."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def eventually(
    predicate: Callable[[], Any], timeout: float, what: str, log: Path | None = None
) -> Any:
    """Poll until ``predicate`` returns something truthy; fail naming ``what`` (and the log)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = log.read_text()[-4000:] if log is not None and log.exists() else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tail}")
        time.sleep(0.1)


# -- an Agent in this process ----------------------------------------------------------


@contextlib.asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[asyncio.Event]:
    """The agent runs while inside; leaving stops it cleanly (its final drain included)."""
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


@dataclass
class TrainingHost:
    """A host of the end-to-end tests that trains under the real processes: its agent process
    tails its training log and folds its ranks' heartbeats; a fake torchrun (the test's script)
    runs under ``sentinel-agent launch``."""

    name: str
    home: Path
    train_log: Path
    socket_path: Path
    config: Path
    env: dict[str, str]

    @property
    def launcher_log(self) -> Path:
        return self.home / "launcher.log"

    def launch(self, job: str, *args: str) -> subprocess.Popen[bytes]:
        """The job's command (the fake torchrun) under ``sentinel-agent launch``."""
        launch = [sys.executable, "-m", "sentinel_agent", "launch", "--config", str(self.config)]
        launch += ["--job-id", job, "--poll-s", "0.5", "--decide-s", "60", "--grace-s", "5"]
        with self.launcher_log.open("ab") as out:
            return subprocess.Popen(
                [*launch, "--", sys.executable, str(self.home / "torchrun.py"), *args],
                cwd=self.home,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )


def start_training_host(
    tmp_path: Path,
    service: Any,
    name: str,
    torchrun: str,
    agent_processes: list[subprocess.Popen[bytes]],
) -> TrainingHost:
    """The host's agent process started (heartbeats and its training log), seen by the
    service, its heartbeat socket bound, and the fake torchrun written next to its config."""
    home = tmp_path / name
    home.mkdir()
    train_log = home / "train.log"
    train_log.write_text("")
    socket_path = home / "hb.sock"
    config = home / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            agent_process_config(
                home,
                service,
                name,
                **{
                    "collectors.heartbeat": {"enabled": True, "address": f"unix://{socket_path}"},
                    "collectors.training_logs": {"enabled": True, "paths": [str(train_log)]},
                    "intervals.heartbeat_s": 1.0,
                },
            )
        )
    )
    agent_processes.append(start_agent(config, home / "agent.log"))
    eventually(lambda: service_observations(service, name), 30, f"{name}'s agent")
    eventually(socket_path.exists, 30, "the heartbeat socket")
    (home / "torchrun.py").write_text(torchrun)
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO / "agents"),
        "SENTINEL_HEARTBEAT_ADDR": f"unix://{socket_path}",
    }
    return TrainingHost(name, home, train_log, socket_path, config, env)
