"""A cloud's scheduled maintenance (issue 16 item 7): the collector asks a metadata service over
HTTP (a real server here, answering in the shapes the providers document, tests/agents/
cloud_metadata/, and refusing a request without the provider's header), ships each announced
event once as the line the knowledge reads as planned work, and is off unless configured."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from agent_helpers import agent_process_config, eventually, service_observations, start_agent
from pydantic import ValidationError

from sentinel.triage.classify import classify_text
from sentinel.wire import LogRecord, Observation
from sentinel_agent.collectors.cloud import (
    CloudMaintenanceCollector,
    MetadataError,
    Provider,
    aws_events,
    azure_events,
    connect,
    gcp_events,
)
from sentinel_agent.config import AgentConfig, CloudConfig
from tests.agents.agent_helpers import context
from tests.harness.service import LiveService

FIXTURES = Path(__file__).parent / "cloud_metadata"
AWS = (FIXTURES / "aws_scheduled.json").read_text()
AZURE = (FIXTURES / "azure_scheduled.json").read_text()
TOKEN = "AQAEAFh1c2VfdG9rZW4="


@dataclass
class Metadata:
    """What the metadata service answers now, and what it was asked."""

    aws: str = "[]"
    gcp: str = "NONE"
    azure: str = '{"DocumentIncarnation": 0, "Events": []}'
    token_expired: bool = False
    tokens_issued: int = 0
    requests: list[str] = field(default_factory=list)


def _handler(state: Metadata) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:
            state.requests.append(f"PUT {self.path}")
            if self.path == "/latest/api/token" and self.headers.get(
                "X-aws-ec2-metadata-token-ttl-seconds"
            ):
                state.tokens_issued += 1
                state.token_expired = False
                return self._answer(200, TOKEN)
            return self._answer(400, "")

        def do_GET(self) -> None:
            state.requests.append(f"GET {self.path}")
            h = self.headers
            if self.path == "/latest/meta-data/events/maintenance/scheduled":
                if h.get("X-aws-ec2-metadata-token") != TOKEN or state.token_expired:
                    return self._answer(401, "")
                return self._answer(200, state.aws)
            if self.path == "/computeMetadata/v1/instance/maintenance-event":
                if h.get("Metadata-Flavor") != "Google":
                    return self._answer(403, "Missing Metadata-Flavor:Google header.")
                return self._answer(200, state.gcp)
            if self.path == "/metadata/scheduledevents?api-version=2020-07-01":
                if h.get("Metadata") != "true":
                    return self._answer(400, '{"error": "Bad request"}')
                return self._answer(200, state.azure)
            return self._answer(404, "")

    return Handler


@pytest.fixture
def metadata() -> Iterator[tuple[Metadata, str]]:
    state = Metadata()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _collector(
    provider: Provider, url: str, positions: dict[str, str] | None = None
) -> CloudMaintenanceCollector:
    ctx, _ = context()
    if positions:
        ctx = type(ctx)(**{**ctx.__dict__, "positions": positions})
    return CloudMaintenanceCollector(
        ctx, provider=provider, client=connect(provider, url), interval_s=60
    )


def _records(observations: Sequence[Observation]) -> list[LogRecord]:
    assert all(isinstance(o, LogRecord) for o in observations)
    return [o for o in observations if isinstance(o, LogRecord)]


def test_an_aws_scheduled_event_is_shipped_once_as_planned_work(
    metadata: tuple[Metadata, str],
) -> None:
    state, url = metadata
    collector = _collector("aws", url)
    assert collector.poll() == []
    state.aws = AWS
    [record] = _records(collector.poll())
    assert (record.source, record.pattern, record.family, record.severity) == (
        "cloud", "cloud_scheduled_maintenance", "maintenance", "info",
    )  # fmt: skip
    assert record.message.startswith(
        "AWS EC2 scheduled event instance-event-0d59937288b749b32: system-reboot"
    )
    assert "NotBefore=21 Jan 2019 09:00:43 GMT" in record.message
    assert "[Completed]" not in record.message, "an event that is over is no news"
    assert collector.poll() == [], "listed again: shipped once"
    assert state.tokens_issued == 1, "IMDSv2's token is kept between polls"
    assert classify_text(record.message).category.value == "planned"


def test_an_expired_aws_token_is_renewed(metadata: tuple[Metadata, str]) -> None:
    state, url = metadata
    collector = _collector("aws", url)
    collector.poll()
    state.token_expired, state.aws = True, AWS
    assert len(collector.poll()) == 1
    assert state.tokens_issued == 2


def test_gcp_maintenance_event_is_news_when_it_leaves_none(metadata: tuple[Metadata, str]) -> None:
    state, url = metadata
    collector = _collector("gcp", url)
    assert collector.poll() == []
    state.gcp = "TERMINATE_ON_HOST_MAINTENANCE"
    [record] = _records(collector.poll())
    assert record.message == "GCE maintenance-event: TERMINATE_ON_HOST_MAINTENANCE"
    assert record.pattern == "cloud_scheduled_maintenance"
    assert collector.poll() == []
    state.gcp = "NONE"
    assert collector.poll() == []
    state.gcp = "MIGRATE_ON_HOST_MAINTENANCE"
    assert [r.message for r in _records(collector.poll())] == [
        "GCE maintenance-event: MIGRATE_ON_HOST_MAINTENANCE"
    ]


def test_azure_scheduled_events_each_once_across_a_restart(metadata: tuple[Metadata, str]) -> None:
    state, url = metadata
    state.azure = AZURE
    collector = _collector("azure", url)
    records = _records(collector.poll())
    assert [r.message.split(":")[0] for r in records] == [
        "Azure scheduled event 602d9444-d2cd-49c7-8624-8643e7171297",
        "Azure scheduled event C7061BAC-AFDC-4513-B24B-AA5F13A16123",
    ]
    assert 'NotBefore="Mon, 19 Sep 2016 18:29:47 GMT"' in records[0].message
    assert all(r.pattern == "cloud_scheduled_maintenance" for r in records)
    saved = {k: v for k, v in collector.positions().items() if v is not None}
    restarted = _collector("azure", url, positions=saved)
    assert restarted.poll() == [], "what the last run shipped is not shipped again"


def test_every_request_carries_the_providers_header(metadata: tuple[Metadata, str]) -> None:
    state, url = metadata
    for provider in ("aws", "gcp", "azure"):
        _collector(provider, url).poll()  # the server refuses a request without its header
    assert state.requests[0] == "PUT /latest/api/token"


@pytest.mark.parametrize(
    ("parse", "body", "said"),
    [
        (aws_events, "<html>not here</html>", "aws: not JSON"),
        (aws_events, '{"EventId": "x"}', "aws: expected a JSON list"),
        (aws_events, '[{"State": "active"}]', "aws: an event without EventId and Code"),
        (azure_events, "[]", "azure: expected a JSON dict"),
        (azure_events, '{"DocumentIncarnation": 1}', "azure: no Events list"),
        (gcp_events, "<html>\n</html>", "gcp: maintenance-event is one word"),
    ],
)
def test_an_answer_not_in_the_documented_shape_is_a_clear_error(
    parse: object, body: str, said: str
) -> None:
    with pytest.raises(MetadataError, match=said):
        parse(body)  # type: ignore[operator]


def test_a_refused_request_is_an_http_error(metadata: tuple[Metadata, str]) -> None:
    _, url = metadata
    ctx, _ = context()
    # GCP's path asked at another provider's address: 404, the collector fails the poll.
    collector = CloudMaintenanceCollector(
        ctx, provider="gcp", client=connect("gcp", url + "/nowhere"), interval_s=60
    )
    with pytest.raises(Exception, match="404"):
        collector.poll()


def test_off_by_default_and_a_provider_is_required() -> None:
    assert not CloudConfig().enabled
    with pytest.raises(ValidationError, match="needs provider"):
        CloudConfig(enabled=True)
    config = AgentConfig.model_validate(
        {
            "service": {"url": "http://sentinel:8600", "token": "t"},
            "collectors": {"cloud": {"enabled": True, "provider": "azure"}},
        }
    )
    assert config.collectors.cloud.provider == "azure"


def test_the_events_line_classifies_as_planned_for_every_provider() -> None:
    when = datetime(2026, 3, 2, tzinfo=UTC).strftime("%d %b %Y %H:%M:%S GMT")
    aws = AWS.replace("21 Jan 2019 09:00:43 GMT", when)
    lines = [
        *(e.line for e in aws_events(aws)),
        *(e.line for e in azure_events(AZURE)),
        *(e.line for e in gcp_events("MIGRATE_ON_HOST_MAINTENANCE")),
    ]
    assert len(lines) == 4
    for line in lines:
        assert classify_text(line).category.value == "planned", line


@pytest.mark.slow
def test_an_agent_process_ships_an_announced_event_once_to_the_service(
    metadata: tuple[Metadata, str],
    live_service: LiveService,
    tmp_path: Path,
    agent_processes: list[subprocess.Popen[bytes]],
) -> None:
    """The path users run: the metadata service -> the agent process (collectors.cloud) -> the
    wire -> the service, stored as the knowledge reads it."""
    state, url = metadata
    host = "cloud-e2e"
    config = tmp_path / "agent.yaml"
    data = agent_process_config(
        tmp_path,
        live_service,
        host,
        **{"collectors.cloud": {"enabled": True, "provider": "azure", "endpoint": url,
                                "interval_s": 0.2}},
    )  # fmt: skip
    config.write_text(yaml.safe_dump(data))
    log = tmp_path / "agent.log"
    agent_processes.append(start_agent(config, log))
    eventually(lambda: state.requests, 30, "the agent asking the metadata service", log)
    state.azure = AZURE

    def shipped() -> list[dict[str, object]]:
        return [
            o["data"]
            for o in service_observations(live_service, host, "log")
            if o["data"]["source"] == "cloud"
        ]

    records = eventually(lambda: len(shipped()) >= 2 and shipped(), 30, "the two events", log)
    assert {r["pattern"] for r in records} == {"cloud_scheduled_maintenance"}
    polls = len(state.requests)
    eventually(lambda: len(state.requests) >= polls + 3, 30, "more polls", log)
    assert len(shipped()) == 2, "each event once"
