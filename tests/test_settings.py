"""Settings: defaults, environment, YAML file, tokens file; bad values are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sentinel.auth import TokenSpec, TokenStore, digest
from sentinel.settings import Settings, load_settings


def test_defaults_use_sqlite_in_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SENTINEL_CONFIG", raising=False)
    s = load_settings(data_dir=tmp_path)
    assert s.database_url() == f"sqlite:///{tmp_path.resolve()}/sentinel.db"
    assert s.server.port == 8600


def test_environment_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "sentinel.yaml"
    cfg.write_text("server:\n  port: 9000\n  host: 0.0.0.0\nretention:\n  samples_hours: 6\n")
    monkeypatch.setenv("SENTINEL_CONFIG", str(cfg))
    monkeypatch.setenv("SENTINEL_SERVER__PORT", "9100")
    s = load_settings()
    assert s.server.port == 9100  # the environment wins over the file
    assert s.server.host == "0.0.0.0"
    assert s.retention.samples_hours == 6


def test_bad_values_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SENTINEL_SERVER__PORT", "seventy")
    with pytest.raises(ValidationError, match=r"server\.port"):
        load_settings()
    monkeypatch.delenv("SENTINEL_SERVER__PORT")
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("retention: {samples_hours: -1}\nsurprise: 1\n")
    monkeypatch.setenv("SENTINEL_CONFIG", str(cfg))
    with pytest.raises(ValidationError) as info:
        load_settings()
    text = str(info.value)
    assert "retention.samples_hours" in text and "surprise" in text


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        ("server: [1\n", "expected ',' or ']'"),
        ("- a list\n", "expected a mapping at the top level"),
        ("\udcff", "can't decode"),
    ],
)
def test_an_unusable_file_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None, problem: str
) -> None:
    cfg = tmp_path / "sentinel.yaml"
    if content is not None:
        cfg.write_bytes(content.encode("utf-8", "surrogateescape"))
    monkeypatch.setenv("SENTINEL_CONFIG", str(cfg))
    with pytest.raises(ValueError, match=f"SENTINEL_CONFIG={cfg}: ") as info:
        load_settings()
    assert problem in str(info.value)


def test_an_empty_file_is_the_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "sentinel.yaml"
    cfg.write_text("")
    monkeypatch.setenv("SENTINEL_CONFIG", str(cfg))
    assert load_settings(data_dir=tmp_path).server.port == 8600


def test_tokens_file_holds_only_digests(tmp_path: Path) -> None:
    secret = "s3cret-token-for-the-test-suite"
    f = tmp_path / "tokens.yaml"
    f.write_text(f"- {{name: ops, role: operator, sha256: {digest(secret)}}}\n")
    s = Settings(auth={"tokens_file": f})  # type: ignore[arg-type]
    store = TokenStore(s.auth.all_tokens())
    principal = store.authenticate(secret)
    assert principal is not None and principal.role == "operator"
    assert store.authenticate(secret + "x") is None


def test_token_spec_rules() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        TokenSpec(name="x", role="viewer")
    with pytest.raises(ValidationError, match="16 characters"):
        TokenSpec(name="x", role="viewer", token="short")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="role"):
        TokenSpec(name="x", role="admin", token="a" * 20)  # type: ignore[arg-type]
