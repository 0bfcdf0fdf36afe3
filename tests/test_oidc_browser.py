"""Signing in on the page with an OpenID provider in headless Chromium: Authorization Code
with PKCE against the fake provider (a real HTTP server on loopback), the dashboard, the
trail naming the person, silent renewal on `auth.expiring`, and a sign-in that ends."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any, AsyncIterator

import asyncpg
import pytest

from tests.browser import Tab, browser, new_tab  # noqa: F401
from tests.conftest import Daemon, start_daemon
from tests.fake_oidc import FakeOpenIdProvider
from tests.test_browser import ready, seed
from tests.test_oidc_login import oidc_env
from tests.test_reliability import eventually


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[FakeOpenIdProvider]:
    fake = FakeOpenIdProvider()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="module")
def page_daemon(postgres: str, provider: FakeOpenIdProvider,
                tmp_path_factory: pytest.TempPathFactory) -> Any:
    running = start_daemon(tmp_path_factory.mktemp("oidc-page"), postgres, env=oidc_env(provider),
                           max_inflight_per_connection=16)
    yield running
    running.stop()


async def sign_in(tab: Tab, daemon: Daemon, query: str = "") -> None:
    await tab.page.goto(f"http://127.0.0.1:{daemon.port}/{query}")
    await tab.page.click("#providers button:text('Sign in with corp')")
    await ready(tab)


async def test_sign_in_on_the_page_and_the_trail_names_the_person(
        page_daemon: Daemon, provider: FakeOpenIdProvider, db: asyncpg.Connection, browser) -> None:  # noqa: F811
    [_, (other_lead, conversation_id), _] = await seed(db)
    provider.token_lifetime = 3600
    tab = await new_tab(browser)
    try:
        await sign_in(tab, page_daemon, "?period=last_7_days")
        # Back from the provider with the view it left with, and no code left in the URL.
        assert tab.page.url.endswith("/?period=last_7_days"), tab.page.url
        assert await tab.page.input_value("#period") == "last_7_days"
        await tab.wait_text("#who", "Ana García · admin")
        await tab.wait_text(f'.card[data-lead="{other_lead}"] .name', "Bruno Díaz")
        await tab.page.click(f'.card[data-lead="{other_lead}"]')
        await tab.wait_text("#lead-name", "Bruno Díaz")
        await tab.page.click("#agent-switch")
        await eventually(lambda: db.fetchval("SELECT NOT agent_enabled FROM conversations WHERE id = $1",
                                             conversation_id), seconds=3)
        await tab.page.wait_for_function(
            "() => document.querySelector('#lead')?.textContent.includes("
            "'Ana García (admin) · conversations.update_agent_status')", timeout=5000)
        assert await db.fetchval("SELECT actor_name FROM trail_entries WHERE action = 'update_agent_status'") \
            == "Ana García"
        assert tab.csp_violations() == [] and tab.errors == []
    finally:
        await tab.page.context.close()


async def test_the_page_renews_silently_and_keeps_its_panels(
        page_daemon: Daemon, provider: FakeOpenIdProvider, db: asyncpg.Connection, browser) -> None:  # noqa: F811
    """Tokens of 4 s (the test daemon's notice is 2 s, its leeway 1 s): the page answers
    `auth.expiring` with the refresh token and `auth.refresh`, so it is still live (the same
    connection: no reconnect) well past the first token's end."""
    await seed(db)
    provider.token_lifetime = 4
    tab = await new_tab(browser)
    try:
        await sign_in(tab, page_daemon)
        refreshes_before = len(provider.refresh_tokens)
        states: list[str] = []
        await tab.page.expose_function("noteState", lambda state: states.append(state))
        await tab.page.evaluate("""() => new MutationObserver(() => window.noteState(
            document.querySelector('#conn-state').dataset.state)).observe(
            document.querySelector('#conn-state'), {attributes: true})""")
        await asyncio.sleep(4 + 1 + 2)
        assert len(provider.refresh_tokens) > refreshes_before   # the refresh token was used
        assert states == [] and await tab.text("#conn-state") == "live"
        await tab.wait_text('.column[data-step="start"] .count', "3")
        assert tab.errors == []
    finally:
        provider.token_lifetime = 3600
        await tab.page.context.close()


async def test_a_sign_in_that_cannot_be_renewed_asks_again_and_keeps_the_view(
        page_daemon: Daemon, provider: FakeOpenIdProvider, db: asyncpg.Connection, browser) -> None:  # noqa: F811
    await seed(db)
    provider.token_lifetime = 3
    tab = await new_tab(browser)
    try:
        await sign_in(tab, page_daemon, "?period=last_30_days")
        provider.refresh_tokens.clear()   # the provider no longer renews: the person must sign in
        await tab.page.wait_for_selector("#login:not([hidden])", timeout=10_000)
        assert "Your sign-in has ended" in await tab.text("#login-error")
        assert await tab.page.is_hidden("#dashboard")
        assert tab.page.url.endswith("/?period=last_30_days")
        provider.token_lifetime = 3600
        await tab.page.click("#providers button:text('Sign in with corp')")
        await ready(tab)
        assert tab.page.url.endswith("/?period=last_30_days")
        assert await tab.page.input_value("#period") == "last_30_days"
    finally:
        provider.token_lifetime = 3600
        await tab.page.context.close()
