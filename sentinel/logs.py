"""The service's logging: one format, quiet libraries, and no secret in any line it writes.

Secrets are redacted where lines are formatted, so that nothing a library logs (httpx logs every
request's URL, and a Slack webhook URL is a credential) or puts in an exception escapes:
every configured secret, the path of every webhook URL, any password in a URL, Slack hooks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.config
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

if TYPE_CHECKING:
    from sentinel.settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
REDACTED = "[redacted]"
# Shorter values would redact ordinary words; every secret the settings accept is longer.
_MIN_SECRET = 8
# user:password@ in any URL.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):[^/\s@]*@")
# The path of a Slack webhook is its credential.
_SLACK_HOOK = re.compile(r"(?P<head>hooks\.slack(?:-gov)?\.com/)[^\s\"'<>]+")
# Libraries whose INFO lines are noise, or carry request URLs.
_QUIET = ("httpx", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access")


class LogSettings(BaseModel):
    """The ``log`` section: the service's log lines; `sentinel serve --log-level/--log-format`
    override them."""

    model_config = ConfigDict(extra="forbid")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = Field(
        "text", description="text: one line per record; json: one JSON object per line."
    )


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    text = _URL_PASSWORD.sub(rf"\g<head>:{REDACTED}@", text)
    return _SLACK_HOOK.sub(rf"\g<head>{REDACTED}", text)


class RedactingFormatter(logging.Formatter):
    """A formatter whose every line (message, exception, stack) has the secrets taken out."""

    def __init__(
        self, fmt: str | None = None, datefmt: str | None = None, secrets: Iterable[str] = ()
    ) -> None:
        super().__init__(fmt, datefmt)
        # Longest first, so that a secret containing another is removed whole.
        self._secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self._secrets)


class JsonFormatter(RedactingFormatter):
    """One JSON object per line (`log.format: json`), for log shippers: time (UTC, ISO 8601),
    level, logger, message, and the exception's text where there is one; each value has the
    secrets taken out before it is encoded."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage(), self._secrets),
        }
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info), self._secrets)
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info), self._secrets)
        return json.dumps(line, ensure_ascii=False)


def _secret_values(model: BaseModel) -> Iterator[str]:
    for name in type(model).model_fields:
        yield from _values(getattr(model, name))


def _values(value: Any) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        yield from _secret_values(value)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _values(item)


def _url_parts(url: str) -> Iterator[str]:
    """A URL secret as a logger may print it: whole, its password, its path and query."""
    yield url
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    if parts.password:
        yield parts.password
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    if tail.strip("/"):
        yield tail


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret the settings (and the routing file they name) hold."""
    from sentinel.alerting.config import ConfigError, load_routing

    secret_urls: list[str] = []
    plain_urls = [settings.database_url(), settings.alerting.webhook_url or ""]
    found: set[str] = set()
    for value in _secret_values(settings):
        found.add(value)
        if "://" in value:
            secret_urls.append(value)
    webhook = settings.scheduler.webhook
    if webhook is not None:
        plain_urls.append(str(webhook.url))
        # A key file that cannot be read stops the service later, with its own message.
        with contextlib.suppress(ValueError):
            found.add(webhook.secret_bytes().decode(errors="replace"))
    try:
        routing = load_routing(settings.alerting.routes_file)
    except (ConfigError, OSError):
        routing = None  # likewise
    if routing is not None:
        for receiver in routing.receivers.values():
            if receiver.url:
                # A Slack webhook URL is a credential as a whole; other URLs may hold one.
                (secret_urls if receiver.type == "slack" else plain_urls).append(receiver.url)
    for url in secret_urls:
        found.update(_url_parts(url))
    for url in plain_urls:
        password = _password(url)
        if password:
            found.add(password)
    return sorted(s for s in found if len(s) >= _MIN_SECRET)


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


FORMATTERS = {"text": "sentinel.logs.RedactingFormatter", "json": "sentinel.logs.JsonFormatter"}


def logging_config(
    settings: Settings, level: str | None = None, fmt: str | None = None
) -> dict[str, Any]:
    """A dictConfig for the service, also handed to uvicorn for each worker process; level and
    format default to the settings' (log.level, log.format)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "redacting": {
                "()": FORMATTERS[fmt or settings.log.format],
                "fmt": FORMAT,
                "secrets": configured_secrets(settings),
            }
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "redacting",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level or settings.log.level, "handlers": ["stderr"]},
        "loggers": {
            name: {"level": "WARNING", "handlers": [], "propagate": True} for name in _QUIET
        },
    }


def configure_logging(
    settings: Settings, level: str | None = None, fmt: str | None = None
) -> dict[str, Any]:
    """Install the service's logging in this process; returns the config for uvicorn."""
    config = logging_config(settings, level, fmt)
    logging.config.dictConfig(config)
    return config
