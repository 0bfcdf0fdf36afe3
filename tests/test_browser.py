"""The dashboard page in headless Chromium against the real daemon and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Error as PlaywrightError

from tests import factories
from tests.browser import Tab, browser, kill, log_in, new_tab, restart, stats_texts  # noqa: F401
from tests.conftest import ADMIN_TOKEN, ROOT, VIEWER_TOKEN, Daemon, open_client, Client, start_daemon
from tests.test_reliability import eventually

UTC = dt.timezone.utc

# The specification's example (handlers-spec.es.md, "Ejemplo de uso"), verbatim.
SPEC_SNIPPET = """\
// Conectar al WebSocket
const ws = new WebSocket('ws://localhost:8000/ws');

// Obtener estadísticas del dashboard
ws.send(JSON.stringify({
  resource: 'dashboard',
  action: 'get_dashboard_stats',
  id: generateUniqueId()
}));

// Escuchar respuestas
ws.onmessage = (event) => {
  const response = JSON.parse(event.data);
  console.log('Respuesta:', response);
};
"""


async def seed(db: asyncpg.Connection) -> list[tuple[object, object]]:
    """Three leads at `start`, each with a conversation the agent runs: (lead, conversation)."""
    made = []
    for name in ("Ana Ruiz", "Bruno Díaz", "Carla Gómez"):
        user_id = await factories.user(db, full_name=name, company=f"{name.split()[1]} SL")
        conversation_id = await factories.conversation(db, user_id)
        await factories.message(db, conversation_id, "user", dt.datetime.now(UTC))
        lead_id = await factories.lead(db, [("start", dt.datetime.now(UTC), "agent")], user_id=user_id,
                                       conversation_id=conversation_id)
        made.append((lead_id, conversation_id))
    return made


def wsd_cli(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WSD_TOKEN": ADMIN_TOKEN}
    return subprocess.run([str(ROOT / "bin" / "wsd-cli"), "--url", daemon.url, *args], env=env,
                          capture_output=True, text=True, timeout=60)


async def ready(tab: Tab) -> None:
    await tab.page.wait_for_selector('#conn-state[data-state="ready"]', timeout=10_000)


async def test_page_shows_live_stats_and_switches_the_agent(daemon: Daemon, db: asyncpg.Connection,
                                                            browser) -> None:  # noqa: F811
    [(lead_id, _), (other_lead, conversation_id), _] = await seed(db)
    tab = await new_tab(browser)
    await log_in(tab, daemon, ADMIN_TOKEN)
    await ready(tab)
    async with open_client(daemon.url) as connection:
        stats = await Client(connection).data("dashboard", "get_dashboard_stats")
    assert stats["total_users"] == 3
    for selector, text in stats_texts(stats).items():
        await tab.wait_text(selector, text)
    await tab.wait_text('.column[data-step="start"] .count', "3")

    # A step move made elsewhere (wsd-cli) reaches the open page within 2 s.
    moved = await asyncio.to_thread(wsd_cli, daemon, "leads", "update_lead_step", f"lead_id={lead_id}",
                                    "new_step=consent")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    started = time.monotonic()
    await tab.wait_text('.column[data-step="consent"] .count', "1", timeout_ms=2000)
    await tab.wait_text('.column[data-step="start"] .count', "2", timeout_ms=2000)
    assert time.monotonic() - started < 2

    # The agent switch in the lead's detail writes conversations.agent_enabled.
    await tab.wait_text(f'.card[data-lead="{other_lead}"] .name', "Bruno Díaz")
    await tab.page.click(f'.card[data-lead="{other_lead}"]')
    await tab.wait_text("#lead-name", "Bruno Díaz")
    assert await tab.page.is_checked("#agent-switch")
    await tab.page.click("#agent-switch")
    await eventually(lambda: db.fetchval("SELECT NOT agent_enabled FROM conversations WHERE id = $1",
                                         conversation_id), seconds=2)
    # The live answer comes back and the switch shows the stored state.
    await tab.page.wait_for_selector("#agent-switch:not(:checked):not(:disabled)", timeout=2000)
    await tab.page.wait_for_selector(f'.card[data-lead="{other_lead}"] .off', timeout=2000)
    await tab.page.click("#agent-switch")
    await eventually(lambda: db.fetchval("SELECT agent_enabled FROM conversations WHERE id = $1",
                                         conversation_id), seconds=2)

    assert tab.csp_violations() == [] and tab.errors == []
    await tab.page.context.close()


async def test_the_page_is_served_with_a_strict_csp(daemon: Daemon, browser) -> None:  # noqa: F811
    tab = await new_tab(browser)
    response = await tab.page.goto(f"http://127.0.0.1:{daemon.port}/")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp
    assert f"ws://127.0.0.1:{daemon.port}" in csp
    # An inline script is refused by the browser itself.
    with pytest.raises(PlaywrightError, match="Content Security Policy"):
        await tab.page.add_script_tag(content="window.inlineRan = true")
    assert await tab.page.evaluate("window.inlineRan") is None
    client = await tab.page.context.request.get(f"http://127.0.0.1:{daemon.port}/client/wsd-client.js")
    assert client.headers["content-type"].startswith("text/javascript")
    assert "export class WsdClient" in await client.text()
    await tab.page.context.close()


async def test_a_wrong_token_shows_a_readable_error(daemon: Daemon, browser) -> None:  # noqa: F811
    tab = await new_tab(browser)
    await log_in(tab, daemon, "not-a-token")
    await tab.page.wait_for_selector("#login-error:not([hidden])", timeout=5000)
    message = await tab.text("#login-error")
    assert "token was refused" in message and "unauthorized" in message, message
    assert await tab.page.is_hidden("#dashboard")
    assert await tab.page.evaluate("sessionStorage.getItem('wsd-token')") is None
    await tab.page.context.close()


async def test_a_viewer_sees_the_switch_but_cannot_use_it(daemon: Daemon, db: asyncpg.Connection,
                                                          browser) -> None:  # noqa: F811
    await seed(db)
    tab = await new_tab(browser)
    await log_in(tab, daemon, VIEWER_TOKEN)
    await ready(tab)
    await tab.page.wait_for_selector("#agent-switch:disabled", timeout=5000)
    await tab.page.context.close()


async def test_the_spec_snippet_logs_a_success_envelope(daemon: Daemon, db: asyncpg.Connection,
                                                        browser) -> None:  # noqa: F811
    """The spec's snippet, in the page's own origin. Two changes only, both forced: its URL
    points at this daemon, and the login message goes first — a browser cannot send an
    Authorization header, so wsd answers everything before `auth.login` with
    `unauthorized`. Both sends wait for `onopen`: as written, the snippet's send runs
    while the socket is still CONNECTING, which every browser refuses (checked below)."""
    tab = await new_tab(browser)
    await tab.page.goto(f"http://127.0.0.1:{daemon.port}/")
    url = f"ws://127.0.0.1:{daemon.port}/ws"
    snippet = SPEC_SNIPPET.replace("ws://localhost:8000/ws", url)
    define_id = "const generateUniqueId = () => crypto.randomUUID();\n"

    as_written = await tab.page.evaluate(
        f"() => {{ try {{ {define_id}{snippet} return 'sent'; }} catch (e) {{ return e.name; }} }}")
    assert as_written == "InvalidStateError"

    opening, rest = snippet.split("// Obtener estadísticas del dashboard\n")
    send, listen = rest.split("// Escuchar respuestas\n")
    login = ("ws.send(JSON.stringify({resource: 'auth', action: 'login', "
             f"payload: {{token: '{ADMIN_TOKEN}'}}}}));\n")
    program = f"{define_id}{opening}ws.onopen = () => {{\n{login}{send}}};\n{listen}"
    logged: list[dict[str, object]] = []

    async def collect() -> bool:
        logged[:] = [await m.args[1].json_value() for m in tab.console
                     if m.text.startswith("Respuesta:") and len(m.args) == 2]
        return any(isinstance(r.get("payload"), dict) and "total_users" in str(r) for r in logged)

    await tab.page.evaluate(f"() => {{ {program} }}")
    await eventually(collect, seconds=5)
    [stats] = [r for r in logged if "total_users" in str(r)]
    assert stats["type"] == "success" and isinstance(stats["id"], str)
    assert set(stats["payload"]["data"]) == {"total_users", "active_conversations", "meetings_today",  # type: ignore[index]
                                             "leads_by_step"}
    await tab.page.context.close()


async def test_the_page_reconnects_after_the_daemon_restarts(postgres: str, db: asyncpg.Connection,
                                                             browser, tmp_path: Path) -> None:  # noqa: F811
    await seed(db)
    first = start_daemon(tmp_path, postgres)
    try:
        tab = await new_tab(browser)
        await log_in(tab, first, ADMIN_TOKEN)
        await ready(tab)
        await tab.wait_text("#stat-users", "3")
        await kill(first)
        await tab.page.wait_for_selector('#conn-state[data-state="reconnecting"]', timeout=5000)
        for name in ("Diego Sanz", "Eva Mora"):
            await factories.user(db, full_name=name)
        second = await restart(first, postgres)
        try:
            await ready(tab)
            await tab.wait_text("#stat-users", "5", timeout_ms=5000)
            await tab.wait_text('.column[data-step="start"] .count', "3")
            assert await tab.page.is_hidden("#login")  # no new prompt: the token was kept
            assert tab.errors == []
        finally:
            second.stop()
        await tab.page.context.close()
    finally:
        first.stop()
