"""SIGHUP: new tokens and allowed origins from config.toml, without dropping anybody.

Rotating a token used to mean a restart, which drops every dashboard. On SIGHUP
(`systemctl reload wsd`) the config file is read again and validated in full; when it is
good, the token book and the allowed origins are swapped in place, connections keep going,
and only those whose token was removed (or changed role or hash) are closed with 1008. When
it is bad, the error (naming the key) is logged and the running config stays. Other changed
keys are logged as needing a restart: ports, pools and limits are fixed at start-up.

Example:
    >>> reloader = Reloader(server, lambda: load_config(path))
    >>> loop.add_signal_handler(signal.SIGHUP, reloader.reload)
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Callable, Sequence

import msgspec
import structlog

from wsd.auth import TokenBook
from wsd.config import Config, ConfigError, TokenEntry

if TYPE_CHECKING:
    from wsd.server import WsdServer

__all__ = ["Reloader"]

log = structlog.get_logger("wsd.reload")

RELOADED_KEYS = {"auth.tokens", "server.allowed_origins"}


def _grants(entries: Sequence[TokenEntry]) -> dict[str, set[tuple[str, str]]]:
    """Each token name's (role, hash) pairs: a name whose pairs change lost what it had."""
    grants: dict[str, set[tuple[str, str]]] = {}
    for entry in entries:
        grants.setdefault(entry.name, set()).add((entry.role, entry.sha256))
    return grants


def _flat(config: Config) -> dict[str, Any]:
    flat = {}
    for section, values in msgspec.to_builtins(config).items():
        if isinstance(values, dict):
            flat.update({f"{section}.{key}": value for key, value in values.items()})
    return flat


class Reloader:
    """Applies a freshly loaded config's tokens and origins to a running server."""

    def __init__(self, server: WsdServer, load: Callable[[], Config]) -> None:
        self._server = server
        self._load = load
        self._closing: set[asyncio.Task[None]] = set()

    def reload(self) -> bool:
        """Read and apply the config; False (and the old config kept) when it is bad."""
        try:
            new = self._load()
        except ConfigError as error:
            log.error("config reload failed", error=str(error), kept="the running config")
            return False
        server, old = self._server, self._server.config
        before, after = _flat(old), _flat(new)
        ignored = sorted(key for key in after if key not in RELOADED_KEYS
                         and before.get(key) != after[key])
        old_grants, new_grants = _grants(old.auth.tokens), _grants(new.auth.tokens)
        server.admission.tokens = TokenBook(new.auth.tokens)
        old.auth.tokens = new.auth.tokens
        old.server.allowed_origins = new.server.allowed_origins
        revoked = [session for session in list(server.sessions.all) if session.caller is not None
                   and old_grants.get(session.caller.name) != new_grants.get(session.caller.name)]
        for session in revoked:
            task = asyncio.create_task(server.sessions.revoke(session))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        log.info("config reloaded", tokens=len(new.auth.tokens),
                 allowed_origins=new.server.allowed_origins, connections_closed=len(revoked),
                 **({"needs_restart": ignored} if ignored else {}))
        return True
