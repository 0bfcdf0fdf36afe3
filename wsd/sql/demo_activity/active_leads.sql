-- name: active_leads(window_size)
-- Returns {lead_id, conversation_id, current_step} of up to window_size leads still being
-- qualified whose open conversation the agent handles, the most recently active first.
SELECT l.id AS lead_id, l.conversation_id, l.current_step::text AS current_step
  FROM lead_qualifications AS l
  JOIN conversations AS c ON c.id = l.conversation_id
 WHERE l.completed_at IS NULL AND c.agent_enabled AND c.status = 'open'
 ORDER BY l.last_activity_at DESC, l.id DESC
 LIMIT :window_size;
