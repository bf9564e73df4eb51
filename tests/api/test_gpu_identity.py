"""One GPU, one identity: the serial an agent sends (wire v1's optional GpuSample.serial) is
stored beside the index, bus id and UUID, kept while the GPU is lost (its RMA needs it), and
returned by the host API; an agent that sends none keeps working."""

from __future__ import annotations

import httpx
from builders import at, batch, gpu_sample
from conftest import auth

SERIAL = "1654922010104"
UUID = "GPU-8ee2fc0a-5b51-1f4b-7c2a-5d3e1f4b7c2a"


async def _post(client: httpx.AsyncClient, tokens: dict[str, str], body: dict) -> None:
    r = await client.post("/api/v1/reports", json=body, headers=auth(tokens["agent"]))
    assert r.status_code == 202, r.text


async def _gpus(client: httpx.AsyncClient, tokens: dict[str, str], host: str) -> list[dict]:
    r = await client.get(f"/api/v1/hosts/{host}", headers=auth(tokens["viewer"]))
    assert r.status_code == 200, r.text
    gpus: list[dict] = r.json()["gpu_list"]
    return gpus


async def test_the_host_api_names_a_gpu_by_index_bus_id_uuid_and_serial(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    await _post(app_client, tokens, batch("h001", 1, [gpu_sample(3, uuid=UUID, serial=SERIAL)]))
    (gpu,) = await _gpus(app_client, tokens, "h001")
    assert (gpu["gpu_index"], gpu["pci_bus_id"], gpu["uuid"], gpu["serial"]) == (
        3,
        "00000000:48:00.0",
        UUID,
        SERIAL,
    )


async def test_a_lost_gpu_keeps_the_serial_its_rma_needs(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    await _post(app_client, tokens, batch("h002", 1, [gpu_sample(3, uuid=UUID, serial=SERIAL)]))
    lost = gpu_sample(3, when=at(60), lost=True, serial=None, uuid=None, pci_bus_id=None)
    await _post(app_client, tokens, batch("h002", 2, [lost], when=at(60)))
    (gpu,) = await _gpus(app_client, tokens, "h002")
    assert gpu["lost"] is True
    assert (gpu["serial"], gpu["uuid"], gpu["pci_bus_id"]) == (SERIAL, UUID, "00000000:48:00.0")


async def test_an_agent_without_serials_keeps_working(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    # What a wire v1 agent from before GpuSample.serial sends: no such field at all.
    sample = gpu_sample(0)
    assert "serial" not in sample
    await _post(app_client, tokens, batch("h003", 1, [sample]))
    (gpu,) = await _gpus(app_client, tokens, "h003")
    assert gpu["serial"] is None and gpu["pci_bus_id"] == "00000000:18:00.0"


async def test_a_serial_the_database_could_not_hold_is_refused_by_name(
    app_client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    for bad in ("x" * 513, "16549\x0022010104", 1654922010104):
        body = batch("h004", 1, [gpu_sample(0, serial=bad)])
        r = await app_client.post("/api/v1/reports", json=body, headers=auth(tokens["agent"]))
        assert r.status_code == 422 and "serial" in r.text, r.text
