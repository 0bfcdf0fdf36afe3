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
