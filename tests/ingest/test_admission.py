"""Past its budget the service sheds load before reading bodies, and knows a resend unparsed.

Issue 14, finding 4: with no admission control, overload collapsed (p99 of 22-39 s, 0 acks in
250 s after an outage) while the service parsed thousands of resent duplicates and grew to 2.5 GB.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from builders import batch, gpu_sample, xid
from conftest import auth

from sentinel.api.admission import UploadBudget
from sentinel.wire import Batch
from tests.harness.rawhttp import RawRequest


def _head(token: str, length: int) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Content-Length": str(length),
    }


@pytest.mark.slow
def test_requests_over_the_budget_get_429_before_their_body_is_sent(start_service) -> None:  # type: ignore[no-untyped-def]
    service = start_service(ingest__max_inflight_requests="2")
    bodies = [
        json.dumps(batch(host=f"h{n:03d}", observations=[gpu_sample(g) for g in range(8)])).encode()
        for n in range(3)
    ]
    # Two agents on slow links: admitted, their bodies still arriving.
    slow = [
        RawRequest(service.url, "POST", "/api/v1/reports", _head(service.agent_token, len(b)))
        for b in bodies[:2]
    ]
    for request, body in zip(slow, bodies[:2], strict=True):
        request.start(body[:20])
    # The third has sent its headers only; the answer comes without the body.
    with RawRequest(
        service.url, "POST", "/api/v1/reports", _head(service.agent_token, len(bodies[2]))
    ) as third:
        shed = third.start().response()
    assert shed.status == 429, shed
    assert int(shed.headers["retry-after"]) >= 1
    # The admitted ones finish and are stored; then there is room again.
    for request, body in zip(slow, bodies[:2], strict=True):
        request.send(body[20:])
        assert request.response().status == 202
        request.close()
    r = httpx.post(
        f"{service.url}/api/v1/reports", content=bodies[2], headers=service.headers("agent")
    )
    assert r.status_code == 202, r.text


@pytest.mark.slow
def test_bytes_in_flight_have_a_budget_too(start_service) -> None:  # type: ignore[no-untyped-def]
    service = start_service(ingest__max_inflight_bytes=str(1024 * 1024))
    big = 700 * 1024
    with (
        RawRequest(service.url, "POST", "/api/v1/reports", _head(service.agent_token, big)) as one,
        RawRequest(service.url, "POST", "/api/v1/reports", _head(service.agent_token, big)) as two,
    ):
        one.start(b"{")
        shed = two.start().response()
        assert shed.status == 429, shed
        assert "retry-after" in shed.headers


async def test_a_resent_batch_is_answered_as_a_duplicate_without_being_parsed(
    app_client: httpx.AsyncClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[int] = []
    parse = Batch.model_validate_json

    def counting(data: Any, **kwargs: Any) -> Batch:
        parsed.append(len(data))
        return parse(data, **kwargs)

    monkeypatch.setattr(Batch, "model_validate_json", counting)
    body = json.dumps(batch(seq=9, observations=[xid(79), gpu_sample(0)])).encode()
    post = lambda: app_client.post(  # noqa: E731
        "/api/v1/reports", content=body, headers=auth(tokens["agent"])
    )
    # Copies that arrive while the first is being stored wait for its answer ...
    first = await asyncio.gather(*(post() for _ in range(6)))
    assert [r.status_code for r in first] == [202] * 6
    assert sorted(r.json()["duplicate"] for r in first) == [False] + [True] * 5
    # ... and a resend after it (its acknowledgement was lost) is answered from memory.
    again = await post()
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert len(parsed) == 1


def test_the_upload_limit_adapts_to_the_latency_of_admitted_uploads() -> None:
    budget = UploadBudget(max_requests=64, max_bytes=1 << 30, target_s=0.25)
    assert budget.limit == 8  # a fresh service meets a crowd with a short queue
    # Eight slow uploads admitted together: one cut for the round, not eight.
    assert all(budget.take(1000) for _ in range(8)) and not budget.take(1000)
    for _ in range(8):
        budget.give_back(1000, admitted_at=0.0, now=2.0)
    assert budget.limit == 6
    # Fast uploads let it grow back, one per round, up to the ceiling.
    for _ in range(3000):
        assert budget.take(10)
        budget.give_back(10, admitted_at=3.0, now=3.01)
    assert budget.limit == 64
    # Bytes have their own budget; one upload alone is always admitted.
    assert budget.take(1 << 30) and not budget.take(1)
