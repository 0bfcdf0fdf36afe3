"""A fake OpenID provider for tests: a real aiohttp server on loopback with discovery, a JWKS
whose keys rotate, and the Authorization Code flow with PKCE (S256) at /authorize and /token.

/authorize signs in `person` at once (a real provider would show its login page) and
redirects back with a code; /token swaps the code (checking the PKCE verifier and the
redirect URI) or a refresh token for an ID token. `token(...)` mints a token directly, with
any claim or header a test wants wrong. Every JWKS request is counted in `jwks_requests`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

CLIENT_ID = "wsd-dashboard"


@dataclass
class SigningKey:
    kid: str
    private: Any
    algorithm: str

    def public_jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig"}

    def public_pem(self) -> bytes:
        return bytes(self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def new_key(algorithm: str = "RS256") -> SigningKey:
    private = (ec.generate_private_key(ec.SECP256R1()) if algorithm == "ES256"
               else rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return SigningKey("k-" + secrets.token_hex(6), private, algorithm)


@dataclass
class Grant:
    """An authorization code waiting for /token: who, for which client and PKCE challenge."""
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    claims: dict[str, Any] = field(default_factory=dict)


class FakeOpenIdProvider:
    def __init__(self, token_lifetime: int = 3600) -> None:
        self.token_lifetime = token_lifetime
        self.keys = [new_key()]
        self.person: dict[str, Any] = {"sub": "ana-0001", "name": "Ana García",
                                       "email": "ana@empresa.example", "roles": ["wsd.admin"]}
        self.jwks_requests = 0
        self.refresh_tokens: dict[str, dict[str, Any]] = {}
        self._codes: dict[str, Grant] = {}
        self._runner: web.AppRunner | None = None
        self.issuer = ""

    # -- tokens ----------------------------------------------------------------------------

    def token(self, *, key: SigningKey | None = None, headers: dict[str, Any] | None = None,
              lifetime: int | None = None, audience: str = CLIENT_ID, **claims: Any) -> str:
        """A token signed with `key` (default the newest), for `person`, `claims` on top."""
        key = key or self.keys[-1]
        now = int(time.time())
        body = {"iss": self.issuer, "aud": audience, "iat": now, "nbf": now,
                "exp": now + (self.token_lifetime if lifetime is None else lifetime),
                **self.person, **claims}
        return jwt.encode(body, key.private, algorithm=key.algorithm,
                          headers={"kid": key.kid, **(headers or {})})

    def rotate(self, keep_old: bool = True) -> SigningKey:
        """A new signing key, published in the JWKS; the old one stays unless told."""
        key = new_key()
        self.keys = [*self.keys, key] if keep_old else [key]
        return key

    # -- the server ------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_route("OPTIONS", "/token", self._preflight)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.issuer = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _discovery(self, _: web.Request) -> web.Response:
        return self._cors(web.json_response({
            "issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks",
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token", "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"]}))

    async def _jwks(self, _: web.Request) -> web.Response:
        self.jwks_requests += 1
        return self._cors(web.json_response({"keys": [key.public_jwk() for key in self.keys]}))

    async def _authorize(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256" \
                or not query.get("code_challenge") or query.get("client_id") != CLIENT_ID:
            return web.Response(status=400, text="response_type=code, client_id and an S256 "
                                "code_challenge are required")
        code = secrets.token_urlsafe(16)
        self._codes[code] = Grant(query["client_id"], query["redirect_uri"], query["code_challenge"],
                                  query.get("nonce"))
        back = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        raise web.HTTPFound(f"{query['redirect_uri']}?{urlencode(back)}")

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") == "refresh_token":
            person = self.refresh_tokens.get(str(form.get("refresh_token")))
            if person is None:
                return self._error("invalid_grant", "unknown refresh token")
            return self._cors(web.json_response(self._tokens()))
        grant = self._codes.pop(str(form.get("code")), None)
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
        if grant is None or form.get("grant_type") != "authorization_code":
            return self._error("invalid_grant", "unknown or used code")
        if challenge.decode() != grant.challenge or form.get("redirect_uri") != grant.redirect_uri \
                or form.get("client_id") != grant.client_id:
            return self._error("invalid_grant", "PKCE verifier, redirect_uri or client_id mismatch")
        return self._cors(web.json_response(self._tokens(nonce=grant.nonce)))

    def _tokens(self, nonce: str | None = None) -> dict[str, Any]:
        refresh = secrets.token_urlsafe(16)
        self.refresh_tokens[refresh] = dict(self.person)
        extra = {"nonce": nonce} if nonce else {}
        return {"id_token": self.token(**extra), "token_type": "Bearer",
                "expires_in": self.token_lifetime, "refresh_token": refresh}

    async def _preflight(self, _: web.Request) -> web.Response:
        return self._cors(web.Response(status=204, headers={
            "Access-Control-Allow-Methods": "POST", "Access-Control-Allow-Headers": "Content-Type"}))

    def _error(self, code: str, description: str) -> web.Response:
        return self._cors(web.json_response({"error": code, "error_description": description},
                                            status=400))

    @staticmethod
    def _cors(response: web.Response) -> web.Response:
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response
