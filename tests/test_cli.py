"""wsd-cli against the live daemon."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import subprocess
import sys

from tests import factories
from tests.conftest import ADMIN_TOKEN, ROOT, free_port
from wsd.client import parse_payload


def factories_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def run_cli(*args: str, token: str | None = ADMIN_TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("WSD_TOKEN", None)
    if token:
        env["WSD_TOKEN"] = token
    return subprocess.run([str(ROOT / "bin" / "wsd-cli"), *args], env=env, capture_output=True,
                          text=True, timeout=60, cwd=ROOT / "tests")


async def test_key_value_request_changes_the_database(daemon, db) -> None:
    conversation_id = await factories.conversation(db)
    done = run_cli("--url", daemon.url, "conversations", "update_agent_status",
                   f"conversation_id={conversation_id}", "enabled=false")
    assert done.returncode == 0, done.stderr
    assert '"agent_enabled": false' in done.stdout and str(conversation_id) in done.stdout
    assert await db.fetchval("SELECT agent_enabled FROM conversations WHERE id = $1",
                             conversation_id) is False


async def test_json_payload_and_error_reply_exit_1(daemon, db) -> None:
    done = run_cli("--url", daemon.url, "conversations", "update_agent_status",
                   '{"conversation_id": "nope", "enabled": true}')
    assert done.returncode == 1
    assert '"code": "invalid_payload"' in done.stdout


def test_refused_token_and_unreachable_daemon_are_clear(daemon) -> None:
    done = run_cli("--url", daemon.url, "x", "y", token="wrong")
    assert done.returncode == 3 and "token refused" in done.stderr
    done = run_cli("--url", f"ws://127.0.0.1:{free_port()}/ws", "x", "y")
    assert done.returncode == 3 and "cannot reach wsd" in done.stderr


def test_interactive_prompt_sends_each_line(daemon, tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WSD_TOKEN": ADMIN_TOKEN, "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "wsd.client", "--url", daemon.url],
                          input="nothing here\nfoo\n", env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert '"code": "unknown_action"' in done.stdout and "need RESOURCE ACTION" in done.stdout


def test_payload_words() -> None:
    assert parse_payload(["enabled=false", "limit=5", "name=Chat en vivo", "id=abc"]) == {
        "enabled": False, "limit": 5, "name": "Chat en vivo", "id": "abc"}
    assert parse_payload(['{"a": [1]}']) == {"a": [1]}


def test_key_value_words_are_typed_by_the_action_schema() -> None:
    assert parse_payload(["search=2024", "limit=5"], "leads", "get_all_leads") == {"search": "2024", "limit": 5}
    assert parse_payload(["conversation_id=123", "enabled=false"], "conversations", "update_agent_status") == {
        "conversation_id": "123", "enabled": False}
    assert parse_payload(["subject=null"], "meetings", "update_meeting") == {"subject": "null"}


async def test_the_daemon_address_comes_from_the_config_and_its_overrides(daemon, db) -> None:
    from wsd.client import default_url

    assert default_url({"WSD_SERVER_PORT": "9123"}) == "ws://127.0.0.1:9123/ws"
    assert default_url({"WSD_URL": "ws://elsewhere:1/ws", "WSD_SERVER_PORT": "9123"}) == "ws://elsewhere:1/ws"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WSD_TOKEN": ADMIN_TOKEN, "WSD_SERVER_PORT": str(daemon.port)}
    env.pop("WSD_URL", None)
    done = subprocess.run([str(ROOT / "bin" / "wsd-cli"), "leads", "get_all_leads", "search=2024"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT / "tests")
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"type": "success"' in done.stdout


async def test_live_subscribe_follows_updates(daemon, db) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WSD_TOKEN": ADMIN_TOKEN}
    follower = subprocess.Popen(
        [str(ROOT / "bin" / "wsd-cli"), "--url", daemon.url, "live", "subscribe",
         '{"resource": "leads", "action": "get_lead_pipeline"}'],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT / "tests")
    try:
        await asyncio.sleep(2)  # subscribed: the first answer is printed
        await factories.lead(db, [("start", factories_now(), "agent")])
        await asyncio.sleep(2)
    finally:
        follower.terminate()
        out, err = follower.communicate(timeout=10)
    assert '"type": "success"' in out and '"type": "update"' in out, (out, err)
    assert "following s" in err
    update = out[out.index('"type": "update"'):]
    assert '"step": "start"' in update and '"count": 1' in update


def test_prompt_help_lists_actions_and_payload_fields_from_the_registry(daemon, tmp_path) -> None:
    from wsd.handlers.leads import AllLeads

    env = {**os.environ, "PYTHONPATH": str(ROOT), "WSD_TOKEN": ADMIN_TOKEN, "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "wsd.client", "--url", daemon.url],
                          input="help\nhelp leads get_all_leads\nhelp live\nhelp leads nothing\n", env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [line.removeprefix("wsd> ") for line in done.stdout.splitlines()]   # input()'s prompt
    assert ("  leads: get_all_leads get_lead_pipeline get_lead_with_complete_data update_lead_step "
            "get_conversion_stats get_step_durations get_abandoned_leads") in lines
    assert "  live: subscribe unsubscribe hints" in lines
    assert "leads get_all_leads (viewer)" in lines
    fields = [line.split("?:")[0].strip() for line in lines if line.startswith("  ") and "?:" in line]
    assert fields == list(AllLeads.__struct_fields__)
    assert ("  step?: bant | completed | consent | meeting | personal_data | requirements | start or null, "
            "default null") in lines
    assert "live hints (viewer)" in lines
    assert "no such resource or action: leads nothing (`help` lists them)" in lines


async def test_a_closed_stdout_is_not_an_unreachable_daemon(daemon, db) -> None:
    """`wsd-cli ... | head`: the reader leaves before the reply is printed; wsd-cli exits 0
    and says nothing (it used to print "cannot reach wsd: Broken pipe" and exit 3)."""
    for _ in range(3):
        await factories.lead(db, [("start", factories_now(), "agent")])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WSD_TOKEN": ADMIN_TOKEN}
    cli = subprocess.Popen([sys.executable, "-m", "wsd.client", "--url", daemon.url, "leads", "get_all_leads"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT / "tests")
    assert cli.stdout is not None and cli.stderr is not None
    cli.stdout.close()   # the reader is gone before anything is written
    assert await asyncio.to_thread(cli.wait, 60) == 0
    assert cli.stderr.read() == b""
    shell = subprocess.run(["bash", "-c", f'set -o pipefail; "{ROOT}/bin/wsd-cli" --url {daemon.url} '
                            'leads get_all_leads | head -c 20'], env=env, capture_output=True, text=True,
                           timeout=60)
    assert (shell.returncode, shell.stdout, shell.stderr) == (0, '{\n  "type": "success', "")


def test_port_in_use_is_one_line_and_exit_2(postgres, tmp_path) -> None:
    from tests.conftest import write_config

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = write_config(tmp_path / "wsd.toml", postgres, port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSD_")}
        done = subprocess.run([sys.executable, "-m", "wsd", "serve", "--config", str(config)],
                              env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"wsd: port {port} is already in use on 127.0.0.1: stop what holds it, or pick another with "
        "WSD_SERVER_PORT=<port> (or [server] port)"]
    assert "Traceback" not in done.stdout + done.stderr


async def test_demo_token_works_beside_configured_tokens_and_the_banner_names_the_page(postgres, db, tmp_path) -> None:
    """`make run` printed a token; adding another to config.toml (as the page's sign-in hint
    says) must not lock it out, neither at start nor on SIGHUP. The banner gives the page's
    http:// address beside the ws:// one."""
    from tests.conftest import Client, free_port, open_client, write_config

    await factories.conversation(db)   # not empty: no demo seeding into the shared database
    port = free_port()
    config = write_config(tmp_path / "wsd.toml", postgres, port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSD_")}
    out = (tmp_path / "out.txt").open("wb")
    serve = subprocess.Popen([sys.executable, "-m", "wsd", "serve", "--demo", "--no-activity", "--config",
                              str(config)], env={**env, "PYTHONPATH": str(ROOT)}, stdout=out,
                             stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        async def banner() -> bool:
            return "admin token" in (tmp_path / "out.txt").read_text()
        from tests.test_reliability import eventually
        await eventually(banner, 60)
        token = (tmp_path / "var" / "demo-token").read_text().strip()
        text = (tmp_path / "out.txt").read_text()
        assert f"  wsd demo is up: open http://127.0.0.1:{port}/ (WebSocket ws://127.0.0.1:{port}/ws)" in text
        assert f"  admin token: {token}  " in text
        url = f"ws://127.0.0.1:{port}/ws"
        for each in (token, ADMIN_TOKEN):
            async with open_client(url, token=each) as connection:
                assert (await Client(connection).data("dashboard", "get_dashboard_stats"))["total_users"] >= 1
        async with open_client(url, token=token) as connection:
            kept = Client(connection)
            serve.send_signal(signal.SIGHUP)   # config.toml re-read: the demo token stays
            await asyncio.sleep(1.0)
            assert (await kept.data("auth", "login", {"token": token}))["name"] == "demo-admin"
    finally:
        serve.terminate()
        serve.wait(30)
        out.close()
