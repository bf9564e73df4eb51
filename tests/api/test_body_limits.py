"""Every route has a body limit, and the token is checked before any body is read.

Issue 14, finding 5: unauthenticated bodies were parsed before the token was checked on every
route whose body is a model; three 500 MB bodies with no token took the service to 3.3 GB.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from conftest import auth

from tests.harness.rawhttp import RawRequest
from tests.harness.service import LiveService

ID = "00000000-0000-4000-8000-000000000000"
# Every route that takes a body, with a role allowed to call it.
BODY_ROUTES: list[tuple[str, str]] = [
    ("/api/v1/reports", "agent"),
    ("/api/v1/alertmanager", "agent"),
    ("/api/v1/flight-recorder/dumps?host_id=h001&rank=0&file_name=d.pkl", "agent"),
    ("/api/v1/classify", "viewer"),
    ("/api/v1/silences", "operator"),
    ("/api/v1/maintenance", "operator"),
    (f"/api/v1/incidents/{ID}/resolve", "operator"),
    (f"/api/v1/decisions/{ID}/approve", "operator"),
    (f"/api/v1/decisions/{ID}/cancel", "operator"),
    (f"/api/v1/decisions/{ID}/override", "operator"),
    (f"/api/v1/decisions/{ID}/ack", "operator"),
    (f"/api/v1/alert-groups/{ID}/ack", "operator"),
    ("/api/v1/hosts/h001/repaired", "operator"),
    ("/api/v1/jobs/job-1/restart-in-place", "operator"),
]
HUGE = 500 * 1024 * 1024


def _post_head(service: LiveService, path: str, token: str | None) -> int:
    headers = {"Content-Type": "application/json", "Content-Length": str(HUGE)}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    # Only the headers go out: an answer proves the body was never waited for.
    with RawRequest(service.url, "POST", path, headers, timeout=5) as request:
        return request.start().response().status


@pytest.mark.slow
def test_huge_bodies_are_refused_from_their_headers(live_service: LiveService) -> None:
    tokens = {
        "agent": live_service.agent_token,
        "operator": live_service.operator_token,
        "viewer": live_service.viewer_token,
    }
    for path, role in BODY_ROUTES:
        assert _post_head(live_service, path, None) == 401, path
        assert _post_head(live_service, path, "not-a-real-token-at-all") == 401, path
        assert _post_head(live_service, path, tokens[role]) == 413, path
    # Still serving.
    assert httpx.get(f"{live_service.url}/healthz").status_code == 200


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, sqlite_template, tmp_path) -> str:  # type: ignore[no-untyped-def]
    import shutil

    shutil.copy(sqlite_template, tmp_path / "a.db")
    return f"sqlite:///{tmp_path / 'a.db'}"


async def _chunks(size: int) -> AsyncIterator[bytes]:
    # No Content-Length: the limit must hold on the bytes as they arrive.
    step = 64 * 1024
    for start in range(0, size, step):
        yield b" " * min(step, size - start)


async def test_streamed_bodies_over_the_route_limit_get_413(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    server = app_client.app.state.ctx.settings.server  # type: ignore[attr-defined]
    for path, role in BODY_ROUTES:
        if path.startswith("/api/v1/flight-recorder"):
            continue  # its own, larger limit (max_dump_bytes)
        large = path.startswith(("/api/v1/reports", "/api/v1/alertmanager", "/api/v1/classify"))
        large = large or path.startswith("/api/v1/maintenance")
        size = server.max_body_bytes + 1 if large else server.max_api_body_bytes + 1
        r = await app_client.post(path, content=_chunks(size), headers=auth(tokens[role]))
        assert r.status_code == 413, (path, r.status_code, r.text)
        assert "exceeds" in r.json()["detail"]
    # The ordinary API limit is not the reports' limit.
    r = await app_client.post(
        "/api/v1/reports",
        content=_chunks(server.max_api_body_bytes + 1),
        headers=auth(tokens["agent"]),
    )
    assert r.status_code == 400, r.text
