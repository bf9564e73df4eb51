"""Scale-out through real processes: two `sentinel serve` replicas on one partitioned PostgreSQL
behind a real haproxy. Whichever replica a batch reaches, it is stored once; a resend through
the other replica is a duplicate and a reused seq a 409; one replica leads and its triage opens
the incident that either replica then serves."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from builders import batch, gpu_sample, xid
from conftest import _fresh_pg
from sqlalchemy import create_engine, text

from sentinel.auth import new_token
from sentinel.db.engine import sync_url
from tests.harness.haproxy import Haproxy, HaproxyUnavailable
from tests.harness.postgres import PostgresCluster
from tests.harness.service import LiveService

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def replicas(
    pg_cluster: PostgresCluster, pg_template: str, tmp_path: Path
) -> Iterator[tuple[list[LiveService], Haproxy]]:
    url = _fresh_pg(pg_cluster, pg_template)
    tokens = {
        "agent_token": new_token(),
        "operator_token": new_token(),
        "viewer_token": new_token(),
    }
    services = [
        LiveService(
            database_url=url,
            data_dir=tmp_path / f"replica-{i}",
            extra_env={"SENTINEL_AUTO_MIGRATE": "false", "SENTINEL_LEADER_TTL_S": "3"},
            **tokens,
        )
        for i in range(2)
    ]
    lb: Haproxy | None = None
    try:
        for s in services:
            s.start(timeout=60)
        try:
            lb = Haproxy([s.port for s in services], balance="roundrobin")
        except HaproxyUnavailable as exc:
            pytest.fail(str(exc), pytrace=False)
        lb.wait_ready()
        yield services, lb
    finally:
        if lb is not None:
            lb.stop()
        for s in services:
            s.stop()


def _post(url: str, token: str, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/reports",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=10,
    )


def _sql(url: str, sql: str) -> list[Any]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql)).all()]
    finally:
        engine.dispose()


def test_two_replicas_behind_haproxy_store_once_and_one_leader_triages(
    replicas: tuple[list[LiveService], Haproxy],
) -> None:
    services, lb = replicas
    a, b = services
    token = a.agent_token
    now = datetime.now(UTC)
    sent: list[str] = []
    # Through the balancer: round robin spreads these over both replicas.
    for seq in range(1, 7):
        obs = [gpu_sample(0, now), gpu_sample(1, now)]
        if seq == 3:
            obs.append(xid(79, gpu=1, when=now))
        body = json.dumps(batch("scale-h1", seq, obs, now)).encode()
        sent.append(body.decode())
        r = _post(lb.url, token, body)
        assert r.status_code == 202 and not r.json()["duplicate"], r.text
    # The same bytes again at each replica directly: duplicates, whoever stored them.
    for service in services:
        r = _post(service.url, token, sent[2].encode())
        assert r.status_code == 202 and r.json()["duplicate"], r.text
    # The seq with other bytes (another sent_at, so another partition key): still a conflict.
    other = batch("scale-h1", 3, [gpu_sample(0, now)], now.replace(microsecond=1))
    assert _post(b.url, token, json.dumps(other).encode()).status_code == 409

    url = a.database_url
    assert _sql(url, "SELECT count(*) FROM batches") == [(6,)]
    assert _sql(url, "SELECT count(*) FROM events") == [(1,)]
    day = now.strftime("%Y%m%d")
    assert _sql(url, "SELECT DISTINCT tableoid::regclass::text FROM batches") == [
        (f"sentinel_partitions.batches_p{day}",)
    ]
    # One leader for both replicas, and its triage opens the incident both serve.
    assert len(_sql(url, "SELECT holder FROM leases WHERE name = 'leader'")) == 1
    deadline = time.monotonic() + 60
    found: list[Any] = []
    while not found and time.monotonic() < deadline:
        found = [
            i
            for i in httpx.get(
                f"{lb.url}/api/v1/incidents", headers=a.headers("viewer"), timeout=10
            ).json()
            if i["culprit_host"] == "scale-h1"
        ]
        time.sleep(0.2)
    assert found, (a.data_dir / "service.log").read_text()[-3000:]
    for service in services:
        r = httpx.get(
            f"{service.url}/api/v1/incidents/{found[0]['id']}",
            headers=service.headers("viewer"),
            timeout=10,
        )
        assert r.status_code == 200 and r.json()["category"] == "faulty_gpu", r.text
