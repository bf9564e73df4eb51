"""The server as an operator installs it: a wheel built from this tree, installed into a fresh
virtual environment, runs `sentinel migrate` and `sentinel serve` and answers /readyz, on
SQLite and PostgreSQL (issue 18: the wheel had no migrations and could not start).

The server's environment borrows the dev environment's third-party packages (a .pth line: no
download); Sentinel itself comes only from the wheel, which the test checks. A GPU host's
environment is installed as a site installs it, `sentinel-gpu[agent]` from the package
registry, so that nothing of the server is there: `sentinel --help`, `sentinel classify` and
`sentinel-agent run` must work with the agent's dependencies alone.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sentinel.demo.service import free_port

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of a fresh clone: the tree's files (tracked, and new ones git does not ignore)
    copied to a clean folder, so that a stale build/ of the checkout cannot leak into it."""
    src = tmp_path_factory.mktemp("clone")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("sentinel_gpu-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # Third-party packages from the dev environment; its editable Sentinel is not seen (the
    # .pth files of a directory added this way are not processed).
    Path(site, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    subprocess.run(
        [*pip, "install", "-q", "--no-deps", "--no-index", str(wheel)],
        env=_no_checkout(),
        check=True,
        capture_output=True,
        timeout=300,
    )
    return venv


def test_the_wheel_carries_the_migrations_and_the_knowledge(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "sentinel/migrations/env.py" in names
    assert "sentinel/migrations/script.py.mako" in names
    assert any(n.startswith("sentinel/migrations/versions/0001_") for n in names)
    assert "sentinel/knowledge/patterns.yaml" in names


def test_the_wheel_ships_no_test_files(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert [n for n in names if n.startswith("tests/")] == []
    assert [n for n in names if Path(n).name.startswith(("test_", "conftest"))] == []
    assert "sentinel/demo/service.py" in names  # the demo's own runner


def test_numba_is_only_in_the_fast_extra(wheel: Path) -> None:
    """The flight-recorder fast path is optional: `server` installs without numba/llvmlite."""
    with zipfile.ZipFile(wheel) as z:
        [meta] = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [
            line for line in z.read(meta).decode().splitlines() if line.startswith("Requires-Dist")
        ]
    numba = [line for line in requires if "numba" in line or "llvmlite" in line]
    assert numba and all('extra == "fast"' in line for line in numba), numba
    assert any("numpy" in line and 'extra == "server"' in line for line in requires)


def test_the_installed_demo_command_loads(installed: Path, tmp_path: Path) -> None:
    """`sentinel demo` imports its runner from the product, not from the test harnesses."""
    run = subprocess.run(
        [str(installed / "bin" / "sentinel"), "demo", "--help"],
        env=_no_checkout(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "--port" in run.stdout
    loads = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import sentinel.demo.run"],
        env=_no_checkout(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert loads.returncode == 0, loads.stderr


def _no_checkout() -> dict[str, str]:
    """Nothing but the wheel may provide Sentinel: no checkout on PYTHONPATH (pip would also
    take the checkout's egg-info for an installed Sentinel and skip the wheel)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _env(database_url: str, data: Path) -> dict[str, str]:
    env = {k: v for k, v in _no_checkout().items() if not k.startswith("SENTINEL_")}
    env.update(
        SENTINEL_DATABASE__URL=database_url,
        SENTINEL_DATA_DIR=str(data),
        SENTINEL_AUTH__TOKENS='[{"name": "v", "role": "viewer", "token": "viewer-token-1234567"}]',
    )
    return env


@pytest.fixture
def database_url(db_url: str, tmp_path: Path) -> str:
    """An empty database: SQLite (a file that does not exist yet) or a fresh PostgreSQL one."""
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'fresh' / 'sentinel.db'}"
    return db_url


@pytest.fixture
def serving(installed: Path, database_url: str, tmp_path: Path) -> Iterator[str]:
    env = _env(database_url, tmp_path / "data")
    sentinel = installed / "bin" / "sentinel"
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import sentinel; print(sentinel.__file__)"],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(str(installed)), f"Sentinel imported from {where}, not the wheel"
    migrated = subprocess.run(
        [str(sentinel), "migrate"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "schema at" in migrated.stdout
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(sentinel), "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


def test_the_installed_server_migrates_serves_and_is_ready(serving: str, tmp_path: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            r = httpx.get(f"{serving}/readyz", timeout=2)
            if r.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError((tmp_path / "serve.log").read_text()[-3000:])
        time.sleep(0.3)
    assert r.status_code == 200


# -- an agent-only host: sentinel-gpu[agent] in a fresh environment --------------------------


@pytest.fixture(scope="module")
def agent_only(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with `sentinel-gpu[agent]` from the wheel, its dependencies from the registry."""
    venv = tmp_path_factory.mktemp("agent-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    done = subprocess.run(
        [*pip, "install", "-q", "--disable-pip-version-check", f"{wheel}[agent]"],
        env=_no_checkout(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"pip install of the agent extra failed:\n{done.stderr[-3000:]}"
    return venv


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]],
        env=_no_checkout(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_agent_install_has_nothing_of_the_server(agent_only: Path, tmp_path: Path) -> None:
    for module in ("polars", "numba", "numpy", "sqlalchemy", "fastapi", "uvicorn", "alembic"):
        found = _run(agent_only, "python", "-c", f"import {module}", cwd=tmp_path)
        assert found.returncode != 0, f"{module} is installed with the agent extra"
    where = _run(
        agent_only, "python", "-c", "import sentinel; print(sentinel.__file__)", cwd=tmp_path
    )
    assert where.stdout.startswith(str(agent_only)), where


def test_sentinel_help_and_classify_on_an_agent_only_host(agent_only: Path, tmp_path: Path) -> None:
    helped = _run(agent_only, "sentinel", "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "classify" in helped.stdout
    excerpt = tmp_path / "dmesg.txt"
    excerpt.write_text(
        "[1234.5] NVRM: Xid (PCI:0000:3b:00): 79, pid=2711, name=python, GPU has fallen off "
        "the bus.\n"
    )
    classified = _run(agent_only, "sentinel", "classify", "--json", str(excerpt), cwd=tmp_path)
    assert classified.returncode == 0, classified.stderr
    assert '"faulty_gpu"' in classified.stdout


class _Receiver(BaseHTTPRequestHandler):
    """POST /api/v1/reports as the service answers it (202, a BatchAck); keeps the batches."""

    batches: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        batch = json.loads(body)
        self.batches.append({"path": self.path, "auth": self.headers["Authorization"], **batch})
        ack = {
            "host_id": batch["host_id"],
            "seq": batch["seq"],
            "duplicate": False,
            "accepted": len(batch["observations"]),
            "duplicates": 0,
            "received_at": datetime.now(UTC).isoformat(),
        }
        out = json.dumps(ack).encode()
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_sentinel_agent_runs_on_an_agent_only_host(agent_only: Path, tmp_path: Path) -> None:
    """`sentinel-agent run` with the fake NVML provider (the scenario shipped in the wheel)
    ships a batch with the scenario's XID 79 to a receiver, and stops cleanly on SIGTERM."""
    batches: list[dict[str, Any]] = []
    handler = type("Receiver", (_Receiver,), {"batches": batches})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    ).start()
    scenario = _run(
        agent_only,
        "python",
        "-c",
        "import sentinel_agent, pathlib; "
        "print(pathlib.Path(sentinel_agent.__file__).parent / 'scenarios' / 'xid79.yaml')",
        cwd=tmp_path,
    ).stdout.strip()
    assert Path(scenario).is_file(), scenario
    off = {"enabled": False}
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "host_id": "agent-only-host",
                "service": {
                    "url": f"http://127.0.0.1:{server.server_port}",
                    "token": "agent-token-0123456789",
                },
                "intervals": {"gpu_s": 0.5, "send_s": 0.3, "status_s": 1.0},
                "collectors": {
                    "nvml": {"provider": "fake", "scenario": scenario},
                    **{
                        name: off
                        for name in (
                            "kernel_log",
                            "heartbeat",
                            "flight_recorder",
                            "rasdaemon",
                            "mcelog",
                            "edac",
                            "infiniband",
                            "devlink",
                            "redfish",
                            "ipmi",
                            "dcgm",
                        )
                    },
                },
                "outbox": {"path": str(tmp_path / "outbox.db")},
                "metrics": {"enabled": False},
            }
        )
    )
    log = (tmp_path / "agent.log").open("wb")
    agent = subprocess.Popen(
        [str(agent_only / "bin" / "sentinel-agent"), "run", "--config", str(config)],
        env=_no_checkout(),
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and agent.poll() is None:
            kinds = {o["kind"] for b in list(batches) for o in b["observations"]}
            if {"xid", "gpu_sample"} <= kinds:
                break
            time.sleep(0.2)
    finally:
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(15)
        log.close()
        server.shutdown()
    output = (tmp_path / "agent.log").read_text()
    kinds = {o["kind"] for b in batches for o in b["observations"]}
    assert {"xid", "gpu_sample"} <= kinds, output[-3000:]
    assert {b["path"] for b in batches} == {"/api/v1/reports"}
    assert {b["auth"] for b in batches} == {"Bearer agent-token-0123456789"}
    assert {b["host_id"] for b in batches} == {"agent-only-host"}
    xid = next(o for b in batches for o in b["observations"] if o["kind"] == "xid")
    assert xid["xid"] == 79
    assert code == 0, output[-3000:]
