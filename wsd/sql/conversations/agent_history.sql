-- name: agent_history(conversation_id)$
-- Returns the conversation's agent switches as a JSON array, oldest first: {at, enabled,
-- actor, actor_role, reason} (actor_role null for a writer straight into PostgreSQL), or
-- NULL for an unknown conversation.
SELECT coalesce((
           SELECT json_agg(json_build_object(
                      'at', a.changed_at, 'enabled', a.enabled, 'actor', a.actor,
                      'actor_role', a.actor_role, 'reason', a.reason)
                  ORDER BY a.changed_at, a.id)
             FROM agent_status_changes AS a WHERE a.conversation_id = c.id), '[]'::json)::text
  FROM conversations AS c
 WHERE c.id = :conversation_id;
