"""The agent answers a rank's heartbeat with the service's advice for its job (checkpoint now,
before a planned swap), over the same datagram socket; old clients are never answered."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_helpers import context

from sentinel_agent.advice import AdviceBoard, http_fetcher, reply_of
from sentinel_agent.collectors.heartbeat import HeartbeatCollector
from sentinel_agent.heartbeat import Heartbeat

SWAP = {
    "job_id": "job-9",
    "checkpoint_now": True,
    "reason": "GPU 2: a row remap is pending: swap node2 at the next durable checkpoint",
    "swap": {"host": "node2", "spare_host": "node5", "status": "waiting"},
    "cadence": None,
    "restart_in_place": False,
}


def _until(check: Callable[[], bool], beat: Callable[[], None], timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        beat()
        if check():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("scheme", ["unix", "udp"])
def test_the_rank_is_told_to_checkpoint_now_and_when_it_no_longer_must(
    tmp_path: Path, scheme: str
) -> None:
    if scheme == "unix":
        address = f"unix://{tmp_path}/hb.sock"
    else:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        address = f"udp://127.0.0.1:{probe.getsockname()[1]}"
        probe.close()
    advice: dict[str, Any] = {"job_id": "job-9", "checkpoint_now": False, "swap": None}
    board = AdviceBoard(lambda job: advice if job == "job-9" else None, refresh_s=0)
    ctx, _ = context()
    collector = HeartbeatCollector(ctx, address=address, interval_s=1, advice=board)
    collector.poll()  # binds
    hb = Heartbeat("job-9", 3, 3, 16, address=address)
    step = iter(range(1, 10_000))
    try:
        hb.beat(next(step))
        time.sleep(0.2)
        collector.poll()  # the job is known here now: its advice is fetched
        assert hb.advice is None and collector.replies == 0  # nothing to say: not a word

        advice.update(SWAP)
        collector.poll()
        assert _until(lambda: hb.checkpoint_now, lambda: hb.beat(next(step)))
        assert hb.advice is not None
        assert (hb.advice["swap_host"], hb.advice["spare_host"]) == ("node2", "node5")
        assert "row remap" in hb.advice["reason"]

        advice.update(checkpoint_now=False, swap=None)
        collector.poll()
        assert _until(lambda: not hb.checkpoint_now, lambda: hb.beat(next(step)))
        replies = collector.replies
        for _ in range(5):
            hb.beat(next(step))
        time.sleep(0.2)
        assert collector.replies == replies  # told once that it is over, then quiet
        [summary] = collector.poll()
        assert summary.rank == 3  # the beats were folded as ever
    finally:
        hb.close()
        collector.close()


def test_a_client_that_bound_no_address_is_never_answered(tmp_path: Path) -> None:
    address = f"unix://{tmp_path}/hb.sock"
    board = AdviceBoard(lambda job: SWAP, refresh_s=0)
    ctx, _ = context()
    collector = HeartbeatCollector(ctx, address=address, interval_s=1, advice=board)
    collector.poll()
    old = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # as heartbeat.py before replies
    beat = {"v": 1, "j": "job-9", "r": 0, "l": 0, "s": 1, "t": time.time()}
    try:
        old.sendto(json.dumps(beat).encode(), f"{tmp_path}/hb.sock")
        time.sleep(0.2)
        collector.poll()
        old.sendto(json.dumps({**beat, "s": 2}).encode(), f"{tmp_path}/hb.sock")
        time.sleep(0.2)
        assert collector.replies == 0
        assert [s.step for s in collector.poll()] == [2]
    finally:
        old.close()
        collector.close()


class _Service:
    """Stands in for GET /api/v1/jobs/{job}/advice, checking the agent's token."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service.paths.append(self.path)
                ok = self.headers.get("Authorization") == "Bearer agent-token"
                if not ok or not self.path.startswith("/api/v1/jobs/job-9/"):
                    self.send_response(403 if not ok else 404)
                    self.end_headers()
                    return
                body = json.dumps(SWAP).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def service() -> Iterator[_Service]:
    s = _Service()
    s.thread.start()
    yield s
    s.server.shutdown()
    s.server.server_close()


def test_the_agent_asks_the_service_with_its_token(service: _Service) -> None:
    with httpx.Client(timeout=5) as client:
        board = AdviceBoard(http_fetcher(client, service.url, "agent-token"), refresh_s=60)
        board.refresh(["job-9", "job/odd"])
        board.refresh(["job-9"])  # within refresh_s: not asked again
        advice = board.get("job-9")
        assert advice is not None and advice["checkpoint_now"] is True
        assert advice["swap_host"] == "node2"
        assert board.get("job/odd") is None  # the service said 404: no advice
        assert sorted(service.paths) == [
            "/api/v1/jobs/job%2Fodd/advice",
            "/api/v1/jobs/job-9/advice",
        ]
        wrong = AdviceBoard(http_fetcher(client, service.url, "bad"), refresh_s=0)
        wrong.refresh(["job-9"])
        assert wrong.get("job-9") is None


def test_advice_goes_stale_when_the_service_stops_answering() -> None:
    now = [0.0]
    answers: list[dict[str, Any] | None] = [SWAP]
    board = AdviceBoard(lambda job: answers[-1], refresh_s=1, stale_s=30, monotonic=lambda: now[0])
    board.refresh(["job-9"])
    assert board.get("job-9") is not None
    answers.append(None)  # the service is down
    now[0] = 20
    board.refresh(["job-9"])
    assert board.get("job-9") is not None  # the last answer stands a while
    now[0] = 31
    assert board.get("job-9") is None


def test_a_rank_is_told_the_restart_decided_for_its_job() -> None:
    """A restart in place and what it changes (the code version, the data skipped) travel in
    the reply; the rest of the advice (cadence...) stays on the service."""
    advice = SWAP | {
        "checkpoint_now": False,
        "restart_in_place": True,
        "restart_decision": "d-1",
        "restart_code_version": None,
        "restart_skip_steps": [101, 350],
    }
    reply = reply_of(advice)
    assert (reply["restart_in_place"], reply["restart_decision"]) == (True, "d-1")
    assert reply["restart_skip_steps"] == [101, 350] and "cadence" not in reply
