"""Change topics: the one model that cache invalidation, live queries and change hints share.

A topic names a family of tables. Every write to one of them — through wsd or straight into
PostgreSQL by the AI agent — raises the topic with one NOTIFY per topic per transaction
(statement-level triggers, migration 0012; PostgreSQL folds identical notifications of one
transaction into one). Read actions declare the topics their answer depends on, write
actions the topics they change.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Topic", "TABLE_TOPICS", "CHANGES_CHANNEL"]

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
