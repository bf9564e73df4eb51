"""What the service advises the jobs on this host (checkpoint now, before a planned swap), for
the heartbeat collector to pass on to the ranks in its reply to their datagrams.

The agent asks ``GET /api/v1/jobs/{job}/advice`` for each job whose ranks beat here, at most
once per ``refresh_s``; an answer it cannot get leaves the last one standing until it is
``stale_s`` old, then the job has no advice (the ranks are told nothing rather than something
stale).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import httpx

log = logging.getLogger(__name__)

# What a reply carries of the service's advice; the rest stays on the service.
_KEPT = (
    "checkpoint_now",
    "reason",
    "restart_in_place",
    "restart_decision",
    "restart_reason",
    "restart_code_version",
    "restart_skip_steps",
)


def reply_of(advice: dict[str, Any]) -> dict[str, Any]:
    """The part of the service's advice a rank is told (bounded: it travels in a datagram)."""
    out = {k: advice.get(k) for k in _KEPT if k in advice}
    reason = out.get("reason")
    if isinstance(reason, str):
        out["reason"] = reason[:500]
    swap = advice.get("swap")
    if isinstance(swap, dict):
        out["swap_host"] = swap.get("host")
        out["spare_host"] = swap.get("spare_host")
    out["checkpoint_now"] = bool(out.get("checkpoint_now"))
    return out


class AdviceBoard:
    """The latest advice per job, fetched on the collector's thread, read by its receiver."""

    def __init__(
        self,
        fetch: Callable[[str], dict[str, Any] | None],
        *,
        refresh_s: float = 2.0,
        stale_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._refresh_s = refresh_s
        self._stale_s = stale_s
        self._now = monotonic
        self._lock = threading.Lock()
        self._advice: dict[str, tuple[float, dict[str, Any]]] = {}
        self._asked: dict[str, float] = {}

    def refresh(self, jobs: Iterable[str]) -> None:
        for job in sorted(set(jobs)):
            now = self._now()
            if now - self._asked.get(job, -1e18) < self._refresh_s:
                continue
            self._asked[job] = now
            advice = self._fetch(job)
            if advice is not None:
                with self._lock:
                    self._advice[job] = (now, reply_of(advice))

    def get(self, job: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._advice.get(job)
        if found is None or self._now() - found[0] > self._stale_s:
            return None
        return found[1]


def http_fetcher(
    client: httpx.Client, base_url: str, token: str
) -> Callable[[str], dict[str, Any] | None]:
    """Asks the service; None when it cannot say (down, an unknown job, a refusal)."""

    def fetch(job: str) -> dict[str, Any] | None:
        try:
            r = client.get(
                f"{base_url}/api/v1/jobs/{quote(job, safe='')}/advice",
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            log.debug("advice for %s: %s", job, exc)
            return None
        if r.status_code != 200:
            log.debug("advice for %s: HTTP %s", job, r.status_code)
            return None
        try:
            body = r.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    return fetch
