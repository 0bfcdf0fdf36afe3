-- name: abandoned_leads(days, after_activity_at, after_id, page_size)
-- Returns up to page_size leads not completed whose last activity (step change, lead
-- update or message in their conversation) is more than `days` days old, oldest first,
-- after the keyset (after_activity_at, after_id) when given: rows of {last_activity_at, id,
-- lead}, the lead document carrying last_activity_at and whole days_inactive.
SELECT l.last_activity_at, l.id,
       lead_document(l, u, b, r)::jsonb || jsonb_build_object(
           'last_activity_at', l.last_activity_at,
           'days_inactive', floor(extract(epoch FROM now() - l.last_activity_at) / 86400)::int) AS lead
  FROM lead_qualifications AS l
  JOIN users AS u ON u.id = l.user_id
  LEFT JOIN bant_data AS b ON b.lead_id = l.id
  LEFT JOIN requirements AS r ON r.lead_id = l.id
 WHERE l.completed_at IS NULL
   AND l.last_activity_at < now() - make_interval(days => :days::int)
   AND (:after_activity_at::timestamptz IS NULL
        OR (l.last_activity_at, l.id) > (:after_activity_at::timestamptz, :after_id::uuid))
 ORDER BY l.last_activity_at, l.id
 LIMIT :page_size;
