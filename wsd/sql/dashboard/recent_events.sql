-- name: recent_events(since, until)
-- Returns the 50 latest events in [since, until) (until NULL: no end), newest first: {at, kind, ids} with kind one
-- of new_lead, message, step_change, meeting_created, agent_toggle and ids naming the
-- records involved.
(SELECT created_at AS at, 'new_lead' AS kind,
        json_build_object('lead_id', id, 'user_id', user_id) AS ids
   FROM lead_qualifications WHERE created_at >= :since AND created_at < coalesce(:until::timestamptz, 'infinity') ORDER BY created_at DESC LIMIT 50)
UNION ALL
(SELECT created_at, 'message',
        json_build_object('message_id', id, 'conversation_id', conversation_id, 'role', role)
   FROM messages WHERE created_at >= :since AND created_at < coalesce(:until::timestamptz, 'infinity') ORDER BY created_at DESC LIMIT 50)
UNION ALL
(SELECT changed_at, 'step_change',
        json_build_object('lead_id', lead_id, 'from_step', from_step, 'to_step', to_step, 'source', source)
   FROM lead_step_history WHERE changed_at >= :since AND changed_at < coalesce(:until::timestamptz, 'infinity') AND from_step IS NOT NULL
  ORDER BY changed_at DESC LIMIT 50)
UNION ALL
(SELECT created_at, 'meeting_created', json_build_object('meeting_id', id, 'lead_id', lead_id)
   FROM meetings WHERE created_at >= :since AND created_at < coalesce(:until::timestamptz, 'infinity') ORDER BY created_at DESC LIMIT 50)
UNION ALL
(SELECT changed_at, 'agent_toggle',
        json_build_object('conversation_id', conversation_id, 'enabled', enabled)
   FROM agent_status_changes WHERE changed_at >= :since AND changed_at < coalesce(:until::timestamptz, 'infinity') ORDER BY changed_at DESC LIMIT 50)
ORDER BY at DESC
LIMIT 50;
