"""Every route that reads wants a viewer or operator; every route that writes wants its role."""

from __future__ import annotations

import httpx
import pytest
from builders import batch
from conftest import auth

PUBLIC = {"/healthz", "/readyz", "/metrics"}
# The roles each protected route accepts; a new route must be added here (the test below
# fails until it is), so nothing ships unprotected by accident.
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("POST", "/api/v1/reports"): {"agent"},
    ("POST", "/api/v1/flight-recorder/dumps"): {"agent"},
    ("GET", "/api/v1/flight-recorder/analyses"): {"viewer", "operator"},
    ("GET", "/api/v1/hosts"): {"viewer", "operator"},
    ("GET", "/api/v1/hosts/{host_id}"): {"viewer", "operator"},
    ("GET", "/api/v1/hosts/{host_id}/observations"): {"viewer", "operator"},
    ("GET", "/api/v1/jobs"): {"viewer", "operator"},
    ("GET", "/api/v1/jobs/{job_id}"): {"viewer", "operator"},
    ("GET", "/api/v1/incidents"): {"viewer", "operator"},
    ("GET", "/api/v1/incidents/{incident_id}"): {"viewer", "operator"},
    ("POST", "/api/v1/incidents/{incident_id}/resolve"): {"operator"},
    ("GET", "/api/v1/maintenance"): {"viewer", "operator"},
    ("POST", "/api/v1/maintenance"): {"operator"},
    ("POST", "/api/v1/classify"): {"viewer", "operator"},
    ("GET", "/api/v1/decisions"): {"viewer", "operator"},
    ("GET", "/api/v1/decisions/{decision_id}"): {"viewer", "operator"},
    ("POST", "/api/v1/decisions/{decision_id}/approve"): {"operator"},
    ("POST", "/api/v1/decisions/{decision_id}/cancel"): {"operator"},
    ("POST", "/api/v1/decisions/{decision_id}/override"): {"operator"},
    # The launcher on the job's hosts acknowledges a restart in place with their agent token.
    ("POST", "/api/v1/decisions/{decision_id}/ack"): {"operator", "agent"},
    ("GET", "/api/v1/hosts/excluded"): {"viewer", "operator"},
    ("POST", "/api/v1/hosts/{host_id}/repaired"): {"operator"},
    ("GET", "/api/v1/alerts"): {"viewer", "operator"},
    ("GET", "/api/v1/alert-groups"): {"viewer", "operator"},
    ("POST", "/api/v1/alert-groups/{group_id}/ack"): {"operator"},
    ("GET", "/api/v1/silences"): {"viewer", "operator"},
    ("POST", "/api/v1/silences"): {"operator"},
    ("DELETE", "/api/v1/silences/{silence_id}"): {"operator"},
    ("POST", "/api/v1/alertmanager"): {"agent"},
    ("POST", "/api/v1/pagerduty"): {"operator"},
    ("GET", "/api/v1/events/unaccounted"): {"viewer", "operator"},
    ("GET", "/api/v1/jobs/{job_id}/advice"): {"viewer", "operator", "agent"},
    ("POST", "/api/v1/jobs/{job_id}/restart-in-place"): {"operator"},
    ("GET", "/api/v1/findings"): {"viewer", "operator"},
    ("GET", "/api/v1/swaps"): {"viewer", "operator"},
    ("GET", "/api/v1/spares"): {"viewer", "operator"},
}


def _routes(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    # The OpenAPI schema lists every API route, however routers are nested.
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    return sorted(
        (method.upper(), path)
        for path, ops in paths.items()
        if path not in PUBLIC
        for method in ops
    )


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, sqlite_template, tmp_path) -> str:  # type: ignore[no-untyped-def]
    import shutil

    shutil.copy(sqlite_template, tmp_path / "a.db")
    return f"sqlite:///{tmp_path / 'a.db'}"


async def test_every_protected_route_is_listed(app_client: httpx.AsyncClient) -> None:
    assert set(_routes(app_client)) == set(EXPECTED)


def _url(path: str) -> str:
    return (
        path.replace("{host_id}", "h001")
        .replace("{job_id}", "job-1")
        .replace("{incident_id}", "00000000-0000-4000-8000-000000000000")
        .replace("{decision_id}", "00000000-0000-4000-8000-000000000000")
    )


async def test_missing_and_unknown_tokens_get_401(app_client: httpx.AsyncClient) -> None:
    for method, path in _routes(app_client):
        for headers in ({}, auth("not-a-real-token-at-all"), {"Authorization": "Basic abc"}):
            r = await app_client.request(method, _url(path), headers=headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers.get("www-authenticate") == "Bearer"


async def test_wrong_role_gets_403(app_client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    for (method, path), allowed in EXPECTED.items():
        for role, token in tokens.items():
            r = await app_client.request(
                method, _url(path), headers=auth(token), json=batch() if method == "POST" else None
            )
            if role in allowed:
                assert r.status_code != 403, (method, path, role)
            else:
                assert r.status_code == 403, (method, path, role, r.text)
                assert role in r.json()["detail"]


async def test_public_operational_routes(app_client: httpx.AsyncClient) -> None:
    assert (await app_client.get("/healthz")).json() == {"status": "ok"}
    ready = await app_client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert "openapi" in (await app_client.get("/openapi.json")).json()
