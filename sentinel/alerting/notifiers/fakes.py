"""Fakes beside the integrations: an in-memory notifier and a local HTTP receiver.

``FakeReceiver`` is a threaded stdlib server on 127.0.0.1 that records every request, answers
from a script (status, headers, delay) and, like the real service, refuses a payload that
breaks the documented format (``check_slack_message``, ``check_pagerduty_event``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sentinel.alerting.notifiers.base import Notification, NotifyResult
from sentinel.wire.severity import Severity

Checker = Callable[[dict[str, Any]], list[str]]


class RecordingNotifier:
    """Keeps what it was asked to send; answers from ``results`` in turn, then success."""

    def __init__(self, name: str = "fake", results: list[NotifyResult] | None = None) -> None:
        self.name = name
        self.sent: list[Notification] = []
        self.results = list(results or [])

    async def notify(self, group: Notification) -> NotifyResult:
        self.sent.append(group)
        return self.results.pop(0) if self.results else NotifyResult.success()


@dataclass
class Reply:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeReceiver:
    """A local HTTP endpoint standing in for Slack, PagerDuty or a webhook consumer."""

    def __init__(self, check: Checker | None = None, ok: Reply | None = None) -> None:
        self.requests: list[Received] = []
        self.script: list[Reply] = []
        self._check = check
        self._ok = ok or Reply()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                reply = receiver._record(self.path, dict(self.headers.items()), body)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                payload = reply.body.encode()
                try:
                    self.send_response_only(reply.status)
                    if "Date" not in reply.headers:
                        self.send_header("Date", self.date_time_string())
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # shutdown() waits for serve_forever's next poll: 0.5 s by default, at every stop.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        with self._lock:
            self.requests.append(Received(path, headers, body))
            if self.script:
                return self.script.pop(0)
        if self._check is not None:
            try:
                problems = self._check(json.loads(body))
            except (ValueError, TypeError, AttributeError) as exc:
                problems = [f"unreadable payload: {exc}"]
            if problems:
                return Reply(400, json.dumps({"errors": problems}))
        return self._ok

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> FakeReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.json() for r in self.requests]


def _text_len(obj: dict[str, Any], limit: int, where: str, problems: list[str]) -> None:
    if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
        problems.append(f"{where}: not a text object")
    elif not isinstance(obj.get("text"), str) or not obj["text"]:
        problems.append(f"{where}: empty text")
    elif len(obj["text"]) > limit:
        problems.append(f"{where}: {len(obj['text'])} characters, limit {limit}")


def check_slack_message(msg: dict[str, Any]) -> list[str]:
    """Block Kit as documented: block types and their text limits, 50 blocks at most."""
    problems: list[str] = []
    if not isinstance(msg.get("text"), str) or not msg["text"]:
        problems.append("text: the fallback text is missing")
    blocks = msg.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        return [*problems, "blocks: missing"]
    if len(blocks) > 50:
        problems.append(f"blocks: {len(blocks)} blocks, limit 50")
    for i, block in enumerate(blocks):
        kind = block.get("type")
        where = f"blocks[{i}]"
        if kind == "header":
            _text_len(block.get("text"), 150, where + ".text", problems)
            if block["text"].get("type") != "plain_text":
                problems.append(f"{where}: a header takes plain_text")
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"{where}: a section needs text or fields")
            if "text" in block:
                _text_len(block["text"], 3000, where + ".text", problems)
            fields = block.get("fields", [])
            if len(fields) > 10:
                problems.append(f"{where}.fields: {len(fields)} fields, limit 10")
            for j, f in enumerate(fields):
                _text_len(f, 2000, f"{where}.fields[{j}]", problems)
        elif kind == "context":
            elements = block.get("elements", [])
            if not elements or len(elements) > 10:
                problems.append(f"{where}.elements: 1 to 10 elements")
            for j, e in enumerate(elements):
                _text_len(e, 3000, f"{where}.elements[{j}]", problems)
        elif kind != "divider":
            problems.append(f"{where}: unexpected block type {kind!r}")
    return problems


def check_pagerduty_event(event: dict[str, Any]) -> list[str]:
    """The Events API v2 request body as documented (fields, enums, lengths)."""
    problems: list[str] = []
    if not isinstance(event.get("routing_key"), str) or not event["routing_key"]:
        problems.append("routing_key: missing")
    action = event.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        problems.append(f"event_action: {action!r} is not trigger, acknowledge or resolve")
    key = event.get("dedup_key")
    if action != "trigger" and not key:
        problems.append("dedup_key: required unless triggering")
    if key is not None and (not isinstance(key, str) or len(key) > 255):
        problems.append("dedup_key: a string of at most 255 characters")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return [*problems, "payload: required for a trigger"]
        for name in ("summary", "source", "severity"):
            if not isinstance(payload.get(name), str) or not payload[name]:
                problems.append(f"payload.{name}: required")
        if len(payload.get("summary", "")) > 1024:
            problems.append("payload.summary: longer than 1024 characters")
        if payload.get("severity") not in list(Severity):
            problems.append(f"payload.severity: {payload.get('severity')!r} not allowed")
        if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
            problems.append("payload.custom_details: must be an object")
        for j, link in enumerate(event.get("links", [])):
            if not isinstance(link, dict) or not link.get("href"):
                problems.append(f"links[{j}].href: required")
    return problems
