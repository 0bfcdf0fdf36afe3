"""OpenID providers' signing keys: discovery and JWKS, fetched with aiohttp, cached per issuer.

Why not PyJWT's own `PyJWKClient`: it fetches with `urllib`, which blocks the event loop for
as long as the provider takes to answer (every connection of the process would stall), and
its cache is keyed by `kid` alone per client. This cache keeps PyJWT for what it does well
(parsing JWKs, `wsd.oidc` verifies with `jwt.decode`) and does the fetching itself:

- keyed by issuer, then `kid`: a key is only ever looked up for the issuer the token's
  provider is configured with, so one provider's key never verifies another's tokens
  (a JWKS cache keyed by `kid` alone let a key from one issuer vouch for another);
- an unknown `kid` refetches the issuer's JWKS at most once per `oidc.jwks_refetch_seconds`
  (default 30), counted from the last attempt, successful or not; concurrent misses wait on
  the one fetch in flight. So a flood of tokens with made-up `kid`s costs at most one JWKS
  fetch per provider per 30 s, however many there are;
- a key set older than `oidc.jwks_max_age_seconds` (default 3600) is fetched again on the
  next use (within the same bound), so keys the provider retired stop being trusted; a failed refetch keeps the
  known keys (a provider's short outage does not sign everybody out).

Example:
    >>> keys = ProviderKeys(config.oidc)
    >>> jwk = await keys.key("https://login.example/tenant/v2.0", "kid-1")   # a JWK dict or None
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import aiohttp
import structlog

from wsd.config import OidcConfig

__all__ = ["ProviderKeys", "KeysUnavailable", "discovery_url"]

log = structlog.get_logger("wsd.oidc")


class KeysUnavailable(Exception):
    """The provider's discovery document or JWKS could not be fetched, and no key is known."""


def discovery_url(issuer: str) -> str:
    """OpenID Connect Discovery 1.0 §4: the issuer plus /.well-known/openid-configuration."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


@dataclass
class _Issuer:
    """What is known of one issuer: its discovery document and its keys by `kid`."""

    discovery: dict[str, Any] | None = None
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempted_at: float = float("-inf")   # monotonic time of the last JWKS fetch attempt
    fetched_at: float = float("-inf")     # ... and of the last successful one
    fetching: asyncio.Task[None] | None = None


class ProviderKeys:
    """The JWKS of each configured issuer, fetched on demand without blocking the loop."""

    def __init__(self, settings: OidcConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._issuers: dict[str, _Issuer] = {}
        self._http: aiohttp.ClientSession | None = None
        self.jwks_fetches = 0   # JWKS documents requested, for /metrics and the bound's test

    async def key(self, issuer: str, kid: str) -> dict[str, Any] | None:
        """The JWK `kid` of `issuer`, or None when the issuer's JWKS has no such key.

        Raises `KeysUnavailable` when the JWKS could not be fetched and the key is not known.
        """
        state = self._issuers.setdefault(issuer, _Issuer())
        now = self._clock()
        stale = now - state.fetched_at >= self._settings.jwks_max_age_seconds
        if kid in state.keys and not stale:
            return state.keys[kid]
        # The one bound on fetches, whatever the reason (unknown kid, stale set, failures).
        if state.fetching is None and now - state.attempted_at >= self._settings.jwks_refetch_seconds:
            state.attempted_at = now
            state.fetching = asyncio.create_task(self._fetch(issuer, state))
        if state.fetching is not None:
            # Shielded: one caller's connection closing must not cancel everybody's fetch.
            await asyncio.shield(state.fetching)
        if kid not in state.keys and state.fetched_at == float("-inf"):
            raise KeysUnavailable(f"the keys of {issuer} could not be fetched")
        return state.keys.get(kid)

    async def discovery(self, issuer: str) -> dict[str, Any]:
        """The issuer's discovery document (fetched once, then kept)."""
        state = self._issuers.setdefault(issuer, _Issuer())
        if state.discovery is None:
            document = await self._get_json(discovery_url(issuer))
            # OpenID Connect Discovery §4.3: the document's issuer must be the one asked for.
            if document.get("issuer") != issuer or not isinstance(document.get("jwks_uri"), str):
                raise KeysUnavailable(f"the discovery document of {issuer} names another issuer "
                                      "or no jwks_uri")
            state.discovery = document
        return state.discovery

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _fetch(self, issuer: str, state: _Issuer) -> None:
        """Replace the issuer's key set with its JWKS; on failure keep what is known."""
        try:
            jwks_uri = (await self.discovery(issuer))["jwks_uri"]
            self.jwks_fetches += 1
            document = await self._get_json(jwks_uri)
            keys = {jwk["kid"]: jwk for jwk in document.get("keys", [])
                    if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str)
                    and jwk.get("use", "sig") == "sig"}
            state.keys = keys
            state.fetched_at = self._clock()
            log.info("oidc keys fetched", issuer=issuer, keys=len(keys))
        except (KeysUnavailable, aiohttp.ClientError, asyncio.TimeoutError, ValueError,
                KeyError) as failure:
            log.warning("oidc keys not fetched", issuer=issuer, error=repr(failure),
                        kept=len(state.keys))
        finally:
            state.fetching = None

    async def _get_json(self, url: str) -> dict[str, Any]:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._settings.http_timeout_seconds))
        async with self._http.get(url, headers={"Accept": "application/json"}) as response:
            if response.status != 200:
                raise KeysUnavailable(f"{url} answered HTTP {response.status}")
            document = await response.json(content_type=None)
        if not isinstance(document, dict):
            raise KeysUnavailable(f"{url} did not answer a JSON object")
        return document
