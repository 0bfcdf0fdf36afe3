"""wsd-client.js itself, run in headless Chromium against the real daemon: error objects,
timeouts, backoff, and a reconnect that re-logs in and re-subscribes."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import asyncpg

from tests import factories
from tests.browser import Tab, browser, kill, new_tab, restart  # noqa: F401
from tests.conftest import ADMIN_TOKEN, ROOT, VIEWER_TOKEN, Daemon, conversation_locked, start_daemon
from tests.test_reliability import eventually

UTC = dt.timezone.utc

# Loaded into the page as window.wsd; `t` collects what callbacks saw.
SETUP = """async ([url]) => {
  window.wsd = await import('/client/wsd-client.js');
  window.url = url;
  window.t = {states: [], updates: [], kept: [], lost: null};
}"""


async def page_on(browser: Any, daemon: Daemon) -> Tab:  # noqa: F811
    tab = await new_tab(browser)
    await tab.page.goto(f"http://127.0.0.1:{daemon.port}/")
    await tab.page.evaluate(SETUP, [f"ws://127.0.0.1:{daemon.port}/ws"])
    return tab


async def js(tab: Tab, body: str, arg: Any = None) -> Any:
    """Runs `body` as an async function of `arg` in the page."""
    return await tab.page.evaluate(f"async (arg) => {{ {body} }}", arg)


CAUGHT = """
  const show = (e) => ({name: e.name, code: e.code, message: e.message, details: e.details,
                        requestId: e.requestId, isError: e instanceof Error,
                        isWsdError: e instanceof wsd.WsdError});
"""


async def test_error_objects_carry_code_message_and_details(daemon: Daemon, db: asyncpg.Connection,
                                                            browser) -> None:  # noqa: F811
    tab = await page_on(browser, daemon)
    errors = await js(tab, CAUGHT + """
      const admin = new wsd.WsdClient({url, token: arg.admin});
      const viewer = new wsd.WsdClient({url, token: arg.viewer});
      const caller = await admin.connect();
      await viewer.connect();
      const out = {caller};
      for (const [name, call] of [
        ['invalid', () => admin.request('leads', 'get_lead_with_complete_data', {lead_id: 'nope'})],
        ['unknown', () => admin.request('leads', 'no_such_action')],
        ['forbidden', () => viewer.request('conversations', 'update_agent_status',
                                            {conversation_id: crypto.randomUUID(), enabled: false})],
        ['refusedSub', () => new Promise((resolve, reject) =>
            admin.subscribe('leads', 'update_lead_step', {}, resolve, {onError: reject}))],
      ]) {
        try { await call(); out[name] = 'resolved'; } catch (e) { out[name] = show(e); }
      }
      const wrong = new wsd.WsdClient({url, token: 'wrong', onState: (s) => t.states.push(s)});
      try { await wrong.connect(); } catch (e) { out.wrong = show(e); }
      out.wrongState = wrong.state;
      out.afterFailed = await wrong.request('dashboard', 'get_dashboard_stats').catch(show);
      out.page = await admin.request('leads', 'get_all_leads', {limit: 1});
      admin.close(); viewer.close();
      return out;
    """, {"admin": ADMIN_TOKEN, "viewer": VIEWER_TOKEN})
    assert errors["caller"] == {"name": "test-admin", "role": "admin"}
    invalid = errors["invalid"]
    assert invalid["isError"] and invalid["isWsdError"] and invalid["name"] == "WsdError"
    assert invalid["code"] == "invalid_payload" and invalid["details"]["field"] == "lead_id"
    assert isinstance(invalid["requestId"], int) and invalid["message"]
    assert errors["unknown"]["code"] == "unknown_action"
    assert errors["unknown"]["details"] == {"resource": "leads", "action": "no_such_action"}
    assert errors["forbidden"]["code"] == "forbidden"
    assert errors["forbidden"]["details"]["required_role"] == "admin"
    assert errors["refusedSub"]["code"] == "invalid_payload"
    assert errors["wrong"]["code"] == "unauthorized" and errors["wrongState"] == "failed"
    assert errors["afterFailed"]["code"] == "closed"
    assert errors["page"] == {"data": [], "next_cursor": None}  # paged: next_cursor beside data
    await tab.page.context.close()


async def test_a_request_without_a_reply_times_out(daemon: Daemon, db: asyncpg.Connection, postgres: str,
                                                   browser) -> None:  # noqa: F811
    conversation_id = await factories.conversation(db)
    tab = await page_on(browser, daemon)
    async with conversation_locked(postgres, conversation_id):
        result = await js(tab, CAUGHT + """
          const client = new wsd.WsdClient({url, token: arg.token, timeout: 5000});
          await client.connect();
          const started = performance.now();
          const error = await client.request('conversations', 'update_agent_status',
              {conversation_id: arg.id, enabled: false}, {timeout: 300}).catch(show);
          const waited = performance.now() - started;
          // The connection stays usable after a timeout.
          const stats = await client.request('dashboard', 'get_dashboard_stats');
          client.close();
          return {error, waited, stats};
        """, {"token": ADMIN_TOKEN, "id": str(conversation_id)})
    assert result["error"]["code"] == "timeout" and result["error"]["details"] == {"timeout_ms": 300}
    assert 290 <= result["waited"] < 2000
    assert "total_users" in result["stats"]
    await tab.page.context.close()


async def test_backoff_grows_exponentially_with_jitter(daemon: Daemon, browser) -> None:  # noqa: F811
    tab = await page_on(browser, daemon)
    delays = await js(tab, """
      const client = new wsd.WsdClient({url, token: 'x', minDelay: 100, factor: 2, maxDelay: 1000,
                                        jitter: 0.5});
      const out = [];
      for (let attempt = 0; attempt < 6; attempt++) {
        client.attempt = attempt;
        out.push(Array.from({length: 200}, () => client.nextDelay()));
      }
      return out;
    """)
    for attempt, samples in enumerate(delays):
        base = min(1000, 100 * 2 ** attempt)
        assert all(base / 2 <= d <= base for d in samples), (attempt, min(samples), max(samples))
        assert len(set(samples)) > 10, "no jitter"
    await tab.page.context.close()


async def test_reconnect_logs_in_again_and_resubscribes(postgres: str, db: asyncpg.Connection,
                                                        browser, tmp_path: Path) -> None:  # noqa: F811
    conversation_id = await factories.conversation(db)
    lead_id = await factories.lead(db, [("start", dt.datetime.now(UTC), "agent")])
    first = start_daemon(tmp_path, postgres)
    second = None
    try:
        tab = await page_on(browser, first)
        await js(tab, """
          const client = window.client = new wsd.WsdClient({url, token: arg, minDelay: 100, maxDelay: 400,
              onState: (state, info) => t.states.push([state, info.attempt])});
          await client.connect();
          await new Promise((resolve) => {
            client.subscribe('dashboard', 'get_dashboard_stats', {}, (data, meta) => {
              t.updates.push([data.total_users, data.leads_by_step.consent, meta.initial]); resolve();
            });
          });
          window.stopKept = client.subscribe('leads', 'get_lead_pipeline', {},
              (data, meta) => t.kept.push([data[1].count, meta.initial]));
        """, ADMIN_TOKEN)
        await eventually(lambda: js(tab, "return t.kept.length === 1"))
        async with conversation_locked(postgres, conversation_id):
            await js(tab, """
              client.request('conversations', 'update_agent_status', {conversation_id: arg, enabled: false})
                .then(() => { t.lost = 'resolved'; }, (e) => { t.lost = {code: e.code, message: e.message}; });
            """, str(conversation_id))
            await kill(first)
            lost = await eventually(lambda: js(tab, "return t.lost"), seconds=5)
        assert lost["code"] == "connection_lost" and "may or may not" in lost["message"]
        await eventually(lambda: js(tab, "return client.state === 'reconnecting' && client.attempt >= 2"))
        # Meanwhile: a user more, and a request queued until the connection is back.
        await factories.user(db)
        await js(tab, "window.queued = client.request('dashboard', 'get_dashboard_stats', {}, {timeout: 20000})")
        second = await restart(first, postgres)
        await eventually(lambda: js(tab, "return client.state === 'ready'"), seconds=10)
        # The subscriber gets the fresh answer; the queued request went out after the login.
        await eventually(lambda: js(tab, "return t.updates.length === 2"), seconds=5)
        assert (await js(tab, "return t.updates"))[-1] == [3, 0, True]
        assert (await js(tab, "return (await queued).total_users")) == 3
        states = await js(tab, "return t.states")
        assert states[0] == ["connecting", 0] and ["ready", 0] in states[1:]
        assert any(state == "reconnecting" for state, _ in states)
        # Updates flow on the new connection; an unsubscribed one gets none.
        await eventually(lambda: js(tab, "return t.kept.length === 2"))
        await js(tab, "stopKept()")
        await js(tab, "await client.request('leads', 'update_lead_step', {lead_id: arg, new_step: 'consent'})",
                 str(lead_id))
        await eventually(lambda: js(tab, "return t.updates.at(-1)[1] === 1"), seconds=3)
        assert (await js(tab, "return t.updates.at(-1)")) == [3, 1, False]
        assert (await js(tab, "return t.kept.length")) == 2
        await js(tab, "client.close()")
        await tab.page.context.close()
    finally:
        first.stop()
        if second is not None:
            second.stop()


async def test_writes_while_disconnected_fail_at_once_and_subscriptions_turn_stale(
        postgres: str, db: asyncpg.Connection, browser, tmp_path: Path) -> None:  # noqa: F811
    """A write asked for during a restart fails at once with `unavailable` (nothing sent, so
    nothing runs seconds later); a read waits for the connection; each subscription says
    "stale" on the drop and "fresh" once renewed."""
    conversation_id = await factories.conversation(db)
    first = start_daemon(tmp_path, postgres)
    second = None
    try:
        tab = await page_on(browser, first)
        await js(tab, """
          const client = window.client = new wsd.WsdClient({url, token: arg, minDelay: 100, maxDelay: 400});
          await client.connect();
          await new Promise((resolve) => client.subscribe('dashboard', 'get_dashboard_stats', {}, resolve,
              {onState: (state, info) => t.states.push([state, info.updatedAt !== null])}));
        """, ADMIN_TOKEN)
        assert await js(tab, "return t.states") == [["fresh", True]]
        await kill(first)
        await eventually(lambda: js(tab, "return client.state === 'reconnecting'"))
        assert await js(tab, "return t.states") == [["fresh", True], ["stale", True]]
        result = await js(tab, CAUGHT + """
          const started = performance.now();
          const error = await client.request('conversations', 'update_agent_status',
              {conversation_id: arg, enabled: false}).catch(show);
          const forced = await client.request('leads', 'some_future_write', {}, {write: true}).catch(show);
          window.read = client.request('dashboard', 'get_dashboard_stats', {}, {timeout: 20000});
          return {error, forced, waited: performance.now() - started};
        """, str(conversation_id))
        assert result["waited"] < 50
        assert result["error"]["code"] == "unavailable" and result["error"]["isWsdError"]
        assert result["error"]["details"] == {"reason": "not_connected", "outcome": "not_applied",
                                              "state": "reconnecting"}
        assert result["forced"]["code"] == "unavailable"
        second = await restart(first, postgres)
        await eventually(lambda: js(tab, "return client.state === 'ready'"), seconds=10)
        assert "total_users" in await js(tab, "return await read")
        await eventually(lambda: js(tab, "return t.states.length === 3"))
        assert (await js(tab, "return t.states"))[-1] == ["fresh", True]
        # The write never reached the daemon, before or after the reconnect.
        await js(tab, "await new Promise((r) => setTimeout(r, 500))")
        assert await db.fetchval("SELECT agent_enabled FROM conversations WHERE id = $1", conversation_id) is True
        assert await db.fetchval("SELECT count(*) FROM agent_status_changes") == 0
        # Connected again, the same write goes through.
        await js(tab, "await client.request('conversations', 'update_agent_status', {conversation_id: arg, enabled: false})",
                 str(conversation_id))
        assert await db.fetchval("SELECT agent_enabled FROM conversations WHERE id = $1", conversation_id) is False
        await js(tab, "client.close()")
        await tab.page.context.close()
    finally:
        first.stop()
        if second is not None:
            second.stop()


async def test_write_actions_match_the_registry_and_the_types_declare_every_export(
        daemon: Daemon, browser) -> None:  # noqa: F811
    from wsd.handlers import ALL_TABLES

    tab = await page_on(browser, daemon)
    listed = await js(tab, "return [...wsd.WRITE_ACTIONS].sort()")
    exported = await js(tab, "return Object.keys(wsd).sort()")
    await tab.page.context.close()
    assert listed == sorted(f"{t.resource}.{a.name}" for t in ALL_TABLES for a in t.actions if a.writes)
    types = (ROOT / "wsd" / "web" / "wsd-client.d.ts").read_text()
    for name in exported:
        assert re.search(rf"export (const|class|function) {name}\b", types), name
    assert '"changes" ({topic})' in types and "{topic, id}" not in types


async def test_changes_hints_reach_only_a_client_that_asks(daemon: Daemon, db: asyncpg.Connection,
                                                          browser) -> None:  # noqa: F811
    tab = await page_on(browser, daemon)
    await js(tab, """
      t.hinted = []; t.plain = [];
      window.hinted = new wsd.WsdClient({url, token: arg, hints: true,
          onEvent: (topic, payload) => t.hinted.push([topic, payload])});
      window.plain = new wsd.WsdClient({url, token: arg, onEvent: (topic, payload) => t.plain.push([topic, payload])});
      await hinted.connect(); await plain.connect();
      await hinted.request('dashboard', 'get_dashboard_stats');   // the hints request went first
    """, ADMIN_TOKEN)
    await factories.lead(db, [("start", dt.datetime.now(UTC), "agent")])
    await eventually(lambda: js(tab, "return t.hinted.some(([topic, p]) => topic === 'changes' && p.topic === 'leads')"))
    await js(tab, "await new Promise((r) => setTimeout(r, 500))")
    assert await js(tab, "return t.plain") == []
    await js(tab, "hinted.close(); plain.close();")
    await tab.page.context.close()


async def test_export_csv_assembles_the_chunks(daemon: Daemon, db: asyncpg.Connection, browser) -> None:  # noqa: F811
    now = dt.datetime.now(UTC)
    for n in range(3):
        await factories.lead(db, [("start", now - dt.timedelta(hours=n + 1), "agent")],
                             full_name=f'Cliente "{n}", Ñ')
    tab = await page_on(browser, daemon)
    exported = await js(tab, """
      const client = new wsd.WsdClient({url, token: arg});
      await client.connect();
      const all = await client.exportCsv('leads', {bom: true});
      let refused = null;
      try { await client.exportCsv('trail', {since: 'yesterday'}); } catch (e) { refused = e.code; }
      return {all, refused};
    """, ADMIN_TOKEN)
    assert exported["refused"] == "invalid_payload"
    assert {k: exported["all"][k] for k in ("filename", "rows")} == {"filename": "leads.csv", "rows": 3}
    csv = exported["all"]["csv"]
    assert csv.startswith("\ufeffid,") and csv.count('"Cliente ""') == 3 and csv.endswith("\r\n")
