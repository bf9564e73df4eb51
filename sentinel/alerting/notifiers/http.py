"""One HTTP POST, classified the way every notifier needs: sent, retry later, or give up."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import httpx

from sentinel.alerting.notifiers.base import NotifyResult


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After as seconds, or an HTTP date measured against the response's own Date."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        then = parsedate_to_datetime(value)
        sent = parsedate_to_datetime(response.headers["date"])
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, (then - sent).total_seconds())


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
    if response.status_code == 429:
        return NotifyResult(False, True, error, retry_after_seconds(response))
    # 408 and 5xx are the receiver's trouble; any other 4xx is ours and will not improve.
    retryable = response.status_code >= 500 or response.status_code == 408
    return NotifyResult(False, retryable, error, retry_after_seconds(response))
