"""Authenticated but malformed input is a 4xx that names the field, never a 500.

Issue 14, finding 11: a naive ``since``, naive or overflowing silence and maintenance times,
Alertmanager payload edge cases and NUL characters in operator text (which PostgreSQL cannot
store) each got a 500. Each case here runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import copy
import gzip
from typing import Any

import httpx
import pytest
from builders import batch, gpu_sample
from conftest import auth

ID = "00000000-0000-4000-8000-000000000000"
NUL = "\x00"
ALERT: dict[str, Any] = {
    "status": "firing",
    "labels": {"alertname": "GpuXidError", "Hostname": "node7", "gpu": "3"},
    "annotations": {"summary": "GPU Xid 79 on node7"},
    "startsAt": "2026-11-28T06:35:27.925Z",
    "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "http://vm:19090/graph",
    "fingerprint": "50280ed23d57545b",
}
WEBHOOK: dict[str, Any] = {
    "version": "4",
    "receiver": "sentinel",
    "status": "firing",
    "alerts": [ALERT],
    "groupLabels": {"alertname": "GpuXidError"},
    "commonLabels": {"alertname": "GpuXidError"},
    "commonAnnotations": {},
    "externalURL": "http://vm:19093",
    "groupKey": '{}:{alertname="GpuXidError"}',
    "truncatedAlerts": 0,
}


def _refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, (response.status_code, response.text)
    assert field in response.json()["detail"], response.text


async def _post(client: httpx.AsyncClient, token: str, path: str, body: Any) -> httpx.Response:
    return await client.post(path, json=body, headers=auth(token))


def _webhook(**alert: Any) -> dict[str, Any]:
    payload = copy.deepcopy(WEBHOOK)
    payload["alerts"][0].update(alert)
    return payload


async def test_since_must_say_its_zone_and_may_be_any_time(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    r = await _post(
        app_client, tokens["agent"], "/api/v1/reports", batch("h001", 1, [gpu_sample()])
    )
    assert r.status_code == 202, r.text
    url = "/api/v1/hosts/h001/observations"
    viewer = auth(tokens["viewer"])
    _refused(
        await app_client.get(url, params={"since": "2026-11-28T00:00:00"}, headers=viewer), "since"
    )
    found = {}
    # The calendar's ends, in offsets that carry them past it once in UTC: a filter, not a value
    # to store, so they select everything and nothing.
    for since in (
        "2026-11-28T00:00:00+00:00",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:00:00-05:00",
    ):
        r = await app_client.get(url, params={"since": since}, headers=viewer)
        assert r.status_code == 200, r.text
        found[since[:4]] = len(r.json())
    assert found == {"2026": 1, "0001": 1, "9999": 0}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ends_at": "2026-12-01T00:00:00"}, "ends_at"),
        ({"starts_at": "2026-12-01T00:00:00", "duration": "2h"}, "starts_at"),
        ({"ends_at": 1_900_000_000}, "ends_at"),
        ({"duration": "99999999999999d"}, "duration"),
        ({"duration": 1e300}, "duration"),
        ({"starts_at": "9999-12-01T00:00:00Z", "duration": "60d"}, "duration"),
        ({"starts_at": "0001-01-01T00:00:00+01:00", "duration": "2h"}, "starts_at"),
        ({"duration": "2h", "comment": f"planned{NUL}"}, "comment"),
        ({"duration": "2h", "matchers": [{"name": "host", "value": f"node{NUL}"}]}, "matchers"),
        ({"duration": "2h", "matchers": [f'host="node{NUL}"']}, "matchers"),
        # Patterns that re.compile fails on with something other than re.error.
        ({"duration": "2h", "matchers": ['host=~"' + "(" * 1200 + ")" * 1200 + '"']}, "matchers"),
        (
            {"duration": "2h", "matchers": [{"name": "h", "op": "=~", "value": "a{4294967296}"}]},
            "matchers",
        ),
    ],
)
async def test_silences_with_bad_times_or_text_are_refused(
    app_client: httpx.AsyncClient, tokens: dict[str, str], body: dict[str, Any], field: str
) -> None:
    silence = {"matchers": ['host="node7"'], "comment": "planned work", **body}
    _refused(await _post(app_client, tokens["operator"], "/api/v1/silences", silence), field)


@pytest.mark.parametrize(
    ("times", "field"),
    [
        (("2026-12-01T00:00:00", "2026-12-02T00:00:00Z"), "starts_at"),
        (("2026-12-02T00:00:00Z", "2026-12-01T00:00:00Z"), "ends_at must be after starts_at"),
        # Within the calendar as written, before its start once in UTC.
        (("0001-01-01T00:00:00+01:00", "2026-12-02T00:00:00Z"), "starts_at"),
        (("2026-12-01T00:00:00Z", "9999-12-31T23:00:00-05:00"), "ends_at"),
        ((1_900_000_000, "2026-12-02T00:00:00Z"), "starts_at"),
    ],
)
async def test_maintenance_with_bad_times_is_refused(
    app_client: httpx.AsyncClient, tokens: dict[str, str], times: tuple[Any, Any], field: str
) -> None:
    window = {"hosts": ["h001"], "starts_at": times[0], "ends_at": times[1], "reason": "firmware"}
    _refused(await _post(app_client, tokens["operator"], "/api/v1/maintenance", window), field)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/api/v1/maintenance",
            {
                "starts_at": "2026-12-01T00:00:00Z",
                "ends_at": "2026-12-02T00:00:00Z",
                "reason": f"fw{NUL}up",
            },
            "reason",
        ),
        (f"/api/v1/incidents/{ID}/resolve", {"reason": f"fixed{NUL}"}, "reason"),
        (f"/api/v1/decisions/{ID}/approve", {"comment": f"ok{NUL}"}, "comment"),
        (
            f"/api/v1/decisions/{ID}/override",
            {"action": "escalate", "reason": f"no{NUL}"},
            "reason",
        ),
        (f"/api/v1/decisions/{ID}/ack", {"outcome": "failed", "detail": f"x{NUL}"}, "detail"),
        (f"/api/v1/alert-groups/{ID}/ack", {"comment": f"mine{NUL}"}, "comment"),
        ("/api/v1/hosts/h001/repaired", {"comment": f"new board{NUL}"}, "comment"),
    ],
)
async def test_nul_in_operator_text_is_refused_by_name(
    app_client: httpx.AsyncClient, tokens: dict[str, str], path: str, body: Any, field: str
) -> None:
    _refused(await _post(app_client, tokens["operator"], path, body), field)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/decisions", {"job_id": f"job{NUL}"}, "job_id"),
        ("/api/v1/decisions", {"status": NUL}, "status"),
        ("/api/v1/incidents", {"category": NUL}, "category"),
        ("/api/v1/hosts/h001/observations", {"kind": NUL}, "kind"),
        ("/api/v1/hosts/h001/observations", {"snice": "2026-11-28T00:00:00Z"}, "'snice'"),
        ("/api/v1/decisions", {"stauts": "pending"}, "'stauts'"),
    ],
)
async def test_bad_query_filters_are_refused_by_name(
    app_client: httpx.AsyncClient,
    tokens: dict[str, str],
    path: str,
    params: dict[str, str],
    field: str,
) -> None:
    """A NUL in a filter would reach PostgreSQL; an unknown one would be silently ignored."""
    _refused(await app_client.get(path, params=params, headers=auth(tokens["viewer"])), field)


async def test_a_dump_file_name_with_nul_is_refused(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    r = await app_client.post(
        "/api/v1/flight-recorder/dumps",
        params={"host_id": "h001", "rank": 0, "file_name": f"rank0{NUL}.pkl"},
        content=gzip.compress(b"a dump"),
        headers={**auth(tokens["agent"]), "Content-Type": "application/gzip"},
    )
    _refused(r, "file_name")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({k: v for k, v in WEBHOOK.items() if k != "alerts"}, "alerts"),
        ({**WEBHOOK, "receiver": None}, "receiver"),
        ({**WEBHOOK, "alerts": {"0": ALERT}}, "alerts"),
        ({**WEBHOOK, "alerts": [ALERT] * 10_001}, "alerts"),
        ({**WEBHOOK, "truncatedAlerts": "many"}, "truncatedAlerts"),
        ({**WEBHOOK, "groupKey": f"g{NUL}"}, "groupKey"),
        ({**WEBHOOK, "commonAnnotations": {"summary": f"x{NUL}"}}, "commonAnnotations"),
        (_webhook(labels={"alertname": "X", "gpu": 3}), "labels"),
        (_webhook(labels={"alertname": ["X"]}), "labels"),
        (_webhook(labels={"alertname": f"X{NUL}"}), "labels"),
        (_webhook(annotations={"summary": f"x{NUL}y"}), "annotations"),
        (_webhook(fingerprint=""), "fingerprint"),
        (_webhook(startsAt="2026-11-28T06:35:27"), "startsAt"),
        (_webhook(startsAt=1_900_000_000), "startsAt"),
        (_webhook(startsAt="0001-01-01T00:00:00+01:00"), "startsAt"),
        (_webhook(endsAt="0001-01-01T00:00:00+01:00"), "endsAt"),
    ],
)
async def test_alertmanager_payload_edge_cases_are_refused_by_name(
    app_client: httpx.AsyncClient, tokens: dict[str, str], payload: dict[str, Any], field: str
) -> None:
    _refused(await _post(app_client, tokens["agent"], "/api/v1/alertmanager", payload), field)


@pytest.mark.parametrize(
    "labels",
    [
        # "²".isdigit() is true, and int("²") raises.
        {"alertname": "GpuXidError", "Hostname": "node7", "gpu": "²"},
        {"alertname": "GpuXidError", "Hostname": "node7", "gpu": "9" * 40},
        # Longer than any job's id (128): kept in the labels, not linked as a job.
        {"alertname": "GpuXidError", "Hostname": "node7", "job_id": "j" * 300},
    ],
)
async def test_alertmanager_labels_that_do_not_fit_a_column_are_kept_as_labels_only(
    app_client: httpx.AsyncClient, tokens: dict[str, str], labels: dict[str, str]
) -> None:
    r = await _post(app_client, tokens["agent"], "/api/v1/alertmanager", _webhook(labels=labels))
    assert r.status_code == 202, r.text
    assert r.json() == {"alerts": 1, "new_events": 1}


async def test_an_empty_alertmanager_payload_and_unknown_fields_are_accepted(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    empty = {**WEBHOOK, "alerts": [], "commonLabels": {}, "future": {"x": NUL}}
    r = await _post(app_client, tokens["agent"], "/api/v1/alertmanager", empty)
    assert r.status_code == 202, r.text
    assert r.json() == {"alerts": 0, "new_events": 0}
