"""One HTTP POST, classified the way every notifier needs: sent, retry later, or give up."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from sentinel.alerting.notifiers.base import NotifyResult
from sentinel.retry import retry_after_s, retryable_status


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds; an HTTP date is measured against the response's own Date (the
    receiver's clock, not ours: the dispatcher's may be virtual)."""
    sent: datetime | None
    try:
        sent = parsedate_to_datetime(response.headers["date"])
    except (KeyError, TypeError, ValueError):
        sent = None
    if sent is not None and sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    return retry_after_s(response.headers.get("retry-after"), sent)


async def post(
    client: httpx.AsyncClient, url: str, content: bytes, headers: dict[str, str]
) -> NotifyResult:
    try:
        response = await client.post(
            url, content=content, headers={"Content-Type": "application/json", **headers}
        )
    except httpx.TimeoutException as exc:
        return NotifyResult(ok=False, retryable=True, error=f"timeout: {type(exc).__name__}")
    except httpx.TransportError as exc:
        return NotifyResult(ok=False, retryable=True, error=f"transport: {exc!r}"[:500])
    if response.is_success:
        return NotifyResult.success()
    error = f"HTTP {response.status_code}: {response.text[:300]}"
    return NotifyResult(
        False, retryable_status(response.status_code), error, _retry_after(response)
    )
