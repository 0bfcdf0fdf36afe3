-- name: update_agent_status(conversation_id, enabled)^
-- Switches the AI agent in one conversation. Returns {id, agent_enabled, updated_at}, or no
-- row for an unknown conversation. A real switch is recorded in agent_status_changes, and
-- every call notifies the agent worker on `wsd_agent_status` when the transaction commits.
WITH previous AS (
    SELECT id, agent_enabled FROM conversations WHERE id = :conversation_id FOR UPDATE
), updated AS (
    UPDATE conversations AS c
       SET agent_enabled = :enabled, updated_at = now()
      FROM previous AS p
     WHERE c.id = p.id
 RETURNING c.id, c.agent_enabled, c.updated_at, p.agent_enabled AS was_enabled
), recorded AS (
    INSERT INTO agent_status_changes (conversation_id, enabled)
    SELECT id, agent_enabled FROM updated WHERE was_enabled IS DISTINCT FROM agent_enabled
)
SELECT u.id, u.agent_enabled, u.updated_at
  FROM updated AS u,
       LATERAL (SELECT pg_notify('wsd_agent_status',
                json_build_object('conversation_id', u.id, 'enabled', u.agent_enabled)::text)) AS n;
