"""The dashboard page in headless Chromium against the real daemon and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from zoneinfo import ZoneInfo

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
    [(lead_id, _), *_] = await seed(db)
    tab = await new_tab(browser)
    await log_in(tab, daemon, VIEWER_TOKEN)
    await ready(tab)
    await tab.page.click(f'.card[data-lead="{lead_id}"]')
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


# -- issue 23: a page that never shows stale or hidden data as current -----------------------

async def test_a_revoked_token_returns_to_sign_in_with_nothing_left_on_show(postgres: str, db: asyncpg.Connection,
                                                                           browser, tmp_path: Path) -> None:  # noqa: F811
    [(lead_id, _), *_] = await seed(db)
    daemon = start_daemon(tmp_path, postgres)
    try:
        tab = await new_tab(browser)
        await log_in(tab, daemon, VIEWER_TOKEN)
        await ready(tab)
        await tab.wait_text("#stat-users", "3")
        await tab.page.click(f'.card[data-lead="{lead_id}"]')
        await tab.wait_text("#lead-name", "Ana Ruiz")
        # The viewer's token leaves config.toml; SIGHUP closes its connection "token revoked"
        # and the reconnect's login is refused.
        config = daemon.config_path.read_text()
        daemon.config_path.write_text("\n".join(line for line in config.splitlines() if "test-viewer" not in line))
        daemon.process.send_signal(signal.SIGHUP)
        await tab.page.wait_for_selector("#login:not([hidden])", timeout=10_000)
        assert await tab.page.is_hidden("#dashboard") and await tab.page.is_hidden("#drawer")
        assert "no longer accepted" in await tab.text("#login-error")
        visible = await tab.page.evaluate("document.body.innerText")
        assert not any(ch.isdigit() for ch in visible), visible
        assert "Ana Ruiz" not in await tab.page.evaluate("document.body.textContent")
        for selector in ("#stat-users", "#stat-conversations", "#stat-meetings", "#stat-leads"):
            assert await tab.text(selector) == "–"
        for selector in ("#funnel", "#activity", "#pipeline", "#meetings", "#agent", "#lead"):
            assert await tab.page.eval_on_selector(selector, "node => node.childElementCount") == 0, selector
        assert await tab.page.evaluate("sessionStorage.getItem('wsd-token')") is None
        assert tab.errors == []
        await tab.page.context.close()
    finally:
        daemon.stop()


STALE = """() => [...document.querySelectorAll('[data-panel]')].filter((s) => !s.hidden).map((s) =>
  [s.dataset.panel, s.classList.contains('stale'), s.querySelector('.updated').hidden ? null
   : s.querySelector('.updated').textContent])"""


async def test_panels_are_marked_stale_while_the_daemon_restarts(postgres: str, db: asyncpg.Connection,
                                                                 browser, tmp_path: Path) -> None:  # noqa: F811
    await seed(db)
    # The page opens 6 subscriptions at once: more than the 4 in flight test daemons allow.
    first = start_daemon(tmp_path, postgres, max_inflight_per_connection=16)
    second = None
    try:
        tab = await new_tab(browser)
        await log_in(tab, first, ADMIN_TOKEN)
        await ready(tab)
        await tab.wait_text("#stat-users", "3")
        await tab.page.wait_for_selector("#agent dt")
        fresh = await tab.page.evaluate(STALE)
        assert [name for name, _, _ in fresh] == ["stats", "funnel", "activity", "pipeline", "meetings", "agent"]
        assert all(not stale and label is None for _, stale, label in fresh), fresh
        await kill(first)
        await tab.page.wait_for_selector('#conn-state[data-state="reconnecting"]', timeout=5000)
        stale = await tab.page.evaluate(STALE)
        assert all(is_stale for _, is_stale, _ in stale), stale
        assert all(re.fullmatch(r"updated \d\d:\d\d:\d\d", label or "") for _, _, label in stale), stale
        # Dimmed: the figures themselves are faded while the label stays readable.
        opacity = await tab.page.eval_on_selector("#stat-users", "n => getComputedStyle(n.parentElement).opacity")
        assert float(opacity) < 0.6
        await factories.user(db, full_name="Diego Sanz")
        second = await restart(first, postgres, max_inflight_per_connection=16)
        await ready(tab)
        await tab.wait_text("#stat-users", "4", timeout_ms=5000)
        await eventually(lambda: tab.page.evaluate(
            "() => document.querySelectorAll('[data-panel].stale').length === 0"), seconds=5)
        assert all(label is None for _, _, label in await tab.page.evaluate(STALE))
        await tab.page.context.close()
    finally:
        first.stop()
        if second is not None:
            second.stop()


async def test_a_board_update_keeps_a_columns_scroll_and_the_focus(daemon: Daemon, db: asyncpg.Connection,
                                                                  browser) -> None:  # noqa: F811
    base = dt.datetime.now(UTC) - dt.timedelta(hours=1)
    made = [await factories.lead(db, [("start", base + dt.timedelta(seconds=n), "agent")], full_name=f"Lead {n:02}")
            for n in range(25)]
    tab = await new_tab(browser)
    await log_in(tab, daemon, ADMIN_TOKEN)
    await ready(tab)
    await tab.wait_text('.column[data-step="start"] .count', "25")
    focused = made[10]   # shown in the column (the 20 most recently updated), below its fold
    await tab.page.focus(f'.card[data-lead="{focused}"]')   # scrolls the column to show it
    await tab.page.evaluate("() => { document.activeElement.dataset.mark = 'kept'; }")
    where = f"""() => {{
      const list = document.querySelector('.column[data-step="start"] ul');
      const card = document.querySelector('.card[data-lead="{focused}"]');
      return [list.scrollTop, Math.round(card.getBoundingClientRect().top - list.getBoundingClientRect().top)];
    }}"""
    [scrolled, offset] = await tab.page.evaluate(where)
    assert scrolled > 200 and 0 <= offset < 240
    # A new lead lands on top of the same column, and another moves to the next one.
    await factories.lead(db, [("start", dt.datetime.now(UTC), "agent")], full_name="Newest Lead")
    await asyncio.to_thread(wsd_cli, daemon, "leads", "update_lead_step", f"lead_id={made[24]}", "new_step=consent")
    await tab.wait_text('.column[data-step="start"] .count', "25", timeout_ms=3000)
    await tab.wait_text('.column[data-step="consent"] .count', "1", timeout_ms=3000)
    await tab.page.wait_for_selector('.column[data-step="start"] .card >> text=Newest Lead')
    # The focused card is where it was in the column's view (the column scrolled by the new
    # card's height to keep it there, rather than jumping back to the top).
    [scrolled_after, offset_after] = await tab.page.evaluate(where)
    assert abs(offset_after - offset) <= 1 and scrolled_after >= scrolled, (scrolled, offset, scrolled_after, offset_after)
    active = await tab.page.evaluate("() => [document.activeElement.dataset.lead, document.activeElement.dataset.mark]")
    assert active == [str(focused), "kept"]
    await tab.page.context.close()


async def test_a_card_click_opens_the_whole_lead_in_view(daemon: Daemon, db: asyncpg.Connection,
                                                         browser) -> None:  # noqa: F811
    now = dt.datetime.now(UTC)
    user_id = await factories.user(db, full_name="Lucía Romero", company="Horizonte SL")
    conversation_id = await factories.conversation(db, user_id)
    lead_id = await factories.lead(db, [("start", now - dt.timedelta(days=2), "agent"),
                                        ("consent", now - dt.timedelta(days=1), "agent"),
                                        ("requirements", now - dt.timedelta(hours=3), "manual")],
                                   user_id=user_id, conversation_id=conversation_id)
    await factories.bant(db, lead_id, budget="5000-10000", authority="influencer", need="exploring",
                         timeline="12_months")
    await factories.requirements(db, lead_id, app_type="mobile_app", features=["Modo offline", "Roles"],
                                 integrations=["Stripe"])
    await factories.meeting(db, lead_id, user_id, dt.datetime(2030, 1, 15, 9, 0, tzinfo=UTC), minutes=30)
    tab = await new_tab(browser)   # 1280×800
    await log_in(tab, daemon, ADMIN_TOKEN)
    await ready(tab)
    await tab.page.click(f'.card[data-lead="{lead_id}"]')
    await tab.wait_text("#lead-name", "Lucía Romero")
    box = await tab.page.locator("#drawer").bounding_box()
    assert box is not None and box["y"] >= 0 and box["x"] >= 0
    assert box["x"] + box["width"] <= 1280 and box["y"] < 800 and box["height"] >= 700
    assert await tab.page.locator("#lead-name").is_visible()
    text = await tab.text("#lead")
    for expected in ("5000-10000", "influencer", "exploring", "12_months", "mobile_app",
                     "Modo offline — about Modo offline", "Roles — about Roles", "Stripe — about Stripe",
                     "Features (2)", "Integrations (1)", "Meetings (1)", "15 Jan, 10:00–10:30",
                     "Start (agent)", "Start → Consent (agent)", "Consent → Requirements (manual)"):
        assert expected in text, (expected, text)
    # What the drawer lists is in view once scrolled to, inside the drawer itself.
    await tab.page.locator("#lead li >> text=Consent → Requirements").scroll_into_view_if_needed()
    assert await tab.page.locator("#lead li >> text=Consent → Requirements").is_visible()
    await tab.page.keyboard.press("Escape")
    await tab.page.wait_for_selector("#drawer", state="hidden")
    assert tab.errors == []
    await tab.page.context.close()


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800}, {"width": 390, "height": 844}])
async def test_no_card_is_wider_than_its_column(daemon: Daemon, db: asyncpg.Connection, browser,  # noqa: F811
                                                viewport: dict[str, int]) -> None:
    for step in ("start", "consent", "completed"):
        path = [("start", dt.datetime.now(UTC), "agent")]
        if step != "start":
            path.append((step, dt.datetime.now(UTC), "agent"))
        await factories.lead(db, path, full_name="Maximiliano Bartolomé de la Santísima Trinidad",
                             company="Compañía Internacional de Soluciones Tecnológicas Avanzadas S.A.S.")
    tab = await new_tab(browser, viewport)
    await log_in(tab, daemon, ADMIN_TOKEN)
    await ready(tab)
    await tab.page.wait_for_selector(".card")
    found = await tab.page.evaluate("""() => {
      const board = document.getElementById('pipeline');
      const cards = [...document.querySelectorAll('.card')].map((card) => {
        const list = card.closest('ul');
        const name = card.querySelector('.name');
        return {card: card.getBoundingClientRect().width, column: list.clientWidth,
                nameCut: name.scrollWidth > name.clientWidth, listScrolls: list.scrollWidth > list.clientWidth};
      });
      return {cards, board: [board.scrollWidth, board.clientWidth], page: document.documentElement.scrollWidth};
    }""")
    assert len(found["cards"]) == 3
    for card in found["cards"]:
        assert card["card"] <= card["column"] + 0.5 and not card["nameCut"] and not card["listScrolls"], card
    assert found["board"][0] <= found["board"][1] and found["page"] <= viewport["width"]
    await tab.page.context.close()


async def test_meeting_times_are_in_the_business_zone_and_say_so(postgres: str, db: asyncpg.Connection,
                                                                browser, tmp_path: Path) -> None:  # noqa: F811
    """The test daemon's business.timezone is Europe/Madrid; the browser is in New York."""
    daemon = start_daemon(tmp_path, postgres, max_inflight_per_connection=16)   # all 6 panels at once
    madrid = ZoneInfo("Europe/Madrid")
    today = dt.datetime.now(madrid).date()
    user_id = await factories.user(db)
    lead_id = await factories.lead(db, [("start", dt.datetime.now(UTC), "agent")], user_id=user_id)
    await factories.meeting(db, lead_id, user_id, dt.datetime.combine(today, dt.time(12, 0), madrid), minutes=30)
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, timezone_id="America/New_York")
    tab = Tab(await context.new_page())
    await log_in(tab, daemon, ADMIN_TOKEN)
    await ready(tab)
    try:
        await tab.wait_text("#meetings .time", "12:00–12:30")
        assert await tab.text("#zone") == "· Europe/Madrid time"
        assert await tab.page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") == "America/New_York"
    finally:
        await context.close()
        daemon.stop()


async def test_the_current_hour_does_not_flatten_the_others(daemon: Daemon, db: asyncpg.Connection,
                                                           browser) -> None:  # noqa: F811
    """30 messages now (a burst) beside 6 an hour ago: the scale stops at twice the full
    hours' median (12), so the earlier bar keeps half the height instead of a fifth; the
    current one is cut at the top and says its total."""
    conversation_id = await factories.conversation(db)
    now = dt.datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)   # Madrid's offset is whole hours
    for n in range(6):
        await factories.message(db, conversation_id, "user", hour - dt.timedelta(minutes=30 + n))
    for n in range(30):
        await factories.message(db, conversation_id, "user", now - dt.timedelta(milliseconds=n))
    tab = await new_tab(browser)
    await log_in(tab, daemon, ADMIN_TOKEN)
    await ready(tab)
    await tab.page.wait_for_selector("#activity .over")
    chart = await tab.page.evaluate("""() => {
      const svg = document.querySelector('#activity svg');
      const axis = [...svg.querySelectorAll('text[text-anchor="end"]')].map((t) => t.textContent);
      const bars = [...svg.querySelectorAll('rect.bar')].map((r) => [Number(r.getAttribute('x')), Number(r.getAttribute('height'))]);
      return {axis, bars, over: svg.querySelector('.over').textContent};
    }""")
    assert chart["over"] == "↑30"
    assert chart["axis"][:3] == ["0", "6", "12"]
    (earlier_x, earlier), (current_x, current) = sorted(chart["bars"])[-2:]
    assert earlier_x < current_x and earlier == pytest.approx(current / 2, abs=0.5) and earlier > 80
    await tab.page.context.close()
