"""The dashboard page in headless Chromium against the real daemon and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
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
    # The page opens 8 subscriptions at once: more than the 4 in flight test daemons allow.
    first = start_daemon(tmp_path, postgres, max_inflight_per_connection=16)
    second = None
    try:
        tab = await new_tab(browser)
        await log_in(tab, first, ADMIN_TOKEN)
        await ready(tab)
        await tab.wait_text("#stat-users", "3")
        await tab.page.wait_for_selector("#agent dt")
        fresh = await tab.page.evaluate(STALE)
        assert [name for name, _, _ in fresh] == ["stats", "funnel", "activity", "pipeline", "agent", "takeover",
                                                  "meetings", "abandoned"]
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


# -- reporting periods and the leads behind a count (issue 25) --------------------------------

async def seed_dated(db: asyncpg.Connection) -> dict[str, list[object]]:
    """Leads created 2 days ago (4, 2 of them reaching BANT) and 20 days ago (3, all at
    BANT): "last 7 days" and "last 30 days" count them differently."""
    now = dt.datetime.now(UTC)
    made: dict[str, list[object]] = {"recent": [], "older": []}
    for n in range(4):
        at = now - dt.timedelta(days=2, minutes=n)
        path = [("start", at, "agent")] + ([("bant", at + dt.timedelta(minutes=1), "agent")] if n < 2 else [])
        made["recent"].append(await factories.lead(db, path, full_name=f"Reciente {n}"))
    for n in range(3):
        at = now - dt.timedelta(days=20, minutes=n)
        made["older"].append(await factories.lead(db, [("start", at, "agent"), ("bant", at + dt.timedelta(minutes=1), "agent")],
                                                  full_name=f"Antiguo {n}"))
    return made


async def funnel_texts(tab: Tab) -> dict[str, str]:
    return await tab.page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('#funnel li')].map((li) => "
        "[li.dataset.step, li.querySelector('.count-link').textContent]))")


async def wait_funnel(tab: Tab, expected: dict[str, str]) -> None:
    try:
        await tab.page.wait_for_function(
            "(e) => Object.entries(e).every(([s, v]) => "
            "document.querySelector(`#funnel li[data-step=\"${s}\"] .count-link`)?.textContent === v)",
            arg=expected, timeout=5000, polling=50)
    except Exception:
        raise AssertionError(f"the funnel shows {await funnel_texts(tab)}, not {expected}") from None


async def test_the_period_changes_the_numbers_to_what_a_direct_call_answers(
        postgres: str, db: asyncpg.Connection, browser, tmp_path: Path) -> None:  # noqa: F811
    await seed_dated(db)
    daemon = start_daemon(tmp_path, postgres, max_inflight_per_connection=16)
    tab = await new_tab(browser)
    try:
        await log_in(tab, daemon, ADMIN_TOKEN)
        await ready(tab)
        # All time: the seed's answers.
        await wait_funnel(tab, {"start": "7", "bant": "5"})
        async with open_client(daemon.url) as connection:
            client = Client(connection)
            answers = {}
            for period in ("last_7_days", "last_30_days"):
                answers[period] = {
                    "funnel": await client.data("dashboard", "get_conversion_funnel", {"period": period}),
                    "activity": await client.data("dashboard", "get_conversion_funnel",
                                                  {"period": period, "mode": "activity"}),
                    "stats": await client.data("dashboard", "get_dashboard_stats", {"period": period, "compare": True}),
                    "agent": await client.data("dashboard", "get_agent_performance", {"period": period, "compare": True}),
                }
        week = answers["last_7_days"]
        assert [s["reached"] for s in week["funnel"]["steps"]][:4] == [4, 2, 2, 2]   # the data tells them apart
        assert [s["reached"] for s in answers["last_30_days"]["funnel"]["steps"]][:4] == [7, 5, 5, 5]

        for period, answer in answers.items():
            await tab.page.select_option("#period", period)
            await wait_funnel(tab, {s["step"]: str(s["reached"]) for s in answer["funnel"]["steps"]})
            await tab.wait_text('.mini[data-figure="new_leads"] .value',
                                str(answer["stats"]["in_period"]["new_leads"]))
            change = answer["stats"]["change"]["in_period"]["new_leads"]
            assert (await tab.text('.mini[data-figure="new_leads"] .delta')).startswith(
                f"+{change['absolute']}" if change["absolute"] > 0 else "=")
            await tab.page.wait_for_function(
                "(n) => document.querySelector('#agent dd[data-figure=\"conversations_handled\"]')?.firstChild?.textContent === n",
                arg=str(answer["agent"]["current"]["conversations_handled"]), timeout=5000)
            assert f"?period={period}" in tab.page.url

        # The funnel's other mode, and a shared URL opening the same view.
        await tab.page.click('#funnel-mode button[data-mode="activity"]')
        await wait_funnel(tab, {s["step"]: str(s["entered"]) for s in answers["last_30_days"]["activity"]["steps"]})
        assert tab.page.url.endswith("?period=last_30_days&funnel=activity")
        shared = await new_tab(browser)
        await shared.page.goto(tab.page.url)
        await shared.page.fill("#token", ADMIN_TOKEN)
        await shared.page.click("#login-form button[type=submit]")
        await wait_funnel(shared, {s["step"]: str(s["entered"]) for s in answers["last_30_days"]["activity"]["steps"]})
        assert await shared.page.input_value("#period") == "last_30_days"
        await shared.page.context.close()

        # A custom range: the 3 older leads only.
        today = dt.datetime.now(ZoneInfo("Europe/Madrid")).date()
        first, last = today - dt.timedelta(days=25), today - dt.timedelta(days=10)
        await tab.page.click('#funnel-mode button[data-mode="cohort"]')
        await tab.page.select_option("#period", "custom")
        await tab.page.fill("#period-from", first.isoformat())
        await tab.page.fill("#period-to", last.isoformat())
        await tab.page.click("#period-apply")
        async with open_client(daemon.url) as connection:
            custom = await Client(connection).data("dashboard", "get_conversion_funnel",
                                                   {"period": {"from": first.isoformat(), "to": last.isoformat()}})
        assert custom["steps"][0]["reached"] == 3
        await wait_funnel(tab, {s["step"]: str(s["reached"]) for s in custom["steps"]})
        assert f"from={first.isoformat()}&to={last.isoformat()}" in tab.page.url

        # Back to all time: the seed's answer again.
        await tab.page.select_option("#period", "")
        await wait_funnel(tab, {"start": "7", "bant": "5"})
        assert await tab.page.is_hidden("#in-period")
        assert tab.csp_violations() == [] and tab.errors == []
    finally:
        await tab.page.context.close()
        daemon.stop()


async def drill_rows(tab: Tab) -> list[str]:
    return await tab.page.evaluate("() => [...document.querySelectorAll('#drill-rows .row')].map((r) => r.dataset.lead)")


async def test_a_funnel_count_opens_exactly_its_leads_and_a_write_moves_both(
        postgres: str, db: asyncpg.Connection, browser, tmp_path: Path) -> None:  # noqa: F811
    """55 leads created this week reached BANT (two pages of 50), 3 earlier ones did too: the
    week's BANT count opens exactly the 55, by pages; a search narrows them; a lead the agent
    writes straight into PostgreSQL moves the count and the open list."""
    now = dt.datetime.now(UTC)
    week: set[str] = set()
    for n in range(55):
        at = now - dt.timedelta(hours=2, minutes=n)
        week.add(str(await factories.lead(db, [("start", at, "agent"), ("bant", at + dt.timedelta(seconds=30), "agent")],
                                          full_name=f"Semana {n:02d}", company="Ñandú SL" if n % 11 == 0 else "Otra SA")))
    for n in range(3):
        at = now - dt.timedelta(days=40, minutes=n)
        await factories.lead(db, [("start", at, "agent"), ("bant", at + dt.timedelta(minutes=1), "agent")],
                             full_name=f"Viejo {n}")
    daemon = start_daemon(tmp_path, postgres, max_inflight_per_connection=16)
    tab = await new_tab(browser)
    try:
        await tab.page.goto(f"http://127.0.0.1:{daemon.port}/?period=last_7_days")
        await tab.page.fill("#token", ADMIN_TOKEN)
        await tab.page.click("#login-form button[type=submit]")
        await ready(tab)
        await wait_funnel(tab, {"bant": "55"})
        await tab.page.click('#funnel li[data-step="bant"] .count-link')
        await tab.wait_text("#drill-total", "55 leads")
        await tab.page.wait_for_function("document.querySelectorAll('#drill-rows .row').length === 50")
        first_page = await drill_rows(tab)
        await tab.wait_text("#drill-page", "1–50 of 55")
        await tab.page.click("#drill-next")
        await tab.wait_text("#drill-page", "51–55 of 55")
        second_page = await drill_rows(tab)
        assert len(second_page) == 5 and set(first_page) | set(second_page) == week
        await tab.page.click("#drill-prev")
        await tab.wait_text("#drill-page", "1–50 of 55")

        # The search narrows the same filter: 5 of the 55 (n = 0, 11, 22, 33, 44).
        await tab.page.fill("#drill-search", "ñandú")
        await tab.wait_text("#drill-total", "5 leads")
        assert len(await drill_rows(tab)) == 5
        await tab.page.fill("#drill-search", "")
        await tab.wait_text("#drill-total", "55 leads")

        # Each row opens the lead's drawer beside the list.
        await tab.page.click(f'#drill-rows .row[data-lead="{first_page[3]}"]')
        await tab.page.wait_for_selector("#lead-name")
        assert (await tab.text("#lead-name")).startswith("Semana")
        assert await tab.page.is_visible("#drill")
        await tab.page.keyboard.press("Escape")
        await tab.page.wait_for_selector("#drawer", state="hidden")
        assert await tab.page.is_visible("#drill")

        # The agent's worker writes a lead that reaches BANT, straight into PostgreSQL.
        newest = await factories.lead(db, [("start", dt.datetime.now(UTC), "agent"),
                                           ("bant", dt.datetime.now(UTC), "agent")], full_name="Recién Llegada")
        await wait_funnel(tab, {"bant": "56"})
        await tab.wait_text("#drill-total", "56 leads")
        await tab.page.wait_for_selector(f'#drill-rows .row[data-lead="{newest}"]', timeout=5000)
        # A move by hand elsewhere takes one out of the pipeline's "now" count: the open list
        # of the board's count follows it too.
        await tab.page.keyboard.press("Escape")
        await tab.page.wait_for_selector("#drill", state="hidden")
        await tab.page.click('.column[data-step="bant"] .count .count-link')
        await tab.wait_text("#drill-total", "56 leads")
        moved = await asyncio.to_thread(wsd_cli, daemon, "leads", "update_lead_step", f"lead_id={newest}",
                                        "new_step=requirements")
        assert moved.returncode == 0, moved.stdout + moved.stderr
        await tab.wait_text("#drill-total", "55 leads")
        await tab.wait_text('.column[data-step="bant"] .count .count-link', "55")
        assert str(newest) not in await drill_rows(tab)
        async with open_client(daemon.url) as connection:
            direct = await connection_total(Client(connection), {"created": (await period_days(tab)), "step": "bant"})
        assert direct == 55
        assert tab.csp_violations() == [] and tab.errors == []
    finally:
        await tab.page.context.close()
        daemon.stop()


async def period_days(tab: Tab) -> dict[str, str]:
    """The period the open list's filter names (from the count it was opened from)."""
    created = await tab.page.evaluate(
        "() => JSON.parse(document.querySelector('.column[data-step=\"bant\"] .count-link').dataset.filter).created")
    return {"from": created["from"], "to": created["to"]}


async def connection_total(client: Client, filter_: dict[str, object]) -> int:
    reply = await client.request("leads", "get_all_leads", {"filter": filter_, "limit": 1})
    return int(reply["payload"]["total"])


async def test_time_in_step_and_stalled_counts_on_the_board(daemon: Daemon, db: asyncpg.Connection,
                                                          browser) -> None:  # noqa: F811
    now = dt.datetime.now(UTC)
    for hours in (1, 72, 100):   # BANT stalls after 48 h in the test config's default
        await factories.lead(db, [("start", now - dt.timedelta(hours=hours + 1), "agent"),
                                  ("bant", now - dt.timedelta(hours=hours), "agent")])
    async with open_client(daemon.url) as connection:
        rows = await Client(connection).data("leads", "get_step_durations")
    bant = next(row for row in rows if row["step"] == "bant")
    assert bant["stalled"] == 2 and bant["leads"] == 3
    tab = await new_tab(browser)
    await log_in(tab, daemon, ADMIN_TOKEN)
    await ready(tab)
    column = '.column[data-step="bant"] .times'
    await tab.wait_text(f"{column} .stalled .count-link", "2")
    assert bant["agent_off"]["leads"] == 3   # no conversation: the agent counts as off
    await tab.wait_text(f'{column} [data-agent="agent_off"] .count-link', "3")
    # 72 h median and 97.2 h p90 as the page writes them (over 48 h, in whole days).
    assert round(bant["agent_off"]["median_hours"]) == 72
    cells = await tab.page.evaluate(f"() => [...document.querySelectorAll('{column} > span')].map((s) => s.textContent)")
    assert cells[8:12] == ["off", "3", "3 d", f"{round(bant['agent_off']['p90_hours'] / 24)} d"], cells
    await tab.page.click(f"{column} .stalled .count-link")
    await tab.wait_text("#drill-total", "2 leads")
    assert tab.errors == []
    await tab.page.context.close()


# -- the trail, the take-over figures and exports (issue 22) ----------------------------------

AWKWARD_NAMES = ['Zoë "la jefa", Núñez', "=HYPERLINK(1)", "Línea\nNueva", "Ángel, Ortiz"]


async def download_csv(tab: Tab, button: str) -> list[dict[str, str]]:
    """Clicks an Export button and reads the file the browser downloads."""
    async with tab.page.expect_download(timeout=10_000) as waiting:
        await tab.page.click(button)
    download = await waiting.value
    path = await download.path()
    raw = Path(str(path)).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), raw[:20]   # the byte-order mark spreadsheets need
    return list(csv.DictReader(io.StringIO(raw[3:].decode("utf-8"), newline="")))


async def test_exports_download_the_rows_shown_and_the_trail_and_takeover_are_on_the_page(
        postgres: str, db: asyncpg.Connection, browser, tmp_path: Path) -> None:  # noqa: F811
    now = dt.datetime.now(UTC)
    ids = {}
    for n, name in enumerate(AWKWARD_NAMES):
        user_id = await factories.user(db, full_name=name, company="Ñu, S.L.")
        conversation_id = await factories.conversation(db, user_id)
        ids[name] = (await factories.lead(db, [("start", now - dt.timedelta(hours=3 + n), "agent"),
                                                ("bant", now - dt.timedelta(hours=2 + n), "agent")],
                                           user_id=user_id, conversation_id=conversation_id), conversation_id)
    await factories.lead(db, [("start", now - dt.timedelta(hours=1), "agent")], full_name="Sin Avanzar")
    daemon = start_daemon(tmp_path, postgres, max_inflight_per_connection=16)
    tab = await new_tab(browser)
    try:
        lead_id, conversation_id = ids[AWKWARD_NAMES[0]]
        # Writes through wsd (on the trail) and a hand-off the page must count.
        for args in (("leads", "update_lead_step", f"lead_id={lead_id}", "new_step=requirements"),
                     ("conversations", "update_agent_status", f"conversation_id={conversation_id}", "enabled=false")):
            done = await asyncio.to_thread(wsd_cli, daemon, *args)
            assert done.returncode == 0, done.stdout + done.stderr
        await log_in(tab, daemon, ADMIN_TOKEN)
        await ready(tab)
        async with open_client(daemon.url) as connection:
            client = Client(connection)
            takeover = await client.data("dashboard", "get_human_takeover")
            shown = await client.request("leads", "get_all_leads", {"filter": {"reached": "bant"}, "limit": 50})
        assert takeover["handoffs"] == 1 and takeover["unanswered_now"] == 1
        await tab.wait_text('#takeover dd[data-figure="handoffs"]', "1")
        await tab.wait_text('#takeover dd[data-figure="unanswered_now"]', "1")

        # The funnel's BANT count (all time): 4 leads; its Export downloads exactly those rows.
        await tab.page.click('#funnel li[data-step="bant"] .count-link')
        await tab.wait_text("#drill-total", "4 leads")
        rows = await download_csv(tab, "#drill-export")
        assert [row["id"] for row in rows] == await drill_rows(tab) == [lead["id"] for lead in shown["payload"]["data"]]
        by_id = {lead["id"]: lead for lead in shown["payload"]["data"]}
        for row in rows:
            name = by_id[row["id"]]["user"]["full_name"]
            # A formula-looking cell is neutralised with a leading apostrophe; the rest verbatim.
            assert row["user.full_name"] == ("'" + name if name.startswith("=") else name)
            assert row["user.company"] == "Ñu, S.L." and row["current_step"] == by_id[row["id"]]["current_step"]
        # The search narrows the export too.
        await tab.page.fill("#drill-search", "ortiz")
        await tab.wait_text("#drill-total", "1 lead")
        assert [row["user.full_name"] for row in await download_csv(tab, "#drill-export")] == ["Ángel, Ortiz"]

        # The lead's trail in its drawer, and its export.
        await tab.page.fill("#drill-search", "")
        await tab.wait_text("#drill-total", "4 leads")
        await tab.page.click(f'#drill-rows .row[data-lead="{lead_id}"]')
        await tab.page.wait_for_selector("#trail-export")
        trail = await tab.text("#lead")
        assert "test-admin (admin) · leads.update_lead_step" in trail, trail
        assert "new_step: requirements" in trail
        # The hand-off made through wsd, named with its caller, among the agent's switches.
        assert "Agent switches (1)" in trail and "off by test-admin (admin)" in trail, trail
        entries = await download_csv(tab, "#trail-export")
        assert [(e["actor"], e["resource"], e["action"]) for e in entries][-1] == ("test-admin", "leads", "update_lead_step")
        await tab.page.keyboard.press("Escape")
        await tab.page.keyboard.press("Escape")

        # Today's meetings and the abandoned leads export too (none of either here: a header).
        for button in ("#meetings-export", "#abandoned-export"):
            assert await download_csv(tab, button) == []
        assert tab.csp_violations() == [] and tab.errors == []
    finally:
        await tab.page.context.close()
        daemon.stop()


async def test_a_viewer_sees_no_trail_in_the_drawer(daemon: Daemon, db: asyncpg.Connection, browser) -> None:  # noqa: F811
    [(lead_id, _), *_] = await seed(db)
    tab = await new_tab(browser)
    await log_in(tab, daemon, VIEWER_TOKEN)
    await ready(tab)
    await tab.page.click(f'.card[data-lead="{lead_id}"]')
    await tab.page.wait_for_selector("#lead-name")
    assert "Trail" not in await tab.text("#lead") and await tab.page.locator("#trail-export").count() == 0
    await tab.page.context.close()
