"""`wsd schema` and docs/protocol.md agree with the registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec

from wsd.handlers import ALL_TABLES
from wsd.schema import MARK_BEGIN, MARK_END, markdown_reference

ROOT = Path(__file__).resolve().parent.parent
ACTION_KEYS = {f"{table.resource}.{action.name}" for table in ALL_TABLES for action in table.actions}


def test_protocol_md_holds_the_generated_action_reference() -> None:
    """After changing a payload type: `wsd schema --markdown` and paste it between the marks."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    block = text[text.index(MARK_BEGIN):text.index(MARK_END) + len(MARK_END)]
    assert block == markdown_reference(ALL_TABLES)


def test_wsd_schema_prints_every_action_and_an_asyncapi_document() -> None:
    done = subprocess.run([sys.executable, "-m", "wsd", "schema"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=True)
    document = msgspec.json.decode(done.stdout)
    assert set(document["actions"]) == ACTION_KEYS
    assert set(document["asyncapi"]["operations"]) == {key.replace(".", "_") for key in ACTION_KEYS} | {
        "auth_login", "auth_refresh", "live_subscribe", "live_unsubscribe", "live_hints", "live_update",
        "event_changes", "event_agent_status", "event_auth_expiring"}
    assert document["asyncapi"]["asyncapi"] == "3.0.0"
    create = document["actions"]["meetings.create_meeting"]
    assert create["role"] == "admin" and create["writes"]
    schema = document["components"]["schemas"][create["payload"]["$ref"].rsplit("/", 1)[1]]
    assert schema["additionalProperties"] is False and "attendee_email" in schema["required"]
