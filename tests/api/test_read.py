"""The read API: hosts with health, one host's observations, jobs; metrics and the schema."""

from __future__ import annotations

import httpx
from builders import at, batch, gpu_sample, xid
from conftest import auth

from sentinel.clock import VirtualClock


async def _post(client: httpx.AsyncClient, tokens: dict[str, str], body: dict) -> None:
    r = await client.post("/api/v1/reports", json=body, headers=auth(tokens["agent"]))
    assert r.status_code == 202, r.text


async def test_hosts_show_health_that_clears(
    app_client: httpx.AsyncClient, tokens: dict[str, str], clock: VirtualClock
) -> None:
    await _post(app_client, tokens, batch("h001", 1, [gpu_sample(0), xid(79, gpu=0)]))
    await _post(app_client, tokens, batch("h002", 1, [gpu_sample(0)]))
    await _post(app_client, tokens, batch("h003", 1, [gpu_sample(0, clock_event_reasons=0x40)]))
    hosts = {
        h["id"]: h
        for h in (await app_client.get("/api/v1/hosts", headers=auth(tokens["viewer"]))).json()
    }
    assert hosts["h001"]["health"] == "unhealthy" and "XID 79" in hosts["h001"]["health_reason"]
    assert hosts["h002"]["health"] == "healthy"
    assert hosts["h003"]["health"] == "degraded"
    only = (
        await app_client.get("/api/v1/hosts?health=unhealthy", headers=auth(tokens["viewer"]))
    ).json()
    assert [h["id"] for h in only] == ["h001"]

    # Two hours on, with fresh healthy samples, the old XID no longer keeps h001 red.
    clock.advance(7200)
    await _post(app_client, tokens, batch("h001", 2, [gpu_sample(0, when=at(7200))]))
    host = (await app_client.get("/api/v1/hosts/h001", headers=auth(tokens["viewer"]))).json()
    assert host["health"] == "healthy"
    assert host["last_critical"].startswith("XID 79")
    # h002 said nothing for two hours: silent.
    host2 = (await app_client.get("/api/v1/hosts/h002", headers=auth(tokens["viewer"]))).json()
    assert host2["health"] == "silent"


async def test_lost_gpu_makes_host_unhealthy(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    await _post(app_client, tokens, batch("h009", 1, [gpu_sample(3, lost=True)]))
    host = (await app_client.get("/api/v1/hosts/h009", headers=auth(tokens["viewer"]))).json()
    assert host["health"] == "unhealthy" and "GPU 3 lost" in host["health_reason"]
    assert host["gpu_list"][0]["lost"] is True


async def test_host_observations_newest_first_and_by_kind(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    await _post(
        app_client, tokens, batch("h001", 1, [gpu_sample(0, when=at(0)), xid(31, when=at(1))])
    )
    await _post(app_client, tokens, batch("h001", 2, [gpu_sample(0, when=at(10))]))
    r = await app_client.get("/api/v1/hosts/h001/observations", headers=auth(tokens["viewer"]))
    kinds = [(o["kind"], o["seq"]) for o in r.json()]
    assert kinds == [("gpu_sample", 2), ("xid", 1), ("gpu_sample", 1)]
    r = await app_client.get(
        "/api/v1/hosts/h001/observations?kind=xid", headers=auth(tokens["viewer"])
    )
    assert [o["data"]["xid"] for o in r.json()] == [31]
    r = await app_client.get("/api/v1/hosts/nope/observations", headers=auth(tokens["viewer"]))
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    r = await app_client.get(
        "/api/v1/hosts/h001/observations?limit=0", headers=auth(tokens["viewer"])
    )
    assert r.status_code == 422 and "limit" in r.json()["detail"]


async def test_metrics_count_ingest(app_client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    body = batch("h001", 1, [gpu_sample(0), xid(79)])
    await _post(app_client, tokens, body)
    await _post(app_client, tokens, body)
    text = (await app_client.get("/metrics")).text
    assert 'sentinel_ingest_batches_total{result="accepted"} 1.0' in text
    assert 'sentinel_ingest_batches_total{result="duplicate"} 1.0' in text
    assert 'sentinel_ingest_observations_total{kind="xid"} 1.0' in text
    assert "sentinel_ingest_latency_seconds_bucket" in text
    assert 'sentinel_hosts{health="unhealthy"} 1.0' in text


async def test_openapi_shows_the_versioned_wire_contract(app_client: httpx.AsyncClient) -> None:
    schema = (await app_client.get("/openapi.json")).json()
    assert schema["info"]["x-wire-version"] == 1
    assert "mcelog" in schema["info"]["x-wire-additions"]["LogRecord.source"]
    assert "GpuSample.serial" in schema["info"]["x-wire-additions"]["fields"]
    assert "job_end" in schema["info"]["x-wire-additions"]["kinds"]
    assert "cloud" in schema["info"]["x-wire-additions"]["LogRecord.source"]
    assert "serial" in schema["components"]["schemas"]["GpuSample"]["properties"]
    batch_schema = schema["components"]["schemas"]["Batch"]
    assert batch_schema["properties"]["version"]["const"] == 1
    assert {"GpuSample", "XidEvent", "HeartbeatSummary", "LogRecord"} <= set(
        schema["components"]["schemas"]
    )
    body = schema["paths"]["/api/v1/reports"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/Batch"
    # An incident's evidence: the line as printed, when and where it was read.
    evidence = schema["components"]["schemas"]["Evidence"]["properties"]
    assert {"text", "time", "source", "host"} <= set(evidence)
    assert {"type": "string", "format": "date-time"} in evidence["time"]["anyOf"]
