"""The Redfish collector against a real Redfish service: sushy-tools' `sushy-static` serving a
mockup tree in DMTF's layout (public-rackmount1's Managers/Systems LogServices, Chassis Power
and Thermal; the newer PowerSubsystem and ThermalSubsystem), which the test changes between
polls as a BMC's log and sensors change. TLS against the same server with a self-signed
certificate."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from sentinel.triage.classify import classify_text
from sentinel.wire import LogRecord
from sentinel_agent.agent import Agent
from sentinel_agent.collectors.redfish import Credentials, RedfishCollector, connect
from sentinel_agent.config import AgentConfig, RedfishConfig
from tests.agents.agent_helpers import Receiver, agent_config, context, running, wait_for

SUSHY_STATIC = shutil.which("sushy-static") or str(Path(sys.executable).with_name("sushy-static"))
# A BMC's tree in DMTF's mockup layout (public-rackmount1's Managers and Systems LogServices,
# a 1U chassis with Power and Thermal; an HGX tray with PowerSubsystem and ThermalSubsystem).
MOCKUP = Path(__file__).parent / "redfish_mockup"
R = "/redfish/v1"
SEL = f"{R}/Managers/BMC/LogServices/SEL/Entries"
EVENT_LOG = f"{R}/Systems/1/LogServices/Log/Entries"


def _entry(
    log: str, n: int, created: str, severity: str, sensor: str, message: str, message_id: str
) -> dict[str, Any]:
    return {
        "@odata.type": "#LogEntry.v1_15_0.LogEntry",
        "@odata.id": f"{log}/{n}",
        "Id": str(n),
        "Name": f"Log Entry {n}",
        "EntryType": "SEL",
        "Severity": severity,
        "Created": created,
        "SensorType": sensor,
        "Message": message,
        "MessageId": message_id,
    }


_PSU_LOST = _entry(SEL, 3, "2024-05-14T02:31:07+00:00", "Critical", "Power Supply",
                   "Power Supply PSU1 Failure detected - Asserted",
                   "OpenBMC.0.1.SELEntryAdded")  # fmt: skip
_GPU_HOT = _entry(EVENT_LOG, 2, "2024-05-14T02:40:00Z", "Critical", "Temperature",
                  "GPU3_Temp sensor crossed a critical high threshold going high. "
                  "Reading=95.000000 Threshold=90.000000.",
                  "OpenBMC.0.1.SensorThresholdCriticalHighGoingHigh")  # fmt: skip


class MockupTree:
    """A Redfish mockup on disk: one `index.json` per resource, as sushy-static serves it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, uri: str, body: dict[str, Any]) -> None:
        path = self.root / uri.removeprefix(R).strip("/") / "index.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body, indent=4))

    def get(self, uri: str) -> dict[str, Any]:
        path = self.root / uri.removeprefix(R).strip("/") / "index.json"
        body: dict[str, Any] = json.loads(path.read_text())
        return body

    def append(self, uri: str, entry: dict[str, Any]) -> None:
        """A new entry at the end of a LogEntryCollection (its members are the entries)."""
        body = self.get(uri)
        body["Members"].append(entry)
        body["Members@odata.count"] = len(body["Members"])
        self.put(uri, body)

    def health(self, uri: str, health: str, *, member: int | None = None, key: str = "") -> None:
        body = self.get(uri)
        target = body if member is None else body[key][member]
        status = target["Status"]
        status["HealthRollup" if "HealthRollup" in status else "Health"] = health
        self.put(uri, body)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Bmc:
    url: str
    tree: MockupTree
    # sushy-static's request log (http.server's, on its stderr): what was asked of the BMC.
    requests: Path

    def served(self, uri: str) -> int:
        return self.requests.read_text().count(f'"GET {uri} HTTP')


def _serve(tree: MockupTree, scheme: str, *tls: str) -> Iterator[Bmc]:
    port = _free_port()
    requests = tree.root.parents[2] / "requests.log"
    log = requests.open("w")
    process = subprocess.Popen(
        [SUSHY_STATIC, "-i", "127.0.0.1", "-p", str(port), "-m", str(tree.root), *tls],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"{scheme}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("sushy-static did not start") from None
                time.sleep(0.1)
        yield Bmc(url, tree, requests)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _copy(tmp_path: Path) -> MockupTree:
    shutil.copytree(MOCKUP, tmp_path / "mockup")
    return MockupTree(tmp_path / "mockup" / "redfish" / "v1")


@pytest.fixture
def bmc(tmp_path: Path) -> Iterator[Bmc]:
    yield from _serve(_copy(tmp_path), "http")


CREDS = Credentials("root", "0penBmc:pass")


def _collector(bmc: Bmc, positions: dict[str, str] | None = None, **kw: Any) -> RedfishCollector:
    ctx, _ = context()
    ctx = dataclasses.replace(ctx, positions=positions or {})
    return RedfishCollector(ctx, client=connect(bmc.url, CREDS), interval_s=30, **kw)


def _records(found: object) -> list[LogRecord]:
    assert isinstance(found, list)
    records = [o for o in found if isinstance(o, LogRecord)]
    assert len(records) == len(found)
    return records


def _by_path(records: list[LogRecord]) -> dict[str, LogRecord]:
    return {r.path or "": r for r in records}


def test_ships_exactly_the_new_entries_and_the_health_changes(bmc: Bmc) -> None:
    collector = _collector(bmc)
    assert collector.poll() == []  # the logs as found are learned, all is healthy

    bmc.tree.append(SEL, _PSU_LOST)
    bmc.tree.health(f"{R}/Chassis/1U/Power", "Critical", member=1, key="PowerSupplies")
    bmc.tree.health(f"{R}/Chassis/1U", "Critical")
    shipped = _by_path(_records(collector.poll()))
    assert set(shipped) == {SEL, f"{R}/Chassis/1U/Power#/PowerSupplies/1", f"{R}/Chassis/1U"}
    entry = shipped[SEL]
    assert entry.source == "redfish"
    assert json.loads(entry.message) == _PSU_LOST  # the entry as the BMC serves it
    assert (entry.pattern, entry.severity) == ("psu_failure", "error")
    assert classify_text(entry.message).category.value == "power_supply"
    psu = shipped[f"{R}/Chassis/1U/Power#/PowerSupplies/1"]
    assert json.loads(psu.message)["Status"]["Health"] == "Critical"
    assert classify_text(psu.message).category.value == "power_supply"

    assert collector.poll() == []  # nothing new: nothing re-shipped

    bmc.tree.append(EVENT_LOG, _GPU_HOT)
    bmc.tree.health(f"{R}/Chassis/HGX/ThermalSubsystem/Fans/FAN0", "Warning")
    bmc.tree.health(f"{R}/Chassis/1U/Power", "OK", member=1, key="PowerSupplies")
    shipped = _by_path(_records(collector.poll()))
    assert set(shipped) == {EVENT_LOG, f"{R}/Chassis/HGX/ThermalSubsystem/Fans/FAN0",
                            f"{R}/Chassis/1U/Power#/PowerSupplies/1"}  # fmt: skip
    assert json.loads(shipped[EVENT_LOG].message)["Id"] == "2"
    assert classify_text(shipped[EVENT_LOG].message).category.value == "gpu_thermal"
    assert shipped[f"{R}/Chassis/1U/Power#/PowerSupplies/1"].severity == "info"  # back to OK


def test_a_restart_resumes_after_the_entries_shipped(bmc: Bmc) -> None:
    first = _collector(bmc)
    first.poll()
    bmc.tree.append(SEL, _PSU_LOST)
    assert len(first.poll()) == 1
    saved = {k: v for k, v in first.positions().items() if v is not None}
    first.close()

    again = _collector(bmc, saved)
    assert again.poll() == []
    bmc.tree.append(EVENT_LOG, _GPU_HOT)
    assert [json.loads(r.message)["Id"] for r in _records(again.poll())] == ["2"]


def test_a_poll_that_fails_half_way_ships_its_entries_on_the_next(bmc: Bmc) -> None:
    collector = _collector(bmc)
    collector.poll()
    bmc.tree.append(SEL, _PSU_LOST)
    chassis = bmc.tree.root / "Chassis" / "index.json"
    saved = chassis.read_text()
    chassis.unlink()  # the BMC answers 404 after the SEL was read
    with pytest.raises(httpx.HTTPStatusError):
        collector.poll()
    chassis.write_text(saved)
    [record] = _records(collector.poll())
    assert json.loads(record.message)["Id"] == "3"


def test_from_start_ships_the_logged_entries_and_an_unhealthy_part_at_once(bmc: Bmc) -> None:
    bmc.tree.health(f"{R}/Chassis/HGX/PowerSubsystem/PowerSupplies/PSU1", "Critical")
    collector = _collector(bmc, from_start=True)
    records = _records(collector.poll())
    assert sorted(r.path or "" for r in records) == sorted(
        [SEL, SEL, EVENT_LOG, f"{R}/Chassis/HGX/PowerSubsystem/PowerSupplies/PSU1"]
    )
    # Entries no pattern knows keep the BMC's word for how bad they are.
    boot = next(r for r in records if json.loads(r.message).get("Id") == "1" and r.path == SEL)
    assert (boot.family, boot.severity) == ("unmatched", "info")


async def test_the_agent_ships_a_new_entry_from_its_bmc(
    tmp_path: Path, bmc: Bmc, receiver: Receiver
) -> None:
    secret = tmp_path / "bmc-credentials"
    secret.write_text("root:0penBmc\n")
    config = agent_config(
        tmp_path,
        receiver.url,
        receiver.agent_token,
        **{"intervals.redfish_s": 0.2,
           "collectors.redfish": {"enabled": True, "url": bmc.url,
                                  "credentials_file": str(secret)}},
    )  # fmt: skip

    def redfish() -> list[LogRecord]:
        return [o for o in receiver.observations("log") if o.source == "redfish"]

    async with running(Agent(config)):
        await wait_for(lambda: bmc.served(SEL) >= 2)  # polled: the logs as found are history
        bmc.tree.append(SEL, _PSU_LOST)
        await wait_for(lambda: redfish())
        await asyncio.sleep(0.5)
    [record] = redfish()
    assert (record.path, record.pattern) == (SEL, "psu_failure")
    assert json.loads(record.message)["Message"] == _PSU_LOST["Message"]


def test_credentials_come_from_a_file_never_the_config(tmp_path: Path) -> None:
    secret = tmp_path / "bmc-credentials"
    secret.write_text("root:0penBmc:pass\n")
    assert Credentials.read(secret) == Credentials("root", "0penBmc:pass")
    secret.write_text("no-separator\n")
    with pytest.raises(ValueError, match="user:password"):
        Credentials.read(secret)
    with pytest.raises(ValidationError):
        RedfishConfig.model_validate({"enabled": True, "url": "https://bmc", "password": "x"})
    with pytest.raises(ValidationError, match="credentials_file"):
        RedfishConfig.model_validate({"enabled": True, "url": "https://bmc"})
    with pytest.raises(ValidationError, match="not both"):
        RedfishConfig.model_validate({"ca_bundle": "/ca.pem", "insecure": True})
    config = AgentConfig.model_validate({"service": {"url": "http://s", "token": "t"}})
    assert config.collectors.redfish.enabled is False  # no BMC is polled unless named


def test_the_client_sends_the_credentials(bmc: Bmc) -> None:
    client = connect(bmc.url, CREDS)
    request = client.build_request("GET", "/redfish/v1")
    assert client.auth is not None
    sent = next(client.auth.auth_flow(request))
    assert sent.headers["Authorization"] == httpx.BasicAuth("root", "0penBmc:pass")._auth_header
    client.close()


# ---------------------------------------------------------------- TLS


@pytest.fixture
def tls_bmc(tmp_path: Path) -> Iterator[tuple[Bmc, Path]]:
    cert, key = tmp_path / "bmc.pem", tmp_path / "bmc.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    for served in _serve(_copy(tmp_path), "https", "-c", str(cert), "-k", str(key)):
        yield served, cert


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a cert")
def test_tls_is_verified_unless_told_otherwise(
    tls_bmc: tuple[Bmc, Path], caplog: pytest.LogCaptureFixture
) -> None:
    bmc, cert = tls_bmc
    with connect(bmc.url, CREDS) as client, pytest.raises(httpx.ConnectError, match="CERTIFICATE"):
        client.get(R)
    with connect(bmc.url, CREDS, ca_bundle=cert) as client:
        assert client.get(R).json()["Id"] == "RootService"
    with (
        caplog.at_level(logging.WARNING, logger="sentinel_agent.collectors.redfish"),
        connect(bmc.url, CREDS, insecure=True) as client,
    ):
        assert client.get(R).status_code == 200
    assert "TLS verification is off" in caplog.text


class FilteringBmc:
    """The mockup tree served by a BMC that reads a log from a time on (`$filter=Created ge
    '...'`, as bmcweb and others do) and says so in its root; every entry it serves counted."""

    def __init__(self, tree: MockupTree, *, refuse: bool = False) -> None:
        self.tree = tree
        self.refuse = refuse
        self.entries_served = 0
        self.filters: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.rstrip("/")
        body = self.tree.get(path)
        if path == R:
            body["ProtocolFeaturesSupported"] = {"FilterQuery": True}
        query = request.url.params.get("$filter")
        if query is not None:
            self.filters.append(query)
            if self.refuse:
                return httpx.Response(501, json={"error": {"code": "Base.1.0.QueryNotSupported"}})
            since = _utc(query.removeprefix("Created ge '").removesuffix("'"))
            body["Members"] = [e for e in body["Members"] if _utc(e["Created"]) >= since]
        if path.endswith("/Entries"):
            self.entries_served += len(body["Members"])
        return httpx.Response(200, json=body)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _filtering(tmp_path: Path, **kw: Any) -> tuple[FilteringBmc, RedfishCollector]:
    served = FilteringBmc(_copy(tmp_path), **kw)
    client = httpx.Client(base_url="http://bmc.test", transport=httpx.MockTransport(served))
    ctx, _ = context()
    return served, RedfishCollector(ctx, client=client, interval_s=30)


def test_a_bmc_that_filters_is_asked_only_for_entries_since_the_last_one_shipped(
    tmp_path: Path,
) -> None:
    # No full SEL read each poll: after the first, each log is read from its newest entry on.
    bmc, collector = _filtering(tmp_path)
    assert collector.poll() == []
    whole = bmc.entries_served
    assert whole >= 3 and bmc.filters == []  # the first poll learns the logs whole

    bmc.entries_served = 0
    assert collector.poll() == []
    assert bmc.filters == ["Created ge '2024-05-14T01:05:00Z'", "Created ge '2024-05-14T01:00:05Z'"]
    assert bmc.entries_served == 2  # the newest entry of each log, not the logs again

    bmc.tree.append(SEL, _PSU_LOST)
    bmc.entries_served = 0
    (record,) = _records(collector.poll())
    assert json.loads(record.message) == _PSU_LOST and record.pattern == "psu_failure"
    assert bmc.entries_served == 3  # the SEL's newest before, the new one; the event log's newest
    assert collector.poll() == []  # shipped once


def test_a_bmc_that_refuses_its_filter_is_read_whole_from_then_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bmc, collector = _filtering(tmp_path, refuse=True)
    collector.poll()
    with caplog.at_level(logging.WARNING):
        assert collector.poll() == []
    assert len(bmc.filters) == 1 and "refused $filter" in caplog.text
    bmc.tree.append(SEL, _PSU_LOST)
    (record,) = _records(collector.poll())
    assert record.pattern == "psu_failure" and len(bmc.filters) == 1
