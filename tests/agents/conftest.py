"""Fixtures for the agent tests: a tiny stand-in service that can also misbehave on cue."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

# The test modules share builders through agent_helpers; this folder is not a package
# (it would shadow the real ``agents`` package on the tests/ import path).
sys.path.append(str(Path(__file__).parent))

from agent_helpers import Receiver, _handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    server.daemon_threads = True
    rec.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()
