"""Change topics: the one model that cache invalidation, live queries and change hints share.

A topic names a family of tables. Every write to one of them — through wsd or straight into
PostgreSQL by the AI agent — raises the topic with one NOTIFY per topic per transaction
(statement-level triggers, migration 0012; PostgreSQL folds identical notifications of one
transaction into one). Read actions declare the topics their answer depends on, write
actions the topics they change.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Topic", "TABLE_TOPICS", "CHANGES_CHANNEL", "AGENT_STATUS_CHANNEL", "EVENT_CHANNELS"]

Topic = Literal["users", "conversations", "messages", "leads", "requirements", "meetings"]

# Which topic a write to each table raises; migration 0012 installs exactly these triggers.
TABLE_TOPICS: dict[str, Topic] = {
    "users": "users",
    "conversations": "conversations",
    "agent_status_changes": "conversations",
    "messages": "messages",
    "lead_qualifications": "leads",
    "lead_step_history": "leads",
    "bant_data": "leads",
    "requirements": "requirements",
    "features": "requirements",
    "integrations": "requirements",
    "meetings": "meetings",
    "outlook_busy": "meetings",
}

# NOTIFY channel of topic changes; the payload is {"topic": "<topic>"}.
CHANGES_CHANNEL = "wsd_changes"
# NOTIFY channel of an agent status change (update_agent_status, the AI agent); the payload
# is pushed to clients as an `agent_status` event.
AGENT_STATUS_CHANNEL = "wsd_agent_status"

# Every channel the change listener LISTENs on → the event topic its payloads reach clients
# as (`wsd.change_router.ChangeRouter`). `changes` also drops cached answers and re-runs the
# live queries of its topic.
EVENT_CHANNELS = {AGENT_STATUS_CHANNEL: "agent_status", CHANGES_CHANNEL: "changes"}
