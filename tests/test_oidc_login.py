"""People signing in over the WebSocket with a token from an OpenID provider (a fake one, a
real HTTP server on loopback): who they are on the trail and in the real-time figures, the
refusals with their reasons and log lines, refresh, and expiry on a live connection."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import time
import urllib.request
from typing import Any, AsyncIterator

import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from tests import factories
from tests.conftest import ADMIN_TOKEN, Client, Daemon, open_client, start_daemon
from tests.fake_oidc import CLIENT_ID, FakeOpenIdProvider, new_key
from tests.test_live import next_update, settle, subscribe
from tests.test_oidc_tokens import unsigned

LEEWAY = 1
NOTICE = 2


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[FakeOpenIdProvider]:
    fake = FakeOpenIdProvider()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="module")
async def other_provider() -> AsyncIterator[FakeOpenIdProvider]:
    fake = FakeOpenIdProvider()
    await fake.start()
    yield fake
    await fake.stop()


def oidc_env(fake: FakeOpenIdProvider) -> dict[str, str]:
    provider = (f'{{ name = "corp", issuer = "{fake.issuer}", client_id = "{CLIENT_ID}", '
                'roles = { "wsd.admin" = "admin", "wsd.viewer" = "viewer" } }')
    return {"WSD_OIDC_PROVIDERS": f"[{provider}]", "WSD_OIDC_LEEWAY_SECONDS": str(LEEWAY),
            "WSD_OIDC_EXPIRY_NOTICE_SECONDS": str(NOTICE)}


@pytest.fixture(scope="module")
def oidc_daemon(postgres: str, provider: FakeOpenIdProvider,
                tmp_path_factory: pytest.TempPathFactory) -> Any:
    running = start_daemon(tmp_path_factory.mktemp("oidc"), postgres, env=oidc_env(provider),
                           auth={"max_failures_per_minute": 100_000})
    yield running
    running.stop()


async def signed_in(daemon: Daemon, token: str) -> tuple[Any, Client, dict[str, Any]]:
    connection = await open_client(daemon.url, token=None)
    client = Client(connection)
    return connection, client, await client.data("auth", "login", {"id_token": token})


async def test_a_person_signs_in_and_the_trail_and_figures_name_them(oidc_daemon, provider, db) -> None:
    token = provider.token()
    connection, client, reply = await signed_in(oidc_daemon, token)
    async with connection, open_client(oidc_daemon.url, token=None) as second_tab:
        assert (reply["name"], reply["role"]) == ("corp:ana-0001", "admin")
        assert reply["person"] == {"provider": "corp", "subject": "ana-0001", "name": "Ana García",
                                   "email": "ana@empresa.example"}
        assert reply["expires_at"].startswith(time.strftime("%Y-%m-%d", time.gmtime(time.time() + 3600)))
        await Client(second_tab).data("auth", "login", {"id_token": provider.token()})
        figures = await client.data("dashboard", "get_real_time_metrics")
        assert (figures["connections"], figures["people"]) == (2, 1)
        lead_id = await factories.lead(db, [("start", dt.datetime.now(dt.timezone.utc), "agent")])
        await client.data("leads", "update_lead_step", {"lead_id": str(lead_id), "new_step": "bant"})
        entry = (await client.data("trail", "get_trail"))[0]
        assert (entry["actor"], entry["actor_role"], entry["actor_name"], entry["actor_email"]) == (
            "corp:ana-0001", "admin", "Ana García", "ana@empresa.example")
    async with open_client(oidc_daemon.url, ADMIN_TOKEN) as program:
        assert (await Client(program).data("dashboard", "get_real_time_metrics"))["people"] == 0
    log = oidc_daemon.log()
    assert '"signed in"' in log and "corp:ana-0001" in log
    assert token.split(".")[1] not in log and token.split(".")[2] not in log


async def test_api_tokens_still_log_in_beside_people(oidc_daemon, db) -> None:
    async with open_client(oidc_daemon.url, token=None) as connection:
        assert await Client(connection).data("auth", "login", {"token": ADMIN_TOKEN}) == {
            "name": "test-admin", "role": "admin"}


async def test_every_refused_token_has_its_reason_and_a_log_line_without_it(
        oidc_daemon, provider, other_provider) -> None:
    head_and_body = unsigned(provider, "HS256").rsplit(".", 1)[0]
    mac = hmac.new(provider.keys[-1].public_pem(), head_and_body.encode(), hashlib.sha256).digest()
    cases = {
        "unknown_issuer": other_provider.token(),
        "wrong_audience": provider.token(audience="another-app"),
        "expired": provider.token(lifetime=-600),
        "not_yet_valid": provider.token(nbf=int(time.time()) + 600),
        "algorithm_not_allowed": unsigned(provider, "none"),
        "unknown_kid": provider.token(key=new_key()),
        "no_role": provider.token(roles=["sales"]),
    }
    hs256 = head_and_body + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    for reason, token in [*cases.items(), ("algorithm_not_allowed", hs256)]:
        async with open_client(oidc_daemon.url, token=None) as connection:
            client = Client(connection)
            error = await client.error("auth", "login", {"id_token": token})
            assert (error["code"], error["details"]["reason"]) == ("unauthorized", reason), error
            # The connection stays: a good token still signs in on it.
            assert (await client.data("auth", "login", {"id_token": provider.token()}))["role"] == "admin"
    await asyncio.sleep(0.6)   # the log is flushed every half second
    log = oidc_daemon.log()
    for reason, token in [*cases.items(), ("algorithm_not_allowed", hs256)]:
        assert f'"reason": "{reason}"' in log or f'"reason":"{reason}"' in log, reason
        assert token.split(".")[1] not in log, reason   # no token text, not even its claims


async def test_a_thousand_logins_with_unknown_kids_fetch_the_keys_at_most_once(oidc_daemon, provider) -> None:
    """Over the WebSocket, 250 connections × 4 logins (a 5th failure would close each): the
    daemon asks the provider's JWKS at most once per `oidc.jwks_refetch_seconds` (30 s)."""
    tokens = [provider.token(key=new_key()) for _ in range(8)]
    before = provider.jwks_requests

    async def four_logins(n: int) -> list[str]:
        async with open_client(oidc_daemon.url, token=None) as connection:
            client = Client(connection)
            return [(await client.error("auth", "login", {"id_token": tokens[(n + i) % 8]}))["details"]["reason"]
                    for i in range(4)]

    reasons = []
    for batch in range(10):
        for found in await asyncio.gather(*(four_logins(batch * 25 + n) for n in range(25))):
            reasons += found
    assert len(reasons) == 1000 and set(reasons) == {"unknown_kid"}
    assert provider.jwks_requests - before <= 1


async def test_refresh_keeps_subscriptions_and_requires_the_same_person(oidc_daemon, provider, db) -> None:
    connection, client, first = await signed_in(oidc_daemon, provider.token(lifetime=30))
    async with connection:
        lead_id = await factories.lead(db, [("start", dt.datetime.now(dt.timezone.utc), "agent")])
        subscribed = await subscribe(client, "dashboard", "get_dashboard_stats")
        await settle(client)
        refreshed = await client.data("auth", "refresh", {"id_token": provider.token(lifetime=3600)})
        assert refreshed["name"] == first["name"] and refreshed["expires_at"] > first["expires_at"]
        await client.data("leads", "update_lead_step", {"lead_id": str(lead_id), "new_step": "bant"})
        update = await next_update(client, subscribed["subscription"], timeout=5)
        assert update["data"]["leads_by_step"]["bant"] == 1
        error = await client.error("auth", "refresh", {"id_token": provider.token(sub="bob-0002")})
        assert (error["code"], error["details"]["reason"]) == ("unauthorized", "other_subject")
        error = await client.error("auth", "refresh", {"id_token": provider.token(lifetime=-600)})
        assert error["details"]["reason"] == "expired"
        assert (await client.data("dashboard", "get_real_time_metrics"))["people"] == 1


async def test_expiry_is_announced_then_closes_with_4401(oidc_daemon, provider) -> None:
    lifetime = 3
    connection, client, reply = await signed_in(oidc_daemon, provider.token(lifetime=lifetime))
    async with connection:
        event = await client.receive(timeout=lifetime)
        assert (event["type"], event["topic"]) == ("event", "auth.expiring")
        assert event["payload"]["expires_at"] == reply["expires_at"]
        assert 0 <= event["payload"]["seconds_left"] <= NOTICE
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await client.receive(timeout=lifetime + LEEWAY + 2)
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, "token expired")


async def test_a_refreshed_connection_outlives_its_first_token(oidc_daemon, provider) -> None:
    connection, client, _ = await signed_in(oidc_daemon, provider.token(lifetime=2))
    async with connection:
        await client.data("auth", "refresh", {"id_token": provider.token(lifetime=3600)})
        await asyncio.sleep(2 + LEEWAY + 1)
        assert (await client.data("dashboard", "get_real_time_metrics"))["people"] >= 1


async def test_the_page_learns_the_providers_and_may_fetch_from_them(oidc_daemon, provider, daemon) -> None:
    # In a thread: the fake provider the daemon asks for discovery answers on this loop.
    status, body = await asyncio.to_thread(oidc_daemon.http, "/oidc.json")
    assert status == 200
    assert orjson.loads(body) == {"providers": [{
        "name": "corp", "issuer": provider.issuer, "client_id": CLIENT_ID, "scopes": "openid profile email",
        "authorization_endpoint": f"{provider.issuer}/authorize", "token_endpoint": f"{provider.issuer}/token"}]}
    with urllib.request.urlopen(f"http://127.0.0.1:{oidc_daemon.port}/", timeout=5) as page:
        assert f"connect-src 'self' ws://127.0.0.1:{oidc_daemon.port} wss://127.0.0.1:{oidc_daemon.port} " \
               f"{provider.issuer};" in page.headers["Content-Security-Policy"]
    # Without providers: none, and an id_token is refused as such.
    assert orjson.loads(daemon.http("/oidc.json")[1]) == {"providers": []}
    async with open_client(daemon.url, token=None) as connection:
        error = await Client(connection).error("auth", "login", {"id_token": provider.token()})
        assert (error["code"], error["details"]["reason"]) == ("unauthorized", "oidc_disabled")
