"""Bearer tokens with roles; only their SHA-256 digests are kept, compared in constant time.

An agent token may be bound to the hosts it speaks for (glob patterns); one without a binding
is fleet-wide, as tokens were before bindings existed, and the service says so at start.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

log = logging.getLogger(__name__)

Role = Literal["agent", "operator", "viewer"]

# The bootstrapped operator token's digest, in data_dir unless auth.bootstrap_file says where.
BOOTSTRAP_TOKENS_FILE = "bootstrap-tokens.yml"


class TokenSpec(BaseModel):
    """A bearer token. Give ``sha256`` (hex digest) in files; ``token`` is hashed at load."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    role: Role
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    token: SecretStr | None = None
    hosts: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        None,
        description="Agent tokens: the hosts (glob patterns, e.g. 'gpu-0[0-3]*') it may post "
        "for; ['*'] for the whole fleet. Unset, an agent token is fleet-wide as before and the "
        "service warns at start.",
    )

    @model_validator(mode="after")
    def _one_secret(self) -> TokenSpec:
        if (self.sha256 is None) == (self.token is None):
            raise ValueError(f"token {self.name!r}: give exactly one of 'sha256' or 'token'")
        if self.token is not None and len(self.token.get_secret_value()) < 16:
            raise ValueError(f"token {self.name!r}: a token needs at least 16 characters")
        if self.hosts is not None and self.role != "agent":
            raise ValueError(f"token {self.name!r}: only an agent token speaks for hosts")
        return self

    def digest(self) -> str:
        if self.sha256 is not None:
            return self.sha256
        assert self.token is not None
        return hashlib.sha256(self.token.get_secret_value().encode()).hexdigest()


class AuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenSpec] = Field(default_factory=list)
    tokens_file: Path | None = Field(None, description="YAML list of {name, role, sha256} entries.")
    bootstrap_operator: bool = Field(
        True,
        description="At a start with no operator token configured, `sentinel serve` makes one, "
        "prints it once, and keeps its digest in bootstrap_file (so that someone can log in to "
        "a fresh install); false: start without one.",
    )
    bootstrap_file: Path | None = Field(
        None,
        description="Where the bootstrapped operator token's digest is kept (a tokens file, "
        "read with the others); default: data_dir/bootstrap-tokens.yml.",
    )

    def all_tokens(self) -> list[TokenSpec]:
        specs = list(self.tokens)
        # The bootstrap file exists only once `sentinel serve` made a token.
        for name, path in (
            ("tokens_file", self.tokens_file),
            ("bootstrap_file", self.bootstrap_file),
        ):
            if path is None or (name == "bootstrap_file" and not path.exists()):
                continue
            try:
                raw = yaml.safe_load(path.read_text()) or []
            except (OSError, yaml.YAMLError) as exc:
                raise ValueError(f"{name} {path}: {exc}") from exc
            if not isinstance(raw, list):
                raise ValueError(f"{name} {path}: expected a list of tokens")
            specs.extend(TokenSpec.model_validate(item) for item in raw)
        return specs


# Which roles may do what. An operator can read everything a viewer can; an agent only reports.
READ: frozenset[Role] = frozenset({"viewer", "operator"})
OPERATE: frozenset[Role] = frozenset({"operator"})
REPORT: frozenset[Role] = frozenset({"agent"})


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    # Glob patterns of the hosts an agent token speaks for; None: any host.
    hosts: tuple[str, ...] | None = None

    def may_speak_for(self, host_id: str) -> bool:
        return self.hosts is None or any(fnmatchcase(host_id, p) for p in self.hosts)


class TokenStore:
    def __init__(self, specs: list[TokenSpec]) -> None:
        self._entries = [
            (
                bytes.fromhex(s.digest()),
                Principal(s.name, s.role, None if s.hosts is None else tuple(s.hosts)),
            )
            for s in specs
        ]
        for s in specs:
            if s.role == "agent" and s.hosts is None:
                log.warning(
                    "agent token %r is not bound to hosts: it may post as any host; give it "
                    "'hosts' (glob patterns), or hosts: ['*'] to keep it fleet-wide",
                    s.name,
                )

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).digest()
        found: Principal | None = None
        # Visit every entry so the time taken does not say how far a guess got.
        for expected, principal in self._entries:
            if hmac.compare_digest(digest, expected) and found is None:
                found = principal
        return found


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


BOOTSTRAP_NAME = "bootstrap-operator"


def bootstrap_operator(auth: AuthSettings) -> str | None:
    """A fresh install has no operator token, so nobody could log in or act: make one, keep
    only its digest in auth.bootstrap_file (read with the other tokens from then on), and
    return the secret for the caller to show once. None when an operator token is configured,
    bootstrapping is off, or another process made the file first (it shows its own)."""
    if not auth.bootstrap_operator or auth.bootstrap_file is None:
        return None
    if any(spec.role == "operator" for spec in auth.all_tokens()):
        return None
    secret = new_token()
    entry = f"- {{name: {BOOTSTRAP_NAME}, role: operator, sha256: {digest(secret)}}}\n"
    auth.bootstrap_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two replicas starting at once on one data_dir make one token, not two.
        fd = os.open(auth.bootstrap_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w") as f:
        f.write(
            "# Made by `sentinel serve` at a start with no operator token: the digest of the "
            "token it printed once.\n# Once you have tokens of your own (sentinel token "
            "operator), delete this file.\n" + entry
        )
    log.warning(
        "no operator token was configured: made %r (%s)", BOOTSTRAP_NAME, auth.bootstrap_file
    )
    return secret
