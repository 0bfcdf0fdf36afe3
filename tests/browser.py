"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by Playwright.

Playwright's own browser download (`playwright install`) cannot run here (no network but
the package registries), so the tests launch the system Chromium, which `make test`
installs with apt where it is missing. Never skipped: a machine without it fails loudly.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from tests.conftest import Daemon, start_daemon

CHROMIUM = os.environ.get("WSD_TEST_CHROMIUM", "/usr/bin/chromium")
# The flags this machine needs: no sandbox as root, and no calls home (the closed network
# refuses them, many at a time). Playwright adds --headless and a fresh profile itself.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                   headless=True)
        yield launched
        await launched.close()


class Tab:
    """One page plus what its console said (CSP violations land there)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console: list[ConsoleMessage] = []
        self.errors: list[str] = []
        page.on("console", lambda message: self.console.append(message))
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def csp_violations(self) -> list[str]:
        return [m.text for m in self.console if "Content Security Policy" in m.text]

    async def text(self, selector: str) -> str:
        return (await self.page.text_content(selector)) or ""

    async def wait_text(self, selector: str, expected: str, timeout_ms: float = 5000) -> None:
        """Waits until `selector`'s text is `expected` (fails with what it was)."""
        try:
            await self.page.wait_for_function(
                "([s, e]) => document.querySelector(s)?.textContent === e", arg=[selector, expected],
                timeout=timeout_ms, polling=50)
        except Exception:
            raise AssertionError(f"{selector} shows {await self.text(selector)!r}, not {expected!r} "
                                 f"within {timeout_ms} ms") from None


async def new_tab(browser: Browser, viewport: dict[str, int] | None = None) -> Tab:
    context = await browser.new_context(viewport=viewport or {"width": 1280, "height": 800})  # type: ignore[arg-type]
    return Tab(await context.new_page())


async def log_in(tab: Tab, daemon: Daemon, token: str) -> None:
    """Opens the dashboard and signs in through its token form."""
    await tab.page.goto(f"http://127.0.0.1:{daemon.port}/")
    await tab.page.fill("#token", token)
    await tab.page.click("#login-form button[type=submit]")


async def kill(daemon: Daemon) -> None:
    """SIGKILL: no closing handshake, as when the machine or process dies."""
    daemon.process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(daemon.process.wait, 10)


async def restart(daemon: Daemon, dsn: str, **settings: Any) -> Daemon:
    """The same daemon again, on the same port (where the open page reconnects); `settings`
    as start_daemon takes them."""
    return await asyncio.to_thread(lambda: start_daemon(daemon.config_path.parent, dsn, port=daemon.port,
                                                        **settings))


def stats_texts(stats: dict[str, Any]) -> dict[str, str]:
    """What the page's four stat cards must show for a get_dashboard_stats answer."""
    return {"#stat-users": f"{stats['total_users']:,}",
            "#stat-conversations": f"{stats['active_conversations']:,}",
            "#stat-meetings": f"{stats['meetings_today']:,}",
            "#stat-leads": f"{sum(stats['leads_by_step'].values()):,}"}
