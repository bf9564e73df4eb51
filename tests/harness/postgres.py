"""A throwaway PostgreSQL 15 cluster for tests and benchmarks, run as the `postgres` user.

initdb and postgres refuse to run as root, so when we are root the cluster's folder is given
to `postgres` and the binaries run through runuser.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sentinel.demo.service import free_port as free_port  # re-exported for the harnesses

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin")
INSTALL_HINT = (
    "PostgreSQL server binaries not found in /usr/lib/postgresql/15/bin: install them with "
    "'apt-get install -y postgresql-15' (make test does this), or set "
    "SENTINEL_TEST_SKIP_POSTGRES=1 to skip the PostgreSQL half of the suite on a laptop"
)


class PostgresUnavailable(RuntimeError):
    pass


def find_pg_bin() -> Path:
    for candidate in PG_BIN_CANDIDATES:
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise PostgresUnavailable(INSTALL_HINT)


@dataclass
class PostgresCluster:
    root: Path
    port: int
    bin: Path
    as_user: str | None

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-l",
            str(self.root / "log"),
            "-w",
            "-o",
            opts,
            "start",
        )

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-Atc",
            sql,
        ).stdout


def start_cluster(parent: Path | None = None) -> PostgresCluster:
    """A new cluster in a new folder under ``parent`` (the system's temp folder by default;
    the test session gives a tmpfs, where the hundreds of databases it makes cost no disk)."""
    pg_bin = find_pg_bin()
    root = Path(tempfile.mkdtemp(prefix="sentinel-pg-", dir=parent))
    as_user: str | None = None
    if os.geteuid() == 0:
        as_user = "postgres"
        try:
            pw = pwd.getpwnam(as_user)
        except KeyError as exc:
            raise PostgresUnavailable("no 'postgres' OS user to run the server as") from exc
        os.chown(root, pw.pw_uid, pw.pw_gid)
    cluster = PostgresCluster(root=root, port=free_port(), bin=pg_bin, as_user=as_user)
    try:
        cluster.start()
    except subprocess.CalledProcessError as exc:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        cluster.stop()
        raise PostgresUnavailable(f"PostgreSQL did not start: {exc.stderr}\n{log}") from exc
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            cluster.psql("select 1")
            break
        except subprocess.CalledProcessError:
            time.sleep(0.1)
    return cluster
