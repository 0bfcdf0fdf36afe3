-- name: trail_page(actor, action, lead_id, since, until, after_at, after_id, page_size)
-- Returns trail entries newest first, each {id, at, entry}: entry is {id, at, actor,
-- actor_role, actor_name, actor_email, resource, action, lead_id, ids, payload, outcome}; filtered by actor, action
-- ("resource.action" or "action"), lead and [since, until) when given; after the
-- (after_at, after_id) cursor; at most page_size rows.
SELECT t.id, t.at, json_build_object(
           'id', t.id, 'at', t.at, 'actor', t.actor, 'actor_role', t.actor_role,
           'actor_name', t.actor_name, 'actor_email', t.actor_email,
           'resource', t.resource, 'action', t.action, 'lead_id', t.lead_id, 'ids', t.ids,
           'payload', t.payload, 'outcome', t.outcome) AS entry
  FROM trail_entries AS t
 WHERE (:actor::text IS NULL OR t.actor = :actor)
   AND (:action::text IS NULL OR t.action = :action OR t.resource || '.' || t.action = :action)
   AND (:lead_id::uuid IS NULL OR t.lead_id = :lead_id)
   AND (:since::timestamptz IS NULL OR t.at >= :since)
   AND (:until::timestamptz IS NULL OR t.at < :until)
   AND (:after_at::timestamptz IS NULL OR (t.at, t.id) < (:after_at, :after_id::bigint))
 ORDER BY t.at DESC, t.id DESC
 LIMIT :page_size;
