"""Bearer tokens with roles; only their SHA-256 digests are kept, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sentinel.settings import Role, TokenSpec

# Which roles may do what. An operator can read everything a viewer can; an agent only reports.
READ: frozenset[Role] = frozenset({"viewer", "operator"})
OPERATE: frozenset[Role] = frozenset({"operator"})
REPORT: frozenset[Role] = frozenset({"agent"})


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


class TokenStore:
    def __init__(self, specs: list[TokenSpec]) -> None:
        self._entries = [(bytes.fromhex(s.digest()), Principal(s.name, s.role)) for s in specs]

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
