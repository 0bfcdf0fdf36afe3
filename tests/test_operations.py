"""Running wsd: health endpoints, migrations, shutdown, config errors and the database going away."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from tests import factories
from tests.conftest import ROOT, Client, conversation_locked, open_client, start_daemon
from wsd.config import ConfigError, load_config
from wsd.database import MIGRATIONS_DIR, EmbeddedPostgres, apply_migrations


def test_healthz_and_readyz(daemon) -> None:
    assert daemon.http("/healthz") == (200, "ok\n")
    assert daemon.http("/readyz") == (200, "ready\n")
    assert daemon.http("/elsewhere")[0] == 404


async def test_migrations_apply_once(db) -> None:
    assert await apply_migrations(db) == []
    names = [r["name"] for r in await db.fetch("SELECT name FROM schema_migrations ORDER BY name")]
    assert names == sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql"))
    assert await apply_migrations(db) == []


async def test_migrate_command_on_a_fresh_database(postgres) -> None:
    admin = await asyncpg.connect(postgres)
    await admin.execute("DROP DATABASE IF EXISTS wsd_migrate_test")
    await admin.execute("CREATE DATABASE wsd_migrate_test")
    dsn = postgres.replace("/wsd_test", "/wsd_migrate_test")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WSD_DATABASE_DSN": dsn}
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "wsd", "migrate"], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    fresh = await asyncpg.connect(dsn)
    assert await fresh.fetchval("SELECT count(*) FROM schema_migrations") == len(
        list(MIGRATIONS_DIR.glob("*.sql")))
    assert await fresh.fetchval("SELECT count(*) FROM lead_qualifications") == 0
    await fresh.close()
    await admin.execute("DROP DATABASE wsd_migrate_test")
    await admin.close()


async def test_sigterm_lets_the_request_in_flight_finish(postgres, db, tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, postgres)
    conversation_id = await factories.conversation(db)
    async with conversation_locked(postgres, conversation_id) as lock:
        async with open_client(daemon.url) as connection:
            client = Client(connection)
            request_id = await client.send("conversations", "update_agent_status",
                                           {"conversation_id": str(conversation_id), "enabled": False})
            await asyncio.sleep(0.3)
            daemon.process.terminate()
            await asyncio.sleep(0.5)
            assert daemon.process.poll() is None, "wsd must wait for the request in flight"
            await lock.close()
            reply = await client.reply_to(request_id)
            assert reply["type"] == "success"
            with pytest.raises(ConnectionClosed) as closed:
                while True:  # the switch's agent_status event may still arrive first
                    assert (await client.receive())["type"] == "event"
            assert closed.value.rcvd.code == 1001
    assert await asyncio.to_thread(daemon.process.wait, 30) == 0
    assert await db.fetchval("SELECT agent_enabled FROM conversations WHERE id = $1",
                             conversation_id) is False
    assert '"event":"stopped"' in daemon.log()


async def test_database_down_means_unavailable_and_not_ready(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    dsn = await server.start()
    daemon = start_daemon(tmp_path, dsn)
    try:
        async with open_client(daemon.url) as connection:
            client = Client(connection)
            await server.stop()
            error = await client.error("conversations", "update_agent_status",
                                       {"conversation_id": "6f1c0c53-4f47-4a8e-9d3e-0f7b8a1d2c3e",
                                        "enabled": False})
            assert error["code"] == "unavailable"
            assert "database" in error["message"]
            status, body = daemon.http("/readyz")
            assert status == 503 and body.startswith("database unavailable")
            assert daemon.http("/healthz")[0] == 200
            assert (await client.error("x", "y"))["code"] == "unknown_action"
    finally:
        daemon.stop()
        await server.stop()


@pytest.mark.parametrize("content, env, key", [
    ("[server]\nport = 'eighty'\n", {}, "server.port"),
    ("[server]\nport = 70000\n", {}, "server.port"),
    ("[business]\ntimezone = 'Mars/Olympus'\n", {}, "business.timezone"),
    ("[business]\nworkday_start = '19:00'\n", {}, "business.workday_start"),
    ("[auth]\ntokens = [{ name = 'x', role = 'root', sha256 = 'ab' }]\n", {}, "auth.tokens[0].role"),
    ("", {"WSD_DATABASE_POOL_MAX_SIZE": "many"}, "database.pool_max_size"),
    ("[outlook]\nenabled = true\n", {}, "outlook.tenant_id"),
    ("[server\n", {}, "not valid TOML"),
])
def test_bad_config_exits_2_with_one_line_naming_the_key(tmp_path: Path, content: str, env: dict,
                                                         key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    done = subprocess.run([sys.executable, "-m", "wsd", "serve", "--config", str(path)],
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], done.stderr


def test_environment_overrides_every_kind_of_value() -> None:
    config = load_config(environ={
        "WSD_SERVER_PORT": "9001", "WSD_DATABASE_DSN": "postgresql://u@h/db",
        "WSD_SERVER_ALLOWED_ORIGINS": '["https://admin.example"]',
        "WSD_OUTLOOK_ENABLED": "false", "WSD_OUTLOOK_TENANT_ID": "1234",
        "WSD_BUSINESS_WORKDAYS": "[1, 2, 3]"})
    assert config.server.port == 9001
    assert config.database.dsn == "postgresql://u@h/db"
    assert config.server.allowed_origins == ["https://admin.example"]
    assert config.outlook.tenant_id == "1234"
    assert config.business.workdays == [1, 2, 3]


def test_the_shipped_config_loads_with_its_documented_defaults() -> None:
    config = load_config(ROOT / "config.toml", environ={})
    assert (config.server.port, config.server.path, config.server.max_message_bytes) == (8765, "/ws", 1048576)
    assert config.database.dsn == "" and config.outlook.enabled is False
    with pytest.raises(ConfigError, match="no such file"):
        load_config(ROOT / "missing.toml", environ={})


def test_token_new_prints_a_token_and_its_config_line() -> None:
    done = subprocess.run([sys.executable, "-m", "wsd", "token", "new", "--name", "ops", "--role", "viewer"],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    token = done.stdout.split("token: ")[1].split()[0]
    import hashlib
    assert hashlib.sha256(token.encode()).hexdigest() in done.stdout
    assert 'role = "viewer"' in done.stdout and 'name = "ops"' in done.stdout


async def test_access_lines_past_the_budget_are_counted_not_lost(postgres, db, tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, postgres, env={"WSD_LOG_ACCESS_LINES_PER_SECOND": "5"})
    try:
        async with open_client(daemon.url) as connection:
            client = Client(connection)
            for _ in range(50):
                assert (await client.error("leads", "get_lead_with_complete_data",
                                           {"lead_id": "6f1c0c53-4f47-4a8e-9d3e-0f7b8a1d2c3e"}))["code"] == "not_found"
        await asyncio.sleep(1.6)   # the second ends; the half-second flush reports it
    finally:
        assert daemon.stop() == 0
    lines = [orjson.loads(line) for line in daemon.log().splitlines() if line.startswith("{")]
    logged = [line for line in lines if line["event"] == "request"
              and line["action"] == "get_lead_with_complete_data"]
    reports = [line for line in lines if line["event"] == "requests not logged"]
    assert reports and all(report["limit_per_second"] == 5 for report in reports)
    counted = sum(count["count"] for report in reports for count in report["counts"]
                  if count["action"] == "get_lead_with_complete_data" and count["outcome"] == "not_found")
    assert len(logged) + counted == 50 and counted >= 40
