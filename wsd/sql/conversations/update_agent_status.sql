-- name: update_agent_status(conversation_id, enabled)^
-- Switches the AI agent in one conversation. Returns {id, agent_enabled, updated_at}, or no
-- row for an unknown conversation. A real switch is recorded in agent_status_changes by the
-- table's trigger (migration 0014, with the transaction's wsd.actor and wsd.reason), and
-- every call notifies the agent worker on `wsd_agent_status` when the transaction commits.
WITH updated AS (
    UPDATE conversations AS c
       SET agent_enabled = :enabled, updated_at = now()
     WHERE c.id = :conversation_id
 RETURNING c.id, c.agent_enabled, c.updated_at
)
SELECT u.id, u.agent_enabled, u.updated_at
  FROM updated AS u,
       LATERAL (SELECT pg_notify('wsd_agent_status',
                json_build_object('conversation_id', u.id, 'enabled', u.agent_enabled)::text)) AS n;
