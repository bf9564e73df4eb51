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

from sentinel.settings import AuthSettings, Role, TokenSpec

log = logging.getLogger(__name__)

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
