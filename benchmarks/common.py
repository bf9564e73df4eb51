"""What the benchmarks share: the database a run writes to."""

from __future__ import annotations

import sys
from pathlib import Path

from sentinel.db import migrate

# The test harnesses (tests/harness) are not installed: import them from this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.harness.postgres import PostgresCluster, start_cluster


def bench_database(db: str, sqlite_file: Path) -> tuple[str, PostgresCluster | None]:
    """A migrated database for one run and its URL: the `bench` database of a fresh PostgreSQL
    cluster (the caller stops it) or, for "sqlite", `sqlite_file`."""
    cluster = None
    if db == "postgresql":
        cluster = start_cluster()
        cluster.psql("CREATE DATABASE bench")
        url = cluster.url("bench")
    else:
        url = f"sqlite:///{sqlite_file}"
    migrate.upgrade(url)
    return url, cluster
