"""`sentinel migrate` and `sentinel serve`'s refusal to start on an out-of-date schema."""

from __future__ import annotations

import os
import subprocess
import sys

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
