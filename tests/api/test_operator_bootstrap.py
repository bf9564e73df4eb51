"""A fresh install can be logged in to (issue 18, compose: the tokens file had no operator
token): `sentinel serve` with no operator token configured makes one, prints it once, keeps
only its digest in data_dir, and the next start neither prints nor replaces it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from sentinel.auth import (
    BOOTSTRAP_NAME,
    BOOTSTRAP_TOKENS_FILE,
    AuthSettings,
    TokenSpec,
    bootstrap_operator,
    digest,
)
from sentinel.demo.service import free_port
from sentinel.settings import Settings

VIEWER = "viewer-token-0123456789"


@contextmanager
def serving(data: Path, log: Path, **env: str) -> Iterator[str]:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    environ.update(
        SENTINEL_DATA_DIR=str(data),
        SENTINEL_AUTO_MIGRATE="true",
        SENTINEL_AUTH__TOKENS=f'[{{"name": "v", "role": "viewer", "token": "{VIEWER}"}}]',
        **env,
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sentinel.cli", "serve", "--port", str(port)],
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def _ack(url: str, token: str) -> int:
    """An operator-only write: 404 (no such group) once the token is let through."""
    r = httpx.post(
        f"{url}/api/v1/alert-groups/{uuid.uuid4()}/ack",
        headers={"Authorization": f"Bearer {token}"},
        json={},
        timeout=10,
    )
    return r.status_code


@pytest.mark.slow
def test_a_first_start_prints_an_operator_token_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serving(data, tmp_path / "first.log") as url:
        printed = (tmp_path / "first.log").read_text()
        found = re.search(r"operator token: (\S+)", printed)
        assert found, printed[-3000:]
        secret = found.group(1)
        assert _ack(url, secret) == 404  # an operator
        assert _ack(url, VIEWER) == 403
    kept = (data / BOOTSTRAP_TOKENS_FILE).read_text()
    assert secret not in kept and digest(secret) in kept  # only its digest is kept
    assert (data / BOOTSTRAP_TOKENS_FILE).stat().st_mode & 0o077 == 0
    with serving(data, tmp_path / "second.log") as url:
        assert "operator token" not in (tmp_path / "second.log").read_text()
        assert _ack(url, secret) == 404  # the same token, still an operator


@pytest.mark.slow
def test_no_token_is_made_where_an_operator_is_configured_or_it_is_turned_off(
    tmp_path: Path,
) -> None:
    with serving(
        tmp_path / "data", tmp_path / "off.log", SENTINEL_AUTH__BOOTSTRAP_OPERATOR="false"
    ):
        assert "operator token" not in (tmp_path / "off.log").read_text()
    assert not (tmp_path / "data" / BOOTSTRAP_TOKENS_FILE).exists()


def test_bootstrap_rules(tmp_path: Path) -> None:
    file = tmp_path / "d" / BOOTSTRAP_TOKENS_FILE
    operator = TokenSpec(name="op", role="operator", token="operator-token-0123456789")
    assert bootstrap_operator(AuthSettings(tokens=[operator], bootstrap_file=file)) is None
    assert not file.exists()
    assert bootstrap_operator(AuthSettings(bootstrap_file=file, bootstrap_operator=False)) is None
    auth = AuthSettings(bootstrap_file=file)
    secret = bootstrap_operator(auth)
    assert secret is not None
    [made] = auth.all_tokens()
    assert (made.name, made.role, made.sha256) == (BOOTSTRAP_NAME, "operator", digest(secret))
    assert bootstrap_operator(auth) is None  # one is configured now
    file.write_text("")  # a file another replica is writing: it shows its own token
    assert bootstrap_operator(AuthSettings(bootstrap_file=file)) is None


def test_the_bootstrap_file_defaults_to_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.auth.bootstrap_file == tmp_path / BOOTSTRAP_TOKENS_FILE
