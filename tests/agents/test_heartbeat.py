"""The heartbeat client never hurts the training loop; the collector folds beats per rank."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from agent_helpers import context

from sentinel.wire import HeartbeatSummary
from sentinel_agent.collectors.heartbeat import HeartbeatCollector
from sentinel_agent.heartbeat import Heartbeat

REPO = Path(__file__).resolve().parents[2]


def test_client_is_standard_library_only() -> None:
    code = (
        "import sys; sys.path.insert(0, 'agents/sentinel_agent'); import heartbeat; "
        "mods = [m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'yaml', 'httpx', 'sentinel', 'sentinel_agent', 'prometheus_client')]; "
        "assert not mods, mods; "
        "hb = heartbeat.Heartbeat('j', 0, 0, address='unix:///nonexistent/x.sock'); "
        "hb.beat(1); assert hb.dropped == 1"
    )
    subprocess.run([sys.executable, "-I", "-c", code], cwd=REPO, check=True)


def test_agent_absent_100k_beats_at_full_speed(tmp_path: Path) -> None:
    hb = Heartbeat("job-1", 0, 0, address=f"unix://{tmp_path}/absent.sock")
    start = time.perf_counter()
    for step in range(100_000):
        hb.beat(step, step_time_s=0.5, tokens=4096, loss=2.0)
    elapsed = time.perf_counter() - start
    assert hb.dropped == 100_000 and hb.sent == 0
    assert elapsed < 5.0, f"{elapsed:.2f} s for 100k beats"  # ~0.5 s here; generous for CI


def test_socket_full_never_blocks(tmp_path: Path) -> None:
    path = tmp_path / "hb.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server.bind(str(path))  # bound but never read: the queue fills up
    hb = Heartbeat("job-1", 0, 0, address=f"unix://{path}")
    start = time.perf_counter()
    for step in range(100_000):
        hb.beat(step)
    assert time.perf_counter() - start < 5.0
    assert hb.sent > 0 and hb.dropped > 0 and hb.sent + hb.dropped == 100_000
    server.close()


def test_bad_values_are_counted_not_raised(tmp_path: Path) -> None:
    hb = Heartbeat("job-1", 0, 0, address=f"unix://{tmp_path}/absent.sock")
    hb.beat("not a step")  # type: ignore[arg-type]
    hb.beat(1, tokens=object())  # type: ignore[arg-type]
    hb.beat(1, checkpoint_path="x" * 10_000)
    assert hb.dropped == 3
    bad = Heartbeat("job-1", address="tcp://nope")
    bad.beat(1)
    assert bad.dropped == 1


def test_env_defaults(monkeypatch: object) -> None:
    import pytest

    mp = pytest.MonkeyPatch()
    mp.setenv("RANK", "17")
    mp.setenv("LOCAL_RANK", "1")
    mp.setenv("WORLD_SIZE", "64")
    try:
        hb = Heartbeat("job-1")
        assert (hb.rank, hb.local_rank, hb.world_size) == (17, 1, 64)
    finally:
        mp.undo()


def test_collector_folds_beats_per_rank_and_rejects_garbage(tmp_path: Path) -> None:
    ctx, _ = context()
    address = f"unix://{tmp_path}/hb.sock"
    collector = HeartbeatCollector(ctx, address=address, interval_s=1)
    assert collector.poll() == []  # binds
    ranks = [
        Heartbeat("job-9", rank, rank % 8, 16, gpu_index=rank % 8, address=address)
        for rank in (8, 9)
    ]
    for step in range(1, 6):
        for hb in ranks:
            hb.beat(
                step,
                step_time_s=0.25,
                tokens=1000,
                loss=float("nan") if step == 5 else 1.5,
                checkpoint_step=4 if step >= 4 else None,
            )
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    raw.settimeout(2)
    for junk in (
        b"not json",
        b'{"v": 1, "j": "job-9"}',
        b'{"v": 1, "j": "job 9!", "r": 1, "s": 1}',
        b'{"v": 1, "j": "job-9", "r": -1, "s": 1}',
        b'{"v": 2}',
    ):
        raw.sendto(junk, f"{tmp_path}/hb.sock")
    deadline = time.monotonic() + 5
    while collector.rejected < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    out = collector.poll()
    summaries = sorted((o for o in out if isinstance(o, HeartbeatSummary)), key=lambda s: s.rank)
    assert [
        (s.rank, s.beats, s.step, s.local_rank, s.world_size, s.gpu_index) for s in summaries
    ] == [(8, 5, 5, 0, 16, 0), (9, 5, 5, 1, 16, 1)]
    assert summaries[0].loss is None and summaries[0].checkpoint_step == 4
    assert math.isclose(summaries[0].step_time_s or 0, 0.25)
    assert collector.rejected == 5
    assert ctx.state.job_id == "job-9"
    assert collector.poll() == []  # nothing new: silence is reported by absence
    collector.close()
    assert not (tmp_path / "hb.sock").exists()


def test_udp_address(tmp_path: Path) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    ctx, _ = context()
    collector = HeartbeatCollector(ctx, address=f"udp://127.0.0.1:{port}", interval_s=1)
    collector.poll()
    Heartbeat("job-1", 3, 3, address=f"udp://127.0.0.1:{port}").beat(42)
    time.sleep(0.3)
    out = collector.poll()
    assert len(out) == 1 and out[0].step == 42  # type: ignore[union-attr]
    collector.close()


def test_the_code_version_travels_from_the_client_to_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, _ = context()
    address = f"unix://{tmp_path}/hb.sock"
    collector = HeartbeatCollector(ctx, address=address, interval_s=1)
    collector.poll()
    monkeypatch.setenv("SENTINEL_CODE_VERSION", "registry/train:v2@sha256-0b1c")
    from_env = Heartbeat("job-9", 0, 0, address=address)
    given = Heartbeat("job-9", 1, 1, address=address, code_version="3f2a9c1")
    # Untrusted input: a version outside the wire's alphabet is not sent (the beats still are).
    monkeypatch.setenv("SENTINEL_CODE_VERSION", "v1; rm -rf /")
    refused = Heartbeat("job-9", 2, 2, address=address)
    assert refused.code_version is None
    for hb in (from_env, given, refused):
        hb.beat(7)
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    raw.sendto(b'{"v": 1, "j": "job-9", "r": 3, "s": 1, "cv": "bad version"}', address[7:])
    deadline = time.monotonic() + 5
    while collector.rejected < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    out = sorted(collector.poll(), key=lambda s: s.rank)  # type: ignore[union-attr]
    assert [(s.rank, s.code_version) for s in out] == [  # type: ignore[union-attr]
        (0, "registry/train:v2@sha256-0b1c"),
        (1, "3f2a9c1"),
        (2, None),
    ]
    assert collector.rejected == 1
    collector.close()


def test_checkpoint_and_startup_times_travel_from_the_client_to_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, _ = context()
    address = f"unix://{tmp_path}/hb.sock"
    collector = HeartbeatCollector(ctx, address=address, interval_s=1)
    collector.poll()
    # The launcher says when it (re)started the command: the startup is measured from then.
    monkeypatch.setenv("SENTINEL_LAUNCHED_AT", str(time.time() - 42.0))
    hb = Heartbeat("job-9", 0, 0, address=address)
    hb.beat(1)
    hb.beat(10, checkpoint_step=10, checkpoint_save_s=0.25, checkpoint_write_s=3.5)
    hb.beat(11)  # later beats repeat what is known: a lost datagram loses nothing
    # Without the launcher's time, the process's own start (Linux /proc) is the launch.
    monkeypatch.delenv("SENTINEL_LAUNCHED_AT")
    own = Heartbeat("job-9", 1, 1, address=address)
    own.beat(1, checkpoint_save_s=float("nan"), checkpoint_write_s=-1.0)  # ignored, not raised
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    for bad in (b'"slow"', b"-1", b"NaN", b"1e9"):  # refused whole, before anything is folded
        raw.sendto(b'{"v": 1, "j": "job-9", "r": 3, "s": 1, "sv": ' + bad + b"}", address[7:])
    deadline = time.monotonic() + 5
    while collector.rejected < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    out = sorted(collector.poll(), key=lambda s: s.rank)  # type: ignore[union-attr]
    first, second = out
    assert 42.0 <= (first.startup_s or 0) < 60.0  # type: ignore[union-attr]
    assert (first.checkpoint_save_s, first.checkpoint_write_s) == (0.25, 3.5)  # type: ignore[union-attr]
    assert second.startup_s is not None and second.startup_s >= 0  # type: ignore[union-attr]
    assert (second.checkpoint_save_s, second.checkpoint_write_s) == (None, None)  # type: ignore[union-attr]
    assert collector.rejected == 4
    collector.close()
