"""conversations: the switch that turns the AI agent off or on in a conversation."""

from __future__ import annotations

import uuid
from typing import Any

from wsd.dispatcher import ActionTable, Context, Payload, write
from wsd.errors import NotFound


class UpdateAgentStatus(Payload):
    conversation_id: uuid.UUID
    enabled: bool


async def update_agent_status(ctx: Context, payload: UpdateAgentStatus) -> dict[str, Any]:
    """Returns `{id, agent_enabled, updated_at}`; the agent worker hears it on NOTIFY at once."""
    row = await ctx.queries.conversations.update_agent_status(
        ctx.connection, conversation_id=payload.conversation_id, enabled=payload.enabled)
    if row is None:
        raise NotFound("no such conversation", {"conversation_id": str(payload.conversation_id)})
    return dict(row)


ACTIONS = ActionTable("conversations", [
    write("update_agent_status", update_agent_status, UpdateAgentStatus, changes={"conversations"}),
])
