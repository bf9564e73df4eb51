"""Admission at the door: token, body size and the uploads' budget, judged from the headers.

An ASGI middleware, so that it runs before FastAPI reads or parses any body:

* every body-carrying ``/api/`` request must name a known token (else 401);
* every request has a body limit, the API's small default or a route's larger one; a declared
  length over it is a 413 at once, and a streamed body is cut off at the limit;
* agent uploads (batches, dumps, Alertmanager posts) are admitted within a budget of requests
  and declared bytes in flight, counted until their answer; past it they get 429 with a
  randomised Retry-After, so that a crowd of agents coming back after an outage is spread out
  and the service drains it instead of collapsing.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from fastapi import FastAPI, HTTPException, status
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sentinel.api.deps import authenticate
from sentinel.auth import Principal, TokenStore
from sentinel.ingest.settings import IngestSettings
from sentinel.metrics import ServiceMetrics
from sentinel.runtime.context import AppContext
from sentinel.settings import ServerSettings

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_WANTED = frozenset({b"authorization", b"content-length"})
_UPLOADS = frozenset({"/api/v1/reports", "/api/v1/alertmanager", "/api/v1/flight-recorder/dumps"})
# The scope key under which admission hands the caller it authenticated on to the app, so
# that a layer behind it (the reports fast path) does not hash and compare the token again.
PRINCIPAL = "sentinel.principal"


def admitted_principal(scope: Scope) -> Principal | None:
    """The caller admission authenticated for this request, if it did."""
    principal = scope.get(PRINCIPAL)
    return principal if isinstance(principal, Principal) else None


def body_limits(server: ServerSettings) -> dict[str, int]:
    """The routes whose bodies may be larger than ``server.max_api_body_bytes``."""
    return {
        "/api/v1/reports": server.max_body_bytes,
        "/api/v1/alertmanager": server.max_body_bytes,
        "/api/v1/flight-recorder/dumps": server.max_dump_bytes,
        "/api/v1/classify": server.max_body_bytes,  # a pasted log, up to 2 million characters
        "/api/v1/maintenance": server.max_body_bytes,  # up to 20,000 host names
    }


@dataclass
class UploadBudget:
    """Uploads and their declared bytes in flight; one upload alone is always admitted.

    The number admitted at once adapts below its ceiling, as TCP's window does: a quarter less
    (once per round) when an upload admitted since the last cut took longer than the target,
    one more per round of uploads that were faster. It starts low, so that a fresh service
    meets a crowd with a short queue rather than a long one that times its agents out.
    """

    max_requests: int
    max_bytes: int
    target_s: float
    start: int = 8
    limit: float = 0.0
    requests: int = 0
    bytes: int = 0
    cut_at: float = float("-inf")

    def __post_init__(self) -> None:
        self.limit = float(min(self.max_requests, self.start))

    def take(self, size: int) -> bool:
        if self.requests and (self.requests + 1 > self.limit or self.bytes + size > self.max_bytes):
            return False
        self.requests += 1
        self.bytes += size
        return True

    def give_back(self, size: int, admitted_at: float, now: float) -> None:
        self.requests -= 1
        self.bytes -= size
        if now - admitted_at <= self.target_s:
            self.limit = min(float(self.max_requests), self.limit + 1 / self.limit)
        elif admitted_at >= self.cut_at:
            # Uploads admitted before the last cut were admitted under the old limit.
            self.limit = max(1.0, self.limit * 0.75)
            self.cut_at = now


class Admission:
    def __init__(
        self,
        app: ASGIApp,
        *,
        tokens: TokenStore,
        metrics: ServiceMetrics,
        server: ServerSettings,
        ingest: IngestSettings,
    ) -> None:
        self.app = app
        self._tokens = tokens
        self._metrics = metrics
        self._default_limit = server.max_api_body_bytes
        self._limits = body_limits(server)
        self._budget = UploadBudget(
            ingest.max_inflight_requests,
            ingest.max_inflight_bytes,
            ingest.target_latency_s,
            ingest.start_inflight_requests,
        )
        self._retry_after_s = ingest.retry_after_s
        self._rng = random.Random()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = {k.lower(): v for k, v in scope["headers"] if k.lower() in _WANTED}
        try:
            if path.startswith("/api/") and scope["method"] in _BODY_METHODS:
                scope[PRINCIPAL] = authenticate(self._tokens, _header(headers, b"authorization"))
            limit = self._limits.get(path, self._default_limit)
            declared = _content_length(headers)
            if declared is not None and declared > limit:
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE,
                    f"body of {declared} bytes exceeds {limit} bytes",
                )
        except HTTPException as exc:
            reason = {401: "unauthenticated", 413: "too_large"}.get(exc.status_code, "bad_request")
            self._metrics.rejected.labels(reason).inc()
            await _refuse(exc, scope, receive, send)
            return
        bounded = _bounded(receive, limit)
        if path not in _UPLOADS or scope["method"] != "POST":
            await self.app(scope, bounded, send)
            return
        size = limit if declared is None else declared
        if not self._budget.take(size):
            self._metrics.rejected.labels("overloaded").inc()
            retry_after = self._rng.randint(1, self._retry_after_s)
            shed = HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                "the service is at its upload budget; retry later",
                headers={"Retry-After": str(retry_after)},
            )
            await _refuse(shed, scope, receive, send)
            return
        admitted_at = time.monotonic()
        try:
            await self.app(scope, bounded, send)
        finally:
            self._budget.give_back(size, admitted_at, time.monotonic())


def _header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return None if value is None else value.decode("latin-1")


def _content_length(headers: dict[bytes, bytes]) -> int | None:
    value = _header(headers, b"content-length")
    if value is None:
        return None
    if not value.strip().isdigit():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "bad Content-Length header")
    return int(value)


def _bounded(receive: Receive, limit: int) -> Receive:
    """``receive`` that refuses (413) a body once more than ``limit`` bytes of it arrived."""
    received = 0

    async def bounded() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE, f"body exceeds {limit} bytes"
                )
        return message

    return bounded


async def _refuse(exc: HTTPException, scope: Scope, receive: Receive, send: Send) -> None:
    # The body was not read: the connection closes rather than waiting to drain it.
    headers = {**(exc.headers or {}), "Connection": "close"}
    response = JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
    await response(scope, receive, send)


def install_admission(app: FastAPI) -> None:
    """Put admission in front of everything the app does with a request."""
    ctx: AppContext = app.state.ctx
    app.add_middleware(
        Admission,
        tokens=ctx.tokens,
        metrics=ctx.metrics,
        server=ctx.settings.server,
        ingest=ctx.settings.ingest,
    )
