"""Hand-built rows for tests: each helper inserts one thing and returns its id."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg


async def user(db: asyncpg.Connection, full_name: str = "Juan Pérez", email: str | None = None,
               company: str = "Empresa ABC", **fields: Any) -> uuid.UUID:
    email = email or f"{uuid.uuid4().hex[:8]}@empresa.example"
    return await db.fetchval(
        "INSERT INTO users (full_name, email, phone, company, created_at) "
        "VALUES ($1, $2, $3, $4, coalesce($5, now())) RETURNING id",
        full_name, email, fields.get("phone", "+1234567890"), company, fields.get("created_at"))


async def conversation(db: asyncpg.Connection, user_id: uuid.UUID | None = None,
                       agent_enabled: bool = True, status: str = "open") -> uuid.UUID:
    user_id = user_id or await user(db)
    return await db.fetchval(
        "INSERT INTO conversations (user_id, agent_enabled, status) VALUES ($1, $2, $3) RETURNING id",
        user_id, agent_enabled, status)


async def message(db: asyncpg.Connection, conversation_id: uuid.UUID, role: str,
                  at: dt.datetime, content: str = "hola") -> uuid.UUID:
    return await db.fetchval(
        "INSERT INTO messages (conversation_id, role, content, created_at) VALUES ($1, $2, $3, $4) "
        "RETURNING id", conversation_id, role, content, at)


async def lead(db: asyncpg.Connection, path: list[tuple[str, dt.datetime, str]],
               user_id: uuid.UUID | None = None, conversation_id: uuid.UUID | None = None,
               **user_fields: Any) -> uuid.UUID:
    """A lead that walked `path`: (step, entered at, source) rows, the first being `start`.

    It is written the way the agent worker writes: history rows (whose trigger keeps
    furthest_step and entry times), then the lead's step and times.
    """
    assert path[0][0] == "start"
    created = path[0][1]
    user_id = user_id or await user(db, created_at=created, **user_fields)
    lead_id = await db.fetchval(
        "INSERT INTO lead_qualifications (user_id, conversation_id, created_at, updated_at, "
        "last_activity_at) VALUES ($1, $2, $3, $3, $3) RETURNING id", user_id, conversation_id, created)
    previous = None
    for step, at, source in path:
        await db.execute("INSERT INTO lead_step_history (lead_id, from_step, to_step, source, changed_at) "
                         "VALUES ($1, $2, $3, $4, $5)", lead_id, previous, step, source, at)
        previous = step
    last_at = path[-1][1]
    await db.execute(
        "UPDATE lead_qualifications SET current_step = $2::lead_step, updated_at = $3, consent = $4, "
        "completed_at = CASE WHEN $2::lead_step = 'completed' THEN $3::timestamptz END WHERE id = $1",
        lead_id, previous, last_at, any(step != "start" for step, _, _ in path))
    return lead_id


async def bant(db: asyncpg.Connection, lead_id: uuid.UUID, budget: str = "10000-50000",
               authority: str = "decision_maker", need: str = "urgent",
               timeline: str = "3_months") -> uuid.UUID:
    return await db.fetchval(
        "INSERT INTO bant_data (lead_id, budget, authority, need, timeline) VALUES ($1, $2, $3, $4, $5) "
        "RETURNING id", lead_id, budget, authority, need, timeline)


async def requirements(db: asyncpg.Connection, lead_id: uuid.UUID, app_type: str = "web_app",
                       deadline: dt.date | None = dt.date(2024, 6, 1), features: list[str] = (),
                       integrations: list[str] = ()) -> uuid.UUID:
    requirements_id = await db.fetchval(
        "INSERT INTO requirements (lead_id, app_type, deadline) VALUES ($1, $2, $3) RETURNING id",
        lead_id, app_type, deadline)
    for table, names in (("features", features), ("integrations", integrations)):
        for name in names:
            await db.execute(f"INSERT INTO {table} (requirements_id, name, description, created_at) "
                             "VALUES ($1, $2, $3, clock_timestamp())", requirements_id, name, f"about {name}")
    return requirements_id


async def meeting(db: asyncpg.Connection, lead_id: uuid.UUID, user_id: uuid.UUID, start: dt.datetime,
                  minutes: int = 60, status: str = "scheduled") -> uuid.UUID:
    return await db.fetchval(
        "INSERT INTO meetings (lead_id, user_id, subject, start_time, end_time, attendee_email, status) "
        "VALUES ($1, $2, 'Reunión de seguimiento', $3, $4, 'cliente@empresa.com', $5) RETURNING id",
        lead_id, user_id, start, start + dt.timedelta(minutes=minutes), status)
