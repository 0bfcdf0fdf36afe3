"""wsd-cli against the live daemon."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
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
