"""`sentinel migrate` and `sentinel serve`'s refusal to start on an out-of-date schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sentinel.db import migrate


def _sentinel(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sentinel.cli", *args],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_migrate_then_status(empty_db_url: str) -> None:
    r = _sentinel("migrate", env={"SENTINEL_DATABASE__URL": empty_db_url})
    assert r.returncode == 0, r.stderr
    assert "schema at" in r.stdout
    assert migrate.schema_status_sync(empty_db_url).up_to_date


def test_serve_refuses_an_out_of_date_schema(empty_db_url: str) -> None:
    r = _sentinel("serve", "--port", "0", env={"SENTINEL_DATABASE__URL": empty_db_url})
    assert r.returncode == 2
    assert "sentinel migrate" in r.stderr


def test_bad_settings_exit_2_with_the_field() -> None:
    r = _sentinel("migrate", env={"SENTINEL_SERVER__PORT": "-5"})
    assert r.returncode == 2
    assert "server.port" in r.stderr


def test_version() -> None:
    r = _sentinel("--version", env={})
    assert r.returncode == 0 and r.stdout.startswith("sentinel "), r.stdout + r.stderr


def test_demo_on_a_taken_port_says_so_in_one_line() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _sentinel("demo", "--port", str(port), "--duration", "1", env={})
    assert r.returncode == 2
    assert f"port {port} is taken" in r.stderr and "Traceback" not in r.stderr


# A GPU host installs sentinel-gpu[agent]: no polars, numba, SQLAlchemy, FastAPI... This runs
# the CLI with those made unimportable, as on such a host.
_AGENT_ONLY = """
import sys
from importlib.abc import MetaPathFinder

SERVER_ONLY = {"polars", "numba", "numpy", "sqlalchemy", "fastapi", "starlette", "uvicorn",
               "alembic", "asyncpg", "psycopg", "jinja2", "pydantic_settings"}

class Absent(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in SERVER_ONLY:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
sys.argv = ["sentinel", *sys.argv[1:]]
from sentinel.cli import main
main()
"""


def test_help_and_classify_work_with_the_agent_install_alone(tmp_path: Path) -> None:
    helped = subprocess.run(
        [sys.executable, "-c", _AGENT_ONLY, "--help"], capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0, helped.stderr
    assert "classify" in helped.stdout
    excerpt = tmp_path / "dmesg.txt"
    excerpt.write_text(
        "NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus.\n"
    )
    classified = subprocess.run(
        [sys.executable, "-c", _AGENT_ONLY, "classify", "--json", str(excerpt)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert classified.returncode == 0, classified.stderr
    assert '"faulty_gpu"' in classified.stdout


def test_report_refuses_a_missing_database_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "nowhere" / "sentinel.db"
    r = _sentinel("report", "--database-url", f"sqlite:///{db}", env={})
    assert r.returncode == 2
    assert f"no database at {db}" in r.stderr and "SELECT" not in r.stderr
    assert not db.exists() and not db.parent.exists()
