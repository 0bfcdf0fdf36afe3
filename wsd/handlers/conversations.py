"""conversations: the switch that turns the AI agent off or on in a conversation, and who
switched it, when and why."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
import orjson

from wsd.actions import ActionTable, Context, Payload, read, write
from wsd.errors import NotFound

Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500,
                                     description="why, in a few words (shown in the history)")]


class UpdateAgentStatus(Payload):
    conversation_id: uuid.UUID
    enabled: bool
    reason: Reason | None = None


class ConversationId(Payload):
    conversation_id: uuid.UUID


async def update_agent_status(ctx: Context, payload: UpdateAgentStatus) -> dict[str, Any]:
    """Returns `{id, agent_enabled, updated_at}`; the agent worker hears it on NOTIFY at once.

    The switch is recorded (agent_status_changes' trigger) as the caller's, with the reason.
    """
    queries, connection = ctx.queries.conversations, ctx.connection
    await queries.name_switcher(connection, actor=ctx.caller.name, actor_role=ctx.caller.role,
                                reason=payload.reason)
    row = await queries.update_agent_status(
        connection, conversation_id=payload.conversation_id, enabled=payload.enabled)
    if row is None:
        raise NotFound("no such conversation", {"conversation_id": str(payload.conversation_id)})
    return dict(row)


async def get_agent_history(ctx: Context, payload: ConversationId) -> orjson.Fragment:
    """The conversation's switches, oldest first: {at, enabled, actor, actor_role, reason}.

    actor is the wsd caller's token name, or what a writer straight into PostgreSQL set as
    `wsd.actor` in its transaction (`agent` when it set nothing); actor_role is null for those.
    """
    history = await ctx.queries.conversations.agent_history(ctx.pool, conversation_id=payload.conversation_id)
    if history is None:
        raise NotFound("no such conversation", {"conversation_id": str(payload.conversation_id)})
    return orjson.Fragment(history)


ACTIONS = ActionTable("conversations", [
    write("update_agent_status", update_agent_status, UpdateAgentStatus, changes={"conversations"}),
    read("get_agent_history", get_agent_history, ConversationId, topics={"conversations"}),
])
