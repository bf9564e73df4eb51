"""Webhook adapter: posts each operation as signed JSON to a receiver that carries it out.

Contract (docs/schedulers.md): ``X-Sentinel-Signature: sha256=<hex>`` is HMAC-SHA256 with the
shared secret over ``<X-Sentinel-Timestamp>.<raw body>``; the timestamp (Unix seconds) is in
the signed material so a captured request cannot be replayed later. ``X-Sentinel-Delivery``
stays the same across retries of one call, for the receiver to drop duplicates.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from sentinel.clock import Clock
from sentinel.retry import Backoff, call_with_retries, retry_after_s, retryable_status
from sentinel.schedulers.base import (
    JobResult,
    NodesResult,
    Operation,
    OpResult,
    invalid_hosts,
    valid_gpu,
    valid_job_id,
)

SIGNATURE_HEADER = "X-Sentinel-Signature"
TIMESTAMP_HEADER = "X-Sentinel-Timestamp"
DELIVERY_HEADER = "X-Sentinel-Delivery"
PAYLOAD_VERSION = 1
DEFAULT_TOLERANCE_S = 300.0

_UNSUPPORTED = "the webhook adapter only sends operations; the receiver owns scheduler state"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Sentinel-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: bytes,
    *,
    timestamp: str,
    body: bytes,
    signature: str,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True)
class _Answer:
    """One POST's outcome: the receiver's text on success, else the error and how soon."""

    ok: bool
    retryable: bool
    error: str = ""
    text: str = ""
    retry_after_s: float | None = None


class WebhookScheduler:
    """POSTs drain/resume/requeue/reboot/reset_gpu to ``url``; retries 5xx, 408, 429 and
    timeouts with the service's backoff (sentinel.retry, honouring Retry-After), never other
    4xx: the receiver has said no."""

    name = "webhook"
    # The delivery id is new for each call, so a receiver cannot tell a repeated requeue from
    # a second one (a reboot or GPU reset likewise); drain and resume are states, the same
    # however often they are asked for.
    idempotent_steps: frozenset[Operation] = frozenset({"drain", "resume"})

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        clock: Clock,
        timeout_s: float = 5.0,
        retries: int = 4,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = url
        self._secret = secret
        self._clock = clock
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff = Backoff(backoff_initial_s, backoff_max_s)
        self._sleep = sleep
        self._transport = transport
        # Loading the CA bundle takes ~0.1 s: once per adapter, not once per call.
        self._tls = ssl.create_default_context()

    async def drain(self, host: str, reason: str) -> OpResult:
        if invalid_hosts([host]):
            return self._refuse("drain", f"invalid host name {host!r}")
        return await self._send("drain", {"host": host, "reason": reason})

    async def resume(self, host: str) -> OpResult:
        if invalid_hosts([host]):
            return self._refuse("resume", f"invalid host name {host!r}")
        return await self._send("resume", {"host": host})

    async def requeue(self, job_id: str, exclude_hosts: Sequence[str]) -> OpResult:
        if bad := invalid_hosts(exclude_hosts):
            return self._refuse("requeue", f"invalid host names {bad!r}")
        if not valid_job_id(job_id):
            return self._refuse("requeue", f"bad job id {job_id!r}")
        return await self._send(
            "requeue", {"job_id": job_id, "exclude_hosts": sorted(set(exclude_hosts))}
        )

    async def reboot(self, host: str, reason: str) -> OpResult:
        if invalid_hosts([host]):
            return self._refuse("reboot", f"invalid host name {host!r}")
        return await self._send("reboot", {"host": host, "reason": reason})

    async def reset_gpu(self, host: str, gpu: str, reason: str) -> OpResult:
        if invalid_hosts([host]) or not valid_gpu(gpu):
            return self._refuse("reset_gpu", f"invalid host or GPU {host!r} {gpu!r}")
        return await self._send("reset_gpu", {"host": host, "gpu": gpu, "reason": reason})

    async def job_state(self, job_id: str) -> JobResult:
        return JobResult(adapter=self.name, op="job_state", ok=False, error=_UNSUPPORTED)

    async def nodes(self) -> NodesResult:
        return NodesResult(adapter=self.name, op="nodes", ok=False, error=_UNSUPPORTED)

    def _refuse(self, op: Operation, error: str) -> OpResult:
        return OpResult(adapter=self.name, op=op, ok=False, error=error)

    async def _send(self, op: Operation, args: dict[str, Any]) -> OpResult:
        delivery = uuid.uuid4().hex
        commands: list[str] = []
        log: list[str] = []
        async with httpx.AsyncClient(
            timeout=self._timeout_s,
            transport=self._transport,
            verify=self._tls,
            follow_redirects=False,
        ) as client:

            async def attempt() -> _Answer:
                now = self._clock.now()
                body = json.dumps(
                    {
                        "version": PAYLOAD_VERSION,
                        "delivery_id": delivery,
                        "op": op,
                        "sent_at": now.isoformat(),
                        "args": args,
                    },
                    separators=(",", ":"),
                    sort_keys=True,
                ).encode()
                timestamp = str(int(now.timestamp()))
                headers = {
                    "Content-Type": "application/json",
                    TIMESTAMP_HEADER: timestamp,
                    SIGNATURE_HEADER: sign(self._secret, timestamp, body),
                    DELIVERY_HEADER: delivery,
                }
                commands.append(f"POST {self._url}")
                number = len(commands)
                try:
                    response = await client.post(self._url, content=body, headers=headers)
                except httpx.TimeoutException as exc:
                    error = f"timed out: {type(exc).__name__}"
                    log.append(f"attempt {number}: {error}")
                    return _Answer(ok=False, retryable=True, error=error)
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    log.append(f"attempt {number}: {error}")
                    return _Answer(ok=False, retryable=True, error=error)
                status = response.status_code
                log.append(f"attempt {number}: HTTP {status}")
                if 200 <= status < 300:
                    return _Answer(ok=True, retryable=False, text=response.text[:500])
                return _Answer(
                    ok=False,
                    retryable=retryable_status(status),
                    error=f"HTTP {status}: {response.text[:200]}".strip(),
                    # A receiver asking for an hour does not get to stall remediation for an
                    # hour; the cap is the same as for our own backoff.
                    retry_after_s=retry_after_s(
                        response.headers.get("Retry-After"),
                        self._clock.now(),
                        max_s=self._backoff.max_s,
                    ),
                )

            answer = await call_with_retries(
                attempt, backoff=self._backoff, attempts=self._retries + 1, sleep=self._sleep
            )
        if answer.ok:
            return OpResult(
                adapter=self.name,
                op=op,
                ok=True,
                commands=tuple(commands),
                output="\n".join([*log, answer.text]).strip(),
            )
        return OpResult(
            adapter=self.name,
            op=op,
            ok=False,
            commands=tuple(commands),
            output="\n".join(log),
            error=answer.error,
            retryable=answer.retryable,
        )
