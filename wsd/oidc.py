"""Signing in with OpenID Connect: a provider's ID (or access) token checked with PyJWT, its
claims turned into a `Caller` with a `Person`.

PyJWT does the cryptography and the registered claims (`exp`, `nbf`, `iat` with
`oidc.leeway_seconds`, `iss`, `aud`); `wsd.oidc_keys` fetches the keys without blocking.
What this module adds, in order, each failure a `TokenRefused` with a stable `reason`:

1. the token's `iss` picks the provider (`unknown_issuer` when none is configured with it);
2. the header's `alg` must be in that provider's `algorithms` (asymmetric only, checked at
   load: `none` and HS256 are refused here, before any key is touched, so a token "signed"
   with the provider's public key as an HMAC secret never reaches a verifier);
3. the `kid` is looked up among that issuer's keys only (`unknown_kid`);
4. signature, `iss`, `aud`, `exp`, `nbf` (`bad_signature`, `wrong_audience`, `expired`,
   `not_yet_valid`, `missing_claim`);
5. the role claim must map to a wsd role (`no_role`).

Example:
    >>> verifier = OidcVerifier(config.oidc, ProviderKeys(config.oidc))
    >>> caller = await verifier.verify(id_token)
    >>> caller.name, caller.role, caller.person.email
    ('entra:AAAA...', 'viewer', 'ana@example.com')
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import jwt
import structlog

from wsd.actions import ROLE_RANK, Caller, Person, Role
from wsd.config import OidcConfig, OidcProvider
from wsd.oidc_keys import KeysUnavailable, ProviderKeys

__all__ = ["OidcVerifier", "TokenRefused", "provider_origins"]

log = structlog.get_logger("wsd.oidc")


class TokenRefused(Exception):
    """A token that does not sign anybody in; `reason` is stable, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def provider_origins(settings: OidcConfig) -> list[str]:
    """The scheme://host[:port] of each provider's issuer: where the page may fetch tokens
    (the Content-Security-Policy's connect-src). Entra ID's and Keycloak's token endpoints
    are on their issuer's origin."""
    return sorted({"/".join(provider.issuer.split("/", 3)[:3]) for provider in settings.providers})


def _claim_values(claims: dict[str, Any], claim: str) -> list[str]:
    value = claims.get(claim)
    if isinstance(value, str):
        return [value]
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


class OidcVerifier:
    """Checks tokens against the configured providers; each is trusted for its issuer only."""

    def __init__(self, settings: OidcConfig, keys: ProviderKeys) -> None:
        self._settings = settings
        self._keys = keys
        self._providers = {provider.issuer: provider for provider in settings.providers}

    @property
    def enabled(self) -> bool:
        return bool(self._providers)

    async def verify(self, token: str) -> Caller:
        """The caller `token` signs in (raises `TokenRefused`; `KeysUnavailable` when the
        provider's keys cannot be fetched)."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenRefused("malformed", "not a signed JWT") from None
        issuer = unverified.get("iss")
        provider = self._providers.get(issuer) if isinstance(issuer, str) else None
        if provider is None:
            raise TokenRefused("unknown_issuer", "the token's issuer is not a configured provider")
        algorithm = header.get("alg")
        if algorithm not in provider.algorithms:
            raise TokenRefused("algorithm_not_allowed", f"algorithm {str(algorithm)[:20]!r} is not "
                               f"allowed for {provider.name} ({', '.join(provider.algorithms)})")
        kid = header.get("kid")
        jwk = await self._keys.key(provider.issuer, kid) if isinstance(kid, str) else None
        if jwk is None:
            raise TokenRefused("unknown_kid", f"no key of {provider.name} has the token's kid")
        if jwk.get("alg", algorithm) != algorithm:
            raise TokenRefused("algorithm_not_allowed", "the key is for another algorithm")
        return self._caller(provider, self._checked_claims(token, provider, jwk, algorithm))

    def _checked_claims(self, token: str, provider: OidcProvider, jwk: dict[str, Any],
                        algorithm: str) -> dict[str, Any]:
        try:
            # The key is read as a key of the token's (allowed) algorithm: an EC key for an
            # RS256 token is an InvalidKeyError, never a guess.
            return jwt.decode(token, jwt.PyJWK(jwk, algorithm), algorithms=[algorithm],
                              audience=provider.audience or provider.client_id,
                              issuer=provider.issuer, leeway=self._settings.leeway_seconds,
                              options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError:
            raise TokenRefused("expired", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused("not_yet_valid", "the token is not valid yet (nbf or iat)") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused("wrong_audience", "the token is not meant for wsd (aud)") from None
        except jwt.MissingRequiredClaimError as error:
            raise TokenRefused("missing_claim", f"the token has no {error.claim!r} claim") from None
        except (jwt.InvalidSignatureError, jwt.InvalidKeyError, jwt.PyJWKError):
            raise TokenRefused("bad_signature", "the token's signature does not verify") from None
        except jwt.PyJWTError as error:
            raise TokenRefused("malformed", f"the token was refused: {type(error).__name__}") from None

    async def page_config(self) -> dict[str, Any]:
        """What the page needs to sign people in (GET /oidc.json): per provider its name,
        issuer, public client id, scopes and the endpoints its discovery document names.
        Nothing secret: the page is a public client (Authorization Code with PKCE). A
        provider whose discovery cannot be fetched now is left out (and logged)."""
        providers = []
        for provider in self._settings.providers:
            try:
                discovery = await self._keys.discovery(provider.issuer)
            except (KeysUnavailable, aiohttp.ClientError, asyncio.TimeoutError, ValueError) as failure:
                log.warning("oidc discovery failed", issuer=provider.issuer, error=repr(failure))
                continue
            providers.append({"name": provider.name, "issuer": provider.issuer,
                              "client_id": provider.client_id, "scopes": provider.scopes,
                              "authorization_endpoint": discovery.get("authorization_endpoint"),
                              "token_endpoint": discovery.get("token_endpoint")})
        return {"providers": providers}

    @staticmethod
    def _caller(provider: OidcProvider, claims: dict[str, Any]) -> Caller:
        """The role is the highest the role claim's values map to; the name "<provider>:<sub>"."""
        roles: list[Role] = [provider.roles[value] for value in _claim_values(claims, provider.role_claim)
                             if value in provider.roles]
        if not roles:
            raise TokenRefused("no_role", f"the token's {provider.role_claim!r} claim names no "
                               "role wsd knows")
        subject = str(claims["sub"])
        name, email = claims.get(provider.name_claim), claims.get(provider.email_claim)
        person = Person(provider.name, subject, name if isinstance(name, str) and name else subject,
                        email if isinstance(email, str) and email else None, float(claims["exp"]))
        return Caller(f"{provider.name}:{subject}", max(roles, key=ROLE_RANK.__getitem__), person)
