"""OpenID tokens checked against a fake provider that is a real HTTP server on loopback:
every refusal of the issue, key rotation, a key trusted for its own issuer only, and the
bound on JWKS fetches."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any, AsyncIterator

import jwt
import pytest

from tests.fake_oidc import CLIENT_ID, FakeOpenIdProvider, new_key
from wsd.config import ConfigError, OidcConfig, OidcProvider, load_config
from wsd.oidc import OidcVerifier, TokenRefused
from wsd.oidc_keys import KeysUnavailable, ProviderKeys

ROLES = {"wsd.admin": "admin", "wsd.viewer": "viewer"}


def provider(fake: FakeOpenIdProvider, name: str = "corp", **fields: Any) -> OidcProvider:
    return OidcProvider(name=name, issuer=fake.issuer, client_id=CLIENT_ID, roles=ROLES,  # type: ignore[arg-type]
                        algorithms=["RS256", "ES256"], **fields)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenIdProvider]:
    provider_server = FakeOpenIdProvider()
    await provider_server.start()
    yield provider_server
    await provider_server.stop()


@pytest.fixture
async def other() -> AsyncIterator[FakeOpenIdProvider]:
    provider_server = FakeOpenIdProvider()
    await provider_server.start()
    yield provider_server
    await provider_server.stop()


OPEN_KEYS: list[ProviderKeys] = []


@pytest.fixture(autouse=True)
async def close_key_caches() -> AsyncIterator[None]:
    """Each test's key caches close their HTTP sessions at its end."""
    yield
    while OPEN_KEYS:
        await OPEN_KEYS.pop().aclose()


def verifier_for(*providers: OidcProvider, **settings: Any) -> tuple[OidcVerifier, ProviderKeys]:
    config = OidcConfig(providers=list(providers), **settings)
    keys = ProviderKeys(config)
    OPEN_KEYS.append(keys)
    return OidcVerifier(config, keys), keys


async def refused(verifier: OidcVerifier, token: str) -> str:
    with pytest.raises(TokenRefused) as refusal:
        await verifier.verify(token)
    return refusal.value.reason


def unsigned(fake: FakeOpenIdProvider, alg: str, signature: bytes = b"") -> str:
    """A token with header `alg`, the right claims and `signature` (empty for alg none)."""
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    now = int(time.time())
    body = {"iss": fake.issuer, "aud": CLIENT_ID, "exp": now + 600, "nbf": now, **fake.person}
    head = part({"alg": alg, "kid": fake.keys[-1].kid, "typ": "JWT"}) + "." + part(body)
    return head + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


async def test_a_good_token_signs_in_the_person_with_the_mapped_role(fake) -> None:
    verifier, _ = verifier_for(provider(fake))
    caller = await verifier.verify(fake.token())
    assert (caller.name, caller.role) == ("corp:ana-0001", "admin")
    assert caller.person is not None
    assert (caller.person.subject, caller.person.name, caller.person.email) == (
        "ana-0001", "Ana García", "ana@empresa.example")
    fake.person["roles"] = ["wsd.viewer", "sales"]
    assert (await verifier.verify(fake.token())).role == "viewer"


async def test_every_refusal_of_the_issue_has_its_reason(fake, other) -> None:
    verifier, _ = verifier_for(provider(fake), leeway_seconds=5)
    key = fake.keys[-1]
    hs256_with_public_key = unsigned(fake, "HS256")
    header_and_body = hs256_with_public_key.rsplit(".", 1)[0]
    mac = hmac.new(key.public_pem(), header_and_body.encode(), hashlib.sha256).digest()
    cases = {
        "unknown_issuer": other.token(),
        "wrong_audience": fake.token(audience="another-app"),
        "expired": fake.token(lifetime=-60),
        "not_yet_valid": fake.token(nbf=int(time.time()) + 600),
        "algorithm_not_allowed": unsigned(fake, "none"),
        "unknown_kid": fake.token(key=new_key()),
        "malformed": "a.b.c",
        "no_role": fake.token(roles=["sales"]),
    }
    for reason, token in cases.items():
        assert await refused(verifier, token) == reason, reason
    assert await refused(verifier, header_and_body + "." + base64.urlsafe_b64encode(mac)
                         .rstrip(b"=").decode()) == "algorithm_not_allowed"
    # A forged signature under an allowed algorithm.
    good = fake.token()
    forged = good.rsplit(".", 1)[0] + "." + fake.token(sub="mallory").rsplit(".", 1)[1]
    assert await refused(verifier, forged) == "bad_signature"


async def test_the_leeway_is_small_and_applies_both_ways(fake) -> None:
    verifier, _ = verifier_for(provider(fake), leeway_seconds=30)
    assert (await verifier.verify(fake.token(lifetime=-10))).role == "admin"
    assert (await verifier.verify(fake.token(nbf=int(time.time()) + 10))).role == "admin"
    assert await refused(verifier, fake.token(lifetime=-40)) == "expired"


async def test_a_key_is_trusted_for_its_own_issuer_only(fake, other) -> None:
    """A key of provider B (cached after a B sign-in) does not verify a token that says it
    is A's, even with B's kid: keys are looked up by issuer, then kid."""
    verifier, _ = verifier_for(provider(fake), provider(other, "partner"))
    assert (await verifier.verify(other.token())).name == "partner:ana-0001"
    forged = jwt.encode({"iss": fake.issuer, "aud": CLIENT_ID, "sub": "ana-0001", "roles": ["wsd.admin"],
                         "exp": int(time.time()) + 600}, other.keys[-1].private, algorithm="RS256",
                        headers={"kid": other.keys[-1].kid})
    assert await refused(verifier, forged) == "unknown_kid"


async def test_a_rotated_key_is_fetched_and_a_retired_one_dropped(fake) -> None:
    verifier, keys = verifier_for(provider(fake), jwks_refetch_seconds=0.2, jwks_max_age_seconds=0.5)
    old = fake.keys[-1]
    await verifier.verify(fake.token())
    new = fake.rotate(keep_old=False)
    await asyncio.sleep(0.25)
    assert (await verifier.verify(fake.token(key=new))).role == "admin"
    assert keys.jwks_fetches == 2
    await asyncio.sleep(0.55)   # the set is older than its max age: fetched again on next use
    assert await refused(verifier, fake.token(key=old)) == "unknown_kid"


async def test_a_thousand_unknown_kids_cost_at_most_one_fetch(fake) -> None:
    """The documented bound: one JWKS fetch per provider per jwks_refetch_seconds (30 s by
    default) however many unknown kids arrive, at once or one after another."""
    verifier, keys = verifier_for(provider(fake))
    await verifier.verify(fake.token())
    assert fake.jwks_requests == 1
    tokens = [fake.token(key=new_key()) for _ in range(10)]
    reasons = await asyncio.gather(*(refused(verifier, tokens[i % 10]) for i in range(500)))
    for i in range(500):
        reasons.append(await refused(verifier, tokens[i % 10]))
    assert set(reasons) == {"unknown_kid"} and len(reasons) == 1000
    assert fake.jwks_requests <= 2 and keys.jwks_fetches == fake.jwks_requests


async def test_cold_misses_share_one_fetch(fake) -> None:
    verifier, _ = verifier_for(provider(fake))
    token = fake.token()
    callers = await asyncio.gather(*(verifier.verify(token) for _ in range(200)))
    assert {caller.name for caller in callers} == {"corp:ana-0001"}
    assert fake.jwks_requests == 1


async def test_an_unreachable_provider_is_unavailable_not_a_refusal(fake) -> None:
    verifier, _ = verifier_for(provider(fake))
    token = fake.token()
    await fake.stop()
    with pytest.raises(KeysUnavailable):
        await verifier.verify(token)


def test_config_refuses_hmac_none_and_foreign_issuers(tmp_path) -> None:
    def load(provider_line: str) -> Any:
        path = tmp_path / "wsd.toml"
        path.write_text(f"[oidc]\nproviders = [{provider_line}]\n")
        return load_config(path, environ={})
    good = '{ name = "entra", issuer = "https://login.example/t/v2.0", client_id = "c", roles = { "wsd.admin" = "admin" } }'
    assert load(good).oidc.providers[0].algorithms == ["RS256"]
    for line, key in (
            (good.replace('client_id = "c"', 'client_id = "c", algorithms = ["HS256"]'), "algorithms"),
            (good.replace('client_id = "c"', 'client_id = "c", algorithms = ["none"]'), "algorithms"),
            (good.replace("https://login", "http://login"), "issuer"),
            (good.replace('roles = { "wsd.admin" = "admin" }', "roles = {}"), "roles"),
            (good + ", " + good, "name")):
        with pytest.raises(ConfigError, match=rf"oidc\.providers\[\d\]\.{key}"):
            load(line)


def signed(fake: FakeOpenIdProvider, **claims: Any) -> str:
    """A token signed with the provider's key whose claims PyJWT's encoder would refuse."""
    now = int(time.time())
    body = {"iss": fake.issuer, "aud": CLIENT_ID, "exp": now + 600, **fake.person, **claims}
    key = fake.keys[-1]
    return jwt.api_jws.encode(json.dumps(body).encode(), key.private, algorithm="RS256",
                              headers={"kid": key.kid})


async def test_claims_of_the_wrong_type_are_refusals_not_crashes(fake) -> None:
    verifier, _ = verifier_for(provider(fake))
    assert await refused(verifier, signed(fake, iss=[fake.issuer])) == "unknown_issuer"
    assert await refused(verifier, signed(fake, exp="tomorrow")) == "malformed"
    assert await refused(verifier, signed(fake, sub=12345)) == "malformed"
    assert (await verifier.verify(signed(fake))).name == "corp:ana-0001"
