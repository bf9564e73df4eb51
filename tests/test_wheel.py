"""The server as an operator installs it: a wheel built from this tree, installed into a fresh
virtual environment, runs `sentinel migrate` and `sentinel serve` and answers /readyz, on
SQLite and PostgreSQL (issue 18: the wheel had no migrations and could not start).

The fresh environment borrows the dev environment's third-party packages (a .pth line: no
download in the test); Sentinel itself comes only from the wheel, which the test checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

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
    assert [n for n in names if n.startswith(("sentinel/testing/", "tests/"))] == []
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
