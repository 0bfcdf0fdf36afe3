-- name: lead_with_complete_data(lead_id, with_trail)$
-- Returns one lead's whole document as JSON text (sent as it is), or NULL for an unknown id: the leads-list fields plus
-- its conversation {id, agent_enabled, status, message_count, last_message_at}, its
-- requirements with features and integrations, its meetings by start time, and its step
-- history in order; with `with_trail`, its trail entries newest first (the latest 50, each
-- {at, actor, actor_role, actor_name, resource, action, ids, payload, outcome}), else trail null.
SELECT (lead_document(l, u, b, r)::jsonb || jsonb_build_object(
           'requirements', CASE WHEN r.id IS NOT NULL THEN requirements_document(r) END,
           'conversation', (
               SELECT json_build_object(
                          'id', c.id, 'agent_enabled', c.agent_enabled, 'status', c.status,
                          'message_count', (SELECT count(*) FROM messages AS m
                                             WHERE m.conversation_id = c.id),
                          'last_message_at', c.last_message_at)
                 FROM conversations AS c WHERE c.id = l.conversation_id),
           'meetings', coalesce((
               SELECT json_agg(meeting_document(m) ORDER BY m.start_time, m.id)
                 FROM meetings AS m WHERE m.lead_id = l.id), '[]'::json),
           'step_history', coalesce((
               SELECT json_agg(json_build_object(
                          'from_step', h.from_step, 'to_step', h.to_step, 'source', h.source,
                          'changed_at', h.changed_at)
                      ORDER BY h.changed_at, h.id)
                 FROM lead_step_history AS h WHERE h.lead_id = l.id), '[]'::json),
           'trail', CASE WHEN :with_trail THEN coalesce((
               SELECT json_agg(json_build_object(
                          'at', t.at, 'actor', t.actor, 'actor_role', t.actor_role, 'actor_name', t.actor_name,
                          'resource', t.resource, 'action', t.action, 'ids', t.ids,
                          'payload', t.payload, 'outcome', t.outcome) ORDER BY t.at DESC, t.id DESC)
                 FROM (SELECT * FROM trail_entries AS e WHERE e.lead_id = l.id
                        ORDER BY e.at DESC, e.id DESC LIMIT 50) AS t), '[]'::json) END))::text
  FROM lead_qualifications AS l
  JOIN users AS u ON u.id = l.user_id
  LEFT JOIN bant_data AS b ON b.lead_id = l.id
  LEFT JOIN requirements AS r ON r.lead_id = l.id
 WHERE l.id = :lead_id;
