"""Every registered action fuzzed against the real daemon, payloads drawn from its schema.

Properties: each reply is an envelope carrying a documented error code or success, never
`internal`; the connection stays open; after every successful write the database still
holds its invariants. The bounded profile runs in `make test`; the long one is

    WSD_FUZZ_EXAMPLES=10000 .venv/bin/python -m pytest tests/test_fuzz.py -q

(examples per action; docs/operations.md has its last figures).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests import factories
from tests.conftest import Client
from tests.fuzz import ENVELOPES, action_strategy
from tests.test_meetings import DAY, HOUR, at, lead_at, next_weekday, now
from wsd.errors import ErrorCode
from wsd.handlers import ALL_TABLES

EXAMPLES = int(os.environ.get("WSD_FUZZ_EXAMPLES", "40"))
DOCUMENTED = {code.value for code in ErrorCode} - {ErrorCode.INTERNAL.value}
ACTIONS = [(table.resource, action) for table in ALL_TABLES for action in table.actions]

# Each row names a broken rule; an empty result is a consistent database.
INVARIANTS = """
SELECT 'lead_step_counts drifted' FROM lead_step_counts AS c
 WHERE c.current <> (SELECT count(*) FROM lead_qualifications AS l WHERE l.current_step = c.step)
UNION ALL
SELECT 'overlapping scheduled meetings' FROM meetings AS a JOIN meetings AS b
    ON a.mailbox = b.mailbox AND a.id < b.id AND a.status = 'scheduled' AND b.status = 'scheduled'
   AND a.start_time < b.end_time AND b.start_time < a.end_time
UNION ALL
SELECT 'blank name' FROM requirement_items WHERE btrim(name) = '' OR name <> btrim(name, ' ')
UNION ALL
SELECT 'blank subject' FROM meetings WHERE btrim(subject) = ''
UNION ALL
SELECT 'requirements of a missing lead' FROM requirements AS r
 WHERE NOT EXISTS (SELECT 1 FROM lead_qualifications AS l WHERE l.id = r.lead_id)
UNION ALL
SELECT 'history does not end at the current step' FROM lead_qualifications AS l
 WHERE l.current_step <> (SELECT h.to_step FROM lead_step_history AS h WHERE h.lead_id = l.id
                           ORDER BY h.changed_at DESC, h.id DESC LIMIT 1)
"""


def drawn(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """`count` values from `strategy` (hypothesis generation only: the daemon is the oracle)."""
    values: list[Any] = []

    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: Any) -> None:
        values.append(value)

    collect()
    return values


async def seed(db: asyncpg.Connection) -> list[str]:
    """A few records of every kind, so drawn ids reach real rows; returns their ids."""
    ids: list[str] = []
    for step in ("start", "bant", "requirements", "meeting", "completed"):
        lead_id, user_id = await lead_at(db, step)
        conversation_id = await factories.conversation(db, user_id)
        await db.execute("UPDATE lead_qualifications SET conversation_id = $2 WHERE id = $1", lead_id, conversation_id)
        ids += [str(lead_id), str(user_id), str(conversation_id)]
        if step in ("requirements", "meeting"):
            ids.append(str(await factories.requirements(db, lead_id, features=["Login", "Chat en vivo"])))
        if step == "meeting":
            ids.append(str(await factories.meeting(db, lead_id, user_id, at(next_weekday(), 10))))
            ids.append(str(await factories.meeting(db, lead_id, user_id, now() - DAY - 2 * HOUR)))
    return ids


async def problems(db: asyncpg.Connection) -> list[str]:
    return [row[0] for row in await db.fetch(INVARIANTS)]


def judge(reply: Any) -> str | None:
    """What is wrong with a reply, or None."""
    if not isinstance(reply, dict) or reply.get("type") not in ("success", "error"):
        return "not a reply envelope"
    if reply["type"] == "error":
        code = reply.get("payload", {}).get("code")
        if code not in DOCUMENTED:
            return f"code {code!r}"
    return None


@pytest.mark.parametrize("resource, action", ACTIONS, ids=[f"{r}.{a.name}" for r, a in ACTIONS])
async def test_action_survives_drawn_payloads(admin: Client, db, resource, action) -> None:
    ids = await seed(db)
    failures: list[tuple[Any, Any]] = []
    # Drawn in a thread: the loop keeps answering the connection's keepalive pings meanwhile.
    examples = await asyncio.to_thread(drawn, action_strategy(action.payload_type, ids), EXAMPLES)
    for payload in examples:
        request_id = f"f{len(failures)}-{id(payload)}"
        # msgspec, not orjson: drawn integers may pass 64 bits.
        await admin.connection.send(msgspec.json.encode(
            {"resource": resource, "action": action.name, "id": request_id, "payload": payload}).decode())
        reply = await admin.reply_to(request_id)
        if (wrong := judge(reply)) is not None:
            failures.append((payload, f"{wrong}: {reply}"))
        elif action.writes and reply["type"] == "success" and (broken := await problems(db)):
            failures.append((payload, f"after the write: {broken}"))
    print(f"fuzz {resource}.{action.name}: {len(examples)} examples, {len(failures)} bad replies")
    assert not failures, f"{len(failures)} bad replies, first ones:\n" + "\n".join(map(repr, failures[:5]))


async def test_envelopes_of_every_shape_get_an_envelope_back(admin: Client) -> None:
    failures = []
    messages = await asyncio.to_thread(drawn, ENVELOPES, EXAMPLES * 5)
    for message in messages:
        await admin.connection.send(msgspec.json.encode(message).decode())
        reply = await admin.next_reply()
        if (wrong := judge(reply)) is not None:
            failures.append((message, f"{wrong}: {reply}"))
    print(f"fuzz envelopes: {len(messages)} examples, {len(failures)} bad replies")
    assert not failures, failures[:5]
    assert await admin.data("leads", "get_lead_pipeline")  # still open and answering
