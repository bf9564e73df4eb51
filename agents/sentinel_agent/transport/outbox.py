"""The on-disk outbox: every observation lands here before any send, and leaves on a 202.

Policy (also in docs/agent.md):

* Observations wait in ``pending`` in arrival order. A batch is formed from the oldest of
  them only when no other batch is waiting, and a formed batch keeps its sequence number and
  its exact bytes on disk until the service acknowledges it. A resend, also after an agent
  restart, is therefore byte-identical and the service's (host, seq) dedup makes it harmless.
* Batches go out strictly in sequence order, one at a time: per host order is preserved.
* A new outbox starts its sequence at the wall-clock time in seconds, so that an agent
  whose disk was wiped does not reuse numbers the service has already seen.
* The outbox is bounded by ``max_bytes`` of queued JSON. When it is over the cap, the oldest
  periodic samples (gpu_sample, heartbeat, agent_status) that are not yet in a batch are
  dropped until it is back under 90% of the cap. Events (xid, ecc, log, flight recorder) are
  never dropped: if events alone exceed the cap, the cap is exceeded and that is logged.
* A batch the service refuses for good moves to ``dead_letters`` with the service's answer;
  one it refuses for its size or content can first be split in two (``split``).
* Collectors that tail files store their read positions here (``positions``), in the same
  transaction as the observations made from the lines before them.
* A write that fails (a full disk) is rolled back, logged with the real error and counted;
  ``refusing_writes`` says so until a write succeeds again. Callers keep what they could not
  write and try again: nothing here is left half-done.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from sentinel.wire import PERIODIC_KINDS, Observation
from sentinel_agent.clock import Clock
from sentinel_agent.metrics import AgentMetrics

log = logging.getLogger(__name__)

# How far below the cap a drop round goes, so a full outbox does not drop on every put.
_DROP_TARGET = 0.9
# While writes keep failing, the error is logged again at most this often (with a count).
_ERROR_LOG_EVERY_S = 60.0

# What a failed outbox write raises: SQLite's errors (SQLITE_FULL, SQLITE_IOERR...) and
# the OS's, e.g. when the database cannot be reopened.
WRITE_ERRORS = (sqlite3.Error, OSError)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    periodic INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_periodic ON pending (periodic, id);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    body BLOB NOT NULL,
    observations INTEGER NOT NULL,
    formed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY,
    body BLOB NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS positions (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    job_id TEXT,
    state TEXT NOT NULL,
    sha256 TEXT,
    upload_id TEXT,
    error TEXT
);
"""


class OutboxBusy(Exception):
    """Another process holds this outbox."""


class Row(NamedTuple):
    """One observation as the outbox stores it."""

    kind: str
    periodic: bool
    body: str


def encode(observations: Sequence[Observation]) -> list[Row]:
    return [Row(o.kind, o.kind in PERIODIC_KINDS, o.model_dump_json()) for o in observations]


@dataclass(frozen=True)
class FormedBatch:
    seq: int
    body: bytes
    observations: int


@dataclass(frozen=True)
class Upload:
    path: str
    size: int
    mtime_ns: int
    rank: int
    job_id: str | None
    state: str
    sha256: str | None
    upload_id: str | None


class Outbox:
    """Thread-safe: collectors put from their threads, the sender forms and acks batches."""

    def __init__(
        self,
        path: Path,
        *,
        host_id: str,
        clock: Clock,
        max_bytes: int,
        max_batch_observations: int = 1000,
        max_batch_bytes: int = 4 * 1024 * 1024,
        agent_id: str | None = None,
        metrics: AgentMetrics | None = None,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Two agents on one outbox would hand out the same sequence numbers: refuse.
        self._lock_file = (path.parent / (path.name + ".lock")).open("a")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise OutboxBusy(f"{path} is in use by another agent") from None
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._clock = clock
        self._host_id = host_id
        self._agent_id = agent_id or host_id
        self._max_bytes = max_bytes
        self._max_batch_observations = max_batch_observations
        self._max_batch_bytes = max_batch_bytes
        self._over_cap_logged = False
        self._path = path
        self._metrics = metrics
        self._write_errors = 0
        self._refusing_since: float | None = None  # monotonic time of the first failure
        self._error_logged_at = 0.0
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash; only a power cut can lose the
            # last transactions, which is an acceptable price for not fsyncing every put.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            first_seq = int(clock.now().timestamp())
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', ?)", (first_seq,)
            )
            self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('dropped', 0)")
            self._bytes = self._scalar(
                "SELECT (SELECT COALESCE(SUM(LENGTH(body)), 0) FROM pending)"
                " + (SELECT COALESCE(SUM(LENGTH(body)), 0) FROM batches)"
            )
            self._depth = self._scalar(
                "SELECT (SELECT COUNT(*) FROM pending)"
                " + (SELECT COALESCE(SUM(observations), 0) FROM batches)"
            )
            self._dropped = self._scalar("SELECT value FROM meta WHERE key = 'dropped'")

    def _scalar(self, sql: str, params: Sequence[object] = ()) -> int:
        row = self._db.execute(sql, params).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    # -- observations -------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[None]:
        """One write transaction; a failure is rolled back, counted, logged and re-raised."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield
            self._db.execute("COMMIT")
        except BaseException as exc:
            # SQLite has often rolled back already (SQLITE_FULL does); a ROLLBACK then fails
            # with "no transaction is active", which must not hide the error that mattered.
            if self._db.in_transaction:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error as rollback_error:
                    log.debug(
                        "outbox rollback after a failed %s also failed: %s", what, rollback_error
                    )
            if isinstance(exc, WRITE_ERRORS):
                self._write_failed(what, exc)
            raise
        if self._refusing_since is not None:
            log.warning(
                "outbox %s accepts writes again (%d failed writes over %.0f s)",
                self._path,
                self._write_errors,
                time.monotonic() - self._refusing_since,
            )
            self._refusing_since = None

    def _write_failed(self, what: str, exc: BaseException) -> None:
        self._write_errors += 1
        now = time.monotonic()
        first = self._refusing_since is None
        if first:
            self._refusing_since = now
        if self._metrics is not None:
            self._metrics.outbox_write_errors.inc()
        if first or now - self._error_logged_at >= _ERROR_LOG_EVERY_S:
            self._error_logged_at = now
            log.error(
                "outbox %s refused a write (%s): %s: %s; %d failed writes so far, "
                "retrying until it accepts them again",
                self._path,
                what,
                type(exc).__name__,
                exc,
                self._write_errors,
                exc_info=exc if first else None,
            )

    # -- observations -------------------------------------------------------------------

    def put(
        self,
        observations: Sequence[Observation],
        positions: Mapping[str, str | None] | None = None,
    ) -> int:
        """Store observations durably; returns how many periodic samples were dropped."""
        return self.write(encode(observations), positions or {})

    def write(
        self,
        rows: Sequence[Row],
        positions: Mapping[str, str | None],
        *,
        dropped_elsewhere: int = 0,
    ) -> int:
        """Store rows and read positions in one transaction; returns the samples dropped.

        ``dropped_elsewhere`` adds samples dropped before they got here (a full disk) to the
        persisted drop count. Raises one of WRITE_ERRORS when the write failed: then
        nothing was stored.
        """
        if not rows and not positions and not dropped_elsewhere:
            return 0
        with self._lock:
            with self._transaction("put"):
                if rows:
                    self._db.executemany(
                        "INSERT INTO pending (kind, periodic, body) VALUES (?, ?, ?)", rows
                    )
                forget = [(k,) for k, v in positions.items() if v is None]
                keep = [(k, v) for k, v in positions.items() if v is not None]
                if forget:
                    self._db.executemany("DELETE FROM positions WHERE key = ?", forget)
                if keep:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO positions (key, value) VALUES (?, ?)", keep
                    )
                if dropped_elsewhere:
                    self._db.execute(
                        "UPDATE meta SET value = value + ? WHERE key = 'dropped'",
                        (dropped_elsewhere,),
                    )
            self._bytes += sum(len(r.body) for r in rows)
            self._depth += len(rows)
            self._dropped += dropped_elsewhere
            if self._bytes > self._max_bytes:
                # What was asked is stored; a failed clean-up is logged and tried next time.
                with contextlib.suppress(*WRITE_ERRORS):
                    return self._drop_samples()
        return 0

    def positions(self) -> dict[str, str]:
        """The read positions collectors stored, by key."""
        with self._lock:
            return dict(self._db.execute("SELECT key, value FROM positions").fetchall())

    def _drop_samples(self) -> int:
        target = int(self._max_bytes * _DROP_TARGET)
        victims: list[int] = []
        freed = 0
        cursor = self._db.execute(
            "SELECT id, LENGTH(body) FROM pending WHERE periodic = 1 ORDER BY id"
        )
        for row_id, size in cursor:
            if self._bytes - freed <= target:
                break
            victims.append(row_id)
            freed += size
        cursor.close()
        if victims:
            with self._transaction("drop samples"):
                self._db.executemany("DELETE FROM pending WHERE id = ?", [(v,) for v in victims])
                self._db.execute(
                    "UPDATE meta SET value = value + ? WHERE key = 'dropped'", (len(victims),)
                )
            self._bytes -= freed
            self._depth -= len(victims)
            self._dropped += len(victims)
            log.warning(
                "outbox over %d bytes: dropped %d oldest samples", self._max_bytes, len(victims)
            )
        if self._bytes > self._max_bytes and not self._over_cap_logged:
            self._over_cap_logged = True
            log.error(
                "outbox holds %d bytes of events, over its %d byte cap; events are never dropped",
                self._bytes,
                self._max_bytes,
            )
        elif self._bytes <= self._max_bytes:
            self._over_cap_logged = False
        return len(victims)

    # -- batches ------------------------------------------------------------------------

    def next_batch(self) -> FormedBatch | None:
        """The oldest unacknowledged batch, formed from pending observations if none waits."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq, body, observations FROM batches ORDER BY seq LIMIT 1"
            ).fetchone()
            if row is not None:
                return FormedBatch(seq=row[0], body=bytes(row[1]), observations=row[2])
            return self._form_batch()

    def _form_batch(self) -> FormedBatch | None:
        bodies: list[str] = []
        size = 0
        last_id = -1
        cursor = self._db.execute(
            "SELECT id, body FROM pending ORDER BY id LIMIT ?", (self._max_batch_observations,)
        )
        for row_id, body in cursor:
            if bodies and size + len(body) > self._max_batch_bytes:
                break
            bodies.append(body)
            size += len(body) + 1
            last_id = row_id
        cursor.close()
        if not bodies:
            return None
        with self._transaction("form a batch"):
            (batch,) = self._insert_batches([bodies])
            self._db.execute("DELETE FROM pending WHERE id <= ?", (last_id,))
        # The spliced body is larger than the parts by the header only; keep the tally exact.
        self._bytes += len(batch.body) - sum(len(b) for b in bodies)
        return batch

    def _insert_batches(self, parts: list[list[str]]) -> list[FormedBatch]:
        """New batches, one per list of observation bodies, on the next sequence numbers."""
        seq = self._scalar("SELECT value FROM meta WHERE key = 'next_seq'")
        now = self._clock.now().isoformat()
        out: list[FormedBatch] = []
        for bodies in parts:
            header = json.dumps(
                {
                    "version": 1,
                    "host_id": self._host_id,
                    "agent_id": self._agent_id,
                    "seq": seq,
                    "sent_at": now,
                },
                separators=(",", ":"),
            )
            # The observations are already JSON: splice them in rather than re-encoding.
            body = (header[:-1] + ',"observations":[' + ",".join(bodies) + "]}").encode()
            self._db.execute(
                "INSERT INTO batches (seq, body, observations, formed_at) VALUES (?, ?, ?, ?)",
                (seq, body, len(bodies), now),
            )
            out.append(FormedBatch(seq=seq, body=body, observations=len(bodies)))
            seq += 1
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq,))
        return out

    def split(self, seq: int) -> bool:
        """Replace a waiting batch by two, each with half its observations, in order.

        For a batch the service refused as too large or as invalid: the halves go out on new
        sequence numbers (the service stored nothing of the refused one), so a single bad
        observation ends up alone in a batch and only it is dead-lettered. False when the
        batch holds one observation (or is gone): there is nothing to split.
        """
        with self._lock:
            row = self._db.execute(
                "SELECT body, observations FROM batches WHERE seq = ?", (seq,)
            ).fetchone()
            if row is None or row[1] < 2:
                return False
            observations = json.loads(row[0])["observations"]
            bodies = [
                json.dumps(o, separators=(",", ":"), ensure_ascii=False) for o in observations
            ]
            half = len(bodies) // 2
            with self._transaction("split a batch"):
                self._db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
                halves = self._insert_batches([bodies[:half], bodies[half:]])
            self._bytes += sum(len(b.body) for b in halves) - len(row[0])
            return True

    def ack(self, seq: int) -> None:
        with self._lock:
            row = self._db.execute(
                "SELECT LENGTH(body), observations FROM batches WHERE seq = ?", (seq,)
            ).fetchone()
            if row is None:
                return
            with self._transaction("acknowledge a batch"):
                self._db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
            self._bytes -= row[0]
            self._depth -= row[1]

    def dead_letter(self, seq: int, status: int, reason: str) -> None:
        """Move a batch the service refused for good aside, with the service's answer."""
        with self._lock:
            row = self._db.execute(
                "SELECT body, observations FROM batches WHERE seq = ?", (seq,)
            ).fetchone()
            if row is None:
                return
            with self._transaction("dead-letter a batch"):
                self._db.execute(
                    "INSERT OR REPLACE INTO dead_letters (seq, body, status, reason, at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (seq, row[0], status, reason[:4096], self._clock.now().isoformat()),
                )
                self._db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
            self._bytes -= len(row[0])
            self._depth -= row[1]

    def dead_letters(self) -> list[tuple[int, int, str]]:
        with self._lock:
            return [
                (r[0], r[1], r[2])
                for r in self._db.execute(
                    "SELECT seq, status, reason FROM dead_letters ORDER BY seq"
                )
            ]

    @property
    def depth(self) -> int:
        """Observations not yet acknowledged (pending plus in the waiting batch)."""
        return self._depth

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def refusing_writes(self) -> bool:
        """The last write failed (a full disk); true until one succeeds."""
        return self._refusing_since is not None

    @property
    def write_errors(self) -> int:
        """Failed writes since this process opened the outbox."""
        return self._write_errors

    @property
    def dropped_samples(self) -> int:
        """Periodic samples dropped by the cap policy over the outbox's whole life."""
        return self._dropped

    # -- flight-recorder uploads ----------------------------------------------------------

    def upload_known(self, path: str, size: int, mtime_ns: int) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT size, mtime_ns FROM uploads WHERE path = ?", (path,)
            ).fetchone()
        return row is not None and (row[0], row[1]) == (size, mtime_ns)

    def add_upload(
        self, path: str, size: int, mtime_ns: int, rank: int, job_id: str | None
    ) -> None:
        """Record a new dump (or a rewritten one at the same path) as waiting for upload."""
        with self._lock, self._transaction("record an upload"):
            self._db.execute(
                "INSERT OR REPLACE INTO uploads (path, size, mtime_ns, rank, job_id, state)"
                " VALUES (?, ?, ?, ?, ?, 'pending')",
                (path, size, mtime_ns, rank, job_id),
            )

    def pending_uploads(self) -> list[Upload]:
        with self._lock:
            rows = self._db.execute(
                "SELECT path, size, mtime_ns, rank, job_id, state, sha256, upload_id"
                " FROM uploads WHERE state = 'pending' ORDER BY path"
            ).fetchall()
        return [Upload(*row) for row in rows]

    def finish_upload(
        self,
        path: str,
        state: str,
        *,
        sha256: str | None = None,
        upload_id: str | None = None,
        error: str | None = None,
    ) -> None:
        with self._lock, self._transaction("record an upload's outcome"):
            self._db.execute(
                "UPDATE uploads SET state = ?, sha256 = COALESCE(?, sha256),"
                " upload_id = COALESCE(?, upload_id), error = ? WHERE path = ?",
                (state, sha256, upload_id, error, path),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._lock_file.close()  # releases the flock
