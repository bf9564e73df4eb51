"""Fixtures for the adapter tests: a real Slurm 22.05 cluster and a webhook receiver."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sentinel.schedulers.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify,
)
from tests.harness.slurm import SlurmCluster, SlurmUnavailable, start_slurm

SKIP_SLURM = os.environ.get("SENTINEL_TEST_SKIP_SLURM") == "1"
SECRET = b"a-shared-secret-of-some-length"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slurm: needs the real Slurm cluster of tests/schedulers")


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Five fake 8-GPU nodes: a 4-node job, drained off one, still has 4 to run on."""
    if SKIP_SLURM:
        pytest.skip("SENTINEL_TEST_SKIP_SLURM=1: Slurm tests skipped")
    try:
        cluster = start_slurm(nodes=5)
    except SlurmUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """The shared cluster, every job cancelled and every node resumed after each test."""
    yield slurm_cluster
    slurm_cluster.reset()


@dataclass
class Reply:
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: str = '{"accepted": true}'


@dataclass
class Received:
    headers: dict[str, str]  # names lowercased
    body: bytes
    verified: bool

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A webhook receiver on loopback that checks every signature as a real one would and
    answers from a script (then 200)."""

    def __init__(self, secret: bytes = SECRET) -> None:
        self.secret = secret
        self.script: list[Reply] = []
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ok = verify(
                    receiver.secret,
                    timestamp=self.headers.get(TIMESTAMP_HEADER, ""),
                    body=body,
                    signature=self.headers.get(SIGNATURE_HEADER, ""),
                    now=time.time(),
                )
                with receiver._lock:
                    receiver.received.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body, ok)
                    )
                    reply = receiver.script.pop(0) if receiver.script else Reply()
                if not ok:
                    reply = Reply(401, body='{"error": "bad signature"}')
                time.sleep(reply.delay_s)
                try:
                    payload = reply.body.encode()
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up waiting: that is the timeout test

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/sentinel"

    def deliveries(self) -> set[str]:
        return {r.headers[DELIVERY_HEADER.lower()] for r in self.received}

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as rec:
        yield rec
