"""Fixtures for the agent tests: a tiny stand-in service that can also misbehave on cue."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

# The test modules share builders through agent_helpers, found on this folder's path.
sys.path.append(str(Path(__file__).parent))

from agent_helpers import Receiver, _handler


class _Server(ThreadingHTTPServer):
    # A fleet connects at once; the default backlog of 5 would delay some by a SYN retry (1 s).
    request_queue_size = 128


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    server = _Server(("127.0.0.1", 0), _handler(rec))
    server.daemon_threads = True
    rec.url = f"http://127.0.0.1:{server.server_address[1]}"
    # shutdown() waits for serve_forever's next poll: 0.5 s by default, in every test.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


@pytest.fixture
def agent_processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Agent processes a test starts (append them); any still running at the end is stopped."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
