"""Ships the outbox's batches to ``POST /api/v1/reports``, in order, until acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum

import httpx

from sentinel_agent.clock import Clock
from sentinel_agent.metrics import AgentMetrics
from sentinel_agent.transport.outbox import WRITE_ERRORS, FormedBatch, Outbox

log = logging.getLogger(__name__)

REPORTS_PATH = "/api/v1/reports"
# Below this a gzip header costs more than it saves.
_GZIP_MIN_BYTES = 1024
# A Retry-After longer than this is more likely a misconfiguration than a plan.
_MAX_RETRY_AFTER_S = 600.0
# An outbox that failed a write (a full disk) is tried again this often: the error is local
# and cheap to retry, and the service must not see a silent host for longer than needed.
OUTBOX_RETRY_S = 1.0
# "Later", not "never": timeouts and load (408, 429), a token the operator has to fix
# (401, 403; dead-lettering would throw away every batch until then).
_RETRY_4XX = frozenset({401, 403, 408, 429})
# The batch's (host, seq) is stored with other content: another agent posts as this host, or
# this outbox is an old copy. These bytes will never be taken, so the batch is dead-lettered
# like any refusal; renumbering would walk through the other writer's numbers, a refusal each.
SEQ_CONFLICT = 409
# The body is too large, or something in it is refused: in halves, the rest gets through.
_SPLIT_4XX = frozenset({413, 422})


class Outcome(Enum):
    ACKED = "acked"
    RETRY = "retry"
    SPLIT = "split"  # resend as two halves; a single observation is dead-lettered
    POISON = "poison"


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    status: int | None = None
    retry_after_s: float | None = None
    detail: str = ""


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Parse Retry-After: delta-seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), _MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), _MAX_RETRY_AFTER_S)


def classify(status: int) -> Outcome:
    if status == 202:
        return Outcome.ACKED
    if status in _SPLIT_4XX:
        return Outcome.SPLIT
    # Any other 4xx will never succeed with the same bytes.
    if 400 <= status < 500 and status not in _RETRY_4XX:
        return Outcome.POISON
    return Outcome.RETRY


class Backoff:
    """Exponential backoff with full jitter: a uniform draw below a doubling, capped step.

    Full jitter spreads a fleet that failed at the same moment (a service outage) over the
    whole step, so its retries do not arrive in waves.
    """

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        step = min(self.max_s, self.initial_s * 2.0 ** min(self.failures, 30))
        self.failures += 1
        return self._rng.uniform(0, step)

    def reset(self) -> None:
        self.failures = 0


def retry_delay(backoff: Backoff, retry_after_s: float | None) -> float:
    """The wait before the next try: not before the service's Retry-After, then spread like
    any retry, so that a fleet told "5 s" all at once does not come back all at once."""
    return (retry_after_s or 0.0) + backoff.next_delay()


class Sender:
    def __init__(
        self,
        outbox: Outbox,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        token: str,
        clock: Clock,
        metrics: AgentMetrics,
        send_interval_s: float,
        backoff: Backoff,
        compress: bool = True,
        drain_timeout_s: float = 2.0,
    ) -> None:
        self._outbox = outbox
        self._client = client
        self._url = base_url + REPORTS_PATH
        self._token = token
        self._clock = clock
        self._metrics = metrics
        self._interval = send_interval_s
        self._backoff = backoff
        self._compress = compress
        self._drain_s = drain_timeout_s
        self._wake = asyncio.Event()
        self._stopping = False
        self._hold_until = 0.0  # monotonic time before which Retry-After forbids sending
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        """Send now (a critical event arrived), cutting short any backoff. Thread-safe.

        Only a Retry-After from the service still holds: it asked for quiet explicitly.
        """
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        delay = 0.0
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()
            if self._stopping:
                break
            hold = self._hold_until - self._clock.monotonic()
            if hold > 0:
                delay = hold
                continue
            try:
                delay = await self.flush()
            except Exception:
                # Whatever went wrong, the sender must outlive it: a dead sender behind a
                # "running" process is a silent host, and the service drains it.
                log.exception("sending failed unexpectedly; trying again")
                delay = self._backoff.next_delay()
        # On a clean stop, ship what is queued while the service answers; a service that is
        # down (or asked for quiet) must not hold up the shutdown. The rest stays on disk.
        if self._drain_s > 0 and not self._backoff.failures and not self._holding():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush(draining=True), timeout=self._drain_s)

    def _holding(self) -> bool:
        return self._hold_until > self._clock.monotonic()

    async def flush(self, *, draining: bool = False) -> float:
        """Send every waiting batch; returns how long to wait before the next round."""
        while draining or not self._stopping:
            try:
                batch = self._outbox.next_batch()
            except WRITE_ERRORS:
                return OUTBOX_RETRY_S  # the outbox logged and counted it
            self._metrics.outbox_depth.set(self._outbox.depth)
            self._metrics.outbox_bytes.set(self._outbox.size_bytes)
            if batch is None:
                self._backoff.reset()
                return self._interval
            result = await self.send(batch)
            try:
                delay = self._settle(batch, result)
            except WRITE_ERRORS:
                return OUTBOX_RETRY_S
            if delay is not None:
                return delay
        return self._interval

    def _settle(self, batch: FormedBatch, result: SendResult) -> float | None:
        """Record the service's answer; returns the wait before retrying, None to go on."""
        if result.outcome is Outcome.ACKED:
            self._outbox.ack(batch.seq)
            self._metrics.batches_sent.inc()
            self._backoff.reset()
            return None
        if result.outcome is Outcome.SPLIT and self._outbox.split(batch.seq):
            log.warning(
                "service refused batch seq=%d (%d observations) with HTTP %s: %s; "
                "resending it as two halves",
                batch.seq,
                batch.observations,
                result.status,
                result.detail,
            )
            self._metrics.batches_split.inc()
            return None
        if result.outcome in (Outcome.SPLIT, Outcome.POISON):
            if result.status == SEQ_CONFLICT:
                self._metrics.seq_conflicts.inc()
            log.error(
                "service refused batch seq=%d (%d observations) with HTTP %s: %s; "
                "moved to dead letters, it will not be retried%s",
                batch.seq,
                batch.observations,
                result.status,
                result.detail,
                " (its seq was used for another batch: is another agent posting as this host, "
                "or was this outbox restored from an old copy?)"
                if result.status == SEQ_CONFLICT
                else "",
            )
            self._outbox.dead_letter(batch.seq, result.status or 0, result.detail)
            self._metrics.dead_letters.inc()
            return None
        self._metrics.send_failures.inc()
        delay = retry_delay(self._backoff, result.retry_after_s)
        if result.retry_after_s is not None:
            self._hold_until = self._clock.monotonic() + result.retry_after_s
        level = logging.ERROR if result.status in (401, 403) else logging.WARNING
        log.log(
            level,
            "send of batch seq=%d failed (%s); retrying in %.1f s",
            batch.seq,
            result.detail,
            delay,
        )
        return delay

    async def send(self, batch: FormedBatch) -> SendResult:
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
        body = batch.body
        if self._compress and len(body) >= _GZIP_MIN_BYTES:
            # mtime=0 keeps the compressed bytes identical from one resend to the next.
            body = gzip.compress(body, compresslevel=6, mtime=0)
            headers["Content-Encoding"] = "gzip"
        try:
            response = await self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return SendResult(Outcome.RETRY, detail=f"{type(exc).__name__}: {exc}")
        outcome = classify(response.status_code)
        detail = f"HTTP {response.status_code}"
        if outcome is not Outcome.ACKED:
            detail += " " + response.text[:500]
        elif _is_duplicate(response):
            log.info("batch seq=%d was already stored by the service", batch.seq)
        return SendResult(
            outcome,
            status=response.status_code,
            retry_after_s=retry_after_seconds(
                response.headers.get("Retry-After"), self._clock.now()
            )
            if response.status_code in (429, 503)
            else None,
            detail=detail,
        )


def _is_duplicate(response: httpx.Response) -> bool:
    try:
        return bool(response.json().get("duplicate"))
    except ValueError:
        return False
