"""Bearer tokens: configured as SHA-256 hashes with a role, checked in constant time.

Only hashes live in config files, so a leaked config does not leak a usable token.

Example:
    >>> token, entry = new_token("dashboard", "viewer")
    >>> TokenBook([entry]).authenticate(token).role
    'viewer'
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from wsd.config import TokenEntry
from wsd.actions import Caller, Role

__all__ = ["TokenBook", "new_token", "hash_token", "bearer_token"]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token(name: str, role: Role) -> tuple[str, TokenEntry]:
    """A fresh random token and the config entry that accepts it."""
    token = "wsd_" + secrets.token_urlsafe(32)
    return token, TokenEntry(name=name, role=role, sha256=hash_token(token))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class TokenBook:
    """The configured tokens; `authenticate` compares against every entry in constant time."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        self._entries = [(bytes.fromhex(e.sha256), Caller(e.name, e.role)) for e in entries]

    def authenticate(self, token: str) -> Caller | None:
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        found: Caller | None = None
        for expected, caller in self._entries:
            # No early exit: the time taken does not tell which entry (if any) matched.
            if hmac.compare_digest(digest, expected):
                found = caller
        return found
